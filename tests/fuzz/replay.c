/* replay.c: run a fuzz target over files (a committed corpus) without libFuzzer, so
 * `make check-asan` replays every corpus and crash reproducer under ASan+UBSan */
#include "fuzz.h"
#include "util.h"

int main(int argc, char **argv)
{
	int n = 0;
	for (int i = 1; i < argc; i++) {
		size_t len;
		char *d = lm_read_file(argv[i], (size_t)1 << 26, &len);
		if (!d) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], lm_errmsg());
			return 1;
		}
		LLVMFuzzerTestOneInput((const uint8_t *)d, len);
		free(d);
		n++;
	}
	fprintf(stderr, "replay: %d inputs\n", n);
	return 0;
}

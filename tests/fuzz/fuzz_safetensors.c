/* fuzz_safetensors.c: safetensors header validation and reads */
#include "fuzz.h"
#include "safetensors.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[256];
	struct lm_st_file f;
	int fd = fuzz_tmpfile(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	close(fd);
	if (lm_st_open(&f, path) == 0) {
		for (size_t i = 0; i < f.n; i++) {
			void *p = lm_alloc(f.entries[i].end - f.entries[i].begin);
			if (p)
				lm_st_read(&f, i, p);
			lm_free(p);
		}
		lm_st_close(&f);
	}
	unlink(path);
	return 0;
}

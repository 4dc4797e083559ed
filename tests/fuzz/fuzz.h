/* fuzz.h: shared by the fuzz targets. Each target defines LLVMFuzzerTestOneInput; built
 * with clang -fsanitize=fuzzer it is a libFuzzer binary (`make fuzz`), built with
 * replay.c it runs the committed corpus files under ASan+UBSan (`make check-asan`). */
#ifndef LM_FUZZ_H
#define LM_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the input as a file: the readers under test take paths or descriptors */
static inline int fuzz_tmpfile(const uint8_t *data, size_t size, char *path, size_t psz)
{
	snprintf(path, psz, "%s/lmfuzzXXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		unlink(path);
		return -1;
	}
	lseek(fd, 0, SEEK_SET);
	return fd;
}
#endif

/* fuzz_torchbin.c: the PyTorch zip reader (libarchive + restricted unpickler), and the
 * unpickler alone on the same bytes */
#include "fuzz.h"
#include "pickle.h"
#include "torchbin.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[256];
	struct lm_tb_file f;
	struct lm_pk_tensor *t;
	size_t n;
	if (lm_pk_state_dict(data, size, &t, &n) == 0)
		lm_pk_free(t, n);
	int fd = fuzz_tmpfile(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	close(fd);
	if (lm_tb_open(&f, path) == 0) {
		for (size_t i = 0; i < f.n && i < 64; i++) {
			void *p = f.entries[i].nbytes < (1u << 24) ? lm_alloc(f.entries[i].nbytes) : NULL;
			if (p)
				lm_tb_read(&f, i, p);
			lm_free(p);
		}
		lm_tb_close(&f);
	}
	unlink(path);
	return 0;
}

/* fuzz_stream.c: the lm-stream reader on arbitrary bytes, whole records with payloads,
 * each tensor through the model validator as lm-info runs it (warnings, never stopping) */
#include "fuzz.h"
#include "stream.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[256];
	int fd = fuzz_tmpfile(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	struct lm_reader *rd = lm_reader_open(fd, "fuzz");
	struct lm_header h;
	struct lm_record r = {0};
	if (lm_read_header(rd, &h) == 0) {
		struct lm_validator v;
		lm_val_init(&v, &h.cfg, 0);
		for (int i = 0; i < 1000; i++) {
			if (lm_read_record(rd, &r) < 0)
				break;
			if (r.kind == LM_REC_END) {
				lm_val_end(&v);
				break;
			}
			lm_val_meta(&v, &r);
			lm_val_payload(&r);
		}
		lm_val_free(&v);
		lm_record_clear(&r);
		lm_header_free(&h);
	}
	lm_reader_close(rd);
	close(fd);
	unlink(path);
	return 0;
}

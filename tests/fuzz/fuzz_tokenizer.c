/* fuzz_tokenizer.c: encode arbitrary bytes with the OPT vocabulary (loaded once), check
 * decode(encode(x)) == x; the first byte chooses to fuzz vocab/merges loading instead */
#include "fuzz.h"
#include "tokenizer.h"
#include "util.h"

#include <string.h>

static struct lm_tokenizer *real;

static struct lm_tokenizer *load_real(void)
{
	const char *dir = getenv("LM_FUZZ_TOKENIZER") ? getenv("LM_FUZZ_TOKENIZER") : "models/opt-micro";
	char vp[512], mp[512];
	size_t vl, ml;
	snprintf(vp, sizeof vp, "%s/vocab.json", dir);
	snprintf(mp, sizeof mp, "%s/merges.txt", dir);
	char *v = lm_read_file(vp, 1 << 26, &vl), *m = lm_read_file(mp, 1 << 26, &ml);
	if (!v || !m) {
		fprintf(stderr, "fuzz_tokenizer: cannot read %s (set LM_FUZZ_TOKENIZER)\n", dir);
		exit(1);
	}
	struct lm_tokenizer *t = lm_tokenizer_load(v, vl, m, ml);
	free(v), free(m);
	return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == 'V') {
		/* "V" vocab NUL merges */
		const uint8_t *z = memchr(data + 1, 0, size - 1);
		if (z) {
			struct lm_tokenizer *t = lm_tokenizer_load((const char *)data + 1, (size_t)(z - data - 1),
			                                           (const char *)z + 1, size - (size_t)(z - data) - 1);
			lm_tokenizer_free(t);
		}
		return 0;
	}
	if (!real)
		real = load_real();
	int32_t *ids;
	size_t n, len;
	if (lm_tokenize(real, (const char *)data, size, &ids, &n) < 0)
		abort();
	char *back = lm_detokenize(real, ids, n, &len);
	if (!back || len != size || memcmp(back, data, size))
		abort();
	free(back);
	free(ids);
	return 0;
}

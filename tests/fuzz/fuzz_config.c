/* fuzz_config.c: config.json parsing into an OPT config */
#include "fuzz.h"
#include "opt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	struct lm_opt_config c;
	if (j && lm_opt_config_from_hf(&c, j) == 0) {
		size_t n;
		json_t *back = lm_opt_config_to_json(&c);
		struct lm_opt_config c2;
		/* what we write we must read back */
		if (lm_opt_config_from_json(&c2, back) < 0)
			abort();
		json_decref(back);
		if (c.num_layers <= 64)
			free(lm_opt_tensors(&c, &n));
	}
	json_decref(j);
	return 0;
}

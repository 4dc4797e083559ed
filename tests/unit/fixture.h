/* fixture.h: loading the transformers-written fixtures (tests/fixtures/<name>/) in the C
 * unit tests: the model from config.json + model.safetensors, reference tensors by name. */
#ifndef LM_FIXTURE_H
#define LM_FIXTURE_H

#include <jansson.h>
#include <stdio.h>

#include "modelio.h"
#include "opt.h"
#include "safetensors.h"
#include "util.h"

/* config.json + model.safetensors of a folder into m; -1 with a message printed */
static inline int load_model(struct lm_model *m, const char *dir)
{
	char path[1024], canon[LM_OPT_MAX_NAME];
	struct lm_opt_config cfg;
	struct lm_st_file st;
	json_error_t jerr;
	json_t *hf;

	snprintf(path, sizeof path, "%s/config.json", dir);
	if (!(hf = json_load_file(path, 0, &jerr))) {
		fprintf(stderr, "%s: %s\n", path, jerr.text);
		return -1;
	}
	int r = lm_opt_config_from_hf(&cfg, hf);
	json_decref(hf);
	if (r < 0 || lm_model_init(m, &cfg) < 0) {
		fprintf(stderr, "%s: %s\n", path, lm_errmsg());
		return -1;
	}
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	if (lm_st_open(&st, path) < 0) {
		fprintf(stderr, "%s: %s\n", path, lm_errmsg());
		return -1;
	}
	for (size_t i = 0; i < st.n; i++) {
		const struct lm_st_entry *e = &st.entries[i];
		void *data = lm_alloc(e->end - e->begin);
		if (lm_opt_canonical_name(e->name, canon, sizeof canon) < 0 || !data ||
		    lm_st_read(&st, i, data) < 0 ||
		    lm_model_take(m, canon, e->dtype, e->ndim, e->shape, data) < 0) {
			fprintf(stderr, "%s: %s: %s\n", path, e->name, lm_errmsg());
			lm_st_close(&st);
			return -1;
		}
	}
	lm_st_close(&st);
	if (lm_model_check(m) < 0 || lm_model_check_finite(m) < 0) {
		fprintf(stderr, "%s: %s\n", path, lm_errmsg());
		return -1;
	}
	return 0;
}

/* a tensor of the reference file, lm_alloc'd; NULL if absent */
static inline void *ref_read(const struct lm_st_file *st, const char *name, size_t *nbytes)
{
	long i = lm_st_find(st, name);
	if (i < 0)
		return NULL;
	const struct lm_st_entry *e = &st->entries[i];
	void *p = lm_alloc(e->end - e->begin + 1);
	if (lm_st_read(st, (size_t)i, p) < 0) {
		lm_free(p);
		return NULL;
	}
	if (nbytes)
		*nbytes = e->end - e->begin;
	return p;
}

#endif

/* lwnote.c: the record and the -v line of the work on one tensor of lm-prune and lm-quant (see lwnote.h). */
#include "lwnote.h"
#include "util.h"

#include <stdio.h>

struct lm_mat *lm_lw_mat(struct lm_layerwise *d, size_t i)
{
	return lm_model_mat(&d->m, d->ms.order[i].kind, d->ms.order[i].layer);
}

void lm_lw_note(struct lm_layerwise *d, size_t i, const char *key, json_t *rec, const char *what,
                const double *loss)
{
	const struct lm_opt_tensor *t = &d->ms.order[i];
	json_object_set_new(lm_ms_attrs(&d->ms, t->kind, t->layer), key, rec);
	if (d->cf->verbose) {
		fprintf(stderr, "%s: %s: %s", argv0, t->name, what);
		if (loss)
			fprintf(stderr, ", error %.6g", *loss);
		fputc('\n', stderr);
	}
}

/* eesweep.h: early exit's quality and cost against thresholds, and their table. */
#ifndef LM_EESWEEP_H
#define LM_EESWEEP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "earlyexit.h"

struct lm_ee_row {
	enum lm_ee_rule rule;         /* LM_EE_NONE: the full model */
	double threshold;
	struct lm_ee_cost cost;
	/* means over samples: vs the full model's greedy output, vs the reference */
	double em_full, rouge_full, chrf_full, em_ref, rouge_ref, chrf_ref;
};
/* rows[0] the full model, rows[1 + i] rule o->rule at thr[i]; sampling (o->temperature)
 * reseeded with seed + sample index for every run, so each threshold sees the same draws.
 * tk turns tokens into text for chrF. */
int lm_ee_sweep(struct lm_ee *ee, const struct lm_tokenizer *tk, const struct lm_ee_opts *o,
                const double *thr, size_t nthr, const struct lm_ee_sample *smp, size_t ns,
                size_t nnew, uint64_t seed, struct lm_ee_row *rows, lm_ee_progress *cb,
                void *ctx);
/* the table (TSV with a header line) or a JSON array of the rows; L: decoder layers */
void lm_ee_print_tsv(FILE *f, const struct lm_ee_row *rows, size_t n, int L);
json_t *lm_ee_rows_json(const struct lm_ee_row *rows, size_t n, int L);


#endif

/* eesweep.c: early exit's quality and cost against thresholds (see eesweep.h). */
#include "eesweep.h"
#include "textmetrics.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* text of tokens for chrF (ids past the tokenizer's vocabulary have no text) */
static char *text_of(const struct lm_tokenizer *tk, const int32_t *ids, size_t n, size_t *len)
{
	return lm_detokenize_known(tk, ids, n, -1, len);
}

static int score(struct lm_ee_row *r, const struct lm_tokenizer *tk, const int32_t *hyp,
                 const int32_t *full, const char *full_txt, size_t fl, const int32_t *ref,
                 size_t nref, const char *ref_txt, size_t rl, size_t nnew)
{
	size_t hl;
	char *ht = text_of(tk, hyp, nnew, &hl);
	if (!ht)
		return -1;
	r->em_full += lm_exact_match(hyp, nnew, full, nnew);
	r->rouge_full += lm_rouge_l(hyp, nnew, full, nnew);
	r->chrf_full += lm_chrf(ht, hl, full_txt, fl, 6, 2.0);
	r->em_ref += lm_exact_match(hyp, nnew, ref, nref);
	r->rouge_ref += lm_rouge_l(hyp, nnew, ref, nref);
	r->chrf_ref += lm_chrf(ht, hl, ref_txt, rl, 6, 2.0);
	free(ht);
	return 0;
}

int lm_ee_sweep(struct lm_ee *ee, const struct lm_tokenizer *tk, const struct lm_ee_opts *o,
                const double *thr, size_t nthr, const struct lm_ee_sample *smp, size_t ns,
                size_t nnew, uint64_t seed, struct lm_ee_row *rows, lm_ee_progress *cb,
                void *ctx)
{
	int32_t *full = xmalloc((nnew + 1) * sizeof *full), *hyp = xmalloc((nnew + 1) * sizeof *hyp);
	struct lm_ee_opts base = *o;
	int rc = -1;
	memset(rows, 0, (nthr + 1) * sizeof *rows);
	base.rule = LM_EE_NONE;
	rows[0].rule = LM_EE_NONE, rows[0].threshold = NAN;
	for (size_t i = 0; i < nthr; i++)
		rows[1 + i].rule = o->rule, rows[1 + i].threshold = thr[i];
	for (size_t s = 0; s < ns; s++) {
		const struct lm_ee_sample *sm = &smp[s];
		size_t fl, rl, nref = sm->nref < nnew ? sm->nref : nnew;
		char *ft = NULL, *rt = NULL;
		lm_rng_seed(&ee->rng, seed + s);
		if (lm_ee_generate(ee, &base, sm->ctx, sm->nctx, nnew, full, &rows[0].cost) < 0)
			goto out;
		ft = text_of(tk, full, nnew, &fl), rt = text_of(tk, sm->ref, nref, &rl);
		if (!ft || !rt || score(&rows[0], tk, full, full, ft, fl, sm->ref, nref, rt, rl, nnew) < 0)
			goto fail_txt;
		for (size_t i = 0; i < nthr; i++) {
			struct lm_ee_opts oi = *o;
			oi.threshold = thr[i];
			lm_rng_seed(&ee->rng, seed + s);
			if (lm_ee_generate(ee, &oi, sm->ctx, sm->nctx, nnew, hyp, &rows[1 + i].cost) < 0 ||
			    score(&rows[1 + i], tk, hyp, full, ft, fl, sm->ref, nref, rt, rl, nnew) < 0)
				goto fail_txt;
		}
		free(ft), free(rt);
		if (cb)
			cb(ctx, s + 1, ns);
		continue;
	fail_txt:
		free(ft), free(rt);
		goto out;
	}
	for (size_t i = 0; i <= nthr; i++) {
		struct lm_ee_row *r = &rows[i];
		double d = ns ? (double)ns : 1;
		r->em_full /= d, r->rouge_full /= d, r->chrf_full /= d;
		r->em_ref /= d, r->rouge_ref /= d, r->chrf_ref /= d;
	}
	rc = 0;
out:
	free(full), free(hyp);
	return rc;
}

/* per generated token, 0 when nothing was generated */
static double per_tok(double v, const struct lm_ee_cost *c)
{
	return c->tokens ? v / (double)c->tokens : 0;
}

/* the columns after rule and threshold, in the table and in the JSON: the table prints
 * value * tsv_scale in fmt ("n/a" for energy not read; the JSON has null) */
static const struct col {
	const char *tsv, *json, *fmt;
	double tsv_scale;
} cols[] = {
	{"mean_exit_layer", "mean_exit_layer", "%.4f", 1},
	{"layers_per_token", "layers_per_token", "%.4f", 1},
	{"layers_saved", "layers_saved", "%.4f", 1},
	{"kv_layers_per_token", "kv_layers_per_token", "%.4f", 1},
	{"gflops_per_token", "flops_per_token", "%.6f", 1e-9},
	{"ms_per_token", "ms_per_token", "%.4f", 1},
	{"j_per_token", "j_per_token", "%.6g", 1},
	{"em_full", "em_full", "%.4f", 1},
	{"rougeL_full", "rougeL_full", "%.4f", 1},
	{"chrf_full", "chrf_full", "%.3f", 1},
	{"em_ref", "em_ref", "%.4f", 1},
	{"rougeL_ref", "rougeL_ref", "%.4f", 1},
	{"chrf_ref", "chrf_ref", "%.3f", 1},
};
#define NCOLS (sizeof cols / sizeof *cols)
#define J_COL 6 /* j_per_token: only when the energy was read */

/* a row's values in the order of cols */
static void row_values(const struct lm_ee_row *r, int L, double *v)
{
	const struct lm_ee_cost *c = &r->cost;
	double lpt = per_tok(c->layers, c);
	double x[NCOLS] = {per_tok(c->exit_layer, c), lpt, 1.0 - lpt / L, per_tok(c->kv_layers, c),
	                   per_tok(c->flops, c), per_tok(c->seconds, c) * 1e3,
	                   c->energy_ok ? per_tok(c->joules, c) : 0, r->em_full, r->rouge_full,
	                   r->chrf_full, r->em_ref, r->rouge_ref, r->chrf_ref};
	memcpy(v, x, sizeof x);
}

void lm_ee_print_tsv(FILE *f, const struct lm_ee_row *rows, size_t n, int L)
{
	fprintf(f, "rule\tthreshold");
	for (size_t k = 0; k < NCOLS; k++)
		fprintf(f, "\t%s", cols[k].tsv);
	fputc('\n', f);
	for (size_t i = 0; i < n; i++) {
		const struct lm_ee_row *r = &rows[i];
		double v[NCOLS];
		row_values(r, L, v);
		if (r->rule == LM_EE_NONE)
			fprintf(f, "%s\t-", lm_ee_rule_name(r->rule));
		else
			fprintf(f, "%s\t%g", lm_ee_rule_name(r->rule), r->threshold);
		for (size_t k = 0; k < NCOLS; k++) {
			fputc('\t', f);
			if (k == J_COL && !r->cost.energy_ok)
				fputs("n/a", f);
			else
				fprintf(f, cols[k].fmt, v[k] * cols[k].tsv_scale);
		}
		fputc('\n', f);
	}
}

json_t *lm_ee_rows_json(const struct lm_ee_row *rows, size_t n, int L)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct lm_ee_row *r = &rows[i];
		double v[NCOLS];
		json_t *o = json_object();
		row_values(r, L, v);
		json_object_set_new(o, "rule", json_string(lm_ee_rule_name(r->rule)));
		json_object_set_new(o, "threshold", r->rule == LM_EE_NONE ? json_null() : json_real(r->threshold));
		json_object_set_new(o, "tokens", json_integer((json_int_t)r->cost.tokens));
		for (size_t k = 0; k < NCOLS; k++)
			json_object_set_new(o, cols[k].json, k == J_COL && !r->cost.energy_ok ? json_null()
			                                                                     : json_real(v[k]));
		json_array_append_new(a, o);
	}
	return a;
}

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

static const char *cols[] = {"rule", "threshold", "mean_exit_layer", "layers_per_token",
                             "layers_saved", "kv_layers_per_token", "gflops_per_token",
                             "ms_per_token", "j_per_token", "em_full", "rougeL_full",
                             "chrf_full", "em_ref", "rougeL_ref", "chrf_ref"};

void lm_ee_print_tsv(FILE *f, const struct lm_ee_row *rows, size_t n, int L)
{
	for (size_t i = 0; i < sizeof cols / sizeof *cols; i++)
		fprintf(f, "%s%s", i ? "\t" : "", cols[i]);
	fputc('\n', f);
	for (size_t i = 0; i < n; i++) {
		const struct lm_ee_row *r = &rows[i];
		const struct lm_ee_cost *c = &r->cost;
		char thr[32], j[32];
		if (r->rule == LM_EE_NONE)
			snprintf(thr, sizeof thr, "-");
		else
			snprintf(thr, sizeof thr, "%g", r->threshold);
		if (c->energy_ok)
			snprintf(j, sizeof j, "%.6g", per_tok(c->joules, c));
		else
			snprintf(j, sizeof j, "n/a");
		double lpt = per_tok(c->layers, c);
		fprintf(f, "%s\t%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.6f\t%.4f\t%s\t%.4f\t%.4f\t%.3f\t%.4f\t%.4f\t%.3f\n",
		        lm_ee_rule_name(r->rule), thr, per_tok(c->exit_layer, c), lpt, 1.0 - lpt / L,
		        per_tok(c->kv_layers, c), per_tok(c->flops, c) * 1e-9,
		        per_tok(c->seconds, c) * 1e3, j, r->em_full, r->rouge_full, r->chrf_full,
		        r->em_ref, r->rouge_ref, r->chrf_ref);
	}
}

json_t *lm_ee_rows_json(const struct lm_ee_row *rows, size_t n, int L)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct lm_ee_row *r = &rows[i];
		const struct lm_ee_cost *c = &r->cost;
		double lpt = per_tok(c->layers, c);
		json_t *o = json_object();
		json_object_set_new(o, "rule", json_string(lm_ee_rule_name(r->rule)));
		json_object_set_new(o, "threshold", r->rule == LM_EE_NONE ? json_null() : json_real(r->threshold));
		json_object_set_new(o, "tokens", json_integer((json_int_t)c->tokens));
		json_object_set_new(o, "mean_exit_layer", json_real(per_tok(c->exit_layer, c)));
		json_object_set_new(o, "layers_per_token", json_real(lpt));
		json_object_set_new(o, "layers_saved", json_real(1.0 - lpt / L));
		json_object_set_new(o, "kv_layers_per_token", json_real(per_tok(c->kv_layers, c)));
		json_object_set_new(o, "flops_per_token", json_real(per_tok(c->flops, c)));
		json_object_set_new(o, "ms_per_token", json_real(per_tok(c->seconds, c) * 1e3));
		json_object_set_new(o, "j_per_token", c->energy_ok ? json_real(per_tok(c->joules, c)) : json_null());
		json_object_set_new(o, "em_full", json_real(r->em_full));
		json_object_set_new(o, "rougeL_full", json_real(r->rouge_full));
		json_object_set_new(o, "chrf_full", json_real(r->chrf_full));
		json_object_set_new(o, "em_ref", json_real(r->em_ref));
		json_object_set_new(o, "rougeL_ref", json_real(r->rouge_ref));
		json_object_set_new(o, "chrf_ref", json_real(r->chrf_ref));
		json_array_append_new(a, o);
	}
	return a;
}

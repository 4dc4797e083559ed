/* zeroshot_metrics.c: the harness's metrics over scored items, and its report layout
 * (see zeroshot.h) */
#include "zeroshot.h"
#include "clock.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t lm_zs_pick(const struct lm_zs_ll *s, const size_t *nbytes, size_t n, int norm)
{
	size_t best = 0;
	double bv = -INFINITY;
	for (size_t i = 0; i < n; i++) {
		/* an empty choice text would divide by zero: count it as one byte */
		double v = norm ? s[i].ll / (double)(nbytes[i] ? nbytes[i] : 1) : s[i].ll;
		if (v > bv) /* the first of equals, as numpy's argmax */
			bv = v, best = i;
	}
	return best;
}

double lm_zs_stderr(size_t k, size_t n)
{
	if (n < 2)
		return NAN;
	double p = (double)k / (double)n;
	/* sample variance of 0/1 values: n p (1-p) / (n-1); over n for the mean's */
	return sqrt(p * (1 - p) / (double)(n - 1));
}

int lm_zs_eval(struct lm_zs_scorer *sc, const struct lm_zs_task *t, struct lm_zs_result *r,
               void (*pr)(void *, size_t, size_t), void *pctx)
{
	size_t total = 0;
	double t0 = lm_now();
	memset(r, 0, sizeof *r);
	r->t = t;
	for (size_t i = 0; i < t->n; i++)
		total += t->it[i].n;
	r->ll = xcalloc(total ? total : 1, sizeof *r->ll);
	for (size_t i = 0; i < t->n; i++) {
		const struct lm_zs_item *it = &t->it[i];
		struct lm_zs_ll *s = r->ll + r->nll;
		if (lm_zs_score(sc, (const char *const *)it->ctx, (const char *const *)it->cont, it->n,
		                t->kind == LM_ZS_LAMBADA, s) < 0)
			return lm_preerr("%s: line %zu", t->path, it->line);
		r->nll += it->n;
		if (t->kind == LM_ZS_LAMBADA) {
			r->acc += (size_t)s[0].greedy;
			r->ll_sum += s[0].ll;
		} else {
			r->acc += lm_zs_pick(s, it->nbytes, it->n, 0) == (size_t)it->gold;
			r->acc_norm += lm_zs_pick(s, it->nbytes, it->n, 1) == (size_t)it->gold;
		}
		r->n++;
		if (pr)
			pr(pctx, i + 1, t->n);
	}
	r->seconds = lm_now() - t0;
	return 0;
}

void lm_zs_result_free(struct lm_zs_result *r)
{
	for (size_t i = 0; i < r->nll; i++)
		free(r->ll[i].ids);
	free(r->ll);
	memset(r, 0, sizeof *r);
}

/* NaN (a standard error of one item) has no JSON number: null */
static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

json_t *lm_zs_task_json(const struct lm_zs_result *r)
{
	json_t *j = json_object();
	double n = (double)r->n;
	if (r->t->kind == LM_ZS_LAMBADA)
		json_object_set_new(j, "perplexity", num(exp(-r->ll_sum / n)));
	json_object_set_new(j, "acc", num((double)r->acc / n));
	json_object_set_new(j, "acc_stderr", num(lm_zs_stderr(r->acc, r->n)));
	if (r->t->has_norm) {
		json_object_set_new(j, "acc_norm", num((double)r->acc_norm / n));
		json_object_set_new(j, "acc_norm_stderr", num(lm_zs_stderr(r->acc_norm, r->n)));
	}
	return j;
}

json_t *lm_zs_samples_json(const struct lm_zs_result *r)
{
	json_t *a = json_array();
	const struct lm_zs_ll *s = r->ll;
	for (size_t i = 0; i < r->n; i++) {
		const struct lm_zs_item *it = &r->t->it[i];
		json_t *ll = json_array(), *nb = json_array(), *nt = json_array();
		for (size_t k = 0; k < it->n; k++) {
			json_array_append_new(ll, json_real(s[k].ll));
			json_array_append_new(nb, json_integer((json_int_t)it->nbytes[k]));
			json_array_append_new(nt, json_integer((json_int_t)s[k].ntok));
		}
		json_t *o = json_pack("{s:I, s:I, s:i, s:o, s:o, s:o}", "doc_id", (json_int_t)i, "line",
		                      (json_int_t)it->line, "target", it->gold, "ll", ll, "nbytes", nb,
		                      "tokens", nt);
		if (s[0].ids) {
			json_t *ids = json_array();
			for (size_t k = 0; k < it->n; k++) {
				json_t *one = json_array();
				for (size_t t = 0; t < s[k].nids; t++)
					json_array_append_new(one, json_integer(s[k].ids[t]));
				json_array_append_new(ids, one);
			}
			json_object_set_new(o, "ids", ids);
		}
		if (r->t->kind == LM_ZS_LAMBADA)
			json_object_set_new(o, "greedy", json_boolean(s[0].greedy));
		else {
			json_object_set_new(o, "pred", json_integer((json_int_t)lm_zs_pick(s, it->nbytes, it->n, 0)));
			json_object_set_new(o, "pred_norm",
			                    json_integer((json_int_t)lm_zs_pick(s, it->nbytes, it->n, 1)));
		}
		json_array_append_new(a, o);
		s += it->n;
	}
	return a;
}

static void row(FILE *f, const char *task, size_t n, const char *metric, double v, double se)
{
	fprintf(f, "%s\t%zu\t%s\t%.4f\t", task, n, metric, v);
	if (isfinite(se))
		fprintf(f, "%.4f\n", se);
	else
		fputs("-\n", f);
}

void lm_zs_print(FILE *f, const struct lm_zs_result *r, size_t n)
{
	fputs("task\titems\tmetric\tvalue\tstderr\n", f);
	for (size_t i = 0; i < n; i++) {
		const struct lm_zs_result *x = &r[i];
		double k = (double)x->n;
		if (x->t->kind == LM_ZS_LAMBADA)
			row(f, x->t->name, x->n, "perplexity", exp(-x->ll_sum / k), NAN);
		row(f, x->t->name, x->n, "acc", (double)x->acc / k, lm_zs_stderr(x->acc, x->n));
		if (x->t->has_norm)
			row(f, x->t->name, x->n, "acc_norm", (double)x->acc_norm / k,
			    lm_zs_stderr(x->acc_norm, x->n));
	}
}

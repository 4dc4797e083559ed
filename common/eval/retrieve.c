/* retrieve.c: top-k cosine retrieval and prompt assembly (see retrieve.h) */
#include "retrieve.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lm_ret_project(const float *proj, const float *v, size_t d, float *out)
{
	double nn = 0;
	for (size_t i = 0; i < d; i++) {
		double s = 0;
		if (proj)
			for (size_t j = 0; j < d; j++)
				s += (double)proj[i * d + j] * v[j];
		else
			s = v[i];
		out[i] = (float)s;
		nn += s * s;
	}
	if (nn > 0) {
		float inv = (float)(1.0 / sqrt(nn));
		for (size_t i = 0; i < d; i++)
			out[i] *= inv;
	}
}

int lm_ret_index_init(struct lm_ret_index *x, const float *emb, size_t n, size_t d,
                      const float *proj)
{
	size_t nd;
	memset(x, 0, sizeof *x);
	if (lm_mul(n, d, &nd) < 0 || lm_mul(nd, sizeof(float), &nd) < 0 || !(x->unit = lm_alloc(nd)))
		return lm_preerr("retrieval index");
	x->n = n, x->d = d, x->proj = proj;
	for (size_t i = 0; i < n; i++)
		lm_ret_project(proj, emb + i * d, d, x->unit + i * d);
	return 0;
}

void lm_ret_index_free(struct lm_ret_index *x)
{
	lm_free(x->unit);
	memset(x, 0, sizeof *x);
}

void lm_ret_topk(const struct lm_ret_index *x, const float *q, size_t k, size_t *idx, float *cosine)
{
	size_t d = x->d, have = 0;
	float *u = xmalloc(d * sizeof *u), *best = xmalloc((k ? k : 1) * sizeof *best);
	lm_ret_project(x->proj, q, d, u);
	/* insertion into a sorted list of k: the pool is scanned once, k is small */
	for (size_t i = 0; i < x->n; i++) {
		double s = 0;
		for (size_t j = 0; j < d; j++)
			s += (double)u[j] * x->unit[i * d + j];
		float c = (float)s;
		if (have == k && (k == 0 || c <= best[k - 1]))
			continue;
		size_t p = have < k ? have++ : k - 1;
		while (p > 0 && best[p - 1] < c) {  /* ties keep the earlier pool row first */
			best[p] = best[p - 1], idx[p] = idx[p - 1];
			p--;
		}
		best[p] = c, idx[p] = i;
	}
	if (cosine)
		memcpy(cosine, best, k * sizeof *best);
	free(u);
	free(best);
}

void lm_ret_random(struct lm_rng *r, size_t n, size_t k, size_t *idx)
{
	/* Floyd's sampling: k distinct values without an n-sized array */
	size_t m = 0;
	for (size_t j = n - k; j < n; j++) {
		size_t t = (size_t)lm_rng_below(r, j + 1), seen = 0;
		for (size_t i = 0; i < m; i++)
			seen |= idx[i] == t;
		idx[m++] = seen ? j : t;
	}
}

char *lm_ret_context(const char *const *demo, const size_t *idx, size_t k, const char *input)
{
	size_t len = strlen(input) + 1, sl = strlen(LM_DEMO_SEP);
	for (size_t i = 0; i < k; i++)
		len += strlen(demo[idx[i]]) + sl;
	char *s = xmalloc(len), *p = s;
	for (size_t i = k; i-- > 0;) {  /* the best last, next to the input */
		size_t l = strlen(demo[idx[i]]);
		memcpy(p, demo[idx[i]], l);
		memcpy(p + l, LM_DEMO_SEP, sl);
		p += l + sl;
	}
	strcpy(p, input);
	return s;
}

char **lm_ret_contexts(const struct lm_model *m, const struct lm_tokenizer *tk,
                       const struct lm_emb *e, const struct lm_task *t,
                       const struct lm_ret_opts *o)
{
	struct lm_embed_cfg ec = lm_emb_cfg(e);
	struct lm_ret_index x;
	struct lm_rng rng;
	size_t d = e->d, *idx = NULL;
	const char **q = NULL;
	float *Q = NULL;
	char **ctx = NULL;

	if (o->k > e->n) {
		lm_seterr("-k %zu: the pool has only %zu prompts", o->k, e->n);
		return NULL;
	}
	uint32_t fp;
	if (lm_model_fingerprint(m, &fp) < 0 || lm_emb_check_model(e, &m->cfg, fp) < 0)
		return NULL;
	if (lm_ret_index_init(&x, e->emb, e->n, d, o->no_projection ? NULL : e->proj) < 0)
		return NULL;
	lm_rng_seed(&rng, o->seed);
	q = xmalloc(t->n * sizeof *q);
	for (size_t i = 0; i < t->n; i++)
		q[i] = t->it[i].input;
	if (!o->random) {
		if (!(Q = lm_alloc(t->n * d * sizeof *Q)) ||
		    lm_embed_texts(m, tk, &ec, q, t->n, Q, NULL, NULL) < 0)
			goto out;
	}
	idx = xmalloc((o->k ? o->k : 1) * sizeof *idx);
	ctx = xcalloc(t->n, sizeof *ctx);
	for (size_t i = 0; i < t->n; i++) {
		if (o->random)
			lm_ret_random(&rng, e->n, o->k, idx);
		else
			lm_ret_topk(&x, Q + i * d, o->k, idx, NULL);
		ctx[i] = lm_ret_context((const char *const *)e->lines, idx, o->k, q[i]);
	}
out:
	free(idx);
	free(q);
	lm_free(Q);
	lm_ret_index_free(&x);
	return ctx;
}

void lm_ret_contexts_free(char **ctx, size_t n)
{
	if (!ctx)
		return;
	for (size_t i = 0; i < n; i++)
		free(ctx[i]);
	free(ctx);
}

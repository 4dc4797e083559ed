/* calib.c: see calib.h */
#include "calib.h"
#include "kernels.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int lm_calib_init(struct lm_calib *c, const struct lm_model *m, const int32_t *ids, size_t W,
                  size_t T, size_t B)
{
	size_t xn, tn;
	memset(c, 0, sizeof *c);
	if (W == 0 || T == 0)
		return lm_seterr("calibration: no windows");
	if (B > W)
		B = W;
	if (B == 0)
		B = 1;
	c->W = W, c->T = T, c->B = B, c->C = (size_t)m->cfg.hidden_size;
	if (lm_fwd_init(&c->s, &m->cfg, B, T) < 0)
		return -1;
	if (lm_mul(W * T, c->C, &xn) < 0 || lm_mul(xn, sizeof(float), &xn) < 0 ||
	    lm_mul(B * T, c->C * sizeof(float), &tn) < 0 || !(c->X = lm_alloc(xn)) ||
	    !(c->tmp = lm_alloc(tn))) {
		lm_calib_free(c);
		return lm_preerr("calibration activations (%zu windows of %zu tokens)", W, T);
	}
	for (size_t w0 = 0; w0 < W; w0 += B) {
		size_t nb = W - w0 < B ? W - w0 : B;
		if (lm_forward_embed(&c->s, m, ids + w0 * T, nb, T) < 0) {
			lm_calib_free(c);
			return -1;
		}
		memcpy(c->X + w0 * T * c->C, c->s.x, nb * T * c->C * sizeof *c->X);
	}
	return 0;
}

int lm_calib_observe(struct lm_calib *c, const struct lm_layer *l, int layer, lm_fwd_hook *hook,
                     void *ctx)
{
	int rc = 0;
	c->s.hook = hook, c->s.hook_ctx = ctx;
	for (size_t w0 = 0; w0 < c->W && rc == 0; w0 += c->B) {
		size_t nb = c->W - w0 < c->B ? c->W - w0 : c->B;
		memcpy(c->tmp, c->X + w0 * c->T * c->C, nb * c->T * c->C * sizeof *c->tmp);
		rc = lm_forward_layer(&c->s, l, layer, c->tmp, nb, c->T);
	}
	c->s.hook = NULL, c->s.hook_ctx = NULL;
	return rc;
}

int lm_calib_advance(struct lm_calib *c, const struct lm_layer *l, int layer)
{
	for (size_t w0 = 0; w0 < c->W; w0 += c->B) {
		size_t nb = c->W - w0 < c->B ? c->W - w0 : c->B;
		if (lm_forward_layer(&c->s, l, layer, c->X + w0 * c->T * c->C, nb, c->T) < 0)
			return -1;
	}
	return 0;
}

void lm_calib_free(struct lm_calib *c)
{
	lm_free(c->X);
	lm_free(c->tmp);
	lm_fwd_free(&c->s);
	memset(c, 0, sizeof *c);
}

int lm_calib_group(enum lm_opt_kind k)
{
	switch (k) {
	case LM_T_Q_W: case LM_T_K_W: case LM_T_V_W: return LM_G_QKV;
	case LM_T_O_W: return LM_G_O;
	case LM_T_FC1_W: return LM_G_FC1;
	case LM_T_FC2_W: return LM_G_FC2;
	default: return -1;
	}
}

int lm_layer_stats_init(struct lm_layer_stats *st, const struct lm_opt_config *cfg,
                        const int want[LM_G_COUNT], int hessian, size_t T)
{
	memset(st, 0, sizeof *st);
	st->hessian = hessian, st->T = T;
	st->cols[LM_G_QKV] = st->cols[LM_G_O] = st->cols[LM_G_FC1] = (size_t)cfg->hidden_size;
	st->cols[LM_G_FC2] = (size_t)cfg->ffn_dim;
	for (int g = 0; g < LM_G_COUNT; g++) {
		if (!(st->want[g] = want[g]))
			continue;
		if (hessian ? lm_hessian_init(&st->h[g], st->cols[g]) < 0
		            : !(st->sumsq[g] = calloc(st->cols[g], sizeof(double)))) {
			lm_layer_stats_free(st);
			return hessian ? -1 : lm_seterr("out of memory");
		}
	}
	return 0;
}

void lm_layer_stats_free(struct lm_layer_stats *st)
{
	for (int g = 0; g < LM_G_COUNT; g++) {
		lm_hessian_free(&st->h[g]);
		free(st->sumsq[g]);
	}
	memset(st, 0, sizeof *st);
}

struct sq_job {
	double *s;
	const float *x;
	size_t N, cols;
};

/* columns j0..j1 of the sums: a column range per thread, so no sum is shared */
static void sumsq_cols(void *ctx, size_t j0, size_t j1, int part)
{
	const struct sq_job *j = ctx;
	(void)part;
	for (size_t r = 0; r < j->N; r++) {
		const float *x = j->x + r * j->cols;
		for (size_t c = j0; c < j1; c++)
			j->s[c] += (double)x[c] * x[c];
	}
}

void lm_layer_stats_hook(void *ctx, int layer, enum lm_opt_kind k, const float *inp, size_t N,
                         size_t cols)
{
	struct lm_layer_stats *st = ctx;
	int g = lm_calib_group(k);
	(void)layer;
	/* k and v see q's input again */
	if (g < 0 || !st->want[g] || k == LM_T_K_W || k == LM_T_V_W || cols != st->cols[g])
		return;
	if (st->hessian) {
		lm_hessian_add(&st->h[g], inp, N, N / st->T);
	} else {
		struct sq_job j = {st->sumsq[g], inp, N, cols};
		lm_parallel_for(cols, 64, 0, sumsq_cols, &j);
	}
}

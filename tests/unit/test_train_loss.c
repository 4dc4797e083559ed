/* test_train_loss.c: the losses beyond plain next-token cross-entropy (train.h
 * lm_train_step_loss, backward.h lm_logits_loss_backward), which lm-unlearn and the
 * early-exit training build on.
 *
 * 1. The kernel with per-row weights and with soft targets against central finite
 *    differences of a double-precision reference written here.
 * 2. Identities on a transformers fixture, each of which a wrong implementation breaks:
 *    - no options = lm_train_step; an exit at the last layer alone = lm_train_step;
 *    - an exit after layer e = the plain loss of the same model cut after layer e;
 *    - two exits with weights a, b = a * (first alone) + b * (second alone), loss and
 *      gradients (they accumulate, the head adapter is converted once per step);
 *    - weights -1/n on every target = the negated plain gradient (gradient ascent);
 *    - weight 0 on a position = no target there;
 *    - soft targets from the model's own outputs: zero gradient, loss = the entropy. */
#include "backward.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "rng.h"
#include "train.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <math.h>
#include <string.h>

#define TOL_FD 1e-4     /* float kernel vs double finite differences */
#define TOL_SAME 2e-5   /* two float computations of the same quantity */
#define FD_H 1e-3

static struct lm_rng rng;

static void fill(float *x, size_t n, double scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(scale * (2.0 * lm_rng_uniform(&rng) - 1.0));
}

/* ---- 1. the kernel ---- */

struct soft_ctx {
	double *x, *w, *xr, *wr; /* inputs [N,E], head [V,E]; the reference's inputs [N,E] and
	                            head [V,E] (xr NULL: hard targets) */
	const int32_t *tgt;
	const float *rw;
	size_t N, V, E;
	double scale;
};

static void logits(const double *x, const double *w, size_t V, size_t E, double *z)
{
	for (size_t v = 0; v < V; v++) {
		z[v] = 0;
		for (size_t e = 0; e < E; e++)
			z[v] += x[e] * w[v * E + e];
	}
}

static double logsumexp(const double *z, size_t V)
{
	double m = -INFINITY, s = 0;
	for (size_t v = 0; v < V; v++)
		m = fmax(m, z[v]);
	for (size_t v = 0; v < V; v++)
		s += exp(z[v] - m);
	return m + log(s);
}

static double soft_loss(void *p)
{
	struct soft_ctx *c = p;
	double L = 0, *z = xmalloc(c->V * sizeof *z), *zq = xmalloc(c->V * sizeof *zq);
	for (size_t n = 0; n < c->N; n++) {
		if (c->tgt[n] < 0)
			continue;
		logits(c->x + n * c->E, c->w, c->V, c->E, z);
		double lse = logsumexp(z, c->V), nll = lse - z[c->tgt[n]];
		if (c->xr) {
			logits(c->xr + n * c->E, c->wr, c->V, c->E, zq);
			double lq = logsumexp(zq, c->V);
			nll = 0;
			for (size_t v = 0; v < c->V; v++)
				nll -= exp(zq[v] - lq) * (z[v] - lse);
		}
		L += (c->rw ? c->rw[n] : 1.0) * nll;
	}
	free(z), free(zq);
	return c->scale * L;
}

static double fd_err(double *x, size_t n, struct soft_ctx *c, const float *have)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		double old = x[i];
		x[i] = old + FD_H;
		double lp = soft_loss(c);
		x[i] = old - FD_H;
		double lm = soft_loss(c);
		x[i] = old;
		double g = (lp - lm) / (2 * FD_H);
		md = fmax(md, fabs(g - have[i]));
		mb = fmax(mb, fabs(g));
	}
	return mb > 0 ? md / mb : md;
}

static double *to_d(const float *x, size_t n)
{
	double *d = xmalloc(n * sizeof *d);
	for (size_t i = 0; i < n; i++)
		d[i] = x[i];
	return d;
}

/* soft: reference inputs; ws_rows: rows of workspace given (0: the kernel's own) */
static void test_kernel(size_t N, size_t V, size_t E, int soft, int weights, size_t ws_rows)
{
	float *x = xmalloc(N * E * 4), *w = xmalloc(V * E * 4), *xr = xmalloc(N * E * 4);
	float *dx = xmalloc(N * E * 4), *dw = xcalloc(V * E, 4), *nll = xmalloc(N * 4);
	float *rw = xmalloc(N * 4), *ws = ws_rows ? xmalloc(ws_rows * V * 4) : NULL;
	float *wr = xmalloc(V * E * 4);
	int32_t *tgt = xmalloc(N * 4);
	fill(x, N * E, 1.0), fill(w, V * E, 1.0), fill(xr, N * E, 1.0), fill(rw, N, 1.0);
	fill(wr, V * E, 1.0);
	for (size_t n = 0; n < N; n++)
		tgt[n] = n % 4 == 2 ? -1 : (int32_t)lm_rng_below(&rng, V);
	struct lm_ce_opts o = {weights ? rw : NULL, soft ? xr : NULL, wr};
	const float scale = 0.37f;
	CHECK(lm_logits_loss_backward(nll, dx, dw, x, w, tgt, N, V, E, scale, &o, ws,
	                              ws_rows * V) == 0);
	struct soft_ctx c = {to_d(x, N * E), to_d(w, V * E), soft ? to_d(xr, N * E) : NULL,
	                     to_d(wr, V * E), tgt,
	                     weights ? rw : NULL, N, V, E, scale};
	double ex = fd_err(c.x, N * E, &c, dx), ew = fd_err(c.w, V * E, &c, dw);
	CHECKF(ex < TOL_FD && ew < TOL_FD, "loss kernel N=%zu V=%zu soft=%d weights=%d: dinp %g dhead %g",
	       N, V, soft, weights, ex, ew);
	/* the per-row values are the rows' terms */
	double s = 0;
	for (size_t n = 0; n < N; n++)
		s += (double)scale * (weights ? rw[n] : 1.0) * nll[n];
	CHECKF(fabs(s - soft_loss(&c)) <= 1e-5 * fabs(s) + 1e-6, "loss %g vs %g", s, soft_loss(&c));
	free(c.x), free(c.w), free(c.xr), free(c.wr), free(wr);
	free(x), free(w), free(xr), free(dx), free(dw), free(nll), free(rw), free(ws), free(tgt);
}

/* ---- 2. identities on a fixture ---- */

enum { B = 2, T = 16, N = B * T };

/* gradients of every parameter, concatenated */
static float *grads(const struct lm_train *tr)
{
	float *g = xmalloc(tr->nfloats * sizeof *g);
	memcpy(g, tr->gmem, tr->nfloats * sizeof *g);
	return g;
}

static double rel(const float *a, const float *b, size_t n)
{
	return unit_relerr(a, b, n);
}

static float *step(struct lm_train *tr, const int32_t *ids, const struct lm_train_loss *ls,
                   double *loss)
{
	lm_train_zero_grad(tr);
	int r = ls ? lm_train_step_loss(tr, ids, B, T, ls, loss) : lm_train_step(tr, ids, B, T, loss);
	CHECKF(r == 0, "step: %s", lm_errmsg());
	return grads(tr);
}

/* the gradients of the parameters of layers 0..e and the final LayerNorm from a training
 * over the whole model (wh) and over the model cut after layer e (cut): same names */
static double cmp_cut(const struct lm_train *whole, const float *gw, const struct lm_train *cut,
                      const float *gc)
{
	double worst = 0;
	size_t found = 0;
	for (size_t i = 0; i < cut->npar; i++) {
		const struct lm_tparam *p = &cut->par[i];
		for (size_t j = 0; j < whole->npar; j++) {
			const struct lm_tparam *q = &whole->par[j];
			if (strcmp(p->name, q->name))
				continue;
			found++;
			worst = fmax(worst, rel(gw + (q->g - whole->gmem), gc + (p->g - cut->gmem), p->n));
		}
	}
	CHECKF(found == cut->npar, "%zu of %zu tensors of the cut model found", found, cut->npar);
	return worst;
}

static void test_model(const char *root, const char *fx)
{
	char dir[512];
	struct lm_model m;
	struct lm_train tr, tc;
	int32_t ids[N], tgt[N];
	double l0, l1, l2, la, lb;
	snprintf(dir, sizeof dir, "%s/%s", root, fx);
	if (load_model(&m, dir) < 0) {
		CHECK(0);
		return;
	}
	int L = m.cfg.num_layers;
	for (size_t i = 0; i < N; i++)
		ids[i] = (int32_t)lm_rng_below(&rng, (uint64_t)m.cfg.vocab_size);

	/* biases + LayerNorm, and a standard LoRA on the head (its per-step conversion) */
	struct lm_train_opts o = {.perp = 1, .lora_head = 1, .rank = 2, .alpha = 4, .layer = -1,
	                          .seed = 7};
	CHECKF(lm_train_init(&tr, &m, &o, B, T) == 0, "%s: %s", fx, lm_errmsg());
	/* LoRA B starts at zero: give the head adapter a nonzero B so dA is not trivially 0 */
	for (size_t i = 0; i < tr.npar; i++)
		if (tr.par[i].lora == 'B')
			fill(tr.par[i].p, tr.par[i].n, 0.05);
	float *g0 = step(&tr, ids, NULL, &l0);

	struct lm_train_loss ls = {0};
	float *g1 = step(&tr, ids, &ls, &l1);
	CHECKF(l1 == l0 && rel(g1, g0, tr.nfloats) == 0, "%s: empty options differ from the plain step",
	       fx);
	free(g1);
	int last = L - 1;
	float wl = 1.0f;
	ls = (struct lm_train_loss){.exits = &last, .exit_w = &wl, .nexits = 1};
	g1 = step(&tr, ids, &ls, &l1);
	CHECKF(fabs(l1 - l0) <= 1e-6 * l0 && rel(g1, g0, tr.nfloats) < TOL_SAME,
	       "%s: an exit at the last layer differs from the plain step", fx);
	free(g1);

	/* ascent: -1/n on every target */
	float rw[N];
	size_t cnt = 0;
	for (size_t i = 0; i < N; i++)
		cnt += (i % T) + 1 < T;
	for (size_t i = 0; i < N; i++)
		rw[i] = (i % T) + 1 < T ? -1.0f / (float)cnt : 0.0f;
	ls = (struct lm_train_loss){.weight = rw};
	g1 = step(&tr, ids, &ls, &l1);
	for (size_t i = 0; i < tr.nfloats; i++)
		g1[i] = -g1[i];
	CHECKF(fabs(l1 + l0) <= 1e-6 * l0 && rel(g1, g0, tr.nfloats) < TOL_SAME,
	       "%s: ascent is not the negated descent (%g, %g)", fx, l1, l0);
	free(g1);

	/* weight 0 at a position = no target there (explicit targets) */
	for (size_t i = 0; i < N; i++) {
		tgt[i] = (i % T) + 1 < T ? ids[i + 1] : -1;
		rw[i] = 0;
	}
	cnt = 0;
	for (size_t i = 0; i < N; i++) {
		if (i % 3 == 0)
			tgt[i] = -1;
		cnt += tgt[i] >= 0;
	}
	for (size_t i = 0; i < N; i++)
		rw[i] = tgt[i] >= 0 ? 1.0f / (float)cnt : 0.0f;
	ls = (struct lm_train_loss){.targets = tgt};
	float *gm = step(&tr, ids, &ls, &la);
	for (size_t i = 0; i < N; i++)
		if (tgt[i] < 0 && (i % T) + 1 < T)
			tgt[i] = ids[i + 1];  /* a target again, weighted 0 */
	ls = (struct lm_train_loss){.targets = tgt, .weight = rw};
	g1 = step(&tr, ids, &ls, &lb);
	CHECKF(fabs(la - lb) <= 1e-6 * la && rel(g1, gm, tr.nfloats) < TOL_SAME,
	       "%s: a zero weight differs from no target", fx);
	free(g1), free(gm);

	/* two exits = the weighted sum of each alone */
	int two[2] = {0, last};
	float w2[2] = {0.7f, 0.3f}, w1 = 1.0f;
	double el[2];
	ls = (struct lm_train_loss){.exits = two, .exit_w = w2, .nexits = 2, .exit_loss = el};
	float *g2 = step(&tr, ids, &ls, &l2);
	ls = (struct lm_train_loss){.exits = &two[0], .exit_w = &w1, .nexits = 1};
	float *ga = step(&tr, ids, &ls, &la);
	for (size_t i = 0; i < tr.nfloats; i++)
		ga[i] = w2[0] * ga[i] + w2[1] * g0[i];
	CHECKF(fabs(l2 - (w2[0] * la + w2[1] * l0)) <= 1e-6 * l2 && fabs(el[0] - la) <= 1e-6 * la &&
	       fabs(el[1] - l0) <= 1e-6 * l0, "%s: exit losses %g (%g %g) vs %g %g", fx, l2, el[0],
	       el[1], la, l0);
	CHECKF(rel(g2, ga, tr.nfloats) < TOL_SAME, "%s: two exits: gradient error %g", fx,
	       rel(g2, ga, tr.nfloats));
	free(g2), free(ga), free(g0);

	lm_train_free(&tr);

	/* an exit after layer 0 = the plain loss of the model cut after layer 0 */
	struct lm_model cut = m;
	cut.cfg.num_layers = 1;
	o = (struct lm_train_opts){.perp = 1, .layer = -1};
	CHECKF(lm_train_init(&tr, &m, &o, B, T) == 0, "%s: %s", fx, lm_errmsg());
	CHECKF(lm_train_init(&tc, &cut, &o, B, T) == 0, "%s: %s", fx, lm_errmsg());
	g0 = step(&tr, ids, NULL, &l0);
	/* soft targets from the model's own outputs (forward.h's pass; no adapter, so both passes see the same weights): p = q, so the gradient
	 * vanishes up to the rounding between the two passes */
	{
		size_t E = (size_t)m.cfg.word_embed_proj_dim;
		float *xf = xmalloc(N * E * sizeof *xf);
		struct lm_fwd s;
		CHECK(lm_fwd_init(&s, &m.cfg, B, T) == 0);
		CHECK(lm_forward_embed(&s, &m, ids, B, T) == 0);
		for (int l = 0; l < L; l++)
			CHECK(lm_forward_layer(&s, &m.layers[l], l, s.x, B, T) == 0);
		CHECK(lm_forward_final(&s, &m, s.x, xf, N) == 0);
		lm_fwd_free(&s);
		ls = (struct lm_train_loss){.ref_xf = xf};
		g1 = step(&tr, ids, &ls, &l1);
		double mg = 0, m0 = 0;
		for (size_t i = 0; i < tr.nfloats; i++)
			mg = fmax(mg, fabs(g1[i])), m0 = fmax(m0, fabs(g0[i]));
		CHECKF(mg < 1e-4 * m0 && l1 > 0 && isfinite(l1),
		       "%s: soft targets from itself: max gradient %g (plain %g), loss %g", fx, mg, m0, l1);
		free(g1), free(xf);
	}
	int zero = 0;
	ls = (struct lm_train_loss){.exits = &zero, .exit_w = &w1, .nexits = 1};
	ga = step(&tr, ids, &ls, &la);
	float *gc = step(&tc, ids, NULL, &lb);
	double e = cmp_cut(&tr, ga, &tc, gc);
	CHECKF(fabs(la - lb) <= 1e-6 * lb && e < TOL_SAME, "%s: exit 0 vs the cut model: loss %g %g, grad %g",
	       fx, la, lb, e);
	free(ga), free(gc);
	lm_train_free(&tc);
	lm_train_free(&tr);
	free(g0);
	lm_model_free(&m);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA");
	if (!root)
		root = "tests/fixtures";
	lm_rng_seed(&rng, 99);
	lm_set_threads(1);
	test_kernel(5, 23, 7, 0, 1, 0);
	test_kernel(9, 19, 6, 1, 0, 0);
	test_kernel(13, 17, 5, 1, 1, 4);  /* several chunks of 2 rows (half the workspace) */
	test_kernel(3, 11, 4, 1, 1, 1);   /* a workspace too small for soft targets */
	test_model(root, "pre-ln");
	test_model(root, "post-ln-proj");
	return unit_done("train_loss");
}

/* test_backward.c: the backward pass, three ways.
 *
 * 1. Every backward kernel of backward.h against central finite differences of a double
 *    precision reference of its forward (written here, independent of kernels.c), on small
 *    odd shapes that reach the kernels' tails, blocks and chunks: L = sum(G * out) with a
 *    random G, so dL/dout = G.
 * 2. The whole model (train.h) against transformers: for every fixture in
 *    $LM_TESTDATA/{pre-ln,post-ln-proj,fp16}, the gradient of the mean shifted
 *    cross-entropy for EVERY parameter within TOL_GRAD of reference.safetensors' grad.*.
 * 3. Training machinery: AdamW against a hand-written double version, LoRA / MaskLoRA /
 *    ScaleLoRA (gradients by finite differences, the merge gives the same loss, pruned
 *    zeros stay zero), masked full training keeps zeros, frozen tensors are untouched.
 * 4. bf16 compute (lm_set_compute): the kernels against their f32 selves and the linear
 *    layers' products against a double sum of the bf16-rounded operands, and a fixture's
 *    whole backward against f32 on the bf16 scale of that fixture (skipped without
 *    AVX512_BF16). */
#include "backward.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "opt.h"
#include "rng.h"
#include "safetensors.h"
#include "train.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#define TOL_FD 1e-4     /* float kernel vs double finite differences, relative */
#define TOL_EXACT 1e-5  /* two float computations of the same sum, relative */
#define TOL_GRAD 1e-4   /* model gradients vs transformers, relative (max abs err / max abs) */
#define FD_H 1e-3       /* central difference step (double forward: error ~h^2) */

static struct lm_rng rng;

static void fill(float *x, size_t n, double scale)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(scale * lm_rng_normal(&rng));
}

static double *to_d(const float *x, size_t n)
{
	double *d = xmalloc(n * sizeof *d);
	for (size_t i = 0; i < n; i++)
		d[i] = x[i];
	return d;
}

/* max |a - b| / max |b| with a float, b double */
static double relerr_fd(const float *a, const double *b, size_t n)
{
	double md = 0, mb = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (d > md || isnan(d))
			md = isnan(d) ? INFINITY : d;
		if (fabs(b[i]) > mb)
			mb = fabs(b[i]);
	}
	return mb > 0 ? md / mb : md;
}

/* central differences of f over the entries x[0..n) (every `stride`-th one; the others are
 * copied from `have` so they do not count) */
typedef double loss_fn(void *ctx);
static void fd(double *x, size_t n, size_t stride, loss_fn *f, void *ctx, const float *have,
               double *g)
{
	for (size_t i = 0; i < n; i++) {
		if (i % stride) {
			g[i] = have[i];
			continue;
		}
		double old = x[i];
		x[i] = old + FD_H;
		double lp = f(ctx);
		x[i] = old - FD_H;
		double lm = f(ctx);
		x[i] = old;
		g[i] = (lp - lm) / (2 * FD_H);
	}
}

static double check_fd(const char *what, double *x, size_t n, size_t stride, loss_fn *f,
                       void *ctx, const float *have)
{
	double *g = xmalloc(n * sizeof *g);
	fd(x, n, stride, f, ctx, have, g);
	double e = relerr_fd(have, g, n);
	CHECKF(e < TOL_FD, "%s: relative error %g against finite differences", what, e);
	free(g);
	return e;
}

static double worst_fd;
static void note(double e)
{
	if (e > worst_fd)
		worst_fd = e;
}

/* ======================================================================================
 * layernorm
 * ====================================================================================== */

struct ln_ctx {
	double *x, *w, *b, *G;
	size_t N, C;
};

static double ln_loss(void *p)
{
	struct ln_ctx *c = p;
	double L = 0;
	for (size_t r = 0; r < c->N; r++) {
		const double *x = c->x + r * c->C;
		double m = 0, v = 0;
		for (size_t i = 0; i < c->C; i++)
			m += x[i];
		m /= (double)c->C;
		for (size_t i = 0; i < c->C; i++)
			v += (x[i] - m) * (x[i] - m);
		v /= (double)c->C;
		double rs = 1 / sqrt(v + 1e-5);
		for (size_t i = 0; i < c->C; i++)
			L += c->G[r * c->C + i] * ((x[i] - m) * rs * c->w[i] + c->b[i]);
	}
	return L;
}

static void test_layernorm(size_t N, size_t C)
{
	float *x = xmalloc(N * C * 4), *w = xmalloc(C * 4), *b = xmalloc(C * 4), *G = xmalloc(N * C * 4);
	float *out = xmalloc(N * C * 4), *mean = xmalloc(N * 4), *rstd = xmalloc(N * 4);
	float *dx = xcalloc(N * C, 4), *dw = xcalloc(C, 4), *db = xcalloc(C, 4);
	fill(x, N * C, 2.0);
	for (size_t i = 0; i < N * C; i++)
		x[i] += 0.5f; /* a mean away from 0 */
	fill(w, C, 1.0), fill(b, C, 1.0), fill(G, N * C, 1.0);
	lm_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f);
	lm_layernorm_backward(dx, dw, db, G, x, w, mean, rstd, N, C, 0);

	struct ln_ctx c = {to_d(x, N * C), to_d(w, C), to_d(b, C), to_d(G, N * C), N, C};
	note(check_fd("layernorm dinp", c.x, N * C, 1, ln_loss, &c, dx));
	note(check_fd("layernorm dw", c.w, C, 1, ln_loss, &c, dw));
	note(check_fd("layernorm db", c.b, C, 1, ln_loss, &c, db));

	/* accumulate mode adds; dinp may alias dout */
	float *acc = xmalloc(N * C * 4), *al = xmalloc(N * C * 4);
	for (size_t i = 0; i < N * C; i++)
		acc[i] = 1.0f;
	lm_layernorm_backward(acc, NULL, NULL, G, x, w, mean, rstd, N, C, 1);
	double e = 0;
	for (size_t i = 0; i < N * C; i++)
		e = fmax(e, fabs(acc[i] - 1.0f - dx[i]));
	CHECKF(e < 1e-5, "layernorm accumulate: %g", e);
	memcpy(al, G, N * C * 4);
	lm_layernorm_backward(al, NULL, NULL, al, x, w, mean, rstd, N, C, 0);
	/* bitwise: the same arithmetic in place as out of place (no BLAS) */
	CHECK(memcmp(al, dx, N * C * 4) == 0);
	free(acc), free(al);
	free(c.x), free(c.w), free(c.b), free(c.G);
	free(x), free(w), free(b), free(G), free(out), free(mean), free(rstd), free(dx), free(dw), free(db);
}

/* ======================================================================================
 * matmul
 * ====================================================================================== */

struct mm_ctx {
	double *x, *w, *b, *G;
	size_t N, IN, OUT;
};

static double mm_loss(void *p)
{
	struct mm_ctx *c = p;
	double L = 0;
	for (size_t n = 0; n < c->N; n++)
		for (size_t o = 0; o < c->OUT; o++) {
			double s = c->b[o];
			for (size_t i = 0; i < c->IN; i++)
				s += c->x[n * c->IN + i] * c->w[o * c->IN + i];
			L += c->G[n * c->OUT + o] * s;
		}
	return L;
}

static void test_matmul(size_t N, size_t IN, size_t OUT)
{
	float *x = xmalloc(N * IN * 4), *w = xmalloc(OUT * IN * 4), *b = xmalloc(OUT * 4);
	float *G = xmalloc(N * OUT * 4), *dx = xmalloc(N * IN * 4), *dw = xcalloc(OUT * IN, 4);
	float *db = xcalloc(OUT, 4);
	fill(x, N * IN, 1.0), fill(w, OUT * IN, 1.0), fill(b, OUT, 1.0), fill(G, N * OUT, 1.0);
	struct lm_mat m = {.dtype = LM_F32, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = w};
	CHECK(lm_matmul_backward_inp(dx, G, &m, N, 0, NULL) == 0);
	lm_matmul_backward_w(dw, db, G, x, N, IN, OUT, 1);
	struct mm_ctx c = {to_d(x, N * IN), to_d(w, OUT * IN), to_d(b, OUT), to_d(G, N * OUT), N, IN, OUT};
	note(check_fd("matmul dinp", c.x, N * IN, 1, mm_loss, &c, dx));
	note(check_fd("matmul dw", c.w, OUT * IN, 1, mm_loss, &c, dw));
	note(check_fd("matmul db", c.b, OUT, 1, mm_loss, &c, db));

	/* f16 weights: the same product as f32 weights holding the f16 values */
	uint16_t *h = xmalloc(OUT * IN * 2);
	float *wr = xmalloc(OUT * IN * 4), *d16 = xmalloc(N * IN * 4), *d32 = xmalloc(N * IN * 4);
	for (size_t i = 0; i < OUT * IN; i++) {
		h[i] = lm_f32_to_f16(w[i]);
		wr[i] = lm_f16_to_f32(h[i]);
	}
	struct lm_mat mh = {.dtype = LM_F16, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = h}, mr = {.dtype = LM_F32, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = wr};
	for (size_t i = 0; i < N * IN; i++)
		d16[i] = d32[i] = 0.25f;
	CHECK(lm_matmul_backward_inp(d16, G, &mh, N, 1, NULL) == 0);
	CHECK(lm_matmul_backward_inp(d32, G, &mr, N, 1, NULL) == 0);
	double e = unit_relerr(d16, d32, N * IN);
	CHECKF(e < TOL_EXACT, "matmul dinp f16 vs f32: %g", e);
	/* overwrite (dw scratch) mode */
	float *dw2 = xmalloc(OUT * IN * 4);
	for (size_t i = 0; i < OUT * IN; i++)
		dw2[i] = 7.0f;
	lm_matmul_backward_w(dw2, NULL, G, x, N, IN, OUT, 0);
	CHECK(unit_relerr(dw2, dw, OUT * IN) < TOL_EXACT);
	free(dw2), free(h), free(wr), free(d16), free(d32);
	free(c.x), free(c.w), free(c.b), free(c.G);
	free(x), free(w), free(b), free(G), free(dx), free(dw), free(db);
}

/* a matrix big enough to take several f16 tiles: f16 vs f32 agree */
static void test_matmul_tiles(void)
{
	size_t N = 3, IN = 512, OUT = 2100;
	uint16_t *h = xmalloc(OUT * IN * 2);
	float *wr = xmalloc(OUT * IN * 4), *G = xmalloc(N * OUT * 4), *a = xmalloc(N * IN * 4);
	float *b = xmalloc(N * IN * 4);
	fill(wr, OUT * IN, 1.0), fill(G, N * OUT, 1.0);
	for (size_t i = 0; i < OUT * IN; i++) {
		h[i] = lm_f32_to_f16(wr[i]);
		wr[i] = lm_f16_to_f32(h[i]);
	}
	struct lm_mat mh = {.dtype = LM_F16, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = h}, mr = {.dtype = LM_F32, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = wr};
	CHECK(lm_matmul_ws(&mh) < OUT * IN); /* really tiled */
	CHECK(lm_matmul_backward_inp(a, G, &mh, N, 0, NULL) == 0);
	CHECK(lm_matmul_backward_inp(b, G, &mr, N, 0, NULL) == 0);
	double e = unit_relerr(a, b, N * IN);
	CHECKF(e < TOL_EXACT, "matmul dinp, tiled f16: %g", e);
	free(h), free(wr), free(G), free(a), free(b);
}

/* ======================================================================================
 * relu, dropout, embeddings, mse
 * ====================================================================================== */

static void test_elementwise(void)
{
	enum { n = 1000 };
	float x[n], out[n], G[n], d1[n], d2[n];
	uint8_t mk[n];
	fill(x, n, 1.0), fill(G, n, 1.0);
	x[3] = 0.0f, x[4] = -0.0f;
	lm_relu_forward(out, x, n);
	lm_relu_backward(d1, G, out, n);
	lm_relu_mask(mk, out, n);
	lm_relu_backward_mask(d2, G, mk, n);
	int ok = 1;
	for (int i = 0; i < n; i++)
		ok &= d1[i] == (x[i] > 0 ? G[i] : 0.0f) && d2[i] == d1[i];
	CHECK(ok);

	/* dropout: ~p dropped, survivors scaled by 1/(1-p), the same mask for the same key
	 * (that is the backward), another mask for another key */
	float a[n], b[n], c[n];
	for (int i = 0; i < n; i++)
		a[i] = b[i] = c[i] = 1.0f;
	uint64_t k1 = lm_dropout_key(1, 5, 2, 0), k2 = lm_dropout_key(1, 5, 2, 1);
	lm_dropout(a, n, 0.1f, k1);
	lm_dropout(b, n, 0.1f, k1);
	lm_dropout(c, n, 0.1f, k2);
	int zeros = 0, same = 1, diff = 0;
	for (int i = 0; i < n; i++) {
		zeros += a[i] == 0.0f;
		same &= a[i] == b[i] && (a[i] == 0.0f || a[i] == 1.0f / 0.9f);
		diff += (a[i] == 0.0f) != (c[i] == 0.0f);
	}
	CHECKF(zeros > 60 && zeros < 140, "dropout 0.1 dropped %d of %d", zeros, n);
	CHECK(same && diff > 0);
	memcpy(b, x, sizeof b);
	lm_dropout(b, n, 0.0f, k1);
	CHECK(memcmp(b, x, sizeof b) == 0);

	/* embeddings: scatter-add, repeated ids sum */
	int32_t ids[6] = {3, 1, 3, 0, 4, 3};
	float dout[6 * 2], dwte[5 * 2] = {0}, dwpe[(3 + LM_OPT_POS_OFFSET) * 2] = {0};
	for (int i = 0; i < 12; i++)
		dout[i] = (float)(i + 1);
	CHECK(lm_embed_backward(dwte, dout, ids, 6, 2, 5) == 0);
	CHECK(dwte[6] == 1 + 5 + 11 && dwte[7] == 2 + 6 + 12 && dwte[2] == 3 && dwte[4] == 0);
	ids[2] = 5;
	CHECK(lm_embed_backward(dwte, dout, ids, 6, 2, 5) < 0);
	lm_pos_backward(dwpe, dout, 2, 3, 2, 0); /* B=2, T=3: rows 2..4 */
	CHECK(dwpe[0] == 0 && dwpe[4] == 1 + 7 && dwpe[5] == 2 + 8 && dwpe[8] == 5 + 11);

	/* mse */
	float o[5] = {1, 2, 3, 4, 5}, t[5] = {1, 1, 1, 1, 1}, d[5];
	double l = lm_mse_backward(d, o, t, 5);
	CHECK(fabs(l - (0 + 1 + 4 + 9 + 16) / 5.0) < 1e-12 && d[2] == 2.0f * 2 / 5);
}

/* ======================================================================================
 * attention
 * ====================================================================================== */

struct att_ctx {
	double *q, *k, *v, *G;
	size_t B, T, NH, HS;
};

static double att_loss(void *p)
{
	struct att_ctx *c = p;
	size_t C = c->NH * c->HS, T = c->T, HS = c->HS;
	double L = 0, *s = xmalloc(T * sizeof *s);
	for (size_t b = 0; b < c->B; b++)
		for (size_t h = 0; h < c->NH; h++)
			for (size_t t = 0; t < T; t++) {
				const double *qt = c->q + (b * T + t) * C + h * HS;
				double m = -INFINITY, sum = 0;
				for (size_t j = 0; j <= t; j++) {
					const double *kj = c->k + (b * T + j) * C + h * HS;
					s[j] = 0;
					for (size_t d = 0; d < HS; d++)
						s[j] += qt[d] * kj[d];
					m = fmax(m, s[j]);
				}
				for (size_t j = 0; j <= t; j++)
					sum += s[j] = exp(s[j] - m);
				for (size_t d = 0; d < HS; d++) {
					double o = 0;
					for (size_t j = 0; j <= t; j++)
						o += s[j] / sum * c->v[(b * T + j) * C + h * HS + d];
					L += c->G[(b * T + t) * C + h * HS + d] * o;
				}
			}
	free(s);
	return L;
}

static void test_attention(size_t B, size_t T, size_t NH, size_t HS, size_t stride)
{
	size_t C = NH * HS, n = B * T * C;
	float *q = xmalloc(n * 4), *k = xmalloc(n * 4), *v = xmalloc(n * 4), *G = xmalloc(n * 4);
	float *dq = xmalloc(n * 4), *dk = xmalloc(n * 4), *dv = xmalloc(n * 4);
	fill(q, n, 1.0), fill(k, n, 1.0), fill(v, n, 1.0), fill(G, n, 1.0);
	for (size_t i = 0; i < n; i++)
		dk[i] = dv[i] = 99.0f; /* written, not accumulated */
	CHECKF(lm_attention_backward(dq, dk, dv, G, q, k, v, B, T, NH, HS, NULL, 0) == 0, "%s",
	       lm_errmsg());
	struct att_ctx c = {to_d(q, n), to_d(k, n), to_d(v, n), to_d(G, n), B, T, NH, HS};
	note(check_fd("attention dq", c.q, n, stride, att_loss, &c, dq));
	note(check_fd("attention dk", c.k, n, stride, att_loss, &c, dk));
	note(check_fd("attention dv", c.v, n, stride, att_loss, &c, dv));
	/* threads: bitwise the same with two threads, by design: each thread takes whole
	 * (batch, head) pairs, so no sum is split across threads and every pair runs the
	 * same single-threaded kernels on the same CPU */
	float *dq2 = xmalloc(n * 4), *dk2 = xmalloc(n * 4), *dv2 = xmalloc(n * 4);
	lm_set_threads(2);
	CHECK(lm_attention_backward(dq2, dk2, dv2, G, q, k, v, B, T, NH, HS, NULL, 0) == 0);
	lm_set_threads(1);
	CHECK(!memcmp(dq, dq2, n * 4) && !memcmp(dk, dk2, n * 4) && !memcmp(dv, dv2, n * 4));
	free(dq2), free(dk2), free(dv2);
	free(c.q), free(c.k), free(c.v), free(c.G);
	free(q), free(k), free(v), free(G), free(dq), free(dk), free(dv);
}

/* ======================================================================================
 * logits + cross-entropy
 * ====================================================================================== */

struct ce_ctx {
	double *x, *w;
	const int32_t *tgt;
	size_t N, V, E;
	double scale;
};

static double ce_loss(void *p)
{
	struct ce_ctx *c = p;
	double L = 0, *z = xmalloc(c->V * sizeof *z);
	for (size_t n = 0; n < c->N; n++) {
		if (c->tgt[n] < 0)
			continue;
		double m = -INFINITY, s = 0;
		for (size_t v = 0; v < c->V; v++) {
			z[v] = 0;
			for (size_t e = 0; e < c->E; e++)
				z[v] += c->x[n * c->E + e] * c->w[v * c->E + e];
			m = fmax(m, z[v]);
		}
		for (size_t v = 0; v < c->V; v++)
			s += exp(z[v] - m);
		L += log(s) + m - z[c->tgt[n]];
	}
	free(z);
	return c->scale * L;
}

static void test_ce(size_t N, size_t V, size_t E, size_t ws_rows)
{
	float *x = xmalloc(N * E * 4), *w = xmalloc(V * E * 4), *dx = xmalloc(N * E * 4);
	float *dw = xcalloc(V * E, 4), *nll = xmalloc(N * 4), *nll2 = xmalloc(N * 4);
	int32_t *tgt = xmalloc(N * 4);
	size_t cnt = 0;
	fill(x, N * E, 1.0), fill(w, V * E, 1.0);
	for (size_t n = 0; n < N; n++) {
		tgt[n] = n % 5 == 3 ? -1 : (int32_t)lm_rng_below(&rng, V);
		cnt += tgt[n] >= 0;
	}
	tgt[0] = (int32_t)V - 1;
	float scale = 1.0f / (float)cnt;
	size_t wsn = ws_rows * V;
	float *ws = xmalloc(wsn * 4);
	CHECK(lm_logits_ce_backward(nll, dx, dw, x, w, tgt, N, V, E, scale, ws, wsn) == 0);
	struct ce_ctx c = {to_d(x, N * E), to_d(w, V * E), tgt, N, V, E, scale};
	note(check_fd("cross-entropy dinp", c.x, N * E, 1, ce_loss, &c, dx));
	note(check_fd("cross-entropy dhead", c.w, V * E, 1, ce_loss, &c, dw));
	/* the per-row NLL equals the forward kernel's */
	struct lm_mat head = {.dtype = LM_F32, .rows = (int64_t)V, .cols = (int64_t)E, .data = w};
	CHECK(lm_logits_ce_forward(nll2, NULL, x, &head, tgt, N, NULL) == 0);
	CHECKF(unit_relerr(nll, nll2, N) < TOL_EXACT, "nll vs forward: %g", unit_relerr(nll, nll2, N));
	/* forward only; a target past V is refused */
	CHECK(lm_logits_ce_backward(nll2, NULL, NULL, x, w, tgt, N, V, E, scale, NULL, 0) == 0);
	CHECK(unit_relerr(nll, nll2, N) < TOL_EXACT);
	tgt[1] = (int32_t)V;
	CHECK(lm_logits_ce_backward(nll2, dx, NULL, x, w, tgt, N, V, E, scale, NULL, 0) < 0);
	free(c.x), free(c.w), free(ws);
	free(x), free(w), free(dx), free(dw), free(nll), free(nll2), free(tgt);
}

static void test_kernels(void)
{
	test_layernorm(3, 5);
	test_layernorm(4, 37);
	test_matmul(5, 23, 17);
	test_matmul(1, 40, 3);
	test_matmul_tiles();
	test_elementwise();
	test_attention(2, 7, 2, 5, 1);
	test_attention(1, 150, 2, 4, 7); /* several query blocks */
	test_ce(6, 29, 9, 6);
	test_ce(23, 31, 7, 5);           /* several row chunks, ignored rows */
	fprintf(stderr, "backward kernels: worst relative error vs finite differences %.2e\n", worst_fd);
}

/* ======================================================================================
 * the whole model against transformers
 * ====================================================================================== */


/* the fixture's input_ids as int32 [2,16] */
static void ref_ids(const struct lm_st_file *ref, int32_t *ids, size_t n)
{
	size_t nb = 0;
	int64_t *ids64 = ref_read(ref, "input_ids", &nb);
	CHECK(ids64 && nb == n * sizeof(int64_t));
	for (size_t i = 0; ids64 && i < n; i++)
		ids[i] = (int32_t)ids64[i];
	lm_free(ids64);
}

/* fixture fx under root: its model into m, its reference file open in ref (when ref is
 * not NULL; closed otherwise) and its n input ids; -1 after a failed check */
static int open_fixture(const char *root, const char *fx, struct lm_model *m,
                        struct lm_st_file *ref, int32_t *ids, size_t n)
{
	char dir[512], path[1100];
	struct lm_st_file own;
	struct lm_st_file *r = ref ? ref : &own;
	snprintf(dir, sizeof dir, "%s/%s", root, fx);
	snprintf(path, sizeof path, "%s/reference.safetensors", dir);
	if (load_model(m, dir) < 0) {
		CHECKF(0, "%s: model not loaded", fx);
		return -1;
	}
	if (lm_st_open(r, path) < 0) {
		CHECKF(0, "%s: %s", path, lm_errmsg());
		lm_model_free(m);
		return -1;
	}
	ref_ids(r, ids, n);
	if (!ref)
		lm_st_close(r);
	return 0;
}

/* every parameter's gradient against grad.<name>; returns the worst relative error */
static double cmp_grads(const struct lm_train *tr, const struct lm_st_file *ref, const char *fx,
                        size_t *count)
{
	double worst = 0;
	for (size_t i = 0; i < tr->npar; i++) {
		const struct lm_tparam *q = &tr->par[i];
		char key[sizeof q->name + 8];
		size_t nb = 0;
		if (q->lora)
			continue;
		snprintf(key, sizeof key, "grad.%s", q->name);
		float *want = ref_read(ref, key, &nb);
		CHECKF(want && nb == q->n * sizeof(float), "%s: %s missing or of the wrong size", fx, key);
		if (!want || nb != q->n * sizeof(float)) {
			lm_free(want);
			continue;
		}
		double e = unit_relerr(q->g, want, q->n);
		size_t kl = strlen(q->name) > 11 ? strlen(q->name) - 11 : 0;
		if (!strcmp(q->name + kl, "k_proj.bias")) {
			/* dL/db_k is exactly 0 (a key bias adds q.b_k to every score of a query's row,
			 * which the softmax ignores): both sides are rounding noise, so measure the
			 * error against the scale of the layer's v_proj.bias gradient instead */
			char vk[sizeof key];
			size_t vn = 0;
			snprintf(vk, sizeof vk, "%.*sv_proj.bias", (int)(5 + kl), key);
			float *vb = ref_read(ref, vk, &vn);
			double md = 0, mv = 0;
			for (size_t j = 0; vb && j < q->n; j++) {
				md = fmax(md, fabs((double)q->g[j] - want[j]));
				mv = fmax(mv, fabs((double)vb[j]));
			}
			e = vb && mv > 0 ? md / mv : INFINITY;
			lm_free(vb);
		}
		CHECKF(e < TOL_GRAD, "%s: %s: relative error %g", fx, q->name, e);
		if (e > worst)
			worst = e;
		(*count)++;
		lm_free(want);
	}
	return worst;
}

static void test_fixture(const char *root, const char *fx)
{
	struct lm_model m;
	struct lm_st_file ref;
	struct lm_train tr;
	const size_t B = 2, T = 16;
	int32_t ids[32];
	double loss = 0;

	if (open_fixture(root, fx, &m, &ref, ids, B * T) < 0)
		return;
	float *want_loss = ref_read(&ref, "loss", NULL);

	/* every parameter trains: the whole backward, embeddings and tied head included */
	static const char *const all[] = {"*"};
	struct lm_train_opts o = {.globs = all, .nglobs = 1, .layer = -1};
	size_t n_all = 0, n_perp = 0, n_tensors;
	free(lm_opt_tensors(&m.cfg, &n_tensors));
	CHECKF(lm_train_init(&tr, &m, &o, B, T) == 0, "%s: %s", fx, lm_errmsg());
	lm_train_zero_grad(&tr);
	CHECKF(lm_train_step(&tr, ids, B, T, &loss) == 0, "%s: %s", fx, lm_errmsg());
	double eloss = want_loss ? fabs(loss - want_loss[0]) / want_loss[0] : INFINITY;
	CHECKF(eloss < TOL_EXACT, "%s: loss %.8f, reference %.8f", fx, loss, want_loss ? want_loss[0] : 0);
	double e_all = cmp_grads(&tr, &ref, fx, &n_all);
	CHECKF(n_all == n_tensors, "%s: %zu of %zu tensors compared", fx, n_all, n_tensors);
	lm_train_free(&tr);

	/* PERP's subset: frozen matrices stay in the file's dtype (f16 in the fp16 fixture) and
	 * the backward runs through them tile by tile */
	o = (struct lm_train_opts){.perp = 1, .layer = -1};
	CHECKF(lm_train_init(&tr, &m, &o, B, T) == 0, "%s: %s", fx, lm_errmsg());
	lm_train_zero_grad(&tr);
	CHECKF(lm_train_step(&tr, ids, B, T, &loss) == 0, "%s: %s", fx, lm_errmsg());
	double e_perp = cmp_grads(&tr, &ref, fx, &n_perp);
	CHECK(tr.lowest == 0 && !tr.embed_grad);
	lm_train_free(&tr);

	fprintf(stderr, "backward %-13s max rel err: %zu gradients %.2e, PERP subset (%zu) %.2e, "
	        "loss %.2e\n", fx, n_all, e_all, n_perp, e_perp, eloss);
	lm_free(want_loss);
	lm_st_close(&ref);
	lm_model_free(&m);
}

/* ======================================================================================
 * training machinery
 * ====================================================================================== */

static const size_t TB = 2, TT = 16;

/* every other weight of the six linears of every layer becomes +0 (a 50% "pruned" model) */
static void prune_half(struct lm_model *m)
{
	static const enum lm_opt_kind lk[] = {LM_T_Q_W, LM_T_K_W, LM_T_V_W, LM_T_O_W, LM_T_FC1_W,
	                                      LM_T_FC2_W};
	for (int l = 0; l < m->cfg.num_layers; l++)
		for (int i = 0; i < 6; i++) {
			struct lm_mat *w = lm_model_mat(m, lk[i], l);
			size_t n = (size_t)(w->rows * w->cols), es = lm_dtype_size(w->dtype);
			for (size_t j = 0; j < n; j += 2)
				memset((char *)w->data + j * es, 0, es);
		}
}

/* bytes of every matrix and vector of the model, to compare before/after */
static unsigned char *snapshot(struct lm_model *m, size_t *len)
{
	size_t nt, off = 0, cap = 0;
	struct lm_opt_tensor *t = lm_opt_tensors(&m->cfg, &nt);
	unsigned char *buf = NULL;
	for (int pass = 0; pass < 2; pass++) {
		off = 0;
		for (size_t i = 0; i < nt; i++) {
			struct lm_mat *mt = lm_model_mat(m, t[i].kind, t[i].layer);
			float **v = lm_model_vec(m, t[i].kind, t[i].layer);
			size_t n = mt ? (size_t)(mt->rows * mt->cols) * lm_dtype_size(mt->dtype)
			              : (size_t)t[i].shape[0] * sizeof(float);
			if (pass)
				memcpy(buf + off, mt ? mt->data : *v, n);
			off += n;
		}
		if (!pass)
			buf = xmalloc(cap = off);
	}
	(void)cap;
	free(t);
	*len = off;
	return buf;
}

/* offset of tensor i in a snapshot and its size */
static size_t snap_at(struct lm_model *m, size_t want, size_t *n)
{
	size_t nt, off = 0;
	struct lm_opt_tensor *t = lm_opt_tensors(&m->cfg, &nt);
	for (size_t i = 0; i < nt; i++) {
		struct lm_mat *mt = lm_model_mat(m, t[i].kind, t[i].layer);
		size_t sz = mt ? (size_t)(mt->rows * mt->cols) * lm_dtype_size(mt->dtype)
		               : (size_t)t[i].shape[0] * sizeof(float);
		if (i == want) {
			*n = sz;
			free(t);
			return off;
		}
		off += sz;
	}
	free(t);
	*n = 0;
	return off;
}

static void random_factors(struct lm_train *tr, double scale)
{
	for (size_t i = 0; i < tr->npar; i++)
		if (tr->par[i].lora)
			for (size_t j = 0; j < tr->par[i].n; j++)
				tr->par[i].p[j] += (float)(scale * lm_rng_normal(&rng));
}

/* loss of one evaluation (its gradients are thrown away) */
static double eval_loss(struct lm_train *tr, const int32_t *ids, const float *x, const float *y)
{
	double l = NAN;
	if (x)
		lm_train_layer_step(tr, x, y, TB, TT, &l);
	else
		lm_train_step(tr, ids, TB, TT, &l);
	return l;
}

/* Whole-model gradients by finite differences. The forward is f32, so the loss carries
 * ~1e-7 relative noise and single entries with small gradients drown in it; each
 * parameter tensor is checked along its own gradient direction instead (the loss then
 * moves by 2 eps |g|, the directional derivative must be |g|), plus its largest entry.
 * The dropout masks are the same for every evaluation (keyed by the unchanged step). */
static double fd_model(struct lm_train *tr, const int32_t *ids, const float *x, const float *y,
                       const char *what)
{
	double worst = 0, L0;
	float *g0 = xmalloc(tr->nfloats * sizeof *g0);
	lm_train_zero_grad(tr);
	L0 = eval_loss(tr, ids, x, y);
	CHECKF(!isnan(L0), "%s", lm_errmsg());
	memcpy(g0, tr->gmem, tr->nfloats * sizeof *g0);
	for (size_t i = 0; i < tr->npar; i++) {
		struct lm_tparam *q = &tr->par[i];
		const float *g = g0 + (q->g - tr->gmem);
		size_t nl = strlen(q->name), jm = 0;
		if (nl > 11 && !strcmp(q->name + nl - 11, "k_proj.bias"))
			continue; /* dL/db_k is 0 up to rounding (see cmp_grads) */
		double gn = sqrt(lm_vec_sumsq(g, q->n));
		if (gn == 0)
			continue;
		float *p0 = xmalloc(q->n * sizeof *p0);
		memcpy(p0, q->p, q->n * sizeof *p0);
		/* a step that moves the loss by ~0.02% (still ~100x its rounding noise), at most
		 * 1e-3 in norm: larger steps cross ReLU kinks and the error grows with the step
		 * (1e-2 gave up to 3%), smaller ones drown in rounding */
		double eps = fmin(1e-3, 1e-4 * fabs(L0) / gn), lp, lm2;
		for (size_t j = 0; j < q->n; j++)
			q->p[j] = p0[j] + (float)(eps * g[j] / gn);
		lp = eval_loss(tr, ids, x, y);
		for (size_t j = 0; j < q->n; j++)
			q->p[j] = p0[j] - (float)(eps * g[j] / gn);
		lm2 = eval_loss(tr, ids, x, y);
		memcpy(q->p, p0, q->n * sizeof *p0);
		double e = fabs((lp - lm2) / (2 * eps) - gn) / gn;
		worst = e > worst ? e : worst;
		CHECKF(e < 1e-2, "%s: %s: |g| %g, directional finite difference %g", what, q->name, gn,
		       (lp - lm2) / (2 * eps));
		/* the largest entry alone */
		for (size_t j = 1; j < q->n; j++)
			if (fabsf(g[j]) > fabsf(g[jm]))
				jm = j;
		float old = q->p[jm], h = 1e-2f * fmaxf(fabsf(old), 0.1f);
		q->p[jm] = old + h;
		lp = eval_loss(tr, ids, x, y);
		q->p[jm] = old - h;
		lm2 = eval_loss(tr, ids, x, y);
		q->p[jm] = old;
		double hd = ((double)(old + h) - (double)(old - h)) / 2;
		e = fabs((lp - lm2) / (2 * hd) - g[jm]) / fabs(g[jm]);
		CHECKF(e < 5e-2, "%s: %s[%zu]: analytic %g, finite differences %g", what, q->name, jm,
		       g[jm], (lp - lm2) / (2 * hd));
		free(p0);
	}
	free(g0);
	return worst;
}

static void test_lora_grads(const char *root)
{
	static const struct {
		const char *fx;
		enum lm_lora_kind kind;
		int perp, head;
		double drop;
	} cases[] = {
		{"pre-ln", LM_LORA_MASK, 1, 0, 0.1},
		{"post-ln-proj", LM_LORA_SCALE, 0, 0, 0.2},
		{"fp16", LM_LORA_STD, 0, 1, 0.0},
		{"post-ln-proj", LM_LORA_STD, 1, 1, 0.1},
	};
	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		struct lm_model m;
		struct lm_train tr;
		int32_t ids[32];
		if (open_fixture(root, cases[c].fx, &m, NULL, ids, TB * TT) < 0)
			continue;
		prune_half(&m);
		struct lm_train_opts o = {.perp = cases[c].perp, .lora = cases[c].kind, .rank = 3,
		                          .alpha = 6, .lora_head = cases[c].head, .dropout = cases[c].drop,
		                          .seed = 7, .layer = -1};
		CHECKF(lm_train_init(&tr, &m, &o, TB, TT) == 0, "%s", lm_errmsg());
		tr.step = 3; /* some step's dropout masks */
		random_factors(&tr, 0.05);
		double e = fd_model(&tr, ids, NULL, NULL, lm_lora_name(cases[c].kind));
		fprintf(stderr, "backward %-13s %s%s%s, dropout %.1f: directional derivatives within %.2e\n",
		        cases[c].fx, lm_lora_name(cases[c].kind), cases[c].perp ? " + biases/LN" : "",
		        cases[c].head ? " + head" : "", cases[c].drop, e);
		lm_train_free(&tr);
		lm_model_free(&m);
	}
}

/* the adapters start at W exactly; merging gives the loss the adapters gave; pruned zeros
 * stay zero; frozen tensors are untouched */
static void test_merge(const char *root)
{
	static const enum lm_lora_kind kinds[] = {LM_LORA_STD, LM_LORA_MASK, LM_LORA_SCALE};
	for (int f = 0; f < 2; f++)
		for (size_t c = 0; c < 3; c++) {
			struct lm_model m;
			struct lm_train tr;
			struct lm_fwd s;
			int32_t ids[32];
			double before, after, l0, l1, sum;
			size_t cnt, len0, len1;
			if (open_fixture(root, f ? "fp16" : "pre-ln", &m, NULL, ids, TB * TT) < 0)
				continue;
			if (kinds[c] != LM_LORA_STD)
				prune_half(&m); /* the standard kind is checked on the dense model */
			unsigned char *snap0 = snapshot(&m, &len0);
			/* where the six linears are zero, before (as bytes: one per weight) */
			size_t nt, nz = 0;
			struct lm_opt_tensor *t = lm_opt_tensors(&m.cfg, &nt);
			for (size_t i = 0; i < nt; i++)
				if (lm_opt_is_linear(t[i].kind))
					nz += (size_t)(t[i].shape[0] * t[i].shape[1]);
			unsigned char *z0 = xmalloc(nz);
			nz = 0;
			for (size_t i = 0; i < nt; i++) {
				if (!lm_opt_is_linear(t[i].kind))
					continue;
				struct lm_mat *w = lm_model_mat(&m, t[i].kind, t[i].layer);
				size_t wn = (size_t)(w->rows * w->cols);
				float *wf = xmalloc(wn * 4);
				lm_to_f32(wf, w->data, w->dtype, wn);
				for (size_t j = 0; j < wn; j++)
					z0[nz++] = wf[j] == 0.0f;
				free(wf);
			}
			CHECK(lm_fwd_init(&s, &m.cfg, TB, TT) == 0);
			CHECK(lm_forward_loss(&s, &m, ids, TB, TT, &l0) == 0);
			struct lm_train_opts o = {.lora = kinds[c], .rank = 4, .alpha = 8, .seed = 1,
			                          .layer = -1};
			CHECKF(lm_train_init(&tr, &m, &o, TB, TT) == 0, "%s", lm_errmsg());
			CHECK(lm_train_eval(&tr, ids, TB, TT, &sum, &cnt) == 0);
			before = sum / (double)cnt;
			/* step 0: W_eff == W, so the loss is the plain model's */
			CHECKF(fabs(before - l0) < 1e-6 * l0, "%s: loss at step 0 %.9f, model %.9f",
			       lm_lora_name(kinds[c]), before, l0);
			for (size_t i = 0; i < 6 * (size_t)m.cfg.num_layers; i++)
				CHECK(unit_relerr(tr.lin[i].own, tr.lin[i].own, 1) == 0);
			random_factors(&tr, 0.2);
			CHECK(lm_train_eval(&tr, ids, TB, TT, &sum, &cnt) == 0);
			before = sum / (double)cnt;
			CHECKF(lm_train_merge(&tr) == 0, "%s", lm_errmsg());
			CHECK(lm_forward_loss(&s, &m, ids, TB, TT, &l1) == 0);
			after = l1;
			CHECKF(fabs(before - after) < 1e-5 * before, "%s: loss %.7f with adapters, %.7f merged",
			       lm_lora_name(kinds[c]), before, after);
			CHECK(fabs(before - l0) > 1e-4); /* the adapters did something */
			/* standard LoRA is merged with the zeros kept too: on this dense model that
			 * changes nothing */
			CHECK(lm_train_changes(&tr, LM_T_FC1_W, 1) && !lm_train_changes(&tr, LM_T_FC1_B, 1));
			/* zeros where there were zeros, in every linear (merged, in f32 now) */
			size_t bad = 0;
			nz = 0;
			for (size_t i = 0; i < nt; i++) {
				if (!lm_opt_is_linear(t[i].kind))
					continue;
				struct lm_mat *w = lm_model_mat(&m, t[i].kind, t[i].layer);
				const float *merged = w->data;
				CHECK(w->dtype == LM_F32);
				for (size_t j = 0; j < (size_t)(w->rows * w->cols); j++, nz++)
					bad += z0[nz] != (merged[j] == 0.0f);
			}
			free(t), free(z0);
			CHECKF(bad == 0, "%s: %zu zeros appeared or vanished", lm_lora_name(kinds[c]), bad);
			lm_train_free(&tr);
			/* after free the model is its own again: bit-identical to the snapshot */
			unsigned char *snap1 = snapshot(&m, &len1);
			CHECK(len0 == len1 && !memcmp(snap0, snap1, len0));
			fprintf(stderr, "backward %-13s %-10s merge: loss %.7f adapters, %.7f merged, zeros kept\n",
			        f ? "fp16" : "pre-ln", lm_lora_name(kinds[c]), before, after);
			free(snap0), free(snap1);
			lm_fwd_free(&s);
			lm_model_free(&m);
		}
}

/* AdamW against the formula in double; masked full training keeps zeros; a PERP run leaves
 * every matrix bit for bit and lowers the loss on a batch it sees again and again */
static void test_optimizer(const char *root)
{
	struct lm_model m;
	struct lm_train tr;
	int32_t ids[32];
	double loss, first = 0;
	if (open_fixture(root, "pre-ln", &m, NULL, ids, TB * TT) < 0)
		return;
	prune_half(&m);

	/* AdamW: three steps with made-up gradients, weight decay on the matrix only */
	static const char *const pat[] = {"model.decoder.layers.1.fc2.*"};
	struct lm_train_opts o = {.globs = pat, .nglobs = 1, .layer = -1};
	struct lm_adamw h = {0.9, 0.95, 1e-6, 0.1};
	CHECKF(lm_train_init(&tr, &m, &o, TB, TT) == 0, "%s", lm_errmsg());
	CHECK(tr.npar == 2 && tr.lowest == 1 && !tr.embed_grad);
	size_t n = tr.nfloats;
	double *p = xmalloc(n * 8), *mm = xcalloc(n, 8), *vv = xcalloc(n, 8);
	for (size_t k = 0; k < tr.npar; k++)
		for (size_t j = 0; j < tr.par[k].n; j++)
			p[tr.par[k].g - tr.gmem + j] = tr.par[k].p[j];
	for (int t = 1; t <= 3; t++) {
		double lr = 1e-2 * t;
		for (size_t j = 0; j < n; j++)
			tr.gmem[j] = (float)lm_rng_normal(&rng);
		double gn = lm_train_grad_norm(&tr); /* masks the pruned entries' gradients */
		CHECK(gn > 0);
		lm_train_adamw(&tr, &h, lr);
		for (size_t k = 0; k < tr.npar; k++) {
			const struct lm_tparam *q = &tr.par[k];
			size_t o0 = (size_t)(q->g - tr.gmem);
			for (size_t j = 0; j < q->n; j++) {
				double g = q->g[j], *P = &p[o0 + j], *M = &mm[o0 + j], *Q = &vv[o0 + j];
				if (q->decay)
					*P *= 1 - lr * h.weight_decay;
				*M = h.beta1 * *M + (1 - h.beta1) * g;
				*Q = h.beta2 * *Q + (1 - h.beta2) * g * g;
				double mh = *M / (1 - pow(h.beta1, t)), vh = *Q / (1 - pow(h.beta2, t));
				*P -= lr * mh / (sqrt(vh) + h.eps);
			}
		}
	}
	double e = 0;
	size_t zeros_ok = 1;
	for (size_t k = 0; k < tr.npar; k++)
		for (size_t j = 0; j < tr.par[k].n; j++) {
			size_t at = (size_t)(tr.par[k].g - tr.gmem) + j;
			e = fmax(e, fabs(tr.par[k].p[j] - p[at]) / (fabs(p[at]) + 1e-3));
			if (tr.par[k].mask && !tr.par[k].mask[j])
				zeros_ok &= tr.par[k].p[j] == 0.0f;
		}
	CHECKF(e < 1e-5, "AdamW vs double: %g", e);
	CHECK(tr.par[0].mask != NULL && zeros_ok);
	lm_train_free(&tr);
	free(p), free(mm), free(vv);

	/* schedule */
	CHECK(lm_lr_at(0, 100, 10, 1.0, 0) == 0.0 && lm_lr_at(5, 100, 10, 1.0, 0) == 0.5);
	CHECK(lm_lr_at(10, 100, 10, 1.0, 0) == 1.0 && fabs(lm_lr_at(55, 100, 10, 1.0, 0) - 0.5) < 1e-12);
	CHECK(fabs(lm_lr_at(55, 100, 10, 1.0, 1) - 0.5) < 1e-12 && lm_lr_at(100, 100, 10, 1.0, 1) < 1e-12);

	/* --full: zeros stay through real steps, the rest moves */
	size_t len0;
	unsigned char *snap0 = snapshot(&m, &len0);
	o = (struct lm_train_opts){.full = 1, .layer = -1, .dropout = 0.1, .seed = 3};
	struct lm_adamw ad = {0.9, 0.999, 1e-8, 0.01};
	CHECKF(lm_train_init(&tr, &m, &o, TB, TT) == 0, "%s", lm_errmsg());
	for (int t = 0; t < 3; t++) {
		lm_train_zero_grad(&tr);
		CHECK(lm_train_step(&tr, ids, TB, TT, &loss) == 0);
		lm_train_grad_norm(&tr);
		lm_train_adamw(&tr, &ad, 1e-3);
	}
	size_t moved = 0, zeros = 0, kept = 0;
	for (size_t k = 0; k < tr.npar; k++) {
		const struct lm_tparam *q = &tr.par[k];
		if (!q->mask)
			continue;
		for (size_t j = 0; j < q->n; j++) {
			zeros += !q->mask[j];
			kept += !q->mask[j] && q->p[j] == 0.0f;
			moved += q->mask[j] && q->p[j] != 0.0f;
		}
	}
	CHECKF(zeros > 0 && kept == zeros && moved > 0, "full: %zu zeros, %zu kept", zeros, kept);
	lm_train_free(&tr);
	/* the model's matrices are its own again after free (the trained f32 copies are gone;
	 * a caller writes the model out before freeing); its vectors were trained in place */
	size_t len1, nt;
	unsigned char *snap1 = snapshot(&m, &len1);
	struct lm_opt_tensor *t = lm_opt_tensors(&m.cfg, &nt);
	int mats_same = len0 == len1;
	for (size_t i = 0; mats_same && i < nt; i++) {
		size_t sz, at = snap_at(&m, i, &sz);
		if (t[i].ndim == 2)
			mats_same &= !memcmp(snap0 + at, snap1 + at, sz);
	}
	CHECK(mats_same);
	free(snap1);
	free(snap0);
	snap0 = snapshot(&m, &len0);

	/* PERP on one batch: the loss goes down; matrices untouched, vectors moved */
	o = (struct lm_train_opts){.perp = 1, .layer = -1};
	CHECKF(lm_train_init(&tr, &m, &o, TB, TT) == 0, "%s", lm_errmsg());
	for (int it = 0; it < 20; it++) {
		lm_train_zero_grad(&tr);
		CHECK(lm_train_step(&tr, ids, TB, TT, &loss) == 0);
		if (it == 0)
			first = loss;
		double gn = lm_train_grad_norm(&tr);
		if (gn > 1.0)
			lm_train_scale_grad(&tr, (float)(1.0 / gn));
		lm_train_adamw(&tr, &ad, 1e-2);
	}
	CHECKF(loss < first - 0.1, "PERP overfit: loss %.4f -> %.4f", first, loss);
	lm_train_free(&tr);
	snap1 = snapshot(&m, &len1);
	size_t same_mats = 1, vec_moved = 0;
	for (size_t i = 0; i < nt; i++) {
		size_t sz, at = snap_at(&m, i, &sz);
		int same = !memcmp(snap0 + at, snap1 + at, sz);
		if (t[i].ndim == 2)
			same_mats &= same;
		else
			vec_moved += !same;
	}
	CHECK(same_mats && vec_moved > 0);
	fprintf(stderr, "backward optimizer: AdamW err %.1e; full keeps %zu zeros; PERP loss %.4f -> %.4f "
	        "in 20 steps, %zu vectors moved, matrices untouched\n", e, zeros, first, loss, vec_moved);
	free(t), free(snap0), free(snap1);
	lm_model_free(&m);
}

/* layer-wise reconstruction: the layer forward is the model's; MSE gradients by finite
 * differences, for both layouts */
static void test_layerwise(const char *root)
{
	static const char *fx[] = {"pre-ln", "post-ln-proj"};
	char dir[512];
	for (int f = 0; f < 2; f++) {
		struct lm_model m;
		struct lm_train tr;
		struct lm_fwd s;
		snprintf(dir, sizeof dir, "%s/%s", root, fx[f]);
		if (load_model(&m, dir) < 0) {
			CHECK(0);
			continue;
		}
		size_t C = (size_t)m.cfg.hidden_size, N = TB * TT;
		float *x = xmalloc(N * C * 4), *y = xmalloc(N * C * 4), *out = xmalloc(N * C * 4);
		fill(x, N * C, 1.0);
		CHECK(lm_fwd_init(&s, &m.cfg, TB, TT) == 0);
		memcpy(y, x, N * C * 4);
		CHECK(lm_forward_layer(&s, &m.layers[1], 1, y, TB, TT) == 0);
		struct lm_train_opts o = {.perp = 1, .lora = LM_LORA_MASK, .rank = 2, .alpha = 4,
		                          .layer = 1, .dropout = 0.1, .seed = 5};
		prune_half(&m);
		memcpy(out, x, N * C * 4);
		CHECK(lm_forward_layer(&s, &m.layers[1], 1, out, TB, TT) == 0);
		CHECKF(lm_train_init(&tr, &m, &o, TB, TT) == 0, "%s", lm_errmsg());
		CHECK(tr.lowest == 1 && tr.npar == (m.cfg.enable_bias ? 10u : 4u) + 12u);
		float *o2 = xmalloc(N * C * 4);
		CHECK(lm_train_layer_forward(&tr, x, o2, TB, TT) == 0);
		CHECK(unit_relerr(o2, out, N * C) < TOL_EXACT);
		random_factors(&tr, 0.05);
		double e = fd_model(&tr, NULL, x, y, "layer-wise");
		fprintf(stderr, "backward %-13s layer-wise MSE, mask-lora + biases/LN, dropout 0.1: "
		        "directional derivatives within %.2e\n", fx[f], e);
		lm_train_free(&tr);
		free(x), free(y), free(out), free(o2);
		lm_fwd_free(&s);
		lm_model_free(&m);
	}
}

/* what lm_train_init refuses */
static void test_init_errors(const char *root)
{
	char dir[512];
	struct lm_model m;
	struct lm_train tr;
	snprintf(dir, sizeof dir, "%s/pre-ln", root);
	if (load_model(&m, dir) < 0) {
		CHECK(0);
		return;
	}
	static const char *const none[] = {"model.decoder.layers.*.nothing"};
	struct lm_train_opts o = {.globs = none, .nglobs = 1, .layer = -1};
	CHECK(lm_train_init(&tr, &m, &o, 2, 16) < 0 && strstr(lm_errmsg(), "matches no tensor"));
	o = (struct lm_train_opts){.lora = LM_LORA_MASK, .rank = 65, .layer = -1};
	CHECK(lm_train_init(&tr, &m, &o, 2, 16) < 0 && strstr(lm_errmsg(), "rank 65"));
	o = (struct lm_train_opts){.layer = -1};
	CHECK(lm_train_init(&tr, &m, &o, 2, 16) < 0 && strstr(lm_errmsg(), "nothing to train"));
	o = (struct lm_train_opts){.full = 1, .lora = LM_LORA_STD, .rank = 2, .layer = -1};
	CHECK(lm_train_init(&tr, &m, &o, 2, 16) < 0 && strstr(lm_errmsg(), "both trained and adapted"));
	o = (struct lm_train_opts){.perp = 1, .layer = -1};
	CHECK(lm_train_init(&tr, &m, &o, 2, 65) < 0);
	/* the model is untouched by failed inits */
	CHECK(m.layers[0].q.dtype == LM_F32 && lm_model_check(&m) == 0);
	lm_model_free(&m);
}

/* ======================================================================================
 * bf16 compute: the same backward with its products on the bf16 GEMM (lm_set_compute)
 * ====================================================================================== */

/* bf16 against f32, relative (max abs err / max abs): a bf16 operand carries up to 2^-9
 * relative rounding, so the products' sums differ by some 1e-3 of their scale, and a
 * gradient that went through several of them (the model's) by a few times that */
#define TOL_BF16 2e-2
/* the bf16 GEMM against a double sum of the bf16-rounded operands: fp32 summation only,
 * relative to the sum of the products' magnitudes */
#define TOL_BF16_SUM 1e-5

/* worst |got - sum_k a(i,k) b(k,j)| / sum_k |a b| over C[M,N], the operands bf16-rounded,
 * elements given by strides: a(i,k) = A[i * ai + k * ak], b(k,j) = B[k * bk + j * bj] */
static double bf16_sum_err(const float *got, const float *A, size_t ai, size_t ak,
                           const float *B, size_t bk, size_t bj, size_t M, size_t N, size_t K)
{
	double worst = 0;
	for (size_t i = 0; i < M; i++)
		for (size_t j = 0; j < N; j++) {
			double s = 0, abs = 0;
			for (size_t k = 0; k < K; k++) {
				double p = (double)unit_round_bf16(A[i * ai + k * ak]) * unit_round_bf16(B[k * bk + j * bj]);
				s += p, abs += fabs(p);
			}
			double e = fabs(got[i * N + j] - s) / (abs > 0 ? abs : 1);
			worst = e > worst ? e : worst;
		}
	return worst;
}

/* a and b close within TOL_BF16 but not the same bits (so the bf16 products did run) */
static void bf16_close(const char *what, const float *a, const float *b, size_t n)
{
	double e = unit_relerr(a, b, n);
	CHECKF(e < TOL_BF16, "bf16 %s vs f32: %g", what, e);
	CHECKF(memcmp(a, b, n * sizeof *a) != 0, "bf16 %s: the f32 bits (no bf16 product ran)", what);
}

static void test_bf16_matmul(size_t N, size_t IN, size_t OUT)
{
	float *x = xmalloc(N * IN * 4), *w = xmalloc(OUT * IN * 4), *G = xmalloc(N * OUT * 4);
	float *dx[2], *dw[2], *dh[2];
	uint16_t *h = xmalloc(OUT * IN * 2);
	fill(x, N * IN, 1.0), fill(w, OUT * IN, 1.0), fill(G, N * OUT, 1.0);
	for (size_t i = 0; i < OUT * IN; i++)
		h[i] = lm_f32_to_f16(w[i]);
	struct lm_mat m = {.dtype = LM_F32, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = w};
	struct lm_mat mh = {.dtype = LM_F16, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = h};
	for (int b = 0; b < 2; b++) {
		lm_set_compute(b ? LM_COMPUTE_BF16 : LM_COMPUTE_F32);
		dx[b] = xmalloc(N * IN * 4), dw[b] = xmalloc(OUT * IN * 4), dh[b] = xmalloc(N * IN * 4);
		for (size_t i = 0; i < OUT * IN; i++)
			dw[b][i] = 0.5f; /* accumulated into */
		CHECK(lm_matmul_backward_inp(dx[b], G, &m, N, 0, NULL) == 0);
		CHECK(lm_matmul_backward_inp(dh[b], G, &mh, N, 0, NULL) == 0); /* f16 tiles */
		lm_matmul_backward_w(dw[b], NULL, G, x, N, IN, OUT, 1);
	}
	bf16_close("matmul dinp", dx[1], dx[0], N * IN);
	bf16_close("matmul dinp (f16 weights)", dh[1], dh[0], N * IN);
	bf16_close("matmul dw", dw[1], dw[0], OUT * IN);
	/* dinp = G W, dw - 0.5 = G^T x, as bf16 products summed in fp32 */
	double e = bf16_sum_err(dx[1], G, OUT, 1, w, IN, 1, N, IN, OUT);
	CHECKF(e < TOL_BF16_SUM, "bf16 matmul dinp %zu x %zu x %zu vs its double sum: %g", N, IN, OUT, e);
	for (size_t i = 0; i < OUT * IN; i++)
		dw[1][i] -= 0.5f;
	e = bf16_sum_err(dw[1], G, 1, OUT, x, IN, 1, OUT, IN, N);
	/* one more rounding each: the accumulation into 0.5, and the 0.5 taken back out */
	CHECKF(e < TOL_BF16_SUM + 1e-6 * N, "bf16 matmul dw %zu x %zu x %zu vs its double sum: %g",
	       N, IN, OUT, e);
	for (int b = 0; b < 2; b++)
		free(dx[b]), free(dw[b]), free(dh[b]);
	free(x), free(w), free(G), free(h);
}

static void test_bf16_attention(size_t B, size_t T, size_t NH, size_t HS)
{
	size_t n = B * T * NH * HS;
	float *q = xmalloc(n * 4), *k = xmalloc(n * 4), *v = xmalloc(n * 4), *G = xmalloc(n * 4);
	float *d[2][3];
	fill(q, n, 1.0), fill(k, n, 1.0), fill(v, n, 1.0), fill(G, n, 1.0);
	for (int b = 0; b < 2; b++) {
		lm_set_compute(b ? LM_COMPUTE_BF16 : LM_COMPUTE_F32);
		for (int i = 0; i < 3; i++)
			d[b][i] = xmalloc(n * 4);
		CHECKF(lm_attention_backward(d[b][0], d[b][1], d[b][2], G, q, k, v, B, T, NH, HS, NULL,
		                             0) == 0, "%s", lm_errmsg());
	}
	bf16_close("attention dq", d[1][0], d[0][0], n);
	bf16_close("attention dk", d[1][1], d[0][1], n);
	bf16_close("attention dv", d[1][2], d[0][2], n);
	/* threads: whole (batch, head) pairs each, so the same bits on two */
	float *d2[3];
	for (int i = 0; i < 3; i++)
		d2[i] = xmalloc(n * 4);
	lm_set_threads(2);
	CHECK(lm_attention_backward(d2[0], d2[1], d2[2], G, q, k, v, B, T, NH, HS, NULL, 0) == 0);
	lm_set_threads(1);
	for (int i = 0; i < 3; i++) {
		CHECKF(!memcmp(d2[i], d[1][i], n * 4), "bf16 attention: 2 threads differ (%d)", i);
		free(d2[i]), free(d[0][i]), free(d[1][i]);
	}
	free(q), free(k), free(v), free(G);
}

static void test_bf16_ce(size_t N, size_t V, size_t E)
{
	float *x = xmalloc(N * E * 4), *w = xmalloc(V * E * 4);
	float *nll[2], *dx[2], *dw[2];
	int32_t *tgt = xmalloc(N * 4);
	fill(x, N * E, 1.0), fill(w, V * E, 0.3);
	for (size_t i = 0; i < N; i++)
		tgt[i] = i % 7 == 2 ? -1 : (int32_t)lm_rng_below(&rng, V);
	for (int b = 0; b < 2; b++) {
		lm_set_compute(b ? LM_COMPUTE_BF16 : LM_COMPUTE_F32);
		nll[b] = xmalloc(N * 4), dx[b] = xmalloc(N * E * 4), dw[b] = xcalloc(V * E, 4);
		CHECK(lm_logits_ce_backward(nll[b], dx[b], dw[b], x, w, tgt, N, V, E, 1.0f / (float)N,
		                            NULL, 0) == 0);
	}
	bf16_close("cross-entropy nll", nll[1], nll[0], N);
	bf16_close("cross-entropy dinp", dx[1], dx[0], N * E);
	bf16_close("cross-entropy dhead", dw[1], dw[0], V * E);
	for (int b = 0; b < 2; b++)
		free(nll[b]), free(dx[b]), free(dw[b]);
	free(x), free(w), free(tgt);
}

/* the error of gradient i against f32's g32[i]: unit_relerr, but k_proj.bias's (rounding
 * noise around 0) on the scale of the layer's v_proj.bias gradient, as in cmp_grads */
static double grad_err(const struct lm_train *tr, float *const *g32, size_t i)
{
	const struct lm_tparam *q = &tr->par[i];
	size_t kl = strlen(q->name) > 11 ? strlen(q->name) - 11 : 0;
	if (strcmp(q->name + kl, "k_proj.bias"))
		return unit_relerr(q->g, g32[i], q->n);
	double md = 0, mv = 0;
	for (size_t j = 0; j < tr->npar; j++)
		if (!strncmp(tr->par[j].name, q->name, kl) && !strcmp(tr->par[j].name + kl, "v_proj.bias"))
			for (size_t t = 0; t < tr->par[j].n; t++)
				mv = fmax(mv, fabs((double)g32[j][t]));
	for (size_t t = 0; t < q->n; t++)
		md = fmax(md, fabs((double)q->g[t] - g32[i][t]));
	return mv > 0 ? md / mv : INFINITY;
}

/* One training step of a fixture with every parameter training, three ways: f32; bf16
 * compute; f32 on the parameters rounded to bf16 (last: the rounding is done in place, in
 * the model's own tensors). The fixtures are random models of
 * init_std 0.2, whose gradients move by up to ~30 % when only the parameters are rounded
 * to bf16 (measured: 0.26 at worst), so a fixed bf16 tolerance says little there: each
 * bf16 gradient must be within TOL_BF16 of f32's or no more than BF16_VS_ROUND times as
 * far from it as the rounded parameters' (measured: 2.34 times at worst); the loss within
 * 1e-2 relative (the 1 %). */
#define BF16_VS_ROUND 4.0
static void test_bf16_fixture(const char *root, const char *fx)
{
	struct lm_model m;
	struct lm_train tr;
	const size_t B = 2, T = 16;
	int32_t ids[32];
	double loss[3] = {0, 0, 0};
	static const char *const all[] = {"*"};
	struct lm_train_opts o = {.globs = all, .nglobs = 1, .layer = -1};

	if (open_fixture(root, fx, &m, NULL, ids, B * T) < 0)
		return;
	float **g32 = NULL;
	double *e_bf16 = NULL, worst = 0, worst_ratio = 0;
	size_t npar = 0;
	for (int b = 0; b < 3; b++) {
		lm_set_compute(b == 1 ? LM_COMPUTE_BF16 : LM_COMPUTE_F32);
		CHECKF(lm_train_init(&tr, &m, &o, B, T) == 0, "%s: %s", fx, lm_errmsg());
		if (b == 2)
			for (size_t i = 0; i < tr.npar; i++)
				for (size_t t = 0; t < tr.par[i].n; t++)
					tr.par[i].p[t] = unit_round_bf16(tr.par[i].p[t]);
		lm_train_zero_grad(&tr);
		CHECKF(lm_train_step(&tr, ids, B, T, &loss[b]) == 0, "%s: %s", fx, lm_errmsg());
		if (b == 0) {
			npar = tr.npar;
			g32 = xcalloc(npar, sizeof *g32);
			e_bf16 = xcalloc(npar, sizeof *e_bf16);
			for (size_t i = 0; i < npar; i++) {
				g32[i] = xmalloc(tr.par[i].n * 4);
				memcpy(g32[i], tr.par[i].g, tr.par[i].n * 4);
			}
			lm_train_free(&tr);
			continue;
		}
		CHECK(tr.npar == npar);
		int differ = 0;
		for (size_t i = 0; i < npar && i < tr.npar; i++) {
			double e = grad_err(&tr, g32, i);
			if (b == 1) {
				e_bf16[i] = e;
				differ |= memcmp(tr.par[i].g, g32[i], tr.par[i].n * 4) != 0;
				continue;
			}
			double eb = e_bf16[i];
			CHECKF(eb < TOL_BF16 || eb <= BF16_VS_ROUND * e,
			       "%s: bf16 %s: relative error %g (parameters rounded to bf16: %g)", fx,
			       tr.par[i].name, eb, e);
			worst = eb > worst ? eb : worst;
			if (eb >= TOL_BF16 && eb / e > worst_ratio)
				worst_ratio = eb / e;
		}
		if (b == 1)
			CHECKF(differ, "%s: bf16 gradients are the f32 bits (no bf16 product ran)", fx);
		lm_train_free(&tr);
	}
	double el = fabs(loss[1] - loss[0]) / loss[0];
	CHECKF(el < 1e-2, "%s: bf16 loss %.6f, f32 %.6f", fx, loss[1], loss[0]);
	fprintf(stderr, "backward %-13s bf16 vs f32: %zu gradients max rel err %.2e (%.2f times the "
	        "rounded parameters'), loss %.2e\n", fx, npar, worst, worst_ratio, el);
	for (size_t i = 0; i < npar; i++)
		free(g32[i]);
	free(g32), free(e_bf16);
	lm_model_free(&m);
}

static void test_bf16(const char *root, const char *const *fixtures, size_t nfx)
{
	lm_set_compute(LM_COMPUTE_BF16);
	if (lm_compute_used() != LM_COMPUTE_BF16) {
		fprintf(stderr, "backward bf16: skip: no AVX512_BF16 (or LM_NO_BF16=1)\n");
		lm_set_compute(LM_COMPUTE_F32);
		return;
	}
	test_bf16_matmul(37, 77, 129);
	test_bf16_matmul(1, 17, 7);
	test_bf16_matmul(64, 768, 96);     /* K = tokens past the GEMM's row and column tiles */
	test_bf16_attention(2, 150, 2, 16); /* several query blocks, K per block = 64 */
	test_bf16_attention(1, 7, 3, 5);
	test_bf16_ce(23, 131, 33);
	test_bf16_ce(5, 3001, 17);
	for (size_t i = 0; i < nfx; i++)
		test_bf16_fixture(root, fixtures[i]);
	lm_set_compute(LM_COMPUTE_F32);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA");
	static const char *fixtures[] = {"pre-ln", "post-ln-proj", "fp16"};
	if (!root)
		root = "tests/fixtures";
	lm_rng_seed(&rng, 12345);
	lm_set_threads(1);
	test_kernels();
	for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++)
		test_fixture(root, fixtures[i]);
	test_lora_grads(root);
	test_merge(root);
	test_optimizer(root);
	test_layerwise(root);
	test_init_errors(root);
	test_bf16(root, fixtures, sizeof fixtures / sizeof *fixtures);
	return unit_done("backward");
}

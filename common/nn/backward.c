/* backward.c: backward kernels of OPT on flat float buffers (see backward.h for contracts).
 *
 * Like kernels.c: never -ffast-math (NaN must reach the loss so training can stop on it);
 * elementwise loops are written branch-free so gcc vectorizes them, and cloned for
 * x86-64-v4 (AVX-512) and x86-64-v3 (AVX2+FMA) where the compiler supports it. The Makefile compiles this file at
 * -O3 like kernels.o: the softmax rows of the fused cross-entropy (V exponentials per
 * token) are most of its arithmetic and stay scalar at -O2. */

#include "backward.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "opt.h"
#include "util.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define BW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BW_CLONES
#endif

#define LANES 16        /* independent partial sums: two AVX2 registers' worth */
#define ATT_QB 64       /* attention backward: queries per block */
/* cross-entropy: floats of logits per row chunk (16 MiB: 83 rows of OPT's 50272 logits,
 * enough for sgemm's efficiency, little next to the activations) */
#define CE_CHUNK ((size_t)1 << 22)

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* c ? a : b on the bits: gcc will not if-convert a float select on its own without
 * -fno-trapping-math, and a loop with a branch stays scalar */
static inline float bsel(int c, float a, float b)
{
	uint32_t m = 0u - (uint32_t)(c != 0);
	return u2f((f2u(a) & m) | (f2u(b) & ~m));
}

/* exp(x) for the softmaxes here: x = n ln2 + r with n = round(x / ln2) (the 1.5 * 2^23
 * addition rounds), ln2 split in a 16-bit head and a tail so n * head is exact, then
 * exp(r), |r| <= ln2/2, by its Taylor series to r^7 (truncation < 6e-9 relative), and 2^n
 * built in the exponent field. x is clamped to [-87, 88] so 2^n stays a normal float; the
 * softmax arguments are <= 0, and below -87 the result (~1e-38) is as good as 0. NaN stays
 * NaN. No branches: loops over it vectorize. */
static inline float bexp(float x)
{
	float xc = bsel(x < -87.0f, -87.0f, x);
	xc = bsel(xc > 88.0f, 88.0f, xc);
	float t = xc * 1.44269504088896341f + 12582912.0f;
	float n = t - 12582912.0f;
	uint32_t ni = f2u(t) - 0x4b400000u;
	float r = xc - n * 0.693145751953125f;
	r = r - n * 1.42860682030941723e-6f;
	float p = 1.0f / 5040.0f;
	p = p * r + 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	return p * u2f((ni + 127u) << 23);
}

/* max of x[0..n) (n >= 1) in LANES running maxima; a NaN is skipped here but reaches the
 * result through exp() in the caller */
static inline float bmax(const float *x, size_t n)
{
	float acc[LANES];
	size_t j = 0;
	for (int l = 0; l < LANES; l++)
		acc[l] = -INFINITY;
	for (; j + LANES <= n; j += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l];
	float m = -INFINITY;
	for (int l = 0; l < LANES; l++)
		m = acc[l] > m ? acc[l] : m;
	for (; j < n; j++)
		m = x[j] > m ? x[j] : m;
	return m;
}

/* sum of x[0..n) in LANES partial sums, combined in double */
static inline double bsum(const float *x, size_t n)
{
	float acc[LANES] = {0};
	size_t j = 0;
	for (; j + LANES <= n; j += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] += x[j + l];
	double s = 0;
	for (int l = 0; l < LANES; l++)
		s += acc[l];
	for (; j < n; j++)
		s += x[j];
	return s;
}

/* sum of x[j] * y[j], LANES partial sums combined in double */
static inline double bdot(const float *x, const float *y, size_t n)
{
	float acc[LANES] = {0};
	size_t j = 0;
	for (; j + LANES <= n; j += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] += x[j + l] * y[j + l];
	double s = 0;
	for (int l = 0; l < LANES; l++)
		s += acc[l];
	for (; j < n; j++)
		s += (double)x[j] * y[j];
	return s;
}

/* C[M,N] (ldc) = beta*C + op(A) op(B), op(A) [M,K] given as A[M,K] or (ta) A[K,M], op(B)
 * [K,N] given as B[K,N] or (tb) B[N,K], rows lda/ldb apart: cblas_sgemm's row-major forms,
 * or with bf16 (lm_compute_used() was LM_COMPUTE_BF16) the bf16 GEMM, operands rounded to
 * bf16 and products summed in fp32; one that finds no memory for its packing runs in f32.
 * Only the products change: what they feed (softmax, LayerNorm, the loss, the optimizer)
 * stays fp32, and so do the gradients they sum into (beta 1). */
static void gemm(int bf16, int ta, int tb, size_t M, size_t N, size_t K, const float *A,
                 size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
	if (bf16 && lm_gemm_bf16_t(C, ldc, A, lda, ta, B, ldb, !tb, M, N, K, beta) == 0)
		return;
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
	            (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

static int bf16_on(void)
{
	return lm_compute_used() == LM_COMPUTE_BF16;
}

/* ======================================================================================
 * small vector helpers
 * ====================================================================================== */

BW_CLONES void lm_vec_scale(float *x, float s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] *= s;
}

BW_CLONES void lm_vec_add(float *restrict y, const float *restrict x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] += x[i];
}

BW_CLONES double lm_vec_sumsq(const float *x, size_t n)
{
	return bdot(x, x, n);
}

/* ======================================================================================
 * layernorm
 * ====================================================================================== */

/* dw/db over rows [0, N): serial, so the sums over rows come in one fixed order */
BW_CLONES static void lnb_params(float *restrict dw, float *restrict db, const float *dout,
                                 const float *inp, const float *mean, const float *rstd,
                                 size_t N, size_t C)
{
	for (size_t r = 0; r < N; r++) {
		const float *d = dout + r * C, *x = inp + r * C;
		float m = mean[r], rs = rstd[r];
		if (dw)
			for (size_t i = 0; i < C; i++)
				dw[i] += d[i] * ((x[i] - m) * rs);
		if (db)
			for (size_t i = 0; i < C; i++)
				db[i] += d[i];
	}
}

struct lnb_job {
	float *dinp;
	const float *dout, *inp, *w, *mean, *rstd;
	size_t C;
	int acc;
};

/* dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w, per row */
BW_CLONES static void lnb_rows(void *ctx, size_t r0, size_t r1, int part)
{
	const struct lnb_job *j = ctx;
	size_t C = j->C;
	(void)part;
	for (size_t r = r0; r < r1; r++) {
		const float *d = j->dout + r * C, *x = j->inp + r * C, *w = j->w;
		float *o = j->dinp + r * C;
		float m = j->mean[r], rs = j->rstd[r];
		float a1[LANES] = {0}, a2[LANES] = {0};
		size_t i = 0;
		for (; i + LANES <= C; i += LANES)
			for (int l = 0; l < LANES; l++) {
				float g = d[i + l] * (w ? w[i + l] : 1.0f);
				a1[l] += g;
				a2[l] += g * ((x[i + l] - m) * rs);
			}
		double s1 = 0, s2 = 0;
		for (int l = 0; l < LANES; l++)
			s1 += a1[l], s2 += a2[l];
		for (; i < C; i++) {
			float g = d[i] * (w ? w[i] : 1.0f);
			s1 += g;
			s2 += (double)g * ((x[i] - m) * rs);
		}
		float gm = (float)(s1 / (double)C), gxm = (float)(s2 / (double)C);
		if (j->acc)
			for (i = 0; i < C; i++) {
				float g = d[i] * (w ? w[i] : 1.0f), xh = (x[i] - m) * rs;
				o[i] += (g - gm - xh * gxm) * rs;
			}
		else
			for (i = 0; i < C; i++) {
				float g = d[i] * (w ? w[i] : 1.0f), xh = (x[i] - m) * rs;
				o[i] = (g - gm - xh * gxm) * rs;
			}
	}
}

void lm_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean,
                           const float *rstd, size_t N, size_t C, int accumulate)
{
	/* parameters first: dinp may overwrite dout */
	if (w && (dw || db))
		lnb_params(dw, db, dout, inp, mean, rstd, N, C);
	if (!dinp)
		return;
	struct lnb_job j = {dinp, dout, inp, w, mean, rstd, C, accumulate};
	lm_parallel_for(N, 1 + 20000 / (C + 1), 0, lnb_rows, &j);
}

/* ======================================================================================
 * matmul
 * ====================================================================================== */

int lm_matmul_backward_inp(float *dinp, const float *dout, const struct lm_mat *w, size_t N,
                           int accumulate, float *ws)
{
	size_t OUT = (size_t)w->rows, IN = (size_t)w->cols;
	float beta = accumulate ? 1.0f : 0.0f;

	if (w->rows < 0 || w->cols < 0 || OUT > INT_MAX || IN > INT_MAX || N > INT_MAX)
		return lm_seterr("matmul backward: sizes out of range (%zu x [%lld, %lld])", N,
		                 (long long)w->rows, (long long)w->cols);
	if (!lm_mat_rows_ok(w))
		return lm_seterr("matmul backward: weights of dtype %s are not supported",
		                 lm_dtype_name(w->dtype));
	if (N == 0 || IN == 0)
		return 0;
	if (OUT == 0) {
		if (!accumulate)
			memset(dinp, 0, N * IN * sizeof *dinp);
		return 0;
	}
	int bf16 = bf16_on();
	if (w->dtype == LM_F32) {
		gemm(bf16, 0, 0, N, IN, OUT, dout, OUT, w->data, IN, beta, dinp, IN);
		return 0;
	}
	/* f16/bf16/packed (a frozen quantized weight): rows r0.. of W as an f32 tile; the
	 * product over those rows is the slice dout[:, r0..] · tile, summed into dinp tile
	 * after tile */
	size_t wsn = lm_matmul_ws(w), R = wsn / IN;
	float *tile = ws, *own = NULL;
	if (R == 0)
		return lm_seterr("matmul backward: no workspace for a %zu-wide row", IN);
	if (!tile && !(tile = own = lm_alloc(wsn * sizeof *tile)))
		return -1;
	for (size_t r0 = 0; r0 < OUT; r0 += R) {
		size_t rr = min_sz(R, OUT - r0);
		lm_mat_rows_f32(tile, w, r0, rr);
		gemm(bf16, 0, 0, N, IN, rr, dout + r0, OUT, tile, IN, beta, dinp, IN);
		beta = 1.0f;
	}
	lm_free(own);
	return 0;
}

BW_CLONES static void colsum_add(float *restrict db, const float *restrict dout, size_t N,
                                 size_t OUT)
{
	for (size_t n = 0; n < N; n++)
		for (size_t o = 0; o < OUT; o++)
			db[o] += dout[n * OUT + o];
}

void lm_matmul_backward_w(float *dw, float *db, const float *dout, const float *inp, size_t N,
                          size_t IN, size_t OUT, int accumulate)
{
	if (dw && OUT && IN) {
		if (N == 0) {
			if (!accumulate)
				memset(dw, 0, OUT * IN * sizeof *dw);
		} else {
			gemm(bf16_on(), 1, 0, OUT, IN, N, dout, OUT, inp, IN, accumulate ? 1.0f : 0.0f, dw,
			     IN);
		}
	}
	if (db)
		colsum_add(db, dout, N, OUT);
}

/* ======================================================================================
 * elementwise
 * ====================================================================================== */

BW_CLONES void lm_relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

BW_CLONES void lm_relu_mask(uint8_t *mask, const float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mask[i] = out[i] > 0.0f;
}

BW_CLONES void lm_relu_backward_mask(float *dinp, const float *dout, const uint8_t *mask, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dinp[i] = mask[i] ? dout[i] : 0.0f;
}

/* splitmix64's finalizer: a bijection of 64-bit words whose outputs look independent for
 * consecutive inputs, so hashing (key + i * odd) gives a counter-based random stream */
static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t lm_dropout_key(uint64_t seed, uint64_t step, int layer, int site)
{
	uint64_t k = mix64(seed ^ 0x6c6d2d64726f70ull);  /* "lm-drop" */
	k = mix64(k + step);
	k = mix64(k + (uint64_t)(uint32_t)layer);
	return mix64(k + (uint64_t)(uint32_t)site);
}

BW_CLONES void lm_dropout(float *x, size_t n, float p, uint64_t key)
{
	if (!(p > 0.0f))
		return;
	/* keep when the top 32 bits of the hash are >= p * 2^32 */
	double t = (double)p * 4294967296.0;
	uint32_t thr = t >= 4294967295.0 ? 0xffffffffu : (uint32_t)t;
	float s = 1.0f / (1.0f - p);
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)(mix64(key + (uint64_t)i * 0x9e3779b97f4a7c15ull) >> 32);
		x[i] *= bsel(u < thr, 0.0f, s);
	}
}

/* ======================================================================================
 * embeddings
 * ====================================================================================== */

int lm_embed_backward(float *dwte, const float *dout, const int32_t *ids, size_t N, size_t E,
                      size_t V)
{
	for (size_t n = 0; n < N; n++) {
		if (ids[n] < 0 || (size_t)ids[n] >= V)
			return lm_seterr("token id %ld at position %zu is outside the vocabulary [0, %zu)",
			                 (long)ids[n], n, V);
		lm_vec_add(dwte + (size_t)ids[n] * E, dout + n * E, E);
	}
	return 0;
}

void lm_pos_backward(float *dwpe, const float *dout, size_t B, size_t T, size_t C, size_t pos0)
{
	for (size_t b = 0; b < B; b++)
		for (size_t t = 0; t < T; t++)
			lm_vec_add(dwpe + (pos0 + t + LM_OPT_POS_OFFSET) * C, dout + (b * T + t) * C, C);
}

/* ======================================================================================
 * attention
 * ====================================================================================== */

size_t lm_attention_bwd_ws(size_t T, int nthreads)
{
	size_t qb = min_sz(ATT_QB, T ? T : 1);
	return 2 * qb * (T ? T : 1) * (size_t)(nthreads > 1 ? nthreads : 1);
}

/* one row of scores s[0..valid) to probabilities (zeros after, up to kn) */
BW_CLONES static void prob_row(float *s, size_t valid, size_t kn)
{
	float m = bmax(s, valid);
	for (size_t j = 0; j < valid; j++)
		s[j] = bexp(s[j] - m);
	float inv = (float)(1.0 / bsum(s, valid));
	for (size_t j = 0; j < valid; j++)
		s[j] *= inv;
	for (size_t j = valid; j < kn; j++)
		s[j] = 0.0f;
}

/* dS = P (dP - sum_j P dP) over the row, in place in dp */
BW_CLONES static void dsoft_row(float *dp, const float *p, size_t kn)
{
	float dsum = (float)bdot(p, dp, kn);
	for (size_t j = 0; j < kn; j++)
		dp[j] = p[j] * (dp[j] - dsum);
}

struct attb_job {
	float *dq, *dk, *dv, *ws;
	const float *dout, *q, *k, *v;
	size_t T, NH, HS, per_part;
	int bf16;  /* the five products by the bf16 GEMM (bf16_on(), asked before the threads) */
};

static void attb_heads(void *ctx, size_t i0, size_t i1, int part)
{
	const struct attb_job *j = ctx;
	size_t HS = j->HS, C = j->NH * HS, T = j->T;
	float *P = j->ws + (size_t)part * j->per_part, *dP = P + min_sz(ATT_QB, T) * T;

	for (size_t i = i0; i < i1; i++) {
		size_t b = i / j->NH, h = i % j->NH, base = b * T * C + h * HS;
		const float *qh = j->q + base, *kh = j->k + base, *vh = j->v + base, *doh = j->dout + base;
		float *dqh = j->dq + base, *dkh = j->dk + base, *dvh = j->dv + base;
		for (size_t t = 0; t < T; t++) {
			memset(dkh + t * C, 0, HS * sizeof *dkh);
			memset(dvh + t * C, 0, HS * sizeof *dvh);
		}
		for (size_t t0 = 0; t0 < T; t0 += ATT_QB) {
			size_t qb = min_sz(ATT_QB, T - t0), kn = t0 + qb;
			/* P = softmax(Q_blk K^T) as in the forward, causal */
			gemm(j->bf16, 0, 1, qb, kn, HS, qh + t0 * C, C, kh, C, 0.0f, P, kn);
			for (size_t r = 0; r < qb; r++)
				prob_row(P + r * kn, t0 + r + 1, kn);
			/* dP = dO_blk V^T; dS = P (dP - rowsum(P dP)) */
			gemm(j->bf16, 0, 1, qb, kn, HS, doh + t0 * C, C, vh, C, 0.0f, dP, kn);
			for (size_t r = 0; r < qb; r++)
				dsoft_row(dP + r * kn, P + r * kn, kn);
			/* dQ_blk = dS K; dK += dS^T Q_blk; dV += P^T dO_blk */
			gemm(j->bf16, 0, 0, qb, HS, kn, dP, kn, kh, C, 0.0f, dqh + t0 * C, C);
			gemm(j->bf16, 1, 0, kn, HS, qb, dP, kn, qh + t0 * C, C, 1.0f, dkh, C);
			gemm(j->bf16, 1, 0, kn, HS, qb, P, kn, doh + t0 * C, C, 1.0f, dvh, C);
		}
	}
}

int lm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, size_t B, size_t T, size_t NH,
                          size_t HS, float *ws, size_t ws_n)
{
	struct attb_job j = {dq, dk, dv, ws, dout, q, k, v, T, NH, HS, lm_attention_bwd_ws(T, 1),
	                     bf16_on()};
	float *own = NULL;
	int nt = lm_threads();

	if (NH * HS > INT_MAX || T > INT_MAX)
		return lm_seterr("attention backward: sizes out of range");
	if (B == 0 || T == 0 || NH == 0 || HS == 0)
		return 0;
	if (!ws) {
		ws_n = lm_attention_bwd_ws(T, nt);
		if (!(j.ws = own = lm_alloc(ws_n * sizeof *ws)))
			return -1;
	}
	size_t parts = ws_n / j.per_part;
	if (parts == 0) {
		lm_free(own);
		return lm_seterr("attention backward: workspace too small");
	}
	if (parts > (size_t)nt)
		parts = (size_t)nt;
	double work = (double)B * (double)NH * (double)T * (double)T * (double)HS;
	if (parts < 2 || B * NH < 2 || work < 4e6) {
		attb_heads(&j, 0, B * NH, 0);
	} else {
		/* one (batch, head) pair per thread with single-threaded BLAS, as the forward */
		int blas = openblas_get_num_threads();
		openblas_set_num_threads(1);
		lm_parallel_for(B * NH, 1, (int)parts, attb_heads, &j);
		openblas_set_num_threads(blas);
	}
	lm_free(own);
	return 0;
}

/* ======================================================================================
 * logits + cross-entropy
 * ====================================================================================== */

size_t lm_ce_bwd_ws(size_t N, size_t V)
{
	size_t rc = CE_CHUNK / (V ? V : 1);
	rc = rc < 16 ? 16 : rc > 1024 ? 1024 : rc;
	return min_sz(rc, N ? N : 1) * (V ? V : 1);
}

struct ceb_job {
	float *Z, *nll;
	const int32_t *target;
	size_t n0, V;
	float scale;
	int grad;
	const float *rw;   /* per-row weights (times scale) or NULL */
	float *Q;          /* soft targets: the reference logits of the chunk (overwritten), or NULL */
};

/* one row against soft targets q = softmax(zq): nll = -sum q log softmax(z) =
 * logsumexp(z) - sum q z; (grad) z becomes sc * (softmax(z) - q). zq is overwritten. */
static void soft_row(float *z, float *zq, size_t V, float sc, int grad, float *nll)
{
	float mq = bmax(zq, V), m = bmax(z, V);
	for (size_t i = 0; i < V; i++)
		zq[i] = bexp(zq[i] - mq);
	double sq = bsum(zq, V), qz = 0;
	for (size_t i = 0; i < V; i++) {
		zq[i] = (float)((double)zq[i] / sq);
		qz += (double)zq[i] * (double)z[i];
	}
	for (size_t i = 0; i < V; i++)
		z[i] = bexp(z[i] - m);
	double s = bsum(z, V);
	*nll = (float)(log(s) + (double)m - qz);
	if (!grad)
		return;
	float k = (float)(1.0 / s);
	for (size_t i = 0; i < V; i++)
		z[i] = sc * (z[i] * k - zq[i]);
}

/* per row of the chunk: nll from the logits, then (grad) the logits become
 * dL/dz = scale * (softmax(z) - onehot(target)) */
BW_CLONES static void ceb_rows(void *ctx, size_t r0, size_t r1, int part)
{
	const struct ceb_job *j = ctx;
	size_t V = j->V;
	(void)part;
	for (size_t r = r0; r < r1; r++) {
		float *z = j->Z + r * V;
		int32_t t = j->target[j->n0 + r];
		if (t < 0) {
			j->nll[j->n0 + r] = 0.0f;
			if (j->grad)
				memset(z, 0, V * sizeof *z);
			continue;
		}
		float sc = j->rw ? j->scale * j->rw[j->n0 + r] : j->scale;
		if (j->Q) {
			soft_row(z, j->Q + r * V, V, sc, j->grad, &j->nll[j->n0 + r]);
			continue;
		}
		float zt = z[t], m = bmax(z, V);
		for (size_t i = 0; i < V; i++)
			z[i] = bexp(z[i] - m);
		double s = bsum(z, V);
		j->nll[j->n0 + r] = (float)(log(s) + (double)m - (double)zt);
		if (!j->grad)
			continue;
		float k = (float)((double)sc / s);
		for (size_t i = 0; i < V; i++)
			z[i] *= k;
		z[t] -= sc;
	}
}

int lm_logits_ce_backward(float *nll, float *dinp, float *dhead, const float *inp,
                          const float *head, const int32_t *target, size_t N, size_t V,
                          size_t E, float scale, float *ws, size_t ws_n)
{
	return lm_logits_loss_backward(nll, dinp, dhead, inp, head, target, N, V, E, scale, NULL,
	                               ws, ws_n);
}

/* the bf16-packed LM head of lm_logits_loss_backward, n uint32: one buffer per thread, grown
 * and kept, since fresh pages for OPT-125m's 154 MB at every call cost more in page faults
 * (system time) than packing per chunk did. NULL without the memory. */
static uint32_t *head_buf(size_t n)
{
	static _Thread_local uint32_t *buf;
	static _Thread_local size_t have;
	if (n > have) {
		lm_free(buf);
		have = 0;
		if (!(buf = lm_alloc(n * sizeof *buf)))
			return NULL;
		have = n;
	}
	return buf;
}

int lm_logits_loss_backward(float *nll, float *dinp, float *dhead, const float *inp,
                            const float *head, const int32_t *target, size_t N, size_t V,
                            size_t E, float scale, const struct lm_ce_opts *o, float *ws,
                            size_t ws_n)
{
	float *own = NULL;
	const float *rw = o ? o->rw : NULL;
	const float *rinp = o ? o->ref_inp : NULL, *rhead = o && o->ref_head ? o->ref_head : head;
	size_t per = rinp ? 2 : 1;   /* soft targets: a second chunk of logits */
	int bf16 = bf16_on();        /* the four products; the softmax and the loss stay fp32 */

	if (V > INT_MAX || E > INT_MAX || N > INT_MAX)
		return lm_seterr("lm_head: sizes out of range");
	for (size_t n = 0; n < N; n++)
		if (target[n] >= 0 && (size_t)target[n] >= V)
			return lm_seterr("target id %ld at row %zu is outside the vocabulary [0, %zu)",
			                 (long)target[n], n, V);
	if (N == 0)
		return 0;
	if (!ws || (V && ws_n / (per * V) == 0)) {
		ws_n = per * lm_ce_bwd_ws(N, V);
		if (!(ws = own = lm_alloc(ws_n * sizeof *ws)))
			return -1;
	}
	size_t rc = V ? ws_n / (per * V) : N;
	float *wq = rinp ? ws + rc * V : NULL;
	/* bf16: the head packed once for all chunks, in the layout of each product it enters
	 * (logits: [V x E] as B^T; dinp: [V x E] as B). Packing it per chunk cost as much as the
	 * products themselves (38.6M values twice per chunk of 83 rows for OPT-125m); the bits
	 * are those of the unpacked product (gemm_bf16.h). Without the memory, per chunk. */
	uint32_t *hz = NULL, *hd = NULL;
	if (bf16 && E > 0 && V > 0 && N > rc) {
		size_t nz = lm_gemm_bf16_packed_b(V, E), nd = dinp ? lm_gemm_bf16_packed_b(E, V) : 0;
		if ((hz = head_buf(nz + nd)))
			hd = dinp ? hz + nz : NULL;
		if (hz)
			lm_gemm_bf16_pack_b_t(hz, head, E, 0, V, E);
		if (hd)
			lm_gemm_bf16_pack_b_t(hd, head, E, 1, E, V);
	}
	for (size_t n0 = 0; n0 < N; n0 += rc) {
		size_t nr = min_sz(rc, N - n0);
		if (E == 0) {
			memset(ws, 0, nr * V * sizeof *ws);
			if (wq)
				memset(wq, 0, nr * V * sizeof *wq);
		} else {
			if (!hz || lm_gemm_bf16_b_packed(ws, V, inp + n0 * E, E, 0, hz, nr, V, E, 0.0f) < 0)
				gemm(bf16, 0, 1, nr, V, E, inp + n0 * E, E, head, E, 0.0f, ws, V);
			if (wq)
				gemm(bf16, 0, 1, nr, V, E, rinp + n0 * E, E, rhead, E, 0.0f, wq, V);
		}
		struct ceb_job j = {ws, nll, target, n0, V, scale, dinp != NULL || dhead != NULL, rw,
		                    wq};
		lm_parallel_for(nr, 1 + 65536 / (V + 1), 0, ceb_rows, &j);
		if (E == 0)
			continue;
		if (dinp && (!hd || lm_gemm_bf16_b_packed(dinp + n0 * E, E, ws, V, 0, hd, nr, E, V,
		                                          0.0f) < 0))
			gemm(bf16, 0, 0, nr, E, V, ws, V, head, E, 0.0f, dinp + n0 * E, E);
		if (dhead)
			gemm(bf16, 1, 0, V, E, nr, ws, V, inp + n0 * E, E, 1.0f, dhead, E);
	}
	lm_free(own);
	return 0;
}

/* ======================================================================================
 * mean squared error
 * ====================================================================================== */

double lm_mse_backward(float *dout, const float *out, const float *target, size_t n)
{
	double s = 0;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)out[i] - target[i];
		s += d * d;
	}
	if (dout) {
		float k = (float)(2.0 / (double)n);
		for (size_t i = 0; i < n; i++)
			dout[i] = (out[i] - target[i]) * k;
	}
	return s / (double)n;
}

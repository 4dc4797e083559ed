/* test_kernels.c: each optimized kernel of common/nn/kernels.c against its naive reference,
 * on small deterministic random data, at sizes that cross every blocking boundary
 * (LANES tails, attention query blocks, matmul weight tiles, cross-entropy tiles/chunks). */
#include "dtype.h"
#include "kernels.h"
#include "quant.h"
#include "unit.h"
#include "util.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define TOL 1e-5   /* relative (max abs err / max abs value) for f32 kernels vs references */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* splitmix64 -> uniform float in [-1, 1) */
static float frand(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (float)((double)(z >> 40) / (double)(1ull << 23)) - 1.0f;
}

static float *randv(size_t n, float scale)
{
	float *v = lm_alloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = frand() * scale;
	return v;
}

static void test_convert(void)
{
	float *a = lm_alloc(65536 * sizeof *a), *b = lm_alloc(65536 * sizeof *b);
	uint16_t *h = lm_alloc(65536 * sizeof *h);
	int bad16 = 0, badbf = 0;
	for (uint32_t i = 0; i < 65536; i++)
		h[i] = (uint16_t)i;
	CHECK(lm_rows_to_f32(a, h, LM_F16, 65536) == 0);
	lm_to_f32(b, h, LM_F16, 65536);
	for (size_t i = 0; i < 65536; i++)
		if (isnan(b[i]) ? !isnan(a[i]) : memcmp(&a[i], &b[i], 4) != 0)
			bad16++;
	CHECKF(bad16 == 0, "%d f16 values convert differently", bad16);
	CHECK(lm_rows_to_f32(a, h, LM_BF16, 65536) == 0);
	lm_to_f32(b, h, LM_BF16, 65536);
	for (size_t i = 0; i < 65536; i++)
		if (isnan(b[i]) ? !isnan(a[i]) : memcmp(&a[i], &b[i], 4) != 0)
			badbf++;
	CHECKF(badbf == 0, "%d bf16 values convert differently", badbf);
	CHECK(lm_rows_to_f32(a, h, LM_I32, 4) < 0);
	lm_free(a), lm_free(b), lm_free(h);
}

static void test_layernorm(void)
{
	const size_t N = 37, C = 100;
	float *x = randv(N * C, 3), *w = randv(C, 1), *b = randv(C, 1);
	float *o1 = lm_alloc(N * C * 4), *o2 = lm_alloc(N * C * 4);
	float m1[37], m2[37], r1[37], r2[37];
	for (size_t i = 0; i < N * C; i++)
		x[i] += 5.0f; /* a large mean: the variance must not cancel */
	lm_layernorm_forward(o1, m1, r1, x, w, b, N, C, 1e-5f);
	lm_layernorm_forward_ref(o2, m2, r2, x, w, b, N, C, 1e-5f);
	CHECKF(unit_relerr(o1, o2, N * C) < TOL, "layernorm %g", unit_relerr(o1, o2, N * C));
	CHECK(unit_relerr(m1, m2, N) < TOL);
	CHECK(unit_relerr(r1, r2, N) < TOL);
	lm_layernorm_forward(o1, NULL, NULL, x, NULL, NULL, N, C, 1e-5f);
	lm_layernorm_forward_ref(o2, NULL, NULL, x, NULL, NULL, N, C, 1e-5f);
	CHECK(unit_relerr(o1, o2, N * C) < TOL);
	/* in place */
	memcpy(o1, x, N * C * 4);
	lm_layernorm_forward(o1, NULL, NULL, o1, w, b, N, C, 1e-5f);
	lm_layernorm_forward_ref(o2, NULL, NULL, x, w, b, N, C, 1e-5f);
	CHECK(unit_relerr(o1, o2, N * C) < TOL);
	lm_free(x), lm_free(w), lm_free(b), lm_free(o1), lm_free(o2);
}

/* w f32 [OUT, IN] converted to dt and back, so both sides see identical weights */
static struct lm_mat make_mat(float *w, size_t OUT, size_t IN, enum lm_dtype dt)
{
	struct lm_mat m = {.dtype = dt, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = NULL};
	m.data = lm_alloc(OUT * IN * lm_dtype_size(dt));
	lm_convert(m.data, dt, w, LM_F32, OUT * IN);
	lm_to_f32(w, m.data, dt, OUT * IN);
	return m;
}

static void check_matmul(size_t N, size_t IN, size_t OUT, enum lm_dtype dt, int bias, int use_ws)
{
	float *x = randv(N * IN, 1), *w = randv(OUT * IN, 1), *b = bias ? randv(OUT, 1) : NULL;
	float *y1 = lm_alloc(N * OUT * 4), *y2 = lm_alloc(N * OUT * 4);
	struct lm_mat m = make_mat(w, OUT, IN, dt);
	float *ws = use_ws ? lm_alloc((lm_matmul_ws(&m) + 1) * 4) : NULL;
	CHECK(lm_matmul_forward(y1, x, &m, b, N, ws) == 0);
	lm_matmul_forward_ref(y2, x, w, b, N, IN, OUT);
	double e = unit_relerr(y1, y2, N * OUT);
	CHECKF(e < TOL, "matmul %s N=%zu IN=%zu OUT=%zu: %g", lm_dtype_name(dt), N, IN, OUT, e);
	lm_free(x), lm_free(w), lm_free(b), lm_free(y1), lm_free(y2), lm_free(m.data), lm_free(ws);
}

static void test_matmul(void)
{
	check_matmul(33, 70, 45, LM_F32, 1, 0);
	check_matmul(33, 70, 45, LM_F32, 0, 0);
	check_matmul(1, 70, 45, LM_F32, 1, 0);    /* gemv */
	check_matmul(33, 70, 45, LM_F16, 1, 1);
	check_matmul(33, 70, 45, LM_BF16, 0, 1);
	check_matmul(1, 64, 300, LM_F16, 1, 1);
	check_matmul(3, 70, 2000, LM_F16, 1, 1);  /* several small tiles (few rows of x) */
	check_matmul(20, 70, 15100, LM_BF16, 1, 0); /* two big tiles, workspace allocated inside */
	check_matmul(5, 0, 7, LM_F32, 1, 0);      /* empty inner dimension: bias only */
	/* decoding with threads: each takes whole small tiles into its share of the workspace */
	int nt = lm_threads();
	lm_set_threads(3);
	check_matmul(3, 70, 20000, LM_F16, 1, 1); /* 22 tiles of 928 rows over 3 threads */
	check_matmul(1, 70, 30001, LM_BF16, 0, 1);
	check_matmul(2, 70, 20000, LM_F16, 1, 0); /* workspace allocated inside */
	lm_set_threads(nt);

	/* an unsupported dtype is an error, not a crash */
	struct lm_mat bad = {.dtype = LM_I8, .rows = 2, .cols = 2, .data = NULL};
	float x[4] = {0}, y[4];
	CHECK(lm_matmul_forward(y, x, &bad, NULL, 2, NULL) < 0);
}

static void test_elementwise(void)
{
	float in[35], out[35], b[35];
	for (int i = 0; i < 35; i++)
		in[i] = frand(), b[i] = frand();
	in[3] = NAN, in[4] = -0.0f, in[5] = -INFINITY, in[6] = INFINITY;
	lm_relu_forward(out, in, 35);
	int ok = 1;
	for (int i = 0; i < 35; i++) {
		if (i == 3)
			ok &= isnan(out[i]);
		else
			ok &= out[i] == (in[i] > 0 ? in[i] : 0.0f);
	}
	CHECK(ok);
	lm_residual_forward(out, in, b, 35);
	ok = 1;
	for (int i = 7; i < 35; i++)
		ok &= out[i] == in[i] + b[i];
	CHECK(ok);
	memcpy(out, in, sizeof in);
	lm_bias_scale(out, b, 0.25f, 5, 7);
	ok = 1;
	for (int i = 7; i < 35; i++)
		ok &= out[i] == (in[i] + b[i % 7]) * 0.25f;
	CHECK(ok);
}

static void test_embed(void)
{
	const size_t V = 11, E = 6, P = 9, B = 2, T = 3;
	float *w = randv(V * E, 1), *p = randv((P + 2) * E, 1), x[36];
	struct lm_mat wte = make_mat(w, V, E, LM_F16), wpe = make_mat(p, P + 2, E, LM_BF16);
	int32_t ids[6] = {0, 10, 3, 4, 4, 2};
	CHECK(lm_embed_forward(x, ids, &wte, B * T) == 0);
	CHECK(lm_pos_forward(x, &wpe, B, T, 1) == 0);
	int ok = 1;
	for (size_t b = 0; b < B; b++)
		for (size_t t = 0; t < T; t++)
			for (size_t e = 0; e < E; e++)
				ok &= x[(b * T + t) * E + e] ==
				      w[ids[b * T + t] * E + e] + p[(t + 1 + 2) * E + e];
	CHECK(ok);
	ids[2] = 11;
	CHECK(lm_embed_forward(x, ids, &wte, B * T) < 0);
	ids[2] = -1;
	CHECK(lm_embed_forward(x, ids, &wte, B * T) < 0);
	CHECK(lm_pos_forward(x, &wpe, B, T, P - T) == 0);  /* the last position fits */
	CHECK(lm_pos_forward(x, &wpe, B, T, P - T + 1) < 0);
	lm_free(w), lm_free(p), lm_free(wte.data), lm_free(wpe.data);
}

static void check_attention(size_t B, size_t Tq, size_t Tk, size_t kv_rows, size_t NH, size_t HS,
                            float qscale)
{
	size_t C = NH * HS;
	float *q = randv(B * Tq * C, qscale), *k = randv(B * kv_rows * C, 1);
	float *v = randv(B * kv_rows * C, 1);
	float *o1 = lm_alloc(B * Tq * C * 4), *o2 = lm_alloc(B * Tq * C * 4);
	size_t ws_n = lm_attention_ws(Tq, Tk, lm_threads());
	float *ws = lm_alloc(ws_n * 4);
	CHECK(lm_attention_forward(o1, q, k, v, B, Tq, Tk, kv_rows, NH, HS, ws, ws_n) == 0);
	lm_attention_forward_ref(o2, q, k, v, B, Tq, Tk, kv_rows, NH, HS);
	double e = unit_relerr(o1, o2, B * Tq * C);
	CHECKF(e < TOL, "attention B=%zu Tq=%zu Tk=%zu NH=%zu HS=%zu: %g", B, Tq, Tk, NH, HS, e);
	/* without a workspace: allocated inside, the same computation, so bitwise the same */
	CHECK(lm_attention_forward(o2, q, k, v, B, Tq, Tk, kv_rows, NH, HS, NULL, 0) == 0);
	CHECK(memcmp(o1, o2, B * Tq * C * 4) == 0);
	lm_free(q), lm_free(k), lm_free(v), lm_free(o1), lm_free(o2), lm_free(ws);
}

static void test_attention(void)
{
	check_attention(2, 37, 37, 37, 3, 8, 1);
	check_attention(2, 150, 150, 150, 3, 8, 1);   /* two query blocks */
	check_attention(1, 300, 300, 300, 2, 16, 4);  /* wide score range for exp */
	check_attention(2, 5, 150, 160, 3, 8, 1);     /* KV cache: 5 new queries, padded rows */
	check_attention(2, 1, 150, 160, 3, 8, 1);     /* decoding one token (gemv) */
	check_attention(2, 1, 150, 160, 12, 16, 1);   /* the same, heads over the pool (hot) */
	check_attention(2, 300, 300, 300, 3, 16, 1);  /* big enough for heads in parallel */
	check_attention(1, 1, 1, 1, 1, 4, 1);
}

static void check_ce(size_t N, size_t E, size_t V, enum lm_dtype dt)
{
	float *x = randv(N * E, 1), *w = randv(V * E, 2);
	float *z = lm_alloc(N * V * 4), *z2 = lm_alloc(N * V * 4);
	float *nll = lm_alloc(N * 4), *nll2 = lm_alloc(N * 4);
	int32_t *t = lm_alloc(N * 4);
	struct lm_mat h = make_mat(w, V, E, dt);
	for (size_t n = 0; n < N; n++)
		t[n] = n % 7 == 3 ? -1 : (int32_t)((n * 7919) % V);
	t[0] = (int32_t)V - 1;
	/* with logits out, then without, against log-softmax of the reference logits */
	CHECK(lm_logits_ce_forward(nll, z, x, &h, t, N, NULL) == 0);
	lm_matmul_forward_ref(z2, x, w, NULL, N, E, V);
	lm_crossentropy_ref(nll2, z2, t, N, V);
	double ez = unit_relerr(z, z2, N * V), en = unit_relerr(nll, nll2, N);
	CHECKF(ez < TOL, "ce logits N=%zu E=%zu V=%zu %s: %g", N, E, V, lm_dtype_name(dt), ez);
	CHECKF(en < TOL, "ce nll N=%zu E=%zu V=%zu %s: %g", N, E, V, lm_dtype_name(dt), en);
	float *ws = lm_alloc(lm_ce_ws(&h, N) * 4);
	/* bitwise: the same rows in the same chunks on the same CPU, with or without logits out */
	CHECK(lm_logits_ce_forward(nll2, NULL, x, &h, t, N, ws) == 0);
	CHECK(memcmp(nll, nll2, N * 4) == 0);
	int ign = 1;
	for (size_t n = 0; n < N; n++)
		if (t[n] < 0)
			ign &= nll[n] == 0.0f;
	CHECK(ign);
	/* a workspace for fewer rows: smaller chunks, the same values to rounding. Not bitwise:
	 * sgemm over 5 rows and over N rows may take different kernel paths (OpenBLAS's Haswell
	 * and Zen cores do), which round differently in the last bits */
	size_t small = lm_ce_ws(&h, N < 5 ? N : 5) + 2 * (N < 5 ? 0 : N - 5);
	CHECK(lm_logits_ce_forward_ws(nll2, NULL, x, &h, t, N, ws, small) == 0);
	double ec = unit_relerr(nll2, nll, N);
	CHECKF(ec < 1e-6, "ce with a 5-row chunk N=%zu %s: %g", N, lm_dtype_name(dt), ec);
	t[1] = (int32_t)V;
	CHECK(lm_logits_ce_forward(nll2, NULL, x, &h, t, N, ws) < 0);
	lm_free(x), lm_free(w), lm_free(z), lm_free(z2), lm_free(nll), lm_free(nll2), lm_free(t);
	lm_free(h.data), lm_free(ws);
}

/* a packed (q4, groups of 32) head and embedding matrix read as their dequantized values */
static void test_packed_head(void)
{
	size_t N = 9, E = 64, V = 300;
	float *x = randv(N * E, 3), *w = randv(V * E, 4), *wd = lm_alloc(V * E * 4);
	float *nll = lm_alloc(N * 4), *nll2 = lm_alloc(N * 4), *e = lm_alloc(N * E * 4);
	int32_t t[9] = {0, 299, 5, -1, 77, 150, 2, 298, 1};
	enum lm_dtype q = (enum lm_dtype)lm_dtype_q(4, 32);
	int64_t shape[2] = {(int64_t)V, (int64_t)E};
	size_t nb;
	CHECK(lm_dtype_nbytes(q, 2, shape, &nb) == 0);
	void *packed = lm_alloc(nb);
	CHECK(lm_q_rtn(packed, q, w, V, E, 0) == 0);
	CHECK(lm_q_dequant_rows(wd, packed, q, V, E) == 0);
	struct lm_mat hp = {.dtype = q, .rows = (int64_t)V, .cols = (int64_t)E, .data = packed}, hd = {.dtype = LM_F32, .rows = (int64_t)V, .cols = (int64_t)E, .data = wd};
	CHECK(lm_logits_ce_forward(nll, NULL, x, &hp, t, N, NULL) == 0);
	CHECK(lm_logits_ce_forward(nll2, NULL, x, &hd, t, N, NULL) == 0);
	CHECKF(unit_relerr(nll, nll2, N) < 1e-6, "packed head nll: %g", unit_relerr(nll, nll2, N));
	int32_t ids[9] = {0, 299, 5, 5, 77, 150, 2, 298, 1};
	CHECK(lm_embed_forward(e, ids, &hp, N) == 0);
	int same = 1;
	for (size_t n = 0; n < N; n++)
		same &= memcmp(e + n * E, wd + (size_t)ids[n] * E, E * 4) == 0;
	CHECK(same);
	lm_free(x), lm_free(w), lm_free(wd), lm_free(nll), lm_free(nll2), lm_free(e), lm_free(packed);
}

static void test_ce(void)
{
	check_ce(37, 24, 2500, LM_F32);   /* several vocabulary tiles, the last partial */
	check_ce(37, 24, 2500, LM_F16);
	check_ce(1030, 8, 1100, LM_BF16); /* several row chunks */
	check_ce(3, 5, 7, LM_F32);

	/* a huge logit must not overflow: logsumexp of {1000, 0} is 1000 + log1p(e^-1000) */
	float x[2] = {1.0f, 0.0f}, w[4] = {1000.0f, 0.0f, 0.0f, 0.0f}, nll[1];
	struct lm_mat h = {.dtype = LM_F32, .rows = 2, .cols = 2, .data = w};
	int32_t t[1] = {1};
	CHECK(lm_logits_ce_forward(nll, NULL, x, &h, t, 1, NULL) == 0);
	CHECKF(fabsf(nll[0] - 1000.0f) < 1e-3f, "nll %g", nll[0]);
	/* NaN in the input propagates */
	x[1] = NAN;
	CHECK(lm_logits_ce_forward(nll, NULL, x, &h, t, 1, NULL) == 0);
	CHECK(isnan(nll[0]));
}

static void test_argmax(void)
{
	float x[6] = {1, 3, 3, NAN, -INFINITY, 2};
	CHECK(lm_argmax(x, 6) == 1);
	float y[3] = {NAN, 1, 0};
	CHECK(lm_argmax(y, 3) == 1);
	CHECK(lm_argmax(x, 1) == 0);
	/* the vectorized pass against the plain scan (first strict maximum, NaNs skipped) on
	 * lengths around the vector widths, with ties, NaNs, both zeros and infinities */
	static float z[1000];
	unsigned r = 12345;
	for (int trial = 0; trial < 400; trial++) {
		size_t n = 1 + (size_t)(trial * 7 % 997);
		for (size_t i = 0; i < n; i++) {
			r = r * 1103515245u + 12345u;
			unsigned c = (r >> 16) % 64;
			z[i] = c == 0 ? NAN : c == 1 ? -NAN : c == 2 ? -0.0f : c == 3 ? 0.0f
			     : c == 4 ? -INFINITY : c == 5 && trial % 5 == 0 ? INFINITY
			     : (float)((int)((r >> 8) % 41) - 20); /* many ties */
		}
		if (trial % 50 == 7) /* all NaN */
			for (size_t i = 0; i < n; i++)
				z[i] = NAN;
		if (trial % 50 == 9) /* zeros of both signs only */
			for (size_t i = 0; i < n; i++)
				z[i] = i % 3 ? 0.0f : -0.0f;
		size_t best = 0;
		for (size_t i = 1; i < n; i++)
			if (z[i] > z[best] || (z[best] != z[best] && z[i] == z[i]))
				best = i;
		CHECK(lm_argmax(z, n) == best);
	}
}

struct cover { int hits[1000]; };

static void cover_part(void *ctx, size_t i0, size_t i1, int part)
{
	struct cover *c = ctx;
	for (size_t i = i0; i < i1; i++)
		c->hits[i] += 1 + part * 1000;
}

static void test_threads(void)
{
	static struct cover c;
	lm_set_threads(2);
	CHECK(lm_threads() == 2);
	for (int rep = 0; rep < 50; rep++)
		CHECK(lm_parallel_for(1000, 1, 0, cover_part, &c) == 2);
	int ok = 1;
	for (int i = 0; i < 1000; i++)  /* each index once per run, by part 0 then part 1 */
		ok &= c.hits[i] == (i < 500 ? 50 : 50 * 1001);
	CHECK(ok);
	CHECK(lm_parallel_for(1000, 600, 0, cover_part, &c) == 1);  /* grain too big for 2 */
	/* hot jobs (polling workers) mixed with plain ones (sleeping workers), back to back and
	 * after a pause past the polling window: every index once per job, and the caller
	 * sees the other part's writes as soon as the call returns */
	static struct cover h;
	ok = 1;
	for (int rep = 0; rep < 400; rep++) {
		int hot = rep % 3 != 2;
		if (rep % 100 == 99)
			usleep(1000); /* > the 0.2 ms of polling: the worker has gone to sleep */
		CHECK((hot ? lm_parallel_for_hot : lm_parallel_for)(1000, 1, 0, cover_part, &h) == 2);
		ok &= h.hits[0] == rep + 1 && h.hits[999] == (rep + 1) * 1001;
	}
	CHECK(ok);
	/* the threaded row loops give the same numbers */
	test_layernorm();
	test_attention();
	check_ce(300, 16, 3000, LM_F16);
	lm_set_threads(1);
	CHECK(lm_threads() == 1);
}

int main(void)
{
	test_convert();
	test_layernorm();
	test_matmul();
	test_elementwise();
	test_embed();
	test_attention();
	test_ce();
	test_packed_head();
	test_argmax();
	test_threads();
	return unit_done("kernels");
}

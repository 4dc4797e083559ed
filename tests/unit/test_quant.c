/* test_quant.c: packed dtypes, the GPTQ-reference quantizer, RTN, the matmul on packed
 * weights and GPTQ with and without act-order (quant.h, gptq.h) */
#include "dtype.h"
#include "gptq.h"
#include "hessian.h"
#include "kernels.h"
#include "quant.h"
#include "rng.h"
#include "util.h"
#include "unit.h"

#include <string.h>

/* deterministic data as ggml's quantization tests use */
static void synth(float *x, size_t n, float off)
{
	for (size_t i = 0; i < n; i++)
		x[i] = 0.1f + 2.0f * cosf((float)i + off);
}

static void test_dtypes(void)
{
	int64_t shape[2] = {256, 256};
	size_t nb = 0;
	/* ids are on the wire (through their names) and must never move */
	CHECK(LM_Q4_G128 == 51);
	CHECK(lm_dtype_q(4, 128) == LM_Q4_G128);
	CHECK(lm_dtype_q(2, 0) == 32 && lm_dtype_q(8, 2048) == 63);
	CHECK(lm_dtype_q(5, 128) == -1 && lm_dtype_q(4, 100) == -1 && lm_dtype_q(16, 0) == -1);
	CHECK(!strcmp(lm_dtype_name(LM_Q4_G128), "q4g128"));
	CHECK(!strcmp(lm_dtype_name((enum lm_dtype)lm_dtype_q(3, 0)), "q3c"));
	CHECK(lm_dtype_parse("q4g128") == LM_Q4_G128);
	CHECK(lm_dtype_parse("q4g100") == -1);
	CHECK(lm_dtype_info((enum lm_dtype)20) == NULL);   /* a hole: no type */
	/* 256 rows of 2 groups of (4 + 64) bytes */
	CHECK(lm_dtype_nbytes(LM_Q4_G128, 2, shape, &nb) == 0 && nb == 256u * 2 * 68);
	CHECK(lm_dtype_nbytes((enum lm_dtype)lm_dtype_q(3, 0), 2, shape, &nb) == 0 && nb == 256u * (4 + 96));
	shape[1] = 192;   /* groups of 128 do not divide it */
	CHECK(lm_dtype_nbytes(LM_Q4_G128, 2, shape, &nb) < 0);
	CHECK(lm_dtype_nbytes(LM_Q4_G128, 1, shape, &nb) < 0);
	CHECK(lm_dtype_nbytes(LM_F16, 2, shape, &nb) == 0 && nb == 256u * 192 * 2);
}

/* the reference's fake quantization in double, with the scale rounded to f16 as stored */
static double ref_value(double w, const float *grp, size_t G, int bits, int sym)
{
	double lo = 0, hi = 0, maxq = (1 << bits) - 1, scale, zero, q;
	for (size_t i = 0; i < G; i++)
		lo = grp[i] < lo ? grp[i] : lo, hi = grp[i] > hi ? grp[i] : hi;
	if (sym) {
		hi = -lo > hi ? -lo : hi;
		if (lo < 0)
			lo = -hi;
	}
	scale = lm_f16_to_f32(lm_f32_to_f16((float)((hi - lo) / maxq)));
	zero = sym ? (maxq + 1) / 2 : nearbyint(-lo / scale);
	q = nearbyint(w / scale) + zero;
	q = q < 0 ? 0 : q > maxq ? maxq : q;
	return scale * (q - zero);
}

static void test_rtn(void)
{
	enum { R = 8, C = 256 };
	static const int bitss[] = {2, 3, 4, 8}, groups[] = {0, 32, 128, 256};
	float W[R * C], D[R * C];
	static uint8_t buf[R * C * 2];
	synth(W, R * C, 0.5f);
	for (int i = 0; i < R * C; i += 3)
		W[i] = 0.0f;   /* "pruned" */
	for (int sym = 0; sym < 2; sym++)
		for (size_t b = 0; b < 4; b++)
			for (size_t g = 0; g < 4; g++) {
				enum lm_dtype t = (enum lm_dtype)lm_dtype_q(bitss[b], groups[g]);
				size_t G = groups[g] ? (size_t)groups[g] : C, bad = 0, zeros = 0;
				CHECK(lm_q_rtn(buf, t, W, R, C, sym) == 0);
				CHECK(lm_q_dequant_rows(D, buf, t, R, C) == 0);
				for (size_t i = 0; i < R * C; i++) {
					double want = ref_value(W[i], W + i / G * G, G, bitss[b], sym);
					bad += fabs(D[i] - want) > 1e-6 * (1 + fabs(want));
					zeros += W[i] == 0.0f && D[i] != 0.0f;
				}
				CHECKF(bad == 0, "%s sym %d: %zu values differ from the reference", lm_dtype_name(t),
				       sym, bad);
				CHECKF(zeros == 0, "%s sym %d: %zu pruned zeros lost", lm_dtype_name(t), sym, zeros);
			}
	/* a constant-zero row takes the [-1, 1] range and stays zero */
	memset(W, 0, sizeof W);
	CHECK(lm_q_rtn(buf, LM_Q4_G128, W, R, C, 0) == 0);
	CHECK(lm_q_dequant_rows(D, buf, LM_Q4_G128, R, C) == 0);
	CHECK(unit_relerr(D, W, R * C) == 0);
}

/* 3-bit codes straddle bytes: every code of 0..7 at every offset comes back */
static void test_packing(void)
{
	enum { G = 32 };
	uint8_t grp[4 + G * 3 / 8] = {0};
	float out[G];
	struct lm_qgrid g = {1.0f, 0, 7};
	lm_q_set_grid(grp, &g);
	for (unsigned j = 0; j < G; j++)
		lm_q_put(grp + 4, j, 3, (j * 5 + 3) % 8);
	enum lm_dtype t = (enum lm_dtype)lm_dtype_q(3, 32);
	CHECK(lm_q_dequant_rows(out, grp, t, 1, G) == 0);
	for (unsigned j = 0; j < G; j++)
		CHECKF(out[j] == (float)((j * 5 + 3) % 8), "code %u: %g", j, out[j]);
	/* 4-bit: element 2i in the low nibble */
	uint8_t g4[4 + 16] = {0};
	lm_q_set_grid(g4, &g);
	lm_q_put(g4 + 4, 0, 4, 0xa), lm_q_put(g4 + 4, 1, 4, 0x5);
	CHECK(g4[4] == 0x5a);
}

static void test_matmul(void)
{
	enum { N = 5, IN = 256, OUT = 40 };
	float W[OUT * IN], D[OUT * IN], x[N * IN], bias[OUT], y[N * OUT], yr[N * OUT];
	static uint8_t buf[OUT * IN];
	synth(W, OUT * IN, 0.25f), synth(x, N * IN, 1.5f), synth(bias, OUT, 2.0f);
	enum lm_dtype t = (enum lm_dtype)lm_dtype_q(4, 64);
	CHECK(lm_q_rtn(buf, t, W, OUT, IN, 0) == 0);
	lm_q_dequant_rows(D, buf, t, OUT, IN);
	struct lm_mat m = {.dtype = t, .rows = OUT, .cols = IN, .data = buf};
	CHECK(lm_matmul_forward(y, x, &m, bias, N, NULL) == 0);
	lm_matmul_forward_ref(yr, x, D, bias, N, IN, OUT);
	CHECKF(unit_relerr(y, yr, N * OUT) < 1e-5, "%g", unit_relerr(y, yr, N * OUT));
	/* one row (the decoding path) too */
	CHECK(lm_matmul_forward(y, x, &m, NULL, 1, NULL) == 0);
	lm_matmul_forward_ref(yr, x, D, NULL, 1, IN, OUT);
	CHECK(unit_relerr(y, yr, OUT) < 1e-5);

	/* enough rows of x and of W that the tile's dequantization is split over threads
	 * (kernels.c), for each of the unpacking paths (8, 4, other widths) */
	{
		enum { BIG = 1000, NB = 20 };
		static float Wb[BIG * IN], Db[BIG * IN], xb[NB * IN], yb[NB * BIG], ybr[NB * BIG];
		static uint8_t qb[BIG * IN * 2];
		static const int bits[3] = {8, 4, 3};
		synth(Wb, BIG * IN, 0.75f), synth(xb, NB * IN, 0.1f);
		lm_set_threads(3);
		for (int k = 0; k < 3; k++) {
			enum lm_dtype tb = (enum lm_dtype)lm_dtype_q(bits[k], 128);
			struct lm_mat mb = {.dtype = tb, .rows = BIG, .cols = IN, .data = qb};
			CHECK(lm_q_rtn(qb, tb, Wb, BIG, IN, 0) == 0);
			CHECK(lm_q_dequant_rows(Db, qb, tb, BIG, IN) == 0);
			CHECK(lm_matmul_forward(yb, xb, &mb, NULL, NB, NULL) == 0);
			lm_matmul_forward_ref(ybr, xb, Db, NULL, NB, IN, BIG);
			CHECKF(unit_relerr(yb, ybr, NB * BIG) < 1e-5, "%s: %g", lm_dtype_name(tb),
			       unit_relerr(yb, ybr, NB * BIG));
		}
		lm_set_threads(1);
	}

	/* few rows of x (decoding: a small tile), every width, groups and whole rows (an odd
	 * row length too), with and without bias */
	{
		enum { ROWS = 600, MAXIN = 256 };
		static float Ws[ROWS * MAXIN], Ds[ROWS * MAXIN], xs[5 * MAXIN], bs[ROWS], ys[5 * ROWS],
			ysr[5 * ROWS];
		static uint8_t qs[ROWS * MAXIN * 2];
		static const int bits[6] = {8, 4, 3, 2, 4, 3}, groups[6] = {128, 64, 32, 0, 0, 0};
		synth(Ws, ROWS * MAXIN, 1.25f), synth(xs, 5 * MAXIN, 0.3f), synth(bs, ROWS, 0.7f);
		lm_set_threads(3);
		for (int k = 0; k < 6; k++) {
			enum lm_dtype ts = (enum lm_dtype)lm_dtype_q(bits[k], groups[k]);
			size_t in = k >= 4 ? 255 : 256;
			struct lm_mat ms = {.dtype = ts, .rows = ROWS, .cols = (int64_t)in, .data = qs};
			CHECK(lm_q_rtn(qs, ts, Ws, ROWS, in, 0) == 0);
			CHECK(lm_q_dequant_rows(Ds, qs, ts, ROWS, in) == 0);
			for (size_t n = 1; n <= 5; n += 4)
				for (int wb = 0; wb < 2; wb++) {
					CHECK(lm_matmul_forward(ys, xs, &ms, wb ? bs : NULL, n, NULL) == 0);
					lm_matmul_forward_ref(ysr, xs, Ds, wb ? bs : NULL, n, in, ROWS);
					CHECKF(unit_relerr(ys, ysr, n * ROWS) < 1e-5, "%s, %zu inputs, N %zu, bias %d: %g",
					       lm_dtype_name(ts), in, n, wb, unit_relerr(ys, ysr, n * ROWS));
				}
		}
		lm_set_threads(1);
	}
}

/* sum over tokens of ||x (W - Q)^T||^2: the output error GPTQ minimises */
static double out_err(const float *X, size_t n, const float *W, const float *Q, size_t rows, size_t cols)
{
	double e = 0;
	for (size_t t = 0; t < n; t++)
		for (size_t r = 0; r < rows; r++) {
			double s = 0;
			for (size_t c = 0; c < cols; c++)
				s += (double)X[t * cols + c] * ((double)W[r * cols + c] - Q[r * cols + c]);
			e += s * s;
		}
	return e;
}

static void test_gptq(void)
{
	enum { R = 24, C = 256, NT = 512 };
	static float W[R * C], W2[R * C], X[NT * C], U[C * C], Qr[R * C], Qg[R * C];
	static uint8_t a[R * C], b[R * C];
	enum lm_dtype t = (enum lm_dtype)lm_dtype_q(3, 64);
	struct lm_rng rng;
	lm_rng_seed(&rng, 7);
	for (size_t i = 0; i < R * C; i++)
		W[i] = (float)lm_rng_normal(&rng) * 0.05f;
	for (size_t i = 0; i < R * C; i += 7)
		W[i] = 0.0f;
	/* U = I: no error feedback, so GPTQ is RTN, byte for byte */
	memset(U, 0, sizeof U);
	for (size_t i = 0; i < C; i++)
		U[i * C + i] = 1.0f;
	memcpy(W2, W, sizeof W);
	CHECK(lm_gptq(a, t, W2, R, C, U, NULL, NULL, 0, LM_GPTQ_BLOCK, NULL) == 0);
	CHECK(lm_q_rtn(b, t, W, R, C, 0) == 0);
	CHECK(memcmp(a, b, lm_dtype_row_bytes(t, C) * R) == 0);

	/* correlated inputs: GPTQ's output error is below RTN's, and pruned zeros stay */
	for (size_t k = 0; k < NT; k++) {
		float common = (float)lm_rng_normal(&rng);
		for (size_t c = 0; c < C; c++)
			X[k * C + c] = (float)lm_rng_normal(&rng) + common * (float)(c % 5);
	}
	struct lm_hessian h;
	CHECK(lm_hessian_init(&h, C) == 0);
	lm_hessian_add(&h, X, NT, 1);
	CHECK(lm_hessian_finish(&h) == 0);
	CHECK(lm_hessian_inv_chol(h.H, C, 0.01, NULL, U) == 0);
	memcpy(W2, W, sizeof W);
	double loss = -1;
	CHECK(lm_gptq(a, t, W2, R, C, U, NULL, NULL, 0, LM_GPTQ_BLOCK, &loss) == 0);
	CHECK(loss > 0);
	lm_q_dequant_rows(Qg, a, t, R, C);
	lm_q_dequant_rows(Qr, b, t, R, C);
	double eg = out_err(X, NT, W, Qg, R, C), er = out_err(X, NT, W, Qr, R, C);
	CHECKF(eg < 0.8 * er, "gptq %g vs rtn %g", eg, er);
	size_t lost = 0;
	for (size_t i = 0; i < R * C; i++)
		lost += W[i] == 0.0f && Qg[i] != 0.0f;
	CHECK(lost == 0);
	lm_hessian_free(&h);

	/* a packed matrix is not quantized again */
	struct lm_mat m = {.dtype = t, .rows = R, .cols = C, .data = NULL};
	CHECK(lm_q_mat_rtn(&m, t, 0) < 0 && strstr(lm_errmsg(), "already quantized"));
}

/* act-order (gptq.h): the permutation; with U = I it is RTN whatever the order (static
 * groups are RTN's grids); per row it is exactly plain GPTQ on the permuted problem; with
 * groups every weight sits on its natural group's grid, pruned zeros stay, and the output
 * error is below RTN's */
static void test_act_order(void)
{
	enum { R = 16, C = 256, NT = 512 };
	static float W[R * C], W2[R * C], W3[R * C], X[NT * C], H[C * C], Hp[C * C], U[C * C],
		Q1[R * C], Q2[R * C], Qr[R * C];
	static uint8_t a[R * C], b[R * C];
	static int perm[C];
	struct lm_rng rng;
	struct lm_hessian h;
	size_t bad;

	/* the order: decreasing diagonal, a dead (zero) diagonal counted as 1, ties by index */
	{
		const float h4[16] = {0.5f, 0, 0, 0.25f, 0, 0, 0, 0, 0, 0, 3, 0, 0.25f, 0, 0, 0.5f};
		/* perm 2 1 0 3: Hp[a][b] = H[perm[a]][perm[b]] */
		const float h4p[16] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.5f, 0.25f, 0, 0, 0.25f, 0.5f};
		int p4[4];
		float out[16];
		CHECK(lm_gptq_act_order(h4, 4, p4) == 0);
		CHECKF(p4[0] == 2 && p4[1] == 1 && p4[2] == 0 && p4[3] == 3, "%d %d %d %d", p4[0], p4[1],
		       p4[2], p4[3]);
		lm_gptq_permute_h(out, h4, 4, p4);
		CHECK(memcmp(out, h4p, sizeof out) == 0);
	}

	lm_rng_seed(&rng, 11);
	for (size_t i = 0; i < R * C; i++)
		W[i] = (float)lm_rng_normal(&rng) * 0.05f;
	for (size_t i = 0; i < R * C; i += 5)
		W[i] = 0.0f;
	/* inputs of unequal scales, so the order is far from the identity */
	for (size_t k = 0; k < NT; k++) {
		float common = (float)lm_rng_normal(&rng);
		for (size_t c = 0; c < C; c++)
			X[k * C + c] = (float)lm_rng_normal(&rng) * (float)(1 + (c * 37) % 11) +
			               common * (float)(c % 5);
	}
	CHECK(lm_hessian_init(&h, C) == 0);
	lm_hessian_add(&h, X, NT, 1);
	CHECK(lm_hessian_finish(&h) == 0);
	memcpy(H, h.H, sizeof H);
	lm_hessian_free(&h);
	CHECK(lm_gptq_act_order(H, C, perm) == 0);
	bad = 0;
	for (size_t k = 1; k < C; k++)
		bad += H[perm[k - 1] * (C + 1)] < H[perm[k] * (C + 1)];
	CHECK(bad == 0 && perm[0] != 0);

	/* U = I: byte for byte RTN, for grouped and per-row types */
	memset(U, 0, sizeof U);
	for (size_t i = 0; i < C; i++)
		U[i * C + i] = 1.0f;
	for (int gs = 0; gs <= 64; gs += 64) {
		enum lm_dtype t = (enum lm_dtype)lm_dtype_q(3, gs);
		memcpy(W2, W, sizeof W);
		CHECK(lm_gptq(a, t, W2, R, C, U, NULL, perm, 0, LM_GPTQ_BLOCK, NULL) == 0);
		CHECK(lm_q_rtn(b, t, W, R, C, 0) == 0);
		CHECKF(memcmp(a, b, lm_dtype_row_bytes(t, C) * R) == 0, "%s", lm_dtype_name(t));
	}

	lm_gptq_permute_h(Hp, H, C, perm);
	CHECK(lm_hessian_inv_chol(Hp, C, 0.01, NULL, U) == 0);

	/* per row: act-order == plain GPTQ on W[:, perm] with U of H[perm][:, perm], unpermuted */
	{
		enum lm_dtype t = (enum lm_dtype)lm_dtype_q(4, 0);
		memcpy(W2, W, sizeof W);
		CHECK(lm_gptq(a, t, W2, R, C, U, NULL, perm, 0, 32, NULL) == 0);
		CHECK(lm_q_dequant_rows(Q1, a, t, R, C) == 0);
		for (size_t r = 0; r < R; r++)
			for (size_t k = 0; k < C; k++)
				W3[r * C + k] = W[r * C + (size_t)perm[k]];
		CHECK(lm_gptq(b, t, W3, R, C, U, NULL, NULL, 0, 32, NULL) == 0);
		CHECK(lm_q_dequant_rows(Qr, b, t, R, C) == 0);
		bad = 0;
		for (size_t r = 0; r < R; r++)
			for (size_t k = 0; k < C; k++)
				bad += Q1[r * C + (size_t)perm[k]] != Qr[r * C + k] ||
				       W2[r * C + (size_t)perm[k]] != W3[r * C + k];
		CHECKF(bad == 0, "%zu weights differ from GPTQ on the permuted matrix", bad);
	}

	/* groups of 64: on the grid, zeros kept, better than RTN */
	{
		enum lm_dtype t = (enum lm_dtype)lm_dtype_q(3, 64);
		double loss = -1;
		memcpy(W2, W, sizeof W);
		CHECK(lm_gptq(a, t, W2, R, C, U, NULL, perm, 0, LM_GPTQ_BLOCK, &loss) == 0);
		CHECK(loss > 0);
		CHECK(lm_q_dequant_rows(Q2, a, t, R, C) == 0);
		CHECK(lm_q_rtn(b, t, W, R, C, 0) == 0);
		CHECK(lm_q_dequant_rows(Qr, b, t, R, C) == 0);
		/* W is left holding what was quantized: the packed values, in natural order */
		CHECKF(unit_relerr(W2, Q2, R * C) == 0, "%g", unit_relerr(W2, Q2, R * C));
		/* the grids are RTN's (fitted on the natural groups of the input) */
		CHECK(memcmp(lm_q_group(a, t, C, 1), lm_q_group(b, t, C, 1), 4) == 0);
		bad = 0;
		for (size_t i = 0; i < R * C; i++)
			bad += W[i] == 0.0f && Q2[i] != 0.0f;
		CHECK(bad == 0);
		double eg = out_err(X, NT, W, Q2, R, C), er = out_err(X, NT, W, Qr, R, C);
		CHECKF(eg < 0.8 * er, "act-order gptq %g vs rtn %g", eg, er);
	}
}

int main(void)
{
	test_dtypes();
	test_rtn();
	test_packing();
	test_matmul();
	test_gptq();
	test_act_order();
	return unit_done("test_quant");
}

/* test_matvec.c: the fused decode product (nn/matvec) for every weight dtype, every
 * instruction set this CPU has and 1 and 2 threads, against a double-precision product of
 * the dequantized weights (lm_mat_rows_f32 reads them, as the tile path does).
 *
 * Tolerance: the fused loops sum IN products in float in some order (lanes, two chains,
 * per-group partial sums then one multiply by the group's scale), so each output may be off
 * by the classic bound for a float dot product of IN terms in any order,
 * |y - ref| <= gamma * sum_i |x_i w_i| (+ |bias|) with gamma = (IN + 2) * 2^-24: IN - 1
 * additions, one rounding per product and one for the scale or the bias. Any lost or doubled
 * term, or a wrong code, is an error of about sum |x w| / IN, more than 20 times the bound at
 * the sizes below (IN <= 769). */
#include "unit.h"
#include "dtype.h"
#include "matvec.h"
#include "pool.h"
#include "quant.h"
#include "rows.h"
#include "mvcheck.h"

#include <stdint.h>
#include <string.h>

static uint32_t seed = 2024;
static float rnd(void)
{
	seed = seed * 1664525u + 1013904223u;
	return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* w [OUT, IN] of dtype t made from random f32 values (packed: RTN); NULL if t cannot hold
 * that shape */
static void *make_weights(enum lm_dtype t, size_t OUT, size_t IN)
{
	float *f = malloc(OUT * IN * sizeof *f);
	for (size_t i = 0; i < OUT * IN; i++)
		f[i] = rnd();
	int64_t shape[2] = {(int64_t)OUT, (int64_t)IN};
	size_t nb;
	if (lm_dtype_nbytes(t, 2, shape, &nb) < 0) {
		free(f);
		return NULL;
	}
	void *w = calloc(1, nb);  /* no slack: ASan sees a read past the end */
	if (t == LM_F32)
		memcpy(w, f, nb);
	else if (t == LM_F16 || t == LM_BF16)
		CHECK(lm_convert(w, t, f, LM_F32, OUT * IN) == 0);
	else
		CHECK(lm_q_rtn(w, t, f, OUT, IN, 0) == 0);
	free(f);
	return w;
}


/* y from lm_matvec against the double reference for one shape, every instruction set and
 * thread count; r0, ldy > nr and a bias (beta 1) are checked on the larger shapes */
static void one(enum lm_dtype t, size_t IN, size_t OUT, size_t N, struct stats *st)
{
	void *data = make_weights(t, OUT, IN);
	if (!data)
		return;
	struct lm_mat w = {.dtype = t, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = data};
	float *deq = malloc(OUT * IN * sizeof *deq);
	CHECK(lm_mat_rows_f32(deq, &w, 0, OUT) == 0);
	float *x = malloc(N * IN * sizeof *x);
	for (size_t i = 0; i < N * IN; i++)
		x[i] = rnd();
	/* a row range and a wider y, as the LM head's vocabulary tiles use it */
	size_t r0 = OUT > 8 ? 3 : 0, nr = OUT - r0 - (OUT > 8 ? 2 : 0), ldy = nr + (OUT > 8 ? 5 : 0);
	float beta = OUT > 8 ? 1.0f : 0.0f;
	float *bias = malloc(N * ldy * sizeof *bias), *y = malloc(N * ldy * sizeof *y);
	double *ref = malloc(N * nr * sizeof *ref), *bound = malloc(N * nr * sizeof *bound);
	for (size_t i = 0; i < N * ldy; i++)
		bias[i] = rnd();
	const double u = 0x1p-24;
	for (size_t n = 0; n < N; n++)
		for (size_t o = 0; o < nr; o++) {
			double s = beta ? bias[n * ldy + o] : 0, a = beta ? fabs(bias[n * ldy + o]) : 0;
			for (size_t i = 0; i < IN; i++) {
				double p = (double)x[n * IN + i] * deq[(r0 + o) * IN + i];
				s += p, a += fabs(p);
			}
			ref[n * nr + o] = s;
			bound[n * nr + o] = (double)(IN + 2) * u * a;
		}
	struct mvcase c = {&w, x, bias, ref, bound, r0, nr, ldy, N, beta};
	char what[96];
	snprintf(what, sizeof what, "%s IN %zu OUT %zu N %zu", lm_dtype_name(t), IN, OUT, N);
	mvcheck_isas(&c, y, what, st);
	free(data), free(deq), free(x), free(bias), free(y), free(ref), free(bound);
}

int main(void)
{
	struct stats st = {0, 0};
	enum lm_dtype floats[] = {LM_F32, LM_F16, LM_BF16};
	const size_t outs[] = {1, 7, 17, 769}, ns[] = {1, 2, 5};
	/* odd sizes, sizes short of one vector, and no multiple of 8 or 16 */
	const size_t ins_float[] = {1, 7, 37, 100, 768, 769}; /* 100: 4, 2 and 1 vectors, a tail */
	for (size_t d = 0; d < 3; d++)
		for (size_t a = 0; a < sizeof ins_float / sizeof *ins_float; a++)
			for (size_t b = 0; b < 4; b++)
				for (size_t c = 0; c < 3; c++)
					one(floats[d], ins_float[a], outs[b], ns[c], &st);
	const int bits[] = {2, 3, 4, 8};
	for (size_t k = 0; k < 4; k++) {
		/* per row: any IN (odd, codes straddling bytes, a tail past the vectors) */
		const size_t ins_row[] = {1, 7, 37, 100, 769};
		enum lm_dtype pr = (enum lm_dtype)lm_dtype_q(bits[k], 0);
		for (size_t a = 0; a < sizeof ins_row / sizeof *ins_row; a++)
			for (size_t b = 0; b < 4; b++)
				for (size_t c = 0; c < 3; c++)
					one(pr, ins_row[a], outs[b], ns[c], &st);
		/* groups of 32 and 128 over rows of one or several groups */
		const int groups[] = {32, 128};
		const size_t ins_g[] = {128, 384, 768};
		for (size_t g = 0; g < 2; g++) {
			enum lm_dtype gt = (enum lm_dtype)lm_dtype_q(bits[k], groups[g]);
			for (size_t a = 0; a < 3; a++)
				for (size_t b = 0; b < 4; b++)
					for (size_t c = 0; c < 3; c++)
						one(gt, ins_g[a], outs[b], ns[c], &st);
		}
	}
	fprintf(stderr, "test_matvec: %d products (best set here: %s), worst error %.3g of the bound\n",
	        st.cases, (lm_matvec_set_isa(LM_MATVEC_AVX512) == 0 ? "avx512"
	                   : lm_matvec_set_isa(LM_MATVEC_AVX2) == 0 ? "avx2" : "scalar"),
	        st.worst);
	CHECK(st.cases > 0);

	/* the switch: lm_matvec_use says yes for every dtype above, no for one it cannot read */
	struct lm_mat f16 = {.dtype = LM_F16, .rows = 2, .cols = 3, .data = NULL}, i32 = {.dtype = LM_I32, .rows = 2, .cols = 3, .data = NULL};
	struct lm_mat q4g = {.dtype = LM_Q4_G128, .rows = 2, .cols = 100, .data = NULL}; /* 128 does not divide 100 */
	CHECK(lm_matvec_use(&f16) == (getenv("LM_NO_MATVEC") == NULL));
	CHECK(!lm_matvec_use(&i32) && !lm_matvec_use(&q4g));
	float yy[2];
	CHECK(lm_matvec(yy, 2, yy, &i32, 0, 2, 1, 0.0f) < 0);
	return unit_done("test_matvec");
}

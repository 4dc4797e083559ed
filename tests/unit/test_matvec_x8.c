/* test_matvec_x8.c: the decode product's 4-bit rows on 8-bit activations
 * (lm_matvec_set_act8, nn/matvec_x8*.c), every instruction set this CPU has, 1 and 2 threads,
 * two ways:
 *
 * 1. Against the product it promises, computed here in double from its rule (matvec.h):
 *    x rounded per group of G inputs to x8 = clamp(rint(x * (127 / max|x|)), -127, 127) in
 *    float, times scale s = max|x| / 127, so y = sum_g s_g sum_i w_i x8_i with w the
 *    dequantized weights (exact in float). The kernels sum q x8 in integers (exact) and
 *    then per group one float multiply by scale * s_g and one add per lane (8 or 16 lanes),
 *    then the lanes: with u = 2^-24 each output is within (ng + 12) u A, where
 *    A = sum_g |scale_g s_g| 30 sum_i |x8_i| bounds what the lanes hold (codes and zero
 *    points are at most 15). A lost or doubled term, or a byte of x8 at a wrong code, is an
 *    error near sum |w x8 s| / IN, over 50 times this bound at the sizes below.
 * 2. Against the float product sum w x, within what rounding x costs:
 *    sum_g (s_g / 2)(1 + 1e-4) sum_i |w_i| (plus the float bound): the values stay what a
 *    user asked for, whatever the layout of x8. */
#include "unit.h"
#include "dtype.h"
#include "matvec.h"
#include "pool.h"
#include "quant.h"
#include "rows.h"
#include "simd.h"
#include "mvcheck.h"

#include <stdint.h>
#include <string.h>

static uint32_t seed = 77;
static float rnd(void)
{
	seed = seed * 1664525u + 1013904223u;
	return (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* x8 and s of x's group [0, G) as the rule above says */
static void round_group(const float *x, size_t G, int8_t *q, float *s)
{
	float m = 0.0f;
	for (size_t i = 0; i < G; i++)
		m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
	const float inv = m > 0.0f ? 127.0f / m : 0.0f;
	for (size_t i = 0; i < G; i++) {
		float v = rintf(x[i] * inv);
		q[i] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
	}
	*s = m / 127.0f;
}

static void one(int group, size_t IN, size_t OUT, size_t N, struct stats *st)
{
	enum lm_dtype t = (enum lm_dtype)lm_dtype_q(4, group);
	const size_t G = group ? (size_t)group : IN, ng = IN / G, gb = 4 + G / 2;
	int64_t shape[2] = {(int64_t)OUT, (int64_t)IN};
	size_t nbytes;
	CHECK(lm_dtype_nbytes(t, 2, shape, &nbytes) == 0);
	float *f = malloc(OUT * IN * sizeof *f), *deq = malloc(OUT * IN * sizeof *deq);
	for (size_t i = 0; i < OUT * IN; i++)
		f[i] = rnd();
	uint8_t *data = calloc(1, nbytes); /* no slack: ASan sees a read past the end */
	CHECK(lm_q_rtn(data, t, f, OUT, IN, 0) == 0);
	struct lm_mat w = {.dtype = t, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = data};
	CHECK(lm_mat_rows_f32(deq, &w, 0, OUT) == 0);
	float *x = malloc(N * IN * sizeof *x);
	for (size_t i = 0; i < N * IN; i++)
		x[i] = rnd();
	memset(x, 0, G * sizeof *x);     /* a group of zeros: scale 0 */
	if (N > 1)
		x[IN + G / 3] = 100.0f;  /* an outlier: the rest of its group rounds to few steps */
	int8_t *q = malloc(N * IN);
	float *s = malloc(N * ng * sizeof *s);
	for (size_t n = 0; n < N; n++)
		for (size_t g = 0; g < ng; g++)
			round_group(x + n * IN + g * G, G, q + n * IN + g * G, s + n * ng + g);

	size_t r0 = OUT > 8 ? 3 : 0, nr = OUT - r0 - (OUT > 8 ? 2 : 0), ldy = nr + (OUT > 8 ? 5 : 0);
	float beta = OUT > 8 ? 1.0f : 0.0f;
	float *bias = malloc(N * ldy * sizeof *bias), *y = malloc(N * ldy * sizeof *y);
	double *ref = malloc(N * nr * sizeof *ref), *bound = malloc(N * nr * sizeof *bound);
	double *fref = malloc(N * nr * sizeof *fref), *fbound = malloc(N * nr * sizeof *fbound);
	for (size_t i = 0; i < N * ldy; i++)
		bias[i] = rnd();
	const double u = 0x1p-24;
	for (size_t n = 0; n < N; n++)
		for (size_t o = 0; o < nr; o++) {
			const size_t row = r0 + o;
			double b0 = beta ? bias[n * ldy + o] : 0;
			double r = b0, a = fabs(b0), fr = b0, fa = fabs(b0), qe = 0;
			for (size_t g = 0; g < ng; g++) {
				struct lm_qgroup h;
				memcpy(&h, data + row * ng * gb + g * gb, sizeof h);
				const double sg = s[n * ng + g], fs = fabs((double)h2f(h.scale) * sg);
				double dot = 0, ax8 = 0, aw = 0;
				for (size_t i = g * G; i < (g + 1) * G; i++) {
					const double wi = deq[row * IN + i];
					dot += wi * q[n * IN + i];
					ax8 += abs(q[n * IN + i]);
					aw += fabs(wi);
					fr += wi * x[n * IN + i], fa += fabs(wi * x[n * IN + i]);
				}
				r += sg * dot;
				a += fs * 30.0 * ax8;
				qe += sg / 2 * (1 + 1e-4) * aw;
			}
			ref[n * nr + o] = r;
			bound[n * nr + o] = (double)(ng + 12) * u * a;
			fref[n * nr + o] = fr;
			fbound[n * nr + o] = qe + (double)(IN + 2) * u * fa + bound[n * nr + o];
		}
	char what[96];
	snprintf(what, sizeof what, "q4 g%d IN %zu OUT %zu N %zu on 8-bit x", group, IN, OUT, N);
	lm_matvec_set_act8(1);
	struct mvcase c = {&w, x, bias, ref, bound, r0, nr, ldy, N, beta};
	mvcheck_isas(&c, y, what, &st[0]);
	struct mvcase cf = {&w, x, bias, fref, fbound, r0, nr, ldy, N, beta};
	mvcheck_isas(&cf, y, what, &st[1]);
	lm_matvec_set_act8(0);
	free(f), free(deq), free(data), free(x), free(q), free(s), free(bias), free(y);
	free(ref), free(bound), free(fref), free(fbound);
}

int main(void)
{
	struct stats st[2] = {{0, 0}, {0, 0}};
	/* rows of x: one block of up to 4 (MV_NB), then 4 + 1 and 4 + 4 (the second block's x8
	 * rows start at row 4) */
	const size_t outs[] = {1, 7, 17, 769}, ns[] = {1, 2, 3, 5, 6, 8};
	/* groups of 32 (one block of 32 each), 128 (two of 64), per row: 96 = 64 + 32, 768 */
	const struct { int group; size_t in; } shapes[] = {
		{32, 128}, {32, 768}, {128, 128}, {128, 384}, {128, 768}, {0, 96}, {0, 768}};
	for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++)
		for (size_t b = 0; b < 4; b++)
			for (size_t c = 0; c < sizeof ns / sizeof *ns; c++)
				one(shapes[k].group, shapes[k].in, outs[b], ns[c], st);
	fprintf(stderr, "test_matvec_x8: %d products, worst error %.3g of the integer bound, "
	        "%.3g of the rounding bound\n", st[0].cases, st[0].worst, st[1].worst);
	CHECK(st[0].cases > 0);

	/* on, a storage these rows cannot take (per-row groups of 100: no multiple of 32) still
	 * goes through the float rows: the same product as off, bit for bit (same instruction
	 * set, same threads) */
	float *x = malloc(100 * sizeof *x), y0[3], y1[3];
	for (size_t i = 0; i < 100; i++)
		x[i] = rnd();
	uint8_t *data = calloc(1, 3 * (4 + 50));
	float fw[300];
	for (size_t i = 0; i < 300; i++)
		fw[i] = rnd();
	CHECK(lm_q_rtn(data, (enum lm_dtype)lm_dtype_q(4, 0), fw, 3, 100, 0) == 0);
	struct lm_mat w = {.dtype = (enum lm_dtype)lm_dtype_q(4, 0), .rows = 3, .cols = 100, .data = data};
	CHECK(lm_matvec(y0, 3, x, &w, 0, 3, 1, 0.0f) == 0);
	lm_matvec_set_act8(1);
	CHECK(lm_matvec_use(&w) == (getenv("LM_NO_MATVEC") == NULL));
	CHECK(lm_matvec(y1, 3, x, &w, 0, 3, 1, 0.0f) == 0);
	CHECK(memcmp(y0, y1, sizeof y0) == 0);
	/* a NaN in x gives NaN, as the float rows do, not a number made from a zeroed byte */
	struct lm_mat w2 = {.dtype = LM_Q4_G128, .rows = 1, .cols = 128, .data = NULL};
	uint8_t *d2 = calloc(1, 4 + 64);
	CHECK(lm_q_rtn(d2, LM_Q4_G128, fw, 1, 128, 0) == 0);
	w2.data = d2;
	float x2[128];
	for (size_t i = 0; i < 128; i++)
		x2[i] = rnd();
	x2[5] = NAN;
	CHECK(lm_matvec(y1, 1, x2, &w2, 0, 1, 1, 0.0f) == 0);
	CHECK(isnan(y1[0]));
	lm_matvec_set_act8(0);
	free(x), free(data), free(d2);
	return unit_done("test_matvec_x8");
}

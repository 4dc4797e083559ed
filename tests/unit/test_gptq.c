/* test_gptq.c: GPTQ (gptq.h) against a plain double-precision implementation written here
 * from the algorithm's description (docs/methods.md §3.4, the reference's fasterquant):
 * the Hessian summed in double from the same inputs, its own dampened inverse and
 * Cholesky factor, its own quantizer grid (min/max with 0 in the range, scale rounded to
 * f16, zero point rounded, codes rounded half to even), the column walk in blocks with the
 * lazy update after each block, groups fitted on W as it stands at the start of a group's
 * block, act-order with the static groups gptq.h describes, pruned zeros kept.
 *
 * The two are compared weight by weight on the dequantized values, for per-row and grouped
 * types, with and without act-order (and symmetric once). They cannot agree bit for bit:
 * the library accumulates H and updates W in f32, the reference in double, so a weight
 * that lands near the middle between two grid points may round the other way ("a flip":
 * one grid step), and its error, fed forward, may flip a few more in the same row. We
 * allow at most 1 % of the weights to differ and no difference larger than one grid step
 * in more than 0.2 %; everything else must agree to 1e-6 of the grid step. (Measured on
 * x86-64 with OpenBLAS, default and Haswell kernels: no weight differs in these cases;
 * the allowance is for other kernels and compilers.) */
#include "dtype.h"
#include "gptq.h"
#include "hessian.h"
#include "kernels.h"
#include "quant.h"
#include "rng.h"
#include "unit.h"
#include "util.h"

#include <math.h>
#include <string.h>

enum { R = 24, C = 256, NT = 384, NSEQ = 3 };

/* ---- the reference, all in double ---- */

/* x rounded to the nearest f16 value (round half to even; normal range, which the scales
 * here are in: asserted) */
static double round_f16(double x)
{
	int e;
	double m = frexp(x, &e);   /* x = m 2^e, 0.5 <= |m| < 1: 11 significant bits */
	CHECKF(x == 0 || (fabs(x) >= 6.103515625e-05 && fabs(x) < 65504), "scale %g outside f16's normal range", x);
	return ldexp(nearbyint(ldexp(m, 11)), e - 11);
}

struct rgrid {
	double scale;
	int zero, maxq;
};

static void ref_fit(struct rgrid *g, const double *x, size_t n, int bits, int sym)
{
	double lo = 0, hi = 0;
	g->maxq = (1 << bits) - 1;
	for (size_t i = 0; i < n; i++) {
		lo = fmin(lo, x[i]);
		hi = fmax(hi, x[i]);
	}
	if (sym) {
		hi = fmax(-lo, hi);
		if (lo < 0)
			lo = -hi;
	}
	if (lo == 0 && hi == 0)
		lo = -1, hi = 1;
	g->scale = round_f16((hi - lo) / g->maxq);
	if (sym) {
		g->zero = (g->maxq + 1) / 2;
	} else {
		double z = nearbyint(-lo / g->scale);
		g->zero = z < 0 ? 0 : z > g->maxq ? g->maxq : (int)z;
	}
}

static double ref_quant(double w, const struct rgrid *g)
{
	double q = nearbyint(w / g->scale) + g->zero;
	q = q < 0 ? 0 : q > g->maxq ? g->maxq : q;
	return g->scale * (q - g->zero);
}

/* in-place lower Cholesky of a [n,n] (row-major), upper part zeroed; 0 or -1 */
static int cholesky(double *a, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		double d = a[j * n + j];
		for (size_t k = 0; k < j; k++)
			d -= a[j * n + k] * a[j * n + k];
		if (d <= 0)
			return -1;
		d = sqrt(d);
		a[j * n + j] = d;
		for (size_t i = j + 1; i < n; i++) {
			double s = a[i * n + j];
			for (size_t k = 0; k < j; k++)
				s -= a[i * n + k] * a[j * n + k];
			a[i * n + j] = s / d;
		}
		for (size_t k = j + 1; k < n; k++)
			a[j * n + k] = 0;
	}
	return 0;
}

/* U [n,n] upper with (H + damp I)^-1 = U^T U; H's dead diagonals already set to 1 */
static void ref_inv_chol(const double *H, size_t n, double percdamp, double *U)
{
	double *L = xmalloc(n * n * sizeof *L), *Inv = xmalloc(n * n * sizeof *Inv), *x = xmalloc(n * sizeof *x);
	double mean = 0;
	for (size_t j = 0; j < n; j++)
		mean += H[j * n + j] / (double)n;
	memcpy(L, H, n * n * sizeof *L);
	for (size_t j = 0; j < n; j++)
		L[j * n + j] += percdamp * mean;
	CHECK(cholesky(L, n) == 0);
	for (size_t c = 0; c < n; c++) {   /* column c of the inverse: L y = e_c, L^T x = y */
		for (size_t i = 0; i < n; i++) {
			double s = i == c;
			for (size_t k = 0; k < i; k++)
				s -= L[i * n + k] * x[k];
			x[i] = s / L[i * n + i];
		}
		for (size_t i = n; i-- > 0;) {
			double s = x[i];
			for (size_t k = i + 1; k < n; k++)
				s -= L[k * n + i] * x[k];
			x[i] = s / L[i * n + i];
		}
		for (size_t i = 0; i < n; i++)
			Inv[i * n + c] = x[i];
	}
	CHECK(cholesky(Inv, n) == 0);   /* Inv = L2 L2^T: U = L2^T */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			U[i * n + j] = Inv[j * n + i];
	free(L), free(Inv), free(x);
}

/* Q [R,C] = the quantized values of W0 [R,C] for Hessian H0 [C,C], S [R,C] the grid step
 * (scale) each was quantized with; G = 0: one grid per row */
static void ref_gptq(double *Q, double *S, const float *W0, const double *H0, int bits, size_t G,
                     int act, int sym, size_t bs)
{
	const size_t g = G ? G : C, ng = C / g;
	double *H = xmalloc(C * C * sizeof *H), *Hp = xmalloc(C * C * sizeof *Hp), *U = xmalloc(C * C * sizeof *U);
	double *W = xmalloc(R * C * sizeof *W), *Wp = xmalloc(R * C * sizeof *Wp);
	double *W1 = xmalloc(R * bs * sizeof *W1), *E1 = xmalloc(R * bs * sizeof *E1);
	struct rgrid *grid = xmalloc(R * ng * sizeof *grid), *cur = xmalloc(R * sizeof *cur);
	unsigned char *zero = xmalloc(R * C);
	size_t perm[C];

	memcpy(H, H0, C * C * sizeof *H);
	for (size_t i = 0; i < R * C; i++)
		W[i] = W0[i];
	for (size_t j = 0; j < C; j++)   /* dead inputs: diagonal 1, weights 0 */
		if (H[j * C + j] == 0) {
			H[j * C + j] = 1;
			for (size_t r = 0; r < R; r++)
				W[r * C + j] = 0;
		}
	for (size_t i = 0; i < R * C; i++)
		zero[i] = W[i] == 0;
	/* the walk's order: decreasing diagonal, ties by index (insertion sort: stable) */
	for (size_t k = 0; k < C; k++)
		perm[k] = k;
	if (act)
		for (size_t a = 1; a < C; a++)
			for (size_t b = a; b > 0 && H[perm[b - 1] * (C + 1)] < H[perm[b] * (C + 1)]; b--) {
				size_t t = perm[b];
				perm[b] = perm[b - 1], perm[b - 1] = t;
			}
	/* grids known before the walk: per row, or act-order's static groups */
	if (!G || act)
		for (size_t r = 0; r < R; r++)
			for (size_t gi = 0; gi < ng; gi++)
				ref_fit(&grid[r * ng + gi], W + r * C + gi * g, g, bits, sym);
	for (size_t r = 0; r < R; r++)
		for (size_t k = 0; k < C; k++)
			Wp[r * C + k] = W[r * C + perm[k]];
	for (size_t a = 0; a < C; a++)
		for (size_t b = 0; b < C; b++)
			Hp[a * C + b] = H[perm[a] * C + perm[b]];
	ref_inv_chol(Hp, C, 0.01, U);

	for (size_t i1 = 0; i1 < C; i1 += bs) {
		const size_t count = C - i1 < bs ? C - i1 : bs, i2 = i1 + count;
		for (size_t r = 0; r < R; r++)
			for (size_t i = 0; i < count; i++)
				W1[r * count + i] = Wp[r * C + i1 + i];
		for (size_t i = 0; i < count; i++) {
			const size_t k = i1 + i, nc = perm[k];
			const double d = U[k * C + k];
			for (size_t r = 0; r < R; r++) {
				const struct rgrid *gr;
				if (!G) {
					gr = &grid[r * ng];
				} else if (act) {
					gr = &grid[r * ng + nc / g];
				} else {
					/* a new group: fitted on W as at the start of this block (Wp is not
					 * touched inside a block) */
					if (k % g == 0)
						ref_fit(&cur[r], Wp + r * C + k, g, bits, sym);
					gr = &cur[r];
				}
				const double w = W1[r * count + i], q = zero[r * C + nc] ? 0 : ref_quant(w, gr);
				const double err = (w - q) / d;
				for (size_t j = i; j < count; j++)
					W1[r * count + j] -= err * U[k * C + i1 + j];
				Q[r * C + nc] = q;
				S[r * C + nc] = gr->scale;
				E1[r * count + i] = err;
			}
		}
		for (size_t r = 0; r < R; r++)
			for (size_t c = i2; c < C; c++) {
				double s = 0;
				for (size_t i = 0; i < count; i++)
					s += E1[r * count + i] * U[(i1 + i) * C + c];
				Wp[r * C + c] -= s;
			}
	}
	free(H), free(Hp), free(U), free(W), free(Wp), free(W1), free(E1), free(grid), free(cur), free(zero);
}

/* ---- the library, the way lm-quant calls it ---- */

static void lib_gptq(float *Q, const float *W0, const float *X, int bits, size_t G, int act, int sym,
                     size_t bs)
{
	static float W[R * C], Hp[C * C], U[C * C];
	static uint8_t dst[R * C * 2];
	static unsigned char dead[C];
	static int perm[C];
	struct lm_hessian h;
	enum lm_dtype t = (enum lm_dtype)lm_dtype_q(bits, (int)G);

	CHECK(lm_hessian_init(&h, C) == 0);
	for (size_t s = 0; s < NSEQ; s++)
		lm_hessian_add(&h, X + s * (NT / NSEQ) * C, NT / NSEQ, 1);
	CHECK(lm_hessian_finish(&h) == 0);
	if (act) {
		CHECK(lm_gptq_act_order(h.H, C, perm) == 0);
		lm_gptq_permute_h(Hp, h.H, C, perm);
	} else {
		memcpy(Hp, h.H, sizeof Hp);
	}
	CHECK(lm_hessian_inv_chol(Hp, C, 0.01, dead, U) == 0);
	memcpy(W, W0, sizeof W);
	CHECK(lm_gptq(dst, t, W, R, C, U, dead, act ? perm : NULL, sym, bs, NULL) == 0);
	CHECK(lm_q_dequant_rows(Q, dst, t, R, C) == 0);
	lm_hessian_free(&h);
}

/* the library's values Ql against the reference's Qr, in grid steps S (the reference's) */
static void compare(const char *what, const float *Ql, const double *Qr, const double *S)
{
	size_t differ = 0, far = 0;
	double worst = 0;
	for (size_t i = 0; i < R * C; i++) {
		double d = fabs((double)Ql[i] - Qr[i]) / S[i];
		differ += d > 1e-6;
		far += d > 1.01;
		worst = fmax(worst, d);
	}
	fprintf(stderr, "test_gptq: %-28s %zu of %d weights differ from the double reference "
	        "(largest %.2f grid steps)\n", what, differ, R * C, worst);
	CHECKF(differ <= R * C / 100, "%s: %zu differ", what, differ);
	CHECKF(far <= R * C / 500, "%s: %zu differ by more than a grid step", what, far);
}

static void test_against_reference(void)
{
	static float W0[R * C], X[NT * C], Ql[R * C], Qt[R * C];
	static double H[C * C], Qr[R * C], S[R * C];
	static uint8_t rtn[R * C * 2];
	struct lm_rng rng;
	lm_rng_seed(&rng, 2024);
	for (size_t i = 0; i < R * C; i++)
		W0[i] = (float)lm_rng_normal(&rng) * 0.04f;
	for (size_t i = 0; i < R * C; i += 9)   /* pruned weights */
		W0[i] = 0.0f;
	/* correlated inputs of unequal scales (so act-order's order is not the identity);
	 * input 17 never fires (a dead column) */
	for (size_t k = 0; k < NT; k++) {
		double common = lm_rng_normal(&rng);
		for (size_t c = 0; c < C; c++)
			X[k * C + c] = c == 17 ? 0.0f
			                       : (float)(lm_rng_normal(&rng) * (1 + (c * 37) % 11) + common * (double)(c % 5));
	}
	/* the reference's Hessian: 2/NSEQ X^T X, summed in double */
	for (size_t a = 0; a < C; a++)
		for (size_t b = 0; b <= a; b++) {
			double s = 0;
			for (size_t k = 0; k < NT; k++)
				s += (double)X[k * C + a] * X[k * C + b];
			H[a * C + b] = H[b * C + a] = 2.0 * s / NSEQ;
		}
	static const struct {
		int bits, G, act, sym;
		size_t bs;
	} cases[] = {
		{4, 0, 0, 0, 128},     /* per row */
		{4, 128, 0, 0, 128},   /* groups = blocks */
		{3, 64, 0, 0, 128},    /* two groups per block: the second fitted mid-block */
		{4, 0, 1, 0, 128},     /* act-order, per row */
		{3, 64, 1, 0, 128},    /* act-order, static groups */
		{4, 32, 0, 1, 64},     /* symmetric, smaller blocks */
	};
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		char what[64];
		snprintf(what, sizeof what, "%d-bit G %d%s%s bs %zu:", cases[k].bits, cases[k].G,
		         cases[k].act ? " act-order" : "", cases[k].sym ? " sym" : "", cases[k].bs);
		lib_gptq(Ql, W0, X, cases[k].bits, (size_t)cases[k].G, cases[k].act, cases[k].sym, cases[k].bs);
		ref_gptq(Qr, S, W0, H, cases[k].bits, (size_t)cases[k].G, cases[k].act, cases[k].sym,
		         cases[k].bs);
		size_t lost = 0, off_rtn = 0;
		for (size_t i = 0; i < R * C; i++)
			lost += W0[i] == 0.0f && (Ql[i] != 0.0f || Qr[i] != 0.0);
		CHECKF(lost == 0, "%s %zu pruned weights not zero", what, lost);
		/* not vacuous: the error feedback moved a good share of the weights off RTN's */
		enum lm_dtype t = (enum lm_dtype)lm_dtype_q(cases[k].bits, cases[k].G);
		CHECK(lm_q_rtn(rtn, t, W0, R, C, cases[k].sym) == 0);
		CHECK(lm_q_dequant_rows(Qt, rtn, t, R, C) == 0);
		for (size_t i = 0; i < R * C; i++)
			off_rtn += Qt[i] != Ql[i];
		CHECKF(off_rtn > R * C / 10, "%s only %zu weights off RTN's values", what, off_rtn);
		fprintf(stderr, "test_gptq: %-28s %zu weights off RTN's values\n", what, off_rtn);
		compare(what, Ql, Qr, S);
	}
}

int main(void)
{
	lm_set_threads(2);
	test_against_reference();
	return unit_done("test_gptq");
}

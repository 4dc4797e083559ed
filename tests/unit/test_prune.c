/* test_prune.c: pruning scores, thresholds and masks (prune.h), the Hessian and its
 * inverse factor (hessian.h), SparseGPT (sparsegpt.h).
 *
 * Small matrices whose answers can be checked by hand; selections against sorting; and
 * SparseGPT against a plain double-precision implementation of the same algorithm written
 * here from the description in docs/methods.md §3.3 (its own Cholesky, explicit inverse,
 * column loops as the reference's tensor code reads), then the point of the method: its
 * update leaves a smaller layer-output error than zeroing the same weights alone. */
#include "dtype.h"
#include "hessian.h"
#include "kernels.h"
#include "prune.h"
#include "rng.h"
#include "sparsegpt.h"
#include "unit.h"
#include "util.h"

#include <stdint.h>
#include <string.h>

#define TOL_H 1e-5      /* Hessian vs double sums, relative */
#define TOL_INV 1e-4    /* U^T U (H + damp I) vs identity, max abs */
#define TOL_SGPT 1e-4   /* SparseGPT f32 vs the double reference, relative (unit_relerr) */

static struct lm_mat mat_f32(float *d, int64_t rows, int64_t cols)
{
	struct lm_mat m = {.dtype = LM_F32, .rows = rows, .cols = cols, .data = d};
	return m;
}

static size_t count_zero(const float *x, size_t n)
{
	size_t z = 0;
	for (size_t i = 0; i < n; i++)
		z += x[i] == 0.0f;
	return z;
}

/* ---- selection ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_select(void)
{
	struct lm_rng r;
	lm_rng_seed(&r, 1);
	for (int trial = 0; trial < 200; trial++) {
		size_t n = 1 + lm_rng_below(&r, 300), k = lm_rng_below(&r, n);
		uint64_t range = trial % 3 == 0 ? 3 : trial % 3 == 1 ? 1000 : UINT64_MAX;
		uint64_t *a = xmalloc(n * sizeof *a), *b = xmalloc(n * sizeof *b);
		for (size_t i = 0; i < n; i++)
			a[i] = b[i] = range == UINT64_MAX ? lm_rng_u64(&r) : lm_rng_below(&r, range);
		/* sorted input too: the order a row of zeros arrives in */
		if (trial % 7 == 0)
			qsort(a, n, sizeof *a, cmp_u64);
		qsort(b, n, sizeof *b, cmp_u64);
		CHECKF(lm_select_u64(a, n, k) == b[k], "n %zu k %zu", n, k);
		free(a), free(b);
	}
}

/* ---- magnitude ---- */

static void test_magnitude(void)
{
	/* |w| sorted: 0 .1 .1 .2 .3 .3 .5 .7 */
	const float w0[8] = {0.5f, -0.1f, 0.3f, -0.3f, 0.2f, 0.1f, -0.7f, 0.0f};
	float w[8], thr;
	struct lm_mat m = mat_f32(w, 2, 4), *mp = &m;
	struct lm_prune_spec sp = {LM_PRUNE_MAGNITUDE, 0.25, 0, 0};

	memcpy(w, w0, sizeof w);
	CHECK(lm_prune_kth_abs(&mp, 1, 2, &thr) == 0 && thr == 0.1f);
	CHECK(lm_prune_kth_abs(&mp, 1, 8, &thr) == 0 && thr == 0.7f);
	CHECK(lm_prune_kth_abs(&mp, 1, 9, &thr) < 0);
	/* s = 0.25: k = 2, the 2nd smallest is 0.1, and its tie goes too: 3 zeros */
	CHECK(lm_prune_mat(&m, &sp, NULL) == 0);
	CHECK(count_zero(w, 8) == 3 && w[1] == 0 && w[5] == 0 && w[0] == 0.5f);
	/* s = 0.6: k = floor(4.8) = 4, threshold 0.2: exactly 4 */
	memcpy(w, w0, sizeof w);
	sp.sparsity = 0.6;
	CHECK(lm_prune_mat(&m, &sp, NULL) == 0 && count_zero(w, 8) == 4 && w[4] == 0);
	/* s = 0.625: k = 5, threshold 0.3 and its tie: 6 */
	memcpy(w, w0, sizeof w);
	sp.sparsity = 0.625;
	CHECK(lm_prune_mat(&m, &sp, NULL) == 0 && count_zero(w, 8) == 6 && w[0] == 0.5f && w[6] == -0.7f);
	/* s = 0.1: k = 0 prunes nothing, not even the zero's neighbours */
	memcpy(w, w0, sizeof w);
	sp.sparsity = 0.1;
	CHECK(lm_prune_mat(&m, &sp, NULL) == 0 && count_zero(w, 8) == 1);

	/* f16 and global: two matrices ranked together, one threshold */
	uint16_t h1[4], h2[4];
	const float a[4] = {1, -2, 3, -4}, b[4] = {0.5f, 5, -6, 2.5f};
	lm_convert(h1, LM_F16, a, LM_F32, 4);
	lm_convert(h2, LM_F16, b, LM_F32, 4);
	struct lm_mat m1 = {.dtype = LM_F16, .rows = 2, .cols = 2, .data = h1}, m2 = {.dtype = LM_F16, .rows = 1, .cols = 4, .data = h2}, *both[2] = {&m1, &m2};
	/* all |w|: .5 1 2 2.5 3 4 5 6; k = floor(0.5 * 8) = 4 -> 2.5 */
	CHECK(lm_prune_kth_abs(both, 2, lm_prune_count(0.5, 8), &thr) == 0 && thr == 2.5f);
	CHECK(lm_prune_abs_below(&m1, thr) == 0 && lm_prune_abs_below(&m2, thr) == 0);
	CHECK(lm_mat_zeros(&m1) == 2 && lm_mat_zeros(&m2) == 2 && h1[2] != 0 && h2[1] != 0);
	CHECK(h1[0] == 0 && h1[1] == 0);   /* exact +0 */

	/* the histogram select against sorting, random f32/bf16 values with repeats */
	struct lm_rng r;
	lm_rng_seed(&r, 2);
	for (int trial = 0; trial < 20; trial++) {
		size_t n = 1 + lm_rng_below(&r, 5000), k = 1 + lm_rng_below(&r, n);
		float *x = xmalloc(n * sizeof *x), *s = xmalloc(n * sizeof *s);
		uint16_t *hb = xmalloc(n * sizeof *hb);
		for (size_t i = 0; i < n; i++) {
			x[i] = (float)(lm_rng_normal(&r) * (trial % 2 ? 1e-3 : 10));
			if (trial % 4 == 0)
				x[i] = (float)(int)(x[i] * 4) / 4;   /* heavy ties */
		}
		struct lm_mat mx = mat_f32(x, 1, (int64_t)n), *px = &mx;
		for (size_t i = 0; i < n; i++)
			s[i] = fabsf(x[i]);
		for (size_t i = 1; i < n; i++)   /* insertion sort: n is small */
			for (size_t j = i; j > 0 && s[j - 1] > s[j]; j--) {
				float t = s[j];
				s[j] = s[j - 1], s[j - 1] = t;
			}
		CHECKF(lm_prune_kth_abs(&px, 1, k, &thr) == 0 && thr == s[k - 1], "n %zu k %zu", n, k);
		/* bf16 of the same values: rank of the rounded values */
		lm_convert(hb, LM_BF16, x, LM_F32, n);
		struct lm_mat mb = {.dtype = LM_BF16, .rows = 1, .cols = (int64_t)n, .data = hb}, *pb = &mb;
		float kb;
		lm_to_f32(s, hb, LM_BF16, n);
		size_t below = 0, upto = 0;
		CHECK(lm_prune_kth_abs(&pb, 1, k, &kb) == 0);
		for (size_t i = 0; i < n; i++)
			below += fabsf(s[i]) < kb, upto += fabsf(s[i]) <= kb;
		CHECKF(below < k && upto >= k, "bf16 rank: %zu below, %zu up to, k %zu", below, upto, k);
		free(x), free(s), free(hb);
	}
}

/* ---- N:M and Wanda ---- */

static void test_masks(void)
{
	const float s1[8] = {3, 1, 2, 0, 5, 5, 5, 5};
	unsigned char mk[8];
	uint64_t keys[8];
	lm_row_mask_nm(s1, 8, 2, 4, mk);
	CHECK(!mk[0] && mk[1] && !mk[2] && mk[3]);
	CHECK(mk[4] && mk[5] && !mk[6] && !mk[7]);   /* ties: lower columns first */
	lm_row_mask_nm(s1, 8, 1, 4, mk);
	CHECK(mk[3] && mk[4] && mk[0] + mk[1] + mk[2] + mk[5] + mk[6] + mk[7] == 0);
	lm_row_mask_k(s1, 8, 3, mk, keys);
	CHECK(mk[3] && mk[1] && mk[2] && mk[0] + mk[4] + mk[5] + mk[6] + mk[7] == 0);
	lm_row_mask_k(s1, 8, 5, mk, keys);   /* 0 1 2 3, then the first of four 5s */
	CHECK(mk[0] && mk[1] && mk[2] && mk[3] && mk[4] && !mk[5] && !mk[6] && !mk[7]);
	lm_row_mask_k(s1, 8, 0, mk, keys);
	CHECK(mk[0] + mk[1] + mk[2] + mk[3] + mk[4] + mk[5] + mk[6] + mk[7] == 0);

	/* Wanda: score |w_ij| * ||x_j||, per row exactly floor(s * cols) */
	float w[12] = {1, 1, 1, 1,  1, 2, 3, 4,  -1, 1, -1, 1};
	const double sumsq[4] = {4, 1, 1, 1};   /* norms 2 1 1 1 */
	struct lm_mat m = mat_f32(w, 3, 4);
	struct lm_prune_spec sp = {LM_PRUNE_WANDA, 0.5, 0, 0};
	CHECK(lm_prune_mat(&m, &sp, sumsq) == 0);
	/* row 0 scores 2 1 1 1 -> cols 1, 2; row 1: 2 2 3 4 -> 0, 1; row 2: 2 1 1 1 -> 1, 2 */
	const float want[12] = {1, 0, 0, 1,  0, 0, 3, 4,  -1, 0, 0, 1};
	CHECK(!memcmp(w, want, sizeof w));
	float w2[12] = {1, 1, 1, 1,  1, 2, 3, 4,  -1, 1, -1, 1};
	m.data = w2;
	sp.sparsity = 0.3;   /* floor(1.2) = 1 per row */
	CHECK(lm_prune_mat(&m, &sp, sumsq) == 0);
	CHECK(w2[1] == 0 && w2[4] == 0 && w2[9] == 0 && count_zero(w2, 12) == 3);

	/* random rows with many equal scores: exact counts per row and per block */
	struct lm_rng r;
	lm_rng_seed(&r, 3);
	const size_t R = 37, C = 64;
	uint16_t *h = xmalloc(R * C * sizeof *h);
	float *f = xmalloc(R * C * sizeof *f);
	double ss[64];
	for (size_t i = 0; i < R * C; i++)
		f[i] = (float)(int)(lm_rng_normal(&r) * 3) / 3;
	for (size_t j = 0; j < C; j++)
		ss[j] = (double)lm_rng_below(&r, 3);
	lm_convert(h, LM_F16, f, LM_F32, R * C);
	struct lm_mat mh = {.dtype = LM_F16, .rows = (int64_t)R, .cols = (int64_t)C, .data = h};
	struct lm_prune_spec sw = {LM_PRUNE_WANDA, 0.7, 0, 0};
	uint16_t *h0 = xmalloc(R * C * sizeof *h0);
	memcpy(h0, h, R * C * sizeof *h);
	CHECK(lm_prune_mat(&mh, &sw, ss) == 0);
	for (size_t i = 0; i < R; i++) {
		size_t z = 0, z0 = 0;
		for (size_t j = 0; j < C; j++)
			z += !(h[i * C + j] & 0x7fff), z0 += !(h0[i * C + j] & 0x7fff);
		/* exactly floor(0.7 * 64) = 44, unless the row had more zeros to begin with */
		CHECKF(z == (z0 > 44 ? z0 : 44), "row %zu: %zu zeros (%zu before)", i, z, z0);
	}
	memcpy(h, h0, R * C * sizeof *h);
	struct lm_prune_spec snm = {LM_PRUNE_MAGNITUDE, 0.5, 2, 4};
	CHECK(lm_prune_mat(&mh, &snm, NULL) == 0);
	for (size_t b = 0; b < R * C / 4; b++) {
		int z = 0, z0 = 0;
		for (int t = 0; t < 4; t++)
			z += !(h[b * 4 + t] & 0x7fff), z0 += !(h0[b * 4 + t] & 0x7fff);
		CHECKF(z == (z0 > 2 ? z0 : 2), "block %zu: %d zeros", b, z);
	}
	snm.m = 5;   /* 64 is not a multiple of 5 */
	CHECK(lm_prune_mat(&mh, &snm, NULL) < 0);
	free(h), free(h0), free(f);
}

/* ---- a double-precision SparseGPT written from the algorithm's description ---- */

/* lower Cholesky of a [n,n] in place (row-major); 0 or -1 */
static int chol_lower(double *a, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		double d = a[j * n + j];
		for (size_t k = 0; k < j; k++)
			d -= a[j * n + k] * a[j * n + k];
		if (d <= 0)
			return -1;
		a[j * n + j] = sqrt(d);
		for (size_t i = j + 1; i < n; i++) {
			double s = a[i * n + j];
			for (size_t k = 0; k < j; k++)
				s -= a[i * n + k] * a[j * n + k];
			a[i * n + j] = s / a[j * n + j];
		}
		for (size_t k = j + 1; k < n; k++)
			a[j * n + k] = 0;
	}
	return 0;
}

/* Hinv = upper Cholesky factor of (H with dead fix + damp)^-1, all in double */
static void ref_hinv(const double *H0, size_t n, double percdamp, double *U, unsigned char *dead)
{
	double *H = xmalloc(n * n * sizeof *H), *L = xmalloc(n * n * sizeof *L);
	double *Inv = xmalloc(n * n * sizeof *Inv), mean = 0;
	memcpy(H, H0, n * n * sizeof *H);
	for (size_t j = 0; j < n; j++) {
		dead[j] = H[j * n + j] == 0;
		if (dead[j])
			H[j * n + j] = 1;
		mean += H[j * n + j];
	}
	for (size_t j = 0; j < n; j++)
		H[j * n + j] += percdamp * mean / (double)n;
	memcpy(L, H, n * n * sizeof *L);
	CHECK(chol_lower(L, n) == 0);
	/* H^-1 column by column: solve L y = e_c, then L^T x = y */
	for (size_t c = 0; c < n; c++) {
		double *x = xcalloc(n, sizeof *x);
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
		free(x);
	}
	CHECK(chol_lower(Inv, n) == 0);   /* Inv = L2 L2^T, U = L2^T */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			U[i * n + j] = Inv[j * n + i];
	free(H), free(L), free(Inv);
}

/* the reference's fasterprune in double, tensor operations written out as loops */
static void ref_sparsegpt(double *W, size_t rows, size_t cols, const double *U,
                          const unsigned char *dead, double s, int pn, int pm, size_t bs)
{
	double *W1 = xmalloc(rows * bs * sizeof *W1), *Err1 = xmalloc(rows * bs * sizeof *Err1);
	double *tmp = xmalloc(rows * bs * sizeof *tmp), *srt = xmalloc(rows * bs * sizeof *srt);
	unsigned char *mask1 = xmalloc(rows * bs);
	for (size_t c = 0; c < cols; c++)
		if (dead[c])
			for (size_t r = 0; r < rows; r++)
				W[r * cols + c] = 0;
	for (size_t i1 = 0; i1 < cols; i1 += bs) {
		size_t i2 = i1 + bs < cols ? i1 + bs : cols, count = i2 - i1;
		for (size_t r = 0; r < rows; r++)
			for (size_t i = 0; i < count; i++)
				W1[r * count + i] = W[r * cols + i1 + i];
		memset(mask1, 0, rows * count);
		if (!pn) {
			size_t numel = rows * count;
			for (size_t r = 0; r < rows; r++)
				for (size_t i = 0; i < count; i++) {
					double d = U[(i1 + i) * cols + i1 + i];
					tmp[r * count + i] = srt[r * count + i] = W1[r * count + i] * W1[r * count + i] / (d * d);
				}
			for (size_t a = 1; a < numel; a++)
				for (size_t b = a; b > 0 && srt[b - 1] > srt[b]; b--) {
					double t = srt[b];
					srt[b] = srt[b - 1], srt[b - 1] = t;
				}
			double thresh = srt[(size_t)floor((double)numel * s)];
			for (size_t k = 0; k < numel; k++)
				mask1[k] = tmp[k] <= thresh;
		}
		for (size_t i = 0; i < count; i++) {
			const double d = U[(i1 + i) * cols + i1 + i];
			if (pn && i % (size_t)pm == 0)
				for (size_t r = 0; r < rows; r++) {
					double sc[LM_SPARSEGPT_BLOCK];
					for (size_t c = 0; c < (size_t)pm; c++) {
						double dc = U[(i1 + i + c) * cols + i1 + i + c], wc = W1[r * count + i + c];
						sc[c] = wc * wc / (dc * dc);
					}
					for (int t = 0; t < pn; t++) {   /* the pn smallest, lower column on ties */
						size_t best = (size_t)-1;
						for (size_t c = 0; c < (size_t)pm; c++)
							if (!mask1[r * count + i + c] && (best == (size_t)-1 || sc[c] < sc[best]))
								best = c;
						mask1[r * count + i + best] = 1;
					}
				}
			for (size_t r = 0; r < rows; r++) {
				double w = W1[r * count + i], q = mask1[r * count + i] ? 0 : w, err = (w - q) / d;
				for (size_t c = i; c < count; c++)
					W1[r * count + c] -= err * U[(i1 + i) * cols + i1 + c];
				W1[r * count + i] = q;
				Err1[r * count + i] = err;
			}
		}
		for (size_t r = 0; r < rows; r++) {
			for (size_t i = 0; i < count; i++)
				W[r * cols + i1 + i] = W1[r * count + i];
			for (size_t c = i2; c < cols; c++) {
				double acc = 0;
				for (size_t i = 0; i < count; i++)
					acc += Err1[r * count + i] * U[(i1 + i) * cols + c];
				W[r * cols + c] -= acc;
			}
		}
	}
	free(W1), free(Err1), free(tmp), free(srt), free(mask1);
}

/* ||X W^T - X V^T||_F^2 for X [N,cols], W and V [rows,cols] */
static double out_err(const float *X, const float *W, const float *V, size_t N, size_t rows, size_t cols)
{
	double e = 0;
	for (size_t t = 0; t < N; t++)
		for (size_t r = 0; r < rows; r++) {
			double d = 0;
			for (size_t c = 0; c < cols; c++)
				d += (double)X[t * cols + c] * ((double)W[r * cols + c] - V[r * cols + c]);
			e += d * d;
		}
	return e;
}

static void test_sparsegpt(void)
{
	enum { N = 96, COLS = 40, ROWS = 12, BS = 16, NSEQ = 3 };
	struct lm_rng r;
	float *X = xmalloc(N * COLS * sizeof *X), *W0 = xmalloc(ROWS * COLS * sizeof *W0);
	float *W = xmalloc(ROWS * COLS * sizeof *W), *U = xmalloc(COLS * COLS * sizeof *U);
	double *Hd = xcalloc(COLS * COLS, sizeof *Hd), *Ud = xmalloc(COLS * COLS * sizeof *Ud);
	double *Wd = xmalloc(ROWS * COLS * sizeof *Wd);
	unsigned char dead[COLS], deadd[COLS];
	struct lm_hessian h;

	lm_rng_seed(&r, 4);
	/* correlated inputs (a shared factor per token), column 7 never fires */
	for (size_t t = 0; t < N; t++) {
		double f = lm_rng_normal(&r);
		for (size_t c = 0; c < COLS; c++)
			X[t * COLS + c] = c == 7 ? 0.0f : (float)(f * (1 + 0.1 * (double)c) + 0.5 * lm_rng_normal(&r));
	}
	for (size_t i = 0; i < ROWS * COLS; i++)
		W0[i] = (float)lm_rng_normal(&r);

	/* the Hessian: two batches, against double sums */
	CHECK(lm_hessian_init(&h, COLS) == 0);
	CHECK(lm_hessian_finish(&h) < 0);   /* nothing added */
	lm_hessian_add(&h, X, N / 2, NSEQ - 1);
	lm_hessian_add(&h, X + N / 2 * COLS, N - N / 2, 1);
	CHECK(lm_hessian_finish(&h) == 0);
	double md = 0, mh = 0;
	for (size_t i = 0; i < COLS; i++)
		for (size_t j = 0; j < COLS; j++) {
			double s = 0;
			for (size_t t = 0; t < N; t++)
				s += (double)X[t * COLS + i] * X[t * COLS + j];
			Hd[i * COLS + j] = 2.0 / NSEQ * s;
			md = fmax(md, fabs(Hd[i * COLS + j] - h.H[i * COLS + j]));
			mh = fmax(mh, fabs(Hd[i * COLS + j]));
		}
	CHECKF(md / mh < TOL_H, "Hessian relative error %g", md / mh);

	/* U^T U (H + damp I) = I, with the dead column's diagonal taken as 1 */
	CHECK(lm_hessian_inv_chol(h.H, COLS, 0.01, dead, U) == 0);
	CHECK(dead[7] == 1 && dead[0] == 0 && dead[8] == 0);
	ref_hinv(Hd, COLS, 0.01, Ud, deadd);
	double mean = 0, ui = 0;
	for (size_t j = 0; j < COLS; j++)
		mean += j == 7 ? 1.0 : Hd[j * COLS + j];
	mean /= COLS;
	for (size_t i = 0; i < COLS; i++)
		for (size_t j = 0; j < COLS; j++) {
			double s = 0;
			for (size_t k = 0; k < COLS; k++) {
				double uu = 0, hk = k == j ? (k == 7 ? 1.0 : Hd[k * COLS + j]) + 0.01 * mean : Hd[k * COLS + j];
				for (size_t m = 0; m < COLS; m++)
					uu += (double)U[m * COLS + i] * U[m * COLS + k];
				s += uu * hk;
			}
			ui = fmax(ui, fabs(s - (i == j)));
			if (j < i)
				CHECK(U[i * COLS + j] == 0.0f);
		}
	CHECKF(ui < TOL_INV, "U^T U D - I: %g", ui);
	float *Uf = xmalloc(COLS * COLS * sizeof *Uf);
	for (size_t i = 0; i < COLS * COLS; i++)
		Uf[i] = (float)Ud[i];
	CHECKF(unit_relerr(U, Uf, COLS * COLS) < TOL_SGPT, "U vs double reference: %g",
	       unit_relerr(U, Uf, COLS * COLS));

	/* unstructured 50 % and 2:4, each against the double reference on the same U */
	const struct lm_prune_spec specs[2] = {{LM_PRUNE_SPARSEGPT, 0.5, 0, 0}, {LM_PRUNE_SPARSEGPT, 0.5, 2, 4}};
	for (int v = 0; v < 2; v++) {
		double loss;
		float *Wr = xmalloc(ROWS * COLS * sizeof *Wr);
		memcpy(W, W0, ROWS * COLS * sizeof *W);
		for (size_t i = 0; i < ROWS * COLS; i++)
			Wd[i] = W0[i];
		CHECK(lm_sparsegpt(W, ROWS, COLS, U, dead, &specs[v], BS, &loss) == 0);
		ref_sparsegpt(Wd, ROWS, COLS, Ud, deadd, 0.5, specs[v].n, specs[v].m, BS);
		int same_mask = 1;
		for (size_t i = 0; i < ROWS * COLS; i++) {
			Wr[i] = (float)Wd[i];
			same_mask &= (W[i] == 0.0f) == (Wd[i] == 0.0);
		}
		CHECKF(same_mask, "variant %d: masks differ", v);
		CHECKF(unit_relerr(W, Wr, ROWS * COLS) < TOL_SGPT, "variant %d: %g", v, unit_relerr(W, Wr, ROWS * COLS));
		CHECK(loss > 0);
		for (size_t rr = 0; rr < ROWS; rr++)
			CHECK(W[rr * COLS + 7] == 0.0f);   /* the dead column */
		if (v == 0) {
			/* each block of 16 columns (the last one 8) prunes floor(s * numel) + 1 */
			size_t z = 0;
			for (size_t i1 = 0; i1 < COLS; i1 += BS) {
				size_t cnt = COLS - i1 < BS ? COLS - i1 : BS, zb = 0;
				for (size_t rr = 0; rr < ROWS; rr++)
					for (size_t i = i1; i < i1 + cnt; i++)
						zb += W[rr * COLS + i] == 0.0f;
				CHECKF(zb >= ROWS * cnt / 2 + 1, "block %zu: %zu zeros", i1, zb);
				z += zb;
			}
			CHECK(z >= ROWS * COLS / 2);
		} else {
			for (size_t b = 0; b < ROWS * COLS / 4; b++)
				CHECKF(count_zero(W + b * 4, 4) == 2 || (b % (COLS / 4) == 1 && count_zero(W + b * 4, 4) >= 2),
				       "2:4 block %zu", b);
		}

		/* the OBS update beats zeroing the same weights and leaving the rest alone */
		float *Wm = xmalloc(ROWS * COLS * sizeof *Wm);
		for (size_t i = 0; i < ROWS * COLS; i++)
			Wm[i] = W[i] == 0.0f ? 0.0f : W0[i];
		double e_obs = out_err(X, W0, W, N, ROWS, COLS), e_mask = out_err(X, W0, Wm, N, ROWS, COLS);
		CHECKF(e_obs < 0.8 * e_mask, "variant %d: output error %g with the update, %g without", v, e_obs, e_mask);
		free(Wm), free(Wr);
	}

	/* sparsity 0 changes nothing; f16 round trip keeps zeros exact */
	memcpy(W, W0, ROWS * COLS * sizeof *W);
	struct lm_prune_spec s0 = {LM_PRUNE_SPARSEGPT, 0, 0, 0};
	CHECK(lm_sparsegpt(W, ROWS, COLS, U, NULL, &s0, BS, NULL) == 0);
	CHECK(!memcmp(W, W0, ROWS * COLS * sizeof *W));
	uint16_t *wh = xmalloc(ROWS * COLS * sizeof *wh);
	lm_convert(wh, LM_F16, W0, LM_F32, ROWS * COLS);
	struct lm_mat m16 = {.dtype = LM_F16, .rows = ROWS, .cols = COLS, .data = wh};
	CHECK(lm_sparsegpt_mat(&m16, U, dead, &specs[0], BS, NULL) == 0);
	CHECK(lm_mat_zeros(&m16) >= ROWS * COLS / 2);
	/* bad patterns */
	struct lm_prune_spec bad = {LM_PRUNE_SPARSEGPT, 0.5, 2, 3};
	CHECK(lm_sparsegpt(W, ROWS, COLS, U, NULL, &bad, BS, NULL) < 0);   /* 3 divides neither 16 nor 40 */

	/* a matrix that is not positive definite even after dampening */
	float neg[4] = {1, 2, 2, 1};
	CHECK(lm_hessian_inv_chol(neg, 2, 0.0, NULL, U) < 0);

	lm_hessian_free(&h);
	free(X), free(W0), free(W), free(U), free(Uf), free(Hd), free(Ud), free(Wd), free(wh);
}

/* --compute bf16 (issue #19): the Hessian on the bf16 GEMM in strips of the upper triangle
 * (300 columns: a strip of 256 rows and one of 44) equals the double sums of X rounded to
 * bf16 up to fp32 summation, the lower triangle mirrored; the reversed factorization (in
 * f32) gives the f32 path's U (the same unique factor, other roundings), its zero lower part, the same
 * dead columns, and still refuses a matrix that is not positive definite; SparseGPT's
 * trailing updates on the bf16 GEMM stay close to f32's */
static void test_bf16_hessian(void)
{
	enum { NC = 300, NT = 96 };
	lm_set_compute(LM_COMPUTE_BF16);
	if (lm_compute_used() != LM_COMPUTE_BF16) {
		lm_set_compute(LM_COMPUTE_F32);
		return;   /* no AVX512_BF16 here: --compute bf16 is f32 (calib-bf16.bats) */
	}
	struct lm_rng r;
	float *X = xmalloc(NT * NC * sizeof *X), *U = xmalloc(NC * NC * sizeof *U);
	float *U32 = xmalloc(NC * NC * sizeof *U32);
	uint16_t *xb = xmalloc(NT * NC * sizeof *xb);
	unsigned char dead[NC], dead32[NC];
	struct lm_hessian h;
	lm_rng_seed(&r, 9);
	for (size_t t = 0; t < NT; t++) {
		double f = lm_rng_normal(&r);
		for (size_t c = 0; c < NC; c++)
			X[t * NC + c] = c == 5 ? 0.0f : (float)(f + lm_rng_normal(&r));
	}
	CHECK(lm_hessian_init(&h, NC) == 0);
	lm_hessian_add(&h, X, NT / 2, 1);
	lm_hessian_add(&h, X + NT / 2 * NC, NT - NT / 2, 1);
	CHECK(lm_hessian_finish(&h) == 0);
	lm_convert(xb, LM_BF16, X, LM_F32, NT * NC);
	float *Xr = xmalloc(NT * NC * sizeof *Xr);
	lm_convert(Xr, LM_F32, xb, LM_BF16, NT * NC);
	double md = 0, mh = 0, rd = 0;
	for (size_t i = 0; i < NC; i++)
		for (size_t j = 0; j < NC; j++) {
			double s = 0, s32 = 0;
			for (size_t t = 0; t < NT; t++) {
				s += (double)Xr[t * NC + i] * Xr[t * NC + j];
				s32 += (double)X[t * NC + i] * X[t * NC + j];
			}
			md = fmax(md, fabs(s - h.H[i * NC + j]));   /* 2 / nsamples = 1 */
			rd = fmax(rd, fabs(s32 - h.H[i * NC + j]));
			mh = fmax(mh, fabs(s));
			CHECK(h.H[i * NC + j] == h.H[j * NC + i]);
		}
	CHECKF(md / mh < TOL_H, "bf16 Hessian vs double sums of bf16 inputs: %g", md / mh);
	CHECKF(rd / mh > 0 && rd / mh < 1e-2, "bf16 Hessian vs f32 inputs: %g", rd / mh);

	CHECK(lm_hessian_inv_chol(h.H, NC, 0.01, dead, U) == 0);
	lm_set_compute(LM_COMPUTE_F32);
	CHECK(lm_hessian_inv_chol(h.H, NC, 0.01, dead32, U32) == 0);
	CHECK(!memcmp(dead, dead32, NC) && dead[5] == 1 && dead[4] == 0);
	/* 4.6e-5 here: the reversed factorization runs in f32 (double only where f32 fails) */
	CHECKF(unit_relerr(U, U32, NC * NC) < 1e-3, "reversed U vs f32 path's: %g",
	       unit_relerr(U, U32, NC * NC));
	for (size_t i = 0; i < NC; i++)
		for (size_t j = 0; j < i; j++)
			CHECK(U[i * NC + j] == 0.0f);
	/* SparseGPT's updates after each block on the bf16 GEMM (blocks of 128: two trailing
	 * updates), on the same U: as many zeros, and an output error within 10 % of f32's
	 * (here 0.9 % above it). The weights themselves differ by more (27 % relative): these
	 * correlated inputs make U ill-conditioned, and a dozen of 3600 mask choices flip */
	enum { NR = 24 };
	float *W = xmalloc(NR * NC * sizeof *W), *W32 = xmalloc(NR * NC * sizeof *W32);
	float *W0 = xmalloc(NR * NC * sizeof *W0);
	for (size_t i = 0; i < NR * NC; i++)
		W0[i] = W[i] = W32[i] = (float)lm_rng_normal(&r);
	const struct lm_prune_spec sp = {LM_PRUNE_SPARSEGPT, 0.5, 0, 0};
	CHECK(lm_sparsegpt(W32, NR, NC, U32, dead32, &sp, 128, NULL) == 0);
	lm_set_compute(LM_COMPUTE_BF16);
	CHECK(lm_sparsegpt(W, NR, NC, U32, dead32, &sp, 128, NULL) == 0);
	size_t z = 0, z32 = 0;
	for (size_t i = 0; i < NR * NC; i++)
		z += W[i] == 0.0f, z32 += W32[i] == 0.0f;
	CHECK(z == z32);
	double e = out_err(X, W0, W, NT, NR, NC), e32 = out_err(X, W0, W32, NT, NR, NC);
	CHECKF(e > 0 && e < 1.1 * e32, "SparseGPT bf16 updates: output error %g, f32 %g", e, e32);
	free(W), free(W32), free(W0);
	float neg[4] = {1, 2, 2, 1};
	CHECK(lm_hessian_inv_chol(neg, 2, 0.0, NULL, U) < 0);
	lm_set_compute(LM_COMPUTE_F32);
	lm_hessian_free(&h);
	free(X), free(Xr), free(xb), free(U), free(U32);
}

int main(void)
{
	test_select();
	test_magnitude();
	test_masks();
	test_sparsegpt();
	test_bf16_hessian();
	CHECK(lm_prune_method_parse("SparseGPT") == LM_PRUNE_SPARSEGPT && lm_prune_method_parse("x") < 0);
	CHECK(lm_prune_count(0.29, 100) == 28 && lm_prune_count(0.5, 7) == 3);   /* as int(100 * 0.29) */
	return unit_done("test_prune");
}

/* hessian.c: see hessian.h */
#include "hessian.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "lapack.h"
#include "util.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int lm_hessian_init(struct lm_hessian *h, size_t n)
{
	size_t nn;
	memset(h, 0, sizeof *h);
	if (n == 0 || n > INT_MAX)
		return lm_seterr("Hessian: %zu columns (LAPACK takes 1 to %d)", n, INT_MAX);
	if (lm_mul(n, n, &nn) < 0 || lm_mul(nn, sizeof(float), &nn) < 0 || !(h->H = (float *)lm_alloc_huge(nn)))
		return lm_preerr("Hessian of %zu columns", n);
	memset(h->H, 0, nn);
	h->n = n;
	return 0;
}

void lm_hessian_free(struct lm_hessian *h)
{
	lm_free(h->H);
	free(h->ws);
	memset(h, 0, sizeof *h);
}

/* columns of H per bf16 product: H's upper triangle is covered by strips
 * H[0:i0+nb, i0:i0+nb], a little more than half the square (n = 3072: 54 %) */
#define HESS_BF16_COLS 256

/* With --compute bf16, H += X^T X by the bf16 GEMM: X rounded to bf16, products summed in
 * fp32 (issue #19), in column strips of the upper triangle. X^T is packed once as the
 * GEMM's A, straight from X (its rows from 0 to i0+nb a prefix of it), each strip's columns
 * of X as its B: one conversion of X for A and one for all the Bs, where strips given as
 * transposed operands repacked X[:, i0:] for every strip. The packed buffers stay in h for
 * the next add. 0, or -1 when it found no memory (H unchanged: the caller sums in f32). */
static int add_bf16(struct lm_hessian *h, const float *X, size_t N)
{
	const size_t n = h->n, nb0 = n < HESS_BF16_COLS ? n : HESS_BF16_COLS;
	size_t na = lm_gemm_bf16_packed_a(n, N), nbp = lm_gemm_bf16_packed_b(nb0, N), bytes;
	/* A packed, then one B */
	if (lm_add(na, nbp, &bytes) < 0 || lm_mul(bytes, sizeof(uint32_t), &bytes) < 0)
		return -1;
	if (h->ws_bytes < bytes) {
		free(h->ws);
		h->ws_bytes = 0;
		if (!(h->ws = lm_alloc_huge(bytes)))
			return -1;
		h->ws_bytes = bytes;
	}
	uint32_t *ap = h->ws, *bp = ap + na;
	lm_gemm_bf16_pack_a_t(ap, X, n, 1, n, N);   /* X is X^T given transposed */
	for (size_t i0 = 0; i0 < n; i0 += HESS_BF16_COLS) {
		size_t nb = n - i0 < HESS_BF16_COLS ? n - i0 : HESS_BF16_COLS;
		lm_gemm_bf16_pack_b_t(bp, X + i0, n, 1, nb, N);   /* X[:, i0:i0+nb], [N x nb] */
		/* C [i0+nb, nb] (columns i0.. of H) += X[:, 0:i0+nb]^T X[:, i0:i0+nb] */
		if (lm_gemm_bf16_nt_packed(h->H + i0, n, ap, bp, i0 + nb, nb, N, 1.0f) < 0) {
			if (i0 == 0)
				return -1;
			/* a later strip: the earlier ones are summed; the rest of the triangle in f32 */
			cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)(n - i0), (int)N, 1.0f,
			            X + i0, (int)n, 1.0f, h->H + i0 * n + i0, (int)n);
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)i0, (int)(n - i0), (int)N,
			            1.0f, X, (int)n, X + i0, (int)n, 1.0f, h->H + i0, (int)n);
			return 0;
		}
	}
	return 0;
}

void lm_hessian_add(struct lm_hessian *h, const float *X, size_t N, size_t nseq)
{
	if (lm_compute_used() == LM_COMPUTE_BF16 && N <= INT_MAX / 2 && add_bf16(h, X, N) == 0) {
		h->nsamples += nseq;
		return;
	}
	/* only the upper triangle: half the work of a GEMM; lm_hessian_finish mirrors it.
	 * BLAS counts rows in int: a larger X goes in pieces */
	for (size_t r0 = 0; r0 < N; r0 += INT_MAX / 2) {
		size_t nr = N - r0 < INT_MAX / 2 ? N - r0 : INT_MAX / 2;
		cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)h->n, (int)nr, 1.0f, X + r0 * h->n,
		            (int)h->n, 1.0f, h->H, (int)h->n);
	}
	h->nsamples += nseq;
}

int lm_hessian_finish(struct lm_hessian *h)
{
	const size_t n = h->n;
	if (h->finished)
		return 0;
	if (h->nsamples == 0)
		return lm_seterr("Hessian: no calibration data was added");
	/* the reference rescales a running mean per window; scaling the sum once is the same
	 * quantity with fewer roundings */
	float sc = (float)(2.0 / (double)h->nsamples);
	for (size_t i = 0; i < n; i++) {
		float *row = h->H + i * n;
		for (size_t j = i; j < n; j++)
			row[j] *= sc;
		for (size_t j = 0; j < i; j++)
			row[j] = h->H[j * n + i];
	}
	h->finished = 1;
	return 0;
}

/* The reversed factorization, for --compute bf16 (issue #19): the same U in half the
 * flops (2/3 n^3 against potrf + potri + potrf's 4/3 n^3), the f32 path keeping its own
 * order of roundings. With P the reversal (P D P)_ij = D_(n-1-i)(n-1-j):
 *   P D P = L L^T  =>  D = R R^T with R = P L P upper  =>  D^-1 = U^T U with U = R^-1 =
 *   P L^-1 P, upper with a positive diagonal, hence the unique factor the other path
 *   computes.
 * A holds P D P row-major (= column-major, D being symmetric) on entry; U is written. */
#ifndef HESS_CHOL_THREADS
#define HESS_CHOL_THREADS 2048
#endif
static int inv_chol_reversed(double *A, size_t n, float *U)
{
	int in = (int)n, info = 0;
	/* first in f32, in U itself: the bf16 Hessian has lost more digits than an f32
	 * factorization of the dampened matrix loses, and it takes half the time of double's.
	 * A matrix f32 finds not positive definite (the case hessian.h warns of) goes on to
	 * double from A, still intact */
	for (size_t i = 0; i < n * n; i++)
		U[i] = (float)A[i];
	/* one BLAS thread below HESS_CHOL_THREADS columns: OpenBLAS's idle threads spin
	 * (sched_yield) for ~0.1 s after a threaded call, and a 768-column factorization takes
	 * a few ms; the spin then took a core from the bf16 GEMM that follows on our pool */
	const int blas = openblas_get_num_threads();
	if (n < HESS_CHOL_THREADS)
		openblas_set_num_threads(1);
	spotrf_("L", &in, U, &in, &info, 1);
	if (info == 0)
		strtri_("L", "N", &in, U, &in, &info, 1, 1);
	if (n < HESS_CHOL_THREADS)
		openblas_set_num_threads(blas);
	if (info == 0) {
		/* U_ij = (L^-1)_(n-1-i)(n-1-j) = U[(n-1-j) n + (n-1-i)] column-major: an involution
		 * of the positions, done by swaps; the strict lower part is then what strtri left
		 * of the other triangle */
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++) {
				size_t p = i * n + j, q = (n - 1 - j) * n + (n - 1 - i);
				if (p < q) {
					float t = U[p];
					U[p] = U[q], U[q] = t;
				}
			}
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < i; j++)
				U[i * n + j] = 0.0f;
		return 0;
	}
	info = 0;
	dpotrf_("L", &in, A, &in, &info, 1);
	if (info == 0)
		dtrtri_("L", "N", &in, A, &in, &info, 1, 1);
	if (info != 0)
		return info;
	/* L^-1 column-major: element (r, c) at A[c * n + r]; U_ij = (L^-1)_(n-1-i)(n-1-j) */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			U[i * n + j] = j >= i ? (float)A[(n - 1 - j) * n + (n - 1 - i)] : 0.0f;
	return 0;
}

int lm_hessian_inv_chol(const float *H, size_t n, double percdamp, unsigned char *dead, float *U)
{
	size_t nn;
	double *A, mean = 0;
	int in = (int)n, info = 0;
	const int rev = lm_compute_used() == LM_COMPUTE_BF16;

	if (n == 0 || n > INT_MAX)
		return lm_seterr("Hessian: %zu columns (LAPACK takes 1 to %d)", n, INT_MAX);
	if (lm_mul(n, n, &nn) < 0 || lm_mul(nn, sizeof *A, &nn) < 0 || !(A = lm_alloc_huge(nn)))
		return lm_preerr("Cholesky of %zu x %zu", n, n);
	/* rev: A = P H P, so A's diagonal entry n-1-j is H's entry j */
	if (rev)
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++)
				A[i * n + j] = H[(n - 1 - i) * n + (n - 1 - j)];
	else
		for (size_t i = 0; i < n * n; i++)
			A[i] = H[i];
	for (size_t j = 0; j < n; j++) {
		const size_t a = rev ? n - 1 - j : j;
		int d = H[j * n + j] == 0.0f;
		if (dead)
			dead[j] = (unsigned char)d;
		/* an input that never fired has a zero row and column: give it a unit diagonal so
		 * the matrix stays invertible; its weights are zeroed by the caller */
		if (d)
			A[a * n + a] = 1.0;
		mean += A[a * n + a];
	}
	mean /= (double)n;
	for (size_t j = 0; j < n; j++)
		A[j * n + j] += percdamp * mean;

	if (rev) {
		info = inv_chol_reversed(A, n, U);
	} else {
		/* A is symmetric, so LAPACK's column-major lower triangle is our row-major upper
		 * one: D = L L^T, then D^-1 from L, then D^-1 = L2 L2^T, and L2 read row-major is
		 * the upper U = L2^T with D^-1 = U^T U */
		dpotrf_("L", &in, A, &in, &info, 1);
		if (info == 0)
			dpotri_("L", &in, A, &in, &info, 1);
		if (info == 0)
			dpotrf_("L", &in, A, &in, &info, 1);
		if (info == 0)
			for (size_t i = 0; i < n; i++)
				for (size_t j = 0; j < n; j++)
					U[i * n + j] = j >= i ? (float)A[i * n + j] : 0.0f;
	}
	free(A);
	if (info < 0)
		return lm_seterr("LAPACK: argument %d of the Cholesky routines is invalid", -info);
	if (info > 0)
		return lm_seterr("the dampened Hessian (%zu x %zu) is not positive definite (minor %d); "
		                 "more calibration data or a larger dampening may help", n, n, info);
	return 0;
}

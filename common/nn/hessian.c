/* hessian.c: see hessian.h */
#include "hessian.h"
#include "lapack.h"
#include "util.h"

#include <cblas.h>
#include <limits.h>
#include <string.h>

int lm_hessian_init(struct lm_hessian *h, size_t n)
{
	size_t nn;
	memset(h, 0, sizeof *h);
	if (n == 0 || n > INT_MAX)
		return lm_seterr("Hessian: %zu columns (LAPACK takes 1 to %d)", n, INT_MAX);
	if (lm_mul(n, n, &nn) < 0 || lm_mul(nn, sizeof(float), &nn) < 0 || !(h->H = lm_alloc(nn)))
		return lm_preerr("Hessian of %zu columns", n);
	memset(h->H, 0, nn);
	h->n = n;
	return 0;
}

void lm_hessian_free(struct lm_hessian *h)
{
	lm_free(h->H);
	memset(h, 0, sizeof *h);
}

void lm_hessian_add(struct lm_hessian *h, const float *X, size_t N, size_t nseq)
{
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

int lm_hessian_inv_chol(const float *H, size_t n, double percdamp, unsigned char *dead, float *U)
{
	size_t nn;
	double *A, mean = 0;
	int in = (int)n, info = 0;

	if (n == 0 || n > INT_MAX)
		return lm_seterr("Hessian: %zu columns (LAPACK takes 1 to %d)", n, INT_MAX);
	if (lm_mul(n, n, &nn) < 0 || lm_mul(nn, sizeof *A, &nn) < 0 || !(A = lm_alloc(nn)))
		return lm_preerr("Cholesky of %zu x %zu", n, n);
	for (size_t i = 0; i < n * n; i++)
		A[i] = H[i];
	for (size_t j = 0; j < n; j++) {
		int d = H[j * n + j] == 0.0f;
		if (dead)
			dead[j] = (unsigned char)d;
		/* an input that never fired has a zero row and column: give it a unit diagonal so
		 * the matrix stays invertible; its weights are zeroed by the caller */
		if (d)
			A[j * n + j] = 1.0;
		mean += A[j * n + j];
	}
	mean /= (double)n;
	for (size_t j = 0; j < n; j++)
		A[j * n + j] += percdamp * mean;

	/* A is symmetric, so LAPACK's column-major lower triangle is our row-major upper one:
	 * D = L L^T, then D^-1 from L, then D^-1 = L2 L2^T, and L2 read row-major is the
	 * upper U = L2^T with D^-1 = U^T U */
	dpotrf_("L", &in, A, &in, &info, 1);
	if (info == 0)
		dpotri_("L", &in, A, &in, &info, 1);
	if (info == 0)
		dpotrf_("L", &in, A, &in, &info, 1);
	if (info != 0) {
		lm_free(A);
		if (info < 0)
			return lm_seterr("LAPACK: argument %d of the Cholesky routines is invalid", -info);
		return lm_seterr("the dampened Hessian (%zu x %zu) is not positive definite (minor %d); "
		                 "more calibration data or a larger dampening may help", n, n, info);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++)
			U[i * n + j] = j >= i ? (float)A[i * n + j] : 0.0f;
	lm_free(A);
	return 0;
}

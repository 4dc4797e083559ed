/* hessian.h: the layer Hessian H = (2/nsamples) X^T X of SparseGPT and GPTQ, and the
 * upper Cholesky factor of its dampened inverse that both algorithms walk column by column
 * (docs/methods.md §3.3, §3.4).
 *
 * X holds the inputs of one linear layer, one row per calibration token: every row of
 * every window adds x x^T. nsamples counts windows (sequences), not tokens, as the
 * reference code's add_batch does; the scale cancels in both algorithms' updates, but the
 * dampening is relative to it, so it is kept for fidelity.
 *
 * Numerics: H is accumulated in f32, one GEMM (ssyrk) per forward batch of a few windows,
 * the batches summed in f32, as the reference does with torch float32 per window; the
 * factorization runs in double (LAPACK dpotrf/dpotri) and the factor is rounded to f32,
 * since an f32 Cholesky of a barely positive definite matrix can fail or lose digits the
 * f32 updates then amplify.
 * With --compute bf16 (lm_compute_used()), X^T X runs on the bf16 GEMM (X rounded to bf16,
 * products summed in fp32) and the factor comes from the reversed Cholesky of D (potrf +
 * trtri, half the flops of potrf + potri + potrf), in f32 unless f32 finds D not positive
 * definite, then in double: issue #19. */
#ifndef LM_HESSIAN_H
#define LM_HESSIAN_H

#include <stddef.h>

struct lm_hessian {
	size_t n;          /* columns of the layer's weight = inputs */
	float *H;          /* [n,n] row-major; upper triangle while accumulating */
	size_t nsamples;   /* windows added */
	int finished;
	void *ws;          /* bf16 products' packed operands, kept from one add to the next */
	size_t ws_bytes;
};

/* n x n zeros; -1 + error (size, memory) */
int lm_hessian_init(struct lm_hessian *h, size_t n);
void lm_hessian_free(struct lm_hessian *h);
/* H += X^T X, X [N, n] row-major: the N tokens of nseq windows */
void lm_hessian_add(struct lm_hessian *h, const float *X, size_t N, size_t nseq);
/* H = (2 / nsamples) * (sum of X^T X), both triangles filled; -1 + error if nothing was added */
int lm_hessian_finish(struct lm_hessian *h);

/* For H [n,n] (full, symmetric, row-major; left unchanged):
 *   dead[j] = (H_jj == 0): an input that was always zero; its diagonal is taken as 1
 *   D = H + percdamp * mean(diag H) * I    (mean taken after the dead fix, as the reference)
 *   U [n,n] row-major upper triangular with D^-1 = U^T U (strict lower part zero)
 * dead may be NULL. -1 + error if D is not positive definite. */
int lm_hessian_inv_chol(const float *H, size_t n, double percdamp, unsigned char *dead, float *U);

#endif

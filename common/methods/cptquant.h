/* cptquant.h: CPTQuant mixed precision (docs/methods.md §5): one bit-width per decoder
 * layer, chosen from a layer sensitivity.
 *
 *   PMPQ  sensitivity_t = ppl(layer t's six linears each 30 % magnitude-pruned) - ppl(model),
 *         perplexity over the calibration windows (positive: more sensitive)
 *   CMPQ  sensitivity_t = 1 - mean over u != t of the first canonical correlation between
 *         the mean-pooled hidden states after layer t and after layer u (one sample per
 *         calibration window)
 *   TDMPQ sensitivity_t = sum over the six linear weights w of layer t of
 *           sum_ij |g_ij (Q(w)_ij - w_ij)|: the first-order Taylor estimate of the loss
 *         change from quantizing that layer, taken element by element in absolute value,
 *         g = dL/dw of the mean next-token NLL over the calibration windows (one backward
 *         pass of the whole model per window, train.h), Q = RTN (quant.h) at the given
 *         packed type. Absolute values per element, not |g . (Q(w) - w)|: a trained
 *         model sits near a minimum, so g is small and of either sign and the signed sum
 *         of a layer is a near-cancelling noisy number (it says little about the real,
 *         mostly second-order, loss increase); the element-wise sum cannot cancel and
 *         grows with both the rounding error and the local steepness.
 *         (The reference code adds N(0,1) noise to each layer's first matrix and sums the
 *         outputs: not a loss change; see docs/methods.md §5.)
 *   allocation: 1-D k-means (k = number of bit levels, sorted-quantile init), clusters
 *         ordered by centre, the most sensitive cluster getting the most bits; or, with a
 *         target average, the exact minimum of sum_t max(s_t, 0) * n_t * 4^-b_t subject to
 *         sum_t n_t b_t <= B sum_t n_t (dynamic programming over the layers). */
#ifndef LM_CPTQUANT_H
#define LM_CPTQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "model.h"

/* 1-D k-means of x[n] into k clusters (k <= n): rank[i] in 0..k-1 is the order of x[i]'s
 * cluster by centre (0: smallest values). Deterministic: centres start at the quantiles
 * (j + 0.5) / k of the sorted values; Lloyd iterations until nothing moves. -1 + error */
int lm_kmeans_1d(const double *x, int n, int k, int *rank);

/* bits[t] for n layers from sensitivities s[n] and levels[nl] (any order): k-means with
 * k = min(nl, n), the cluster of rank r getting the r-th smallest level of the top k */
int lm_cpt_alloc_kmeans(const double *s, int n, const int *levels, int nl, int *bits);

/* bits[t] minimizing sum max(s_t,0) * numel_t * 4^-bits_t under an average of at most
 * target bits per weight (numel-weighted, nominal bits: scale/zero overhead not counted).
 * -1 + error when even the smallest level exceeds target or the table gets too large */
int lm_cpt_alloc_target(const double *s, const int64_t *numel, int n, const int *levels, int nl,
                        double target, int *bits);

/* First canonical correlation of X [n,p] and Y [n,q] (row-major, one sample per row):
 * each is centred and reduced to its top k principal directions (left singular vectors
 * of the centred data, LAPACK dgesvd), k = min(p, q, max(1, (n - 1) / 4)), so that a
 * handful of samples in a wide space does not give a spurious correlation of 1 (the
 * SVCCA recipe); the result is the largest singular value of Ux^T Uy, in [0, 1].
 * -1 + error (n < 2, LAPACK failure) */
int lm_cca_first(const double *X, const double *Y, size_t n, size_t p, size_t q, double *rho);

/* PMPQ's perplexity: lm_ppl_windows (perplexity.h) */

/* sensitivities s[L] of a whole loaded model on W windows of T tokens */
int lm_cpt_pmpq(struct lm_model *m, const int32_t *ids, size_t W, size_t T, double *s);
int lm_cpt_cmpq(const struct lm_model *m, const int32_t *ids, size_t W, size_t T, double *s);

/* called after each window of the TDMPQ backward: done of total */
typedef void lm_cpt_progress_fn(void *ctx, size_t done, size_t total);

/* TDMPQ sensitivities s[L] (see above) of a whole loaded model on W windows of T tokens; Q
 * is RTN to the packed type qt (sym: symmetric grid), or f16 rounding for qt = LM_F16.
 * lin[L] (may be NULL): the signed first-order estimate sum g (Q(w) - w) of each layer,
 * the directional derivative of the loss towards the quantized layer (a finite difference
 * of the loss checks it). The model's matrices are read as f32 copies while the gradients
 * are taken and left as they were. Memory on top of the model: 16 bytes per linear weight
 * (train.h's f32 copy, gradient and two AdamW moments it allocates with them), one window's
 * activations, an f32 copy of an f16 lm_head. progress may be NULL. -1 + error */
int lm_cpt_tdmpq(struct lm_model *m, const int32_t *ids, size_t W, size_t T, enum lm_dtype qt,
                 int sym, double *s, double *lin, lm_cpt_progress_fn *progress, void *ctx);

#endif

/* prune.h: scores, thresholds and masks for pruning weight matrices (docs/methods.md §3).
 *
 *   magnitude, unstructured   zero every |w| <= the k-th smallest |w| of the matrix (or of
 *                             all pruned matrices together, "global"), k = floor(s * numel);
 *                             k = 0 prunes nothing; ties at the threshold are pruned too
 *   wanda, unstructured       score |w_ij| * ||x_j||_2; in every row exactly floor(s * cols)
 *                             weights with the smallest scores (ties: lower column first, as
 *                             the reference's stable sort)
 *   any score, N:M            in every row, of each block of M consecutive columns the N
 *                             smallest scores (ties: lower column first)
 *   sparsegpt                 see sparsegpt.h
 *
 * Weights stay in their dtype (f32, f16, bf16): a pruned weight becomes an exact +0, the
 * others keep their bits. Magnitudes and scores are computed in f32 (f16 and bf16 convert
 * exactly). floor(s * n) is taken of the double product, as Python's int(n * s). */
#ifndef LM_PRUNE_H
#define LM_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

enum lm_prune_method { LM_PRUNE_MAGNITUDE, LM_PRUNE_WANDA, LM_PRUNE_SPARSEGPT };

/* what to prune: a fraction (n == 0) or n of every m consecutive inputs of a row */
struct lm_prune_spec {
	enum lm_prune_method method;
	double sparsity;   /* 0 <= s < 1; n/m for N:M */
	int n, m;          /* N:M pattern, 0 < n < m; n = 0: unstructured */
};

const char *lm_prune_method_name(enum lm_prune_method m);
/* "magnitude", "wanda", "sparsegpt" (case-insensitive); -1 if unknown */
int lm_prune_method_parse(const char *s);
/* the number floor(s * n), computed as the reference code does */
size_t lm_prune_count(double s, size_t n);

/* ---- f32 views of a matrix ---- */
/* all rows*cols values to f32 / back into the matrix's dtype (rounded to nearest even) */
int lm_mat_get_f32(const struct lm_mat *w, float *dst);
int lm_mat_set_f32(struct lm_mat *w, const float *src);
/* exact zeros (+0 or -0) */
size_t lm_mat_zeros(const struct lm_mat *w);

/* ---- selection ---- */
/* the element of rank k (0-based, k < n) of a[n]: a is reordered (quickselect) */
uint64_t lm_select_u64(uint64_t *a, size_t n, size_t k);
/* the k-th smallest (1-based, 1 <= k <= total elements) |w| over nm matrices, exactly, in
 * f32: two counting passes over the bit patterns, so no copy of the weights is made even
 * when all the matrices of a model are ranked together */
int lm_prune_kth_abs(struct lm_mat *const *w, size_t nm, size_t k, float *thr);
/* zero every weight with |w| <= thr */
int lm_prune_abs_below(struct lm_mat *w, float thr);

/* ---- masks of one row (mask[j] = 1: prune) from non-negative scores ---- */
/* the k smallest of score[cols], lower column first on ties; keys: cols of scratch */
void lm_row_mask_k(const float *score, size_t cols, size_t k, unsigned char *mask, uint64_t *keys);
/* in each block of m consecutive columns (cols % m == 0), the n smallest */
void lm_row_mask_nm(const float *score, size_t cols, int n, int m, unsigned char *mask);

/* ---- whole matrices ---- */
/* Magnitude (unstructured or N:M) or Wanda (sumsq[cols]: sum over the calibration tokens
 * of x_j^2, so ||x_j||_2 = sqrt(sumsq[j])) on one matrix; rows run in parallel.
 * SparseGPT is lm_sparsegpt_mat (sparsegpt.h). -1 + error */
int lm_prune_mat(struct lm_mat *w, const struct lm_prune_spec *sp, const double *sumsq);

#endif

/* gptq.h: GPTQ (Frantar et al. 2023) as the reference code's fasterquant does it
 * (docs/methods.md §3.4), in f32, writing the packed codes directly.
 *
 * Same machinery as SparseGPT (sparsegpt.h): U is the upper Cholesky factor of the
 * dampened inverse Hessian (lm_hessian_inv_chol), columns are walked in blocks of bs (128)
 * and within a block one at a time:
 *   q = quantize(w), err = (w - q) / U_jj, W[:, j+1:block end] -= err U[j, j+1:block end];
 * after the block, W[:, end:] -= Err U[block, end:] (one GEMM).
 * Grids (quant.h): per row, fitted on the whole W before the walk (dead columns zeroed)
 * when the type has one group per row; with groups of G, fitted when column c with
 * c % G == 0 is reached, on W[:, c:c+G] as it stands at the start of c's block (the
 * reference takes them from W, not from the block's working copy).
 * A weight that is exactly 0 on entry (a pruned one) stays 0 (code = zero point) and its
 * error is spread like any other, as SparseGPT does with its mask: GPTQ after pruning
 * keeps the sparsity.
 *
 * Act-order (the reference's --act-order): the columns are walked in order of decreasing
 * H_jj (perm, lm_gptq_act_order), with U the factor of the permuted Hessian H[perm][:, perm]
 * (lm_gptq_permute_h, then lm_hessian_inv_chol). The packed types store one grid per run
 * of G consecutive *natural* columns, so the reference's default with act-order, a group
 * fitted every G *permuted* columns, cannot be stored (its groups mix columns from all over
 * the row and would need a column -> group table). We use the reference's static groups
 * instead (--static-groups, which its README adds so that act-order needs no change at
 * inference: exactly our situation): every grid is fitted up front on W's natural groups
 * (dead columns zeroed), and column perm[k] is quantized on its own natural group's grid
 * when the walk reaches it. With one group per row the grid is fitted on the whole row
 * either way, so the two coincide. */
#ifndef LM_GPTQ_H
#define LM_GPTQ_H

#include <stddef.h>

#include "dtype.h"
#include "model.h"

#define LM_GPTQ_BLOCK 128

/* W [rows, cols] f32 (changed: left holding the error-updated values, natural column
 * order), quantized into dst (packed type t, lm_dtype_nbytes bytes). perm [cols] or NULL
 * (natural order); U [cols, cols] and dead [cols] (or NULL) in the walk's order, i.e. of
 * the permuted Hessian when perm is given. loss: if not NULL, sum of (w - q)^2 / U_jj^2 / 2
 * (the reference's Losses summed). -1 + error. Rows run in parallel within a block. */
int lm_gptq(void *dst, enum lm_dtype t, float *W, size_t rows, size_t cols, const float *U,
            const unsigned char *dead, const int *perm, int sym, size_t bs, double *loss);
/* the same on a matrix (f32, f16, bf16), replaced by its packed quantization of type t */
int lm_gptq_mat(struct lm_mat *w, enum lm_dtype t, const float *U, const unsigned char *dead,
                const int *perm, int sym, size_t bs, double *loss);

/* perm [n]: the columns by decreasing H_jj, a zero diagonal (dead input) counted as 1 as
 * the reference sets it before sorting; ties by increasing index (torch.argsort leaves
 * their order unspecified). H [n,n] finished (lm_hessian_finish). -1 + error (memory) */
int lm_gptq_act_order(const float *H, size_t n, int *perm);
/* Hp [n,n] = H[perm][:, perm] (Hp must not alias H) */
void lm_gptq_permute_h(float *Hp, const float *H, size_t n, const int *perm);

#endif

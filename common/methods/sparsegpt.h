/* sparsegpt.h: SparseGPT (Frantar & Alistarh 2023) as the reference code's fasterprune
 * does it (docs/methods.md §3.3), in f32.
 *
 * Given W [rows, cols] and U, the upper Cholesky factor of the dampened inverse Hessian
 * (lm_hessian_inv_chol), the columns are walked in blocks of bs (128):
 *   - unstructured: at the start of each block, score = w^2 / U_jj^2 over the whole
 *     rows x bs block; prune every score <= the one at sorted index floor(numel * s)
 *     (so one weight more than floor(s * numel) per block, plus ties, as the reference);
 *   - N:M: at every column j with j % M == 0 (within the block), per row the N smallest
 *     scores of columns j .. j+M-1, taken from the weights as already updated;
 *   - column by column: q = w with the pruned entries zeroed, err = (w - q) / U_jj,
 *     W[:, j:block end] -= err U[j, j:block end]; after the block the remaining columns
 *     get W[:, end:] -= Err U[block, end:] (one GEMM).
 * Columns marked dead (an input that was always zero) are zeroed before anything else.
 * A sparsity of 0 prunes nothing (the reference would still take one weight per block). */
#ifndef LM_SPARSEGPT_H
#define LM_SPARSEGPT_H

#include <stddef.h>

#include "model.h"
#include "prune.h"

#define LM_SPARSEGPT_BLOCK 128

/* W [rows, cols] f32 row-major, pruned in place (pruned entries exactly 0).
 * U [cols, cols]: see above. dead [cols] or NULL. sp: sparsity, or n:m (bs % m == 0).
 * loss: if not NULL, sum over all weights of (w - q)^2 / U_jj^2 / 2 (the reference's
 * Losses, summed over rows). -1 + error. Rows run in parallel within a block. */
int lm_sparsegpt(float *W, size_t rows, size_t cols, const float *U, const unsigned char *dead,
                 const struct lm_prune_spec *sp, size_t bs, double *loss);
/* the same on a matrix in its own dtype: converted to f32, pruned, written back */
int lm_sparsegpt_mat(struct lm_mat *w, const float *U, const unsigned char *dead,
                     const struct lm_prune_spec *sp, size_t bs, double *loss);

#endif

/* sprows.h: rows of a weight matrix kept in its sparse layout (model.h's lm_mat with a
 * layout; sparse.h has the layouts), expanded to f32: what the tile path of the matrix
 * products (perplexity, prefill, calibration) multiplies, a tile at a time, so the whole
 * matrix never exists dense. lm_mat_rows_f32 (rows.h) sends sparse matrices here. */
#ifndef LM_SPROWS_H
#define LM_SPROWS_H

#include <stddef.h>

#include "model.h"

/* rows r0 .. r0 + nr of w (N:M of f32/f16/bf16 or packed codes, bitmap of f32/f16/bf16)
 * as f32 into dst [nr, cols]: the values the dense matrix has, bit for bit (a dropped
 * packed code is its group's scale * 0). -1 + error for a layout not kept in memory. */
int lm_sparse_rows_f32(float *dst, const struct lm_mat *w, size_t r0, size_t nr);

#endif

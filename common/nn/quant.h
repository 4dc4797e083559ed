/* quant.h: the quantizer of GPTQ's reference code (docs/methods.md §3.4), RTN, and the
 * packed storage of quantized matrices (dtypes q<b>c and q<b>g<G>, see dtype.h and
 * lm-stream(5)).
 *
 * Grid of a group of weights x (one row's G inputs, or the whole row): maxq = 2^b - 1,
 *   asymmetric: lo = min(x, 0), hi = max(x, 0) (the range always holds 0);
 *   symmetric:  hi = max(|lo|, hi), lo = -hi when lo < 0;
 *   lo = hi = 0 -> [-1, 1];
 *   scale = (hi - lo) / maxq, rounded to f16 since that is what is stored;
 *   zero = round(-lo / scale) (asymmetric, clamped to [0, maxq]) or (maxq + 1) / 2;
 *   q = clamp(round(w / scale) + zero, 0, maxq), value = scale * (q - zero).
 * round is to nearest even, as torch.round. Because zero is an integer on the grid, a
 * weight of exactly 0 (a pruned one) quantizes to exactly 0.
 *
 * Packed row of cols inputs in groups of G (G = cols for per-row types): for each group,
 * a struct lm_qgroup (4 bytes) then ceil(G * b / 8) bytes of codes, code j of the group at
 * bits j*b .. j*b + b - 1 counted from the least significant bit of the first byte (for
 * 4 bits: element 2i in the low nibble of byte i, 2i+1 in the high one; 3-bit codes may
 * straddle bytes). Rows follow each other with no padding. The group header (struct
 * lm_qgroup), the grid (struct lm_qgrid) and the reading of packed rows are in rows.h. */
#ifndef LM_QUANT_H
#define LM_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "model.h"
#include "rows.h"

/* fit the grid of n values x (stride 1) for bits b */
void lm_q_fit(struct lm_qgrid *g, const float *x, size_t n, int bits, int sym);

static inline int lm_q_code(float w, const struct lm_qgrid *g)
{
	float q = nearbyintf(w / g->scale) + (float)g->zero;
	return q < 0 ? 0 : q > (float)g->maxq ? g->maxq : (int)q;
}

/* codes: the group's code bytes (zeroed before the first put) */
static inline void lm_q_put(uint8_t *codes, size_t j, int bits, unsigned q)
{
	size_t bit = j * (size_t)bits;
	unsigned v = q << (bit & 7);
	codes[bit >> 3] |= (uint8_t)v;
	if ((bit & 7) + (size_t)bits > 8)
		codes[(bit >> 3) + 1] |= (uint8_t)(v >> 8);
}

/* the group of a packed row (t packed, cols inputs): header then its code bytes */
uint8_t *lm_q_group(void *row, enum lm_dtype t, size_t cols, size_t gi);
void lm_q_set_grid(uint8_t *group, const struct lm_qgrid *g);

/* RTN: W [rows, cols] f32 quantized into dst (packed type t, lm_dtype_nbytes bytes) */
int lm_q_rtn(void *dst, enum lm_dtype t, const float *W, size_t rows, size_t cols, int sym);

/* a quantizer for lm_q_mat_with: W [rows, cols] f32 (a copy it may overwrite, as GPTQ
 * does) into dst (packed type t, lm_dtype_nbytes bytes); -1 + error */
typedef int lm_q_fn(void *dst, enum lm_dtype t, float *W, size_t rows, size_t cols, void *ctx);
/* replace w's data (f32/f16/bf16) by quantize's output of type t from an f32 copy of it
 * (RTN, GPTQ); -1 + error (w already packed, sizes, memory, quantize's) */
int lm_q_mat_with(struct lm_mat *w, enum lm_dtype t, lm_q_fn *quantize, void *ctx);

/* replace w's data by its RTN quantization of type t (w f32/f16/bf16); -1 + error (w
 * already packed, group not dividing the rows) */
int lm_q_mat_rtn(struct lm_mat *w, enum lm_dtype t, int sym);

#endif

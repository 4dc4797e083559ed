/* rows.h: rows of a matrix of any dtype read as f32: f32/f16/bf16 converted, packed
 * quantized rows (quant.h describes their layout) dequantized. The kernels read weights
 * through it a tile at a time; the quantizers read their input through it. */
#ifndef LM_ROWS_H
#define LM_ROWS_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "model.h"

/* the header of one packed group: the struct is the byte layout (little-endian) */
struct lm_qgroup {
	uint16_t scale;    /* f16 */
	uint8_t zero;      /* zero point, in [0, maxq] (128 for symmetric 8-bit) */
	uint8_t reserved;  /* 0 */
};
static_assert(sizeof(struct lm_qgroup) == 4, "wrong lm_qgroup size/padding");

/* a fitted grid */
struct lm_qgrid {
	float scale;   /* already rounded to f16 */
	int zero, maxq;
};

static inline float lm_q_value(int q, const struct lm_qgrid *g)
{
	return g->scale * (float)(q - g->zero);
}

/* the grid stored in a packed group's header (bits: the type's code width) */
void lm_q_get_grid(const uint8_t *group, int bits, struct lm_qgrid *g);
/* dst [rows, cols] f32 = the values of packed rows src (any packed type) */
int lm_q_dequant_rows(float *dst, const void *src, enum lm_dtype t, size_t rows, size_t cols);

/* n elements of f32/f16/bf16 to f32, bit exact with lm_to_f32 (NaN payloads aside), but
 * branch-free so it vectorizes; -1 + error for any other dtype */
int lm_rows_to_f32(float *dst, const void *src, enum lm_dtype dt, size_t n);
/* w's dtype can be read by lm_mat_rows_f32: f32/f16/bf16, or packed with groups that
 * divide its rows */
int lm_mat_rows_ok(const struct lm_mat *w);
/* rows r0 .. r0 + nr of matrix w (float or packed, see quant.h) as f32 into dst */
int lm_mat_rows_f32(float *dst, const struct lm_mat *w, size_t r0, size_t nr);

#endif

/* rows.c: rows of a matrix of any dtype (f32, f16, bf16, packed) read as f32, for the kernels
 * and the quantizers alike (see rows.h) */
#include "rows.h"
#include "simd.h"
#include "sprows.h"
#include "util.h"

#include <string.h>

void lm_q_get_grid(const uint8_t *group, int bits, struct lm_qgrid *g)
{
	struct lm_qgroup h;
	memcpy(&h, group, sizeof h);  /* groups are not always 2-byte aligned */
	g->scale = lm_f16_to_f32(h.scale);
	g->zero = h.zero;
	g->maxq = (1 << bits) - 1;
}

/* n groups of G 4-bit codes (G even), gb bytes apart, to scale * (q - zero): the
 * arithmetic of lm_q_value, so the values are bit for bit the quantizer's, in a loop the
 * compiler vectorizes (a table lookup per code does not) */
LM_CLONES static void dequant4(float *restrict dst, const uint8_t *restrict grp, size_t G, size_t n,
                               size_t gb)
{
	for (size_t k = 0; k < n; k++, grp += gb, dst += G) {
		struct lm_qgrid g;
		const uint8_t *restrict c = grp + sizeof(struct lm_qgroup);
		lm_q_get_grid(grp, 4, &g);
		const float s = g.scale;
		const int z = g.zero;
		for (size_t i = 0; i < G / 2; i++) {
			dst[2 * i] = s * (float)((int)(c[i] & 15) - z);
			dst[2 * i + 1] = s * (float)((int)(c[i] >> 4) - z);
		}
	}
}

LM_CLONES static void dequant8(float *restrict dst, const uint8_t *restrict grp, size_t G, size_t n,
                               size_t gb)
{
	for (size_t k = 0; k < n; k++, grp += gb, dst += G) {
		struct lm_qgrid g;
		const uint8_t *restrict c = grp + sizeof(struct lm_qgroup);
		lm_q_get_grid(grp, 8, &g);
		const float s = g.scale;
		const int z = g.zero;
		for (size_t i = 0; i < G; i++)
			dst[i] = s * (float)((int)c[i] - z);
	}
}

/* one group of G codes of the other widths (and odd G) to f32: a table of the 2^b values,
 * then a lookup per code */
static void dequant_lut(float *dst, const uint8_t *grp, int bits, size_t G)
{
	struct lm_qgrid g;
	float lut[256];
	const uint8_t *c = grp + sizeof(struct lm_qgroup);
	lm_q_get_grid(grp, bits, &g);
	for (int q = 0; q <= g.maxq; q++)
		lut[q] = lm_q_value(q, &g);
	for (size_t j = 0; j < G; j++) {
		size_t bit = j * (size_t)bits, byte = bit >> 3;
		unsigned v = c[byte];
		if ((bit & 7) + (size_t)bits > 8)
			v |= (unsigned)c[byte + 1] << 8;
		dst[j] = lut[(v >> (bit & 7)) & (unsigned)g.maxq];
	}
}

int lm_q_dequant_rows(float *dst, const void *src, enum lm_dtype t, size_t rows, size_t cols)
{
	const struct lm_dtype_info *in = lm_dtype_info(t);
	size_t rb = lm_dtype_row_bytes(t, cols);
	if (!rb)
		return lm_seterr("no f32 conversion for dtype %s with rows of %zu", lm_dtype_name(t), cols);
	const size_t G = in->qgroup ? (size_t)in->qgroup : cols, n = rows * (cols / G);
	/* groups are contiguous, row after row: one stride for the whole matrix */
	const size_t gb = sizeof(struct lm_qgroup) + (G * (size_t)in->qbits + 7) / 8;
	const uint8_t *grp = src;
	if (in->qbits == 8)
		dequant8(dst, grp, G, n, gb);
	else if (in->qbits == 4 && G % 2 == 0)
		dequant4(dst, grp, G, n, gb);
	else
		for (size_t k = 0; k < n; k++)
			dequant_lut(dst + k * G, grp + k * gb, in->qbits, G);
	return 0;
}


LM_CLONES static void f16_rows(float *restrict dst, const uint16_t *restrict src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = h2f(src[i]);
}

LM_CLONES static void bf16_rows(float *restrict dst, const uint16_t *restrict src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = bf2f(src[i]);
}

int lm_rows_to_f32(float *dst, const void *src, enum lm_dtype dt, size_t n)
{
	switch (dt) {
	case LM_F32:
		if (dst != src)
			memcpy(dst, src, n * sizeof(float));
		return 0;
	case LM_F16:
		f16_rows(dst, src, n);
		return 0;
	case LM_BF16:
		bf16_rows(dst, src, n);
		return 0;
	default:
		return lm_seterr("no f32 conversion for dtype %s", lm_dtype_name(dt));
	}
}

int lm_mat_rows_ok(const struct lm_mat *w)
{
	if (lm_mat_is_sparse(w)) /* the layouts model.h keeps (sprows.h) */
		return w->layout.kind == LM_LAYOUT_NM || w->layout.kind == LM_LAYOUT_BITMAP;
	return w->dtype == LM_F32 || w->dtype == LM_F16 || w->dtype == LM_BF16 ||
	       lm_dtype_row_bytes(w->dtype, (size_t)w->cols) != 0;
}

int lm_mat_rows_f32(float *dst, const struct lm_mat *w, size_t r0, size_t nr)
{
	size_t IN = (size_t)w->cols;
	if (lm_mat_is_sparse(w))
		return lm_sparse_rows_f32(dst, w, r0, nr);
	if (lm_dtype_is_packed(w->dtype)) {
		size_t prb = lm_dtype_row_bytes(w->dtype, IN);
		if (!prb)
			return lm_seterr("dtype %s: rows of %zu do not fit its groups",
			                 lm_dtype_name(w->dtype), IN);
		return lm_q_dequant_rows(dst, (const uint8_t *)w->data + r0 * prb, w->dtype, nr, IN);
	}
	return lm_rows_to_f32(dst, (const char *)w->data + r0 * IN * lm_dtype_size(w->dtype),
	                      w->dtype, nr * IN);
}

/* sprows.c: rows of a sparse-kept matrix expanded to f32 (see sprows.h). Scalar: the tile
 * this fills is multiplied by many rows of x (sgemm), so its cost is shared by all of them. */
#include "sprows.h"
#include "simd.h"
#include "sparse.h"
#include "util.h"

#include <string.h>

static inline float elem(const uint8_t *v, enum lm_dtype dt, size_t k)
{
	uint16_t h;
	float f;
	if (dt == LM_F32) {
		memcpy(&f, v + 4 * k, 4);
		return f;
	}
	memcpy(&h, v + 2 * k, 2);
	return dt == LM_F16 ? h2f(h) : bf2f(h);
}

/* row r of float N:M into d (cols floats) */
static void row_nm(float *d, const struct lm_sparse_view *v, size_t r)
{
	const size_t s = lm_dtype_size(v->dt), n = (size_t)v->l.n, m = (size_t)v->l.m;
	const uint8_t *val = v->vals + r * v->kr * s;
	size_t bit = r * v->kr * (size_t)v->pb;
	memset(d, 0, v->cols * sizeof *d);
	for (size_t k = 0; k < v->kr; k++, bit += (size_t)v->pb)
		d[k / n * m + lm_sparse_bits(v->pos, bit, v->pb, v->end)] = elem(val, v->dt, k);
}

/* row r of bitmap into d */
static void row_bitmap(float *d, const struct lm_sparse_view *v, size_t r)
{
	const uint8_t *val = v->vals + v->rowoff[r] * lm_dtype_size(v->dt);
	size_t k = 0, bit = r * v->cols;
	for (size_t i = 0; i < v->cols; i++, bit++)
		d[i] = v->pos[bit / 8] >> (bit % 8) & 1 ? elem(val, v->dt, k++) : 0.0f;
}

/* row r of packed N:M into d: per quant group the group's zero value, then the kept codes */
static void row_nm_packed(float *d, const struct lm_sparse_view *v, size_t r)
{
	const size_t n = (size_t)v->l.n, m = (size_t)v->l.m;
	for (size_t g = 0; g < v->ngr; g++) {
		const size_t q = r * v->ngr + g;
		const uint8_t *grp = v->vals + q * (4 + v->kb);
		float *dg = d + g * v->G;
		size_t bit = q * v->kc * (size_t)v->pb;
		uint16_t hs;
		memcpy(&hs, grp, 2); /* the group header (rows.h's lm_qgroup): f16 scale, zero point */
		const float scale = h2f(hs);
		const int zero = grp[2];
		/* scale * (q - zero), lm_q_value's arithmetic */
		const float zv = scale * (float)(zero - zero);
		for (size_t j = 0; j < v->G; j++)
			dg[j] = zv;
		for (size_t k = 0; k < v->kc; k++, bit += (size_t)v->pb) {
			int code = (int)lm_sparse_bits(grp + 4, k * (size_t)v->bits, v->bits, grp + 4 + v->kb);
			dg[k / n * m + lm_sparse_bits(v->pos, bit, v->pb, v->end)] = scale * (float)(code - zero);
		}
	}
}

int lm_sparse_rows_f32(float *dst, const struct lm_mat *w, size_t r0, size_t nr)
{
	struct lm_sparse_view v;
	if (lm_sparse_view(&v, w->data, w->nbytes, &w->layout, w->dtype, w->rows, w->cols,
	                   w->rowoff) < 0)
		return -1;
	for (size_t r = r0; r < r0 + nr; r++) {
		float *d = dst + (r - r0) * v.cols;
		if (v.l.kind == LM_LAYOUT_BITMAP)
			row_bitmap(d, &v, r);
		else if (v.bits)
			row_nm_packed(d, &v, r);
		else
			row_nm(d, &v, r);
	}
	return 0;
}

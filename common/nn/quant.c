/* quant.c: see quant.h */
#include "quant.h"
#include "util.h"

#include <string.h>

void lm_q_fit(struct lm_qgrid *g, const float *x, size_t n, int bits, int sym)
{
	float lo = 0.0f, hi = 0.0f;
	g->maxq = (1 << bits) - 1;
	for (size_t i = 0; i < n; i++) {
		lo = x[i] < lo ? x[i] : lo;
		hi = x[i] > hi ? x[i] : hi;
	}
	if (sym) {
		hi = -lo > hi ? -lo : hi;
		if (lo < 0)
			lo = -hi;
	}
	if (lo == 0.0f && hi == 0.0f)
		lo = -1.0f, hi = 1.0f;
	/* the stored scale is f16: quantize with that one, so the codes are the best ones for
	 * the value the reader will use; a range too small or too large for f16 is clamped
	 * to the smallest subnormal / largest finite half */
	uint16_t h = lm_f32_to_f16((hi - lo) / (float)g->maxq);
	if (h == 0)
		h = 1;
	else if (h >= 0x7c00)
		h = 0x7bff;
	g->scale = lm_f16_to_f32(h);
	if (sym) {
		g->zero = (g->maxq + 1) / 2;
	} else {
		float z = nearbyintf(-lo / g->scale);
		g->zero = z < 0 ? 0 : z > (float)g->maxq ? g->maxq : (int)z;
	}
}

uint8_t *lm_q_group(void *row, enum lm_dtype t, size_t cols, size_t gi)
{
	const struct lm_dtype_info *in = lm_dtype_info(t);
	size_t G = in->qgroup ? (size_t)in->qgroup : cols;
	return (uint8_t *)row + gi * (sizeof(struct lm_qgroup) + (G * (size_t)in->qbits + 7) / 8);
}

void lm_q_set_grid(uint8_t *group, const struct lm_qgrid *g)
{
	struct lm_qgroup h = {lm_f32_to_f16(g->scale), (uint8_t)g->zero, 0};
	memcpy(group, &h, sizeof h);
}

int lm_q_rtn(void *dst, enum lm_dtype t, const float *W, size_t rows, size_t cols, int sym)
{
	const struct lm_dtype_info *in = lm_dtype_info(t);
	size_t rb = lm_dtype_row_bytes(t, cols);
	if (!rb)
		return lm_seterr("cannot quantize rows of %zu to %s", cols, lm_dtype_name(t));
	const size_t G = in->qgroup ? (size_t)in->qgroup : cols;
	const int bits = in->qbits;
	memset(dst, 0, rows * rb);
	for (size_t r = 0; r < rows; r++) {
		uint8_t *row = (uint8_t *)dst + r * rb;
		const float *w = W + r * cols;
		for (size_t gi = 0; gi < cols / G; gi++) {
			struct lm_qgrid g;
			uint8_t *grp = lm_q_group(row, t, cols, gi), *codes = grp + sizeof(struct lm_qgroup);
			lm_q_fit(&g, w + gi * G, G, bits, sym);
			lm_q_set_grid(grp, &g);
			for (size_t j = 0; j < G; j++)
				lm_q_put(codes, j, bits, (unsigned)lm_q_code(w[gi * G + j], &g));
		}
	}
	return 0;
}

int lm_q_mat_with(struct lm_mat *w, enum lm_dtype t, lm_q_fn *quantize, void *ctx)
{
	size_t rows = (size_t)w->rows, cols = (size_t)w->cols, n, nb;
	int64_t shape[2] = {w->rows, w->cols};
	float *W;
	void *q;
	if (lm_dtype_is_packed(w->dtype))
		return lm_seterr("already quantized (%s): quantizing it again would compound the "
		                 "error; start from the unquantized stream", lm_dtype_name(w->dtype));
	if (lm_dtype_nbytes(t, 2, shape, &nb) < 0 || lm_mul(rows, cols, &n) < 0)
		return -1;
	if (!(W = lm_alloc(n * sizeof *W)))
		return -1;
	if (lm_mat_rows_f32(W, w, 0, rows) < 0 || !(q = lm_alloc(nb))) {
		lm_free(W);
		return -1;
	}
	int rc = quantize(q, t, W, rows, cols, ctx);
	lm_free(W);
	if (rc < 0) {
		lm_free(q);
		return -1;
	}
	lm_free(w->data);
	w->data = q, w->dtype = t;
	return 0;
}

static int rtn(void *dst, enum lm_dtype t, float *W, size_t rows, size_t cols, void *ctx)
{
	return lm_q_rtn(dst, t, W, rows, cols, *(const int *)ctx);
}

int lm_q_mat_rtn(struct lm_mat *w, enum lm_dtype t, int sym)
{
	return lm_q_mat_with(w, t, rtn, &sym);
}

/* prune.c: see prune.h */
#include "prune.h"
#include "kernels.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const method_names[] = {"magnitude", "wanda", "sparsegpt"};

const char *lm_prune_method_name(enum lm_prune_method m)
{
	return (unsigned)m < sizeof method_names / sizeof *method_names ? method_names[m] : "?";
}

int lm_prune_method_parse(const char *s)
{
	for (size_t i = 0; i < sizeof method_names / sizeof *method_names; i++)
		if (!strcasecmp(s, method_names[i]))
			return (int)i;
	return -1;
}

size_t lm_prune_count(double s, size_t n)
{
	double k = floor(s * (double)n);
	return k <= 0 ? 0 : k >= (double)n ? n : (size_t)k;
}

/* ---- f32 views ---- */

static size_t mat_numel(const struct lm_mat *w)
{
	return (size_t)w->rows * (size_t)w->cols;
}

int lm_mat_get_f32(const struct lm_mat *w, float *dst)
{
	return lm_rows_to_f32(dst, w->data, w->dtype, mat_numel(w));
}

int lm_mat_set_f32(struct lm_mat *w, const float *src)
{
	return lm_convert(w->data, w->dtype, src, LM_F32, mat_numel(w));
}

/* a weight set to +0 in its own dtype */
static void zero_at(struct lm_mat *w, size_t i)
{
	if (w->dtype == LM_F32)
		((float *)w->data)[i] = 0.0f;
	else
		((uint16_t *)w->data)[i] = 0;
}

static int check_dtype(const struct lm_mat *w)
{
	if (w->dtype != LM_F32 && w->dtype != LM_F16 && w->dtype != LM_BF16)
		return lm_seterr("cannot prune a %s matrix (f32, f16 or bf16 only)", lm_dtype_name(w->dtype));
	return 0;
}

size_t lm_mat_zeros(const struct lm_mat *w)
{
	size_t n = mat_numel(w), z = 0;
	if (w->dtype == LM_F32) {
		const float *p = w->data;
		for (size_t i = 0; i < n; i++)
			z += p[i] == 0.0f;
	} else {
		const uint16_t *p = w->data;
		for (size_t i = 0; i < n; i++)
			z += (p[i] & 0x7fff) == 0;
	}
	return z;
}

/* ---- selection ---- */

static inline void swap64(uint64_t *a, uint64_t *b)
{
	uint64_t t = *a;
	*a = *b, *b = t;
}

uint64_t lm_select_u64(uint64_t *a, size_t n, size_t k)
{
	/* Hoare's FIND with a median-of-three pivot: rows full of equal scores (zeros after an
	 * earlier pruning) arrive sorted by column, which a fixed pivot would make quadratic */
	ptrdiff_t l = 0, r = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
	while (l < r) {
		uint64_t x, p = a[l], q = a[l + (r - l) / 2], s = a[r];
		x = p < q ? (q < s ? q : p < s ? s : p) : (p < s ? p : q < s ? s : q);
		ptrdiff_t i = l, j = r;
		do {
			while (a[i] < x)
				i++;
			while (x < a[j])
				j--;
			if (i <= j) {
				swap64(&a[i], &a[j]);
				i++, j--;
			}
		} while (i <= j);
		if (j < kk)
			l = i;
		if (kk < i)
			r = j;
	}
	return a[kk];
}

/* |w| as f32 bits: non-negative floats order as their bit patterns do */
static inline uint32_t abs_bits(float v)
{
	uint32_t u;
	memcpy(&u, &v, sizeof u);
	return u & 0x7fffffffu;
}

#define ROW_TILE 4096 /* floats converted at a time while counting */

/* pass 0: count every element by its high 16 bits; pass 1: count the low 16 bits of the
 * elements whose high half is hi */
static int count_pass(struct lm_mat *const *w, size_t nm, int pass, uint32_t hi, size_t *hist)
{
	float *buf = xmalloc(ROW_TILE * sizeof *buf);
	for (size_t m = 0; m < nm; m++) {
		size_t n = mat_numel(w[m]), es = lm_dtype_size(w[m]->dtype);
		for (size_t i0 = 0; i0 < n; i0 += ROW_TILE) {
			size_t len = n - i0 < ROW_TILE ? n - i0 : ROW_TILE;
			if (lm_rows_to_f32(buf, (const char *)w[m]->data + i0 * es, w[m]->dtype, len) < 0) {
				free(buf);
				return -1;
			}
			if (pass == 0) {
				for (size_t i = 0; i < len; i++)
					hist[abs_bits(buf[i]) >> 16]++;
			} else {
				for (size_t i = 0; i < len; i++) {
					uint32_t b = abs_bits(buf[i]);
					if (b >> 16 == hi)
						hist[b & 0xffff]++;
				}
			}
		}
	}
	free(buf);
	return 0;
}

/* the bucket holding rank *k (0-based); *k becomes the rank inside it */
static uint32_t find_bucket(const size_t *hist, size_t *k)
{
	uint32_t b = 0;
	while (*k >= hist[b]) {
		*k -= hist[b];
		b++;
	}
	return b;
}

int lm_prune_kth_abs(struct lm_mat *const *w, size_t nm, size_t k, float *thr)
{
	size_t total = 0, r = k - 1, *hist;
	uint32_t hi, lo, bits;
	for (size_t m = 0; m < nm; m++)
		total += mat_numel(w[m]);
	if (k == 0 || k > total)
		return lm_seterr("internal: rank %zu of %zu magnitudes", k, total);
	hist = xcalloc(65536, sizeof *hist);
	if (count_pass(w, nm, 0, 0, hist) < 0)
		goto fail;
	hi = find_bucket(hist, &r);
	memset(hist, 0, 65536 * sizeof *hist);
	if (count_pass(w, nm, 1, hi, hist) < 0)
		goto fail;
	lo = find_bucket(hist, &r);
	free(hist);
	bits = hi << 16 | lo;
	memcpy(thr, &bits, sizeof *thr);
	return 0;
fail:
	free(hist);
	return -1;
}

int lm_prune_abs_below(struct lm_mat *w, float thr)
{
	size_t n = mat_numel(w), es = lm_dtype_size(w->dtype);
	float *buf;
	if (check_dtype(w) < 0)
		return -1;
	buf = xmalloc(ROW_TILE * sizeof *buf);
	for (size_t i0 = 0; i0 < n; i0 += ROW_TILE) {
		size_t len = n - i0 < ROW_TILE ? n - i0 : ROW_TILE;
		lm_rows_to_f32(buf, (const char *)w->data + i0 * es, w->dtype, len);
		for (size_t i = 0; i < len; i++)
			if (fabsf(buf[i]) <= thr)
				zero_at(w, i0 + i);
	}
	free(buf);
	return 0;
}

/* ---- row masks ---- */

/* (score, column) as one key: scores are non-negative, so their bits order them, and the
 * column below breaks ties the way a stable sort does */
static inline uint64_t score_key(float s, size_t j)
{
	return (uint64_t)abs_bits(s) << 32 | (uint64_t)j;
}

void lm_row_mask_k(const float *score, size_t cols, size_t k, unsigned char *mask, uint64_t *keys)
{
	memset(mask, 0, cols);
	if (k == 0)
		return;
	if (k >= cols) {
		memset(mask, 1, cols);
		return;
	}
	for (size_t j = 0; j < cols; j++)
		keys[j] = score_key(score[j], j);
	/* keys are distinct: exactly k of them lie below the one of rank k */
	uint64_t kth = lm_select_u64(keys, cols, k);
	for (size_t j = 0; j < cols; j++)
		mask[j] = score_key(score[j], j) < kth;
}

void lm_row_mask_nm(const float *score, size_t cols, int n, int m, unsigned char *mask)
{
	memset(mask, 0, cols);
	for (size_t j0 = 0; j0 + (size_t)m <= cols; j0 += (size_t)m) {
		/* n passes of "smallest not yet taken": m is small (4, 8) */
		for (int t = 0; t < n; t++) {
			size_t best = (size_t)-1;
			for (size_t j = j0; j < j0 + (size_t)m; j++)
				if (!mask[j] && (best == (size_t)-1 || score[j] < score[best]))
					best = j;
			mask[best] = 1;
		}
	}
}

/* ---- whole matrices, row by row ---- */

struct rows_job {
	struct lm_mat *w;
	const struct lm_prune_spec *sp;
	const float *colscale;   /* [cols] ||x_j||_2 for Wanda, NULL for magnitude */
	size_t k;                /* per row, unstructured */
	float *buf[LM_MAX_THREADS];
	uint64_t *keys[LM_MAX_THREADS];
	unsigned char *mask[LM_MAX_THREADS];
};

static void prune_rows(void *ctx, size_t r0, size_t r1, int part)
{
	struct rows_job *j = ctx;
	struct lm_mat *w = j->w;
	size_t cols = (size_t)w->cols, es = lm_dtype_size(w->dtype);
	float *s = j->buf[part];
	unsigned char *mask = j->mask[part];
	for (size_t r = r0; r < r1; r++) {
		lm_rows_to_f32(s, (const char *)w->data + r * cols * es, w->dtype, cols);
		for (size_t c = 0; c < cols; c++)
			s[c] = j->colscale ? fabsf(s[c]) * j->colscale[c] : fabsf(s[c]);
		if (j->sp->n)
			lm_row_mask_nm(s, cols, j->sp->n, j->sp->m, mask);
		else
			lm_row_mask_k(s, cols, j->k, mask, j->keys[part]);
		for (size_t c = 0; c < cols; c++)
			if (mask[c])
				zero_at(w, r * cols + c);
	}
}

int lm_prune_mat(struct lm_mat *w, const struct lm_prune_spec *sp, const double *sumsq)
{
	size_t cols = (size_t)w->cols;
	float *colscale = NULL;
	int nt = lm_threads();

	if (check_dtype(w) < 0)
		return -1;
	if (sp->n && (sp->n <= 0 || sp->m <= sp->n || cols % (size_t)sp->m))
		return lm_seterr("%d:%d pattern on rows of %zu weights", sp->n, sp->m, cols);
	if (sp->method == LM_PRUNE_MAGNITUDE && !sp->n) {
		size_t k = lm_prune_count(sp->sparsity, mat_numel(w));
		float thr;
		if (k == 0)
			return 0;
		if (lm_prune_kth_abs(&w, 1, k, &thr) < 0)
			return -1;
		return lm_prune_abs_below(w, thr);
	}
	if (sp->method == LM_PRUNE_WANDA) {
		if (!sumsq)
			return lm_seterr("internal: Wanda without activation norms");
		colscale = xmalloc(cols * sizeof *colscale);
		for (size_t c = 0; c < cols; c++)
			colscale[c] = (float)sqrt(sumsq[c]);
	} else if (sp->method != LM_PRUNE_MAGNITUDE) {
		return lm_seterr("internal: %s is not a row-wise method", lm_prune_method_name(sp->method));
	}

	struct rows_job j = {.w = w, .sp = sp, .colscale = colscale,
	                     .k = lm_prune_count(sp->sparsity, cols)};
	if (nt > LM_MAX_THREADS)
		nt = LM_MAX_THREADS;
	for (int t = 0; t < nt; t++) {
		j.buf[t] = xmalloc(cols * sizeof(float));
		j.keys[t] = xmalloc(cols * sizeof(uint64_t));
		j.mask[t] = xmalloc(cols);
	}
	lm_parallel_for((size_t)w->rows, 8, nt, prune_rows, &j);
	for (int t = 0; t < nt; t++)
		free(j.buf[t]), free(j.keys[t]), free(j.mask[t]);
	free(colscale);
	return 0;
}

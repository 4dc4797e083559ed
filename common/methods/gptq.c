/* gptq.c: see gptq.h */
#include "gptq.h"
#include "kernels.h"
#include "quant.h"
#include "util.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct gptq_job {
	float *W;
	uint8_t *dst;
	enum lm_dtype t;
	size_t cols, rb, G, i1, count;
	int bits, sym;
	const float *U;
	const unsigned char *zero;   /* [rows, cols] 1: was exactly 0 on entry; NULL if none */
	const int *perm;             /* [cols] walk position -> natural column, or NULL */
	struct lm_qgrid *grid;       /* [rows] the grid in force, or with perm and groups
	                                [rows, cols / G] every natural group's static grid */
	float *err;                  /* [rows, count] Err1 of the reference */
	float *snap[LM_MAX_THREADS]; /* [count] a row's block as it was at the block's start */
	double loss[LM_MAX_THREADS];
};

/* the grid of row r's group starting at column c, from W as at the block's start */
static void fit_group(struct gptq_job *j, size_t r, size_t c, const float *snap, float *tmp)
{
	const float *w = j->W + r * j->cols;
	for (size_t k = 0; k < j->G; k++) {
		size_t cc = c + k;
		tmp[k] = cc < j->i1 + j->count ? snap[cc - j->i1] : w[cc];
	}
	lm_q_fit(&j->grid[r], tmp, j->G, j->bits, j->sym);
	lm_q_set_grid(lm_q_group(j->dst + r * j->rb, j->t, j->cols, c / j->G), &j->grid[r]);
}

static void block_rows(void *ctx, size_t r0, size_t r1, int part)
{
	struct gptq_job *j = ctx;
	const size_t cols = j->cols, i1 = j->i1, count = j->count, G = j->G;
	const int grouped = G != cols;
	float *snap = j->snap[part], *tmp = snap + count;
	double loss = 0;
	for (size_t r = r0; r < r1; r++) {
		float *w1 = j->W + r * cols + i1, *e = j->err + r * count;
		const unsigned char *z = j->zero ? j->zero + r * cols + i1 : NULL;
		uint8_t *row = j->dst + r * j->rb;
		if (grouped && !j->perm)
			memcpy(snap, w1, count * sizeof *snap);
		for (size_t i = 0; i < count; i++) {
			const size_t c = i1 + i, nc = j->perm ? (size_t)j->perm[c] : c;  /* natural column */
			const float *u = j->U + c * cols + i1;   /* U[c, i1..] */
			const float d = u[i];
			const struct lm_qgrid *g = &j->grid[r];
			if (grouped && j->perm)
				g = &j->grid[r * (cols / G) + nc / G];
			else if (grouped && c % G == 0)
				fit_group(j, r, c, snap, tmp);
			const int q = z && z[i] ? g->zero : lm_q_code(w1[i], g);
			const float w = w1[i], v = lm_q_value(q, g), err = (w - v) / d;
			uint8_t *grp = lm_q_group(row, j->t, cols, nc / G);
			lm_q_put(grp + sizeof(struct lm_qgroup), nc % G, j->bits, (unsigned)q);
			e[i] = err;
			if (err != 0.0f) {
				loss += (double)((w - v) * (w - v)) / ((double)d * d);
				for (size_t k = i + 1; k < count; k++)
					w1[k] -= err * u[k];
			}
			w1[i] = v;
		}
	}
	j->loss[part] += loss / 2;
}

/* every row of W [rows, cols] in walk order (to = 1: row[k] = row[perm[k]]) or back to
 * natural order (to = 0) */
static void permute_cols(float *W, size_t rows, size_t cols, const int *perm, int to)
{
	float *tmp = xmalloc(cols * sizeof *tmp);
	for (size_t r = 0; r < rows; r++) {
		float *w = W + r * cols;
		for (size_t k = 0; k < cols; k++) {
			if (to)
				tmp[k] = w[perm[k]];
			else
				tmp[perm[k]] = w[k];
		}
		memcpy(w, tmp, cols * sizeof *tmp);
	}
	free(tmp);
}

int lm_gptq(void *dst, enum lm_dtype t, float *W, size_t rows, size_t cols, const float *U,
            const unsigned char *dead, const int *perm, int sym, size_t bs, double *loss)
{
	const struct lm_dtype_info *in = lm_dtype_info(t);
	size_t rb = lm_dtype_row_bytes(t, cols), blk, n;
	int nt = lm_threads();
	unsigned char *zero = NULL;

	if (!rb)
		return lm_seterr("cannot quantize rows of %zu to %s", cols, lm_dtype_name(t));
	if (bs == 0 || bs > 8192)
		return lm_seterr("GPTQ block size %zu", bs);
	if (rows > INT_MAX || cols > INT_MAX || lm_mul(rows, bs, &blk) < 0 || lm_mul(rows, cols, &n) < 0)
		return lm_seterr("GPTQ on a %zu x %zu matrix", rows, cols);
	if (nt > LM_MAX_THREADS)
		nt = LM_MAX_THREADS;

	if (dead)   /* dead[k] is the walk's column k: natural column perm[k] */
		for (size_t k = 0; k < cols; k++)
			if (dead[k])
				for (size_t r = 0; r < rows; r++)
					W[r * cols + (perm ? (size_t)perm[k] : k)] = 0.0f;

	struct gptq_job j = {.W = W, .dst = dst, .t = t, .cols = cols, .rb = rb,
	                     .G = in->qgroup ? (size_t)in->qgroup : cols, .bits = in->qbits,
	                     .sym = sym, .U = U, .perm = perm};
	const size_t ng = cols / j.G;
	memset(dst, 0, rows * rb);
	/* grids fitted before the walk, in natural order: one per row, or (act-order with
	 * groups: static groups, see gptq.h) one per natural group */
	j.grid = xmalloc(rows * (perm ? ng : 1) * sizeof *j.grid);
	if (j.G == cols || perm)
		for (size_t r = 0; r < rows; r++)
			for (size_t gi = 0; gi < (j.G == cols ? 1 : ng); gi++) {
				struct lm_qgrid *g = &j.grid[r * (j.G == cols ? 1 : ng) + gi];
				lm_q_fit(g, W + r * cols + gi * j.G, j.G, j.bits, sym);
				lm_q_set_grid(lm_q_group((uint8_t *)dst + r * rb, t, cols, gi), g);
			}
	if (perm)
		permute_cols(W, rows, cols, perm, 1);
	/* after the permutation, so that zero[] is in walk order like W */
	for (size_t i = 0; i < n && !zero; i++)
		if (W[i] == 0.0f)
			zero = xmalloc(n);
	if (zero)
		for (size_t i = 0; i < n; i++)
			zero[i] = W[i] == 0.0f;
	j.zero = zero;
	j.err = xmalloc(blk * sizeof *j.err);
	for (int p = 0; p < nt; p++)
		j.snap[p] = xmalloc((bs + j.G) * sizeof(float));

	for (size_t i1 = 0; i1 < cols; i1 += bs) {
		const size_t count = cols - i1 < bs ? cols - i1 : bs;
		j.i1 = i1, j.count = count;
		lm_parallel_for(rows, 4, nt, block_rows, &j);
		if (i1 + count < cols)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(cols - i1 - count),
			            (int)count, -1.0f, j.err, (int)count, U + i1 * cols + i1 + count, (int)cols,
			            1.0f, W + i1 + count, (int)cols);
	}
	if (perm)
		permute_cols(W, rows, cols, perm, 0);
	if (loss) {
		*loss = 0;
		for (int p = 0; p < nt; p++)
			*loss += j.loss[p];
	}
	for (int p = 0; p < nt; p++)
		free(j.snap[p]);
	free(j.grid), free(j.err), free(zero);
	return 0;
}

struct diag_col {
	double d;
	int k;
};

static int cmp_diag(const void *a, const void *b)
{
	const struct diag_col *x = a, *y = b;
	/* decreasing diagonal, then increasing index: a total order, so qsort is deterministic */
	return x->d < y->d ? 1 : x->d > y->d ? -1 : (x->k > y->k) - (x->k < y->k);
}

int lm_gptq_act_order(const float *H, size_t n, int *perm)
{
	struct diag_col *dc;
	if (n > INT_MAX)
		return lm_seterr("act-order: %zu columns", n);
	if (!(dc = malloc(n * sizeof *dc)))
		return lm_seterr("act-order: out of memory");
	for (size_t k = 0; k < n; k++)
		dc[k].d = H[k * n + k] == 0.0f ? 1.0 : H[k * n + k], dc[k].k = (int)k;
	qsort(dc, n, sizeof *dc, cmp_diag);
	for (size_t k = 0; k < n; k++)
		perm[k] = dc[k].k;
	free(dc);
	return 0;
}

void lm_gptq_permute_h(float *Hp, const float *H, size_t n, const int *perm)
{
	for (size_t a = 0; a < n; a++) {
		const float *src = H + (size_t)perm[a] * n;
		for (size_t b = 0; b < n; b++)
			Hp[a * n + b] = src[perm[b]];
	}
}

struct gptq_args {
	const float *U;
	const unsigned char *dead;
	const int *perm;
	int sym;
	size_t bs;
	double *loss;
};

static int gptq_fn(void *dst, enum lm_dtype t, float *W, size_t rows, size_t cols, void *ctx)
{
	const struct gptq_args *a = ctx;
	return lm_gptq(dst, t, W, rows, cols, a->U, a->dead, a->perm, a->sym, a->bs, a->loss);
}

int lm_gptq_mat(struct lm_mat *w, enum lm_dtype t, const float *U, const unsigned char *dead,
                const int *perm, int sym, size_t bs, double *loss)
{
	struct gptq_args a = {U, dead, perm, sym, bs, loss};
	return lm_q_mat_with(w, t, gptq_fn, &a);
}

/* sparsegpt.c: see sparsegpt.h */
#include "sparsegpt.h"
#include "gemm_bf16.h"
#include "kernels.h"
#include "util.h"

#include <cblas.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct block_job {
	float *W;
	size_t cols, i1, count;
	const float *U;
	const struct lm_prune_spec *sp;
	const unsigned char *mask;   /* [rows, count] unstructured block mask; NULL for N:M */
	float *err;                  /* [rows, count] Err1 of the reference */
	unsigned char *nm[LM_MAX_THREADS];  /* [count] one row's N:M mask, per part */
	double loss[LM_MAX_THREADS];
};

/* score of a weight: its squared error if pruned, in units of the inverse Hessian */
static inline float obs_score(float w, float d)
{
	return (w * w) / (d * d);
}

/* One block for rows r0..r1: every row is independent once its mask is known, and a
 * row's block (count floats) stays in cache while its columns are walked. The per-element
 * operations are the reference's, in its order: w_j -= err_i * U_ij for i = i1, i1+1, … */
static void block_rows(void *ctx, size_t r0, size_t r1, int part)
{
	struct block_job *j = ctx;
	const size_t cols = j->cols, i1 = j->i1, count = j->count;
	const int n = j->sp->n, m = j->sp->m;
	double loss = 0;
	for (size_t r = r0; r < r1; r++) {
		float *w1 = j->W + r * cols + i1, *e = j->err + r * count;
		const unsigned char *mk = j->mask ? j->mask + r * count : j->nm[part];
		if (!j->mask)
			memset(j->nm[part], 0, count);
		for (size_t i = 0; i < count; i++) {
			const float *u = j->U + (i1 + i) * cols + i1;   /* U[i1+i, i1..] */
			const float d = u[i];
			if (n && i % (size_t)m == 0) {
				float s[LM_SPARSEGPT_BLOCK];
				for (size_t t = 0; t < (size_t)m; t++)
					s[t] = obs_score(w1[i + t], j->U[(i1 + i + t) * cols + i1 + i + t]);
				lm_row_mask_nm(s, (size_t)m, n, m, j->nm[part] + i);
			}
			const float w = w1[i], q = mk[i] ? 0.0f : w;
			const float err = (w - q) / d;
			e[i] = err;
			/* a kept weight has err 0: its update would subtract exact zeros */
			if (err != 0.0f) {
				loss += (double)obs_score(w - q, d);
				for (size_t c = i + 1; c < count; c++)
					w1[c] -= err * u[c];
			}
			w1[i] = q;
		}
	}
	j->loss[part] += loss / 2;
}

/* --compute bf16 (issue #19): the update of the columns after the block, W[:, i1+count:]
 * -= Err U[i1:i1+count, i1+count:], on the bf16 GEMM (Err and U rounded to bf16, sums in
 * fp32). Besides its own speed it keeps the walk off OpenBLAS: its idle threads spin
 * (sched_yield) for a while after each call, and between one block's sgemm and the next
 * they took a core from block_rows, 2 cores being the common case. Err is negated in place
 * (nothing reads it after). -1 when the GEMM found no memory: the caller runs sgemm. */
static int trailing_bf16(float *W, size_t rows, size_t cols, size_t i1, size_t count,
                         const float *U, float *err)
{
	for (size_t i = 0; i < rows * count; i++)
		err[i] = -err[i];
	if (lm_gemm_bf16(W + i1 + count, cols, err, count, U + i1 * cols + i1 + count, cols, 1, rows,
	                 cols - i1 - count, count, 1.0f) == 0)
		return 0;
	for (size_t i = 0; i < rows * count; i++)
		err[i] = -err[i];
	return -1;
}

int lm_sparsegpt(float *W, size_t rows, size_t cols, const float *U, const unsigned char *dead,
                 const struct lm_prune_spec *sp, size_t bs, double *loss)
{
	const int n = sp->n, m = sp->m;
	int nt = lm_threads();
	const int bf16 = lm_compute_used() == LM_COMPUTE_BF16;
	unsigned char *mask = NULL;
	uint64_t *keys = NULL;
	uint32_t *bits = NULL;
	float *err;
	size_t blk;

	if (bs == 0 || bs > LM_SPARSEGPT_BLOCK * 64)
		return lm_seterr("SparseGPT block size %zu", bs);
	if (n && (n <= 0 || m <= n || m > LM_SPARSEGPT_BLOCK || bs % (size_t)m || cols % (size_t)m))
		return lm_seterr("SparseGPT %d:%d pattern with blocks of %zu on rows of %zu weights", n, m,
		                 bs, cols);
	if (rows > INT_MAX || cols > INT_MAX || lm_mul(rows, bs, &blk) < 0)
		return lm_seterr("SparseGPT on a %zu x %zu matrix", rows, cols);
	if (nt > LM_MAX_THREADS)
		nt = LM_MAX_THREADS;

	if (dead)
		for (size_t c = 0; c < cols; c++)
			if (dead[c])
				for (size_t r = 0; r < rows; r++)
					W[r * cols + c] = 0.0f;

	struct block_job j = {.W = W, .cols = cols, .U = U, .sp = sp};
	err = xmalloc(blk * sizeof *err);
	if (n) {
		for (int t = 0; t < nt; t++)
			j.nm[t] = xmalloc(bs);
	} else {
		mask = xmalloc(blk);
		keys = xmalloc(blk * sizeof *keys);
		bits = xmalloc(blk * sizeof *bits);
	}
	j.err = err;
	j.mask = mask;

	for (size_t i1 = 0; i1 < cols; i1 += bs) {
		const size_t count = cols - i1 < bs ? cols - i1 : bs, numel = rows * count;
		j.i1 = i1, j.count = count;
		if (!n) {
			/* the adaptive mask: one threshold over the whole block, from the weights as
			 * the previous blocks' updates left them */
			for (size_t r = 0; r < rows; r++)
				for (size_t i = 0; i < count; i++) {
					float s = obs_score(W[r * cols + i1 + i], U[(i1 + i) * (cols + 1)]);
					uint32_t b;
					memcpy(&b, &s, sizeof b);   /* s >= 0: its bits order as it does */
					bits[r * count + i] = b;
					keys[r * count + i] = b;
				}
			size_t k = lm_prune_count(sp->sparsity, numel);
			uint64_t thr = lm_select_u64(keys, numel, k < numel ? k : numel - 1);
			for (size_t i = 0; i < numel; i++)
				mask[i] = sp->sparsity > 0 && bits[i] <= thr;
		}
		lm_parallel_for(rows, 4, nt, block_rows, &j);
		if (i1 + count < cols && bf16 && trailing_bf16(W, rows, cols, i1, count, U, err) == 0)
			continue;
		if (i1 + count < cols)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)(cols - i1 - count),
			            (int)count, -1.0f, err, (int)count, U + i1 * cols + i1 + count, (int)cols,
			            1.0f, W + i1 + count, (int)cols);
	}
	if (loss) {
		*loss = 0;
		for (int t = 0; t < nt; t++)
			*loss += j.loss[t];
	}
	for (int t = 0; t < nt; t++)
		free(j.nm[t]);
	free(mask), free(keys), free(bits), free(err);
	return 0;
}

int lm_sparsegpt_mat(struct lm_mat *w, const float *U, const unsigned char *dead,
                     const struct lm_prune_spec *sp, size_t bs, double *loss)
{
	size_t rows = (size_t)w->rows, cols = (size_t)w->cols, n;
	float *W;
	int rc;
	if (lm_mul(rows, cols, &n) < 0)
		return -1;
	if (w->dtype == LM_F32)
		return lm_sparsegpt(w->data, rows, cols, U, dead, sp, bs, loss);
	if (!(W = lm_alloc(n * sizeof *W)))
		return -1;
	rc = lm_mat_get_f32(w, W);
	if (rc == 0)
		rc = lm_sparsegpt(W, rows, cols, U, dead, sp, bs, loss);
	if (rc == 0)
		rc = lm_mat_set_f32(w, W);
	lm_free(W);
	return rc;
}

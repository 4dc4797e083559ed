/* test_spmv.c: matrices kept in a sparse layout in memory (model.h, issue #18): the decode
 * product (nn/matvec, matvec_sparse_isa.h) on N:M of f32/f16/bf16 values (2:4 and 1:4, and
 * 2:8, 4:8, 1:2, 2:3 for the other windows and the gather), N:M of packed codes (q2, q3,
 * q4, q8 in groups of 128, and per row) and bitmap rows (30, 50, 90 % density), every
 * instruction set this CPU has and 1 and 2 threads, against a double-precision product of
 * the dense matrix the layout encodes; the rows the tile path expands (lm_mat_rows_f32)
 * bit for bit against the dense matrix's; lm_matmul_forward with 16 rows of x (the tile
 * path: perplexity, prefill) against the dense matrix's product within 1e-5; the same
 * matrix as the LM head (cross-entropy, 1 and 16 rows) and as token embeddings (lookups).
 *
 * Tolerance of the decode product, as test_matvec.c argues it: |y - ref| <= (IN + 2) 2^-24
 * sum_i |x_i w_i| (+ |bias|). A lost, doubled or misplaced kept value (a wrong position
 * reads another x) is an error of about sum |x w| / IN, many times the bound here.
 * Shapes: rows 1, 7, 17, 768; inputs 1, 7, 17, 769 (bitmap) and, N:M needing whole
 * groups, 4, 8, 20, 68, 768, 3072; payloads allocated without slack, so ASan sees a read
 * past one. */
#include "unit.h"
#include "dtype.h"
#include "kernels.h"
#include "matvec.h"
#include "pool.h"
#include "quant.h"
#include "rows.h"
#include "mvcheck.h"
#include "sparse.h"
#include "util.h"

#include <stdint.h>
#include <string.h>

static uint32_t seed = 1818;
static uint32_t rndu(void)
{
	seed = seed * 1664525u + 1013904223u;
	return seed >> 8;
}
static float rnd(void)
{
	return (float)(rndu() & 0xffff) / 32768.0f - 1.0f;
}

/* f [OUT, IN] random with the sparsity of l: n of every m kept at random positions, or
 * each weight kept with probability density (a kept weight is never 0) */
static float *pattern(const struct lm_layout *l, double density, size_t OUT, size_t IN)
{
	float *f = calloc(OUT * IN, sizeof *f);
	for (size_t i = 0; i < OUT * IN; i++) {
		float v = rnd();
		f[i] = v == 0.0f ? 0.5f : v;
	}
	if (l->kind == LM_LAYOUT_NM) {
		for (size_t g = 0; g < OUT * IN; g += (size_t)l->m) {
			int drop = l->m - l->n;
			while (drop > 0) {
				size_t k = rndu() % (size_t)l->m;
				if (f[g + k] != 0.0f)
					f[g + k] = 0.0f, drop--;
			}
		}
	} else {
		for (size_t i = 0; i < OUT * IN; i++)
			if ((double)(rndu() % 10000) >= density * 10000)
				f[i] = 0.0f;
	}
	return f;
}

/* the matrix of f in dtype t, dense (packed: RTN, a 0 becomes its group's zero point) */
static void *store(enum lm_dtype t, const float *f, size_t OUT, size_t IN, size_t *nb)
{
	int64_t shape[2] = {(int64_t)OUT, (int64_t)IN};
	if (lm_dtype_nbytes(t, 2, shape, nb) < 0)
		return NULL;
	void *w = calloc(1, *nb);
	if (t == LM_F32)
		memcpy(w, f, *nb);
	else if (t == LM_F16 || t == LM_BF16)
		CHECK(lm_convert(w, t, f, LM_F32, OUT * IN) == 0);
	else
		CHECK(lm_q_rtn(w, t, f, OUT, IN, 0) == 0);
	return w;
}

static void one(enum lm_dtype t, const char *lay, double density, size_t OUT, size_t IN, size_t N,
                struct stats *st)
{
	struct lm_layout want, got;
	char name[32];
	size_t nb, len = 0;
	void *payload = NULL;
	CHECK(lm_layout_parse(lay, &want) == 0);
	if (!strcmp(lay, "bitmap"))
		want.kind = LM_LAYOUT_UNSTRUCTURED; /* as lm-prune asks: the smaller of bitmap, index */
	float *f = pattern(&want, density, OUT, IN);
	void *dense = store(t, f, OUT, IN, &nb);
	CHECK(lm_sparse_encode(dense, t, (int64_t)OUT, (int64_t)IN, &want, &got, &payload, &len) == 0);
	const int ok = !strcmp(lay, "bitmap") ? got.kind == LM_LAYOUT_BITMAP : got.kind == want.kind;
	if (!ok && got.kind == LM_LAYOUT_DENSE && OUT * IN < 64) {
		/* a row of a few weights: its bitmap byte makes it no smaller than dense */
		free(f), free(dense);
		return;
	}
	CHECKF(ok, "%s %s %zu x %zu: encoded as %s", lm_dtype_name(t), lay, OUT, IN,
	       lm_layout_name(&got, name, sizeof name));
	if (!ok) {
		free(f), free(dense), lm_free(payload);
		return;
	}
	/* without slack: a read past the payload is ASan's */
	void *tight = malloc(len);
	memcpy(tight, payload, len);
	lm_free(payload);
	struct lm_mat wd = {.dtype = t, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = dense};
	struct lm_mat w = {.dtype = t, .rows = (int64_t)OUT, .cols = (int64_t)IN, .data = tight,
	                   .layout = got, .nbytes = len};
	if (got.kind == LM_LAYOUT_BITMAP) {
		w.rowoff = malloc((OUT + 1) * sizeof *w.rowoff);
		lm_sparse_row_starts(w.rowoff, tight, len, t, (int64_t)OUT, (int64_t)IN);
	}

	/* the tile path's rows: the dense matrix's, bit for bit (same conversions) */
	float *deq = malloc(OUT * IN * sizeof *deq), *spr = malloc(OUT * IN * sizeof *spr);
	CHECK(lm_mat_rows_f32(deq, &wd, 0, OUT) == 0);
	CHECK(lm_mat_rows_f32(spr, &w, 0, OUT) == 0);
	CHECKF(!memcmp(deq, spr, OUT * IN * sizeof *deq), "%s %s %zu x %zu: expanded rows differ",
	       lm_dtype_name(t), lay, OUT, IN);

	float *x = malloc(16 * IN * sizeof *x);
	for (size_t i = 0; i < 16 * IN; i++)
		x[i] = rnd();
	size_t r0 = OUT > 8 ? 3 : 0, nr = OUT - r0 - (OUT > 8 ? 2 : 0), ldy = nr + (OUT > 8 ? 5 : 0);
	float beta = OUT > 8 ? 1.0f : 0.0f;
	float *bias = malloc(N * ldy * sizeof *bias), *y = malloc(N * ldy * sizeof *y);
	double *ref = malloc(N * nr * sizeof *ref), *bound = malloc(N * nr * sizeof *bound);
	for (size_t i = 0; i < N * ldy; i++)
		bias[i] = rnd();
	const double u = 0x1p-24;
	for (size_t n = 0; n < N; n++)
		for (size_t o = 0; o < nr; o++) {
			double s = beta ? bias[n * ldy + o] : 0, a = beta ? fabs(bias[n * ldy + o]) : 0;
			for (size_t i = 0; i < IN; i++) {
				double p = (double)x[n * IN + i] * deq[(r0 + o) * IN + i];
				s += p, a += fabs(p);
			}
			ref[n * nr + o] = s;
			bound[n * nr + o] = (double)(IN + 2) * u * a;
		}
	CHECK(lm_matvec_use(&w) == (getenv("LM_NO_MATVEC") == NULL));
	struct mvcase c = {&w, x, bias, ref, bound, r0, nr, ldy, N, beta};
	char what[96];
	snprintf(what, sizeof what, "%s %s %.0f%% OUT %zu IN %zu N %zu", lm_dtype_name(t), lay,
	         density * 100, OUT, IN, N);
	mvcheck_isas(&c, y, what, st);
	lm_set_threads(2);

	/* 16 rows of x: the tile path, sparse rows expanded into the f32 tile sgemm reads */
	float *o1 = malloc(16 * OUT * sizeof *o1), *o2 = malloc(16 * OUT * sizeof *o2);
	CHECK(lm_matmul_forward(o1, x, &w, NULL, 16, NULL) == 0);
	CHECK(lm_matmul_forward(o2, x, &wd, NULL, 16, NULL) == 0);
	double re = unit_relerr(o1, o2, 16 * OUT);
	CHECKF(re <= 1e-5, "%s %s %zu x %zu: tile path %.3g from dense", lm_dtype_name(t), lay, OUT, IN, re);

	/* the matrix as the head (lm-eval keeps the token embeddings, so the tied head, sparse):
	 * cross-entropy of 16 rows by tiles and of 1 by the decode product, as of the dense head
	 * (a dense f32 head is multiplied in place, a sparse f32 one must not be); and as the
	 * embeddings, a row looked up per id */
	if (N == 1) {
		int32_t tg[16], ids[3] = {0, (int32_t)(OUT - 1), (int32_t)(OUT / 2)};
		float n1[16], n2[16], e1[3 * 3072], e2[3 * 3072];
		for (size_t i = 0; i < 16; i++)
			tg[i] = (int32_t)(rndu() % OUT);
		for (size_t rows = 1; rows <= 16; rows += 15) {
			CHECK(lm_logits_ce_forward(n1, NULL, x, &w, tg, rows, NULL) == 0);
			CHECK(lm_logits_ce_forward(n2, NULL, x, &wd, tg, rows, NULL) == 0);
			re = unit_relerr(n1, n2, rows);
			CHECKF(re <= 1e-5, "%s %s %zu x %zu: as the head, %zu rows: %.3g from dense",
			       lm_dtype_name(t), lay, OUT, IN, rows, re);
		}
		CHECK(IN <= 3072);
		CHECK(lm_embed_forward(e1, ids, &w, 3) == 0 && lm_embed_forward(e2, ids, &wd, 3) == 0);
		CHECKF(!memcmp(e1, e2, 3 * IN * sizeof *e1), "%s %s %zu x %zu: embedding rows differ",
		       lm_dtype_name(t), lay, OUT, IN);
	}

	free(o1), free(o2), free(f), free(dense), free(tight), free(w.rowoff), free(deq), free(spr);
	free(x), free(bias), free(y), free(ref), free(bound);
}

int main(void)
{
	struct stats st = {0, 0};
	const enum lm_dtype floats[] = {LM_F32, LM_F16, LM_BF16};
	const size_t outs[] = {1, 7, 17, 768}, ns[] = {1, 2, 5};
	/* N:M: rows of whole groups, one group, a tail past the vectors, and the OPT widths */
	const size_t ins_nm[] = {4, 8, 20, 68, 768, 3072};
	const char *nms[] = {"2:4", "1:4"};
	for (size_t d = 0; d < 3; d++)
		for (size_t l = 0; l < 2; l++)
			for (size_t a = 0; a < 6; a++)
				for (size_t b = 0; b < 4; b++)
					for (size_t c = 0; c < 3; c++)
						if (outs[b] * ins_nm[a] <= 768 * 768 || ns[c] != 2)
							one(floats[d], nms[l], 0, outs[b], ins_nm[a], ns[c], &st);
	/* the other windows: 2 vectors (1:2, 4:8), 4 (2:8), a gather (2:3: a window of 24) */
	const char *more[] = {"1:2", "4:8", "2:8", "2:3"};
	for (size_t l = 0; l < 4; l++)
		for (size_t d = 0; d < 3; d++) {
			one(floats[d], more[l], 0, 17, 96, 1, &st);
			one(floats[d], more[l], 0, 7, 768, 2, &st);
		}
	/* bitmap at three densities, any width */
	const size_t ins_bm[] = {1, 7, 17, 769, 3072};
	const double dens[] = {0.3, 0.5, 0.9};
	for (size_t d = 0; d < 3; d++)
		for (size_t e = 0; e < 3; e++)
			for (size_t a = 0; a < 5; a++)
				for (size_t b = 0; b < 4; b++)
					one(floats[d], "bitmap", dens[e], outs[b], ins_bm[a],
					    outs[b] * ins_bm[a] > 768 * 768 ? 1 : ns[(a + b) % 3], &st);
	/* N:M of packed codes: groups of 128 (and 32) over one or several groups, and per row
	 * (not 2-bit codes: 2:4 of them is no smaller than dense, the writer keeps it dense) */
	const int bits[] = {3, 4, 8};
	for (size_t k = 0; k < 3; k++)
		for (size_t l = 0; l < 2; l++) {
			enum lm_dtype g128 = (enum lm_dtype)lm_dtype_q(bits[k], 128);
			enum lm_dtype g32 = (enum lm_dtype)lm_dtype_q(bits[k], 32);
			enum lm_dtype row = (enum lm_dtype)lm_dtype_q(bits[k], 0);
			one(g128, nms[l], 0, 7, 128, 1, &st);
			one(g128, nms[l], 0, 17, 384, 2, &st);
			one(g128, nms[l], 0, 768, 768, 1, &st);
			one(g32, nms[l], 0, 17, 768, 5, &st);
			one(row, nms[l], 0, 7, 20, 1, &st);
			one(row, nms[l], 0, 17, 3072, 2, &st);
		}
	fprintf(stderr, "test_spmv: %d products (best set here: %s), worst error %.3g of the bound\n",
	        st.cases, (lm_matvec_set_isa(LM_MATVEC_AVX512) == 0 ? "avx512"
	                   : lm_matvec_set_isa(LM_MATVEC_AVX2) == 0 ? "avx2" : "scalar"),
	        st.worst);
	CHECK(st.cases > 0);
	return unit_done("test_spmv");
}

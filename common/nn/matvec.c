/* matvec.c: the decode product y = x · W^T for a few rows of x, reading f32, f16, bf16 and
 * packed weights in place with SIMD (see matvec.h).
 *
 * The loops are in matvec_isa.h (dense) and matvec_sparse_isa.h (sparse-kept), each compiled
 * once for AVX-512 and once for AVX2 + FMA + F16C through target attributes (as gemm_bf16.c
 * does), in the four files matvec_{,sparse_}{avx2,avx512}.c; the set is chosen once from the
 * CPU, and plain C rows here serve other CPUs. Work is split by output rows over the pool,
 * the threads taking units of rows in turn (mv_units); within a unit the rows go in chunks
 * of about 32 KiB of weights, each chunk read by every block of up to 4 rows of x in turn,
 * so N > 4 reads W from DRAM once and from L1/L2 after. */
#include "matvec.h"
#include "matvec_kern.h"
#include "pool.h"

#include <stdlib.h>

#define MV_CHUNK_BYTES ((size_t)32768) /* weights of one chunk of output rows */
#define MV_UNITS 4                     /* units of rows a thread (mv_units) */

/* ---- plain C: CPUs without AVX2, and the scalar twin the tests also run ---- */

static void rows_scalar(const struct mv_args *a, const float *x, float *y, size_t nb,
                        size_t o0, size_t o1)
{
	for (size_t o = o0; o < o1; o++) {
		float s[MV_NB] = {0};
		const uint8_t *row = (const uint8_t *)a->w + o * a->rb;
		if (!a->bits) {
			for (size_t i = 0; i < a->IN; i++) {
				float wi = mv_scalar_w(row, a->dt, i);
				for (size_t n = 0; n < nb; n++)
					s[n] += wi * x[n * a->IN + i];
			}
		} else {
			for (size_t g = 0; g < a->ng; g++) {
				const uint8_t *grp = row + g * a->gb;
				float scale;
				int zero;
				mv_group_grid(grp, &scale, &zero);
				for (size_t i = 0; i < a->G; i++) {
					float wi = scale * (float)(mv_code(grp + 4, i, a->bits) - zero);
					for (size_t n = 0; n < nb; n++)
						s[n] += wi * x[n * a->IN + g * a->G + i];
				}
			}
		}
		mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);
	}
}

/* plain C rows of a sparse-kept matrix: every layout, dtype and N:M */
static void rows_sparse_scalar(const struct mv_args *a, const float *x, float *y, size_t nb,
                               size_t o0, size_t o1)
{
	const struct lm_sparse_view *v = &a->sv;
	const size_t es = lm_dtype_size(a->dt), n = (size_t)v->l.n, m = (size_t)v->l.m;
	const size_t pb = (size_t)v->pb;
	for (size_t o = o0; o < o1; o++) {
		float s[MV_NB] = {0};
		if (v->l.kind == LM_LAYOUT_BITMAP) {
			const uint8_t *val = v->vals + v->rowoff[o] * es;
			for (size_t i = 0, b = o * a->IN; i < a->IN; i++, b++) {
				if (!(v->pos[b / 8] >> (b % 8) & 1))
					continue;
				float wi = mv_scalar_w(val, a->dt, 0);
				val += es;
				for (size_t j = 0; j < nb; j++)
					s[j] += wi * x[j * a->IN + i];
			}
		} else if (!v->bits) {
			const uint8_t *val = v->vals + o * v->kr * es;
			for (size_t k = 0, b = o * v->kr * pb; k < v->kr; k++, b += pb) {
				size_t col = k / n * m + lm_sparse_bits(v->pos, b, (int)pb, v->end);
				float wi = mv_scalar_w(val, a->dt, k);
				for (size_t j = 0; j < nb; j++)
					s[j] += wi * x[j * a->IN + col];
			}
		} else {
			for (size_t g = 0; g < v->ngr; g++) {
				const size_t q = o * v->ngr + g;
				const uint8_t *grp = v->vals + q * (4 + v->kb);
				float scale;
				int zero;
				mv_group_grid(grp, &scale, &zero);
				for (size_t k = 0, b = q * v->kc * pb; k < v->kc; k++, b += pb) {
					size_t col = g * v->G + k / n * m + lm_sparse_bits(v->pos, b, (int)pb, v->end);
					float wi = scale * (float)(mv_code(grp + 4, k, v->bits) - zero);
					for (size_t j = 0; j < nb; j++)
						s[j] += wi * x[j * a->IN + col];
				}
			}
		}
		mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);
	}
}

/* x [N, IN] as the 4-bit kernels read it: within each group, per block of blk inputs (two
 * vectors), the blk/2 even ones then the blk/2 odd ones; a group's last G % blk (per-row
 * groups only) as they are */
static void split_x(float *xs, const float *x, size_t N, size_t IN, size_t G, size_t ng,
                    size_t blk)
{
	const size_t h = blk / 2;
	for (size_t n = 0; n < N; n++)
		for (size_t g = 0; g < ng; g++) {
			const float *s = x + n * IN + g * G;
			float *d = xs + n * IN + g * G;
			size_t i = 0;
			for (; i + blk <= G; i += blk)
				for (size_t k = 0; k < h; k++)
					d[i + k] = s[i + 2 * k], d[i + h + k] = s[i + 2 * k + 1];
			for (; i < G; i++)
				d[i] = s[i];
		}
}

/* x [N, IN] as the AVX2 2:4 rows read it (window mode 5, winp_avx2): per block of 16
 * inputs, the groups of four 0, 2, 1, 3; IN is a multiple of 16 */
static void pair_x(float *xs, const float *x, size_t N, size_t IN)
{
	static const int from[4] = {0, 8, 4, 12};
	for (size_t r = 0; r < N * IN; r += 16)
		for (int q = 0; q < 4; q++)
			memcpy(xs + r + 4 * q, x + r + from[q], 4 * sizeof *x);
}

/* ---- dispatch ---- */

static int isa_set = -1; /* enum lm_matvec_isa once chosen */
static int act8_on;      /* lm_matvec_set_act8 */

void lm_matvec_set_act8(int on) { act8_on = on != 0; }

static int isa_has(enum lm_matvec_isa isa)
{
#ifdef MV_X86
	__builtin_cpu_init();
	if (isa == LM_MATVEC_AVX512)
		return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		       __builtin_cpu_supports("avx512vl") && isa_has(LM_MATVEC_AVX2);
	if (isa == LM_MATVEC_AVX2)
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
		       __builtin_cpu_supports("f16c");
#endif
	return isa == LM_MATVEC_SCALAR;
}

enum lm_matvec_isa lm_matvec_isa(void)
{
	if (isa_set < 0)
		isa_set = isa_has(LM_MATVEC_AVX512) ? LM_MATVEC_AVX512
		          : isa_has(LM_MATVEC_AVX2) ? LM_MATVEC_AVX2
		                                    : LM_MATVEC_SCALAR;
	return (enum lm_matvec_isa)isa_set;
}

int lm_matvec_set_isa(enum lm_matvec_isa isa)
{
	if (!isa_has(isa))
		return lm_seterr("matvec: this CPU has no %s", lm_matvec_isa_name(isa));
	isa_set = isa;
	return 0;
}

const char *lm_matvec_isa_name(enum lm_matvec_isa isa)
{
	return isa == LM_MATVEC_AVX512 ? "avx512" : isa == LM_MATVEC_AVX2 ? "avx2" : "scalar";
}

#ifdef MV_X86
/* a sparse row kernel of isa for a (its window for N:M set here); NULL: plain C */
static mv_rows_fn *sp_rows_isa(struct mv_args *a, enum lm_matvec_isa isa)
{
	const int vl = isa == LM_MATVEC_AVX512 ? 16 : 8, n = a->sv.l.n, m = a->sv.l.m;
	a->spwin = 0;
	if (a->sv.l.kind == LM_LAYOUT_NM && !(n & (n - 1)) && n <= vl && 8 * a->sv.pb <= 32 &&
	    vl * a->sv.pb <= 48) { /* positions of a vector: one 64-bit read, 32 bits per 8 lanes */
		int win = vl / n * m;
		a->spwin = win == 2 * vl ? 2 : win == 4 * vl ? 4 : 3;
		/* 2:4 on AVX2 with whole blocks of 16 inputs (per row, and per quant group where
		 * the codes are packed): x reordered once per product (pair_x) for in-lane permutes */
		if (isa == LM_MATVEC_AVX2 && n == 2 && m == 4 && a->IN % 16 == 0 &&
		    (!a->sv.bits || a->sv.G % 16 == 0))
			a->spwin = 5;
	}
	return isa == LM_MATVEC_AVX512 ? lm_mv_sparse_avx512(a) : lm_mv_sparse_avx2(a);
}
#endif

/* the row kernel for w's storage in the instruction set in use. The hook for new storages
 * (sparse N:M or unstructured rows): a case here with its kernels, and its row bytes and
 * layout in args_for; a NULL answer sends the caller back to the tile path. */
static mv_rows_fn *rows_for(struct mv_args *a)
{
	enum lm_matvec_isa isa = lm_matvec_isa();
	if (a->sparse) {
		mv_rows_fn *fn = NULL;
#ifdef MV_X86
		if (isa != LM_MATVEC_SCALAR)
			fn = sp_rows_isa(a, isa);
#endif
		return fn ? fn : rows_sparse_scalar;
	}
	if (act8_on && a->bits == 4 && a->G % 32 == 0) { /* matvec_x8.c */
		a->act8 = 1;
#ifdef MV_X86
		if (isa != LM_MATVEC_SCALAR)
			return mv_rows_q4x8_avx2;
#endif
		return mv_rows_q4x8_scalar;
	}
	if (isa == LM_MATVEC_SCALAR)
		return rows_scalar;
#ifdef MV_X86
	const struct mv_dense_set *s = isa == LM_MATVEC_AVX512 ? &lm_mv_dense_avx512 : &lm_mv_dense_avx2;
	switch (a->dt) {
	case LM_F32: return s->f32;
	case LM_F16: return s->f16;
	case LM_BF16: return s->bf16;
	default: break;
	}
	switch (a->bits) {
	case 2: return s->q2;
	case 3: return s->q3;
	case 4: a->xsplit = s->q4split; return s->q4;
	case 8: return s->q8;
	default: break;
	}
#endif
	return NULL;
}

/* w's layout into a; -1 (no error set) if this module cannot read it */
static int args_for(struct mv_args *a, const struct lm_mat *w)
{
	memset(a, 0, sizeof *a);
	if (w->rows < 0 || w->cols < 0)
		return -1;
	a->w = w->data;
	a->dt = w->dtype;
	a->IN = (size_t)w->cols;
	if (lm_mat_is_sparse(w)) {
		if (lm_sparse_view(&a->sv, w->data, w->nbytes, &w->layout, w->dtype, w->rows, w->cols,
		                   w->rowoff) < 0)
			return -1;
		a->sparse = 1;
		a->rb = w->rows > 0 ? w->nbytes / (size_t)w->rows + 1 : 1;
		for (int j = 0; j < 16; j++)
			a->spbase[j] = j / (a->sv.l.n ? a->sv.l.n : 1) * a->sv.l.m, a->spsh[j] = j % 8 * a->sv.pb,
			a->spshw[j] = j * a->sv.pb;
		return 0;
	}
	if (w->dtype == LM_F32 || w->dtype == LM_F16 || w->dtype == LM_BF16) {
		a->rb = a->IN * lm_dtype_size(w->dtype);
		return 0;
	}
	const struct lm_dtype_info *in = lm_dtype_info(w->dtype);
	if (!lm_dtype_is_packed(w->dtype) || !(a->rb = lm_dtype_row_bytes(w->dtype, a->IN)))
		return -1;
	a->bits = in->qbits;
	a->G = in->qgroup ? (size_t)in->qgroup : a->IN;
	a->ng = a->G ? a->IN / a->G : 0;
	a->gb = sizeof(struct lm_qgroup) + (a->G * (size_t)a->bits + 7) / 8;
	return 0;
}

int lm_matvec_use(const struct lm_mat *w)
{
	static int off = -1; /* LM_NO_MATVEC is read once */
	struct mv_args a;
	if (off < 0) {
		const char *e = getenv("LM_NO_MATVEC");
		off = e && strcmp(e, "1") == 0;
	}
	return !off && args_for(&a, w) == 0 && rows_for(&a) != NULL;
}

struct mv_job {
	const struct mv_args *a;
	mv_rows_fn *fn;
	const float *x;
	float *y;
	size_t N, chunk;
	size_t unit, nunits, nr; /* rows a take (mv_units), takes, rows in all */
	/* the next unit to take (__atomic), on a cache line of its own (the alignment rounds the
	 * struct up to whole lines): the fields above are read by every thread, and a line that
	 * both threads write to moves between cores at each take */
	_Alignas(64) size_t next;
};

/* output rows [o0, o1) (of the pool's [0, nr)) for every row of x, a chunk of W at a time */
static void mv_rows(const struct mv_job *j, size_t o0, size_t o1)
{
	/* the pool hands out [0, nr); W's rows start at r0 */
	o0 += j->a->r0, o1 += j->a->r0;
	for (size_t c0 = o0; c0 < o1; c0 += j->chunk) {
		size_t c1 = c0 + j->chunk < o1 ? c0 + j->chunk : o1;
		for (size_t n0 = 0; n0 < j->N; n0 += MV_NB) {
			const struct mv_args *a = j->a;
			struct mv_args at; /* the 8-bit rows read x from a: its rows from n0 on */
			if (a->act8 && n0) {
				at = *a, a = &at;
				at.x8 += n0 * a->IN, at.x8scale += n0 * a->ng, at.x8sum += n0 * a->ng;
			}
			j->fn(a, j->x + n0 * a->IN, j->y + n0 * a->ldy,
			      j->N - n0 < MV_NB ? j->N - n0 : MV_NB, c0, c1);
		}
	}
}

/* one thread's part: units of rows (MV_UNITS a thread, whole chunks) taken in turn from a
 * shared counter until none is left, so a thread that starts late or runs slow (the worker
 * woken by the caller, a vCPU that the host shares) takes fewer of them instead of being
 * waited for: a q4 OPT-125m decoded 7 % faster than with one fixed half per thread (two
 * threads, Zen 5 guest; docs/performance.md §2). A row's sum does not depend on which
 * thread computes it. */
static void mv_units(void *ctx, size_t p0, size_t p1, int part)
{
	struct mv_job *j = ctx;
	(void)p0, (void)p1, (void)part;
	for (;;) {
		size_t u = __atomic_fetch_add(&j->next, 1, __ATOMIC_RELAXED);
		if (u >= j->nunits)
			return;
		size_t o1 = (u + 1) * j->unit;
		mv_rows(j, u * j->unit, o1 < j->nr ? o1 : j->nr);
	}
}

int lm_matvec(float *y, size_t ldy, const float *x, const struct lm_mat *w, size_t r0, size_t nr,
              size_t N, float beta)
{
	struct mv_args a;
	mv_rows_fn *fn;
	if (args_for(&a, w) < 0 || !(fn = rows_for(&a)))
		return lm_seterr("matvec: weights of dtype %s with rows of %lld are not supported",
		                 lm_dtype_name(w->dtype), (long long)w->cols);
	if (r0 + nr > (size_t)w->rows)
		return lm_seterr("matvec: rows %zu .. %zu past the matrix's %lld", r0, r0 + nr,
		                 (long long)w->rows);
	a.ldy = ldy, a.r0 = r0, a.beta = beta;
	if (N == 0 || nr == 0)
		return 0;
	struct mv_job j = {&a, fn, x, y, N, a.rb ? MV_CHUNK_BYTES / a.rb : 1, 0, 0, nr, 0};
	if (j.chunk < 1)
		j.chunk = 1;
	/* threads: at least ~64k weights each (below that a wake-up costs more than it saves);
	 * units: MV_UNITS a thread, whole chunks (mv_units) */
	size_t parts = nr / (1 + ((size_t)1 << 16) / (a.IN + 1)), nt = (size_t)lm_threads();
	parts = parts < 1 ? 1 : parts > nt ? nt : parts;
	j.unit = (nr + parts * MV_UNITS - 1) / (parts * MV_UNITS);
	j.unit = (j.unit + j.chunk - 1) / j.chunk * j.chunk;
	j.nunits = (nr + j.unit - 1) / j.unit;
	/* x reordered for the kernels that read it so (the 4-bit rows: split_x; AVX2 2:4 rows:
	 * pair_x): on the stack up to 64 KiB (decoding up to IN = 16384), else allocated (a few
	 * rows of a wider model) */
	float stack[16384], *xs = NULL;
#ifdef MV_X86
	if (a.xsplit || (a.sparse && a.spwin == 5)) {
		if (N * a.IN > sizeof stack / sizeof *stack &&
		    !(xs = lm_alloc(N * a.IN * sizeof *xs)))
			return -1;
		float *d = xs ? xs : stack;
		if (a.xsplit)
			split_x(d, x, N, a.IN, a.G, a.ng, (size_t)a.xsplit);
		else
			pair_x(d, x, N, a.IN);
		j.x = d;
	}
#endif
	/* x in int8 for the 4-bit rows on 8-bit x, on the stack as above */
	int8_t q8stack[16384], *q8 = NULL;
	float s8stack[16384 / 32], *s8 = NULL;
	int32_t t8stack[16384 / 32], *t8 = NULL;
	if (a.act8) {
		if (N * a.IN > sizeof q8stack) {
			q8 = lm_alloc(N * a.IN), s8 = lm_alloc(N * a.ng * sizeof *s8);
			t8 = lm_alloc(N * a.ng * sizeof *t8);
			if (!q8 || !s8 || !t8) {
				lm_free(q8), lm_free(s8), lm_free(t8), lm_free(xs);
				return -1;
			}
		}
		int8_t *q = q8 ? q8 : q8stack;
		float *sc = s8 ? s8 : s8stack;
		int32_t *su = t8 ? t8 : t8stack;
		mv_x8_quantize(q, sc, su, x, N, a.IN, a.G, a.ng);
		a.x8 = q, a.x8scale = sc, a.x8sum = su;
	}
	lm_parallel_for_hot(parts, 1, (int)parts, mv_units, &j);
	lm_free(xs), lm_free(q8), lm_free(s8), lm_free(t8);
	return 0;
}


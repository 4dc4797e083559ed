/* matvec_kern.h: what matvec.c and its per-instruction-set kernel files share: one product's
 * arguments, the row-kernel type, the scalar element and group readers, and each set's
 * kernel chooser. Private to common/nn/matvec*.c. The kernels live in their own files so
 * that the build compiles them side by side (one file of every set took most of a build,
 * over six minutes under ASan). */
#ifndef LM_MATVEC_KERN_H
#define LM_MATVEC_KERN_H

#include "dtype.h"
#include "rows.h"
#include "simd.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define MV_X86 1
#include <immintrin.h>
#endif

#define MV_NB 4                       /* rows of x per pass over a chunk of W */

/* one product: W's rows and layout, where y goes */
struct mv_args {
	const void *w;
	enum lm_dtype dt;
	size_t IN, ldy, r0;
	float beta;
	size_t rb;               /* bytes per row of W */
	int bits;                /* packed: code width, 0 for f32/f16/bf16 */
	size_t G, ng, gb;        /* packed: inputs per group, groups per row, bytes per group */
	/* kept sparse (model.h): the payload's parts, and for the N:M vector loops
	 * (matvec_sparse_isa.h) the window of x a vector of kept values spans (2 or 4 vectors:
	 * permutes; 3: a gather; 5: 2:4 on AVX2, x reordered by pair_x; 0: plain C rows), each lane's group start (j / n * m) and the
	 * shift of its position bits ((j % 8) * pb; spshw: j * pb, all VL from one word) */
	int sparse, spwin;
	struct lm_sparse_view sv;
	int32_t spbase[16], spsh[16], spshw[16];
	int xsplit;              /* x reordered by split_x in blocks of xsplit inputs (4-bit rows) */
	/* 4-bit rows on 8-bit x (lm_matvec_set_act8): x rounded per group of G inputs, laid out
	 * for the kernels' byte products (mv_x8_quantize); the rows' x argument is unused */
	int act8;
	const int8_t *x8;        /* [N, IN], each group split in blocks as mv_x8_quantize says */
	const float *x8scale;    /* [N, ng]: x ~ x8scale * x8 within a group */
	const int32_t *x8sum;    /* [N, ng]: the sum of a group's x8, for the zero point */
};

/* rows [o0, o1) of W against nb <= MV_NB rows of x (stride IN), into y (rows ldy apart,
 * column o - r0) */
typedef void mv_rows_fn(const struct mv_args *a, const float *x, float *y, size_t nb,
                        size_t o0, size_t o1);



static inline float mv_scalar_w(const void *w, enum lm_dtype dt, size_t i)
{
	if (dt == LM_F32)
		return ((const float *)w)[i];
	if (dt == LM_F16)
		return h2f(((const uint16_t *)w)[i]);
	return bf2f(((const uint16_t *)w)[i]);
}

/* code i of a group's code bytes c (b bits, may straddle two bytes; quant.h has the layout) */
static inline int mv_code(const uint8_t *c, size_t i, int bits)
{
	size_t bit = i * (size_t)bits, byte = bit >> 3;
	unsigned v = c[byte];
	if ((bit & 7) + (size_t)bits > 8)
		v |= (unsigned)c[byte + 1] << 8;
	return (int)((v >> (bit & 7)) & ((1u << bits) - 1));
}

static inline void mv_group_grid(const uint8_t *grp, float *scale, int *zero)
{
	struct lm_qgroup h;
	memcpy(&h, grp, sizeof h); /* groups are not always 2-byte aligned */
	*scale = h2f(h.scale);
	*zero = h.zero;
}

static inline void mv_store(float *y, size_t ldy, size_t j, const float *s, size_t nb, float beta)
{
	for (size_t n = 0; n < nb; n++)
		y[n * ldy + j] = beta != 0.0f ? y[n * ldy + j] + s[n] : s[n];
}

/* ---- 4-bit rows on 8-bit x (matvec_x8.c) ---- */

/* x [N, IN] rounded to int8 per group of G inputs (scale = max |x| / 127, nearest even) into
 * q, scale and sum ([N, ng] each); each group's codes in blocks of 64 inputs, the 32 even
 * ones then the 32 odd ones (the low and high nibbles of 32 code bytes), a last block of 32
 * likewise 16 and 16. G is a multiple of 32. */
void mv_x8_quantize(int8_t *q, float *scale, int32_t *sum, const float *x, size_t N, size_t IN,
                    size_t G, size_t ng);
/* plain C 4-bit rows on a->x8: the same integer sum per group as the SIMD rows, summed over
 * the groups in float in another order */
void mv_rows_q4x8_scalar(const struct mv_args *a, const float *x, float *y, size_t nb,
                         size_t o0, size_t o1);

#ifdef MV_X86

/* n (2, 3, 4, 6 or 8, a constant after inlining) little-endian bytes at p as an integer,
 * read in loads of their own width: bytes gathered on the stack by a memcpy of 3 or 6 and
 * read back as one word would stall on store forwarding (q3 decoded ten times slower) */
static inline __attribute__((always_inline)) uint64_t mv_le(const uint8_t *p, int n)
{
	uint16_t h;
	uint32_t w;
	uint64_t d;
	switch (n) {
	case 2: memcpy(&h, p, 2); return h;
	case 3: memcpy(&h, p, 2); return h | (uint64_t)p[2] << 16;
	case 4: memcpy(&w, p, 4); return w;
	case 6: memcpy(&w, p, 4), memcpy(&h, p + 4, 2); return w | (uint64_t)h << 32;
	default: memcpy(&d, p, 8); return d;
	}
}

/* AVX2 + FMA + F16C; the AVX-512 set also reads group headers with mv_grid_f16c */
#define AVX2_T __attribute__((target("avx2,fma,f16c")))

/* a group's header (struct lm_qgroup) with F16C: once per 32 .. 2048 weights, where the
 * branch-free scalar f16 conversion was a fifth of a 4-bit loop over groups of 128 */
static inline __attribute__((always_inline)) AVX2_T void mv_grid_f16c(const uint8_t *grp,
                                                                     float *scale, int *zero)
{
	uint32_t hd;
	memcpy(&hd, grp, sizeof hd); /* scale (f16), zero, reserved; little-endian */
	*scale = _cvtsh_ss((unsigned short)(hd & 0xffffu));
	*zero = (int)((hd >> 16) & 0xffu);
}

/* each set's dense row kernels, by storage; its 4-bit rows read x split in blocks of q4split
 * inputs (split_x) */
struct mv_dense_set {
	mv_rows_fn *f32, *f16, *bf16, *q2, *q3, *q4, *q8;
	int q4split;
};
extern const struct mv_dense_set lm_mv_dense_avx2, lm_mv_dense_avx512;

/* each set's sparse row kernel for a, NULL where it has none; a->spwin set first */
mv_rows_fn *lm_mv_sparse_avx2(struct mv_args *a);
mv_rows_fn *lm_mv_sparse_avx512(struct mv_args *a);
/* 4-bit rows on 8-bit x, AVX2 (matvec_x8_avx2.c; AVX-512 CPUs run it too) */
void mv_rows_q4x8_avx2(const struct mv_args *a, const float *x, float *y, size_t nb, size_t o0,
                       size_t o1);

#endif /* MV_X86 */
#endif

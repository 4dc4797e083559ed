/* matvec.c: the decode product y = x · W^T for a few rows of x, reading f32, f16, bf16 and packed weights in place with SIMD (see matvec.h).
 *
 * The loops are in matvec_isa.h, compiled here once for AVX-512 and once for AVX2 + FMA +
 * F16C through target attributes (as gemm_bf16.c does), the set chosen once from the CPU;
 * plain C rows serve other CPUs. Work is split by output rows over the pool; within a
 * thread the rows go in chunks of about 32 KiB of weights, each chunk read by every block
 * of up to 4 rows of x in turn, so N > 4 reads W from DRAM once and from L1/L2 after. */
#include "matvec.h"
#include "dtype.h"
#include "pool.h"
#include "rows.h"
#include "simd.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define MV_X86 1
#include <immintrin.h>
#endif

#define MV_NB 4                       /* rows of x per pass over a chunk of W */
#define MV_CHUNK_BYTES ((size_t)32768) /* weights of one chunk of output rows */

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
};

/* rows [o0, o1) of W against nb <= MV_NB rows of x (stride IN), into y (rows ldy apart,
 * column o - r0) */
typedef void mv_rows_fn(const struct mv_args *a, const float *x, float *y, size_t nb,
                        size_t o0, size_t o1);

/* ---- what every instruction set shares: scalar elements, group headers, the store ---- */

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

/* ---- AVX2 + FMA + F16C ---- */
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

static inline AVX2_T float hsum_avx2(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* 8 codes of b bits are b bytes: one 32-bit word, each lane shifting its own code down */
static inline __attribute__((always_inline)) AVX2_T __m256i codes_avx2(const uint8_t *p, int b)
{
	uint32_t w = (uint32_t)mv_le(p, b);
	__m256i sh = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(b));
	return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)w), sh),
	                        _mm256_set1_epi32((1 << b) - 1));
}

/* 16 4-bit codes from 8 bytes, minus the zero point z: each byte widened to a lane, its low
 * nibble the even code and its high nibble the odd one, so w0 holds codes 0, 2, .., 14 and
 * w1 codes 1, 3, .., 15; x comes split to match (split_x, blocks of 16) */
static inline __attribute__((always_inline)) AVX2_T void pair4_avx2(const uint8_t *p, __m256i z,
                                                                   __m256 *w0, __m256 *w1)
{
	__m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
	*w0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, _mm256_set1_epi32(15)), z));
	*w1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v, 4), z));
}

#define MV(name) name##_avx2
#define VPAIR4(p, z, w0, w1) pair4_avx2(p, z, w0, w1)
#define MV_TARGET AVX2_T
#define VL 8
#define vf __m256
#define vi __m256i
#define VZERO() _mm256_setzero_ps()
#define VSET1(f) _mm256_set1_ps(f)
#define VLOADX(p) _mm256_loadu_ps(p)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VHSUM(v) hsum_avx2(v)
#define VF16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define VBF16(p) _mm256_castsi256_ps(_mm256_slli_epi32( \
	_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#define VU8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(p)))
#define VCODES(p, b) codes_avx2(p, b)
#define VZI(z) _mm256_set1_epi32(z)
#define VQF(q, z) _mm256_cvtepi32_ps(_mm256_sub_epi32(q, z))
#include "matvec_isa.h"

/* sparse rows (matvec_sparse_isa.h): 8 positions of pb bits from w */
static inline __attribute__((always_inline)) AVX2_T __m256i pos_avx2(uint64_t w, __m256i sh, int pb)
{
	return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)w), sh),
	                        _mm256_set1_epi32((1 << pb) - 1));
}

/* x at lanes idx < 16: the two vectors' permutes, picked by idx's bit 3 */
static inline __attribute__((always_inline)) AVX2_T __m256 win2_avx2(const float *xw, __m256i idx)
{
	__m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xw), idx);
	__m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xw + 8), idx);
	return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

/* 2:4 (window mode 5): x at lanes idx from a block of 16 inputs reordered by pair_x, so
 * that each 128-bit half of the block's two vectors holds the four inputs of the groups its
 * lanes read: in-lane permutes of the two's halves and a fixed blend, where VWIN2's two
 * lane-crossing permutes needed a shift and a variable blend to pick each lane's vector */
static inline __attribute__((always_inline)) AVX2_T __m256 winp_avx2(const float *xw, __m256i idx)
{
	__m256 a = _mm256_permutevar_ps(_mm256_loadu_ps(xw), idx);     /* groups 0 and 2 */
	__m256 b = _mm256_permutevar_ps(_mm256_loadu_ps(xw + 8), idx); /* groups 1 and 3 */
	return _mm256_blend_ps(a, b, 0xcc);
}

/* lane j of a byte's bitmap chunk takes kept value bm_lane8[mask][j] & 7 (the set bits
 * below j), and keeps it where the lane's sign bit is set (bit j of the mask): one load
 * gives the permute its indices and the blend its mask (vpermps reads only the low three
 * bits), where widening byte indices and testing the mask's bits took five operations */
static int32_t bm_lane8[256][8];

static void bm_lane8_init(void)
{
	for (unsigned mk = 0; mk < 256; mk++)
		for (unsigned j = 0; j < 8; j++)
			bm_lane8[mk][j] = (int32_t)((unsigned)__builtin_popcount(mk & ((1u << j) - 1)) |
			                            (mk >> j & 1u) << 31);
}

/* 8 weights of a bitmap chunk: the next popcount(mk) values at val, in mk's lanes; whole:
 * 8 values may be read at val (else the payload's last ones, copied out first) */
static inline __attribute__((always_inline)) AVX2_T __m256 bm_avx2(const uint8_t *val, enum lm_dtype dt,
                                                                  unsigned mk, int whole)
{
	const size_t es = dt == LM_F32 ? 4 : 2;
	uint8_t buf[32];
	const uint8_t *p = val;
	__m256 f;
	if (!whole) { /* the payload's last values: no read past it */
		memset(buf, 0, sizeof buf);
		memcpy(buf, val, (size_t)__builtin_popcount(mk) * es);
		p = buf;
	}
	if (dt == LM_F32)
		f = _mm256_loadu_ps((const float *)(const void *)p);
	else if (dt == LM_F16)
		f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
	else
		f = _mm256_castsi256_ps(_mm256_slli_epi32(
		    _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)), 16));
	__m256i lane = _mm256_loadu_si256((const __m256i *)(const void *)bm_lane8[mk]);
	return _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_permutevar8x32_ps(f, lane),
	                        _mm256_castsi256_ps(lane));
}

#define VLOADI(p) _mm256_loadu_si256((const __m256i *)(const void *)(p))
#define VADDI(a, b) _mm256_add_epi32(a, b)
#define VPOS(w, sh, pb) pos_avx2(w, sh, pb)
#define VPOSW(w, sh, pb) _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(w)), sh), \
                                          _mm256_set1_epi32((1 << (pb)) - 1))
#define VWIN2(xw, idx) win2_avx2(xw, idx)
#define VGATHER(xw, idx) _mm256_i32gather_ps(xw, idx, 4)
#define VWIN4(xw, idx) VGATHER(xw, idx)
#define VWINP(xw, idx) winp_avx2(xw, idx)
#define VPOSR(w, sh) _mm256_srlv_epi32(_mm256_set1_epi32((int)(w)), sh)
#define VBM(val, dt, mk, end) bm_avx2(val, dt, mk, (size_t)((end) - (val)) >= 8 * (dt == LM_F32 ? 4u : 2u))
#define VBMW(val, dt, mk) bm_avx2(val, dt, mk, 1)
#include "matvec_sparse_isa.h"
#undef VLOADI
#undef VADDI
#undef VPOS
#undef VPOSW
#undef VWIN2
#undef VGATHER
#undef VWIN4
#undef VWINP
#undef VPOSR
#undef VBM
#undef VBMW
#undef MV
#undef MV_TARGET
#undef VL
#undef vf
#undef vi
#undef VZERO
#undef VSET1
#undef VLOADX
#undef VFMA
#undef VADD
#undef VHSUM
#undef VF16
#undef VBF16
#undef VU8
#undef VCODES
#undef VZI
#undef VQF
#undef VPAIR4

/* ---- AVX-512 (F, BW, VL) ---- */
#define AVX512_T __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/* 16 codes of b bits are 2b bytes: lanes 0-7 shift their codes out of the low 8b bits,
 * lanes 8-15 out of the next 8b */
static inline __attribute__((always_inline)) AVX512_T __m512i codes_avx512(const uint8_t *p, int b)
{
	uint64_t w = mv_le(p, 2 * b);
	__m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)(uint32_t)w)),
	                               _mm256_set1_epi32((int)(uint32_t)(w >> (8 * b))), 1);
	__m512i sh = _mm512_mullo_epi32(
	    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi32(b));
	return _mm512_and_si512(_mm512_srlv_epi32(v, sh), _mm512_set1_epi32((1 << b) - 1));
}

/* 32 4-bit codes from 16 bytes, as pair4_avx2 does it (x split in blocks of 32); unused
 * while AVX-512 has its own 4-bit rows (MV_OWN_Q4), kept so the shared loops compile */
static inline __attribute__((always_inline)) AVX512_T void
pair4_avx512(const uint8_t *p, __m512i z, __m512 *w0, __m512 *w1)
{
	__m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
	*w0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, _mm512_set1_epi32(15)), z));
	*w1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 4), z));
}

#define MV(name) name##_avx512
#define VPAIR4(p, z, w0, w1) pair4_avx512(p, z, w0, w1)
#define MV_OWN_Q4 /* rows_q4_lut_avx512 below */
#define MV_TARGET AVX512_T
#define VL 16
#define vf __m512
#define vi __m512i
#define VZERO() _mm512_setzero_ps()
#define VSET1(f) _mm512_set1_ps(f)
#define VLOADX(p) _mm512_loadu_ps(p)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define VF16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define VBF16(p) _mm512_castsi512_ps(_mm512_slli_epi32( \
	_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define VU8(p) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#define VCODES(p, b) codes_avx512(p, b)
#define VZI(z) _mm512_set1_epi32(z)
#define VQF(q, z) _mm512_cvtepi32_ps(_mm512_sub_epi32(q, z))
#include "matvec_isa.h"

/* sparse rows (matvec_sparse_isa.h): 16 positions of pb bits from w, lanes 8-15 from
 * its bits 8 pb on */
static inline __attribute__((always_inline)) AVX512_T __m512i pos_avx512(uint64_t w, __m512i sh, int pb)
{
	__m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)(uint32_t)w)),
	                               _mm256_set1_epi32((int)(uint32_t)(w >> (8 * pb))), 1);
	return _mm512_and_si512(_mm512_srlv_epi32(v, sh), _mm512_set1_epi32((1 << pb) - 1));
}

/* a 4-bit group's 16 values scale * (q - zero), (q - zero) exact: one rounding each, as
 * lm_q_value and the dense q4 rows */
static inline __attribute__((always_inline)) AVX512_T __m512 q4lut_avx512(float scale, int zero)
{
	const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	return _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_sub_ps(iota, _mm512_set1_ps((float)zero)));
}

/* 16 consecutive 4-bit codes (8 bytes at p) looked up in lut: lane j takes byte j / 2,
 * shifted right by 4 for odd j; vpermps reads only the index's low 4 bits, so no mask */
static inline __attribute__((always_inline)) AVX512_T __m512 q4w_avx512(const uint8_t *p, __m512 lut)
{
	const __m512i half = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
	const __m512i nib = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
	__m512i b = _mm512_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
	return _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_permutexvar_epi32(half, b), nib), lut);
}

/* x at lanes idx < 64: two two-vector permutes, picked by idx's bit 5 */
static inline __attribute__((always_inline)) AVX512_T __m512 win4_avx512(const float *xw, __m512i idx)
{
	__m512 lo = _mm512_permutex2var_ps(_mm512_loadu_ps(xw), idx, _mm512_loadu_ps(xw + 16));
	__m512 hi = _mm512_permutex2var_ps(_mm512_loadu_ps(xw + 32), idx, _mm512_loadu_ps(xw + 48));
	return _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), lo, hi);
}

/* 16 weights of a bitmap chunk: the next popcount(mk) values at val, expanded into mk's
 * lanes; whole: 64 bytes may be read at val (a plain load; else a masked one, nothing past
 * the values read) */
static inline __attribute__((always_inline)) AVX512_T __m512 bm_avx512(const uint8_t *val,
                                                                      enum lm_dtype dt, unsigned mk,
                                                                      int whole)
{
	const __mmask16 lo = (__mmask16)((1u << __builtin_popcount(mk)) - 1);
	__m512 f;
	if (dt == LM_F32) {
		f = whole ? _mm512_loadu_ps(val) : _mm512_maskz_loadu_ps(lo, val);
	} else {
		__m256i h = whole ? _mm256_loadu_si256((const __m256i *)(const void *)val)
		                  : _mm256_maskz_loadu_epi16(lo, val);
		f = dt == LM_F16 ? _mm512_cvtph_ps(h)
		                 : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
	}
	return _mm512_maskz_expand_ps((__mmask16)mk, f);
}

#define VLOADI(p) _mm512_loadu_si512((const void *)(p))
#define VADDI(a, b) _mm512_add_epi32(a, b)
#define VPOS(w, sh, pb) pos_avx512(w, sh, pb)
#define VPOSW(w, sh, pb) _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int)(w)), sh), \
                                          _mm512_set1_epi32((1 << (pb)) - 1))
#define VQ4LUT(scale, zero) q4lut_avx512(scale, zero)
#define VQ4W(p, lut) q4w_avx512(p, lut)
#define VWIN2(xw, idx) _mm512_permutex2var_ps(_mm512_loadu_ps(xw), idx, _mm512_loadu_ps((xw) + 16))
#define VWIN4(xw, idx) win4_avx512(xw, idx)
#define VGATHER(xw, idx) _mm512_i32gather_ps(idx, xw, 4)
#define VBM(val, dt, mk, end) bm_avx512(val, dt, mk, (end) - (val) >= 64)
#define VBMW(val, dt, mk) bm_avx512(val, dt, mk, 1)
#include "matvec_sparse_isa.h"
#undef VLOADI
#undef VADDI
#undef VPOS
#undef VPOSW
#undef VWIN2
#undef VQ4LUT
#undef VQ4W
#undef VWIN4
#undef VGATHER
#undef VBM
#undef VBMW
#undef MV
#undef MV_TARGET
#undef VL
#undef vf
#undef vi
#undef VZERO
#undef VSET1
#undef VLOADX
#undef VFMA
#undef VADD
#undef VHSUM
#undef VF16
#undef VBF16
#undef VU8
#undef VCODES
#undef VZI
#undef VQF
#undef VPAIR4
#undef MV_OWN_Q4

/* 4-bit rows on AVX-512 by table: a group's 16 values scale * (q - zero) in one register,
 * each code picks its value with vpermps (which reads only an index's low 4 bits). 16 code
 * bytes widened to 16 lanes give the 16 even codes (low nibbles) and, shifted by 4, the 16
 * odd ones; x comes split to match (split_x: per 32 inputs, the even ones then the odd
 * ones), so no instruction puts the codes back in order. Each weight is exactly its
 * dequantized value, as in the tile path. */
static inline __attribute__((always_inline)) AVX512_T void
dot_q4_lut(float *s, const uint8_t *row, size_t G, size_t ng, size_t gb, const float *x,
           size_t IN, size_t nb)
{
	__m512 a0[MV_NB], a1[MV_NB], a2[MV_NB], a3[MV_NB];
	float st[MV_NB];
	for (size_t n = 0; n < nb; n++)
		a0[n] = a1[n] = a2[n] = a3[n] = _mm512_setzero_ps(), st[n] = 0.0f;
	for (size_t g = 0; g < ng; g++) {
		const uint8_t *grp = row + g * gb, *c = grp + 4;
		const float *xg = x + g * G;
		float scale;
		int zero;
		mv_grid_f16c(grp, &scale, &zero);
		const __m512 lut = q4lut_avx512(scale, zero);
		size_t i = 0;
		/* 64 codes per step on four chains while nb <= 2: two chains left each FMA's
		 * latency bounding a decode step (nb = 1) */
		for (; nb <= 2 && i + 64 <= G; i += 64) {
			__m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(c + i / 2)));
			__m512i u = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(c + i / 2 + 16)));
			__m512 w0 = _mm512_permutexvar_ps(v, lut), w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut);
			__m512 w2 = _mm512_permutexvar_ps(u, lut), w3 = _mm512_permutexvar_ps(_mm512_srli_epi32(u, 4), lut);
			for (size_t n = 0; n < nb; n++) {
				const float *xn = xg + n * IN + i;
				a0[n] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xn), a0[n]);
				a1[n] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xn + 16), a1[n]);
				a2[n] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xn + 32), a2[n]);
				a3[n] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xn + 48), a3[n]);
			}
		}
		for (; i + 32 <= G; i += 32) {
			__m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(c + i / 2)));
			__m512 w0 = _mm512_permutexvar_ps(v, lut);                        /* codes i, i+2, ... */
			__m512 w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut);  /* i+1, i+3, ... */
			for (size_t n = 0; n < nb; n++) {
				a0[n] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xg + n * IN + i), a0[n]);
				a1[n] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xg + n * IN + i + 16), a1[n]);
			}
		}
		for (; i < G; i++) { /* only per-row groups (G = IN) have a tail */
			float wi = scale * (float)(mv_code(c, i, 4) - zero);
			for (size_t n = 0; n < nb; n++)
				st[n] += wi * xg[n * IN + i];
		}
	}
	for (size_t n = 0; n < nb; n++)
		s[n] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0[n], a1[n]),
		                                          _mm512_add_ps(a2[n], a3[n]))) + st[n];
}

static inline __attribute__((always_inline)) AVX512_T void
rows_q4_lut_nb(const struct mv_args *a, const float *x, float *y, size_t o0, size_t o1, size_t nb)
{
	for (size_t o = o0; o < o1; o++) {
		float s[MV_NB];
		dot_q4_lut(s, (const uint8_t *)a->w + o * a->rb, a->G, a->ng, a->gb, x, a->IN, nb);
		mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);
	}
}

static AVX512_T void rows_q4_lut_avx512(const struct mv_args *a, const float *x, float *y,
                                        size_t nb, size_t o0, size_t o1)
{
	switch (nb) {
	case 1: rows_q4_lut_nb(a, x, y, o0, o1, 1); break;
	case 2: rows_q4_lut_nb(a, x, y, o0, o1, 2); break;
	case 3: rows_q4_lut_nb(a, x, y, o0, o1, 3); break;
	default: rows_q4_lut_nb(a, x, y, o0, o1, 4); break;
	}
}

#endif /* MV_X86 */

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
	if (a->sv.l.kind == LM_LAYOUT_BITMAP && isa == LM_MATVEC_AVX2 && !bm_lane8[255][7])
		bm_lane8_init(); /* before the threads start */
	return isa == LM_MATVEC_AVX512 ? sparse_rows_for_avx512(a) : sparse_rows_for_avx2(a);
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
	if (isa == LM_MATVEC_SCALAR)
		return rows_scalar;
#ifdef MV_X86
	int wide = isa == LM_MATVEC_AVX512;
	switch (a->dt) {
	case LM_F32: return wide ? rows_f32_avx512 : rows_f32_avx2;
	case LM_F16: return wide ? rows_f16_avx512 : rows_f16_avx2;
	case LM_BF16: return wide ? rows_bf16_avx512 : rows_bf16_avx2;
	default: break;
	}
	switch (a->bits) {
	case 2: return wide ? rows_q2_avx512 : rows_q2_avx2;
	case 3: return wide ? rows_q3_avx512 : rows_q3_avx2;
	case 4: return wide ? rows_q4_lut_avx512 : rows_q4_avx2;
	case 8: return wide ? rows_q8_avx512 : rows_q8_avx2;
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
};

static void mv_part(void *ctx, size_t o0, size_t o1, int part)
{
	const struct mv_job *j = ctx;
	(void)part;
	/* the pool hands out [0, nr); W's rows start at r0 */
	o0 += j->a->r0, o1 += j->a->r0;
	for (size_t c0 = o0; c0 < o1; c0 += j->chunk) {
		size_t c1 = c0 + j->chunk < o1 ? c0 + j->chunk : o1;
		for (size_t n0 = 0; n0 < j->N; n0 += MV_NB)
			j->fn(j->a, j->x + n0 * j->a->IN, j->y + n0 * j->a->ldy,
			      j->N - n0 < MV_NB ? j->N - n0 : MV_NB, c0, c1);
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
	struct mv_job j = {&a, fn, x, y, N, a.rb ? MV_CHUNK_BYTES / a.rb : 1};
	if (j.chunk < 1)
		j.chunk = 1;
	/* x reordered for the kernels that read it so (the 4-bit rows: split_x; AVX2 2:4 rows:
	 * pair_x): on the stack up to 64 KiB (decoding up to IN = 16384), else allocated (a few
	 * rows of a wider model) */
	float stack[16384], *xs = NULL;
#ifdef MV_X86
	const int split = fn == rows_q4_lut_avx512 || fn == rows_q4_avx2;
	if (split || (a.sparse && a.spwin == 5)) {
		if (N * a.IN > sizeof stack / sizeof *stack &&
		    !(xs = lm_alloc(N * a.IN * sizeof *xs)))
			return -1;
		float *d = xs ? xs : stack;
		if (split)
			split_x(d, x, N, a.IN, a.G, a.ng, fn == rows_q4_avx2 ? 16 : 32);
		else
			pair_x(d, x, N, a.IN);
		j.x = d;
	}
#endif
	/* at least ~64k weights per thread: below that a wake-up costs more than it saves */
	lm_parallel_for_hot(nr, 1 + ((size_t)1 << 16) / (a.IN + 1), lm_threads(), mv_part, &j);
	lm_free(xs);
	return 0;
}

/* matvec_sparse_avx512.c: matvec.c's row kernels for sparse-kept matrices (N:M, bitmap) on
 * AVX-512: matvec_sparse_isa.h compiled over matvec_avx512.h's macros and the position,
 * window and 4-bit table helpers here. */
#include "matvec_avx512.h"

#ifdef MV_X86
/* sparse rows (matvec_sparse_isa.h): 16 positions of pb bits from w, lanes 8-15 from
 * its bits 8 pb on */
static inline __attribute__((always_inline)) AVX512_T __m512i pos_avx512(uint64_t w, __m512i sh, int pb)
{
	__m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)(uint32_t)w)),
	                               _mm256_set1_epi32((int)(uint32_t)(w >> (8 * pb))), 1);
	return _mm512_and_si512(_mm512_srlv_epi32(v, sh), _mm512_set1_epi32((1 << pb) - 1));
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

mv_rows_fn *lm_mv_sparse_avx512(struct mv_args *a)
{
	return sparse_rows_for_avx512(a);
}
#endif

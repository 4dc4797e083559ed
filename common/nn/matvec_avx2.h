/* matvec_avx2.h: AVX2 + FMA + F16C for matvec_isa.h and matvec_sparse_isa.h: the vector
 * macros and the helpers behind them. Included by matvec_avx2.c and matvec_sparse_avx2.c. */
#ifndef LM_MATVEC_AVX2_H
#define LM_MATVEC_AVX2_H

#include "matvec_kern.h"

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

/* 32 3-bit codes (12 bytes at p) minus z, as four vectors of 8 in order, from one 16-byte load
 * starting 4 bytes before them: a group's codes follow its 4-byte header (quant.h), so the
 * load stays inside the group, where one from p would pass the end of a matrix's last row.
 * Each 32-bit lane takes the two bytes holding its code (vpshufb, in-lane: both halves hold
 * the 16 bytes), shifts it down and masks it; vector k's bytes are vector 0's plus 3 k. Code
 * j = 8 k + i (lane i) starts at bit 3 j, byte 4 + 3 k + 3 i / 8 of the load, bit 3 i % 8;
 * the last lane's second byte (16 & 15 = 0) is masked away with the bits above its code. */
#define Q3B(k, i) ((char)(4 + 3 * (k) + 3 * (i) / 8))
#define Q3L(k, i) Q3B(k, i), (char)((Q3B(k, i) + 1) & 15), (char)0x80, (char)0x80
#define Q3IDX(k) _mm256_setr_epi8(Q3L(k, 0), Q3L(k, 1), Q3L(k, 2), Q3L(k, 3), Q3L(k, 4), \
                                  Q3L(k, 5), Q3L(k, 6), Q3L(k, 7))
static inline __attribute__((always_inline)) AVX2_T void
quad3_avx2(const uint8_t *p, __m256i z, __m256 *w0, __m256 *w1, __m256 *w2, __m256 *w3)
{
	const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(p - 4)));
	const __m256i sh = _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5), m = _mm256_set1_epi32(7);
#define Q3W(k) _mm256_cvtepi32_ps(_mm256_sub_epi32(                                        \
	_mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(v, Q3IDX(k)), sh), m), z))
	*w0 = Q3W(0), *w1 = Q3W(1), *w2 = Q3W(2), *w3 = Q3W(3);
#undef Q3W
}

/* 32 2-bit codes (the 8 bytes at p) minus z, as four vectors of 8 in order: one 8-byte load,
 * and code j = 8 k + i (vector k, lane i) in byte 2 k + i / 4, bits 2 (i % 4): never straddling */
#define Q2L(k, i) (char)(2 * (k) + (i) / 4), (char)0x80, (char)0x80, (char)0x80
#define Q2IDX(k) _mm256_setr_epi8(Q2L(k, 0), Q2L(k, 1), Q2L(k, 2), Q2L(k, 3), Q2L(k, 4), \
                                  Q2L(k, 5), Q2L(k, 6), Q2L(k, 7))
static inline __attribute__((always_inline)) AVX2_T void
quad2_avx2(const uint8_t *p, __m256i z, __m256 *w0, __m256 *w1, __m256 *w2, __m256 *w3)
{
	const __m256i v = _mm256_broadcastsi128_si256(_mm_loadl_epi64((const __m128i *)(const void *)p));
	const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6), m = _mm256_set1_epi32(3);
#define Q2W(k) _mm256_cvtepi32_ps(_mm256_sub_epi32(                                        \
	_mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(v, Q2IDX(k)), sh), m), z))
	*w0 = Q2W(0), *w1 = Q2W(1), *w2 = Q2W(2), *w3 = Q2W(3);
#undef Q2W
}

#define MV(name) name##_avx2
#define VQUAD3(p, z, w0, w1, w2, w3) quad3_avx2(p, z, w0, w1, w2, w3)
#define VQUAD2(p, z, w0, w1, w2, w3) quad2_avx2(p, z, w0, w1, w2, w3)
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

#endif

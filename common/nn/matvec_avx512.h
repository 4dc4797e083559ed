/* matvec_avx512.h: AVX-512 (F, BW, VL) for matvec_isa.h and matvec_sparse_isa.h: the vector
 * macros and the helpers behind them. Included by matvec_avx512.c and
 * matvec_sparse_avx512.c. */
#ifndef LM_MATVEC_AVX512_H
#define LM_MATVEC_AVX512_H

#include "matvec_kern.h"

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

/* 64 3-bit codes (24 bytes at p) minus z, as four vectors of 16 in order, as quad3_avx2 does
 * it for 32: each 32-bit lane takes the two bytes holding its code with vpshufb, which reads
 * within 16-byte lanes, so each vector is taken from one 16-byte load broadcast to all four.
 * Vector k's codes are bytes 6 k .. 6 k + 5; vectors 0 and 1 read them from the load at
 * p - 4 (in the group's header or the codes before: never past the end of a matrix), 2 and 3
 * from the load at p + 8, which ends at the 24th byte. Relative to its load, vector 2's bytes
 * sit where vector 0's do, 3's where 1's: two index vectors. Code j = 16 k + i (lane i) starts
 * at bit 3 i % 8 of its byte; a last code's second byte (16 & 15 = 0) is masked away. */
#define Q3B5(k, i) ((char)(4 + 6 * (k) + 3 * (i) / 8))
#define Q3L5(k, i) Q3B5(k, i), (char)((Q3B5(k, i) + 1) & 15), (char)0x80, (char)0x80
#define Q3Q5(k, i0) Q3L5(k, i0), Q3L5(k, i0 + 1), Q3L5(k, i0 + 2), Q3L5(k, i0 + 3)
static inline __attribute__((always_inline)) AVX512_T void
quad3_avx512(const uint8_t *p, __m512i z, __m512 *w0, __m512 *w1, __m512 *w2, __m512 *w3)
{
	static const char i0[64] = {Q3Q5(0, 0), Q3Q5(0, 4), Q3Q5(0, 8), Q3Q5(0, 12)};
	static const char i1[64] = {Q3Q5(1, 0), Q3Q5(1, 4), Q3Q5(1, 8), Q3Q5(1, 12)};
	const __m512i a = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(p - 4)));
	const __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)(p + 8)));
	const __m512i x0 = _mm512_loadu_si512(i0), x1 = _mm512_loadu_si512(i1), m = _mm512_set1_epi32(7);
	const __m512i sh = _mm512_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5, 0, 3, 6, 1, 4, 7, 2, 5);
#define Q3W5(v, x) _mm512_cvtepi32_ps(_mm512_sub_epi32(                                  \
	_mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_epi8(v, x), sh), m), z))
	*w0 = Q3W5(a, x0), *w1 = Q3W5(a, x1), *w2 = Q3W5(b, x0), *w3 = Q3W5(b, x1);
#undef Q3W5
}

/* 64 2-bit codes (the 16 bytes at p) minus z, as four vectors of 16 in order: one load, and
 * code j = 16 k + i (vector k, lane i) in byte 4 k + i / 4, bits 2 (i % 4) */
#define Q2L5(k, i) (char)(4 * (k) + (i) / 4), (char)0x80, (char)0x80, (char)0x80
#define Q2Q5(k, i0) Q2L5(k, i0), Q2L5(k, i0 + 1), Q2L5(k, i0 + 2), Q2L5(k, i0 + 3)
static inline __attribute__((always_inline)) AVX512_T void
quad2_avx512(const uint8_t *p, __m512i z, __m512 *w0, __m512 *w1, __m512 *w2, __m512 *w3)
{
	static const char ix[4][64] = {
		{Q2Q5(0, 0), Q2Q5(0, 4), Q2Q5(0, 8), Q2Q5(0, 12)},
		{Q2Q5(1, 0), Q2Q5(1, 4), Q2Q5(1, 8), Q2Q5(1, 12)},
		{Q2Q5(2, 0), Q2Q5(2, 4), Q2Q5(2, 8), Q2Q5(2, 12)},
		{Q2Q5(3, 0), Q2Q5(3, 4), Q2Q5(3, 8), Q2Q5(3, 12)}};
	const __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)p));
	const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6);
	const __m512i m = _mm512_set1_epi32(3);
#define Q2W5(k) _mm512_cvtepi32_ps(_mm512_sub_epi32(                                      \
	_mm512_and_si512(_mm512_srlv_epi32(_mm512_shuffle_epi8(v, _mm512_loadu_si512(ix[k])), sh), m), z))
	*w0 = Q2W5(0), *w1 = Q2W5(1), *w2 = Q2W5(2), *w3 = Q2W5(3);
#undef Q2W5
}

#define MV(name) name##_avx512
#define VQUAD3(p, z, w0, w1, w2, w3) quad3_avx512(p, z, w0, w1, w2, w3)
#define VQUAD2(p, z, w0, w1, w2, w3) quad2_avx512(p, z, w0, w1, w2, w3)
#define VPAIR4(p, z, w0, w1) pair4_avx512(p, z, w0, w1)
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

/* a 4-bit group's 16 values scale * (q - zero), (q - zero) exact: one rounding each, as
 * lm_q_value and the dense q4 rows */
static inline __attribute__((always_inline)) AVX512_T __m512 q4lut_avx512(float scale, int zero)
{
	const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
	return _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_sub_ps(iota, _mm512_set1_ps((float)zero)));
}

#endif

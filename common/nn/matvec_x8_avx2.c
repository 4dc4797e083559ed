/* matvec_x8_avx2.c: matvec_x8.c's 4-bit rows on 8-bit x for AVX2 (AVX-512 CPUs run them too).
 * Per step 32 code bytes (64 weights) are split into their low and high nibbles, each
 * multiplied by 32 bytes of x with vpmaddubsw (codes unsigned, x signed; two products of at
 * most 15 * 127 per 16-bit lane, so no saturation), the products added in 16 bits (at most
 * 4 * 3810 = 15240 over two steps) and widened into eight 32-bit sums with vpmaddwd. Per
 * group: the zero point's term in integers, then one convert and one FMA by scale * x's
 * scale. */
#include "matvec_avx2.h"

#ifdef MV_X86

/* the nb <= MV_NB rows of one row of W; nb a constant after inlining */
static inline __attribute__((always_inline)) AVX2_T void
row_q4x8(const struct mv_args *a, const uint8_t *row, float *s, size_t nb, size_t G)
{
	const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
	const __m128i m4h = _mm_set1_epi8(15);
	const size_t IN = a->IN, ng = a->ng;
	__m256 t[MV_NB];
	for (size_t n = 0; n < nb; n++)
		t[n] = _mm256_setzero_ps();
	for (size_t g = 0; g < ng; g++) {
		const uint8_t *grp = row + g * a->gb, *c = grp + 4;
		float scale;
		int zero;
		mv_grid_f16c(grp, &scale, &zero);
		__m256i acc[MV_NB];
		for (size_t n = 0; n < nb; n++)
			acc[n] = _mm256_setzero_si256();
		size_t i = 0;
		for (; i + 128 <= G; i += 128) { /* four products in 16 bits: at most 15240 */
			__m256i v0 = _mm256_loadu_si256((const __m256i *)(const void *)(c + i / 2));
			__m256i v1 = _mm256_loadu_si256((const __m256i *)(const void *)(c + i / 2 + 32));
			__m256i lo0 = _mm256_and_si256(v0, m4), lo1 = _mm256_and_si256(v1, m4);
			__m256i hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
			__m256i hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
			for (size_t n = 0; n < nb; n++) {
				const int8_t *xq = a->x8 + n * IN + g * G + i;
				__m256i p0 = _mm256_add_epi16(
					_mm256_maddubs_epi16(lo0, _mm256_loadu_si256((const __m256i *)(const void *)xq)),
					_mm256_maddubs_epi16(hi0, _mm256_loadu_si256((const __m256i *)(const void *)(xq + 32))));
				__m256i p1 = _mm256_add_epi16(
					_mm256_maddubs_epi16(lo1, _mm256_loadu_si256((const __m256i *)(const void *)(xq + 64))),
					_mm256_maddubs_epi16(hi1, _mm256_loadu_si256((const __m256i *)(const void *)(xq + 96))));
				acc[n] = _mm256_add_epi32(acc[n], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
			}
		}
		for (; i + 64 <= G; i += 64) {
			__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(c + i / 2));
			__m256i lo = _mm256_and_si256(v, m4);
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
			for (size_t n = 0; n < nb; n++) {
				const int8_t *xq = a->x8 + n * IN + g * G + i;
				__m256i p = _mm256_add_epi16(
					_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(const void *)xq)),
					_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(const void *)(xq + 32))));
				acc[n] = _mm256_add_epi32(acc[n], _mm256_madd_epi16(p, ones));
			}
		}
		if (i < G) { /* a last 32: low nibbles in the low half, high in the high half */
			__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(c + i / 2));
			__m256i lh = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m4h),
			                              _mm_and_si128(v, m4h));
			for (size_t n = 0; n < nb; n++) {
				const int8_t *xq = a->x8 + n * IN + g * G + i;
				__m256i p = _mm256_maddubs_epi16(lh, _mm256_loadu_si256((const __m256i *)(const void *)xq));
				acc[n] = _mm256_add_epi32(acc[n], _mm256_madd_epi16(p, ones));
			}
		}
		for (size_t n = 0; n < nb; n++) {
			const size_t k = n * ng + g;
			__m256i zs = _mm256_setr_epi32(zero * a->x8sum[k], 0, 0, 0, 0, 0, 0, 0);
			t[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[n], zs)),
			                       _mm256_set1_ps(scale * a->x8scale[k]), t[n]);
		}
	}
	for (size_t n = 0; n < nb; n++)
		s[n] = hsum_avx2(t[n]);
}

AVX2_T void mv_rows_q4x8_avx2(const struct mv_args *a, const float *x, float *y, size_t nb,
                              size_t o0, size_t o1)
{
	(void)x;
	for (size_t o = o0; o < o1; o++) {
		float s[MV_NB];
		const uint8_t *row = (const uint8_t *)a->w + o * a->rb;
		if (a->G == 128 && nb == 1) /* the default groups, one token: the loop unrolled */
			row_q4x8(a, row, s, 1, 128);
		else if (nb == 1)
			row_q4x8(a, row, s, 1, a->G);
		else if (nb == 2)
			row_q4x8(a, row, s, 2, a->G);
		else if (nb == 3)
			row_q4x8(a, row, s, 3, a->G);
		else
			row_q4x8(a, row, s, 4, a->G);
		mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);
	}
}
#endif

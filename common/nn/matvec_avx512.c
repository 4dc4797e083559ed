/* matvec_avx512.c: matvec.c's dense row kernels for AVX-512: matvec_isa.h compiled over
 * matvec_avx512.h's macros, and 4-bit rows of their own, by table. */
#include "matvec_avx512.h"

#ifdef MV_X86
#define MV_OWN_Q4 /* rows_q4_lut_avx512 below */
#include "matvec_isa.h"

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

/* dot_q4_lut reads x split in blocks of 32 */
const struct mv_dense_set lm_mv_dense_avx512 = {rows_f32_avx512, rows_f16_avx512, rows_bf16_avx512,
                                                rows_q2_avx512, rows_q3_avx512, rows_q4_lut_avx512,
                                                rows_q8_avx512, 32};
#endif

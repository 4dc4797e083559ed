/* matvec_x8.c: the decode product's 4-bit rows on 8-bit activations (lm_matvec_set_act8):
 * x rounded to int8 per quantization group, and the plain C rows over it.
 *
 * Why: a 4-bit weight in float costs a widen, a mask or shift, a subtract, a convert and an
 * FMA per 8 weights on AVX2, so q4 decode is bound by instructions at a third of what memory
 * allows (bench/decode.md, the kernel probe). With x in int8, the codes multiply x as bytes
 * (vpmaddubsw: 32 products a step, llama.cpp's Q4 x Q8), and per group one integer sum,
 *   sum_i (q_i - z) x8_i = sum_i q_i x8_i - z sum_i x8_i,
 * exact in integers, then one float multiply by the weights' scale times x's. The values
 * change: x is off by up to half its group's step (max |x| / 254), which is why the user asks
 * for it (lm-eval --act8). */
#include "matvec_kern.h"

#include <math.h>

/* position of input i of a group within its split layout (mv_x8_quantize) */
static size_t x8_pos(size_t i, size_t G)
{
	const size_t full = G / 64 * 64, blk = i < full ? 64 : 32, b0 = i < full ? i / 64 * 64 : full;
	const size_t r = i - b0;
	return b0 + (r % 2 ? blk / 2 + r / 2 : r / 2);
}

void mv_x8_quantize(int8_t *q, float *scale, int32_t *sum, const float *x, size_t N, size_t IN,
                    size_t G, size_t ng)
{
	for (size_t n = 0; n < N; n++)
		for (size_t g = 0; g < ng; g++) {
			const float *xg = x + n * IN + g * G;
			int8_t *qg = q + n * IN + g * G;
			float m = 0.0f;
			int nan = 0;
			for (size_t i = 0; i < G; i++) {
				float v = fabsf(xg[i]);
				m = v > m ? v : m;
				nan |= v != v;
			}
			const float inv = m > 0.0f ? 127.0f / m : 0.0f;
			int32_t t = 0;
			for (size_t i = 0; i < G; i++) {
				/* |x * inv| <= 127 up to rounding: clamped, a last-bit excess stays a byte */
				float v = rintf(xg[i] * inv);
				v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;
				qg[x8_pos(i, G)] = (int8_t)v;
				t += (int32_t)v;
			}
			/* a NaN in x makes the group's scale NaN, so y is NaN as the float rows give */
			scale[n * ng + g] = nan ? NAN : m / 127.0f;
			sum[n * ng + g] = t;
		}
}

void mv_rows_q4x8_scalar(const struct mv_args *a, const float *x, float *y, size_t nb,
                         size_t o0, size_t o1)
{
	(void)x;
	for (size_t o = o0; o < o1; o++) {
		float s[MV_NB] = {0};
		const uint8_t *row = (const uint8_t *)a->w + o * a->rb;
		for (size_t g = 0; g < a->ng; g++) {
			const uint8_t *grp = row + g * a->gb;
			float scale;
			int zero;
			mv_group_grid(grp, &scale, &zero);
			for (size_t n = 0; n < nb; n++) {
				const int8_t *xq = a->x8 + n * a->IN + g * a->G;
				int32_t d = 0;
				for (size_t i = 0; i < a->G; i++)
					d += mv_code(grp + 4, i, 4) * (int32_t)xq[x8_pos(i, a->G)];
				d -= zero * a->x8sum[n * a->ng + g];
				s[n] += scale * a->x8scale[n * a->ng + g] * (float)d;
			}
		}
		mv_store(y, a->ldy, o - a->r0, s, nb, a->beta);
	}
}

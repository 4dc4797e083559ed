/* gemm_bf16.c: a bf16 GEMM of our own for nn.Linear shapes, on vdpbf16ps, since Debian's OpenBLAS has no sbgemm.
 *
 * C = beta*C + A * B^T with A [M x K] activations and B [N x K] weights, both rounded to bf16
 * (round to nearest even) while packed, products summed in fp32 by _mm512_dpbf16_ps, which
 * multiplies a pair of bf16 per 32-bit lane. So both operands are packed as K pairs:
 *   A: per row, one uint32 per pair (broadcast to all lanes by the micro-kernel);
 *   B: panels of NR = 32 columns, each pair p a row of 32 uint32 (two zmm loads).
 * Blocking: KC = 128 pairs (K 256) so a B panel block (16 KiB) stays in L1 while the
 * micro-kernel walks all row blocks of MR = 8 (16 zmm accumulators); A's packed block
 * (M x 512 bytes) stays in L2. Edges: rows and columns are masked, an odd K pads a zero. */
#include "gemm_bf16.h"
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MR 8
#define NR 32
#define KC 128 /* pairs */

#define BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))

int lm_gemm_bf16_available(void)
{
	const char *off = getenv("LM_NO_BF16");
	if (off && strcmp(off, "1") == 0)
		return 0;
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512bf16") != 0;
}

/* fp32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN */
static uint32_t bf16_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (u >> 16) | 0x40u;
	return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

static uint32_t pair(const float *x, size_t k, size_t K)
{
	uint32_t lo = bf16_bits(x[k]), hi = k + 1 < K ? bf16_bits(x[k + 1]) : 0;
	return lo | hi << 16;
}

/* acc[r] += A rows i..i+mr over pairs [0, kp) of block times the B panel block; masked store */
BF16_TARGET static void kernel(float *C, size_t ldc, const uint32_t *ap, size_t lda,
                               const uint32_t *bp, size_t kp, size_t mr, size_t nr, int add)
{
	__m512 acc[MR][2];
	for (size_t r = 0; r < MR; r++)
		acc[r][0] = acc[r][1] = _mm512_setzero_ps();
	for (size_t p = 0; p < kp; p++) {
		__m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + p * NR);
		__m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + p * NR + 16);
#define ROW(r) if (r < mr) { \
		__m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[r * lda + p]); \
		acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0); \
		acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1); }
		ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
	}
	__mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
	__mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
	for (size_t r = 0; r < mr; r++) {
		float *c = C + r * ldc;
		__m512 v0 = acc[r][0], v1 = acc[r][1];
		if (add) {
			v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, c));
			v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, c + 16));
		}
		_mm512_mask_storeu_ps(c, m0, v0);
		_mm512_mask_storeu_ps(c + 16, m1, v1);
	}
}

int lm_gemm_bf16_nt(float *C, size_t ldc, const float *A, const float *B, size_t M, size_t N,
                    size_t K, float beta)
{
	if (M == 0 || N == 0)
		return 0;
	size_t KP = (K + 1) / 2;
	uint32_t *ap = malloc((M * KP + 1) * sizeof *ap);
	uint32_t *bp = malloc((KC * NR + 1) * sizeof *bp);
	if (!ap || !bp) {
		free(ap);
		free(bp);
		return -1;
	}
	for (size_t i = 0; i < M; i++)
		for (size_t p = 0; p < KP; p++)
			ap[i * KP + p] = pair(A + i * K, 2 * p, K);
	if (beta != 1.0f)
		for (size_t i = 0; i < M; i++)
			for (size_t j = 0; j < N; j++)
				C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
	for (size_t p0 = 0; p0 < KP; p0 += KC) {
		size_t kp = KP - p0 < KC ? KP - p0 : KC;
		for (size_t j0 = 0; j0 < N; j0 += NR) {
			size_t nr = N - j0 < NR ? N - j0 : NR;
			for (size_t p = 0; p < kp; p++)
				for (size_t c = 0; c < NR; c++)
					bp[p * NR + c] = c < nr ? pair(B + (j0 + c) * K, 2 * (p0 + p), K) : 0;
			for (size_t i0 = 0; i0 < M; i0 += MR) {
				size_t mr = M - i0 < MR ? M - i0 : MR;
				kernel(C + i0 * ldc + j0, ldc, ap + i0 * KP + p0, KP, bp, kp, mr, nr, 1);
			}
		}
	}
	free(ap);
	free(bp);
	return 0;
}

/* gemm_bf16.c: a bf16 GEMM of our own for nn.Linear shapes, on vdpbf16ps, since Debian's OpenBLAS has no sbgemm.
 *
 * C = beta*C + A * B^T with A [M x K] activations and B [N x K] weights, both rounded to bf16
 * (round to nearest even) while packed, products summed in fp32 by _mm512_dpbf16_ps, which
 * multiplies a pair of bf16 per 32-bit lane. So both operands are packed as K pairs:
 *   A: per row, one uint32 per pair (broadcast to all lanes by the micro-kernel);
 *   B: panels of NR = 32 columns, each pair p a row of 32 uint32 (two zmm loads).
 * Blocking: KC = 128 pairs (K 256) so a B panel block (16 KiB) stays in L1 while the
 * micro-kernel walks all row blocks of MR = 8 (16 zmm accumulators); A's packed block
 * (M x 512 bytes) stays in L2. Edges: rows and columns are masked, an odd K pads a zero.
 * Threads: A is packed once, rows split over the pool; then each thread takes its own
 * column panels (or row blocks, for a narrow C) with its own B panel buffer (gemm_part). */
#include "gemm_bf16.h"
#include "pool.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MR 8
#define NR 32
#define KC 128 /* pairs */

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

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

/* One GEMM's work, split over the pool either by column panels (nn.Linear shapes: many
 * output features) or, when there are fewer panels than threads (a narrow tile), by row
 * blocks. Either way each element of C is summed by one thread over the same K blocks in
 * the same order, so C does not depend on the thread count. */
struct gemm_job {
	float *C;
	size_t ldc;
	const float *A, *B;
	size_t M, N, K, KP;
	float beta;
	uint32_t *ap, *bp; /* A packed whole (shared); one B panel block per part */
	int by_rows;
};

/* rows [r0, r1) of A packed as pairs, and the same rows of C scaled by beta */
static void pack_part(void *ctx, size_t r0, size_t r1, int part)
{
	const struct gemm_job *j = ctx;
	(void)part;
	for (size_t i = r0; i < r1; i++)
		for (size_t p = 0; p < j->KP; p++)
			j->ap[i * j->KP + p] = pair(j->A + i * j->K, 2 * p, j->K);
	if (j->beta != 1.0f)
		for (size_t i = r0; i < r1; i++)
			for (size_t c = 0; c < j->N; c++)
				j->C[i * j->ldc + c] = j->beta == 0.0f ? 0.0f : j->beta * j->C[i * j->ldc + c];
}

/* units [u0, u1): column panels, or row blocks of MR when by_rows */
static void gemm_part(void *ctx, size_t u0, size_t u1, int part)
{
	const struct gemm_job *j = ctx;
	uint32_t *bp = j->bp + (size_t)part * KC * NR;
	size_t np = (j->N + NR - 1) / NR;
	size_t pa = j->by_rows ? 0 : u0, pb = j->by_rows ? np : u1;
	size_t ra = j->by_rows ? u0 * MR : 0, rb = j->by_rows ? min_sz(u1 * MR, j->M) : j->M;
	for (size_t p0 = 0; p0 < j->KP; p0 += KC) {
		size_t kp = min_sz(j->KP - p0, KC);
		for (size_t jp = pa; jp < pb; jp++) {
			size_t j0 = jp * NR, nr = min_sz(j->N - j0, NR);
			for (size_t p = 0; p < kp; p++)
				for (size_t c = 0; c < NR; c++)
					bp[p * NR + c] = c < nr ? pair(j->B + (j0 + c) * j->K, 2 * (p0 + p), j->K) : 0;
			for (size_t i0 = ra; i0 < rb; i0 += MR)
				kernel(j->C + i0 * j->ldc + j0, j->ldc, j->ap + i0 * j->KP + p0, j->KP, bp, kp,
				       min_sz(rb - i0, MR), nr, 1);
		}
	}
}

int lm_gemm_bf16_nt(float *C, size_t ldc, const float *A, const float *B, size_t M, size_t N,
                    size_t K, float beta)
{
	if (M == 0 || N == 0)
		return 0;
	size_t KP = (K + 1) / 2, np = (N + NR - 1) / NR, nb = (M + MR - 1) / MR;
	size_t nt = (size_t)lm_threads();
	struct gemm_job j = {C, ldc, A, B, M, N, K, KP, beta, NULL, NULL, np < nt && nb > np};
	j.ap = malloc((M * KP + 1) * sizeof *j.ap);
	j.bp = malloc((nt * KC * NR + 1) * sizeof *j.bp);
	if (!j.ap || !j.bp) {
		free(j.ap);
		free(j.bp);
		return -1;
	}
	/* a row costs K conversions, a unit M*K*NR or MR*K*N multiply-adds: split only when
	 * each thread gets enough to pay for waking it (~64k conversions, ~1M multiply-adds) */
	lm_parallel_for(M, 1 + ((size_t)1 << 16) / (K + 1), (int)nt, pack_part, &j);
	size_t units = j.by_rows ? nb : np, work = (j.by_rows ? MR * N : M * NR) * K;
	lm_parallel_for(units, 1 + ((size_t)1 << 20) / (work + 1), (int)nt, gemm_part, &j);
	free(j.ap);
	free(j.bp);
	return 0;
}

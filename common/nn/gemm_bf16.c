/* gemm_bf16.c: a bf16 GEMM of our own for nn.Linear shapes, on vdpbf16ps, since Debian's OpenBLAS has no sbgemm.
 *
 * C = beta*C + A * B^T with A [M x K] activations and B [N x K] weights (or C = A * B with
 * B [K x N], attention's P * V; A may come transposed, [K x M], as the backward's dY^T in
 * dW = dY^T X), both rounded to bf16 (nearest even, by vcvtne2ps2bf16) while packed,
 * products summed in fp32 by _mm512_dpbf16_ps, which multiplies a pair of bf16 per 32-bit
 * lane. So both operands are packed as K pairs:
 *   A: per row, one uint32 per pair, rows KP apart (broadcast to all lanes by the kernel);
 *      a plain vector conversion, no reordering;
 *   B: panels of NR = 16*NV columns, each pair p a row of NR uint32 (NV zmm loads).
 * Blocking: KC pairs of a B panel (KC * NR * 4 bytes: 96 KiB) stay in L2 while the
 * micro-kernel walks all row blocks of MR rows (MR * NV zmm accumulators); A's packed rows
 * stream from L2/L3 once per (panel, K block). The first K block stores beta*C + sum, the
 * next ones add: C is touched once per K block and never in a pass of its own. Measured on
 * Zen 4 (bench/gemm_bf16_shapes.c): the traffic of C, not the B panel's place, is what a K
 * block costs, so KC is large (128 pairs, a panel in L1: ~180 GFLOP/s; 768: ~208); 8 x 32,
 * 6 x 64 and 12 x 32 tiles came out within noise of each other. The kernel is specialised
 * (always_inline, a switch on the row count) so full tiles run with no test on the rows.
 * Threads: A is packed once, rows split over the pool; then each thread takes its own
 * column panels (or row blocks, for a narrow C) with its own B panel buffer (gemm_part).
 * The packed A and the panel buffers live in one grow-only buffer per calling thread, since
 * a fresh mmap'd buffer per call costs its page faults every call (2-4 % of a product).
 * A caller that multiplies the same operand many times (the LM head: every vocabulary tile
 * by every chunk of rows) packs it once (lm_gemm_bf16_pack_a/_b) and calls _nt_packed. */
#include "gemm_bf16.h"
#include "pool.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* overridable (-D) so that bench/gemm_bf16_shapes.c can be built against other tilings */
#ifndef MR
#define MR 8 /* rows per micro-tile */
#endif
#ifndef NV
#define NV 2 /* zmm per row of a micro-tile: NR = 16 * NV columns */
#endif
#ifndef KC
#define KC 768 /* pairs per K block: K 1536, one block for C = 768 or 1024 */
#endif
#define NR (16 * NV)

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

/* pairs [p0, p0 + np) of the K floats at x, as bf16 pairs (an odd K's last pair has a zero
 * high half) into out[0 .. np). vcvtne2ps2bf16 rounds to nearest even, keeps NaN a NaN and
 * flushes subnormal inputs to zero, as vdpbf16ps treats them anyway. */
BF16_TARGET static void cvt_pairs(uint32_t *out, const float *x, size_t K, size_t p0, size_t np)
{
	size_t k = 2 * p0, end = min_sz(K, 2 * (p0 + np)), p = 0;
	for (; k + 32 <= end; k += 32, p += 16) {
		__m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
		_mm512_storeu_si512(out + p, (__m512i)h);
	}
	if (k < end) {
		size_t n = end - k;
		__mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
		__mmask16 m1 = n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
		__m512bh h = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + k + 16),
		                                 _mm512_maskz_loadu_ps(m0, x + k));
		_mm512_mask_storeu_epi32(out + p, (__mmask16)((1u << ((n + 1) / 2)) - 1), (__m512i)h);
	}
}

/* the B panel block: columns [j0, j0 + nr) of B (rows ldb apart) over pairs [p0, p0 + kp),
 * as bp[p * NR + c], zero past nr. Each row is converted by vector into tmp, then spread
 * column-wise. */
BF16_TARGET static void pack_b_nt(uint32_t *bp, const float *B, size_t ldb, size_t K, size_t j0,
                                  size_t nr, size_t p0, size_t kp)
{
	uint32_t tmp[KC];
	for (size_t c = 0; c < nr; c++) {
		cvt_pairs(tmp, B + (j0 + c) * ldb, K, p0, kp);
		for (size_t p = 0; p < kp; p++)
			bp[p * NR + c] = tmp[p];
	}
	if (nr < NR)
		for (size_t p = 0; p < kp; p++)
			memset(bp + p * NR + nr, 0, (NR - nr) * sizeof *bp);
}

/* the same block of a B stored [K x N] (C = A * B, as attention's P * V): the pair p of
 * column c is rows 2p and 2p + 1 of that column, so two rows converted at once are
 * interleaved by one permutation; no transposition */
BF16_TARGET static void pack_b_kn(uint32_t *bp, const float *B, size_t ldb, size_t K, size_t j0,
                                  size_t nr, size_t p0, size_t kp)
{
	/* word 2c of the result is word c of the converted pair (row 2p), word 2c+1 is word
	 * 16 + c (row 2p + 1) */
	const __m512i ix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
	                                    24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
	                                    16, 0);
	for (size_t p = 0; p < kp; p++) {
		size_t k = 2 * (p0 + p);
		const float *r0 = B + k * ldb + j0, *r1 = r0 + ldb;
		for (size_t c = 0; c < NR; c += 16) {
			__mmask16 m = nr >= c + 16 ? 0xffff : nr <= c ? 0 : (__mmask16)((1u << (nr - c)) - 1);
			__m512 lo = _mm512_maskz_loadu_ps(m, r0 + c);
			__m512 hi = k + 1 < K ? _mm512_maskz_loadu_ps(m, r1 + c) : _mm512_setzero_ps();
			__m512i h = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
			_mm512_storeu_si512(bp + p * NR + c, _mm512_permutexvar_epi16(ix, h));
		}
	}
}

/* rows [r0, r1) of an A given transposed, stored [K x M] with rows lda apart (the
 * backward's dY^T in dW = dY^T X, attention's dS^T and P^T), packed as lm_gemm_bf16 packs
 * A's rows: pair p of row i is A[2p][i] and A[2p+1][i], so two stored rows converted at once
 * are interleaved by pack_b_kn's permutation into the pairs of 16 rows, which go to those
 * rows KP apart. The same bf16 values, so the same bits, as packing the untransposed A. */
BF16_TARGET static void pack_a_km(uint32_t *ap, const float *A, size_t lda, size_t K, size_t KP,
                                  size_t r0, size_t r1)
{
	const __m512i ix = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9,
	                                    24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
	                                    16, 0);
	uint32_t tmp[16];
	for (size_t i0 = r0; i0 < r1; i0 += 16) {
		size_t n = min_sz(16, r1 - i0);
		__mmask16 m = n == 16 ? 0xffff : (__mmask16)((1u << n) - 1);
		uint32_t *out = ap + i0 * KP;
		for (size_t p = 0; p < KP; p++) {
			const float *a0 = A + 2 * p * lda + i0;
			__m512 lo = _mm512_maskz_loadu_ps(m, a0);
			__m512 hi = 2 * p + 1 < K ? _mm512_maskz_loadu_ps(m, a0 + lda) : _mm512_setzero_ps();
			__m512i h = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
			_mm512_storeu_si512(tmp, _mm512_permutexvar_epi16(ix, h));
			for (size_t c = 0; c < n; c++)
				out[c * KP + p] = tmp[c];
		}
	}
}

/* C[mr x nr] = (first ? beta*C : C) + A rows (packed, lda apart) x the B panel block over kp
 * pairs. mr is a constant where this is inlined, so the row loops unroll to straight code. */
BF16_TARGET static inline __attribute__((always_inline)) void
tile(float *C, size_t ldc, const uint32_t *ap, size_t lda, const uint32_t *bp, size_t kp,
     const size_t mr, size_t nr, int first, float beta)
{
	__m512 acc[MR][NV];
#pragma GCC unroll 16
	for (size_t r = 0; r < MR; r++)
#pragma GCC unroll 8
		for (size_t v = 0; v < NV; v++)
			acc[r][v] = _mm512_setzero_ps();
	/* C's rows arrive while the products run, instead of stalling the stores at the end */
#pragma GCC unroll 16
	for (size_t r = 0; r < mr; r++)
#pragma GCC unroll 8
		for (size_t v = 0; v < NV; v++)
			_mm_prefetch((const char *)(C + r * ldc + 16 * v), _MM_HINT_T0);
	for (size_t p = 0; p < kp; p++) {
		__m512bh b[NV];
#pragma GCC unroll 8
		for (size_t v = 0; v < NV; v++)
			b[v] = (__m512bh)_mm512_loadu_si512(bp + p * NR + 16 * v);
#pragma GCC unroll 16
		for (size_t r = 0; r < mr; r++) {
			__m512bh a = (__m512bh)_mm512_set1_epi32((int)ap[r * lda + p]);
#pragma GCC unroll 8
			for (size_t v = 0; v < NV; v++)
				acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
		}
	}
	__mmask16 m[NV];
#pragma GCC unroll 8
	for (size_t v = 0; v < NV; v++)
		m[v] = nr >= 16 * (v + 1) ? 0xffff
		     : nr <= 16 * v     ? 0
		                        : (__mmask16)((1u << (nr - 16 * v)) - 1);
	int load = !first || beta != 0.0f;
	__m512 bv = _mm512_set1_ps(first ? beta : 1.0f);
#pragma GCC unroll 16
	for (size_t r = 0; r < mr; r++) {
		float *c = C + r * ldc;
#pragma GCC unroll 8
		for (size_t v = 0; v < NV; v++) {
			__m512 x = acc[r][v];
			if (load) /* beta*C + x as one rounding each, the same in every thread split */
				x = _mm512_add_ps(_mm512_mul_ps(bv, _mm512_maskz_loadu_ps(m[v], c + 16 * v)), x);
			_mm512_mask_storeu_ps(c + 16 * v, m[v], x);
		}
	}
}

/* tile() specialised for each row count */
BF16_TARGET static void kernel(float *C, size_t ldc, const uint32_t *ap, size_t lda,
                               const uint32_t *bp, size_t kp, size_t mr, size_t nr, int first,
                               float beta)
{
	switch (mr) {
#define CASE(n) case n: tile(C, ldc, ap, lda, bp, kp, n, nr, first, beta); break;
	CASE(1)
#if MR > 1
	CASE(2)
#endif
#if MR > 2
	CASE(3)
#endif
#if MR > 3
	CASE(4)
#endif
#if MR > 4
	CASE(5)
#endif
#if MR > 5
	CASE(6)
#endif
#if MR > 6
	CASE(7)
#endif
#if MR > 7
	CASE(8)
#endif
#if MR > 8
	CASE(9) CASE(10) CASE(11) CASE(12)
#endif
#if MR > 12
	CASE(13) CASE(14)
#endif
#undef CASE
	default: break;
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
	size_t lda, ldb;
	int b_kn; /* B is [K x N] rather than [N x K] */
	int a_km; /* A is [K x M] rather than [M x K] */
	size_t M, N, K, KP;
	float beta;
	const uint32_t *ap;  /* A packed whole (shared), rows KP apart */
	const uint32_t *bpk; /* B packed whole (lm_gemm_bf16_pack_b), or NULL: */
	uint32_t *bp;        /* one B panel block per part */
	int by_rows;
};

/* rows [r0, r1) of A packed as pairs */
static void pack_part(void *ctx, size_t r0, size_t r1, int part)
{
	const struct gemm_job *j = ctx;
	uint32_t *ap = (uint32_t *)j->ap; /* this job's own buffer while it is being packed */
	(void)part;
	if (j->a_km) {
		pack_a_km(ap, j->A, j->lda, j->K, j->KP, r0, r1);
		return;
	}
	for (size_t i = r0; i < r1; i++)
		cvt_pairs(ap + i * j->KP, j->A + i * j->lda, j->K, 0, j->KP);
}

/* units [u0, u1): column panels, or row blocks of MR when by_rows */
static void gemm_part(void *ctx, size_t u0, size_t u1, int part)
{
	const struct gemm_job *j = ctx;
	uint32_t *own = j->bp + (size_t)part * KC * NR;
	size_t np = (j->N + NR - 1) / NR;
	size_t pa = j->by_rows ? 0 : u0, pb = j->by_rows ? np : u1;
	size_t ra = j->by_rows ? u0 * MR : 0, rb = j->by_rows ? min_sz(u1 * MR, j->M) : j->M;
	for (size_t p0 = 0; p0 < j->KP; p0 += KC) {
		size_t kp = min_sz(j->KP - p0, KC);
		for (size_t jp = pa; jp < pb; jp++) {
			size_t j0 = jp * NR, nr = min_sz(j->N - j0, NR);
			const uint32_t *bp = own;
			if (j->bpk)
				bp = j->bpk + (jp * j->KP + p0) * NR;
			else if (j->b_kn)
				pack_b_kn(own, j->B, j->ldb, j->K, j0, nr, p0, kp);
			else
				pack_b_nt(own, j->B, j->ldb, j->K, j0, nr, p0, kp);
			for (size_t i0 = ra; i0 < rb; i0 += MR)
				kernel(j->C + i0 * j->ldc + j0, j->ldc, j->ap + i0 * j->KP + p0, j->KP, bp, kp,
				       min_sz(rb - i0, MR), nr, p0 == 0, j->beta);
		}
	}
}

/* this thread's scratch, grown as needed and kept (at most SCRATCH_KEEP bytes) */
#define SCRATCH_KEEP ((size_t)64 << 20)
static _Thread_local uint32_t *scratch;
static _Thread_local size_t scratch_n;

static uint32_t *scratch_get(size_t n, int *own)
{
	*own = 0;
	if (n <= scratch_n)
		return scratch;
	size_t bytes = (n * sizeof *scratch + 63) & ~(size_t)63;
	uint32_t *p = aligned_alloc(64, bytes);
	if (!p || bytes > SCRATCH_KEEP) {
		*own = p != NULL;
		return p;
	}
	free(scratch);
	scratch = p, scratch_n = n;
	return p;
}

/* beta*C with no product (K = 0) */
static void scale_c(float *C, size_t ldc, size_t M, size_t N, float beta)
{
	for (size_t i = 0; i < M; i++)
		for (size_t c = 0; c < N; c++)
			C[i * ldc + c] = beta == 0.0f ? 0.0f : beta * C[i * ldc + c];
}

/* the product of a job whose A (or ap) and B (or bpk) are set; A is packed here if not given */
static int run(struct gemm_job *j)
{
	size_t nt = (size_t)lm_threads(), M = j->M, N = j->N, K = j->K;
	size_t np = (N + NR - 1) / NR, nb = (M + MR - 1) / MR;
	j->by_rows = np < nt && nb > np;
	/* B's panel blocks first, 64-byte aligned as the buffer is, then A's rows */
	size_t nbp = j->bpk ? 0 : nt * KC * NR;
	int own;
	uint32_t *buf = scratch_get(nbp + (j->ap ? 0 : M * j->KP) + 1, &own);
	if (!buf)
		return -1;
	j->bp = buf;
	if (!j->ap) {
		j->ap = buf + nbp;
		/* a row costs K conversions: split only when each thread gets ~256k of them */
		lm_parallel_for(M, 1 + ((size_t)1 << 18) / K, (int)nt, pack_part, j);
	}
	/* a unit costs M*K*NR or MR*K*N multiply-adds: split when each thread gets ~1M */
	size_t units = j->by_rows ? nb : np, work = (j->by_rows ? MR * N : M * NR) * K;
	lm_parallel_for(units, 1 + ((size_t)1 << 20) / (work + 1), (int)nt, gemm_part, j);
	if (own)
		free(buf);
	return 0;
}

int lm_gemm_bf16_t(float *C, size_t ldc, const float *A, size_t lda, int a_km, const float *B,
                   size_t ldb, int b_kn, size_t M, size_t N, size_t K, float beta)
{
	if (M == 0 || N == 0)
		return 0;
	if (K == 0) {
		scale_c(C, ldc, M, N, beta);
		return 0;
	}
	struct gemm_job j = {C, ldc, A, B, lda, ldb, b_kn, a_km, M, N, K, (K + 1) / 2, beta,
	                     NULL, NULL, NULL, 0};
	return run(&j);
}

int lm_gemm_bf16(float *C, size_t ldc, const float *A, size_t lda, const float *B, size_t ldb,
                 int b_kn, size_t M, size_t N, size_t K, float beta)
{
	return lm_gemm_bf16_t(C, ldc, A, lda, 0, B, ldb, b_kn, M, N, K, beta);
}

int lm_gemm_bf16_nt(float *C, size_t ldc, const float *A, const float *B, size_t M, size_t N,
                    size_t K, float beta)
{
	return lm_gemm_bf16(C, ldc, A, K, B, K, 0, M, N, K, beta);
}

size_t lm_gemm_bf16_packed_a(size_t M, size_t K)
{
	return M * ((K + 1) / 2);
}

size_t lm_gemm_bf16_packed_b(size_t N, size_t K)
{
	return (N + NR - 1) / NR * NR * ((K + 1) / 2);
}

void lm_gemm_bf16_pack_a(uint32_t *ap, const float *A, size_t M, size_t K)
{
	lm_gemm_bf16_pack_a_t(ap, A, K, 0, M, K);
}

void lm_gemm_bf16_pack_a_t(uint32_t *ap, const float *A, size_t lda, int a_km, size_t M,
                           size_t K)
{
	struct gemm_job j = {NULL, 0, A, NULL, lda, 0, 0, a_km, M, 0, K, (K + 1) / 2, 0.0f,
	                     ap, NULL, NULL, 0};
	if (K)
		lm_parallel_for(M, 1 + ((size_t)1 << 18) / K, lm_threads(), pack_part, &j);
}

/* panels [u0, u1) of B packed whole, a K block at a time, as gemm_part packs them */
static void pack_b_part(void *ctx, size_t u0, size_t u1, int part)
{
	const struct gemm_job *j = ctx;
	(void)part;
	for (size_t jp = u0; jp < u1; jp++)
		for (size_t p0 = 0; p0 < j->KP; p0 += KC) {
			uint32_t *out = j->bp + (jp * j->KP + p0) * NR;
			size_t nr = min_sz(j->N - jp * NR, NR), kp = min_sz(j->KP - p0, KC);
			if (j->b_kn)
				pack_b_kn(out, j->B, j->ldb, j->K, jp * NR, nr, p0, kp);
			else
				pack_b_nt(out, j->B, j->ldb, j->K, jp * NR, nr, p0, kp);
		}
}

void lm_gemm_bf16_pack_b_t(uint32_t *bp, const float *B, size_t ldb, int b_kn, size_t N,
                           size_t K)
{
	struct gemm_job j = {NULL, 0, NULL, B, 0, ldb, b_kn, 0, 0, N, K, (K + 1) / 2, 0.0f,
	                     NULL, NULL, bp, 0};
	if (K)
		lm_parallel_for((N + NR - 1) / NR, 1 + ((size_t)1 << 16) / (NR * K), lm_threads(),
		                pack_b_part, &j);
}

void lm_gemm_bf16_pack_b(uint32_t *bp, const float *B, size_t N, size_t K)
{
	lm_gemm_bf16_pack_b_t(bp, B, K, 0, N, K);
}

int lm_gemm_bf16_b_packed(float *C, size_t ldc, const float *A, size_t lda, int a_km,
                          const uint32_t *bp, size_t M, size_t N, size_t K, float beta)
{
	if (M == 0 || N == 0)
		return 0;
	if (K == 0) {
		scale_c(C, ldc, M, N, beta);
		return 0;
	}
	struct gemm_job j = {C, ldc, A, NULL, lda, 0, 0, a_km, M, N, K, (K + 1) / 2, beta,
	                     NULL, bp, NULL, 0};
	return run(&j);
}

int lm_gemm_bf16_nt_packed(float *C, size_t ldc, const uint32_t *ap, const uint32_t *bp,
                           size_t M, size_t N, size_t K, float beta)
{
	if (M == 0 || N == 0)
		return 0;
	if (K == 0) {
		scale_c(C, ldc, M, N, beta);
		return 0;
	}
	struct gemm_job j = {C, ldc, NULL, NULL, 0, 0, 0, 0, M, N, K, (K + 1) / 2, beta,
	                     ap, bp, NULL, 0};
	return run(&j);
}

/* bf16peak.c: the machine's bf16 peak, the roof of --compute bf16: vdpbf16ps on zmm registers only, one thread.
 *
 * Each vdpbf16ps on zmm does 16 lanes x 2 bf16 products summed into fp32: 32 multiply-adds,
 * counted as 64 flops (as sgemm's 2 per FMA lane). 16 independent accumulators cover the
 * instruction's latency at two issues a cycle; nothing touches memory inside the timed
 * loop, so this is the core's limit, not a GEMM's. Prints one line:
 *   bf16peak threads 1 gflops G seconds S instructions I
 * or, on a CPU without AVX512_BF16, "bf16peak none" (status 0, so bench/run.sh goes on).
 * usage: bf16peak [SECONDS]   (default 1) */
#define _POSIX_C_SOURCE 200809L
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BF16_TARGET __attribute__((target("avx512f,avx512bf16,avx512bw,avx512vl")))
#define CHAINS 16
#define BATCH 1000000L /* loop iterations between clock reads */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* read on every call, so the compiler can neither merge the chains (each starts elsewhere)
 * nor treat run() as a pure function and call it once */
static volatile float start = 1.0f;

/* BATCH iterations of CHAINS vdpbf16ps; the sum of the accumulators is returned so the
 * compiler keeps every one of them */
BF16_TARGET static float run(long iters)
{
	/* 0x3a83 is bf16 0.001: products of 1e-6 neither overflow nor go subnormal */
	__m512bh a = (__m512bh)_mm512_set1_epi32(0x3a833a83), b = a;
	float s0 = start;
#define C(i) _mm512_set1_ps(s0 + (float)(i))
	__m512 c0 = C(0), c1 = C(1), c2 = C(2), c3 = C(3), c4 = C(4), c5 = C(5), c6 = C(6),
	       c7 = C(7), c8 = C(8), c9 = C(9), c10 = C(10), c11 = C(11), c12 = C(12), c13 = C(13),
	       c14 = C(14), c15 = C(15);
#undef C
	for (long i = 0; i < iters; i++) {
		c0 = _mm512_dpbf16_ps(c0, a, b);
		c1 = _mm512_dpbf16_ps(c1, a, b);
		c2 = _mm512_dpbf16_ps(c2, a, b);
		c3 = _mm512_dpbf16_ps(c3, a, b);
		c4 = _mm512_dpbf16_ps(c4, a, b);
		c5 = _mm512_dpbf16_ps(c5, a, b);
		c6 = _mm512_dpbf16_ps(c6, a, b);
		c7 = _mm512_dpbf16_ps(c7, a, b);
		c8 = _mm512_dpbf16_ps(c8, a, b);
		c9 = _mm512_dpbf16_ps(c9, a, b);
		c10 = _mm512_dpbf16_ps(c10, a, b);
		c11 = _mm512_dpbf16_ps(c11, a, b);
		c12 = _mm512_dpbf16_ps(c12, a, b);
		c13 = _mm512_dpbf16_ps(c13, a, b);
		c14 = _mm512_dpbf16_ps(c14, a, b);
		c15 = _mm512_dpbf16_ps(c15, a, b);
	}
	__m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
	                         _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
	s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
	                                   _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
	return _mm512_reduce_add_ps(s);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	if (argc > 2 || !(secs > 0 && secs <= 600)) {
		fprintf(stderr, "usage: bf16peak [SECONDS]   (0 < SECONDS <= 600, default 1)\n");
		return 2;
	}
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx512bf16")) {
		printf("bf16peak none\n");
		return 0;
	}
	volatile float sink = run(BATCH); /* warm-up: the clock ramps up, the AVX-512 units wake */
	long batches = 0;
	double t0 = now(), t;
	do {
		sink += run(BATCH);
		batches++;
	} while ((t = now() - t0) < secs);
	(void)sink;
	double instr = (double)batches * BATCH * CHAINS;
	printf("bf16peak threads 1 gflops %.1f seconds %.2f instructions %.0f\n", instr * 64 / t / 1e9, t,
	       instr);
	return 0;
}

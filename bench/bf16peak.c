/* bf16peak.c: the machine's bf16 peak, the roof of --compute bf16: vdpbf16ps on zmm registers only, one thread.
 *
 * Each vdpbf16ps on zmm does 16 lanes x 2 bf16 products summed into fp32: 32 multiply-adds,
 * counted as 64 flops (as sgemm's 2 per FMA lane). 16 independent accumulators cover the
 * instruction's latency at two issues a cycle; nothing touches memory inside the timed
 * loop, so this is the core's limit, not a GEMM's. The same loop with vfmadd231ps on zmm
 * (16 multiply-adds, 32 flops) gives the fp32 peak beside it: their ratio is the most
 * --compute bf16 can gain over an fp32 kernel that runs at the core's FMA peak (on a CPU
 * that issues one vdpbf16ps for two FMAs a cycle it is 1, not 2). Prints one line:
 *   bf16peak threads 1 gflops G seconds S instructions I fp32_gflops F
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

/* BATCH-sized runs of CHAINS independent accumulations c = op(c, a, b), named variables so
 * that they stay in registers; the sum of the accumulators is returned so the compiler
 * keeps every one of them. a and b are 0.001 (bf16 0x3a83): products of 1e-6 added 1e9
 * times neither overflow nor go subnormal */
#define PEAK_LOOP(name, type, init, op)                                                 \
	BF16_TARGET static float name(long iters)                                       \
	{                                                                               \
		type a = init, b = a;                                                   \
		float s0 = start;                                                       \
		__m512 c0 = _mm512_set1_ps(s0), c1 = _mm512_set1_ps(s0 + 1),            \
		       c2 = _mm512_set1_ps(s0 + 2), c3 = _mm512_set1_ps(s0 + 3),        \
		       c4 = _mm512_set1_ps(s0 + 4), c5 = _mm512_set1_ps(s0 + 5),        \
		       c6 = _mm512_set1_ps(s0 + 6), c7 = _mm512_set1_ps(s0 + 7),        \
		       c8 = _mm512_set1_ps(s0 + 8), c9 = _mm512_set1_ps(s0 + 9),        \
		       c10 = _mm512_set1_ps(s0 + 10), c11 = _mm512_set1_ps(s0 + 11),    \
		       c12 = _mm512_set1_ps(s0 + 12), c13 = _mm512_set1_ps(s0 + 13),    \
		       c14 = _mm512_set1_ps(s0 + 14), c15 = _mm512_set1_ps(s0 + 15);    \
		for (long i = 0; i < iters; i++) {                                      \
			c0 = op(c0, a, b), c1 = op(c1, a, b), c2 = op(c2, a, b);        \
			c3 = op(c3, a, b), c4 = op(c4, a, b), c5 = op(c5, a, b);        \
			c6 = op(c6, a, b), c7 = op(c7, a, b), c8 = op(c8, a, b);        \
			c9 = op(c9, a, b), c10 = op(c10, a, b), c11 = op(c11, a, b);    \
			c12 = op(c12, a, b), c13 = op(c13, a, b), c14 = op(c14, a, b);  \
			c15 = op(c15, a, b);                                            \
		}                                                                       \
		c0 = _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3));       \
		c4 = _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7));       \
		c8 = _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11));     \
		c12 = _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15));  \
		return _mm512_reduce_add_ps(                                            \
			_mm512_add_ps(_mm512_add_ps(c0, c4), _mm512_add_ps(c8, c12)));  \
	}
/* vfmadd231ps's operand order: c = a * b + c */
#define FMA_ACC(c, a, b) _mm512_fmadd_ps(a, b, c)
PEAK_LOOP(run, __m512bh, (__m512bh)_mm512_set1_epi32(0x3a833a83), _mm512_dpbf16_ps)
PEAK_LOOP(run_fp32, __m512, _mm512_set1_ps(1e-3f), FMA_ACC)

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
	double g16 = instr * 64 / t / 1e9, t16 = t;
	sink += run_fp32(BATCH);
	batches = 0;
	t0 = now();
	do {
		sink += run_fp32(BATCH);
		batches++;
	} while ((t = now() - t0) < secs);
	double g32 = (double)batches * BATCH * CHAINS * 32 / t / 1e9;
	printf("bf16peak threads 1 gflops %.1f seconds %.2f instructions %.0f fp32_gflops %.1f\n", g16,
	       t16, instr, g32);
	return 0;
}

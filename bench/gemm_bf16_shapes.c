/* gemm_bf16_shapes.c: lm_gemm_bf16_nt alone on the OPT-125m shapes, in GFLOP/s against bf16peak's roof.
 *
 * Y[N x out] = X[N x in] * W[out x in]^T as an nn.Linear forward, N = 2048 rows by default,
 * plus the call the fused LM head really makes (256 rows x a 512-row vocabulary tile).
 * Each shape is timed by the process's CPU time as well as by the wall clock: on a machine
 * other programs load, a single-threaded run's CPU time still counts only the cycles it got
 * (cache and SMT sharing still slow it), so the best CPU-time figure is the one to compare.
 * Prints one line per shape and thread count:
 *   shape in out rows threads best_cpu_gflops median_cpu_gflops best_wall_gflops runs
 * Build (from the repository root, after make):
 *   cc -O2 -std=c11 -Icommon/nn -o gemm_bf16_shapes bench/gemm_bf16_shapes.c \
 *      build/libcommon.a -lopenblas -lpthread -lm
 * or, to try another tiling, with common/nn/gemm_bf16.c itself and -DMR=6 -DNV=4 -DKC=384
 * (and -Icommon/base) before build/libcommon.a.
 * usage: gemm_bf16_shapes [-n ROWS] [-r RUNS] [-t THREADS,...]   (default -n 2048 -r 7 -t 1) */
#define _POSIX_C_SOURCE 200809L
#include "gemm_bf16.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static float *fill(size_t n, unsigned seed)
{
	float *p = malloc(n * sizeof *p);
	if (!p) {
		perror("gemm_bf16_shapes: malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		p[i] = (float)((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
	}
	return p;
}

int main(int argc, char **argv)
{
	static const struct { const char *name; int in, out, rows; } shapes[] = {
		{"q/k/v/out_proj", 768, 768, 0}, {"fc1", 768, 3072, 0}, {"fc2", 3072, 768, 0},
		{"lm_head", 768, 50272, 0}, {"lm_head_tile", 768, 512, 256},
	};
	int n = 2048, runs = 7, threads[8] = {1}, nthreads = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-r") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
			char *s = argv[++i], *tok;
			nthreads = 0;
			while ((tok = strtok(s, ",")) && nthreads < 8)
				threads[nthreads++] = atoi(tok), s = NULL;
		} else {
			fprintf(stderr, "usage: gemm_bf16_shapes [-n ROWS] [-r RUNS] [-t THREADS,...]\n");
			return 2;
		}
	}
	if (n < 1 || runs < 1 || runs > 1000 || nthreads < 1) {
		fprintf(stderr, "gemm_bf16_shapes: bad arguments\n");
		return 2;
	}
	if (!lm_gemm_bf16_available()) {
		printf("gemm_bf16_shapes none\n");
		return 0;
	}
	printf("# %d runs each; GFLOP/s by process CPU time (best, median) and by wall clock (best)\n",
	       runs);
	printf("# shape in out rows threads best_cpu_gflops median_cpu_gflops best_wall_gflops runs\n");
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		size_t in = (size_t)shapes[s].in, out = (size_t)shapes[s].out;
		size_t rows = shapes[s].rows ? (size_t)shapes[s].rows : (size_t)n;
		float *x = fill(rows * in, 1), *w = fill(out * in, 2), *y = fill(rows * out, 3);
		double flop = 2.0 * (double)rows * (double)in * (double)out;
		double *gc = malloc((size_t)runs * sizeof *gc), *gw = malloc((size_t)runs * sizeof *gw);
		for (int t = 0; t < nthreads; t++) {
			lm_set_threads(threads[t]);
			/* one warm-up call: thread start-up and first touch are not the kernel */
			if (lm_gemm_bf16_nt(y, out, x, w, rows, out, in, 0.0f) < 0)
				return 1;
			for (int r = 0; r < runs; r++) {
				double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
				lm_gemm_bf16_nt(y, out, x, w, rows, out, in, 0.0f);
				double w1 = clock_s(CLOCK_MONOTONIC), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
				/* CPU time of all threads: per-thread-equivalent rate, times the threads */
				gc[r] = flop / (c1 - c0) / 1e9 * threads[t];
				gw[r] = flop / (w1 - w0) / 1e9;
			}
			qsort(gc, (size_t)runs, sizeof *gc, cmp);
			qsort(gw, (size_t)runs, sizeof *gw, cmp);
			printf("%s %zu %zu %zu %d %.1f %.1f %.1f %d\n", shapes[s].name, in, out, rows,
			       threads[t], gc[runs - 1], gc[runs / 2], gw[runs - 1], runs);
			fflush(stdout);
		}
		free(gc), free(gw), free(x), free(w), free(y);
	}
	return 0;
}

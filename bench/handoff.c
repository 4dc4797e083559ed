/* bench/handoff.c: what one hot job of the thread pool costs beyond its work
 * (common/nn/pool.h, lm_parallel_for_hot): the decode products hand a part to a polling
 * worker some 75 times a token, so the gap between a job's wall time and its longest part
 * is paid on every token.
 *
 *   make build/bench/handoff
 *   build/bench/handoff [-n JOBS] MICROSECONDS...
 *
 * Each job is MICROSECONDS of busy work (a spin on the time-stamp counter, calibrated
 * against the clock) split in two equal parts, the caller doing one and the pool's worker
 * the other, back to back as decoding runs them. Prints per size the mean, the minimum,
 * the 10th, 50th, 90th and 99th percentiles of the job's wall time (microseconds), and the ideal
 * (half the work). Like every timing here, it means something only on a quiet machine
 * (bench/lib.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static unsigned long long ticks(void) { return __rdtsc(); }
#else
static unsigned long long ticks(void) { return (unsigned long long)(lm_now() * 1e9); }
#endif

static double ticks_per_us;

/* part of a job: (i1 - i0) hundredths of a microsecond of spinning */
static void spin(void *ctx, size_t i0, size_t i1, int part)
{
	(void)ctx, (void)part;
	unsigned long long end = ticks() + (unsigned long long)((double)(i1 - i0) * ticks_per_us / 100);
	while (ticks() < end)
		;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int jobs = 20000, c;
	while ((c = getopt(argc, argv, "n:")) != -1) {
		if (c == 'n' && atoi(optarg) > 0) {
			jobs = atoi(optarg);
		} else {
			fprintf(stderr, "usage: handoff [-n JOBS] MICROSECONDS...\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: handoff [-n JOBS] MICROSECONDS...\n");
		return 2;
	}
	double t0 = lm_now();
	unsigned long long k0 = ticks();
	while (lm_now() - t0 < 0.05)
		;
	ticks_per_us = (double)(ticks() - k0) / ((lm_now() - t0) * 1e6);
	lm_set_threads(2);
	double *d = malloc((size_t)jobs * sizeof *d);
	if (!d)
		return 1;
	for (int a = optind; a < argc; a++) {
		double us = atof(argv[a]);
		size_t n = (size_t)(us * 100);
		for (int i = 0; i < jobs; i++) {
			double s = lm_now();
			lm_parallel_for_hot(n, 1, 2, spin, NULL);
			d[i] = (lm_now() - s) * 1e6;
		}
		double mean = 0;
		for (int i = 0; i < jobs; i++)
			mean += d[i] / jobs;
		qsort(d, (size_t)jobs, sizeof *d, cmp);
		printf("%g us in 2 parts, %d jobs: mean %.2f, min %.2f p10 %.2f p50 %.2f p90 %.2f "
		       "p99 %.2f us (ideal %.2f)\n", us, jobs, mean, d[0], d[jobs / 10], d[jobs / 2],
		       d[jobs * 9 / 10], d[jobs * 99 / 100], us / 2);
	}
	free(d);
	return 0;
}

/* bench/bandwidth: the machine's read bandwidth, STREAM-style: the sum of a buffer far larger
 * than the caches (1 GiB by default), split over T threads, each pass timed from the threads'
 * start to the last one's end. It is the roof of a decode step, which reads every weight once
 * per token (bench/decode.sh compares with it). Prints one line per thread count:
 *   bandwidth THREADS MEDIAN_GBS MIN_GBS MAX_GBS PASSES     (GB = 1e9 bytes)
 * usage: bandwidth [-m MIB] [-r PASSES] [-t THREADS,...]   (default -m 1024 -r 7 -t 1,2)
 * Built with -O3 -march=native (bench/decode.sh): the sum is of 64-bit integers in independent
 * lanes, so it vectorizes without -ffast-math and the adds never bound the loop. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LANES 8

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

struct part {
	const uint64_t *p;
	size_t n;        /* words, a multiple of LANES */
	uint64_t sum;
	pthread_t th;
};

static void *sum_part(void *arg)
{
	struct part *pt = arg;
	uint64_t acc[LANES] = {0};
	for (size_t i = 0; i < pt->n; i += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] += pt->p[i + l];
	uint64_t s = 0;
	for (int l = 0; l < LANES; l++)
		s += acc[l];
	pt->sum = s;
	return NULL;
}

/* one pass over buf (n words) with t threads: seconds; *sum gets the total (kept, so the
 * compiler cannot drop the reads) */
static double pass(const uint64_t *buf, size_t n, int t, uint64_t *sum)
{
	struct part pt[64];
	size_t per = n / (size_t)t / LANES * LANES;
	double t0 = now();
	for (int k = 0; k < t; k++) {
		pt[k].p = buf + (size_t)k * per;
		pt[k].n = per;
		if (pthread_create(&pt[k].th, NULL, sum_part, &pt[k]) != 0) {
			perror("bandwidth: pthread_create");
			exit(1);
		}
	}
	*sum = 0;
	for (int k = 0; k < t; k++) {
		pthread_join(pt[k].th, NULL);
		*sum += pt[k].sum;
	}
	return now() - t0;
}

int main(int argc, char **argv)
{
	size_t mib = 1024;
	int runs = 7;
	const char *threads = "1,2";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "-m"))
			mib = strtoul(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "-r"))
			runs = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "-t"))
			threads = argv[i + 1];
		else {
			fprintf(stderr, "usage: bandwidth [-m MIB] [-r PASSES] [-t THREADS,...]\n");
			return 2;
		}
	}
	if (mib < 1 || runs < 1 || runs > 1000) {
		fprintf(stderr, "bandwidth: -m and -r must be positive (-r at most 1000)\n");
		return 2;
	}
	size_t n = mib * 1048576 / sizeof(uint64_t);
	uint64_t *buf = malloc(n * sizeof *buf);
	if (!buf) {
		perror("bandwidth: malloc");
		return 1;
	}
	/* written once, so every page is really there before the first timed pass */
	for (size_t i = 0; i < n; i++)
		buf[i] = i * 0x9E3779B97F4A7C15u;
	char *list = strdup(threads), *save = NULL;
	uint64_t keep = 0;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int t = atoi(tok);
		if (t < 1 || t > 64) {
			fprintf(stderr, "bandwidth: threads must be 1 .. 64\n");
			return 2;
		}
		double gbs[1000];
		uint64_t s;
		pass(buf, n, t, &s); /* warm-up: threads, TLB */
		keep ^= s;
		for (int r = 0; r < runs; r++) {
			double sec = pass(buf, n, t, &s);
			keep ^= s;
			gbs[r] = (double)(n / (size_t)t / LANES * LANES * (size_t)t) * sizeof *buf / sec / 1e9;
		}
		qsort(gbs, (size_t)runs, sizeof *gbs, cmp);
		printf("bandwidth %d %.2f %.2f %.2f %d\n", t, gbs[runs / 2], gbs[0], gbs[runs - 1], runs);
		fflush(stdout);
	}
	free(list);
	free(buf);
	/* the sums, where the compiler must believe someone reads them */
	return keep == 42 ? 3 : 0;
}

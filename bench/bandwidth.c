/* bench/bandwidth: the machine's read bandwidth, STREAM-style: the sum of a buffer far larger
 * than the caches (1 GiB by default), split over T threads, each pass timed from the threads'
 * start to the last one's end. It is the roof of a decode step, which reads every weight once
 * per token (bench/decode.sh compares with it). Prints one line per thread count:
 *   bandwidth THREADS MEDIAN_GBS MIN_GBS MAX_GBS PASSES     (GB = 1e9 bytes)
 * usage: bandwidth [-m MIB] [-r PASSES] [-t THREADS,...]   (default -m 1024 -r 7 -t 1,2)
 * Built with -O3 -march=native (bench/decode.sh): the sum is of 64-bit integers in independent
 * lanes, so it vectorizes without -ffast-math and the adds never bound the loop.
 *
 * Four ways are measured, interleaved: a buffer on 4 KiB pages or on 2 MiB ones
 * (MADV_HUGEPAGE, as lmpipe holds weight matrices of 4 MiB or more), both aligned to 2 MiB,
 * each thread reading its part as 1 stream or as 4 side by side; the best way's line is
 * printed ("#" lines give each). A roof must be what the machine can do: the earlier probe
 * (one stream on a malloc'd buffer) read less than the decode kernels then did. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

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
	size_t n;        /* words, a multiple of LANES * streams */
	int streams;     /* the part read as 1 or 4 equal runs side by side */
	uint64_t sum;
	pthread_t th;
};

/* a cache line is 8 lanes of 64 bits, summed as two halves of 4 (GCC's vector extension,
 * so the loop over several streams compiles to vector adds instead of scalar code). Halves,
 * not one 8-lane type: without AVX-512 GCC lowered the 64-byte vector through the stack,
 * and the probe read ~5 GB/s per stream on a Zen 3 where the f32 decode kernel read 25 */
typedef uint64_t half_t __attribute__((vector_size(4 * LANES)));

/* STREAMS runs of the part summed side by side, one line of each per step: a core keeps
 * more lines in flight over several sequential streams than over one (the decode kernels
 * read one per thread; the roof is what the machine can do) */
#define SUM_STREAMS(STREAMS)                                                           \
	do {                                                                           \
		const size_t per = pt->n / (STREAMS);                                  \
		for (size_t i = 0; i < per; i += LANES)                                \
			for (int k = 0; k < (STREAMS); k++) {                          \
				half_t v0, v1;                                         \
				memcpy(&v0, pt->p + (size_t)k * per + i, sizeof v0);   \
				memcpy(&v1, pt->p + (size_t)k * per + i + LANES / 2,   \
				       sizeof v1);                                     \
				acc[k][0] += v0;                                       \
				acc[k][1] += v1;                                       \
			}                                                              \
	} while (0)

static void *sum_part(void *arg)
{
	struct part *pt = arg;
	half_t acc[4][2];
	memset(acc, 0, sizeof acc);
	if (pt->streams == 4)
		SUM_STREAMS(4);
	else
		SUM_STREAMS(1);
	uint64_t s = 0;
	for (int k = 0; k < 4; k++)
		for (int l = 0; l < LANES / 2; l++)
			s += acc[k][0][l] + acc[k][1][l];
	pt->sum = s;
	return NULL;
}

/* one pass over buf (n words) with t threads: seconds; *sum gets the total (kept, so the
 * compiler cannot drop the reads) */
static double pass(const uint64_t *buf, size_t n, int t, int streams, uint64_t *sum)
{
	struct part pt[64];
	size_t per = n / (size_t)t / (LANES * 4) * (LANES * 4);
	double t0 = now();
	for (int k = 0; k < t; k++) {
		pt[k].p = buf + (size_t)k * per;
		pt[k].n = per;
		pt[k].streams = streams;
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
	size_t n = mib * 1048576 / sizeof(uint64_t), bytes = n * sizeof(uint64_t);
	const size_t huge = (size_t)2 << 20;
	uint64_t *buf[2] = {NULL, NULL}; /* 4 KiB pages, 2 MiB pages */
	for (int k = 0; k < 2; k++) {
		size_t r = (bytes + huge - 1) / huge * huge;
		if (posix_memalign((void **)&buf[k], huge, r) != 0) {
			perror("bandwidth: posix_memalign");
			return 1;
		}
		/* advice both ways, so the kernel's default (THP "always") does not decide */
		(void)madvise(buf[k], r, k ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		/* written once, so every page is really there before the first timed pass */
		for (size_t i = 0; i < n; i++)
			buf[k][i] = i * 0x9E3779B97F4A7C15u;
	}
	char *list = strdup(threads), *save = NULL;
	uint64_t keep = 0;
	for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		int t = atoi(tok);
		if (t < 1 || t > 64) {
			fprintf(stderr, "bandwidth: threads must be 1 .. 64\n");
			return 2;
		}
		/* four ways to read: 4 KiB or 2 MiB pages, 1 or 4 streams per thread */
		static const char *way[4] = {"4 KiB pages, 1 stream", "2 MiB pages, 1 stream",
		                             "4 KiB pages, 4 streams", "2 MiB pages, 4 streams"};
		double gbs[4][1000];
		uint64_t s;
		for (int k = 0; k < 4; k++) {
			pass(buf[k & 1], n, t, k < 2 ? 1 : 4, &s); /* warm-up: threads, TLB */
			keep ^= s;
		}
		for (int r = 0; r < runs; r++) /* the ways interleaved */
			for (int k = 0; k < 4; k++) {
				double sec = pass(buf[k & 1], n, t, k < 2 ? 1 : 4, &s);
				keep ^= s;
				gbs[k][r] = (double)(n / (size_t)t / (LANES * 4) * (LANES * 4) * (size_t)t) *
				            sizeof(uint64_t) / sec / 1e9;
			}
		int b = 0;
		for (int k = 0; k < 4; k++) {
			qsort(gbs[k], (size_t)runs, sizeof *gbs[k], cmp);
			printf("# %d thread(s), %s: %.2f GB/s (median)\n", t, way[k], gbs[k][runs / 2]);
			if (gbs[k][runs / 2] > gbs[b][runs / 2])
				b = k;
		}
		printf("bandwidth %d %.2f %.2f %.2f %d\n", t, gbs[b][runs / 2], gbs[b][0],
		       gbs[b][runs - 1], runs);
		fflush(stdout);
	}
	free(list);
	free(buf[0]);
	free(buf[1]);
	/* the sums, where the compiler must believe someone reads them */
	return keep == 42 ? 3 : 0;
}

/* bench/sgemm: the machine's OpenBLAS cblas_sgemm roof for the OPT-125m shapes.
 * Y[N x out] = X[N x in] * W[out x in]^T, as an nn.Linear forward (row-major, W transposed),
 * N = 2048 rows by default. Prints one line per shape and thread count:
 *   shape in out threads median_gflops min_gflops max_gflops runs
 * usage: sgemm [-n ROWS] [-r RUNS] [-t THREADS,...]   (default -n 2048 -r 7 -t 1,2) */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int);
char *openblas_get_corename(void);
char *openblas_get_config(void);

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

static float *fill(size_t n, unsigned seed)
{
	float *p = malloc(n * sizeof *p);
	if (!p) {
		perror("sgemm: malloc");
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
	static const struct { const char *name; int in, out; } shapes[] = {
		{"q/k/v/out_proj", 768, 768}, {"fc1", 768, 3072}, {"fc2", 3072, 768}, {"lm_head", 768, 50272},
	};
	int n = 2048, runs = 7, threads[8] = {1, 2}, nthreads = 2;
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
		} else if (!strcmp(argv[i], "--core")) {
			printf("%s\n%s\n", openblas_get_corename(), openblas_get_config());
			return 0;
		} else {
			fprintf(stderr, "usage: sgemm [-n ROWS] [-r RUNS] [-t THREADS,...] | --core\n");
			return 2;
		}
	}
	if (n < 1 || runs < 1 || runs > 1000 || nthreads < 1) {
		fprintf(stderr, "sgemm: bad arguments\n");
		return 2;
	}
	printf("# N=%d rows, %d runs each, OpenBLAS core %s\n", n, runs, openblas_get_corename());
	printf("# shape in out threads median_gflops min_gflops max_gflops runs\n");
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
		int in = shapes[s].in, out = shapes[s].out;
		float *x = fill((size_t)n * in, 1), *w = fill((size_t)out * in, 2), *y = fill((size_t)n * out, 3);
		double flop = 2.0 * n * in * out, *g = malloc(runs * sizeof *g);
		for (int t = 0; t < nthreads; t++) {
			openblas_set_num_threads(threads[t]);
			/* one warm-up call: thread start-up and first touch are not the roof */
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
			for (int r = 0; r < runs; r++) {
				double t0 = now();
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w, in, 0.0f, y,
				            out);
				g[r] = flop / (now() - t0) / 1e9;
			}
			qsort(g, runs, sizeof *g, cmp);
			printf("%s %d %d %d %.1f %.1f %.1f %d\n", shapes[s].name, in, out, threads[t],
			       runs % 2 ? g[runs / 2] : 0.5 * (g[runs / 2 - 1] + g[runs / 2]), g[0], g[runs - 1], runs);
			fflush(stdout);
		}
		free(g), free(x), free(w), free(y);
	}
	return 0;
}

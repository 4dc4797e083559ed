/* bench/matvec.c: the decode product alone (common/nn/matvec.h), per weight storage: how
 * many weights per second lm_matvec reads for one row of x, in cache or not, so a change to
 * a row kernel can be measured without a whole lm-eval --generate around it.
 *
 *   make build/bench/matvec
 *   build/bench/matvec [-t THREADS] [-r REPS] [-n ROWS_OF_X] [-i ISA] OUT IN STORAGE...
 *
 * STORAGE is a dtype (f32 f16 bf16, or packed: q2g128 q4g128 q8c ...) and optionally a
 * sparse layout, f16/2:4, bf16/bitmap, q4g128/2:4 (packed: N:M only): half the weights
 * zero (all but the first n of every m, or each weight by a coin), packed by RTN, encoded as
 * lm-prune and lm-quant write them. OUT x IN picks the case: OPT-125m's
 * head is 50272 768 (77 MB of f16: read from memory), fc1 3072 768 (4.7 MB: from cache
 * after the first repetition). Weights are random (a fixed seed); the time is the best of
 * REPS products (default 50), after one untimed. Prints one line per storage:
 *
 *   STORAGE OUTxIN N=1 T=2: 0.412 ms, 11.5 GB/s stored, 5.73 G weights/s
 *
 * A storage ending in +x8 (q4g128+x8) runs on 8-bit x (lm_matvec_set_act8, lm-eval --act8).
 * -i scalar|avx2|avx512 runs another instruction set than the best this CPU has, to compare
 * two sets' row kernels in one run.
 * "stored" counts the bytes the storage keeps (values, codes, positions, group headers).
 * Like every timing here, it means something only on a quiet machine (bench/lib.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "dtype.h"
#include "matvec.h"
#include "pool.h"
#include "quant.h"
#include "rng.h"
#include "sparse.h"
#include "util.h"

static struct lm_rng rng; /* seeded in main: the same matrices on every run */

static float unif(void) { return (float)lm_rng_uniform(&rng) - 0.5f; }

/* w [out, in] of storage spec (dtype[/layout][+x8]); its data lm_alloc'd, as a model's are;
 * *x8: 1 for +x8 */
static int make(struct lm_mat *w, const char *spec, size_t out, size_t in, int *x8)
{
	char dts[32], buf[64];
	const size_t sl = strlen(spec);
	*x8 = sl > 3 && strcmp(spec + sl - 3, "+x8") == 0;
	if (sl >= sizeof buf)
		return lm_seterr("%s: no such storage", spec);
	memcpy(buf, spec, sl - (*x8 ? 3 : 0)), buf[sl - (*x8 ? 3 : 0)] = 0;
	spec = buf;
	const char *slash = strchr(spec, '/');
	size_t dl = slash ? (size_t)(slash - spec) : strlen(spec);
	if (dl >= sizeof dts)
		return lm_seterr("%s: no such storage", spec);
	memcpy(dts, spec, dl), dts[dl] = 0;
	int dt = lm_dtype_parse(dts);
	if (dt < 0)
		return lm_seterr("%s: no such dtype", dts);
	memset(w, 0, sizeof *w);
	w->dtype = (enum lm_dtype)dt, w->rows = (int64_t)out, w->cols = (int64_t)in;
	const int packed = lm_dtype_is_packed(w->dtype);
	if (!packed && w->dtype != LM_F32 && w->dtype != LM_F16 && w->dtype != LM_BF16)
		return lm_seterr("%s: not a weight dtype", dts);
	const int64_t shape[2] = {(int64_t)out, (int64_t)in};
	const size_t n = out * in;
	size_t nb;
	struct lm_layout want = {LM_LAYOUT_DENSE, 0, 0}, got;
	if (lm_dtype_nbytes(w->dtype, 2, shape, &nb) < 0)
		return -1;
	if (slash && lm_layout_parse(slash + 1, &want) < 0)
		return -1;
	if (want.kind == LM_LAYOUT_BITMAP)
		want.kind = LM_LAYOUT_UNSTRUCTURED; /* as lm-prune asks */
	float *f = lm_alloc(n * sizeof *f);
	uint8_t *d = lm_alloc(nb);
	if (!f || !d)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int drop = want.kind == LM_LAYOUT_NM ? (int)(i % (size_t)want.m) >= want.n
		           : want.kind == LM_LAYOUT_UNSTRUCTURED ? (int)(lm_rng_u64(&rng) & 1)
		                                                 : 0;
		f[i] = drop ? 0.0f : unif() + (unif() < 0 ? -0.1f : 0.1f); /* kept: never 0 */
	}
	/* packed: by RTN, as lm-quant does, a zero becoming its group's zero point */
	if ((packed ? lm_q_rtn(d, w->dtype, f, out, in, 0) : lm_convert(d, w->dtype, f, LM_F32, n)) < 0)
		return -1;
	lm_free(f);
	w->data = d, w->nbytes = nb;
	if (want.kind == LM_LAYOUT_DENSE)
		return 0;
	void *p = NULL;
	size_t len = 0;
	if (lm_sparse_encode(d, w->dtype, w->rows, w->cols, &want, &got, &p, &len) < 0)
		return -1;
	if (!p || got.kind != (want.kind == LM_LAYOUT_UNSTRUCTURED ? LM_LAYOUT_BITMAP : want.kind))
		return lm_seterr("%s: not encoded so at %zu inputs", spec, in);
	lm_free(d);
	w->layout = got, w->data = p, w->nbytes = len;
	if (got.kind == LM_LAYOUT_BITMAP) {
		if (!(w->rowoff = lm_alloc((out + 1) * sizeof *w->rowoff)))
			return -1;
		lm_sparse_row_starts(w->rowoff, p, len, w->dtype, w->rows, w->cols);
	}
	return 0;
}

static void usage(void)
{
	fputs("usage: matvec [-t threads] [-r reps] [-n rows-of-x] [-i isa] OUT IN STORAGE...\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	int threads = 1, reps = 50, c;
	size_t N = 1;
	while ((c = getopt(argc, argv, "t:r:n:i:")) != -1) {
		if (c == 'i') {
			int isa = -1;
			for (int k = LM_MATVEC_SCALAR; k <= LM_MATVEC_AVX512; k++)
				if (!strcmp(optarg, lm_matvec_isa_name((enum lm_matvec_isa)k)))
					isa = k;
			if (isa < 0 || lm_matvec_set_isa((enum lm_matvec_isa)isa) < 0) {
				fprintf(stderr, "matvec: -i %s: %s\n", optarg, isa < 0 ? "no such set" : lm_errmsg());
				return 2;
			}
		} else if (c == 't')
			threads = atoi(optarg);
		else if (c == 'r')
			reps = atoi(optarg);
		else if (c == 'n')
			N = (size_t)atol(optarg);
		else
			usage();
	}
	if (argc - optind < 3 || threads < 1 || reps < 1 || N < 1 || N > LM_MATVEC_MAX_N)
		usage();
	const size_t out = (size_t)atol(argv[optind]), in = (size_t)atol(argv[optind + 1]);
	if (!out || !in)
		usage();
	lm_set_threads(threads);
	lm_rng_seed(&rng, 1);
	float *x = lm_alloc(N * in * sizeof *x), *y = lm_alloc(N * out * sizeof *y);
	if (!x || !y)
		return 1;
	for (size_t i = 0; i < N * in; i++)
		x[i] = unif();
	for (int a = optind + 2; a < argc; a++) {
		struct lm_mat w;
		int x8 = 0;
		if (make(&w, argv[a], out, in, &x8) < 0 ||
		    (lm_matvec_set_act8(x8), lm_matvec(y, out, x, &w, 0, out, N, 0.0f)) < 0) {
			fprintf(stderr, "matvec: %s\n", lm_errmsg());
			return 1;
		}
		double best = 1e30;
		for (int r = 0; r < reps; r++) {
			double t0 = lm_now();
			lm_matvec(y, out, x, &w, 0, out, N, 0.0f);
			double t = lm_now() - t0;
			best = t < best ? t : best;
		}
		printf("%s %zux%zu N=%zu T=%d: %.3f ms, %.1f GB/s stored, %.2f G weights/s\n", argv[a],
		       out, in, N, threads, best * 1e3, (double)w.nbytes / best * 1e-9,
		       (double)(out * in) / best * 1e-9);
		lm_free(w.data), lm_free(w.rowoff);
	}
	lm_free(x), lm_free(y);
	return 0;
}

/* test_cptquant: the CPTQuant pieces that need no model: ordered 1-D k-means, the first
 * canonical correlation on synthetic data, the exact target-bits allocation */
#include "cptquant.h"
#include "rng.h"
#include "unit.h"

#include <math.h>
#include <stdint.h>

static void test_kmeans(void)
{
	/* three clear groups given in scrambled order */
	const double x[9] = {0.50, 0.01, 0.20, 0.02, 0.52, 0.21, 0.03, 0.49, 0.22};
	const int want[9] = {2, 0, 1, 0, 2, 1, 0, 2, 1};
	const int levels[3] = {4, 16, 8};   /* any order: most sensitive gets 16 */
	int rank[9], bits[9];
	CHECK(lm_kmeans_1d(x, 9, 3, rank) == 0);
	for (int i = 0; i < 9; i++)
		CHECKF(rank[i] == want[i], "x[%d] rank %d", i, rank[i]);
	CHECK(lm_cpt_alloc_kmeans(x, 9, levels, 3, bits) == 0);
	for (int i = 0; i < 9; i++)
		CHECKF(bits[i] == (want[i] == 2 ? 16 : want[i] == 1 ? 8 : 4), "x[%d] bits %d", i, bits[i]);
	/* two layers, three levels: the top two levels */
	CHECK(lm_cpt_alloc_kmeans(x, 2, levels, 3, bits) == 0);
	CHECK(bits[0] == 16 && bits[1] == 8);
	CHECK(lm_kmeans_1d(x, 2, 3, rank) < 0);
}

static void test_cca(void)
{
	enum { N = 200, P = 5, Q = 4 };
	static double X[N * P], Y[N * Q], Z[N * Q];
	struct lm_rng st;
	double rho;
	lm_rng_seed(&st, 42);
	for (int i = 0; i < N; i++) {
		for (int j = 0; j < P; j++)
			X[i * P + j] = lm_rng_normal(&st);
		for (int j = 0; j < Q; j++) {
			/* Y = A X + small noise: some direction of Y is almost exactly one of X */
			double d = 0;
			for (int k = 0; k < P; k++)
				d += (double)((j + 1) * (k + 2) % 7 - 3) * X[i * P + k];
			Y[i * Q + j] = d + 3 + 0.01 * lm_rng_normal(&st);
			Z[i * Q + j] = lm_rng_normal(&st);
		}
	}
	CHECK(lm_cca_first(X, Y, N, P, Q, &rho) == 0);
	CHECKF(rho > 0.999 && rho <= 1, "linear map: rho %g", rho);
	CHECK(lm_cca_first(X, Z, N, P, Q, &rho) == 0);
	CHECKF(rho < 0.4, "independent: rho %g", rho);
	CHECK(lm_cca_first(X, Z, 1, P, Q, &rho) < 0);
}

static void test_target(void)
{
	/* 4 equal layers, levels 8/4, average <= 6: two layers get 8 bits, the two most
	 * sensitive; layer 2's negative sensitivity counts as 0 */
	const double s[4] = {0.9, 0.1, -0.5, 0.5};
	const int64_t n[4] = {100, 100, 100, 100};
	const int levels[2] = {8, 4};
	int bits[4];
	CHECK(lm_cpt_alloc_target(s, n, 4, levels, 2, 6.0, bits) == 0);
	CHECK(bits[0] == 8 && bits[1] == 4 && bits[2] == 4 && bits[3] == 8);
	/* 5 bits: room for one 8 */
	CHECK(lm_cpt_alloc_target(s, n, 4, levels, 2, 5.0, bits) == 0);
	CHECK(bits[0] == 8 && bits[1] == 4 && bits[2] == 4 && bits[3] == 4);
	/* uneven sizes: the big layer at 8 bits costs the whole budget of 6 */
	{
		const int64_t m[3] = {200, 100, 100};
		const double s3[3] = {0.1, 1, 1};
		CHECK(lm_cpt_alloc_target(s3, m, 3, levels, 2, 6.0, bits) == 0);
		CHECK(bits[0] == 4 && bits[1] == 8 && bits[2] == 8);
	}
	CHECK(lm_cpt_alloc_target(s, n, 4, levels, 2, 3.0, bits) < 0);
	CHECK(lm_cpt_alloc_target(s, n, 4, levels, 2, 99.0, bits) == 0);
	CHECK(bits[0] == 8 && bits[1] == 8 && bits[2] == 8 && bits[3] == 8);
}

/* PMPQ and CMPQ allocation from given sensitivities, checked by construction on random
 * inputs: the k-means labels are a fixed point of Lloyd's algorithm (every layer in the
 * cluster whose mean is nearest), the clusters are intervals ranked by their means, so the
 * bits never decrease with the sensitivity, the most sensitive layer gets the highest level
 * and the least sensitive the lowest of the top k, every one of the k levels is used */
static void test_kmeans_random(void)
{
	static const int lv3[3] = {4, 16, 8}, lv4[4] = {2, 8, 3, 4};
	struct lm_rng r;
	lm_rng_seed(&r, 99);
	for (int trial = 0; trial < 300; trial++) {
		const int n = 1 + (int)lm_rng_below(&r, 40), nl = trial % 2 ? 3 : 4;
		const int *lv = trial % 2 ? lv3 : lv4, k = nl < n ? nl : n;
		double s[40], mean[4] = {0}, sorted_lv[4];
		int bits[40], cnt[4] = {0}, used[17] = {0};
		for (int i = 0; i < n; i++)   /* some ties and clumps: values on a coarse grid */
			s[i] = trial % 3 ? lm_rng_normal(&r) : (double)lm_rng_below(&r, 6) * 0.1;
		CHECK(lm_cpt_alloc_kmeans(s, n, lv, nl, bits) == 0);
		/* the levels sorted; the top k are the ones in use */
		for (int j = 0; j < nl; j++)
			sorted_lv[j] = lv[j];
		for (int a = 1; a < nl; a++)
			for (int b = a; b > 0 && sorted_lv[b - 1] > sorted_lv[b]; b--) {
				double t = sorted_lv[b];
				sorted_lv[b] = sorted_lv[b - 1], sorted_lv[b - 1] = t;
			}
		int lo = 0, hi = 0;
		for (int i = 0; i < n; i++) {
			lo = s[i] < s[lo] ? i : lo;
			hi = s[i] > s[hi] ? i : hi;
			used[bits[i]] = 1;
			int ok = 0;
			for (int j = nl - k; j < nl; j++)
				ok |= bits[i] == (int)sorted_lv[j];
			CHECKF(ok, "trial %d: layer %d got %d bits, not one of the top %d levels", trial, i, bits[i], k);
			for (int j = 0; j < n; j++)
				CHECKF(!(s[i] > s[j] && bits[i] < bits[j]), "trial %d: s %g gets %d bits, s %g gets %d",
				       trial, s[i], bits[i], s[j], bits[j]);
		}
		/* with distinct sensitivities (real ones: perplexity differences, correlations)
		 * all k clusters are used: the most sensitive layer gets the highest level, the
		 * least sensitive the lowest of the top k. (With tied values the quantile start can
		 * put two centres on one value and leave a cluster empty, and then the top level
		 * can go unused: not asserted here, see trial % 3 == 0.) */
		int nused = 0;
		for (int b = 0; b < 17; b++)
			nused += used[b];
		if (trial % 3) {
			CHECKF(nused == k, "trial %d: %d of %d levels used", trial, nused, k);
			CHECKF(bits[hi] == (int)sorted_lv[nl - 1], "trial %d: the most sensitive layer has %d bits",
			       trial, bits[hi]);
			CHECKF(bits[lo] == (int)sorted_lv[nl - k], "trial %d: the least sensitive has %d bits", trial,
			       bits[lo]);
		}
		/* Lloyd's fixed point: the cluster means (cluster = layers of one width) ... */
		int rank[40];
		CHECK(lm_kmeans_1d(s, n, k, rank) == 0);
		for (int i = 0; i < n; i++)
			mean[rank[i]] += s[i], cnt[rank[i]]++;
		for (int j = 0; j < k; j++)
			mean[j] = cnt[j] ? mean[j] / cnt[j] : NAN;
		/* ... each layer is nearest its own cluster's mean (ties either way) */
		for (int i = 0; i < n; i++) {
			CHECK(bits[i] == (int)sorted_lv[nl - k + rank[i]]);
			for (int j = 0; j < k; j++)
				if (cnt[j])
					CHECKF(fabs(s[i] - mean[rank[i]]) <= fabs(s[i] - mean[j]) + 1e-12,
					       "trial %d: layer %d (s %g) is nearer cluster %d's mean %g than its own %g",
					       trial, i, s[i], j, mean[j], mean[rank[i]]);
		}
		/* and the clusters are ranked by their means */
		for (int j = 1; j < k; j++)
			if (cnt[j] && cnt[j - 1])
				CHECKF(mean[j - 1] < mean[j], "trial %d: cluster means %g %g", trial, mean[j - 1], mean[j]);
	}
}

/* --target-bits against brute force over every assignment of small problems: the average
 * (weighted by size, nominal bits) is at most the target, and the penalty
 * sum max(s, 0) * n * 4^-bits is the least any assignment within the target reaches */
static void test_target_brute(void)
{
	static const int lv[3] = {8, 3, 4};
	struct lm_rng r;
	lm_rng_seed(&r, 5);
	for (int trial = 0; trial < 200; trial++) {
		const int n = 1 + (int)lm_rng_below(&r, 6), nl = trial % 2 ? 3 : 2;
		double s[6], target = 3 + 5 * lm_rng_uniform(&r);
		int64_t m[6], tot = 0;
		int bits[6];
		for (int i = 0; i < n; i++) {
			s[i] = lm_rng_normal(&r);
			m[i] = trial % 3 ? 100 : 100 * (1 + (int64_t)lm_rng_below(&r, 4));
			tot += m[i];
		}
		const int *levels = nl == 3 ? lv : lv + 1;   /* {8, 3, 4} or {3, 4} */
		if (nl == 2)
			target = 3 + lm_rng_uniform(&r);
		CHECK(lm_cpt_alloc_target(s, m, n, levels, nl, target, bits) == 0);
		double got = 0, avg = 0;
		for (int i = 0; i < n; i++) {
			got += fmax(s[i], 0) * (double)m[i] * pow(4, -bits[i]);
			avg += (double)m[i] * bits[i] / (double)tot;
		}
		CHECKF(avg <= target + 1e-9, "trial %d: average %g above the target %g", trial, avg, target);
		double best = INFINITY;
		int code[6] = {0};
		for (;;) {
			double pen = 0, a = 0;
			for (int i = 0; i < n; i++) {
				pen += fmax(s[i], 0) * (double)m[i] * pow(4, -levels[code[i]]);
				a += (double)m[i] * levels[code[i]] / (double)tot;
			}
			if (a <= target + 1e-9 && pen < best)
				best = pen;
			int i = 0;
			while (i < n && ++code[i] == nl)
				code[i++] = 0;
			if (i == n)
				break;
		}
		CHECKF(fabs(got - best) <= 1e-12 * (1 + best), "trial %d: penalty %g, brute force %g", trial, got, best);
	}
}

int main(void)
{
	test_kmeans();
	test_kmeans_random();
	test_cca();
	test_target();
	test_target_brute();
	return unit_done("test_cptquant");
}

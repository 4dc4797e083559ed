/* test_cptquant: the CPTQuant pieces that need no model: ordered 1-D k-means, the first
 * canonical correlation on synthetic data, the exact target-bits allocation */
#include "cptquant.h"
#include "rng.h"
#include "unit.h"

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

int main(void)
{
	test_kmeans();
	test_cca();
	test_target();
	return unit_done("test_cptquant");
}

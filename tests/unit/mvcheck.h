/* mvcheck.h: the decode product's check shared by test_matvec.c and test_spmv.c: y = x · W^T
 * for rows [r0, r0 + nr) under every instruction set this CPU has and 1 and 2 threads,
 * against a double-precision reference within a bound per output (the tests' headers argue
 * the bound). Include after unit.h, matvec.h and pool.h. */
#ifndef LM_MVCHECK_H
#define LM_MVCHECK_H
#include <math.h>
#include <string.h>

struct stats {
	int cases;
	double worst; /* largest |y - ref| / bound seen */
};

/* one product: x [N, IN], y [N, ldy] starting as bias where beta is 1; ref and bound [N, nr] */
struct mvcase {
	const struct lm_mat *w;
	const float *x, *bias;
	const double *ref, *bound;
	size_t r0, nr, ldy, N;
	float beta;
};

/* every set and thread count: |y - ref| <= bound, and nothing written past nr (NaN where y
 * must not be read (beta 0) or written); what names the case in a failure; y [N, ldy] */
static void mvcheck_isas(const struct mvcase *c, float *y, const char *what, struct stats *st)
{
	const size_t N = c->N, nr = c->nr, ldy = c->ldy;
	for (int isa = LM_MATVEC_SCALAR; isa <= LM_MATVEC_AVX512; isa++) {
		if (lm_matvec_set_isa((enum lm_matvec_isa)isa) < 0)
			continue;
		for (int th = 1; th <= 2; th++) {
			lm_set_threads(th);
			memcpy(y, c->bias, N * ldy * sizeof *y);
			for (size_t n = 0; n < N; n++)
				for (size_t o = c->beta ? nr : 0; o < ldy; o++)
					y[n * ldy + o] = NAN;
			CHECK(lm_matvec(y, ldy, c->x, c->w, c->r0, nr, N, c->beta) == 0);
			double worst = 0;
			int bad_pad = 0;
			for (size_t n = 0; n < N; n++) {
				for (size_t o = 0; o < nr; o++) {
					double e = fabs((double)y[n * ldy + o] - c->ref[n * nr + o]);
					double b = c->bound[n * nr + o];
					double r = b > 0 ? e / b : e > 0 ? INFINITY : 0;
					if (!(r <= worst))
						worst = isnan(r) ? INFINITY : r;
				}
				for (size_t o = nr; o < ldy; o++)
					bad_pad += !isnan(y[n * ldy + o]);
			}
			CHECKF(worst <= 1.0 && bad_pad == 0,
			       "%s %s %d thread(s): error %.3g of the bound, %d pad written", what,
			       lm_matvec_isa_name((enum lm_matvec_isa)isa), th, worst, bad_pad);
			if (worst > st->worst)
				st->worst = worst;
			st->cases++;
		}
	}
	lm_matvec_set_isa(LM_MATVEC_SCALAR);
}
#endif

/* rng.c: see rng.h */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void lm_rng_seed(struct lm_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
	r->has_spare = 0;
}

uint64_t lm_rng_u64(struct lm_rng *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

double lm_rng_uniform(struct lm_rng *r)
{
	return (double)(lm_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t lm_rng_below(struct lm_rng *r, uint64_t n)
{
	/* rejection keeps it unbiased: drop the top partial range */
	uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
	do
		x = lm_rng_u64(r);
	while (x >= lim);
	return x % n;
}

double lm_rng_normal(struct lm_rng *r)
{
	double u, v;
	if (r->has_spare) {
		r->has_spare = 0;
		return r->spare;
	}
	do
		u = lm_rng_uniform(r);
	while (u <= 0);
	v = lm_rng_uniform(r);
	double m = sqrt(-2 * log(u));
	r->spare = m * sin(2 * M_PI * v);
	r->has_spare = 1;
	return m * cos(2 * M_PI * v);
}

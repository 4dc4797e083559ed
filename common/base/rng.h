/* rng.h: a small deterministic random number generator (xoshiro256** seeded by
 * splitmix64), so `--seed N` gives the same integers and uniforms on every machine;
 * normals go through libm's log/sin/cos, identical wherever libm rounds correctly. */
#ifndef LM_RNG_H
#define LM_RNG_H

#include <stdint.h>

struct lm_rng { uint64_t s[4]; int has_spare; double spare; };

void lm_rng_seed(struct lm_rng *r, uint64_t seed);
uint64_t lm_rng_u64(struct lm_rng *r);
double lm_rng_uniform(struct lm_rng *r);          /* [0, 1) with 53 random bits */
uint64_t lm_rng_below(struct lm_rng *r, uint64_t n);  /* uniform in [0, n), unbiased */
double lm_rng_normal(struct lm_rng *r);           /* N(0, 1), Box-Muller */

#endif

/* keyorder.h: indices sorted by a key, equal keys in a fixed order, as a stable sort gives
 * them (qsort is not stable): the one comparator behind length-sorted batches, rank ties,
 * scored prompts and decoding by prompt length. (Not I/O: it sits here, below methods/ and
 * eval/ which both use it, until base/ can take it.) */
#ifndef LM_KEYORDER_H
#define LM_KEYORDER_H

#include <stddef.h>

/* order [n] = 0..n-1 sorted by key[i] ascending, equal keys by tie[i] ascending (tie NULL:
 * by i, the input order). The tie values must differ where the keys are equal, so that the
 * order is one and the same whatever qsort does. key [n] may hold integer sizes: doubles
 * hold them exactly below 2^53. */
void lm_key_order(const double *key, const size_t *tie, size_t n, size_t *order);

#endif

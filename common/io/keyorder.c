/* keyorder.c: indices sorted by a key, equal keys in a fixed order (see keyorder.h) */
#include "keyorder.h"
#include "util.h"

#include <stdlib.h>

struct keyed {
	double key;
	size_t tie, i;
};

static int by_key(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->tie < y->tie ? -1 : x->tie > y->tie;
}

void lm_key_order(const double *key, const size_t *tie, size_t n, size_t *order)
{
	struct keyed *k = xmalloc((n ? n : 1) * sizeof *k);
	for (size_t i = 0; i < n; i++)
		k[i].key = key[i], k[i].tie = tie ? tie[i] : i, k[i].i = i;
	qsort(k, n, sizeof *k, by_key);
	for (size_t i = 0; i < n; i++)
		order[i] = k[i].i;
	free(k);
}

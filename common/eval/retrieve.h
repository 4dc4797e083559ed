/* retrieve.h: UPRISE-style prompt retrieval over an embedded pool (docs/methods.md §7).
 *
 * The pool's embeddings (optionally through a tuned projection P: e -> P e) are
 * normalised once; a query (embedded the same way) is projected, normalised, and the k
 * pool rows of highest cosine are its demonstrations. They are prepended best closest to
 * the input: "d_k \n … \n d_2 \n d_1 \n input" (UPRISE joins with " \n "). */
#ifndef LM_RETRIEVE_H
#define LM_RETRIEVE_H

#include <stddef.h>
#include <stdint.h>

#include "embstream.h"
#include "mc.h"
#include "model.h"
#include "rng.h"
#include "tokenizer.h"

#define LM_DEMO_SEP " \n "

struct lm_ret_index {
	size_t n, d;
	float *unit;        /* [n, d] projected, unit-length pool rows */
	const float *proj;  /* [d, d] or NULL (borrowed) */
};

/* emb [n, d] through proj (NULL: none), normalised; -1 + error */
int lm_ret_index_init(struct lm_ret_index *x, const float *emb, size_t n, size_t d,
                      const float *proj);
void lm_ret_index_free(struct lm_ret_index *x);
/* out [d] = proj · v (or v), normalised to unit length (zero stays zero) */
void lm_ret_project(const float *proj, const float *v, size_t d, float *out);
/* the k best rows for query q [d] (raw embedding), best first: idx [k], cosine [k]
 * (may be NULL); k <= x->n */
void lm_ret_topk(const struct lm_ret_index *x, const float *q, size_t k, size_t *idx, float *cosine);
/* k distinct rows of [0, n) drawn uniformly (the random-demonstrations baseline) */
void lm_ret_random(struct lm_rng *r, size_t n, size_t k, size_t *idx);
/* the context with demonstrations demo[idx[0..k)] (idx[0] the best) before input, malloc'd */
char *lm_ret_context(const char *const *demo, const size_t *idx, size_t k, const char *input);

/* ---- demonstrations for a task ---- */
struct lm_ret_opts {
	size_t k;            /* demonstrations per item */
	int random;          /* k uniform random pool prompts instead of the nearest */
	int no_projection;   /* ignore a tuned projection in the index */
	uint64_t seed;       /* for random */
};

/* the contexts [t->n] (malloc'd strings) of a task's items with k demonstrations each
 * from index e. The queries (the items' inputs) are embedded by m the way the index
 * records (template, demonstration, pooling), so e must come from m: refused otherwise,
 * as is k larger than the pool. NULL + error. */
char **lm_ret_contexts(const struct lm_model *m, const struct lm_tokenizer *tk,
                       const struct lm_emb *e, const struct lm_task *t,
                       const struct lm_ret_opts *o);
void lm_ret_contexts_free(char **ctx, size_t n);

#endif

/* eeexits.h: early exit's exits (GREEN-CODE, docs/methods.md §9): parsing and checking
 * them, finding those a stream records, and the multi-exit loss weights. An exit k
 * (0-based) is after decoder layer k, one of 0..L-2 (layer L-1 is the full model). */
#ifndef LM_EEEXITS_H
#define LM_EEEXITS_H

#include <stddef.h>

#include "modelstream.h"

/* "1,2,3" (1-based: after decoder layer k) -> 0-based indices, malloc'd; NULL + error */
int *lm_ee_parse_exits(const char *s, size_t *n);
/* "0.5,0.9" -> numbers, malloc'd; NULL + error */
double *lm_ee_parse_list(const char *s, size_t *n);
/* exits increasing, each a layer 0..L-2 (layer L-1 is the full model); -1 + error naming
 * the first bad one 1-based */
int lm_ee_check_exits(const int *ex, size_t n, int L);
/* the exits a stream records, 0-based (malloc'd): its exit policy's, else those of its
 * early-exit fine-tuning (a tensor's "retrain" attrs); NULL when it records none */
int *lm_ee_stream_exits(const struct lm_model_stream *ms, size_t *n);
/* GREEN-CODE's multi-exit loss weights: exits in the first half of the layers (index
 * < L/2) share 0.7, those in the second half 0.2, each half geometrically (ratio 0.9,
 * the earliest heaviest), the final output 0.1; scaled to sum to 1 when a half has none.
 * w [n + 1]: the exits', then the final output's. */
void lm_ee_default_weights(const int *ex, size_t n, int L, float *w);

#endif

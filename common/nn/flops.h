/* flops.h: FLOPs of the pieces of one decoded token of OPT, for the cost of early-exit decoding.
 *
 * 2 FLOPs per multiply-add of the matrix products: projections, attention scores and
 * weighted sums over the cache, the head wherever logits are computed; LayerNorm, softmax
 * and activations are O(C) and left out. */
#ifndef LM_FLOPS_H
#define LM_FLOPS_H

#include <stddef.h>

#include "opt.h"

/* a full decoder layer attending over keys cached positions */
double lm_ee_flops_layer(const struct lm_opt_config *c, size_t keys);
/* a layer that computes only the new position's keys and values */
double lm_ee_flops_kv(const struct lm_opt_config *c);
/* project_out (when there is one) and the LM head */
double lm_ee_flops_head(const struct lm_opt_config *c);
/* project_in of the token's embedding (0 without one) */
double lm_ee_flops_embed(const struct lm_opt_config *c);

#endif

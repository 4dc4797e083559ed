/* contrastive.h: the InfoNCE loss over cosine similarities, and its gradient with respect
 * to the embeddings themselves (SimCSE's and UPRISE's objective; docs: man lm-embed).
 *
 * B queries q [B,d] and K >= B candidates k [K,d]; query b's positive is k[pos[b]], every
 * other candidate with mask[b,j] = 1 (mask NULL: all) is a negative for it: the other
 * queries' positives (in-batch negatives) and any hard negatives appended after them.
 *   s(b,j) = cos(q_b, k_j) / tau,   cos(x,y) = x.y / (max(|x|,eps) max(|y|,eps)), eps 1e-8
 *   L_qk = mean_b [ logsumexp_{j: mask[b,j] or j = pos[b]} s(b,j) - s(b,pos[b]) ]
 * symmetric adds the other direction, each positive choosing its query among all queries
 * (CLIP's loss; the hard negatives take no part in it):
 *   L_kq = mean_b [ logsumexp_{c: mask[c,pos[b]] or c = b} s(c,pos[b]) - s(b,pos[b]) ]
 *   L = (L_qk + L_kq) / 2
 * Everything is computed in double from the float inputs: the sizes are a batch's, tiny
 * next to the model that made the embeddings. */
#ifndef LM_CONTRASTIVE_H
#define LM_CONTRASTIVE_H

#include <stddef.h>

/* the loss; dq [B,d] and dk [K,d] get dL/dq and dL/dk (overwritten; NULL: not wanted).
 * pos[b] < K for every b. */
double lm_contrastive_loss(const float *q, size_t B, const float *k, size_t K, size_t d,
                           const size_t *pos, const unsigned char *mask, double tau,
                           int symmetric, float *dq, float *dk);

#endif

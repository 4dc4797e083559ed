/* perplexity.h: perplexity of token windows, the one definition every tool uses:
 * exp(mean over windows of each window's mean next-token NLL) */
#ifndef LM_PERPLEXITY_H
#define LM_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "modelstream.h"

/* The mean over windows ids[w*T .. (w+1)*T), w < W, of each window's mean NLL, one layer
 * at a time: all windows' activations stay in memory while the stream brings each decoder
 * layer (only one layer's weights are ever held), B windows per forward batch. done(ctx,
 * l, L) after each layer (may be NULL). -1 + error, *where naming what failed (the
 * stream, "forward" or "activations") */
int lm_ppl_stream(struct lm_model_stream *ms, const int32_t *ids, size_t W, size_t T, size_t B,
                  void (*done)(void *ctx, int l, int L), void *ctx, double *mean, const char **where);

/* exp of the mean loss over W windows of T tokens, one window at a time, of a model in
 * memory (every window has T - 1 targets); -1 + error */
int lm_ppl_windows(const struct lm_model *m, const int32_t *ids, size_t W, size_t T, double *ppl);

#endif

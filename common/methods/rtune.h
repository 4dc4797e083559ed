/* rtune.h: tuning a prompt retriever the UPRISE way (docs/methods.md §7), on top of
 * frozen PromptEOL embeddings.
 *
 * 1. Scoring with the frozen LM: for each training input x (at most train_max, drawn
 *    with the seed), `sample` pool prompts p are drawn (never x's own demonstration) and
 *    each one-shot context "p \n x" scores x's options by mean NLL (mc.h). A prompt's
 *    score is the gold option's mean NLL over the sum of all options' (UPRISE's L1
 *    normalised loss; lower is better); it is "correct" when the gold option wins.
 * 2. Pairs: the best-scored correct prompt is x's positive; the `negatives` worst-scored
 *    are its hard negatives. An input with no correct prompt is dropped.
 * 3. Training: a linear map P [d, d], initialised to the identity, applied to both the
 *    query embedding e(x) and the prompt embeddings e(p); InfoNCE over the cosines /
 *    temperature with the positive, the hard negatives and every other input's positive
 *    and negatives in the batch (in-batch negatives; a copy of the positive elsewhere in
 *    the batch is masked, not counted as a negative). Gradients by hand, AdamW (no weight
 *    decay), batches (default 16) in a seeded order, one thread: the result depends only on the
 *    inputs and the seed. A tenth of the pairs is held out; progress reports how often
 *    their positive outranks all their hard negatives, before and after (the report). */
#ifndef LM_RTUNE_H
#define LM_RTUNE_H

#include <stddef.h>
#include <stdint.h>

#include "embed.h"
#include "mc.h"
#include "model.h"
#include "tokenizer.h"

struct lm_rtune_cfg {
	size_t sample, negatives, train_max, epochs, batch;
	double lr, temperature;
	uint64_t seed;
	/* progress (NULL: none): what is "scoring" or "training", done of total */
	void (*progress)(void *ctx, const char *what, size_t done, size_t total);
	void *pctx;
};

void lm_rtune_defaults(struct lm_rtune_cfg *c);

/* How much the frozen LM's feedback can teach a retriever (step 1's counts): of `prompts`
 * one-shot contexts scored, `right` picked the gold option (right / prompts is the accuracy
 * of one random pool prompt); of `inputs`, `swayed` had sampled prompts that disagree on
 * the answer and `oracle` had at least one right prompt (oracle / inputs is the accuracy of
 * the best-scored prompt, an upper bound for any retriever of one prompt over the same
 * draws). A model whose answer no prompt changes (swayed 0) gives nothing to learn. */
struct lm_rtune_feedback {
	size_t inputs, prompts, right, swayed, oracle;
};

/* the numbers a run reports (also on stderr when verbose) */
struct lm_rtune_report {
	size_t inputs, pairs, held_out;
	double loss_first, loss_last;        /* mean training loss of the first / last epoch */
	double held_before, held_after;      /* held-out positive-ranked-first rate */
	double train_before, train_after;    /* the same on the pairs P was trained on */
	struct lm_rtune_feedback fb;
};

/* Tune P for a pool of npool prompts (pool_prompt[i] = "INPUT ANSWER", pool_input[i] =
 * INPUT, pool_emb [npool, d] their embeddings made with ec) on the task's items. Returns
 * P [d, d] (lm_alloc'd) or NULL + error (no input with a correct prompt, too small a
 * pool). rep may be NULL. */
float *lm_rtune(const struct lm_model *m, const struct lm_tokenizer *tk,
                const struct lm_embed_cfg *ec, const struct lm_task *task,
                const char *const *pool_input, const char *const *pool_prompt,
                const float *pool_emb, size_t npool, const struct lm_rtune_cfg *c,
                struct lm_rtune_report *rep);

/* Steps 1 and 2 alone, for training the encoder itself (lm-embed --tune-encoder): the
 * same items, draws and pairs lm_rtune makes with the same configuration, as indices:
 * pair i is task item item[i], its positive pool prompt pos[i] and its H hard negatives
 * neg[i * H ..], the worst-scored first. -1 + error as lm_rtune. */
struct lm_rtune_pairs {
	size_t n, inputs, H;
	size_t *item, *pos, *neg;
	struct lm_rtune_feedback fb;
};
int lm_rtune_pairs(const struct lm_model *m, const struct lm_tokenizer *tk,
                   const struct lm_task *task, const char *const *pool_input,
                   const char *const *pool_prompt, size_t npool, const struct lm_rtune_cfg *c,
                   struct lm_rtune_pairs *out);
void lm_rtune_pairs_free(struct lm_rtune_pairs *p);

/* The InfoNCE step on its own (exposed for the gradient test): queries q [B, d], their
 * candidate prompts k [K, d], pos[b] the index in k of query b's positive, mask [B, K]
 * (1: candidate counts for query b) or NULL; writes the mean loss and, if dP is not NULL,
 * its gradient [d, d] with respect to P. The loss is contrastive.h's (lm-embed
 * --contrastive's) of the projected vectors P q and P k. */
double lm_infonce(const float *P, const float *q, size_t B, const float *k, size_t K,
                  const size_t *pos, const unsigned char *mask, size_t d, double temperature,
                  float *dP);

#endif

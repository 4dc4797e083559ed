/* unlearn.h: gradient-ascent unlearning (docs/methods.md §8: the three-loss recipe of Yao
 * et al. 2023 that the NYU unlearning paper uses) on a struct lm_train (train.h).
 *
 * Data are sequences whose tail is scored: a question/answer pair laid out as
 *   BOS "### Question: {q}\n ### Answer:" " {a}"        (prompt, then the scored answer)
 * with prompt and answer tokenized apart, so the answer's tokens are exactly those of " {a}"
 * (the reference finds them by tokenizing the prompt alone: the same ids here, as the
 * pre-tokenizer splits at ':' + ' '), or a window of a text (all but the first token scored).
 *
 * One optimizer step's loss (each term a mean over its batch of per-sequence means, the
 * reference's normalisation):
 *   forget   - w_forget * CE on the forget answers            (gradient ascent)
 *   random   + w_random * CE on the same questions, each paired with K answers drawn from
 *              the retain set                                  (descent; the reference scores
 *              nearly the whole sequence by a bug: here only the answer, as it intended)
 *   retain   + w_retain * cross-entropy to the frozen original model's next-token
 *              distribution at every position of retain sequences (= KL to it plus its
 *              entropy, a constant: the reference's "KL"); or plain NLL of them (retain_nll)
 * "learn" turns the forget term into descent (a model that knows the forget set: the
 * starting point of an experiment). */
#ifndef LM_UNLEARN_H
#define LM_UNLEARN_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "qacsv.h"
#include "rng.h"
#include "tokenizer.h"
#include "train.h"

/* the data: struct lm_ul_set, lm_ul_load_qa, lm_ul_load_text (qacsv.h) */

/* how many items of f are also in r: for two Q/A sets, forget questions that are retain
 * questions; otherwise items of f sharing a run of LM_UL_OVERLAP_RUN tokens with r */
#define LM_UL_OVERLAP_RUN 32
size_t lm_ul_overlap(const struct lm_ul_set *f, const struct lm_ul_set *r);

/* what a batch scores, and how its weights average */
enum lm_ul_score {
	LM_UL_ANSWER,  /* target ids[t+1] at t in [from-1, len-1): weight scale / (len - from) / B,
	                  the mean over each sequence's scored part, then over the batch */
	LM_UL_TOKENS,  /* target ids[t+1] at t in [0, len-1): weight scale / (all such positions),
	                  the mean over the batch's tokens */
	LM_UL_SOFT     /* every position t < len (soft targets: the target id 0 only selects
	                  it): weight scale / (all such positions) */
};
/* Lay B items out right-padded (pad id) to the longest, T' (returned), in ids [B,T'], with
 * targets [B,T'] and weights [B,T'] for lm_train_step_loss; every other position has
 * target -1 and weight 0. */
size_t lm_ul_batch(const struct lm_ul_item *const *items, size_t B, enum lm_ul_score how,
                   double scale, int pad, int32_t *ids, int32_t *tgt, float *w);

struct lm_ul_opts {
	double w_forget, w_random, w_retain;  /* w_forget > 0; 0 turns a term off */
	size_t forget_batch, retain_batch;    /* sequences per step */
	size_t nrandom;                       /* K random answers per forget question */
	size_t maxlen;                        /* longest sequence (random pairs are cut to it) */
	int retain_nll;                       /* retain term: NLL instead of the frozen model */
	int learn;                            /* descend on the forget set */
	uint64_t seed;                        /* order of the sets, the random answers */
};

/* the terms of a step, each as a positive mean cross-entropy (0 when off), and the
 * weighted total that was differentiated */
struct lm_ul_losses {
	double forget, random, retain, total;
	size_t tokens;  /* positions the step ran through (padding included) */
};

struct lm_unlearn {
	struct lm_train *tr;
	const struct lm_model *frozen;   /* the original model (retain term without retain_nll) */
	const struct lm_ul_set *f, *r;
	struct lm_ul_opts o;
	int use_random, use_retain;
	size_t B, T;                     /* the largest batch and sequence any term makes */
	struct lm_fwd fw;                /* the frozen model's forward */
	float *ref;                      /* [retain_batch * T, E] its final outputs */
	int32_t *ids, *tgt;              /* [B, T] */
	float *w;
	struct lm_ul_item *pairs;        /* [forget_batch * nrandom] random pairs */
	int32_t *pair_ids;               /* their ids, maxlen each */
	const struct lm_ul_item **pick;  /* [B] the batch being made */
	const struct lm_ul_item **fq;    /* [forget_batch] this step's forget questions */
	size_t *ford, *rord, fi, ri;     /* shuffled orders and positions in them */
	struct lm_rng rng;
	int pad;
};

/* the batch lm_train_init must be made for: B sequences of up to T tokens */
void lm_ul_shape(const struct lm_ul_set *f, const struct lm_ul_set *r, const struct lm_ul_opts *o,
                 size_t *B, size_t *T);
/* r may be NULL (no retain set: no random and no retain term); frozen may be NULL only
 * when no term needs it. The random term needs Q/A on both sides. -1 + error. */
int lm_ul_init(struct lm_unlearn *u, struct lm_train *tr, const struct lm_model *frozen,
               const struct lm_ul_set *f, const struct lm_ul_set *r, const struct lm_ul_opts *o);
/* zero the gradients, then forward + backward of every term on the next batches;
 * gradients are left in tr for the update. -1 + error. */
int lm_ul_step(struct lm_unlearn *u, struct lm_ul_losses *out);
void lm_ul_free(struct lm_unlearn *u);

/* The frozen original for a training that changes the model's own layers (full
 * training): dst gets copies of src's decoder layers and final LayerNorm, and shares its
 * embeddings, projections and head (which such a training leaves alone: the caller
 * checks with lm_train_changes). Free with lm_ul_frozen_free only. -1 + error. */
int lm_ul_frozen_copy(struct lm_model *dst, const struct lm_model *src);
void lm_ul_frozen_free(struct lm_model *dst);
/* bytes dst holds of its own */
size_t lm_ul_frozen_bytes(const struct lm_model *dst);

#endif

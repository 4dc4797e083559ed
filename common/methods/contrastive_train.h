/* contrastive_train.h: contrastive fine-tuning of a decoder's PromptEOL embeddings
 * (SimCSE's objective on OPT, as Jiang et al.'s scaling_sentemb does), built on the model
 * training of train.h: the embedding of a sentence is the final hidden state at its
 * prompt's last token, and the gradient of the InfoNCE loss (contrastive.h) enters there
 * (lm_train_embed_backward). What trains (LoRA, PERP's subset, everything) is train.h's
 * choice; the loop around the steps (schedule, clipping, AdamW, progress) is the program's,
 * as for lm-retrain.
 *
 * Data: one example per line.
 *   supervised     SENTENCE<TAB>POSITIVE[<TAB>HARD NEGATIVE]
 *   unsupervised   SENTENCE (SimCSE: the positive is the same sentence again, in another
 *                  row of the batch, so another dropout mask)
 * A step takes `pairs` examples: the sentences are the queries; the candidates are their
 * positives, then the hard negatives those examples have (a file gives at most one per
 * example; lm_ctr_data_set any number). All of them go
 * through the model as one batch of prompts padded on the right (train.h: causal attention
 * keeps the padding out). A candidate whose text is a query's own sentence or positive
 * (other than the positive itself, e.g. a sentence that occurs twice) is masked for that
 * query instead of counting as a negative. */
#ifndef LM_CONTRASTIVE_TRAIN_H
#define LM_CONTRASTIVE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "embed.h"
#include "model.h"
#include "tokenizer.h"
#include "train.h"

struct lm_ctr_data {
	char *text;             /* the file, cut into NUL-terminated fields */
	const char **a, **p;    /* [n] sentence and positive (the same pointer unsupervised) */
	const char **h;         /* [n * H] example i's hard negatives at i * H.., NULL: none */
	size_t n, H, nhard;     /* H: hard negatives an example can have (a file's: 1);
	                           nhard: how many there are in all */
	int unsup;
};

/* Read the examples; blank lines are skipped. -1 + error "line N: ..." for a supervised
 * line without a positive, an empty field, more than three fields; "no examples". */
int lm_ctr_load(struct lm_ctr_data *d, const char *path, int unsup);
void lm_ctr_data_free(struct lm_ctr_data *d);
/* the same from n examples' strings, copied: a[i], p[i] (p NULL: unsupervised), H hard
 * negatives h[i * H ..] each (h NULL or h[i * H + j] NULL: fewer). UPRISE's rows have
 * several: the worst-scored prompts. */
void lm_ctr_data_set(struct lm_ctr_data *d, const char *const *a, const char *const *p,
                     const char *const *h, size_t H, size_t n);

struct lm_ctr {
	const struct lm_ctr_data *d;
	int32_t **ids;          /* [S n] prompt ids (BOS first) of a[i], p[i], h[i * H + j] at
	                           S i + 0, 1, 2 + j, S = 2 + H */
	size_t *len;            /* [S n] (0: no such hard negative) */
	size_t S;
	size_t pairs, E, maxseq, T;  /* examples per step; embedding width; most sequences a
	                                step makes, longest prompt: what lm_train_init needs */
	double tau;
	int symmetric;
	int32_t pad;
	size_t tokens;          /* the last step's prompt tokens, padding not counted */
	/* one step's scratch */
	int32_t *batch;
	size_t *last, *pos, *src;
	float *z, *dz;
	unsigned char *mask;
};

/* Tokenize every example's prompts (ec: template, demonstration, white space; the model's
 * BOS and pad ids and positions). -1 + error naming the line of a prompt longer than the
 * model's positions. */
int lm_ctr_init(struct lm_ctr *c, const struct lm_ctr_data *d, const struct lm_opt_config *cfg,
                const struct lm_tokenizer *tk, const struct lm_embed_cfg *ec, size_t pairs,
                double tau, int symmetric);
void lm_ctr_free(struct lm_ctr *c);

/* One forward + backward on examples rows[0..n) (n <= pairs; repeats allowed); gradients
 * accumulate in tr, which must have been made for c->maxseq sequences of c->T tokens;
 * *loss = the batch's InfoNCE loss. */
int lm_ctr_step(struct lm_ctr *c, struct lm_train *tr, const size_t *rows, size_t n,
                double *loss);

#endif

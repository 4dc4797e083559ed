/* zeroshot.h: zero-shot tasks as lm-evaluation-harness scores them (lm-eval --task).
 *
 * Three parts, one file each:
 *   zeroshot_tasks.c   the data sets' published files -> items: for each answer choice a
 *                      context and a continuation, in the harness's prompt format
 *   zeroshot_score.c   log-likelihood of each continuation given its context, the choices
 *                      of an item in one batch after their shared token prefix ran once
 *   zeroshot_metrics.c acc, acc_norm, their standard errors, LAMBADA's perplexity, and
 *                      the harness-shaped JSON report
 *
 * A request's tokens are tokens(context) + tokens(continuation), each part tokenized on
 * its own (as the harness did before v0.4), with nothing in front, as the harness feeds
 * OPT (an empty context becomes EOS), or BOS in front when asked (scorer.bos); white
 * space at the end of a context moves to the front of its continuation. Too long a
 * sequence loses its oldest context tokens (BOS kept). */
#ifndef LM_ZEROSHOT_H
#define LM_ZEROSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "forward.h"
#include "model.h"
#include "tokenizer.h"

/* ---- tasks (zeroshot_tasks.c) ---- */

enum lm_zs_kind {
	LM_ZS_CHOICE,   /* pick the most likely choice: acc (and acc_norm where the harness has it) */
	LM_ZS_LAMBADA,  /* one continuation: greedy accuracy and perplexity */
};

struct lm_zs_item {
	size_t line;       /* 1-based line of the item in its file */
	size_t n;          /* requests: the choices (1 for LAMBADA) */
	char **ctx;        /* [n] contexts (all equal but for WinoGrande's partial scoring) */
	char **cont;       /* [n] continuations, the delimiter included (" yes") */
	size_t *nbytes;    /* [n] bytes of the choice's text, acc_norm's divisor */
	int gold;          /* the correct choice */
};

struct lm_zs_task {
	const char *name;      /* "boolq" ... */
	enum lm_zs_kind kind;
	int has_norm;          /* the harness reports acc_norm for it */
	char *path;            /* the file read */
	struct lm_zs_item *it;
	size_t n;
};

/* the task names lm_zs_load knows, NULL-terminated, in the papers' table order */
extern const char *const lm_zs_task_names[];

/* Read task NAME from its file under dir (the layout examples/fetch-tasks.sh makes; see
 * lm-eval(1)), at most limit items (0: all). -1 + an error naming the file and line. */
int lm_zs_load(struct lm_zs_task *t, const char *name, const char *dir, size_t limit);
void lm_zs_task_free(struct lm_zs_task *t);

/* HellaSwag's cleaning of WikiHow text: strip, " [title]" -> ". ", drop "[...]", and
 * each pair of spaces -> one. Returns a new string. */
char *lm_zs_hellaswag_clean(const char *s);

/* ---- scoring (zeroshot_score.c) ---- */

struct lm_zs_ll {
	double ll;       /* log-likelihood of the continuation's tokens, summed */
	size_t ntok;     /* its tokens */
	int greedy;      /* every continuation token is the argmax (when asked) */
	int32_t *ids;    /* with keep_ids: the request's tokens (BOS, context, continuation) */
	size_t nids;
};

struct lm_zs_scorer {
	const struct lm_model *m;
	const struct lm_tokenizer *tk;
	struct lm_fwd s;
	size_t sB, sT;           /* the arena's shape (0: none yet) */
	struct lm_kv kv1, kvn;   /* the prefix (one sequence) and its copies for the choices */
	size_t kv1_room, kvn_room;  /* floats each of k and v holds */
	int32_t *ids, *tgt;
	float *nll, *logits;
	size_t ids_cap, logits_cap;
	/* totals: tokens through the layers, and what scoring each request alone would run */
	size_t run_tokens, plain_tokens;
	int keep_ids;  /* hand each request's tokens out in lm_zs_ll.ids (the caller frees) */
	int bos;       /* BOS before every context (0: the harness's way, see above) */
};

void lm_zs_scorer_init(struct lm_zs_scorer *sc, const struct lm_model *m,
                       const struct lm_tokenizer *tk);
void lm_zs_scorer_free(struct lm_zs_scorer *sc);
/* the n requests (ctx[i], cont[i]) of one item; greedy: also fill out[i].greedy. -1 + error */
int lm_zs_score(struct lm_zs_scorer *sc, const char *const *ctx, const char *const *cont,
                size_t n, int greedy, struct lm_zs_ll *out);

/* ---- metrics (zeroshot_metrics.c) ---- */

/* first index of the largest ll (norm: ll / nbytes, as the harness's acc_norm) */
size_t lm_zs_pick(const struct lm_zs_ll *s, const size_t *nbytes, size_t n, int norm);
/* standard error of a mean of n 0/1 values with k ones (sample deviation / sqrt n);
 * NaN for n < 2 */
double lm_zs_stderr(size_t k, size_t n);

struct lm_zs_result {
	const struct lm_zs_task *t;
	size_t n, acc, acc_norm;  /* items, correct by ll, correct by ll per byte */
	double ll_sum;            /* LAMBADA: sum of the continuations' log-likelihoods */
	struct lm_zs_ll *ll;      /* per request, items in order (for --log-samples) */
	size_t nll;
	double seconds;
};

/* score every item of t; pr(pctx, done, total) after each. -1 + error naming the line */
int lm_zs_eval(struct lm_zs_scorer *sc, const struct lm_zs_task *t, struct lm_zs_result *r,
               void (*pr)(void *, size_t, size_t), void *pctx);
void lm_zs_result_free(struct lm_zs_result *r);

/* results.<task>.{acc, acc_stderr, acc_norm, acc_norm_stderr | perplexity, acc, ...} */
json_t *lm_zs_task_json(const struct lm_zs_result *r);
/* the item-level records of --log-samples: [{doc_id, line, target, ll, nbytes, tokens,
 * ids (when kept), ...}] */
json_t *lm_zs_samples_json(const struct lm_zs_result *r);
/* a table, one row per metric: task, items, metric, value, stderr */
void lm_zs_print(FILE *f, const struct lm_zs_result *r, size_t n);

#endif

/* mc.h: multiple-choice tasks scored by a frozen language model.
 *
 * Task files, told apart by their first non-blank byte:
 *   JSON lines ('{'): one item per line,
 *       {"input": "Question: ...\nAnswer:", "choices": ["yes", "no"], "gold": 0}
 *   TruthfulQA's mc_task.json ('['): an array of {"question", "mc1_targets",
 *       "mc2_targets"}, each target map {answer: 0 or 1} in file order. The context is
 *       "Q: <question>\nA:"; MC1 is the single-true item, MC2 the multi-true set.
 *
 * An option is scored by the NLL of its tokens given the context: the context is BOS +
 * tokens(context), the option tokens(" " + option) (no space added when the option
 * starts with white space), so the boundary falls where the GPT-2 pre-tokenizer puts it.
 * Three decision rules, as in UPRISE and lm-evaluation-harness: the lowest mean NLL per
 * token (UPRISE), the lowest sum (harness "acc"), the lowest sum per byte of the option
 * (harness "acc_norm"). MC2 = the normalised probability mass of the true options,
 * exp(-sum NLL) each. A context too long for the model loses its oldest tokens (BOS kept). */
#ifndef LM_MC_H
#define LM_MC_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"
#include "model.h"
#include "tokenizer.h"

struct lm_task_item {
	char *input;          /* the context */
	char **choices;       /* [nchoice] */
	size_t nchoice;
	int gold;             /* index of the correct choice */
	char **mc2;           /* TruthfulQA MC2 options [nmc2] and which are true; NULL if none */
	unsigned char *mc2_true;
	size_t nmc2;
	size_t line;          /* JSON lines: 1-based line; TruthfulQA: item index + 1 */
};

struct lm_task {
	struct lm_task_item *it;
	size_t n;
	const char *format;   /* "jsonl" or "truthfulqa" */
};

/* -1 + error naming the line (or item) and what is wrong */
int lm_task_load(struct lm_task *t, const char *path);
void lm_task_free(struct lm_task *t);

/* reuses one forward arena across items, grown when an item needs more */
struct lm_scorer {
	const struct lm_model *m;
	const struct lm_tokenizer *tk;
	struct lm_fwd s;
	size_t B, T;
	int32_t *ids, *tgt;
	float *nll;
	size_t cap;  /* rows ids/tgt/nll hold */
};

struct lm_choice_score {
	double sum;         /* NLL of the option's tokens, summed */
	size_t ntok, nbytes;
};

void lm_scorer_init(struct lm_scorer *sc, const struct lm_model *m, const struct lm_tokenizer *tk);
void lm_scorer_free(struct lm_scorer *sc);
/* score n options after ctx (all in one right-padded batch); -1 + error */
int lm_score_choices(struct lm_scorer *sc, const char *ctx, const char *const *choices, size_t n,
                     struct lm_choice_score *out);

/* the decision rules: index of the best option */
enum lm_mc_rule { LM_MC_MEAN, LM_MC_SUM, LM_MC_NORM, LM_MC_RULES };
size_t lm_mc_pick(const struct lm_choice_score *s, size_t n, enum lm_mc_rule rule);
extern const char *const lm_mc_rule_name[LM_MC_RULES];

struct lm_mc_result {
	size_t n;                     /* items scored */
	size_t correct[LM_MC_RULES];
	double mc2_sum;               /* sum over MC2 items of the true mass */
	size_t n_mc2;
};

typedef void lm_mc_progress(void *ctx, size_t done, size_t total);
/* every item of t with contexts ctx[i] (NULL: the items' own inputs) */
int lm_mc_eval(struct lm_scorer *sc, const struct lm_task *t, const char *const *ctx,
               struct lm_mc_result *r, lm_mc_progress *pr, void *pctx);

#endif

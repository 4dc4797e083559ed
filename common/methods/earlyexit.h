/* earlyexit.h: early-exit decoding (GREEN-CODE, docs/methods.md §9) and what it costs.
 *
 * A token runs the decoder layers one by one (forward.h lm_decode_*). At each candidate
 * exit l (0-based, below L-1) a rule decides whether it leaves:
 *   policy      the learned MLP (exitpolicy.h) on the hidden state after layer l taken
 *               through the final LayerNorm: exit iff p(exit) > max(threshold, 1/2)
 *   confidence  the no-RL baseline: the exit's own next-token distribution (final
 *               LayerNorm, project_out, LM head on that state) has max probability
 *               >= threshold
 * A token that leaves after layer l is predicted from that state through the shared final
 * LayerNorm, project_out and LM head; layers l+1..L-1 then compute only their keys and
 * values from the same state ("just propagate"), so later tokens find a full cache.
 *
 * The prompt's tokens but the last run through every layer in one batch (prefill); every
 * generated token, the first included, comes from a one-token step that may exit early.
 *
 * Costs are counted per generated token: full layers run, K/V-only layers, FLOPs of the
 * matrix products (2 per multiply-add: projections, attention scores and weighted sums
 * over the cache, the head wherever logits are computed, the policy network; LayerNorm,
 * softmax and activations are O(C) and left out), wall time, and CPU package energy from
 * RAPL (/sys/class/powercap/intel-rapl:N/energy_uj) when it is readable. */
#ifndef LM_EARLYEXIT_H
#define LM_EARLYEXIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "exitpolicy.h"
#include "forward.h"
#include "model.h"
#include "modelstream.h"
#include "rng.h"
#include "tokenizer.h"

/* ---- energy: RAPL package counters ---- */
#define LM_RAPL_MAX 16
struct lm_rapl {
	int n;                        /* package domains found (0: energy not readable) */
	char path[LM_RAPL_MAX][512];  /* their energy_uj files */
	double range[LM_RAPL_MAX];    /* max_energy_range_uj: where a counter wraps */
	double last[LM_RAPL_MAX];
};
/* the package domains intel-rapl:N under root (NULL: /sys/class/powercap; subdomains
 * intel-rapl:N:M are parts of a package and not added again); -1 + error saying why
 * energy cannot be read (no domains, permission) */
int lm_rapl_open(struct lm_rapl *r, const char *root);
/* joules used by all packages since the last call (or lm_rapl_open); -1 + error */
int lm_rapl_joules(struct lm_rapl *r, double *joules);

typedef void lm_ee_progress(void *ctx, size_t done, size_t total);

/* ---- decoding ---- */
enum lm_ee_rule { LM_EE_NONE, LM_EE_POLICY, LM_EE_CONFIDENCE };
const char *lm_ee_rule_name(enum lm_ee_rule r); /* "full", "policy", "confidence" */

struct lm_ee_opts {
	enum lm_ee_rule rule;
	double threshold;
	const int *exits;             /* candidate exits, increasing, each < L-1 (the policy's
	                                 own for the policy rule) */
	size_t nexits;
	const struct lm_policy *policy;
	double temperature;           /* 0: greedy; else sample from softmax(logits / T) */
	int top_k;                    /* sampling among the k most likely (0: all) */
};

/* costs, summed over generated tokens */
struct lm_ee_cost {
	size_t tokens;
	double layers;                /* full decoder layers run */
	double kv_layers;             /* layers that computed only K/V */
	double exit_layer;            /* 1-based layer each token left after (L: the full model) */
	double flops;
	double seconds;               /* the one-token steps (prefill excluded) */
	double joules;                /* the same steps, when energy_ok */
	int energy_ok;
};

struct lm_ee {
	const struct lm_model *m;
	struct lm_fwd s;
	struct lm_kv kv;
	size_t cap;
	float *logits;                /* [V] */
	float *state;                 /* [C] final LayerNorm of the current hidden state */
	float *work;                  /* policy scratch / sampling scratch */
	size_t nwork;
	struct lm_rng rng;            /* sampling; reseed with lm_rng_seed between prompts */
	struct lm_rapl rapl;
	int energy;                   /* rapl usable */
	char energy_why[256];         /* why not */
};

/* decoding state for prompts + new tokens of up to cap tokens in all */
int lm_ee_init(struct lm_ee *ee, const struct lm_model *m, size_t cap, uint64_t seed);
void lm_ee_free(struct lm_ee *ee);
/* nnew tokens after prompt[0..np) into out[0..nnew) (the prompt not repeated), costs
 * added to *cost; -1 + error (bad exits or threshold, a policy missing, sizes) */
int lm_ee_generate(struct lm_ee *ee, const struct lm_ee_opts *o, const int32_t *prompt,
                   size_t np, size_t nnew, int32_t *out, struct lm_ee_cost *cost);
/* GREEN-CODE's environment: greedy decoding by the full model of nnew tokens, recording
 * for each generated token the policy state at every candidate exit (states [nnew,
 * nexits, C]) and the argmax token after every layer (preds [nnew, L]; the last is the
 * token generated) */
int lm_ee_trace(struct lm_ee *ee, const int *exits, size_t nexits, const int32_t *prompt,
                size_t np, size_t nnew, float *states, int32_t *preds);

/* ---- exits: parsing, checking, finding them in a stream ---- */
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

/* ---- the policy's training episodes (GREEN-CODE's environment) ---- */
/* neps episodes: a random window of seqlen tokens of ids, its first U(0.2, 0.5) * seqlen
 * tokens as the prompt (BOS in front), ntok tokens decoded greedily by the full model and
 * traced (lm_ee_trace). states [neps*ntok*nexits*C] and preds [neps*ntok*L] are
 * malloc'd (lm_alloc / xmalloc), ep [neps] points into them. cb (may be NULL) after each. */
int lm_ee_episodes(const struct lm_model *m, const int32_t *ids, size_t n, size_t seqlen,
                   size_t neps, size_t ntok, const int *exits, size_t nexits, uint64_t seed,
                   struct lm_policy_episode **ep, float **states, int32_t **preds,
                   lm_ee_progress *cb, void *ctx);

/* FLOPs of the pieces of a step (exposed for tests and reports) */
double lm_ee_flops_layer(const struct lm_opt_config *c, size_t keys);
double lm_ee_flops_kv(const struct lm_opt_config *c);
double lm_ee_flops_head(const struct lm_opt_config *c);

/* ---- the sweep: quality and cost against thresholds ---- */
struct lm_ee_sample {
	const int32_t *ctx;           /* the prompt (BOS first) */
	size_t nctx;
	const int32_t *ref;           /* the text's own continuation */
	size_t nref;
};
/* Samples from token ids: window w is ids[w*seqlen .. (w+1)*seqlen); its first
 * round(frac * seqlen) tokens (a BOS put in front unless it starts with one) are the
 * prompt, the nnew after them the reference. At most maxw windows (0: all). *buf holds
 * the prompts (malloc'd; free it and *out). -1 + error when there is no window. */
int lm_ee_samples(const int32_t *ids, size_t n, size_t seqlen, double frac, size_t nnew,
                  int32_t bos, size_t maxw, struct lm_ee_sample **out, size_t *ns,
                  int32_t **buf);

/* Samples from JSON lines (gzip'd or plain), one problem per line as HumanEval and
 * HumanEval-X have them: the prompt is BOS + ctx_key's text (default "prompt"), the
 * reference the first nnew tokens of ref_key's (default "canonical_solution"). Lines
 * whose prompt + nnew exceed maxpos are left out (*skipped counts them). At most maxw
 * (0: all). -1 + error naming the line. */
int lm_ee_samples_jsonl(const char *path, const struct lm_tokenizer *tk, int32_t bos,
                        size_t nnew, size_t maxpos, size_t maxw, struct lm_ee_sample **out,
                        size_t *ns, int32_t **buf, size_t *skipped);

struct lm_ee_row {
	enum lm_ee_rule rule;         /* LM_EE_NONE: the full model */
	double threshold;
	struct lm_ee_cost cost;
	/* means over samples: vs the full model's greedy output, vs the reference */
	double em_full, rouge_full, chrf_full, em_ref, rouge_ref, chrf_ref;
};
/* rows[0] the full model, rows[1 + i] rule o->rule at thr[i]; sampling (o->temperature)
 * reseeded with seed + sample index for every run, so each threshold sees the same draws.
 * tk turns tokens into text for chrF. */
int lm_ee_sweep(struct lm_ee *ee, const struct lm_tokenizer *tk, const struct lm_ee_opts *o,
                const double *thr, size_t nthr, const struct lm_ee_sample *smp, size_t ns,
                size_t nnew, uint64_t seed, struct lm_ee_row *rows, lm_ee_progress *cb,
                void *ctx);
/* the table (TSV with a header line) or a JSON array of the rows; L: decoder layers */
void lm_ee_print_tsv(FILE *f, const struct lm_ee_row *rows, size_t n, int L);
json_t *lm_ee_rows_json(const struct lm_ee_row *rows, size_t n, int L);

#endif

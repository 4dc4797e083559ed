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
 * RAPL (/sys/class/powercap/intel-rapl:N/energy_uj) when it is readable.
 *
 * The pieces live apart: RAPL in base/energy.h, the FLOPs of a step in nn/flops.h, the
 * prompts a sweep decodes in io/eesamples.h, the exits (parsing, checking, those of a
 * stream, loss weights) in eeexits.h, the sweep and its table in eval/eesweep.h. */
#ifndef LM_EARLYEXIT_H
#define LM_EARLYEXIT_H

#include <stddef.h>
#include <stdint.h>

#include "eesamples.h"
#include "eeexits.h"
#include "energy.h"
#include "exitpolicy.h"
#include "flops.h"
#include "forward.h"
#include "model.h"
#include "modelstream.h"
#include "rng.h"

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

/* ---- the policy's training episodes (GREEN-CODE's environment) ---- */
/* neps episodes: a random window of seqlen tokens of ids, its first U(0.2, 0.5) * seqlen
 * tokens as the prompt (BOS in front), ntok tokens decoded greedily by the full model and
 * traced (lm_ee_trace). states [neps*ntok*nexits*C] and preds [neps*ntok*L] are
 * malloc'd (lm_alloc / xmalloc), ep [neps] points into them. cb (may be NULL) after each. */
int lm_ee_episodes(const struct lm_model *m, const int32_t *ids, size_t n, size_t seqlen,
                   size_t neps, size_t ntok, const int *exits, size_t nexits, uint64_t seed,
                   struct lm_policy_episode **ep, float **states, int32_t **preds,
                   lm_ee_progress *cb, void *ctx);

#endif

/* exitpolicy.h: GREEN-CODE's learned early-exit policy (docs/methods.md §9): a small MLP
 * that looks at the last token's hidden state at a candidate exit and says continue or
 * exit, trained by PPO on decoding episodes.
 *
 * State: the hidden state after decoder layer l taken through the model's final
 * LayerNorm (what the shared LM head would read; the raw state when the model has no
 * final LayerNorm, as opt-350m), then standardised per dimension with the mean and
 * 1/std of the training states (stored with the policy). The reference feeds the raw
 * state; the LayerNorm and the standardisation keep the tanh units out of saturation
 * whatever the layer's scale.
 *
 * Networks (stable-baselines3 MlpPolicy, net_arch pi=[H,H], vf=[H,H]): two separate
 * MLPs C -> H -> H (tanh) -> 2 logits (0 continue, 1 exit) and C -> H -> H -> 1 value,
 * orthogonal initialisation with gains sqrt(2), 0.01 (policy output) and 1 (value). Only
 * the policy network goes into the stream; the value network exists while training.
 *
 * Layers are 0-based decoder-layer indices here; the programs print them 1-based
 * ("after decoder layer k"). Candidate exits are indices below L-1: the last layer is the
 * full model, where every token that did not leave ends. */
#ifndef LM_EXITPOLICY_H
#define LM_EXITPOLICY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "modelstream.h"

#define LM_POLICY_PREFIX "exit_policy."
#define LM_POLICY_MAX_HIDDEN 4096
/* the tensor whose attrs carry the exits and how the policy was made */
#define LM_POLICY_MAIN LM_POLICY_PREFIX "fc1.weight"

/* in -> hid (tanh) -> hid (tanh) -> out; weights [out, in] as nn.Linear */
struct lm_mlp {
	size_t in, hid, out;
	float *w1, *b1, *w2, *b2, *w3, *b3;
};

/* floats an MLP of these sizes holds */
size_t lm_mlp_size(size_t in, size_t hid, size_t out);
/* point m's tensors into base (lm_mlp_size floats), in the order w1 b1 w2 b2 w3 b3 */
void lm_mlp_point(struct lm_mlp *m, float *base, size_t in, size_t hid, size_t out);
/* X [N,in] -> Y [N,out], keeping the tanh outputs H1, H2 [N,hid] for the backward */
void lm_mlp_forward(const struct lm_mlp *m, const float *X, size_t N, float *H1, float *H2,
                    float *Y);
/* dY [N,out] -> gradients added into g (an lm_mlp of the same sizes over the gradient
 * buffer); dH1, dH2 [N,hid] scratch. No input gradient (the input is data). */
void lm_mlp_backward(const struct lm_mlp *m, struct lm_mlp *g, const float *X, const float *H1,
                     const float *H2, const float *dY, size_t N, float *dH1, float *dH2);

struct lm_policy {
	size_t C, H;
	int L;              /* decoder layers of the model it was made for */
	int *exits;         /* [nexits] candidate exits, increasing, each < L-1 */
	size_t nexits;
	float *mean, *scale;  /* [C] standardisation: (state - mean) * scale */
	struct lm_mlp pi;   /* C -> H -> H -> 2 */
	struct lm_mlp vf;   /* C -> H -> H -> 1; w1 NULL when read from a stream */
	float *par;         /* pi then vf: what training updates */
	size_t npi, npar;
	void *mem;
};

/* a fresh policy (orthogonal initialisation from seed, standardisation the identity);
 * -1 + error on bad exits */
int lm_policy_init(struct lm_policy *p, size_t C, size_t H, int L, const int *exits,
                   size_t nexits, uint64_t seed);
void lm_policy_free(struct lm_policy *p);
/* set the standardisation from N states X [N,C] (1/std floored so that a constant
 * dimension maps to 0) */
void lm_policy_fit_input(struct lm_policy *p, const float *X, size_t N);
/* floats of scratch lm_policy_p_exit needs */
size_t lm_policy_work(const struct lm_policy *p);
/* p(exit) = softmax(pi(standardised state))[1] for one state [C] */
double lm_policy_p_exit(const struct lm_policy *p, const float *state, float *work);
/* the deployed rule (GREEN-CODE's infer_ee): exit iff the argmax action is exit and
 * p(exit) > threshold, i.e. p > max(threshold, 1/2) */
int lm_policy_exits(double p_exit, double threshold);

/* ---- in the stream: extra tensors exit_policy.{in_mean,in_scale,fc1,fc2,out}.{weight,bias}
 * (f32), the exits (1-based) and the rest of what describes it in the attrs of
 * LM_POLICY_MAIN ---- */
/* replace any policy in ms's extras by p; info (borrowed, may be NULL): more attrs */
int lm_policy_save(struct lm_model_stream *ms, const struct lm_policy *p, json_t *info);
/* read the policy ms carries (the tail must have been loaded); -1 + error, with *missing
 * set when a tensor of it is absent (rather than malformed) */
int lm_policy_load(struct lm_policy *p, const struct lm_model_stream *ms, int *missing);
/* a JSON array of 1-based exits -> 0-based (malloc'd), or NULL (and *n = 0) if ex is not a
 * non-empty array of integers in [1, 2^20] */
int *lm_exits_from_json(const json_t *ex, size_t *n);
/* the exits of the stream's policy, 0-based (malloc'd), or NULL if it has none */
int *lm_policy_stream_exits(const struct lm_model_stream *ms, size_t *n);

/* ---- the environment's reward (GREEN-CODE, alpha = beta = gamma = 1, eps = 0.1) ----
 * preds [L]: the argmax token of every layer's output for this token (preds[L-1] is the
 * full model's); l* = the first layer whose token is the final one. Deciding at candidate
 * exit j (layer l = exits[j]):
 *   exit at the best exit (l*, or the first candidate after it)        +1
 *   exit elsewhere with the final token (late)                         -(l - l*)
 *   exit with another token, before l*                                 -(l* - l)
 *   exit with another token, after l*                                  -0.1
 *   continue before l*                                                 +1
 *   continue at or after l*                                            -(next - l*)
 *     (next: the next candidate, or L-1 after the last one)
 *   continue at the last candidate when only the full model is right   +1
 * all divided by L-1 (the reference divides by its last allowed exit; a constant scale) */
double lm_policy_reward(const int32_t *preds, int L, const int *exits, size_t nexits, size_t j,
                        int exit_action);

/* ---- PPO (stable-baselines3's algorithm and defaults where they apply) ---- */
struct lm_policy_episode {
	size_t T;               /* generated tokens */
	const float *states;    /* [T, nexits, C] raw states (before the standardisation) */
	const int32_t *preds;   /* [T, L] */
};

struct lm_ppo {
	long total;             /* environment steps (decisions) in all */
	size_t n_steps, batch;  /* rollout length, minibatch */
	int epochs;
	double lr;              /* Adam (eps 1e-5), decayed linearly to 0 over the run */
	double gamma, lambda, clip, vf_coef, ent_coef, max_grad_norm;
	uint64_t seed;
};
void lm_ppo_defaults(struct lm_ppo *o);

struct lm_ppo_report {
	long steps, total;
	double lr;
	double reward;          /* mean reward per decision in this rollout (scaled) */
	double exit_rate;       /* decisions that were "exit" */
	double pg_loss, v_loss, entropy, approx_kl, clip_frac;
	double grad_norm;       /* mean over the minibatches, before clipping */
};
typedef void lm_ppo_progress(void *ctx, const struct lm_ppo_report *r);

/* Train p (made by lm_policy_init with the episodes' exits) on episodes drawn at random
 * from ep (an episode's states do not depend on the actions: every token is the full
 * model's, so an episode can be replayed). Sets the standardisation from all states
 * first. Deterministic for a seed. cb (may be NULL) after each rollout's update. */
int lm_policy_train(struct lm_policy *p, const struct lm_policy_episode *ep, size_t nep,
                    const struct lm_ppo *o, lm_ppo_progress *cb, void *ctx);

/* How the deterministic policy does on episodes: mean 1-based layer a token leaves at
 * (L when it never does), and the fraction of tokens whose exit token is the full
 * model's, at threshold thr */
void lm_policy_score(const struct lm_policy *p, const struct lm_policy_episode *ep, size_t nep,
                     double thr, double *mean_layer, double *agree);

/* the oracle on the same episodes: every token leaves at the first candidate exit whose
 * token is the full model's (at L when none): its mean 1-based layer, the floor of what a
 * policy that keeps every token can reach */
double lm_policy_oracle(const struct lm_policy_episode *ep, size_t nep, const int *exits,
                        size_t nexits, int L);

#endif

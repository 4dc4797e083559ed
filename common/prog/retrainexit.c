/* retrainexit.c: lm-retrain's early exits (GREEN-CODE, docs/methods.md §9): the exits and
 * their weights from the options, the multi-exit step of --early-exit, and --exit-policy's PPO
 * on decoding episodes, which leaves the model's tensors as they are. */
#include "retrainexit.h"
#include "earlyexit.h"
#include "exitpolicy.h"
#include "util.h"

#include <stdlib.h>

void lm_retrain_exit_args(struct lm_retrain_args *o, const struct lm_model_stream *ms)
{
	const int L = (int)ms->h.cfg.num_layers;
	const char *whose = o->exits_arg ? "--exits" : "the exits the stream records";
	if (L < 2)
		edie(2, "a model of %d layer has no early exits", L);
	if (!o->exits && o->exit_policy)
		o->exits = lm_ee_stream_exits(ms, &o->nexits);
	if (!o->exits) {
		whose = "--exits";
		o->nexits = (size_t)L - 1;
		o->exits = xmalloc(o->nexits * sizeof *o->exits);
		for (int i = 0; i < L - 1; i++)
			o->exits[i] = i;
	}
	if (lm_ee_check_exits(o->exits, o->nexits, L) < 0)
		edie(2, "%s: %s", whose, lm_errmsg());
	o->exit_w = xmalloc((o->nexits + 1) * sizeof *o->exit_w);
	if (!o->exit_w_arg) {
		lm_ee_default_weights(o->exits, o->nexits, L, o->exit_w);
		return;
	}
	size_t n;
	double *w = lm_ee_parse_list(o->exit_w_arg, &n), sum = 0;
	if (!w)
		edie(2, "--exit-weights: %s", lm_errmsg());
	if (n != o->nexits + 1)
		edie(2, "--exit-weights: %zu weights for %zu exits and the final output (give %zu)", n,
		     o->nexits, o->nexits + 1);
	for (size_t i = 0; i < n; i++) {
		if (w[i] < 0 || w[i] > 1e6)
			edie(2, "--exit-weights: %g is not a weight in [0, 1e6]", w[i]);
		o->exit_w[i] = (float)w[i], sum += w[i];
	}
	free(w);
	if (sum <= 0)
		edie(2, "--exit-weights: all zero");
}

/* the steps of --early-exit: the exits and the final output (when its weight is not 0),
 * each one's loss shown after the weighted sum */
int lm_retrain_exit_step(struct lm_train *tr, const struct lm_retrain_args *o, const int32_t *batch,
                         size_t B, size_t T, double *loss, struct lm_progress *pg)
{
	static char shown[512];
	int *ex = xmalloc((o->nexits + 1) * sizeof *ex);
	float *w = xmalloc((o->nexits + 1) * sizeof *w);
	double *el = xmalloc((o->nexits + 1) * sizeof *el);
	size_t n = 0, k = 0;
	for (size_t i = 0; i < o->nexits; i++)
		ex[n] = o->exits[i], w[n++] = o->exit_w[i];
	if (o->exit_w[o->nexits] > 0)
		ex[n] = (int)tr->cfg.num_layers - 1, w[n++] = o->exit_w[o->nexits];
	struct lm_train_loss ls = {.exits = ex, .exit_w = w, .nexits = n, .exit_loss = el};
	int rc = lm_train_step_loss(tr, batch, B, T, &ls, loss);
	k += (size_t)snprintf(shown, sizeof shown, "exits");
	for (size_t i = 0; rc == 0 && i < n && k < sizeof shown; i++)
		k += (size_t)snprintf(shown + k, sizeof shown - k, " %s%.3f",
		                      i == o->nexits ? "final " : "", el[i]);
	pg->extra = shown;
	free(ex), free(w), free(el);
	return rc;
}

/* ---- the exit policy ---- */

/* lm_ee_episodes' progress: a line on a terminal only (nothing for the log) */
static void episode_progress(void *ctx, size_t done, size_t total)
{
	struct lm_progress *pg = ctx;
	if (pg->tty) {
		fprintf(stderr, "\r%s: episode %zu/%zu   ", argv0, done, total);
		if (done == total)
			fputc('\n', stderr);
	}
}

/* PPO's report after a rollout: the policy's figures after the loss, on the progress line
 * and in the log */
static void ppo_progress(void *ctx, const struct lm_ppo_report *r)
{
	static char shown[256];
	struct lm_progress *pg = ctx;
	snprintf(shown, sizeof shown, "value_loss %.5f reward %.4f exit %.3f entropy %.3f kl %.5f",
	         r->v_loss, r->reward, r->exit_rate, r->entropy, r->approx_kl);
	pg->extra = shown;
	lm_progress_step(pg, "policy", r->steps, r->pg_loss, r->lr, r->grad_norm, (double)r->steps);
}

void lm_retrain_exit_policy(struct lm_model_stream *ms, struct lm_model *m,
                            const struct lm_retrain_args *o, struct lm_progress *pg)
{
	const int L = (int)m->cfg.num_layers;
	const size_t ntok = 15, neps = (size_t)o->episodes; /* GREEN-CODE's episode: 15 tokens */
	size_t n = 0;
	int32_t *ids = lm_retrain_ids(o->data, ms, &n), *pr;
	struct lm_policy_episode *ep;
	struct lm_policy p;
	struct lm_ppo po;
	float *st;
	double ml, ag;
	char shown[256];
	size_t k = 0;

	for (size_t i = 0; i < o->nexits && k < sizeof shown; i++)
		k += (size_t)snprintf(shown + k, sizeof shown - k, "%s%d", i ? "," : "", o->exits[i] + 1);
	lm_progress_note(pg, "exit policy: %zu episodes of %zu tokens (prompts from windows of %lld "
	                 "tokens), exits after layers %s of %d", neps, ntok, o->f.seqlen, shown, L);
	double t0 = lm_now();
	if (lm_ee_episodes(m, ids, n, (size_t)o->f.seqlen, neps, ntok, o->exits, o->nexits,
	                   (uint64_t)o->f.seed, &ep, &st, &pr, episode_progress, pg) < 0)
		die_lm(o->data);
	lm_progress_note(pg, "episodes decoded in %.1f s", lm_now() - t0);
	if (lm_policy_init(&p, (size_t)m->cfg.hidden_size, (size_t)o->policy_hidden, L, o->exits,
	                   o->nexits, (uint64_t)o->f.seed) < 0)
		die_lm("exit policy");
	lm_ppo_defaults(&po);
	po.total = o->policy_steps, po.lr = o->f.lr, po.seed = (uint64_t)o->f.seed;
	pg->t0 = lm_now();
	pg->total = (long)(((size_t)po.total + po.n_steps - 1) / po.n_steps * po.n_steps);
	if (lm_policy_train(&p, ep, neps, &po, ppo_progress, pg) < 0)
		die("exit policy: %s; nothing written", lm_errmsg());
	pg->extra = NULL;
	lm_policy_score(&p, ep, neps, 0.5, &ml, &ag);
	lm_progress_note(pg, "policy on its episodes at threshold 0.5: mean exit layer %.3f of %d, "
	                 "%.1f%% of tokens the full model's (the oracle that keeps them all: %.3f)", ml,
	                 L, 100 * ag, lm_policy_oracle(ep, neps, o->exits, o->nexits, L));
	json_t *info = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:I, s:I}", "algorithm", "ppo",
	                         "reward", "green-code", "episodes", (json_int_t)neps,
	                         "episode_tokens", (json_int_t)ntok, "steps", (json_int_t)po.total,
	                         "lr", po.lr, "seqlen", (json_int_t)o->f.seqlen, "seed",
	                         (json_int_t)o->f.seed);
	if (lm_policy_save(ms, &p, info) < 0)
		die_lm("exit policy");
	json_decref(info);
	lm_policy_free(&p);
	free(ep), lm_free(st), free(pr), free(ids);
}

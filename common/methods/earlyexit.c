/* earlyexit.c: see earlyexit.h */
#include "earlyexit.h"
#include "clock.h"
#include "kernels.h"
#include "modelio.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the policy network's matrix products (its FLOPs are counted with the step's) */
static double flops_policy(const struct lm_policy *p)
{
	return 2.0 * ((double)p->C * p->H + (double)p->H * p->H + 2.0 * p->H);
}

/* ---- decoding ---- */

const char *lm_ee_rule_name(enum lm_ee_rule r)
{
	return r == LM_EE_POLICY ? "policy" : r == LM_EE_CONFIDENCE ? "confidence" : "full";
}

int lm_ee_init(struct lm_ee *ee, const struct lm_model *m, size_t cap, uint64_t seed)
{
	const struct lm_opt_config *c = &m->cfg;
	size_t V = (size_t)c->vocab_size, C = (size_t)c->hidden_size;
	memset(ee, 0, sizeof *ee);
	if (cap == 0 || cap > (size_t)c->max_positions)
		return lm_seterr("early exit: %zu tokens exceed the model's %lld positions", cap,
		                 (long long)c->max_positions);
	ee->m = m, ee->cap = cap;
	if (lm_fwd_init(&ee->s, c, 1, cap) < 0)
		return -1;
	if (lm_kv_init(&ee->kv, c, 1, cap) < 0) {
		lm_fwd_free(&ee->s);
		return -1;
	}
	/* sampling needs a copy of the logits; a policy C + 2H + 2 */
	ee->nwork = V > C + 2 * LM_POLICY_MAX_HIDDEN + 2 ? V : C + 2 * LM_POLICY_MAX_HIDDEN + 2;
	ee->logits = lm_alloc(V * sizeof *ee->logits);
	ee->state = lm_alloc(C * sizeof *ee->state);
	ee->work = lm_alloc(ee->nwork * sizeof *ee->work);
	if (!ee->logits || !ee->state || !ee->work) {
		lm_ee_free(ee);
		return lm_preerr("early exit");
	}
	lm_rng_seed(&ee->rng, seed);
	if (lm_rapl_open(&ee->rapl, NULL) == 0)
		ee->energy = 1;
	else
		snprintf(ee->energy_why, sizeof ee->energy_why, "%s", lm_errmsg());
	return 0;
}

void lm_ee_free(struct lm_ee *ee)
{
	lm_fwd_free(&ee->s);
	lm_kv_free(&ee->kv);
	lm_free(ee->logits);
	lm_free(ee->state);
	lm_free(ee->work);
	memset(ee, 0, sizeof *ee);
}

/* the policy's input: the final LayerNorm of x (x itself without one) */
static void policy_state(struct lm_ee *ee, const float *x)
{
	const struct lm_model *m = ee->m;
	size_t C = (size_t)m->cfg.hidden_size;
	if (m->cfg.final_ln)
		lm_layernorm_forward(ee->state, NULL, NULL, x, m->final_ln_w, m->final_ln_b, 1, C,
		                     (float)m->cfg.ln_eps);
	else
		memcpy(ee->state, x, C * sizeof *x);
}

/* next-token logits of x through the shared final LayerNorm, project_out and head */
static int head_logits(struct lm_ee *ee, const float *x)
{
	if (lm_forward_final(&ee->s, ee->m, x, ee->s.out, 1) < 0)
		return -1;
	return lm_forward_head(&ee->s, ee->m, ee->s.out, NULL, 1, NULL, ee->logits);
}

static double max_prob(const float *z, size_t V)
{
	float mx = z[lm_argmax(z, V)];
	double s = 0;
	for (size_t i = 0; i < V; i++)
		s += exp((double)z[i] - mx);
	return 1.0 / s;
}

static int desc(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x < y) - (x > y);
}

/* the k-th largest of a[0..n) (a is reordered); a sort: top-k sampling is rare */
static float kth_largest(float *a, size_t n, size_t k)
{
	qsort(a, n, sizeof *a, desc);
	return a[k - 1];
}

static int32_t pick(struct lm_ee *ee, const struct lm_ee_opts *o)
{
	size_t V = (size_t)ee->m->cfg.vocab_size;
	const float *z = ee->logits;
	if (o->temperature <= 0)
		return (int32_t)lm_argmax(z, V);
	float mx = z[lm_argmax(z, V)], cut = -INFINITY;
	if (o->top_k > 0 && (size_t)o->top_k < V) {
		memcpy(ee->work, z, V * sizeof *z);
		cut = kth_largest(ee->work, V, (size_t)o->top_k);
	}
	double s = 0;
	for (size_t i = 0; i < V; i++)
		s += z[i] >= cut ? exp(((double)z[i] - mx) / o->temperature) : 0;
	double u = lm_rng_uniform(&ee->rng) * s, acc = 0;
	size_t last = 0;
	for (size_t i = 0; i < V; i++) {
		if (z[i] < cut)
			continue;
		acc += exp(((double)z[i] - mx) / o->temperature);
		last = i;
		if (u < acc)
			return (int32_t)i;
	}
	return (int32_t)last; /* rounding left u at the very top */
}

/* all but the last prompt token through every layer (their K/V), ready for the steps */
static int prefill(struct lm_ee *ee, const int32_t *prompt, size_t np, size_t nnew)
{
	if (np == 0)
		return lm_seterr("early exit: empty prompt");
	if (np + nnew > ee->cap)
		return lm_seterr("early exit: %zu + %zu tokens exceed the %zu made room for", np, nnew,
		                 ee->cap);
	ee->kv.len = 0;
	if (np > 1)
		return lm_forward_decode(&ee->s, ee->m, &ee->kv, prompt, np - 1, NULL);
	return 0;
}

int lm_ee_generate(struct lm_ee *ee, const struct lm_ee_opts *o, const int32_t *prompt,
                   size_t np, size_t nnew, int32_t *out, struct lm_ee_cost *cost)
{
	const struct lm_model *m = ee->m;
	const struct lm_opt_config *c = &m->cfg;
	const int L = (int)c->num_layers;
	const int *ex = o->exits;
	size_t K = o->nexits;
	double fl = 0, t0, J;

	if (o->rule == LM_EE_POLICY) {
		const struct lm_policy *p = o->policy;
		if (!p)
			return lm_seterr("early exit: the policy rule needs a policy");
		if (p->C != (size_t)c->hidden_size || p->L != L)
			return lm_seterr("early exit: the policy was made for another model shape");
		ex = p->exits, K = p->nexits;
	} else if (o->rule == LM_EE_NONE) {
		K = 0;
	}
	if (o->rule != LM_EE_NONE && K == 0)
		return lm_seterr("early exit: no candidate exits");
	if (!(o->threshold >= 0 && o->threshold <= 1))
		return lm_seterr("early exit: threshold %g outside [0, 1]", o->threshold);
	if (lm_ee_check_exits(ex, K, L) < 0 || prefill(ee, prompt, np, nnew) < 0)
		return -1;
	int32_t cur = prompt[np - 1];
	if (ee->energy && lm_rapl_joules(&ee->rapl, &J) < 0)
		ee->energy = 0;
	t0 = lm_now();
	for (size_t i = 0; i < nnew; i++) {
		size_t keys = ee->kv.len + 1, j = 0;
		int exit_l = L - 1, have = 0;
		if (lm_decode_embed(&ee->s, m, &ee->kv, &cur, 1) < 0)
			return -1;
		fl += lm_ee_flops_embed(c);
		for (int l = 0; l < L; l++) {
			if (lm_decode_layer(&ee->s, m, &ee->kv, l, ee->s.x, 1) < 0)
				return -1;
			cost->layers++, fl += lm_ee_flops_layer(c, keys);
			if (j >= K || ex[j] != l)
				continue;
			j++;
			if (o->rule == LM_EE_POLICY) {
				policy_state(ee, ee->s.x);
				fl += flops_policy(o->policy);
				if (lm_policy_exits(lm_policy_p_exit(o->policy, ee->state, ee->work), o->threshold)) {
					exit_l = l;
					break;
				}
			} else {
				if (head_logits(ee, ee->s.x) < 0)
					return -1;
				fl += lm_ee_flops_head(c);
				if (max_prob(ee->logits, (size_t)c->vocab_size) >= o->threshold) {
					exit_l = l, have = 1;
					break;
				}
			}
		}
		/* the skipped layers' keys and values from the exited state */
		for (int l = exit_l + 1; l < L; l++) {
			if (lm_decode_kv(&ee->s, m, &ee->kv, l, ee->s.x, 1) < 0)
				return -1;
			cost->kv_layers++, fl += lm_ee_flops_kv(c);
		}
		if (lm_kv_advance(&ee->kv, 1) < 0)
			return -1;
		if (!have) {
			if (head_logits(ee, ee->s.x) < 0)
				return -1;
			fl += lm_ee_flops_head(c);
		}
		cur = pick(ee, o);
		out[i] = cur;
		cost->exit_layer += exit_l + 1, cost->tokens++;
	}
	cost->seconds += lm_now() - t0;
	cost->flops += fl;
	if (ee->energy && lm_rapl_joules(&ee->rapl, &J) == 0)
		cost->joules += J, cost->energy_ok = 1;
	else
		ee->energy = 0, cost->energy_ok = 0;
	return 0;
}

int lm_ee_trace(struct lm_ee *ee, const int *exits, size_t nexits, const int32_t *prompt,
                size_t np, size_t nnew, float *states, int32_t *preds)
{
	const struct lm_model *m = ee->m;
	const int L = (int)m->cfg.num_layers;
	const size_t C = (size_t)m->cfg.hidden_size, V = (size_t)m->cfg.vocab_size;
	if (lm_ee_check_exits(exits, nexits, L) < 0 || prefill(ee, prompt, np, nnew) < 0)
		return -1;
	if ((size_t)L > ee->cap)
		return lm_seterr("trace: %d layers, room for %zu rows", L, ee->cap);
	/* every layer's state, then one head product for all of them: the head's weights are
	 * read (and converted from f16) once per token instead of once per layer */
	float *X = lm_alloc((size_t)L * C * sizeof *X), *Z = lm_alloc((size_t)L * V * sizeof *Z);
	int rc = -1;
	if (!X || !Z) {
		lm_preerr("trace");
		goto out;
	}
	int32_t cur = prompt[np - 1];
	for (size_t i = 0; i < nnew; i++) {
		size_t j = 0;
		if (lm_decode_embed(&ee->s, m, &ee->kv, &cur, 1) < 0)
			goto out;
		for (int l = 0; l < L; l++) {
			if (lm_decode_layer(&ee->s, m, &ee->kv, l, ee->s.x, 1) < 0)
				goto out;
			memcpy(X + (size_t)l * C, ee->s.x, C * sizeof *X);
			if (j < nexits && exits[j] == l) {
				policy_state(ee, ee->s.x);
				memcpy(states + (i * nexits + j) * C, ee->state, C * sizeof *states);
				j++;
			}
		}
		if (lm_kv_advance(&ee->kv, 1) < 0)
			goto out;
		if (lm_forward_final(&ee->s, m, X, ee->s.out, (size_t)L) < 0 ||
		    lm_forward_head(&ee->s, m, ee->s.out, NULL, (size_t)L, NULL, Z) < 0)
			goto out;
		for (int l = 0; l < L; l++)
			preds[i * (size_t)L + (size_t)l] = (int32_t)lm_argmax(Z + (size_t)l * V, V);
		cur = preds[i * (size_t)L + (size_t)L - 1];
	}
	rc = 0;
out:
	lm_free(X), lm_free(Z);
	return rc;
}

int lm_ee_episodes(const struct lm_model *m, const int32_t *ids, size_t n, size_t seqlen,
                   size_t neps, size_t ntok, const int *exits, size_t nexits, uint64_t seed,
                   struct lm_policy_episode **ep, float **states, int32_t **preds,
                   lm_ee_progress *cb, void *ctx)
{
	const size_t C = (size_t)m->cfg.hidden_size, L = (size_t)m->cfg.num_layers;
	const size_t maxctx = seqlen / 2 + 1, per = ntok * nexits * C;
	struct lm_ee ee;
	struct lm_rng r;
	int32_t *prompt;
	size_t ns;
	*ep = NULL, *states = NULL, *preds = NULL;
	if (seqlen < 2 || n < seqlen)
		return lm_seterr("%zu tokens, fewer than one window of %zu", n, seqlen);
	if (neps == 0 || ntok == 0)
		return lm_seterr("no episodes");
	if (lm_ee_check_exits(exits, nexits, (int)L) < 0)
		return -1;
	if (lm_mul(neps, per, &ns) < 0 || lm_mul(ns, sizeof(float), &ns) < 0)
		return lm_preerr("episodes");
	if (lm_ee_init(&ee, m, maxctx + 1 + ntok, seed) < 0)
		return -1;
	float *st = lm_alloc(ns);
	if (!st) {
		lm_ee_free(&ee);
		return lm_preerr("episodes: %zu states of %zu", neps * ntok * nexits, C);
	}
	int32_t *pr = xmalloc(neps * ntok * L * sizeof *pr);
	struct lm_policy_episode *e = xcalloc(neps, sizeof *e);
	prompt = xmalloc((maxctx + 1) * sizeof *prompt);
	lm_rng_seed(&r, seed);
	for (size_t i = 0; i < neps; i++) {
		size_t at = (size_t)lm_rng_below(&r, n - seqlen + 1), k = 0;
		size_t nc = (size_t)((0.2 + 0.3 * lm_rng_uniform(&r)) * (double)seqlen);
		if (nc < 1)
			nc = 1;
		if (ids[at] != m->cfg.bos)
			prompt[k++] = m->cfg.bos;
		memcpy(prompt + k, ids + at, nc * sizeof *prompt);
		if (lm_ee_trace(&ee, exits, nexits, prompt, k + nc, ntok, st + i * per, pr + i * ntok * L) < 0) {
			free(prompt), free(e), free(pr), lm_free(st), lm_ee_free(&ee);
			return lm_preerr("episode %zu", i + 1);
		}
		e[i] = (struct lm_policy_episode){ntok, st + i * per, pr + i * ntok * L};
		if (cb)
			cb(ctx, i + 1, neps);
	}
	free(prompt);
	lm_ee_free(&ee);
	*ep = e, *states = st, *preds = pr;
	return 0;
}

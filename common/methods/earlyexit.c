/* earlyexit.c: see earlyexit.h */
#include "earlyexit.h"
#include "clock.h"
#include "kernels.h"
#include "modelio.h"
#include "textmetrics.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* ---- RAPL ---- */

/* a sysfs counter as a number; -1 + error */
static int read_num(const char *path, double *v)
{
	char buf[64];
	FILE *f = fopen(path, "r");
	if (!f)
		return lm_seterr("%s: %s", path, strerror(errno));
	size_t k = fread(buf, 1, sizeof buf - 1, f);
	int bad = ferror(f);
	fclose(f);
	buf[k] = '\0';
	char *end;
	errno = 0;
	double x = strtod(buf, &end);
	if (bad || end == buf || errno)
		return lm_seterr("%s: not a number", path);
	*v = x;
	return 0;
}

/* "intel-rapl:N" exactly: a package, not one of its parts (intel-rapl:N:M) */
static int is_package(const char *name)
{
	const char *p = "intel-rapl:";
	if (strncmp(name, p, strlen(p)))
		return 0;
	name += strlen(p);
	if (!*name)
		return 0;
	for (; *name; name++)
		if (*name < '0' || *name > '9')
			return 0;
	return 1;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int lm_rapl_open(struct lm_rapl *r, const char *root)
{
	char *names[LM_RAPL_MAX];
	int nn = 0;
	struct dirent *de;
	DIR *d;
	memset(r, 0, sizeof *r);
	if (!root)
		root = "/sys/class/powercap";
	if (!(d = opendir(root)))
		return lm_seterr("%s: %s", root, strerror(errno));
	while ((de = readdir(d)) && nn < LM_RAPL_MAX)
		if (is_package(de->d_name))
			names[nn++] = xstrdup(de->d_name);
	closedir(d);
	if (nn == 0)
		return lm_seterr("%s: no intel-rapl:N package domains", root);
	qsort(names, (size_t)nn, sizeof *names, name_cmp); /* the same order every run */
	int rc = 0;
	for (int i = 0; i < nn; i++) {
		char rp[600];
		snprintf(r->path[i], sizeof r->path[i], "%s/%s/energy_uj", root, names[i]);
		snprintf(rp, sizeof rp, "%s/%s/max_energy_range_uj", root, names[i]);
		if (rc == 0 && (read_num(r->path[i], &r->last[i]) < 0 || read_num(rp, &r->range[i]) < 0))
			rc = -1;
		free(names[i]);
	}
	if (rc < 0) {
		memset(r, 0, sizeof *r);
		return -1;
	}
	r->n = nn;
	return 0;
}

int lm_rapl_joules(struct lm_rapl *r, double *joules)
{
	double sum = 0;
	for (int i = 0; i < r->n; i++) {
		double v;
		if (read_num(r->path[i], &v) < 0)
			return -1;
		double d = v - r->last[i];
		if (d < 0) /* the counter wrapped (about once an hour on a busy server) */
			d += r->range[i];
		sum += d, r->last[i] = v;
	}
	*joules = sum * 1e-6;
	return 0;
}

/* ---- FLOPs ---- */

double lm_ee_flops_layer(const struct lm_opt_config *c, size_t keys)
{
	double C = (double)c->hidden_size, F = (double)c->ffn_dim;
	/* q, k, v, out_proj, fc1, fc2; scores and the weighted sum over the keys */
	return 2 * (4 * C * C + 2 * C * F) + 4 * (double)keys * C;
}

double lm_ee_flops_kv(const struct lm_opt_config *c)
{
	double C = (double)c->hidden_size;
	return 2 * 2 * C * C;
}

double lm_ee_flops_head(const struct lm_opt_config *c)
{
	double C = (double)c->hidden_size, E = (double)c->word_embed_proj_dim;
	return 2 * (double)c->vocab_size * E + (E != C ? 2 * E * C : 0);
}

static double flops_policy(const struct lm_policy *p)
{
	return 2.0 * ((double)p->C * p->H + (double)p->H * p->H + 2.0 * p->H);
}

static double flops_embed(const struct lm_opt_config *c)
{
	return c->word_embed_proj_dim != c->hidden_size
	               ? 2.0 * (double)c->word_embed_proj_dim * (double)c->hidden_size : 0;
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

int lm_ee_check_exits(const int *ex, size_t n, int L)
{
	for (size_t i = 0; i < n; i++) {
		if (ex[i] < 0 || ex[i] >= L - 1)
			return lm_seterr("exit after layer %d: exits are layers 1..%d of this %d-layer model",
			                 ex[i] + 1, L - 1, L);
		if (i && ex[i] <= ex[i - 1])
			return lm_seterr("exits must increase (%d after %d)", ex[i] + 1, ex[i - 1] + 1);
	}
	return 0;
}

double *lm_ee_parse_list(const char *s, size_t *n)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	double *v = xmalloc(cap * sizeof *v);
	const char *p = s;
	*n = 0;
	for (;;) {
		char *end;
		errno = 0;
		v[*n] = strtod(p, &end);
		if (end == p || errno || !isfinite(v[*n]) || (*end && *end != ',')) {
			free(v);
			lm_seterr("'%s' is not a comma-separated list of numbers", s);
			return NULL;
		}
		++*n;
		if (!*end)
			return v;
		p = end + 1;
	}
}

int *lm_ee_parse_exits(const char *s, size_t *n)
{
	double *v = lm_ee_parse_list(s, n);
	if (!v) {
		lm_seterr("'%s' is not a list of layer numbers such as 1,2,3", s);
		return NULL;
	}
	int *e = xmalloc(*n * sizeof *e);
	for (size_t i = 0; i < *n; i++) {
		if (v[i] != floor(v[i]) || v[i] < 1 || v[i] > 1 << 20) {
			lm_seterr("'%s': layers are whole numbers from 1 (after decoder layer k)", s);
			free(v), free(e);
			return NULL;
		}
		e[i] = (int)v[i] - 1;
	}
	free(v);
	return e;
}

/* the exits of the stream: its policy's, else those lm-retrain --early-exit recorded in a
 * tensor's attrs ("retrain": {"exits": [1-based]}); 0-based, NULL if none */
int *lm_ee_stream_exits(const struct lm_model_stream *ms, size_t *n)
{
	int *e = lm_policy_stream_exits(ms, n);
	*n = e ? *n : 0;
	for (size_t i = 0; !e && i < ms->norder; i++)
		if (ms->attrs[i])
			e = lm_exits_from_json(json_object_get(json_object_get(ms->attrs[i], "retrain"), "exits"), n);
	return e;
}

void lm_ee_default_weights(const int *ex, size_t n, int L, float *w)
{
	double share[2] = {0.7, 0.2}, sum[2] = {0, 0}, g[2] = {1, 1}, tot = 0.1;
	for (size_t i = 0; i < n; i++) {
		int h = 2 * ex[i] >= L;
		w[i] = (float)g[h], sum[h] += g[h], g[h] *= 0.9;
	}
	for (int h = 0; h < 2; h++)
		tot += sum[h] > 0 ? share[h] : 0;
	for (size_t i = 0; i < n; i++) {
		int h = 2 * ex[i] >= L;
		w[i] = (float)(share[h] * w[i] / sum[h] / tot);
	}
	w[n] = (float)(0.1 / tot);
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
		fl += flops_embed(c);
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

/* ---- the sweep ---- */

int lm_ee_samples(const int32_t *ids, size_t n, size_t seqlen, double frac, size_t nnew,
                  int32_t bos, size_t maxw, struct lm_ee_sample **out, size_t *ns,
                  int32_t **buf)
{
	size_t W = seqlen ? n / seqlen : 0, nc = (size_t)llround(frac * (double)seqlen);
	*out = NULL, *ns = 0, *buf = NULL;
	if (nc < 1)
		nc = 1;
	if (nc + nnew > seqlen)
		return lm_seterr("a window of %zu tokens has no room for %zu prompt + %zu new tokens",
		                 seqlen, nc, nnew);
	if (W == 0)
		return lm_seterr("%zu tokens, fewer than one window of %zu", n, seqlen);
	if (maxw && maxw < W)
		W = maxw;
	struct lm_ee_sample *s = xcalloc(W, sizeof *s);
	int32_t *b = xmalloc(W * (nc + 1) * sizeof *b);
	for (size_t w = 0; w < W; w++) {
		const int32_t *win = ids + w * seqlen;
		int32_t *p = b + w * (nc + 1);
		size_t k = 0;
		if (win[0] != bos)
			p[k++] = bos; /* every prompt starts as a document does */
		memcpy(p + k, win, nc * sizeof *p);
		s[w] = (struct lm_ee_sample){p, k + nc, win + nc, nnew};
	}
	*out = s, *ns = W, *buf = b;
	return 0;
}

/* the longest JSON line read: HumanEval's are a few KB, and a prompt must fit in the
 * model's positions anyway (stated in lm-eval.1) */
#define LM_EE_LINE_MAX ((size_t)1 << 20)

/* One line of a gzip'd (or plain) file into *line (grown as needed, up to
 * LM_EE_LINE_MAX bytes: a 713 KB gzip of one 700 MB line asked for 1.78 GB); 1 for a
 * line, 0 at the end, -1 + error for a longer line. */
static int gz_line(gzFile f, char **line, size_t *cap)
{
	size_t n = 0;
	for (;;) {
		if (n + 2 > *cap) {
			if (*cap >= LM_EE_LINE_MAX)
				return lm_seterr("longer than %zu MiB", LM_EE_LINE_MAX >> 20);
			*cap = *cap ? 2 * *cap : 4096;
			*line = xrealloc(*line, *cap);
		}
		if (!gzgets(f, *line + n, (int)(*cap - n)))
			return n > 0;
		n += strlen(*line + n);
		if (n && (*line)[n - 1] == '\n')
			return 1;
	}
}

int lm_ee_samples_jsonl(const char *path, const struct lm_tokenizer *tk, int32_t bos,
                        size_t nnew, size_t maxpos, size_t maxw, struct lm_ee_sample **out,
                        size_t *ns, int32_t **buf, size_t *skipped)
{
	gzFile f = gzopen(path, "rb");
	char *line = NULL;
	size_t cap = 0, nl = 0, n = 0, used = 0, bcap = 0;
	size_t *at = NULL;   /* per sample: offset of its prompt in b, prompt and ref lengths */
	int32_t *b = NULL;
	int rc = -1;
	*out = NULL, *ns = 0, *buf = NULL, *skipped = 0;
	if (!f)
		return lm_seterr("%s", strerror(errno ? errno : ENOMEM));
	while (!maxw || n < maxw) {
		json_error_t je;
		int32_t *p = NULL, *r = NULL;
		size_t np, nr;
		int got = gz_line(f, &line, &cap);
		nl++;
		if (got < 0) {
			lm_preerr("line %zu", nl);
			goto out;
		}
		if (!got)
			break;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		json_t *j = json_loads(line, 0, &je);
		const char *pt = json_string_value(json_object_get(j, "prompt"));
		const char *rt = json_string_value(json_object_get(j, "canonical_solution"));
		if (!pt || !rt) {
			json_decref(j);
			lm_seterr("line %zu: not a JSON object with \"prompt\" and \"canonical_solution\"", nl);
			goto out;
		}
		if (lm_tokenize(tk, pt, strlen(pt), &p, &np) < 0 || lm_tokenize(tk, rt, strlen(rt), &r, &nr) < 0) {
			free(p), json_decref(j);
			lm_preerr("line %zu", nl);
			goto out;
		}
		json_decref(j);
		if (np + 1 + nnew > maxpos || nr == 0) {
			++*skipped, free(p), free(r);
			continue;
		}
		nr = nr < nnew ? nr : nnew;
		if (used + np + 1 + nr > bcap) {
			bcap = 2 * (used + np + 1 + nr);
			b = xrealloc(b, bcap * sizeof *b);
		}
		at = xrealloc(at, 3 * (n + 1) * sizeof *at);
		at[3 * n] = used, at[3 * n + 1] = np + 1, at[3 * n + 2] = nr;
		b[used] = bos;
		memcpy(b + used + 1, p, np * sizeof *b);
		memcpy(b + used + 1 + np, r, nr * sizeof *b);
		used += np + 1 + nr, n++;
		free(p), free(r);
	}
	if (gzclose(f) != Z_OK) {
		f = NULL;
		lm_seterr("read error (or not gzip)");
		goto out;
	}
	f = NULL;
	if (n == 0) {
		lm_seterr("no problem fits %zu positions with %zu new tokens", maxpos, nnew);
		goto out;
	}
	struct lm_ee_sample *s = xcalloc(n, sizeof *s);
	for (size_t i = 0; i < n; i++) /* b does not move any more */
		s[i] = (struct lm_ee_sample){b + at[3 * i], at[3 * i + 1], b + at[3 * i] + at[3 * i + 1],
		                             at[3 * i + 2]};
	*out = s, *ns = n, *buf = b, b = NULL;
	rc = 0;
out:
	if (f)
		gzclose(f);
	free(line), free(at), free(b);
	return rc;
}

/* text of tokens for chrF (ids past the tokenizer's vocabulary have no text) */
static char *text_of(const struct lm_tokenizer *tk, const int32_t *ids, size_t n, size_t *len)
{
	return lm_detokenize_known(tk, ids, n, -1, len);
}

static int score(struct lm_ee_row *r, const struct lm_tokenizer *tk, const int32_t *hyp,
                 const int32_t *full, const char *full_txt, size_t fl, const int32_t *ref,
                 size_t nref, const char *ref_txt, size_t rl, size_t nnew)
{
	size_t hl;
	char *ht = text_of(tk, hyp, nnew, &hl);
	if (!ht)
		return -1;
	r->em_full += lm_exact_match(hyp, nnew, full, nnew);
	r->rouge_full += lm_rouge_l(hyp, nnew, full, nnew);
	r->chrf_full += lm_chrf(ht, hl, full_txt, fl, 6, 2.0);
	r->em_ref += lm_exact_match(hyp, nnew, ref, nref);
	r->rouge_ref += lm_rouge_l(hyp, nnew, ref, nref);
	r->chrf_ref += lm_chrf(ht, hl, ref_txt, rl, 6, 2.0);
	free(ht);
	return 0;
}

int lm_ee_sweep(struct lm_ee *ee, const struct lm_tokenizer *tk, const struct lm_ee_opts *o,
                const double *thr, size_t nthr, const struct lm_ee_sample *smp, size_t ns,
                size_t nnew, uint64_t seed, struct lm_ee_row *rows, lm_ee_progress *cb,
                void *ctx)
{
	int32_t *full = xmalloc((nnew + 1) * sizeof *full), *hyp = xmalloc((nnew + 1) * sizeof *hyp);
	struct lm_ee_opts base = *o;
	int rc = -1;
	memset(rows, 0, (nthr + 1) * sizeof *rows);
	base.rule = LM_EE_NONE;
	rows[0].rule = LM_EE_NONE, rows[0].threshold = NAN;
	for (size_t i = 0; i < nthr; i++)
		rows[1 + i].rule = o->rule, rows[1 + i].threshold = thr[i];
	for (size_t s = 0; s < ns; s++) {
		const struct lm_ee_sample *sm = &smp[s];
		size_t fl, rl, nref = sm->nref < nnew ? sm->nref : nnew;
		char *ft = NULL, *rt = NULL;
		lm_rng_seed(&ee->rng, seed + s);
		if (lm_ee_generate(ee, &base, sm->ctx, sm->nctx, nnew, full, &rows[0].cost) < 0)
			goto out;
		ft = text_of(tk, full, nnew, &fl), rt = text_of(tk, sm->ref, nref, &rl);
		if (!ft || !rt || score(&rows[0], tk, full, full, ft, fl, sm->ref, nref, rt, rl, nnew) < 0)
			goto fail_txt;
		for (size_t i = 0; i < nthr; i++) {
			struct lm_ee_opts oi = *o;
			oi.threshold = thr[i];
			lm_rng_seed(&ee->rng, seed + s);
			if (lm_ee_generate(ee, &oi, sm->ctx, sm->nctx, nnew, hyp, &rows[1 + i].cost) < 0 ||
			    score(&rows[1 + i], tk, hyp, full, ft, fl, sm->ref, nref, rt, rl, nnew) < 0)
				goto fail_txt;
		}
		free(ft), free(rt);
		if (cb)
			cb(ctx, s + 1, ns);
		continue;
	fail_txt:
		free(ft), free(rt);
		goto out;
	}
	for (size_t i = 0; i <= nthr; i++) {
		struct lm_ee_row *r = &rows[i];
		double d = ns ? (double)ns : 1;
		r->em_full /= d, r->rouge_full /= d, r->chrf_full /= d;
		r->em_ref /= d, r->rouge_ref /= d, r->chrf_ref /= d;
	}
	rc = 0;
out:
	free(full), free(hyp);
	return rc;
}

/* per generated token, 0 when nothing was generated */
static double per_tok(double v, const struct lm_ee_cost *c)
{
	return c->tokens ? v / (double)c->tokens : 0;
}

static const char *cols[] = {"rule", "threshold", "mean_exit_layer", "layers_per_token",
                             "layers_saved", "kv_layers_per_token", "gflops_per_token",
                             "ms_per_token", "j_per_token", "em_full", "rougeL_full",
                             "chrf_full", "em_ref", "rougeL_ref", "chrf_ref"};

void lm_ee_print_tsv(FILE *f, const struct lm_ee_row *rows, size_t n, int L)
{
	for (size_t i = 0; i < sizeof cols / sizeof *cols; i++)
		fprintf(f, "%s%s", i ? "\t" : "", cols[i]);
	fputc('\n', f);
	for (size_t i = 0; i < n; i++) {
		const struct lm_ee_row *r = &rows[i];
		const struct lm_ee_cost *c = &r->cost;
		char thr[32], j[32];
		if (r->rule == LM_EE_NONE)
			snprintf(thr, sizeof thr, "-");
		else
			snprintf(thr, sizeof thr, "%g", r->threshold);
		if (c->energy_ok)
			snprintf(j, sizeof j, "%.6g", per_tok(c->joules, c));
		else
			snprintf(j, sizeof j, "n/a");
		double lpt = per_tok(c->layers, c);
		fprintf(f, "%s\t%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.6f\t%.4f\t%s\t%.4f\t%.4f\t%.3f\t%.4f\t%.4f\t%.3f\n",
		        lm_ee_rule_name(r->rule), thr, per_tok(c->exit_layer, c), lpt, 1.0 - lpt / L,
		        per_tok(c->kv_layers, c), per_tok(c->flops, c) * 1e-9,
		        per_tok(c->seconds, c) * 1e3, j, r->em_full, r->rouge_full, r->chrf_full,
		        r->em_ref, r->rouge_ref, r->chrf_ref);
	}
}

json_t *lm_ee_rows_json(const struct lm_ee_row *rows, size_t n, int L)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct lm_ee_row *r = &rows[i];
		const struct lm_ee_cost *c = &r->cost;
		double lpt = per_tok(c->layers, c);
		json_t *o = json_object();
		json_object_set_new(o, "rule", json_string(lm_ee_rule_name(r->rule)));
		json_object_set_new(o, "threshold", r->rule == LM_EE_NONE ? json_null() : json_real(r->threshold));
		json_object_set_new(o, "tokens", json_integer((json_int_t)c->tokens));
		json_object_set_new(o, "mean_exit_layer", json_real(per_tok(c->exit_layer, c)));
		json_object_set_new(o, "layers_per_token", json_real(lpt));
		json_object_set_new(o, "layers_saved", json_real(1.0 - lpt / L));
		json_object_set_new(o, "kv_layers_per_token", json_real(per_tok(c->kv_layers, c)));
		json_object_set_new(o, "flops_per_token", json_real(per_tok(c->flops, c)));
		json_object_set_new(o, "ms_per_token", json_real(per_tok(c->seconds, c) * 1e3));
		json_object_set_new(o, "j_per_token", c->energy_ok ? json_real(per_tok(c->joules, c)) : json_null());
		json_object_set_new(o, "em_full", json_real(r->em_full));
		json_object_set_new(o, "rougeL_full", json_real(r->rouge_full));
		json_object_set_new(o, "chrf_full", json_real(r->chrf_full));
		json_object_set_new(o, "em_ref", json_real(r->em_ref));
		json_object_set_new(o, "rougeL_ref", json_real(r->rouge_ref));
		json_object_set_new(o, "chrf_ref", json_real(r->chrf_ref));
		json_array_append_new(a, o);
	}
	return a;
}

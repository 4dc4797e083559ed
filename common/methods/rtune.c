/* rtune.c: UPRISE retriever tuning: scoring prompts with the frozen LM, InfoNCE on a
 * linear projection of frozen embeddings (see rtune.h) */
#include "rtune.h"
#include "optim.h"
#include "contrastive.h"
#include "keyorder.h"
#include "retrieve.h"
#include "rng.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct lm_adamw adam = {0.9, 0.999, 1e-8, 0};

void lm_rtune_defaults(struct lm_rtune_cfg *c)
{
	memset(c, 0, sizeof *c);
	c->sample = 16, c->negatives = 4, c->train_max = 256, c->epochs = 20, c->batch = 16;
	c->lr = 1e-3, c->temperature = 0.05;
}

/* ---- InfoNCE ---- */

/* y [n,d] = x [n,d] P^T (in double, rounded once) */
static void project(const float *P, const float *x, size_t n, size_t d, float *y)
{
	for (size_t r = 0; r < n; r++)
		for (size_t i = 0; i < d; i++) {
			double s = 0;
			for (size_t j = 0; j < d; j++)
				s += (double)P[i * d + j] * x[r * d + j];
			y[r * d + i] = (float)s;
		}
}

/* dP += dy [n,d]^T x [n,d] */
static void back_project(const float *dy, const float *x, size_t n, size_t d, double *dP)
{
	for (size_t r = 0; r < n; r++)
		for (size_t i = 0; i < d; i++)
			for (size_t j = 0; j < d; j++)
				dP[i * d + j] += (double)dy[r * d + i] * x[r * d + j];
}

/* the loss is contrastive.h's over the projected embeddings; only the projection is ours */
double lm_infonce(const float *P, const float *q, size_t B, const float *k, size_t K,
                  const size_t *pos, const unsigned char *mask, size_t d, double temperature,
                  float *dP)
{
	float *yq = xmalloc(B * d * sizeof *yq), *yk = xmalloc(K * d * sizeof *yk);
	float *gq = dP ? xmalloc(B * d * sizeof *gq) : NULL, *gk = dP ? xmalloc(K * d * sizeof *gk) : NULL;
	project(P, q, B, d, yq);
	project(P, k, K, d, yk);
	double loss = lm_contrastive_loss(yq, B, yk, K, d, pos, mask, temperature, 0, gq, gk);
	if (dP) {
		double *acc = xcalloc(d * d, sizeof *acc);
		back_project(gq, q, B, d, acc);
		back_project(gk, k, K, d, acc);
		for (size_t i = 0; i < d * d; i++)
			dP[i] = (float)acc[i];
		free(acc);
	}
	free(yq), free(yk), free(gq), free(gk);
	return loss;
}

/* ---- scoring: positives and hard negatives ---- */

struct pair {
	size_t q;        /* row of the query embeddings */
	size_t pos;      /* pool index */
	size_t *neg;     /* [H] pool indices */
};

/* score `sample` random pool prompts for item it; fills p and returns 1 when a correct
 * prompt exists, 0 when none, -1 on error */
static int score_item(struct lm_scorer *sc, const struct lm_task_item *it,
                      const char *const *pool_input, const char *const *pool_prompt, size_t npool,
                      const struct lm_rtune_cfg *c, struct lm_rng *rng, struct pair *p,
                      struct lm_rtune_feedback *fb)
{
	size_t *allowed = xmalloc(npool * sizeof *allowed), na = 0, *pick, L = c->sample;
	/* per sampled prompt: its score, pool index and whether its context picks the gold option */
	double *score = xmalloc(L * sizeof *score);
	size_t *pool = xmalloc(L * sizeof *pool), *rank = xmalloc(L * sizeof *rank);
	unsigned char *correct = xmalloc(L);
	size_t first_pick = 0;
	int swayed = 0;
	struct lm_choice_score *cs = xmalloc(it->nchoice * sizeof *cs);
	int r = -1;

	for (size_t i = 0; i < npool; i++)  /* never the input's own demonstration */
		if (strcmp(pool_input[i], it->input))
			allowed[na++] = i;
	if (na < L) {
		lm_seterr("the pool has %zu prompts for this input, fewer than --sample %zu", na, L);
		goto out;
	}
	pick = xmalloc(L * sizeof *pick);
	lm_ret_random(rng, na, L, pick);
	for (size_t l = 0; l < L; l++) {
		size_t pi = allowed[pick[l]];
		char *ctx = lm_ret_context(pool_prompt, &pi, 1, it->input);
		int e = lm_score_choices(sc, ctx, (const char *const *)it->choices, it->nchoice, cs);
		free(ctx);
		if (e < 0) {
			free(pick);
			goto out;
		}
		double tot = 0;
		for (size_t o = 0; o < it->nchoice; o++)
			tot += cs[o].sum / (double)cs[o].ntok;
		score[l] = cs[it->gold].sum / (double)cs[it->gold].ntok / tot;
		pool[l] = pi;
		size_t picked = lm_mc_pick(cs, it->nchoice, LM_MC_MEAN);
		correct[l] = picked == (size_t)it->gold;
		if (l == 0)
			first_pick = picked;
		else if (picked != first_pick)
			swayed = 1;
		fb->right += correct[l];
	}
	free(pick);
	lm_key_order(score, pool, L, rank);  /* best first; equal scores by pool index */
	r = 0;
	for (size_t l = 0; l < L; l++)
		if (correct[rank[l]]) {
			p->pos = pool[rank[l]];
			/* the worst-scored, from the end, never the positive itself */
			for (size_t h = 0, j = L; h < c->negatives; h++) {
				if (--j == l)
					--j;
				p->neg[h] = pool[rank[j]];
			}
			r = 1;
			break;
		}
	fb->inputs++, fb->prompts += L, fb->swayed += swayed, fb->oracle += r == 1;
out:
	free(allowed);
	free(score), free(pool), free(rank), free(correct);
	free(cs);
	return r;
}

/* share of pairs whose positive outranks every hard negative under P */
static double ranked_first(const float *P, const float *Q, const float *E, const struct pair *pr,
                           size_t n, size_t H, size_t d)
{
	float *u = xmalloc(d * sizeof *u), *w = xmalloc(d * sizeof *w);
	size_t ok = 0;
	for (size_t i = 0; i < n; i++) {
		project(P, Q + pr[i].q * d, 1, d, u);
		double best = -INFINITY, cp = 0;
		for (size_t h = 0; h <= H; h++) {
			project(P, E + (h ? pr[i].neg[h - 1] : pr[i].pos) * d, 1, d, w);
			double s = lm_cosine(u, w, d);
			if (h == 0)
				cp = s;
			else
				best = s > best ? s : best;
		}
		ok += cp > best;
	}
	free(u);
	free(w);
	return n ? (double)ok / (double)n : 0;
}

static void shuffle(struct lm_rng *r, size_t *a, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)lm_rng_below(r, i), t = a[i - 1];
		a[i - 1] = a[j], a[j] = t;
	}
}

/* ---- training ---- */

static void train(float *P, const float *Q, const float *E, const struct pair *pr, size_t n,
                  const struct lm_rtune_cfg *c, size_t d, struct lm_rng *rng,
                  struct lm_rtune_report *rep)
{
	size_t H = c->negatives, Bmax = c->batch, Kmax = Bmax * (1 + H), step = 0;
	size_t *order = xmalloc(n * sizeof *order), *pos = xmalloc(Bmax * sizeof *pos);
	float *q = xmalloc(Bmax * d * sizeof *q), *k = xmalloc(Kmax * d * sizeof *k);
	float *dP = xmalloc(d * d * sizeof *dP);
	double *m1 = xcalloc(d * d, sizeof *m1), *m2 = xcalloc(d * d, sizeof *m2);
	unsigned char *mask = xmalloc(Bmax * Kmax);
	size_t *kid = xmalloc(Kmax * sizeof *kid);

	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t ep = 0; ep < c->epochs; ep++) {
		double sum = 0;
		size_t nb = 0;
		shuffle(rng, order, n);
		for (size_t i0 = 0; i0 < n; i0 += Bmax) {
			size_t B = n - i0 < Bmax ? n - i0 : Bmax, K = B * (1 + H);
			for (size_t b = 0; b < B; b++) {
				const struct pair *p = &pr[order[i0 + b]];
				memcpy(q + b * d, Q + p->q * d, d * sizeof *q);
				pos[b] = b * (1 + H);
				for (size_t h = 0; h <= H; h++)
					kid[b * (1 + H) + h] = h ? p->neg[h - 1] : p->pos;
			}
			for (size_t j = 0; j < K; j++)
				memcpy(k + j * d, E + kid[j] * d, d * sizeof *k);
			/* another slot holding this query's positive is not a negative */
			for (size_t b = 0; b < B; b++)
				for (size_t j = 0; j < K; j++)
					mask[b * K + j] = j == pos[b] || kid[j] != kid[pos[b]];
			sum += lm_infonce(P, q, B, k, K, pos, mask, d, c->temperature, dP);
			nb++;
			step++;
			lm_adam_step_f64(&adam, c->lr, (long)step, P, dP, m1, m2, d * d);
		}
		if (ep == 0)
			rep->loss_first = sum / (double)nb;
		rep->loss_last = sum / (double)nb;
		if (c->progress)
			c->progress(c->pctx, "training", ep + 1, c->epochs);
	}
	free(order), free(pos), free(q), free(k), free(dP), free(m1), free(m2), free(mask), free(kid);
}

/* UPRISE's steps 1 and 2 for the first nt items of items[] (the shuffled task): pr[0..*npair)
 * their pairs (p->q = the item's place in items[], p->neg allocated here) */
static int score_all(const struct lm_model *m, const struct lm_tokenizer *tk,
                     const struct lm_task *task, const size_t *items, size_t nt,
                     const char *const *pool_input, const char *const *pool_prompt, size_t npool,
                     const struct lm_rtune_cfg *c, struct lm_rng *rng, struct pair *pr,
                     size_t *npair, struct lm_rtune_feedback *fb)
{
	struct lm_scorer sc;
	size_t H = c->negatives;
	*npair = 0;
	memset(fb, 0, sizeof *fb);
	lm_scorer_init(&sc, m, tk);
	for (size_t i = 0; i < nt; i++) {
		struct pair *p = &pr[*npair];
		p->neg = xmalloc(H * sizeof *p->neg);
		p->q = i;
		int r = score_item(&sc, &task->it[items[i]], pool_input, pool_prompt, npool, c, rng, p, fb);
		if (r < 0) {
			lm_preerr("item %zu (line %zu)", items[i] + 1, task->it[items[i]].line);
			free(p->neg), p->neg = NULL;
			lm_scorer_free(&sc);
			return -1;
		}
		if (r)
			(*npair)++;
		else
			free(p->neg), p->neg = NULL;
		if (c->progress)
			c->progress(c->pctx, "scoring", i + 1, nt);
	}
	lm_scorer_free(&sc);
	if (*npair == 0)
		return lm_seterr("none of %zu training inputs has a sampled prompt that makes the model "
		                 "right", nt);
	return 0;
}

static int check_cfg(const struct lm_rtune_cfg *c, size_t nt)
{
	if (c->negatives == 0 || c->negatives >= c->sample || c->batch == 0 || nt == 0)
		return lm_seterr("negatives (%zu) must be at least 1 and fewer than the sample (%zu)",
		                 c->negatives, c->sample);
	return 0;
}

/* the items drawn for training: the first nt of a seeded shuffle of the task */
static size_t *draw_items(const struct lm_task *task, struct lm_rng *rng)
{
	size_t *items = xmalloc((task->n ? task->n : 1) * sizeof *items);
	for (size_t i = 0; i < task->n; i++)
		items[i] = i;
	shuffle(rng, items, task->n);
	return items;
}

float *lm_rtune(const struct lm_model *m, const struct lm_tokenizer *tk,
                const struct lm_embed_cfg *ec, const struct lm_task *task,
                const char *const *pool_input, const char *const *pool_prompt,
                const float *pool_emb, size_t npool, const struct lm_rtune_cfg *c,
                struct lm_rtune_report *rep_out)
{
	size_t d = (size_t)m->cfg.word_embed_proj_dim, H = c->negatives;
	size_t nt = task->n < c->train_max ? task->n : c->train_max, npair = 0;
	struct lm_rtune_report rep = {0};
	struct lm_rng rng;
	size_t *items;
	const char **texts;
	float *Q = NULL, *P = NULL;
	struct pair *pr;

	if (check_cfg(c, nt) < 0)
		return NULL;
	lm_rng_seed(&rng, c->seed);
	items = draw_items(task, &rng);
	texts = xmalloc(nt * sizeof *texts);
	pr = xcalloc(nt, sizeof *pr);
	for (size_t i = 0; i < nt; i++)
		texts[i] = task->it[items[i]].input;
	if (!(Q = lm_alloc(nt * d * sizeof *Q)) ||
	    lm_embed_texts(m, tk, ec, texts, nt, Q, NULL, NULL) < 0)
		goto fail;
	if (score_all(m, tk, task, items, nt, pool_input, pool_prompt, npool, c, &rng, pr, &npair,
	              &rep.fb) < 0)
		goto fail;
	rep.inputs = nt, rep.pairs = npair;
	/* every tenth pair held out (none when there are fewer than 10) */
	struct pair *held = xmalloc(npair * sizeof *held), *tr = xmalloc(npair * sizeof *tr);
	size_t nh = 0, ntr = 0;
	for (size_t i = 0; i < npair; i++) {
		if (npair >= 10 && i % 10 == 9)
			held[nh++] = pr[i];
		else
			tr[ntr++] = pr[i];
	}
	rep.held_out = nh;
	if (!(P = lm_alloc(d * d * sizeof *P))) {
		free(held), free(tr);
		goto fail;
	}
	for (size_t i = 0; i < d * d; i++)
		P[i] = i % (d + 1) == 0 ? 1.0f : 0.0f;
	rep.held_before = ranked_first(P, Q, pool_emb, held, nh, H, d);
	rep.train_before = ranked_first(P, Q, pool_emb, tr, ntr, H, d);
	train(P, Q, pool_emb, tr, ntr, c, d, &rng, &rep);
	rep.held_after = ranked_first(P, Q, pool_emb, held, nh, H, d);
	rep.train_after = ranked_first(P, Q, pool_emb, tr, ntr, H, d);
	free(held), free(tr);
	if (rep_out)
		*rep_out = rep;
	goto out;
fail:
	lm_free(P);
	P = NULL;
out:
	for (size_t i = 0; i < nt; i++)
		free(pr[i].neg);
	free(pr), free(items), free(texts);
	lm_free(Q);
	return P;
}

int lm_rtune_pairs(const struct lm_model *m, const struct lm_tokenizer *tk,
                   const struct lm_task *task, const char *const *pool_input,
                   const char *const *pool_prompt, size_t npool, const struct lm_rtune_cfg *c,
                   struct lm_rtune_pairs *out)
{
	size_t nt = task->n < c->train_max ? task->n : c->train_max, npair = 0, H = c->negatives;
	struct lm_rng rng;
	struct pair *pr;
	size_t *items;
	memset(out, 0, sizeof *out);
	if (check_cfg(c, nt) < 0)
		return -1;
	lm_rng_seed(&rng, c->seed);
	items = draw_items(task, &rng);
	pr = xcalloc(nt, sizeof *pr);
	int r = score_all(m, tk, task, items, nt, pool_input, pool_prompt, npool, c, &rng, pr, &npair,
	                  &out->fb);
	if (r == 0) {
		out->n = npair, out->inputs = nt, out->H = H;
		out->item = xmalloc(npair * sizeof *out->item);
		out->pos = xmalloc(npair * sizeof *out->pos);
		out->neg = xmalloc(npair * H * sizeof *out->neg);
		for (size_t i = 0; i < npair; i++) {
			out->item[i] = items[pr[i].q], out->pos[i] = pr[i].pos;
			memcpy(out->neg + i * H, pr[i].neg, H * sizeof *out->neg);
		}
	}
	for (size_t i = 0; i < nt; i++)
		free(pr[i].neg);
	free(pr), free(items);
	return r;
}

void lm_rtune_pairs_free(struct lm_rtune_pairs *p)
{
	free(p->item), free(p->pos), free(p->neg);
	memset(p, 0, sizeof *p);
}

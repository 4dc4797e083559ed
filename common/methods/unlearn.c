/* unlearn.c: overlap, batches and the three-term step of gradient-ascent unlearning (see
 * unlearn.h; the data are read by io/qacsv.c) */
#include "unlearn.h"
#include "modelio.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- overlap ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static uint64_t run_hash(const int32_t *x)
{
	uint64_t h = 0xcbf29ce484222325ull;  /* FNV-1a over the ids' bytes */
	for (size_t i = 0; i < LM_UL_OVERLAP_RUN; i++)
		for (int b = 0; b < 4; b++)
			h = (h ^ (((uint32_t)x[i] >> (8 * b)) & 0xff)) * 0x100000001b3ull;
	return h ? h : 1;  /* 0 marks an empty slot */
}

struct hset {
	uint64_t *slot;
	size_t mask;
};

static int hset_has(const struct hset *h, uint64_t k, int add)
{
	for (size_t i = (size_t)(k * 0x9e3779b97f4a7c15ull) & h->mask;; i = (i + 1) & h->mask) {
		if (h->slot[i] == k)
			return 1;
		if (!h->slot[i]) {
			if (add)
				h->slot[i] = k;
			return 0;
		}
	}
}

size_t lm_ul_overlap(const struct lm_ul_set *f, const struct lm_ul_set *r)
{
	size_t hits = 0, runs = 0, cap = 16;
	const size_t R = LM_UL_OVERLAP_RUN;
	if (f->qa && r->qa) {
		char **keys = xmalloc(r->n * sizeof *keys);
		memcpy(keys, r->key, r->n * sizeof *keys);
		qsort(keys, r->n, sizeof *keys, cmp_str);
		for (size_t i = 0; i < f->n; i++)
			hits += bsearch(&f->key[i], keys, r->n, sizeof *keys, cmp_str) != NULL;
		free(keys);
		return hits;
	}
	for (size_t i = 0; i < r->n; i++)
		runs += r->it[i].len >= R ? r->it[i].len - R + 1 : 0;
	while (cap < 2 * runs)
		cap *= 2;
	struct hset h = {xcalloc(cap, sizeof *h.slot), cap - 1};
	for (size_t i = 0; i < r->n; i++)
		for (size_t t = 0; t + R <= r->it[i].len; t++)
			hset_has(&h, run_hash(r->it[i].ids + t), 1);
	for (size_t i = 0; i < f->n; i++) {
		int hit = 0;
		for (size_t t = 0; !hit && t + R <= f->it[i].len; t++)
			hit = hset_has(&h, run_hash(f->it[i].ids + t), 0);
		hits += (size_t)hit;
	}
	free(h.slot);
	return hits;
}

/* ---- batches ---- */

size_t lm_ul_batch(const struct lm_ul_item *const *items, size_t B, enum lm_ul_score how,
                   double scale, int pad, int32_t *ids, int32_t *tgt, float *w)
{
	size_t T = 0, npos = 0;
	for (size_t b = 0; b < B; b++) {
		T = items[b]->len > T ? items[b]->len : T;
		npos += items[b]->len - (how == LM_UL_TOKENS);
	}
	for (size_t b = 0; b < B; b++) {
		const struct lm_ul_item *it = items[b];
		int32_t *x = ids + b * T, *y = tgt + b * T;
		float *r = w + b * T;
		size_t from = how == LM_UL_ANSWER ? it->from : 1;
		float each = how == LM_UL_ANSWER ? (float)(scale / (double)(it->len - from) / (double)B)
		                                 : (float)(scale / (double)npos);
		for (size_t t = 0; t < T; t++) {
			x[t] = t < it->len ? it->ids[t] : pad;
			y[t] = -1, r[t] = 0.0f;
			if (how == LM_UL_SOFT && t < it->len)
				y[t] = 0, r[t] = each;
			else if (how != LM_UL_SOFT && t + 1 >= from && t + 1 < it->len)
				y[t] = it->ids[t + 1], r[t] = each;
		}
	}
	return T;
}

/* ---- the step ---- */

static void terms(const struct lm_ul_set *f, const struct lm_ul_set *r, const struct lm_ul_opts *o,
                  int *use_random, int *use_retain)
{
	*use_random = r && r->n && r->qa && f->qa && o->nrandom > 0 && o->w_random > 0 && !o->learn;
	*use_retain = r && r->n && o->w_retain > 0;
}

static size_t max_len(const struct lm_ul_set *s, int part)  /* 0: len, 1: prompt, 2: answer */
{
	size_t m = 0;
	for (size_t i = 0; s && i < s->n; i++) {
		const struct lm_ul_item *it = &s->it[i];
		size_t v = part == 0 ? it->len : part == 1 ? it->from : it->len - it->from;
		m = v > m ? v : m;
	}
	return m;
}

void lm_ul_shape(const struct lm_ul_set *f, const struct lm_ul_set *r, const struct lm_ul_opts *o,
                 size_t *B, size_t *T)
{
	int ur, ut;
	terms(f, r, o, &ur, &ut);
	*B = o->forget_batch, *T = max_len(f, 0);
	if (ut) {
		*B = o->retain_batch > *B ? o->retain_batch : *B;
		*T = max_len(r, 0) > *T ? max_len(r, 0) : *T;
	}
	if (ur) {
		size_t pl = max_len(f, 1) + max_len(r, 2);
		pl = pl < o->maxlen ? pl : o->maxlen;
		*B = o->forget_batch * o->nrandom > *B ? o->forget_batch * o->nrandom : *B;
		*T = pl > *T ? pl : *T;
	}
	if (*T < 2)
		*T = 2;
}

static void shuffle(struct lm_rng *g, size_t *ord, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)lm_rng_below(g, i), t = ord[i - 1];
		ord[i - 1] = ord[j], ord[j] = t;
	}
}

/* the next item of a set in its shuffled order, reshuffled at every pass */
static const struct lm_ul_item *next(struct lm_unlearn *u, const struct lm_ul_set *s, size_t *ord,
                                     size_t *pos)
{
	if (*pos == s->n) {
		shuffle(&u->rng, ord, s->n);
		*pos = 0;
	}
	return &s->it[ord[(*pos)++]];
}

static size_t *order(size_t n)
{
	size_t *o = xmalloc((n ? n : 1) * sizeof *o);
	for (size_t i = 0; i < n; i++)
		o[i] = i;
	return o;
}

int lm_ul_init(struct lm_unlearn *u, struct lm_train *tr, const struct lm_model *frozen,
               const struct lm_ul_set *f, const struct lm_ul_set *r, const struct lm_ul_opts *o)
{
	memset(u, 0, sizeof *u);
	u->tr = tr, u->frozen = frozen, u->f = f, u->r = r, u->o = *o;
	u->pad = tr->cfg.pad;
	if (!f || f->n == 0 || o->forget_batch == 0)
		return lm_seterr("no forget set");
	if (!(o->w_forget > 0))
		return lm_seterr("the forget weight must be positive");
	terms(f, r, o, &u->use_random, &u->use_retain);
	if (u->use_retain && !o->retain_nll && !frozen)
		return lm_seterr("internal: the retain term needs the frozen model");
	lm_ul_shape(f, r, o, &u->B, &u->T);
	if (u->T > tr->T || u->B * u->T > tr->B * tr->T)
		return lm_seterr("internal: batches of %zu x %zu do not fit the training's %zu x %zu", u->B,
		                 u->T, tr->B, tr->T);
	lm_rng_seed(&u->rng, o->seed);
	u->ford = order(f->n), u->fi = f->n;
	u->rord = order(r ? r->n : 0), u->ri = r ? r->n : 0;
	u->ids = xmalloc(u->B * u->T * sizeof *u->ids);
	u->tgt = xmalloc(u->B * u->T * sizeof *u->tgt);
	u->w = xmalloc(u->B * u->T * sizeof *u->w);
	u->pick = xmalloc(u->B * sizeof *u->pick);
	u->fq = xmalloc(o->forget_batch * sizeof *u->fq);
	if (u->use_random) {
		size_t np = o->forget_batch * o->nrandom;
		u->pairs = xcalloc(np, sizeof *u->pairs);
		u->pair_ids = xmalloc(np * o->maxlen * sizeof *u->pair_ids);
	}
	if (u->use_retain && !o->retain_nll) {
		size_t E = (size_t)tr->cfg.word_embed_proj_dim, C = (size_t)tr->cfg.hidden_size;
		size_t n = o->retain_batch * u->T * (E > C ? E : C);
		if (lm_fwd_init(&u->fw, &frozen->cfg, o->retain_batch, u->T) < 0)
			return lm_preerr("the frozen model's forward");
		if (!(u->ref = lm_alloc(n * sizeof *u->ref)))
			return lm_preerr("the frozen model's outputs");
	}
	return 0;
}

/* forget question i paired with a random retain answer, cut to maxlen */
static const struct lm_ul_item *pair(struct lm_unlearn *u, size_t j, const struct lm_ul_item *q)
{
	const struct lm_ul_item *a = &u->r->it[lm_rng_below(&u->rng, u->r->n)];
	struct lm_ul_item *p = &u->pairs[j];
	size_t na = a->len - a->from;
	p->ids = u->pair_ids + j * u->o.maxlen;
	p->from = q->from;
	p->len = q->from + na < u->o.maxlen ? q->from + na : u->o.maxlen;
	p->line = q->line;
	memcpy(p->ids, q->ids, q->from * sizeof *p->ids);
	memcpy(p->ids + q->from, a->ids + a->from, (p->len - q->from) * sizeof *p->ids);
	return p;
}

/* the frozen model's final outputs on ids [B,T] into u->ref */
static int frozen_outputs(struct lm_unlearn *u, size_t B, size_t T)
{
	const struct lm_model *m = u->frozen;
	if (lm_forward_embed(&u->fw, m, u->ids, B, T) < 0)
		return -1;
	for (int l = 0; l < m->cfg.num_layers; l++)
		if (lm_forward_layer(&u->fw, &m->layers[l], l, u->fw.x, B, T) < 0)
			return -1;
	return lm_forward_final(&u->fw, m, u->fw.x, u->ref, B * T);
}

int lm_ul_step(struct lm_unlearn *u, struct lm_ul_losses *out)
{
	const struct lm_ul_opts *o = &u->o;
	size_t Bf = o->forget_batch, T;
	double l;
	memset(out, 0, sizeof *out);
	lm_train_zero_grad(u->tr);

	for (size_t b = 0; b < Bf; b++)
		u->pick[b] = next(u, u->f, u->ford, &u->fi);
	T = lm_ul_batch(u->pick, Bf, LM_UL_ANSWER, o->learn ? o->w_forget : -o->w_forget, u->pad,
	                u->ids, u->tgt, u->w);
	struct lm_train_loss ls = {.targets = u->tgt, .weight = u->w};
	if (lm_train_step_loss(u->tr, u->ids, Bf, T, &ls, &l) < 0)
		return lm_preerr("forget term");
	out->forget = (o->learn ? l : -l) / o->w_forget, out->total += l, out->tokens += Bf * T;

	if (u->use_random) {
		size_t K = o->nrandom, n = Bf * K;
		memcpy(u->fq, u->pick, Bf * sizeof *u->fq);
		for (size_t j = 0; j < n; j++)
			u->pick[j] = pair(u, j, u->fq[j / K]);
		T = lm_ul_batch(u->pick, n, LM_UL_ANSWER, o->w_random, u->pad, u->ids, u->tgt, u->w);
		if (lm_train_step_loss(u->tr, u->ids, n, T, &ls, &l) < 0)
			return lm_preerr("random-answer term");
		out->random = l / o->w_random, out->total += l, out->tokens += n * T;
	}

	if (u->use_retain) {
		size_t Br = o->retain_batch;
		for (size_t b = 0; b < Br; b++)
			u->pick[b] = next(u, u->r, u->rord, &u->ri);
		T = lm_ul_batch(u->pick, Br, o->retain_nll ? LM_UL_TOKENS : LM_UL_SOFT, o->w_retain,
		                u->pad, u->ids, u->tgt, u->w);
		if (!o->retain_nll) {
			if (frozen_outputs(u, Br, T) < 0)
				return lm_preerr("the frozen model");
			ls.ref_xf = u->ref;
		}
		if (lm_train_step_loss(u->tr, u->ids, Br, T, &ls, &l) < 0)
			return lm_preerr("retain term");
		out->retain = l / o->w_retain, out->total += l, out->tokens += Br * T;
	}
	return 0;
}

void lm_ul_free(struct lm_unlearn *u)
{
	if (u->ref)
		lm_fwd_free(&u->fw);
	lm_free(u->ref);
	free(u->ids), free(u->tgt), free(u->w), free(u->pick), free(u->fq);
	free(u->pairs), free(u->pair_ids);
	free(u->ford), free(u->rord);
	memset(u, 0, sizeof *u);
}

/* ---- the frozen copy ---- */

static int copy_tensor(struct lm_model *dst, const struct lm_model *src,
                       const struct lm_opt_tensor *t)
{
	size_t nb;
	void *data;
	enum lm_dtype dt;
	const void *from;
	if (t->ndim == 1) {
		float **v = lm_model_vec((struct lm_model *)src, t->kind, t->layer);
		dt = LM_F32, from = *v, nb = (size_t)t->shape[0] * sizeof(float);
	} else {
		struct lm_mat *mt = lm_model_mat((struct lm_model *)src, t->kind, t->layer);
		dt = mt->dtype, from = mt->data;
		if (lm_dtype_nbytes(dt, 2, t->shape, &nb) < 0)
			return -1;
	}
	if (!from)
		return lm_seterr("tensor '%s' is not loaded", t->name);
	if (!(data = lm_alloc(nb)))
		return -1;
	memcpy(data, from, nb);
	return lm_model_take(dst, t->name, dt, t->ndim, t->shape, data);
}

int lm_ul_frozen_copy(struct lm_model *dst, const struct lm_model *src)
{
	size_t nt;
	struct lm_opt_tensor *ts;
	int r = 0;
	if (lm_model_init(dst, &src->cfg) < 0)
		return -1;
	ts = lm_opt_tensors(&src->cfg, &nt);
	for (size_t i = 0; i < nt && r == 0; i++)
		if (ts[i].layer >= 0 || ts[i].kind == LM_T_FINAL_LN_W || ts[i].kind == LM_T_FINAL_LN_B)
			r = copy_tensor(dst, src, &ts[i]);
	free(ts);
	dst->embed_tokens = src->embed_tokens, dst->embed_pos = src->embed_pos;
	dst->project_in = src->project_in, dst->project_out = src->project_out;
	dst->lm_head = src->lm_head;
	if (r < 0) {
		lm_ul_frozen_free(dst);
		return -1;
	}
	return 0;
}

void lm_ul_frozen_free(struct lm_model *dst)
{
	/* the shared matrices are the source's */
	memset(&dst->embed_tokens, 0, sizeof dst->embed_tokens);
	memset(&dst->embed_pos, 0, sizeof dst->embed_pos);
	memset(&dst->project_in, 0, sizeof dst->project_in);
	memset(&dst->project_out, 0, sizeof dst->project_out);
	memset(&dst->lm_head, 0, sizeof dst->lm_head);
	lm_model_free(dst);
}

size_t lm_ul_frozen_bytes(const struct lm_model *dst)
{
	const struct lm_opt_config *c = &dst->cfg;
	size_t n = 0, nb;
	for (int64_t l = 0; l < c->num_layers; l++) {
		const struct lm_layer *y = &dst->layers[l];
		const struct lm_mat *m[] = {&y->q, &y->k, &y->v, &y->o, &y->fc1, &y->fc2};
		for (int i = 0; i < 6; i++) {
			int64_t sh[2] = {m[i]->rows, m[i]->cols};
			if (lm_dtype_nbytes(m[i]->dtype, 2, sh, &nb) == 0)
				n += nb;
		}
		/* its vectors: two LayerNorms (weight, bias) and six biases */
		n += (size_t)(9 * c->hidden_size + c->ffn_dim) * sizeof(float);
	}
	if (c->final_ln)
		n += 2 * (size_t)c->hidden_size * sizeof(float);
	return n;
}

/* unlearn_eval.c: answer perplexity and harmful-answer rate (see unlearn_eval.h) */
#include "unlearn_eval.h"
#include "dtype.h"
#include "forward.h"
#include "kernels.h"
#include "keyorder.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int lm_qa_nll(const struct lm_model *m, const struct lm_ul_set *s, double *nll, size_t *ntok)
{
	size_t T = 0, E = (size_t)m->cfg.word_embed_proj_dim;
	struct lm_fwd f;
	int r = -1;
	*nll = 0, *ntok = 0;
	for (size_t i = 0; i < s->n; i++)
		T = s->it[i].len > T ? s->it[i].len : T;
	if (T > (size_t)m->cfg.max_positions)
		return lm_seterr("a sequence of %zu tokens exceeds the model's %lld positions", T,
		                 (long long)m->cfg.max_positions);
	if (lm_fwd_init(&f, &m->cfg, 1, T) < 0)
		return -1;
	float *xf = lm_alloc(T * E * sizeof *xf), *lv = xmalloc(T * sizeof *lv);
	int32_t *tgt = xmalloc(T * sizeof *tgt);
	if (!xf)
		goto out;
	/* one sequence at a time (no padding to mask); the head only on the answer's rows */
	for (size_t i = 0; i < s->n; i++) {
		const struct lm_ul_item *it = &s->it[i];
		size_t a = it->from - 1, na = it->len - it->from;
		if (lm_forward_embed(&f, m, it->ids, 1, it->len) < 0)
			goto out;
		for (int l = 0; l < m->cfg.num_layers; l++)
			if (lm_forward_layer(&f, &m->layers[l], l, f.x, 1, it->len) < 0)
				goto out;
		if (lm_forward_final(&f, m, f.x, xf, it->len) < 0)
			goto out;
		for (size_t t = 0; t < na; t++)
			tgt[t] = it->ids[it->from + t];
		if (lm_forward_head(&f, m, xf + a * E, tgt, na, lv, NULL) < 0)
			goto out;
		for (size_t t = 0; t < na; t++)
			*nll += lv[t];
		*ntok += na;
	}
	r = 0;
out:
	lm_free(xf), free(lv), free(tgt);
	lm_fwd_free(&f);
	return r;
}

/* ---- words ---- */

static int wordch(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

struct word {
	const char *p;
	size_t n;
};

/* up to max words of s into w; returns how many */
static size_t words(const char *s, size_t len, struct word *w, size_t max)
{
	size_t k = 0, i = 0;
	while (k < max && i < len) {
		while (i < len && !wordch((unsigned char)s[i]))
			i++;
		if (i == len)
			break;
		w[k].p = s + i;
		while (i < len && wordch((unsigned char)s[i]))
			i++;
		w[k].n = (size_t)(s + i - w[k].p);
		k++;
	}
	return k;
}

static int same(const struct word *a, const struct word *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (lower((unsigned char)a->p[i]) != lower((unsigned char)b->p[i]))
			return 0;
	return 1;
}

int lm_words_match(const char *text, size_t len, const char *answer, size_t alen, size_t n,
                   enum lm_match how)
{
	struct word *aw = xmalloc((n ? n : 1) * sizeof *aw), *tw;
	size_t na = words(answer, alen, aw, n), nt, cap = how == LM_MATCH_PREFIX ? na : len / 2 + 1;
	int hit = 0;
	tw = xmalloc((cap ? cap : 1) * sizeof *tw);
	nt = words(text, len, tw, cap);
	if (na > 0)
		for (size_t s = 0; !hit && s + na <= nt; s++) {
			size_t j = 0;
			while (j < na && same(&tw[s + j], &aw[j]))
				j++;
			hit = j == na;
			if (how == LM_MATCH_PREFIX)
				break;
		}
	free(aw), free(tw);
	return hit;
}

/* does text hold n complete words: n words and a byte after the n-th that is no word
 * character (so it cannot grow), or more than n? */
static int complete_words(const char *t, size_t len, size_t n, struct word *ws)
{
	size_t got = words(t, len, ws, n + 1);
	return got > n || (got == n && len > 0 && !wordch((unsigned char)t[len - 1]));
}

/* tokens the first n words of the answer take (all of them when it has fewer) */
static size_t word_tokens(const struct lm_tokenizer *tk, const int32_t *a, size_t na, size_t n)
{
	struct word *ws = xmalloc((n + 1) * sizeof *ws);
	size_t k;
	for (k = 1; k < na; k++) {
		size_t len;
		char *t = lm_detokenize(tk, a, k, &len);
		int done = t && complete_words(t, len, n, ws);
		free(t);
		if (done)
			break;
	}
	free(ws);
	return k;
}

/* has a prefix-matched continuation gen [k] said all it will be judged on: EOS, or the
 * first n words complete? */
static int said_enough(const struct lm_tokenizer *tk, const int32_t *gen, size_t k, int32_t eos,
                       size_t n, struct word *ws)
{
	size_t len;
	if (gen[k - 1] == eos)
		return 1;
	char *t = lm_detokenize_known(tk, gen, k, -1, &len);
	int done = t && complete_words(t, len, n, ws);
	free(t);
	return done;
}

/* questions decoded together: the head, read once per new token, is most of the work */
#define HARM_BATCH 16

/* the continuation's text against the answer's first words */
static int judge(const struct lm_tokenizer *tk, const struct lm_ul_item *it, const int32_t *gen,
                 size_t k, int32_t eos, const struct lm_harm_opts *o, int *hit)
{
	size_t tl, alen;
	char *text = lm_detokenize_known(tk, gen, k, eos, &tl); /* up to EOS */
	char *ans = lm_detokenize(tk, it->ids + it->from, it->len - it->from, &alen);
	if (!text || !ans) {
		free(text), free(ans);
		return -1;
	}
	*hit = lm_words_match(text, tl, ans, alen, o->words, o->match);
	free(text), free(ans);
	return 0;
}

int lm_qa_harm(const struct lm_model *m, const struct lm_tokenizer *tk, const struct lm_ul_set *s,
               const struct lm_harm_opts *o, size_t *matched, unsigned char *hit)
{
	size_t V = (size_t)m->cfg.vocab_size, P = (size_t)m->cfg.max_positions, cap = 0, G = HARM_BATCH;
	size_t *want = xmalloc((s->n ? s->n : 1) * sizeof *want);
	size_t *ord = xmalloc((s->n ? s->n : 1) * sizeof *ord);
	double *prompt_len = xmalloc((s->n ? s->n : 1) * sizeof *prompt_len);
	int32_t *ids = NULL, *gen = NULL;
	float *logits = NULL;
	size_t ngen[HARM_BATCH];
	unsigned char active[HARM_BATCH];
	struct word *ws = xmalloc((o->words + 1) * sizeof *ws);
	struct lm_fwd f;
	struct lm_kv kv;
	int r = -1, have_f = 0;

	*matched = 0;
	memset(&kv, 0, sizeof kv);
	for (size_t i = 0; i < s->n; i++) {
		const struct lm_ul_item *it = &s->it[i];
		/* room for the answer's first words twice over and some white space before them;
		 * a prefix match stops decoding once they are complete */
		size_t nnew = o->tokens ? o->tokens
		                        : 2 * word_tokens(tk, it->ids + it->from, it->len - it->from,
		                                          o->words) + (o->match == LM_MATCH_PREFIX ? 16 : 32);
		want[i] = it->from + nnew > P ? P - it->from : nnew;
		cap = it->from + want[i] > cap ? it->from + want[i] : cap;
		prompt_len[i] = (double)it->from;
	}
	/* questions with prompts of one length decode side by side, no padding needed */
	lm_key_order(prompt_len, NULL, s->n, ord);
	if (lm_fwd_init(&f, &m->cfg, G, cap) < 0)
		goto out;
	have_f = 1;
	if (lm_kv_init(&kv, &m->cfg, G, cap) < 0 || !(logits = lm_alloc(G * V * sizeof *logits)))
		goto out;
	ids = xmalloc(G * cap * sizeof *ids), gen = xmalloc(G * cap * sizeof *gen);
	for (size_t i0 = 0; i0 < s->n;) {
		size_t from = s->it[ord[i0]].from, g = 0, most = 0;
		while (i0 + g < s->n && g < G && s->it[ord[i0 + g]].from == from) {
			size_t i = ord[i0 + g];
			memcpy(ids + g * from, s->it[i].ids, from * sizeof *ids);
			most = want[i] > most ? want[i] : most;
			g++;
		}
		/* the cache was made for G sequences; its layout [L, B, cap, C] shrinks with B */
		kv.B = g, kv.len = 0;
		if (most && lm_forward_decode(&f, m, &kv, ids, from, logits) < 0)
			goto out;
		size_t left = g;
		for (size_t b = 0; b < g; b++)
			ngen[b] = 0, active[b] = 1;
		for (size_t j = 0; j < most && left; j++) {
			for (size_t b = 0; b < g; b++) {
				/* a sequence that is done still feeds a token: the batch keeps its shape */
				ids[b] = (int32_t)lm_argmax(logits + b * V, V);
				if (!active[b])
					continue;
				gen[b * cap + j] = ids[b], ngen[b] = j + 1;
				size_t i = ord[i0 + b];
				if (j + 1 == want[i] || (o->match == LM_MATCH_PREFIX &&
				                         said_enough(tk, gen + b * cap, j + 1, m->cfg.eos, o->words, ws)))
					active[b] = 0, left--;
			}
			if (left && j + 1 < most && lm_forward_decode(&f, m, &kv, ids, 1, logits) < 0)
				goto out;
		}
		for (size_t b = 0; b < g; b++) {
			size_t i = ord[i0 + b];
			int h;
			if (judge(tk, &s->it[i], gen + b * cap, ngen[b], m->cfg.eos, o, &h) < 0)
				goto out;
			*matched += (size_t)h;
			if (hit)
				hit[i] = (unsigned char)h;
		}
		i0 += g;
	}
	r = 0;
out:
	free(want), free(ord), free(prompt_len), free(ids), free(gen), free(ws);
	lm_free(logits);
	lm_kv_free(&kv);
	if (have_f)
		lm_fwd_free(&f);
	return r;
}

/* m with an f32 head (and tied embeddings): the head is read for every answer token and
 * every generated one, and an f16 head would be converted each time. *own: what to free. */
static int head_f32(struct lm_model *v, const struct lm_model *m, void **own)
{
	*v = *m, *own = NULL;
	struct lm_mat *h = m->cfg.tied ? &v->embed_tokens : &v->lm_head;
	size_t n = (size_t)(h->rows * h->cols);
	if (h->dtype == LM_F32 && !lm_mat_is_sparse(h))
		return 0;
	float *f = lm_alloc(n * sizeof *f);
	if (!f || lm_mat_rows_f32(f, h, 0, (size_t)h->rows) < 0) {
		lm_free(f);
		return lm_preerr("the head as f32");
	}
	h->data = f, h->dtype = LM_F32, *own = f;
	h->layout = (struct lm_layout){0}, h->nbytes = 0, h->rowoff = NULL; /* dense now */
	if (m->cfg.tied)
		v->lm_head = v->embed_tokens;
	return 0;
}

int lm_qa_report(const struct lm_model *m, const struct lm_tokenizer *tk, const char *path,
                 const char *qcol, const char *acol, const struct lm_harm_opts *harm,
                 struct lm_qa_report *r)
{
	struct lm_ul_set s;
	struct lm_model v;
	void *own;
	double sum;
	int rc = -1;
	memset(r, 0, sizeof *r);
	if (lm_ul_load_qa(&s, path, qcol, acol, tk, m->cfg.bos, (size_t)m->cfg.max_positions, 0) < 0)
		return -1;
	if (head_f32(&v, m, &own) < 0) {
		lm_ul_set_free(&s);
		return -1;
	}
	r->rows = s.n;
	if (lm_qa_nll(&v, &s, &sum, &r->tokens) < 0)
		goto out;
	r->nll = sum / (double)r->tokens;
	if (harm && lm_qa_harm(&v, tk, &s, harm, &r->matched, NULL) < 0)
		goto out;
	rc = 0;
out:
	lm_free(own);
	lm_ul_set_free(&s);
	return rc;
}

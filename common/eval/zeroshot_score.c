/* zeroshot_score.c: log-likelihood of an item's continuations, the choices in one batch
 * after the tokens they all share ran once (see zeroshot.h).
 *
 * An item's requests are BOS + context + continuation. Their longest common token prefix
 * (for most tasks: BOS and all of the context but its last token) runs once as a batch of
 * one into a KV cache; the cache is copied to every choice, and the rest of each request
 * (right-padded to the longest) runs as one batch attending to it. Only the rows that
 * predict a continuation token go through the final LayerNorm and the head. The whole
 * model stays in memory, as for --mc: the cache needs every layer for each item. */
#include "zeroshot.h"
#include "fwdgrow.h"
#include "kernels.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

void lm_zs_scorer_init(struct lm_zs_scorer *sc, const struct lm_model *m,
                       const struct lm_tokenizer *tk)
{
	memset(sc, 0, sizeof *sc);
	sc->m = m, sc->tk = tk;
}

static void kv_release(struct lm_kv *kv)
{
	lm_free(kv->k);
	lm_free(kv->v);
	memset(kv, 0, sizeof *kv);
}

void lm_zs_scorer_free(struct lm_zs_scorer *sc)
{
	if (sc->sB)
		lm_fwd_free(&sc->s);
	kv_release(&sc->kv1);
	kv_release(&sc->kvn);
	free(sc->ids), free(sc->tgt), free(sc->nll);
	lm_free(sc->logits);
	memset(sc, 0, sizeof *sc);
}

/* A cache of B sequences x cap positions. Its memory is kept between items and only
 * grows; B and cap are set per item, and the cache's layout [L,B,cap,C] follows them. */
static int kv_fit(struct lm_kv *kv, size_t *room, const struct lm_opt_config *c, size_t B,
                  size_t cap)
{
	size_t n;
	kv->L = (size_t)c->num_layers, kv->C = (size_t)c->hidden_size;
	if (lm_mul(kv->L * kv->C, B, &n) < 0 || lm_mul(n, cap, &n) < 0)
		return lm_preerr("KV cache");
	if (n > *room) {
		lm_free(kv->k), lm_free(kv->v);
		kv->k = lm_alloc(n * sizeof(float));
		kv->v = lm_alloc(n * sizeof(float));
		*room = kv->k && kv->v ? n : 0;
		if (!*room)
			return lm_seterr("KV cache: cannot allocate 2 x %zu floats", n);
	}
	kv->B = B, kv->cap = cap, kv->len = 0;
	return 0;
}

struct req {
	int32_t *seq;   /* BOS (or EOS), the context tokens kept, the continuation */
	size_t len, start;  /* tokens; index of the first continuation token */
};

/* request i's tokens: white space ending the context moves to the continuation, so that
 * the GPT-2 pre-tokenizer joins it to the next word as it does in running text */
/* the last context tokenized: an item's choices mostly share theirs */
struct ctx_cache {
	const char *s;
	int32_t *ids;
	size_t n;
};

static int tokenize_req(const struct lm_zs_scorer *sc, const char *ctx, const char *cont,
                        struct req *r, struct ctx_cache *cc)
{
	const struct lm_opt_config *c = &sc->m->cfg;
	size_t P = (size_t)c->max_positions, cl = strlen(ctx), sp = cl, no = 0;
	int32_t *oids = NULL;
	while (sp && isspace((unsigned char)ctx[sp - 1]))
		sp--;
	if (!cc->s || strcmp(cc->s, ctx)) {
		free(cc->ids);
		cc->s = NULL, cc->ids = NULL, cc->n = 0;
		if (sp && lm_tokenize(sc->tk, ctx, sp, &cc->ids, &cc->n) < 0)
			return -1;
		cc->s = ctx;
	}
	const int32_t *cids = cc->ids;
	size_t nc = cc->n;
	size_t ml = cl - sp + strlen(cont);
	char *full = xmalloc(ml + 1);
	memcpy(full, ctx + sp, cl - sp);
	memcpy(full + cl - sp, cont, strlen(cont) + 1);
	int e = lm_tokenize(sc->tk, full, ml, &oids, &no) < 0;
	free(full);
	if (e || no == 0 || no + 2 > P) {
		free(oids);
		return e ? -1 : no ? lm_seterr("continuation of %zu tokens (the model has %zu positions)", no, P)
		               : lm_seterr("empty continuation");
	}
	/* one token in front: BOS when asked; without, the harness puts EOS before an empty
	 * context so that the first continuation token has something to follow */
	size_t lead = sc->bos || nc == 0 ? 1 : 0;
	size_t keep = nc < P - lead - no ? nc : P - lead - no;
	r->len = lead + keep + no, r->start = lead + keep;
	r->seq = xmalloc(r->len * sizeof *r->seq);
	if (lead)
		r->seq[0] = sc->bos ? c->bos : c->eos;
	if (keep) /* an empty context has no token array at all */
		memcpy(r->seq + lead, cids + nc - keep, keep * sizeof *r->seq);
	memcpy(r->seq + r->start, oids, no * sizeof *r->seq);
	free(oids);
	return 0;
}

int lm_zs_score(struct lm_zs_scorer *sc, const char *const *ctx, const char *const *cont,
                size_t n, int greedy, struct lm_zs_ll *out)
{
	const struct lm_model *m = sc->m;
	const struct lm_opt_config *c = &m->cfg;
	const size_t C = (size_t)c->hidden_size, V = (size_t)c->vocab_size;
	struct req *rq = xcalloc(n, sizeof *rq);
	size_t p = SIZE_MAX, S = 0, R = 0;
	int r = -1;

	if (n == 0) {
		free(rq);
		return lm_seterr("no requests");
	}
	struct ctx_cache cc = {0};
	for (size_t i = 0; i < n; i++)
		if (tokenize_req(sc, ctx[i], cont[i], &rq[i], &cc) < 0) {
			free(cc.ids);
			lm_preerr("choice %zu", i + 1);
			goto out;
		}
	free(cc.ids);
	/* the shared prefix: common to all, and short of every first continuation token's
	 * predecessor (that row must run with its own request) */
	for (size_t i = 0; i < n; i++) {
		size_t k = 0, lim = rq[i].start - 1;
		while (k < lim && k < rq[0].len && rq[i].seq[k] == rq[0].seq[k])
			k++;
		p = k < p ? k : p;
	}
	for (size_t i = 0; i < n; i++)
		S = rq[i].len - p > S ? rq[i].len - p : S;
	if (lm_fwd_grow(&sc->s, c, &sc->sB, &sc->sT, n, p + S) < 0 ||
	    kv_fit(&sc->kv1, &sc->kv1_room, c, 1, p ? p : 1) < 0 ||
	    kv_fit(&sc->kvn, &sc->kvn_room, c, n, p + S) < 0)
		goto out;
	if (p) {
		if (lm_forward_decode(&sc->s, m, &sc->kv1, rq[0].seq, p, NULL) < 0)
			goto out;
		size_t one = p * C, per1 = sc->kv1.cap * C, pern = n * sc->kvn.cap * C;
		for (size_t l = 0; l < sc->kvn.L; l++)
			for (size_t b = 0; b < n; b++) {
				size_t d = l * pern + b * sc->kvn.cap * C;
				memcpy(sc->kvn.k + d, sc->kv1.k + l * per1, one * sizeof(float));
				memcpy(sc->kvn.v + d, sc->kv1.v + l * per1, one * sizeof(float));
			}
		sc->kvn.len = p;
	}
	if (n * S > sc->ids_cap) {
		sc->ids_cap = n * S;
		sc->ids = xrealloc(sc->ids, sc->ids_cap * sizeof *sc->ids);
		sc->tgt = xrealloc(sc->tgt, sc->ids_cap * sizeof *sc->tgt);
		sc->nll = xrealloc(sc->nll, sc->ids_cap * sizeof *sc->nll);
	}
	/* the suffixes, right-padded: a pad comes after every real token of its row, and
	 * attention is causal, so it changes none of them */
	for (size_t b = 0; b < n; b++)
		for (size_t t = 0; t < S; t++)
			sc->ids[b * S + t] = p + t < rq[b].len ? rq[b].seq[p + t] : c->pad;
	if (lm_decode_embed(&sc->s, m, &sc->kvn, sc->ids, S) < 0)
		goto out;
	for (int l = 0; l < c->num_layers; l++)
		if (lm_decode_layer(&sc->s, m, &sc->kvn, l, sc->s.x, S) < 0)
			goto out;
	/* rows that predict a continuation token, gathered for the final norm and head */
	for (size_t b = 0; b < n; b++)
		for (size_t t = 0; t < S; t++) {
			size_t nx = p + t + 1;
			if (nx >= rq[b].start && nx < rq[b].len) {
				memcpy(sc->s.att + R * C, sc->s.x + (b * S + t) * C, C * sizeof(float));
				sc->tgt[R++] = rq[b].seq[nx];
			}
		}
	if (greedy && R * V > sc->logits_cap) {
		lm_free(sc->logits);
		sc->logits_cap = 0;
		if (!(sc->logits = lm_alloc(R * V * sizeof(float))))
			goto out;
		sc->logits_cap = R * V;
	}
	if (lm_forward_final(&sc->s, m, sc->s.att, sc->s.out, R) < 0 ||
	    lm_forward_head(&sc->s, m, sc->s.out, sc->tgt, R, sc->nll, greedy ? sc->logits : NULL) < 0)
		goto out;
	R = 0;
	for (size_t b = 0; b < n; b++) {
		out[b].ll = 0, out[b].ntok = rq[b].len - rq[b].start, out[b].greedy = 1;
		for (size_t k = 0; k < out[b].ntok; k++, R++) {
			out[b].ll -= sc->nll[R];
			if (greedy && (int32_t)lm_argmax(sc->logits + R * V, V) != sc->tgt[R])
				out[b].greedy = 0;
		}
		sc->run_tokens += rq[b].len - p;
		sc->plain_tokens += rq[b].len;
		out[b].ids = NULL, out[b].nids = 0;
		if (sc->keep_ids) { /* for a peer that scores the very same tokens (bench/) */
			out[b].ids = rq[b].seq, out[b].nids = rq[b].len;
			rq[b].seq = NULL;
		}
	}
	sc->run_tokens += p;
	r = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(rq[i].seq);
	free(rq);
	return r;
}

/* embed.c: PromptEOL prompts, length-sorted left-padded batches, last-token or mean
 * pooling (see embed.h) */
#include "embed.h"
#include "forward.h"
#include "keyorder.h"
#include "util.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BATCH 16

static const char *tmpl_of(const struct lm_embed_cfg *c)
{
	return c->tmpl ? c->tmpl : LM_PROMPTEOL_TEMPLATE;
}

int lm_embed_cfg_check(const struct lm_embed_cfg *c)
{
	const char *t = tmpl_of(c), *slot = strstr(t, LM_EMBED_SLOT);
	if (!slot || strstr(slot + 1, LM_EMBED_SLOT))
		return lm_seterr("template '%s': needs exactly one %s", t, LM_EMBED_SLOT);
	if (c->demo) {
		const char *eq = strrchr(c->demo, '=');
		if (!eq || eq == c->demo || !eq[1])
			return lm_seterr("demonstration '%s': give it as SENTENCE=WORD", c->demo);
	}
	return 0;
}

/* bytes of the white-space character at s (n bytes left) as Python's str.split() sees it,
 * 0 if none: ASCII \t\n\v\f\r, 0x1c-0x1f and space, and in UTF-8 U+0085, U+00A0, U+1680,
 * U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 */
static size_t space_at(const unsigned char *s, size_t n)
{
	if (*s == ' ' || (*s >= '\t' && *s <= '\r') || (*s >= 0x1c && *s <= 0x1f))
		return 1;
	if (n >= 2 && s[0] == 0xc2 && (s[1] == 0x85 || s[1] == 0xa0))
		return 2;
	if (n < 3)
		return 0;
	if ((s[0] == 0xe1 && s[1] == 0x9a && s[2] == 0x80) ||
	    (s[0] == 0xe2 && s[1] == 0x80 && (s[2] <= 0x8a || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf) &&
	     s[2] >= 0x80) ||
	    (s[0] == 0xe2 && s[1] == 0x81 && s[2] == 0x9f) || (s[0] == 0xe3 && s[1] == 0x80 && s[2] == 0x80))
		return 3;
	return 0;
}

char *lm_collapse_space(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char *o = xmalloc(n + 1);
	size_t k = 0, w;
	int gap = 0;
	for (size_t i = 0; i < n; i += w ? w : 1) {
		w = space_at(u + i, n - i);
		if (w) {
			gap = k > 0;
			continue;
		}
		if (gap)
			o[k++] = ' ', gap = 0;
		o[k++] = s[i];
	}
	o[k] = 0;
	return o;
}

char *lm_prompteol_clean(const char *s, size_t n)
{
	char *o = xmalloc(n + 2);
	memcpy(o, s, n);
	if (n && !strchr(".?\"'", s[n - 1]))
		o[n++] = '.';
	o[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (o[i] == '"')
			o[i] = '\'';
	if (n && o[n - 1] == '?')
		o[n - 1] = '.';
	return o;
}

/* append template t with slot filled by s (len n) to buf at *len */
static void fill(char **buf, size_t *len, const char *t, const char *s, size_t n)
{
	const char *slot = strstr(t, LM_EMBED_SLOT);
	size_t a = (size_t)(slot - t), tail = strlen(slot + strlen(LM_EMBED_SLOT));
	*buf = xrealloc(*buf, *len + a + n + tail + 1);
	memcpy(*buf + *len, t, a);
	memcpy(*buf + *len + a, s, n);
	memcpy(*buf + *len + a + n, slot + strlen(LM_EMBED_SLOT), tail);
	*len += a + n + tail;
	(*buf)[*len] = 0;
}

/* the sentence as the reference prepares it: white space collapsed (unless verbatim), then
 * PromptEOL's clean-up */
static char *clean(const struct lm_embed_cfg *c, const char *s, size_t n)
{
	if (c->verbatim)
		return lm_prompteol_clean(s, n);
	char *w = lm_collapse_space(s, n), *o = lm_prompteol_clean(w, strlen(w));
	free(w);
	return o;
}

char *lm_prompteol_prompt(const struct lm_embed_cfg *c, const char *s, size_t n)
{
	const char *t = tmpl_of(c);
	char *p = NULL, *cs;
	size_t len = 0;

	if (lm_embed_cfg_check(c) < 0)
		return NULL;
	if (c->demo) {
		/* "This sentence : "<demo>" means in one word:"" + word + "". (no space after) */
		const char *eq = strrchr(c->demo, '=');
		cs = clean(c, c->demo, (size_t)(eq - c->demo));
		fill(&p, &len, t, cs, strlen(cs));
		free(cs);
		size_t w = strlen(eq + 1);
		p = xrealloc(p, len + w + 3);
		memcpy(p + len, eq + 1, w);
		memcpy(p + len + w, "\".", 3);
		len += w + 2;
	}
	cs = clean(c, s, n);
	fill(&p, &len, t, cs, strlen(cs));
	free(cs);
	/* str.strip() */
	size_t a = 0;
	while (a < len && isspace((unsigned char)p[a]))
		a++;
	while (len > a && isspace((unsigned char)p[len - 1]))
		len--;
	memmove(p, p + a, len - a);
	p[len - a] = 0;
	return p;
}

double lm_cosine(const float *a, const float *b, size_t d)
{
	double ab = 0, aa = 0, bb = 0;
	for (size_t i = 0; i < d; i++)
		ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
	return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

/* ---- batching ---- */

/* one batch: sequences order[0..nb) padded to T on the left, through the model; their
 * embeddings go to out rows order[b] */
static int run_batch(struct lm_fwd *s, const struct lm_model *m, const int32_t *const *ids,
                     const size_t *len, const size_t *order, size_t nb, size_t T, int avg,
                     int32_t *bid, size_t *pad, float *out)
{
	const struct lm_opt_config *c = &m->cfg;
	size_t C = (size_t)c->hidden_size, E = (size_t)c->word_embed_proj_dim;

	for (size_t b = 0; b < nb; b++) {
		size_t i = order[b];
		pad[b] = T - len[i];
		for (size_t t = 0; t < pad[b]; t++)
			bid[b * T + t] = c->pad;
		memcpy(bid + b * T + pad[b], ids[i], len[i] * sizeof *bid);
	}
	if (lm_forward_embed_padded(s, m, bid, pad, nb, T) < 0)
		return -1;
	for (int l = 0; l < c->num_layers; l++)
		if (lm_forward_layer(s, &m->layers[l], l, s->x, nb, T) < 0)
			return -1;
	if (avg) {
		/* every row through the final LayerNorm, then the mean over the real rows */
		if (lm_forward_final(s, m, s->x, s->out, nb * T) < 0)
			return -1;
		for (size_t b = 0; b < nb; b++) {
			float *o = out + order[b] * E;
			for (size_t e = 0; e < E; e++) {
				double sum = 0;
				for (size_t t = pad[b]; t < T; t++)
					sum += s->out[(b * T + t) * E + e];
				o[e] = (float)(sum / (double)(T - pad[b]));
			}
		}
		return 0;
	}
	/* only the last column goes through the final LayerNorm / project_out */
	for (size_t b = 0; b < nb; b++)
		memcpy(s->att + b * C, s->x + (b * T + T - 1) * C, C * sizeof *s->att);
	if (lm_forward_final(s, m, s->att, s->out, nb) < 0)
		return -1;
	for (size_t b = 0; b < nb; b++)
		memcpy(out + order[b] * E, s->out + b * E, E * sizeof *out);
	return 0;
}

int lm_embed_ids(const struct lm_model *m, const int32_t *const *ids, const size_t *len, size_t n,
                 int avg, size_t batch, float *out, lm_embed_progress *pr, void *ctx)
{
	size_t B = batch ? batch : DEFAULT_BATCH, Tmax = 0;
	size_t *order, *pad;
	int32_t *bid;
	struct lm_fwd s;
	int r = -1;

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (len[i] == 0)
			return lm_seterr("text %zu: no tokens", i + 1);
		if (len[i] > (size_t)m->cfg.max_positions)
			return lm_seterr("text %zu: %zu tokens exceed the model's %lld positions", i + 1,
			                 len[i], (long long)m->cfg.max_positions);
		if (len[i] > Tmax)
			Tmax = len[i];
	}
	if (B > n)
		B = n;
	/* by length, equal lengths in input order */
	double *key = xmalloc(n * sizeof *key);
	for (size_t i = 0; i < n; i++)
		key[i] = (double)len[i];
	order = xmalloc(n * sizeof *order);
	lm_key_order(key, NULL, n, order);
	free(key);
	if (lm_fwd_init(&s, &m->cfg, B, Tmax) < 0) {
		free(order);
		return -1;
	}
	bid = xmalloc(B * Tmax * sizeof *bid);
	pad = xmalloc(B * sizeof *pad);
	for (size_t i0 = 0; i0 < n; i0 += B) {
		size_t nb = n - i0 < B ? n - i0 : B;
		/* sorted: the batch's last sequence is its longest */
		if (run_batch(&s, m, ids, len, order + i0, nb, len[order[i0 + nb - 1]], avg, bid, pad,
		              out) < 0)
			goto done;
		if (pr)
			pr(ctx, i0 + nb, n);
	}
	r = 0;
done:
	free(bid);
	free(pad);
	free(order);
	lm_fwd_free(&s);
	return r;
}

int lm_embed_texts(const struct lm_model *m, const struct lm_tokenizer *tk,
                   const struct lm_embed_cfg *c, const char *const *texts, size_t n, float *out,
                   lm_embed_progress *pr, void *ctx)
{
	int32_t **ids = xcalloc(n ? n : 1, sizeof *ids);
	size_t *len = xcalloc(n ? n : 1, sizeof *len);
	int r = -1;

	for (size_t i = 0; i < n; i++) {
		char *p = lm_prompteol_prompt(c, texts[i], strlen(texts[i]));
		int32_t *body;
		size_t nb;
		if (!p)
			goto done;
		if (lm_tokenize(tk, p, strlen(p), &body, &nb) < 0) {
			free(p);
			lm_preerr("text %zu", i + 1);
			goto done;
		}
		free(p);
		ids[i] = xmalloc((nb + 1) * sizeof **ids);
		ids[i][0] = m->cfg.bos;
		memcpy(ids[i] + 1, body, nb * sizeof *body);
		len[i] = nb + 1;
		free(body);
	}
	r = lm_embed_ids(m, (const int32_t *const *)ids, len, n, c->avg, c->batch, out, pr, ctx);
done:
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
	free(len);
	return r;
}

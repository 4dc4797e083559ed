/* contrastive_train.c: examples, their prompts, and one contrastive step (see
 * contrastive_train.h) */
#include "contrastive_train.h"
#include "contrastive.h"
#include "textlines.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* one line of lm_ctr_load's file: an example, or skipped when blank */
static int ctr_line(void *ctx, char *s, size_t l, size_t lineno)
{
	struct lm_ctr_data *d = ctx;
	char *f[4] = {s};
	size_t nf = 1;
	if (lm_line_blank(s, l))
		return 0;
	if (!d->unsup) {
		for (char *t = s; (t = strchr(t, '\t')) && nf < 4; t++)
			*t = 0, f[nf++] = t + 1;
		if (nf < 2 || nf > 3)
			return lm_seterr("line %zu: a supervised example is SENTENCE<TAB>POSITIVE[<TAB>HARD "
			                 "NEGATIVE] (%s)", lineno, nf < 2 ? "no tab" : "more than three fields");
		for (size_t i = 0; i < nf; i++)
			if (lm_line_blank(f[i], strlen(f[i])))
				return lm_seterr("line %zu: field %zu is empty", lineno, i + 1);
	}
	d->a[d->n] = f[0];
	d->p[d->n] = d->unsup ? f[0] : f[1];
	d->h[d->n] = nf == 3 ? f[2] : NULL;
	d->nhard += nf == 3;
	d->n++;
	return 1;
}

int lm_ctr_load(struct lm_ctr_data *d, const char *path, int unsup)
{
	size_t len, cap;
	memset(d, 0, sizeof *d);
	d->unsup = unsup;
	if (!(d->text = lm_read_file(path, (size_t)1 << 31, &len)))
		return -1;
	if (memchr(d->text, 0, len)) {
		lm_seterr("a NUL byte in a text file");
		goto fail;
	}
	cap = len / 2 + 2;
	d->H = 1;
	d->a = xmalloc(cap * sizeof *d->a), d->p = xmalloc(cap * sizeof *d->p);
	d->h = xmalloc(cap * sizeof *d->h);
	if (lm_text_lines(d->text, len, "examples", ctr_line, d) == 0)
		return 0;
fail:
	lm_ctr_data_free(d);
	return -1;
}

void lm_ctr_data_free(struct lm_ctr_data *d)
{
	free(d->a), free(d->p), free(d->h), free(d->text);
	memset(d, 0, sizeof *d);
}

/* a copy of s at *at in text (NULL stays NULL) */
static const char *copy_in(char *text, size_t *at, const char *s)
{
	if (!s)
		return NULL;
	size_t l = strlen(s) + 1;
	memcpy(text + *at, s, l);
	*at += l;
	return text + *at - l;
}

void lm_ctr_data_set(struct lm_ctr_data *d, const char *const *a, const char *const *p,
                     const char *const *h, size_t H, size_t n)
{
	size_t len = 0, at = 0;
	memset(d, 0, sizeof *d);
	d->unsup = !p;
	d->H = H ? H : 1;
	for (size_t i = 0; i < n; i++) {
		len += strlen(a[i]) + 1 + (p ? strlen(p[i]) + 1 : 0);
		for (size_t j = 0; h && j < H; j++)
			len += h[i * H + j] ? strlen(h[i * H + j]) + 1 : 0;
	}
	d->text = xmalloc(len ? len : 1);
	d->a = xmalloc((n ? n : 1) * sizeof *d->a), d->p = xmalloc((n ? n : 1) * sizeof *d->p);
	d->h = xcalloc((n ? n : 1) * d->H, sizeof *d->h);
	for (size_t i = 0; i < n; i++) {
		d->a[i] = copy_in(d->text, &at, a[i]);
		d->p[i] = p ? copy_in(d->text, &at, p[i]) : d->a[i];
		for (size_t j = 0; h && j < H; j++)
			if ((d->h[i * d->H + j] = copy_in(d->text, &at, h[i * H + j])))
				d->nhard++;
	}
	d->n = n;
}

/* BOS + the prompt's ids, as lm_embed_texts makes them */
static int prompt_ids(const struct lm_tokenizer *tk, const struct lm_embed_cfg *ec, int32_t bos,
                      const char *s, int32_t **ids, size_t *len)
{
	char *p = lm_prompteol_prompt(ec, s, strlen(s));
	int32_t *body;
	size_t nb;
	if (!p)
		return -1;
	if (lm_tokenize(tk, p, strlen(p), &body, &nb) < 0) {
		free(p);
		return -1;
	}
	free(p);
	*ids = xmalloc((nb + 1) * sizeof **ids);
	(*ids)[0] = bos;
	memcpy(*ids + 1, body, nb * sizeof *body);
	*len = nb + 1;
	free(body);
	return 0;
}

int lm_ctr_init(struct lm_ctr *c, const struct lm_ctr_data *d, const struct lm_opt_config *cfg,
                const struct lm_tokenizer *tk, const struct lm_embed_cfg *ec, size_t pairs,
                double tau, int symmetric)
{
	memset(c, 0, sizeof *c);
	c->d = d, c->pairs = pairs, c->tau = tau, c->symmetric = symmetric;
	c->E = (size_t)cfg->word_embed_proj_dim, c->pad = (int32_t)cfg->pad;
	c->S = 2 + d->H;
	c->ids = xcalloc(c->S * d->n, sizeof *c->ids), c->len = xcalloc(c->S * d->n, sizeof *c->len);
	c->T = 2;
	for (size_t i = 0; i < d->n; i++) {
		for (size_t j = 0; j < c->S; j++) {
			const char *f = j == 0 ? d->a[i] : j == 1 ? d->p[i] : d->h[i * d->H + j - 2];
			size_t k = c->S * i + j;
			if (!f || (j == 1 && f == d->a[i]))
				continue;
			if (prompt_ids(tk, ec, (int32_t)cfg->bos, f, &c->ids[k], &c->len[k]) < 0)
				return lm_preerr("example %zu", i + 1);
			if (c->len[k] > (size_t)cfg->max_positions)
				return lm_seterr("example %zu: a prompt of %zu tokens exceeds the model's %lld "
				                 "positions", i + 1, c->len[k], (long long)cfg->max_positions);
			if (c->len[k] > c->T)
				c->T = c->len[k];
		}
		if (d->p[i] == d->a[i]) /* unsupervised: the same ids twice */
			c->ids[c->S * i + 1] = c->ids[c->S * i], c->len[c->S * i + 1] = c->len[c->S * i];
	}
	c->maxseq = 2 * pairs + (d->nhard < pairs * d->H ? d->nhard : pairs * d->H);
	c->batch = xmalloc(c->maxseq * c->T * sizeof *c->batch);
	c->last = xmalloc(c->maxseq * sizeof *c->last), c->pos = xmalloc(pairs * sizeof *c->pos);
	c->src = xmalloc(c->maxseq * sizeof *c->src);
	c->z = xmalloc(c->maxseq * c->E * sizeof *c->z);
	c->dz = xmalloc(c->maxseq * c->E * sizeof *c->dz);
	c->mask = xmalloc(pairs * c->maxseq);
	return 0;
}

void lm_ctr_free(struct lm_ctr *c)
{
	if (c->ids)
		for (size_t i = 0; i < c->d->n; i++)
			for (size_t j = 0; j < c->S; j++)
				if (j != 1 || c->ids[c->S * i + 1] != c->ids[c->S * i])
					free(c->ids[c->S * i + j]);
	free(c->ids), free(c->len), free(c->batch), free(c->last), free(c->pos), free(c->src);
	free(c->z), free(c->dz), free(c->mask);
	memset(c, 0, sizeof *c);
}

static const char *text_of(const struct lm_ctr *c, size_t k)
{
	size_t i = k / c->S, j = k % c->S;
	return j == 0 ? c->d->a[i] : j == 1 ? c->d->p[i] : c->d->h[i * c->d->H + j - 2];
}

int lm_ctr_step(struct lm_ctr *c, struct lm_train *tr, const size_t *rows, size_t n,
                double *loss)
{
	size_t ns = 0, T = 2, E = c->E;
	if (n == 0 || n > c->pairs)
		return lm_seterr("internal: %zu examples in a step of at most %zu", n, c->pairs);
	/* the sequences: queries, their positives, the hard negatives there are */
	for (size_t b = 0; b < n; b++)
		c->src[ns++] = c->S * rows[b];
	for (size_t b = 0; b < n; b++)
		c->src[ns++] = c->S * rows[b] + 1;
	for (size_t b = 0; b < n; b++)
		for (size_t j = 2; j < c->S; j++)
			if (c->len[c->S * rows[b] + j])
				c->src[ns++] = c->S * rows[b] + j;
	for (size_t s = 0; s < ns; s++)
		if (c->len[c->src[s]] > T)
			T = c->len[c->src[s]];
	c->tokens = 0;
	for (size_t s = 0; s < ns; s++) {
		size_t l = c->len[c->src[s]];
		c->tokens += l;
		int32_t *row = c->batch + s * T;
		memcpy(row, c->ids[c->src[s]], l * sizeof *row);
		for (size_t t = l; t < T; t++)
			row[t] = c->pad;
		c->last[s] = l - 1;
	}
	if (lm_train_embed_forward(tr, c->batch, ns, T, c->last, 1, c->z) < 0)
		return -1;
	/* candidates are sequences n..ns; query b's positive is candidate b */
	size_t K = ns - n;
	for (size_t b = 0; b < n; b++) {
		const char *qa = text_of(c, c->src[b]), *qp = text_of(c, c->src[n + b]);
		c->pos[b] = b;
		for (size_t j = 0; j < K; j++) {
			const char *t = text_of(c, c->src[n + j]);
			c->mask[b * K + j] = j == b || (strcmp(t, qa) && strcmp(t, qp));
		}
	}
	*loss = lm_contrastive_loss(c->z, n, c->z + n * E, K, E, c->pos, c->mask, c->tau,
	                            c->symmetric, c->dz, c->dz + n * E);
	return lm_train_embed_backward(tr, c->dz, ns, T, c->last);
}

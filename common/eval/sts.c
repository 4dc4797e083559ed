/* sts.c: STS-B / SICK files and Spearman's rho (see sts.h) */
#include "sts.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE ((size_t)1 << 30)
#define MAX_FIELDS 16

/* cut line (NUL-terminated, modified) at tabs; returns the number of fields */
static size_t split_tabs(char *line, char **f, size_t max)
{
	size_t n = 0;
	f[n++] = line;
	for (char *p = line; *p && n < max; p++)
		if (*p == '\t') {
			*p = 0;
			f[n++] = p + 1;
		}
	return n;
}

static int parse_score(const char *s, size_t line, double *v)
{
	char *end;
	errno = 0;
	*v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(*v))
		return lm_seterr("line %zu: score '%s' is not a number", line, s);
	return 0;
}

int lm_sts_load(struct lm_sts *s, const char *path)
{
	size_t len, cap = 0, lineno = 0;
	char *f[MAX_FIELDS];
	memset(s, 0, sizeof *s);
	if (!(s->text = lm_read_text(path, MAX_FILE, &len)))
		return -1;
	int sick = !strncmp(s->text, "pair_ID\t", 8);
	s->layout = sick ? "sick" : "sts-b";
	for (char *p = s->text, *next; p < s->text + len; p = next) {
		char *nl = memchr(p, '\n', (size_t)(s->text + len - p));
		next = nl ? nl + 1 : s->text + len;
		if (nl)
			*nl = 0;
		lineno++;
		size_t l = strlen(p);
		if (l && p[l - 1] == '\r')
			p[--l] = 0;
		if (!l || (sick && lineno == 1))
			continue;
		size_t nf = split_tabs(p, f, MAX_FIELDS);
		if (s->n == cap) {
			cap = cap ? 2 * cap : 1024;
			s->p = xrealloc(s->p, cap * sizeof *s->p);
		}
		struct lm_sts_pair *q = &s->p[s->n];
		q->line = lineno;
		if (sick) {
			if (nf < 4) {
				lm_seterr("line %zu: %zu fields, the SICK layout needs at least 4 (sentences in "
				          "2 and 3, score in 4)", lineno, nf);
				goto fail;
			}
			q->a = f[1], q->b = f[2], q->label = nf > 4 ? f[4] : NULL;
			if (parse_score(f[3], lineno, &q->gold) < 0)
				goto fail;
		} else {
			if (nf < 7) {
				lm_seterr("line %zu: %zu fields, the STS-B layout needs at least 7 (score in 5, "
				          "sentences in 6 and 7)", lineno, nf);
				goto fail;
			}
			q->a = f[5], q->b = f[6], q->label = NULL;
			if (parse_score(f[4], lineno, &q->gold) < 0)
				goto fail;
		}
		s->n++;
	}
	if (s->n == 0) {
		lm_seterr("no sentence pairs");
		goto fail;
	}
	return 0;
fail:
	lm_sts_free(s);
	return -1;
}

void lm_sts_free(struct lm_sts *s)
{
	free(s->text);
	free(s->p);
	memset(s, 0, sizeof *s);
}

double lm_pearson(const double *x, const double *y, size_t n)
{
	double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		mx += x[i], my += y[i];
	mx /= (double)n, my /= (double)n;
	for (size_t i = 0; i < n; i++) {
		double dx = x[i] - mx, dy = y[i] - my;
		sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
	}
	return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0.0;
}

struct val_idx {
	double v;
	size_t i;
};

static int by_val(const void *a, const void *b)
{
	const struct val_idx *x = a, *y = b;
	if (x->v != y->v)
		return x->v < y->v ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* 1-based ranks, ties averaged */
static void ranks(const double *x, size_t n, double *r)
{
	struct val_idx *s = xmalloc((n ? n : 1) * sizeof *s);
	for (size_t i = 0; i < n; i++)
		s[i].v = x[i], s[i].i = i;
	qsort(s, n, sizeof *s, by_val);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && s[j + 1].v == s[i].v)
			j++;
		double avg = 0.5 * (double)(i + j) + 1.0;
		for (size_t k = i; k <= j; k++)
			r[s[k].i] = avg;
		i = j + 1;
	}
	free(s);
}

double lm_spearman(const double *x, const double *y, size_t n)
{
	double *rx = xmalloc((n ? n : 1) * sizeof *rx), *ry = xmalloc((n ? n : 1) * sizeof *ry);
	ranks(x, n, rx);
	ranks(y, n, ry);
	double r = lm_pearson(rx, ry, n);
	free(rx);
	free(ry);
	return r;
}

/* -1 + error when x [n] has fewer than 2 distinct values: a rank correlation with it is
 * 0/0, and printing 0.00 would pass for a real (and bad) result */
static int varies(const double *x, size_t n, const char *what)
{
	if (n < 2)
		return lm_seterr("Spearman's rho is undefined for %zu sentence pair%s (it needs 2 or "
		                 "more)", n, n == 1 ? "" : "s");
	for (size_t i = 1; i < n; i++)
		if (x[i] != x[0])
			return 0;
	return lm_seterr("Spearman's rho is undefined: %s %g for every pair", what, x[0]);
}

int lm_sts_eval(const struct lm_model *m, const struct lm_tokenizer *tk,
                const struct lm_embed_cfg *c, const struct lm_sts *s, double *spearman,
                double *pearson, lm_embed_progress *pr, void *ctx)
{
	size_t n = s->n, E = (size_t)m->cfg.word_embed_proj_dim, bytes;
	const char **texts = xmalloc(2 * n * sizeof *texts);
	double *gold = xmalloc(n * sizeof *gold), *pred = xmalloc(n * sizeof *pred);
	float *emb = NULL;
	int r = -1;

	for (size_t i = 0; i < n; i++)
		texts[i] = s->p[i].a, texts[n + i] = s->p[i].b, gold[i] = s->p[i].gold;
	/* checked before the embedding work, which would be wasted */
	if (varies(gold, n, "the gold score is") < 0)
		goto out;
	if (lm_mul(2 * n, E * sizeof *emb, &bytes) < 0 || !(emb = lm_alloc(bytes)))
		goto out;
	if (lm_embed_texts(m, tk, c, texts, 2 * n, emb, pr, ctx) < 0) {
		/* the text number is one of 2n: name the file's line instead */
		char msg[512];
		const char *why;
		size_t t;
		snprintf(msg, sizeof msg, "%s", lm_errmsg());
		if (sscanf(msg, "text %zu", &t) == 1 && t >= 1 && t <= 2 * n && (why = strstr(msg, ": ")))
			lm_seterr("line %zu: %s", s->p[(t - 1) % n].line, why + 2);
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		pred[i] = lm_cosine(emb + i * E, emb + (n + i) * E, E);
	if (varies(pred, n, "the cosine is") < 0)
		goto out;
	*spearman = lm_spearman(pred, gold, n);
	*pearson = lm_pearson(pred, gold, n);
	r = 0;
out:
	lm_free(emb);
	free(texts);
	free(gold);
	free(pred);
	return r;
}

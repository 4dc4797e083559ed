/* sts.c: STS-B / SICK files and Spearman's rho (see sts.h) */
#include "sts.h"
#include "keyorder.h"
#include "textlines.h"
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

/* lm_sts_load's state while it goes through the file's lines */
struct sts_reader {
	struct lm_sts *s;
	size_t cap;
	int sick;
};

/* one line: a pair, or skipped (blank, SICK's header) */
static int sts_line(void *ctx, char *p, size_t l, size_t lineno)
{
	struct sts_reader *rd = ctx;
	struct lm_sts *s = rd->s;
	char *f[MAX_FIELDS];
	if (!l || (rd->sick && lineno == 1))
		return 0;
	size_t nf = split_tabs(p, f, MAX_FIELDS);
	if (s->n == rd->cap) {
		rd->cap = rd->cap ? 2 * rd->cap : 1024;
		s->p = xrealloc(s->p, rd->cap * sizeof *s->p);
	}
	struct lm_sts_pair *q = &s->p[s->n];
	q->line = lineno;
	if (rd->sick) {
		if (nf < 4)
			return lm_seterr("line %zu: %zu fields, the SICK layout needs at least 4 (sentences "
			                 "in 2 and 3, score in 4)", lineno, nf);
		q->a = f[1], q->b = f[2], q->label = nf > 4 ? f[4] : NULL;
		if (parse_score(f[3], lineno, &q->gold) < 0)
			return -1;
	} else {
		if (nf < 7)
			return lm_seterr("line %zu: %zu fields, the STS-B layout needs at least 7 (score in "
			                 "5, sentences in 6 and 7)", lineno, nf);
		q->a = f[5], q->b = f[6], q->label = NULL;
		if (parse_score(f[4], lineno, &q->gold) < 0)
			return -1;
	}
	s->n++;
	return 1;
}

int lm_sts_load(struct lm_sts *s, const char *path)
{
	size_t len;
	memset(s, 0, sizeof *s);
	if (!(s->text = lm_read_text(path, MAX_FILE, &len)))
		return -1;
	struct sts_reader rd = {s, 0, !strncmp(s->text, "pair_ID\t", 8)};
	s->layout = rd.sick ? "sick" : "sts-b";
	if (lm_text_lines(s->text, len, "sentence pairs", sts_line, &rd) == 0)
		return 0;
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

/* 1-based ranks, ties averaged */
static void ranks(const double *x, size_t n, double *r)
{
	size_t *o = xmalloc((n ? n : 1) * sizeof *o);
	lm_key_order(x, NULL, n, o);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && x[o[j + 1]] == x[o[i]])
			j++;
		double avg = 0.5 * (double)(i + j) + 1.0;
		for (size_t k = i; k <= j; k++)
			r[o[k]] = avg;
		i = j + 1;
	}
	free(o);
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

/* -1 + error when x [n] has fewer than 2 distinct values (within tol, relative): a rank
 * correlation with it is 0/0, and printing 0.00 would pass for a real (and bad) result.
 * Cosines take a tolerance: the same sentence pair at two places of a batch may get
 * embeddings that differ in the last bits (BLAS kernels treat rows unevenly), and ranking
 * those bits is no correlation either. */
static int varies(const double *x, size_t n, const char *what, double tol)
{
	if (n < 2)
		return lm_seterr("Spearman's rho is undefined for %zu sentence pair%s (it needs 2 or "
		                 "more)", n, n == 1 ? "" : "s");
	for (size_t i = 1; i < n; i++)
		if (fabs(x[i] - x[0]) > tol * fabs(x[0]))
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
	if (varies(gold, n, "the gold score is", 0.0) < 0)
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
	if (varies(pred, n, "the cosine is", 1e-6) < 0)
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

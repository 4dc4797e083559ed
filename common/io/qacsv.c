/* qacsv.c: question/answer sets from a CSV file, and windows of a text (see qacsv.h) */
#include "qacsv.h"
#include "csv.h"
#include "util.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char *const qnames[] = {"question", "goal", "prompt", "instruction", NULL};
static const char *const anames[] = {"answer", "best answer", "target", "response", "output", NULL};

static long find_column(const struct lm_csv *c, const char *given, const char *const *usual,
                        const char *what)
{
	long k = -1;
	if (given) {
		if ((k = lm_csv_column(c, given)) < 0)
			lm_seterr("no column '%s' in the header", given);
		return k;
	}
	for (size_t i = 0; usual[i] && k < 0; i++)
		k = lm_csv_column(c, usual[i]);
	if (k < 0) {
		char cols[256] = "";
		size_t used = 0;
		for (size_t f = 0; f < lm_csv_nfields(c, 0) && used < sizeof cols; f++)
			used += (size_t)snprintf(cols + used, sizeof cols - used, "%s%s", f ? ", " : "",
			                         lm_csv_get(c, 0, f));
		lm_seterr("no %s column among %s (name it)", what, cols);
	}
	return k;
}

static int blank(const char *s)
{
	for (; s && *s; s++)
		if (!isspace((unsigned char)*s))
			return 0;
	return 1;
}

/* s with leading/trailing white space dropped and inner runs made one space */
static char *collapse(const char *s)
{
	char *o = xmalloc(strlen(s) + 1), *w = o;
	int sp = 0;
	for (; *s; s++) {
		if (isspace((unsigned char)*s)) {
			sp = w > o;
			continue;
		}
		if (sp)
			*w++ = ' ';
		sp = 0;
		*w++ = *s;
	}
	*w = 0;
	return o;
}

static int tokenize(const struct lm_tokenizer *tk, const char *text, int32_t **ids, size_t *n)
{
	return lm_tokenize(tk, text, strlen(text), ids, n);
}

/* one row's sequence: BOS, the prompt's ids, the answer's ids cut at maxlen */
static int qa_item(struct lm_ul_set *s, const struct lm_tokenizer *tk, int bos, size_t maxlen,
                   const char *q, const char *a, size_t line)
{
	char *qc = collapse(q), *ac = collapse(a);
	size_t pl = strlen(qc) + 32, np, na;
	char *prompt = xmalloc(pl), *ans = xmalloc(strlen(ac) + 2);
	int32_t *pid = NULL, *aid = NULL;
	int r = -1;
	snprintf(prompt, pl, "### Question: %s\n ### Answer:", qc);
	snprintf(ans, strlen(ac) + 2, " %s", ac);
	if (tokenize(tk, prompt, &pid, &np) < 0 || tokenize(tk, ans, &aid, &na) < 0)
		goto out;
	if (1 + np >= maxlen) {
		lm_seterr("line %zu: the prompt takes %zu tokens: no room for the answer in %zu", line,
		          1 + np, maxlen);
		goto out;
	}
	struct lm_ul_item *it = &s->it[s->n];
	it->from = 1 + np;
	it->len = it->from + na;
	if (it->len > maxlen)
		it->len = maxlen, s->truncated++;
	it->ids = xmalloc(it->len * sizeof *it->ids);
	it->ids[0] = bos;
	memcpy(it->ids + 1, pid, np * sizeof *pid);
	memcpy(it->ids + it->from, aid, (it->len - it->from) * sizeof *aid);
	it->line = line;
	s->key[s->n++] = qc, qc = NULL;
	r = 0;
out:
	free(qc), free(ac), free(prompt), free(ans), free(pid), free(aid);
	return r;
}

int lm_ul_load_qa(struct lm_ul_set *s, const char *path, const char *qcol, const char *acol,
                  const struct lm_tokenizer *tk, int bos, size_t maxlen, int skip_incomplete)
{
	struct lm_csv c;
	long qc, ac;
	memset(s, 0, sizeof *s);
	s->qa = 1;
	if (lm_csv_load(&c, path) < 0)
		return -1;
	if (c.nrec < 2) {
		lm_csv_free(&c);
		return lm_seterr("no rows after the header");
	}
	if ((qc = find_column(&c, qcol, qnames, "question")) < 0 ||
	    (ac = find_column(&c, acol, anames, "answer")) < 0) {
		lm_csv_free(&c);
		return -1;
	}
	s->it = xcalloc(c.nrec, sizeof *s->it);
	s->key = xcalloc(c.nrec, sizeof *s->key);
	for (size_t r = 1; r < c.nrec; r++) {
		const char *q = lm_csv_get(&c, r, (size_t)qc), *a = lm_csv_get(&c, r, (size_t)ac);
		if (blank(q) || blank(a)) {
			if (skip_incomplete) {
				s->skipped++;
				continue;
			}
			lm_seterr("line %zu: no %s (column '%s')", c.line[r], blank(q) ? "question" : "answer",
			          lm_csv_get(&c, 0, (size_t)(blank(q) ? qc : ac)));
			goto fail;
		}
		if (qa_item(s, tk, bos, maxlen, q, a, c.line[r]) < 0)
			goto fail;
	}
	lm_csv_free(&c);
	if (s->n == 0) {
		lm_ul_set_free(s);
		return lm_seterr("no row has both a question and an answer");
	}
	return 0;
fail:
	lm_csv_free(&c);
	lm_ul_set_free(s);
	return -1;
}

int lm_ul_load_text(struct lm_ul_set *s, const int32_t *ids, size_t n, size_t T)
{
	memset(s, 0, sizeof *s);
	if (n < 2 || T < 2)
		return lm_seterr("%zu tokens: too few to score", n);
	size_t W = n / T;
	if (W == 0)
		W = 1, T = n;
	s->it = xcalloc(W, sizeof *s->it);
	for (size_t w = 0; w < W; w++) {
		struct lm_ul_item *it = &s->it[s->n++];
		it->ids = xmalloc(T * sizeof *it->ids);
		memcpy(it->ids, ids + w * T, T * sizeof *it->ids);
		it->len = T, it->from = 1, it->line = w;
	}
	return 0;
}

void lm_ul_set_free(struct lm_ul_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->it[i].ids);
		if (s->key)
			free(s->key[i]);
	}
	free(s->it), free(s->key);
	memset(s, 0, sizeof *s);
}

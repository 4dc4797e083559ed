/* textmetrics.c: see textmetrics.h */
#include "textmetrics.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int lm_exact_match(const int32_t *hyp, size_t nh, const int32_t *ref, size_t nr)
{
	return nh == nr && (nh == 0 || !memcmp(hyp, ref, nh * sizeof *hyp));
}

size_t lm_lcs(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
	if (na < nb) { /* the row spans the shorter sequence */
		const int32_t *t = a;
		size_t tn = na;
		a = b, na = nb, b = t, nb = tn;
	}
	size_t *prev = xcalloc(nb + 1, sizeof *prev), *cur = xcalloc(nb + 1, sizeof *cur);
	for (size_t i = 0; i < na; i++) {
		for (size_t j = 0; j < nb; j++)
			cur[j + 1] = a[i] == b[j] ? prev[j] + 1 : prev[j + 1] > cur[j] ? prev[j + 1] : cur[j];
		size_t *t = prev;
		prev = cur, cur = t;
	}
	size_t r = prev[nb];
	free(prev), free(cur);
	return r;
}

double lm_rouge_l(const int32_t *hyp, size_t nh, const int32_t *ref, size_t nr)
{
	if (nh == 0 || nr == 0)
		return nh == nr ? 1.0 : 0.0;
	double l = (double)lm_lcs(hyp, nh, ref, nr);
	if (l == 0)
		return 0.0;
	double p = l / (double)nh, r = l / (double)nr;
	return 2 * p * r / (p + r);
}

/* ---- chrF ---- */

/* what Python's str.split() splits on: sacreBLEU removes exactly these */
static int is_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

/* UTF-8 to code points without whitespace; a byte that starts no valid sequence is one
 * character of its own (0x110000 + byte, so it equals only the same invalid byte) */
static uint32_t *code_points(const char *s, size_t len, size_t *n)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t *cp = xmalloc((len + 1) * sizeof *cp);
	size_t k = 0;
	for (size_t i = 0; i < len;) {
		uint32_t c = u[i], v = c;
		size_t need = 0;
		int ok = 1;
		if (c >= 0x80) {
			if ((c & 0xe0) == 0xc0)
				need = 1, v = c & 0x1f;
			else if ((c & 0xf0) == 0xe0)
				need = 2, v = c & 0x0f;
			else if ((c & 0xf8) == 0xf0)
				need = 3, v = c & 0x07;
			else
				ok = 0;
			ok = ok && i + need < len;
			for (size_t j = 1; ok && j <= need; j++) {
				if ((u[i + j] & 0xc0) != 0x80)
					ok = 0;
				else
					v = (v << 6) | (u[i + j] & 0x3f);
			}
			/* overlong forms, surrogates and values past U+10FFFF are not characters */
			if (ok && ((need == 1 && v < 0x80) || (need == 2 && (v < 0x800 || (v >= 0xd800 && v < 0xe000))) ||
			           (need == 3 && (v < 0x10000 || v > 0x10ffff))))
				ok = 0;
			if (!ok)
				v = 0x110000u + c, need = 0;
		}
		i += need + 1;
		if (!is_space(v))
			cp[k++] = v;
	}
	*n = k;
	return cp;
}

struct gram {
	const uint32_t *p;
	int n;    /* the order (qsort's comparator has no context argument) */
	int side; /* 0 hypothesis, 1 reference */
};

static int gram_cmp(const void *a, const void *b)
{
	const uint32_t *x = ((const struct gram *)a)->p, *y = ((const struct gram *)b)->p;
	for (int i = 0; i < ((const struct gram *)a)->n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

/* matches of order n: sum over distinct n-grams of min(count in hyp, count in ref) */
static size_t ngram_matches(const uint32_t *h, size_t nh, const uint32_t *r, size_t nr, int n,
                            struct gram *g)
{
	size_t k = 0, match = 0;
	for (size_t i = 0; i + (size_t)n <= nh; i++)
		g[k++] = (struct gram){h + i, n, 0};
	for (size_t i = 0; i + (size_t)n <= nr; i++)
		g[k++] = (struct gram){r + i, n, 1};
	qsort(g, k, sizeof *g, gram_cmp);
	for (size_t i = 0; i < k;) {
		size_t j = i, c[2] = {0, 0};
		while (j < k && gram_cmp(&g[i], &g[j]) == 0)
			c[g[j++].side]++;
		match += c[0] < c[1] ? c[0] : c[1];
		i = j;
	}
	return match;
}

double lm_chrf(const char *hyp, size_t hl, const char *ref, size_t rl, int nmax, double beta)
{
	size_t nh, nr;
	uint32_t *h = code_points(hyp, hl, &nh), *r = code_points(ref, rl, &nr);
	struct gram *g = xmalloc((nh + nr + 1) * sizeof *g);
	double ap = 0, ar = 0, f2 = beta * beta;
	int eff = 0;
	for (int n = 1; n <= nmax; n++) {
		size_t gh = nh >= (size_t)n ? nh - (size_t)n + 1 : 0;
		size_t gr = nr >= (size_t)n ? nr - (size_t)n + 1 : 0;
		if (!gh || !gr)
			continue; /* an order one side lacks does not count (sacreBLEU's effective order) */
		size_t m = ngram_matches(h, nh, r, nr, n, g);
		ap += (double)m / (double)gh, ar += (double)m / (double)gr, eff++;
	}
	free(h), free(r), free(g);
	if (!eff)
		return 0.0;
	ap /= eff, ar /= eff;
	if (ap + ar == 0)
		return 0.0;
	return 100.0 * (1 + f2) * ap * ar / (f2 * ap + ar);
}

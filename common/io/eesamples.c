/* eesamples.c: the prompts and references an early-exit sweep decodes (see eesamples.h). */
#include "eesamples.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

int lm_ee_samples(const int32_t *ids, size_t n, size_t seqlen, double frac, size_t nnew,
                  int32_t bos, size_t maxw, struct lm_ee_sample **out, size_t *ns,
                  int32_t **buf)
{
	size_t W = seqlen ? n / seqlen : 0, nc = (size_t)llround(frac * (double)seqlen);
	*out = NULL, *ns = 0, *buf = NULL;
	if (nc < 1)
		nc = 1;
	if (nc + nnew > seqlen)
		return lm_seterr("a window of %zu tokens has no room for %zu prompt + %zu new tokens",
		                 seqlen, nc, nnew);
	if (W == 0)
		return lm_seterr("%zu tokens, fewer than one window of %zu", n, seqlen);
	if (maxw && maxw < W)
		W = maxw;
	struct lm_ee_sample *s = xcalloc(W, sizeof *s);
	int32_t *b = xmalloc(W * (nc + 1) * sizeof *b);
	for (size_t w = 0; w < W; w++) {
		const int32_t *win = ids + w * seqlen;
		int32_t *p = b + w * (nc + 1);
		size_t k = 0;
		if (win[0] != bos)
			p[k++] = bos; /* every prompt starts as a document does */
		memcpy(p + k, win, nc * sizeof *p);
		s[w] = (struct lm_ee_sample){p, k + nc, win + nc, nnew};
	}
	*out = s, *ns = W, *buf = b;
	return 0;
}

/* the longest JSON line read: HumanEval's are a few KB, and a prompt must fit in the
 * model's positions anyway (stated in lm-eval.1) */
#define LM_EE_LINE_MAX ((size_t)1 << 20)

/* One line of a gzip'd (or plain) file into *line (grown as needed, up to
 * LM_EE_LINE_MAX bytes: a 713 KB gzip of one 700 MB line asked for 1.78 GB); 1 for a
 * line, 0 at the end, -1 + error for a longer line. */
static int gz_line(gzFile f, char **line, size_t *cap)
{
	size_t n = 0;
	for (;;) {
		if (n + 2 > *cap) {
			if (*cap >= LM_EE_LINE_MAX)
				return lm_seterr("longer than %zu MiB", LM_EE_LINE_MAX >> 20);
			*cap = *cap ? 2 * *cap : 4096;
			*line = xrealloc(*line, *cap);
		}
		if (!gzgets(f, *line + n, (int)(*cap - n)))
			return n > 0;
		n += strlen(*line + n);
		if (n && (*line)[n - 1] == '\n')
			return 1;
	}
}

int lm_ee_samples_jsonl(const char *path, const struct lm_tokenizer *tk, int32_t bos,
                        size_t nnew, size_t maxpos, size_t maxw, struct lm_ee_sample **out,
                        size_t *ns, int32_t **buf, size_t *skipped)
{
	gzFile f = gzopen(path, "rb");
	char *line = NULL;
	size_t cap = 0, nl = 0, n = 0, used = 0, bcap = 0;
	size_t *at = NULL;   /* per sample: offset of its prompt in b, prompt and ref lengths */
	int32_t *b = NULL;
	int rc = -1;
	*out = NULL, *ns = 0, *buf = NULL, *skipped = 0;
	if (!f)
		return lm_seterr("%s", strerror(errno ? errno : ENOMEM));
	while (!maxw || n < maxw) {
		json_error_t je;
		int32_t *p = NULL, *r = NULL;
		size_t np, nr;
		int got = gz_line(f, &line, &cap);
		nl++;
		if (got < 0) {
			lm_preerr("line %zu", nl);
			goto out;
		}
		if (!got)
			break;
		if (strspn(line, " \t\r\n") == strlen(line))
			continue;
		json_t *j = json_loads(line, 0, &je);
		const char *pt = json_string_value(json_object_get(j, "prompt"));
		const char *rt = json_string_value(json_object_get(j, "canonical_solution"));
		if (!pt || !rt) {
			json_decref(j);
			lm_seterr("line %zu: not a JSON object with \"prompt\" and \"canonical_solution\"", nl);
			goto out;
		}
		if (lm_tokenize(tk, pt, strlen(pt), &p, &np) < 0 || lm_tokenize(tk, rt, strlen(rt), &r, &nr) < 0) {
			free(p), json_decref(j);
			lm_preerr("line %zu", nl);
			goto out;
		}
		json_decref(j);
		if (np + 1 + nnew > maxpos || nr == 0) {
			++*skipped, free(p), free(r);
			continue;
		}
		nr = nr < nnew ? nr : nnew;
		if (used + np + 1 + nr > bcap) {
			bcap = 2 * (used + np + 1 + nr);
			b = xrealloc(b, bcap * sizeof *b);
		}
		at = xrealloc(at, 3 * (n + 1) * sizeof *at);
		at[3 * n] = used, at[3 * n + 1] = np + 1, at[3 * n + 2] = nr;
		b[used] = bos;
		memcpy(b + used + 1, p, np * sizeof *b);
		memcpy(b + used + 1 + np, r, nr * sizeof *b);
		used += np + 1 + nr, n++;
		free(p), free(r);
	}
	if (gzclose(f) != Z_OK) {
		f = NULL;
		lm_seterr("read error (or not gzip)");
		goto out;
	}
	f = NULL;
	if (n == 0) {
		lm_seterr("no problem fits %zu positions with %zu new tokens", maxpos, nnew);
		goto out;
	}
	struct lm_ee_sample *s = xcalloc(n, sizeof *s);
	for (size_t i = 0; i < n; i++) /* b does not move any more */
		s[i] = (struct lm_ee_sample){b + at[3 * i], at[3 * i + 1], b + at[3 * i] + at[3 * i + 1],
		                             at[3 * i + 2]};
	*out = s, *ns = n, *buf = b, b = NULL;
	rc = 0;
out:
	if (f)
		gzclose(f);
	free(line), free(at), free(b);
	return rc;
}

/* csv.c: an RFC 4180 reader (see csv.h). One pass over the text: fields are unquoted in
 * place (unquoting never lengthens a field, and the separator after it becomes its NUL),
 * so the records point into the file's own buffer. */
#include "csv.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* a line end at p: 1 for LF, 2 for CR LF, 0 for anything else */
static size_t eol(const char *p, const char *end)
{
	if (p < end && *p == '\n')
		return 1;
	return p + 1 < end && p[0] == '\r' && p[1] == '\n' ? 2 : 0;
}

static void push_field(struct lm_csv *c, size_t *cap, char *f)
{
	size_t n = c->first[c->nrec + 1];  /* fields so far: the open record's end */
	if (n + 1 > *cap) {
		*cap = *cap ? 2 * *cap : 64;
		c->field = xrealloc(c->field, *cap * sizeof *c->field);
	}
	c->field[n] = f;
	c->first[c->nrec + 1] = n + 1;
}

static void end_record(struct lm_csv *c, size_t *cap, size_t line)
{
	/* first needs nrec + 2 entries after this: the next record's start and end */
	if (c->nrec + 2 >= *cap) {
		*cap *= 2;
		c->first = xrealloc(c->first, (*cap + 1) * sizeof *c->first);
		c->line = xrealloc(c->line, *cap * sizeof *c->line);
	}
	c->line[c->nrec++] = line;
	c->first[c->nrec + 1] = c->first[c->nrec];
}

/* one quoted field from p (at the opening quote) into w; returns the end, NULL + error */
static char *quoted(char *p, const char *end, char **wp, size_t *line)
{
	char *w = *wp;
	size_t from = *line;
	for (p++;; ) {
		if (p >= end) {
			lm_seterr("line %zu: a quoted field that never ends", from);
			return NULL;
		}
		if (*p == '"') {
			if (p + 1 < end && p[1] == '"') {
				*w++ = '"', p += 2;
				continue;
			}
			p++;
			break;
		}
		*line += *p == '\n';
		*w++ = *p++;
	}
	if (p < end && *p != ',' && !eol(p, end)) {
		lm_seterr("line %zu: text after the closing quote of a field", *line);
		return NULL;
	}
	*wp = w;
	return p;
}

int lm_csv_parse(struct lm_csv *c, char *text, size_t len)
{
	size_t fcap = 0, rcap = 16, line = 1, e;
	char *p = text, *end = text + len;

	memset(c, 0, sizeof *c);
	c->text = text;
	c->first = xmalloc((rcap + 1) * sizeof *c->first);
	c->line = xmalloc(rcap * sizeof *c->line);
	c->first[0] = c->first[1] = 0;
	if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3))
		p += 3;
	while (p < end) {
		if ((e = eol(p, end))) {  /* a blank line is no record */
			p += e, line++;
			continue;
		}
		size_t start = line;
		for (;;) {
			char *f = p, *w = p;
			if (*p == '"') {
				if (!(p = quoted(p, end, &w, &line))) {
					lm_csv_free(c);
					return -1;
				}
			} else {
				while (p < end && *p != ',' && !eol(p, end))
					*w++ = *p++;
			}
			int more = p < end && *p == ',';
			e = more ? 1 : eol(p, end);
			*w = 0;  /* w <= p: the separator's place, or the byte after the text */
			push_field(c, &fcap, f);
			p += e;
			if (!more)
				break;
			if (p >= end) {  /* a comma at the very end: one more, empty field */
				*p = 0;
				push_field(c, &fcap, p);
				break;
			}
		}
		end_record(c, &rcap, start);
		line++;
	}
	return 0;
}

int lm_csv_load(struct lm_csv *c, const char *path)
{
	size_t len;
	char *text = lm_read_text(path, (size_t)1 << 31, &len);
	memset(c, 0, sizeof *c);
	if (!text)
		return -1;
	return lm_csv_parse(c, text, len);
}

void lm_csv_free(struct lm_csv *c)
{
	free(c->text), free(c->field), free(c->first), free(c->line);
	memset(c, 0, sizeof *c);
}

size_t lm_csv_nfields(const struct lm_csv *c, size_t r)
{
	return r < c->nrec ? c->first[r + 1] - c->first[r] : 0;
}

const char *lm_csv_get(const struct lm_csv *c, size_t r, size_t f)
{
	return f < lm_csv_nfields(c, r) ? c->field[c->first[r] + f] : NULL;
}

long lm_csv_column(const struct lm_csv *c, const char *name)
{
	for (size_t f = 0; f < lm_csv_nfields(c, 0); f++)
		if (!strcasecmp(lm_csv_get(c, 0, f), name))
			return (long)f;
	return -1;
}

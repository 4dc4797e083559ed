/* textlines.c: a text held in memory, gone through line by line, each line cut in place
 * (see textlines.h) */
#include "textlines.h"
#include "util.h"

#include <string.h>

int lm_text_lines(char *text, size_t len, const char *what, lm_line_fn *fn, void *ctx)
{
	size_t lineno = 0, records = 0;
	for (char *p = text, *next; p < text + len; p = next) {
		char *nl = memchr(p, '\n', (size_t)(text + len - p));
		next = nl ? nl + 1 : text + len;
		if (nl)
			*nl = 0;
		lineno++;
		/* strlen, not nl - p: a reader that lets a NUL through sees the line end there */
		size_t l = strlen(p);
		if (l && p[l - 1] == '\r')
			p[--l] = 0;
		int r = fn(ctx, p, l, lineno);
		if (r < 0)
			return -1;
		records += (size_t)r;
	}
	return records ? 0 : lm_seterr("no %s", what);
}

int lm_line_blank(const char *s, size_t len)
{
	return strspn(s, " \t\v\f") == len;
}

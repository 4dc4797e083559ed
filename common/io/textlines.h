/* textlines.h: a text held in memory, gone through line by line, each line cut in place:
 * the one loop of the line-oriented files (sentences, pools, pairs, STS files) */
#ifndef LM_TEXTLINES_H
#define LM_TEXTLINES_H

#include <stddef.h>

/* called on each line: NUL-terminated in place, its '\n' and a '\r' before it cut off (CR LF
 * files read as LF ones), len its length, lineno its 1-based number in the text. Returns 1
 * when the line made a record, 0 when it was skipped (blank, a header), -1 + error. */
typedef int lm_line_fn(void *ctx, char *line, size_t len, size_t lineno);

/* fn on every line of text [len] (modified: the lines are cut in place); stops at fn's -1
 * and returns it; -1 + error "no WHAT" when no line made a record; else 0 */
int lm_text_lines(char *text, size_t len, const char *what, lm_line_fn *fn, void *ctx);

/* 1 when s [len] holds only spaces, tabs, vertical tabs and form feeds (or nothing) */
int lm_line_blank(const char *s, size_t len);

#endif

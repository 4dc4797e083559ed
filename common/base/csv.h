/* csv.h: comma-separated files as RFC 4180 writes them (the AdvBench and TruthfulQA
 * releases): fields in double quotes may hold commas, line breaks and doubled quotes ("");
 * records end with LF or CR LF; a UTF-8 byte-order mark in front is skipped. Lenient where
 * real files are: a quote inside an unquoted field is kept as a character, a last record
 * without a line end is a record, and blank lines are skipped (RFC 4180 would read them as
 * records of one empty field). The first record is the header. */
#ifndef LM_CSV_H
#define LM_CSV_H

#include <stddef.h>

struct lm_csv {
	char *text;      /* the file, its fields unquoted and NUL-terminated in place */
	char **field;    /* every field, record after record */
	size_t *first;   /* [nrec + 1] index in field of each record's first field */
	size_t *line;    /* [nrec] 1-based line where each record starts */
	size_t nrec;     /* records, the header included */
};

/* Parse text: len bytes and one more, writable, for a NUL (as lm_read_file gives). The
 * struct takes the buffer, also on failure. -1 + error naming the line: a quoted field
 * that never ends, text after a closing quote. */
int lm_csv_parse(struct lm_csv *c, char *text, size_t len);
/* read and parse a file; -1 + error (the caller prefixes the path) */
int lm_csv_load(struct lm_csv *c, const char *path);
void lm_csv_free(struct lm_csv *c);

/* fields of record r */
size_t lm_csv_nfields(const struct lm_csv *c, size_t r);
/* field f of record r, NULL when the record is shorter */
const char *lm_csv_get(const struct lm_csv *c, size_t r, size_t f);
/* the header's column named name (ASCII case-insensitive), -1 if none */
long lm_csv_column(const struct lm_csv *c, const char *name);

#endif

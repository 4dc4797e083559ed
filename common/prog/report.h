/* report.h: one report, the same fields printed as text lines or as one JSON object */
#ifndef LM_REPORT_H
#define LM_REPORT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

enum lm_rkind {
	LM_R_STR,   /* s */
	LM_R_STRN,  /* s, or JSON null and no text when s is NULL */
	LM_R_INT,   /* i */
	LM_R_REAL,  /* d */
	LM_R_JSON   /* j (the report takes it over), JSON only */
};

/* one field: its JSON key (NULL: text only) and its text, a printf format with the one
 * conversion of the value and whatever it shares a line with (NULL: JSON only) */
struct lm_rfield {
	const char *key, *text;
	enum lm_rkind kind;
	const char *s;
	long long i;
	double d;
	json_t *j;
};

/* fields in order as "key": value pairs of one JSON object on one line, or their text
 * formats one after the other */
void lm_report(FILE *f, int json, const struct lm_rfield *fl, size_t n);

/* j printed as one line of JSON, its keys in the order they were set; takes j over */
void lm_json_line(FILE *f, json_t *j);

#define LM_RS(k, t, v) ((struct lm_rfield){.key = (k), .text = (t), .kind = LM_R_STR, .s = (v)})
#define LM_RSN(k, t, v) ((struct lm_rfield){.key = (k), .text = (t), .kind = LM_R_STRN, .s = (v)})
#define LM_RI(k, t, v) ((struct lm_rfield){.key = (k), .text = (t), .kind = LM_R_INT, .i = (long long)(v)})
#define LM_RR(k, t, v) ((struct lm_rfield){.key = (k), .text = (t), .kind = LM_R_REAL, .d = (v)})
#define LM_RJ(k, v) ((struct lm_rfield){.key = (k), .kind = LM_R_JSON, .j = (v)})

#endif

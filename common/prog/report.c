/* report.c: a report's fields as text or as one JSON object (see report.h) */
#include "report.h"
#include "util.h"

void lm_json_line(FILE *f, json_t *j)
{
	/* jansson builds NULL from bad input (a string not UTF-8, a NaN): say so, never print an
	 * empty line and exit 0 */
	if (!j)
		die("JSON output: a value could not be encoded");
	json_dumpf(j, f, JSON_PRESERVE_ORDER);
	fputc('\n', f);
	json_decref(j);
}

void lm_report(FILE *f, int json, const struct lm_rfield *fl, size_t n)
{
	if (json) {
		json_t *o = json_object();
		for (size_t k = 0; k < n; k++) {
			const struct lm_rfield *x = &fl[k];
			json_t *v = x->kind == LM_R_STR    ? json_string(x->s)
			            : x->kind == LM_R_STRN ? (x->s ? json_string(x->s) : json_null())
			            : x->kind == LM_R_INT  ? json_integer((json_int_t)x->i)
			            : x->kind == LM_R_REAL ? json_real(x->d)
			                                   : x->j;
			if (x->key)
				json_object_set_new(o, x->key, v);
			else
				json_decref(v);
		}
		lm_json_line(f, o);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		const struct lm_rfield *x = &fl[k];
		if (x->kind == LM_R_JSON)
			json_decref(x->j);
		else if (!x->text || (x->kind == LM_R_STRN && !x->s))
			continue;
		else if (x->kind == LM_R_STR || x->kind == LM_R_STRN)
			fprintf(f, x->text, x->s);
		else if (x->kind == LM_R_INT)
			fprintf(f, x->text, x->i);
		else
			fprintf(f, x->text, x->d);
	}
}

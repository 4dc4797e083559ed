/* mc.c: multiple-choice task files and option scoring (see mc.h) */
#include "mc.h"
#include "fwdgrow.h"
#include "util.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TASK_FILE ((size_t)1 << 30)

const char *const lm_mc_rule_name[LM_MC_RULES] = {"mean", "sum", "norm"};

/* ---- task files ---- */

static void item_free(struct lm_task_item *it)
{
	free(it->input);
	for (size_t i = 0; i < it->nchoice; i++)
		free(it->choices[i]);
	free(it->choices);
	for (size_t i = 0; i < it->nmc2; i++)
		free(it->mc2[i]);
	free(it->mc2);
	free(it->mc2_true);
	memset(it, 0, sizeof *it);
}

void lm_task_free(struct lm_task *t)
{
	for (size_t i = 0; i < t->n; i++)
		item_free(&t->it[i]);
	free(t->it);
	memset(t, 0, sizeof *t);
}

/* An empty option (or one of white space only) has no tokens of its own: it would be
 * scored by the space put in front of it, alike for every empty option, and the first
 * of the tie would win, so a task of empty choices scored accuracy 1.0 */
static int blank(const char *s)
{
	while (*s && isspace((unsigned char)*s))
		s++;
	return !*s;
}

/* {"input", "choices", "gold"} */
static int item_from_jsonl(struct lm_task_item *it, json_t *o)
{
	json_t *in = json_object_get(o, "input"), *ch = json_object_get(o, "choices");
	json_t *g = json_object_get(o, "gold");
	size_t n = json_array_size(ch);
	if (!json_is_object(o))
		return lm_seterr("not a JSON object");
	if (!json_is_string(in))
		return lm_seterr("\"input\" missing or not a string");
	if (!json_is_array(ch) || n < 2)
		return lm_seterr("\"choices\" must be an array of at least 2 strings");
	if (!json_is_integer(g) || json_integer_value(g) < 0 || (size_t)json_integer_value(g) >= n)
		return lm_seterr("\"gold\" must be an index into the %zu choices", n);
	it->input = xstrdup(json_string_value(in));
	it->choices = xcalloc(n, sizeof *it->choices);
	it->nchoice = n;
	it->gold = (int)json_integer_value(g);
	for (size_t i = 0; i < n; i++) {
		json_t *c = json_array_get(ch, i);
		if (!json_is_string(c))
			return lm_seterr("choice %zu is not a string", i + 1);
		if (blank(json_string_value(c)))
			return lm_seterr("choice %zu is empty", i + 1);
		it->choices[i] = xstrdup(json_string_value(c));
	}
	return 0;
}

/* a {answer: 0/1} map into options and flags, in file order */
static int targets(json_t *m, const char *what, char ***opt, unsigned char **tru, size_t *n)
{
	const char *k;
	json_t *v;
	size_t i = 0;
	if (!json_is_object(m) || json_object_size(m) < 2)
		return lm_seterr("\"%s\" must map at least 2 answers to 0 or 1", what);
	*n = json_object_size(m);
	*opt = xcalloc(*n, sizeof **opt);
	*tru = xcalloc(*n, 1);
	json_object_foreach(m, k, v) {
		if (!json_is_integer(v) || (json_integer_value(v) != 0 && json_integer_value(v) != 1))
			return lm_seterr("\"%s\": the value of '%s' is not 0 or 1", what, k);
		if (blank(k))
			return lm_seterr("\"%s\": answer %zu is empty", what, i + 1);
		(*opt)[i] = xstrdup(k);
		(*tru)[i++] = (unsigned char)json_integer_value(v);
	}
	return 0;
}

static int item_from_truthfulqa(struct lm_task_item *it, json_t *o)
{
	json_t *q = json_object_get(o, "question");
	unsigned char *t1 = NULL;
	size_t ntrue = 0;
	if (!json_is_object(o) || !json_is_string(q))
		return lm_seterr("not an object with a \"question\" string");
	size_t ql = strlen(json_string_value(q));
	it->input = xmalloc(ql + 8);
	snprintf(it->input, ql + 8, "Q: %s\nA:", json_string_value(q));
	if (targets(json_object_get(o, "mc1_targets"), "mc1_targets", &it->choices, &t1,
	            &it->nchoice) < 0) {
		free(t1);
		return -1;
	}
	for (size_t i = 0; i < it->nchoice; i++)
		if (t1[i])
			it->gold = (int)i, ntrue++;
	free(t1);
	if (ntrue != 1)
		return lm_seterr("\"mc1_targets\" has %zu true answers, not 1", ntrue);
	json_t *m2 = json_object_get(o, "mc2_targets");
	if (m2 && targets(m2, "mc2_targets", &it->mc2, &it->mc2_true, &it->nmc2) < 0)
		return -1;
	return 0;
}

static int load_truthfulqa(struct lm_task *t, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *a = json_loadb(text, len, 0, &jerr);
	if (!a)
		return lm_seterr("line %d: %s", jerr.line, jerr.text);
	if (!json_is_array(a) || json_array_size(a) == 0) {
		json_decref(a);
		return lm_seterr("a JSON array of TruthfulQA items expected");
	}
	t->format = "truthfulqa";
	t->n = json_array_size(a);
	t->it = xcalloc(t->n, sizeof *t->it);
	for (size_t i = 0; i < t->n; i++) {
		t->it[i].line = i + 1;
		if (item_from_truthfulqa(&t->it[i], json_array_get(a, i)) < 0) {
			json_decref(a);
			return lm_preerr("item %zu", i + 1);
		}
	}
	json_decref(a);
	return 0;
}

static int load_jsonl(struct lm_task *t, char *text, size_t len)
{
	size_t cap = 0, lineno = 0;
	t->format = "jsonl";
	for (char *p = text, *next; p < text + len; p = next) {
		char *nl = memchr(p, '\n', (size_t)(text + len - p));
		next = nl ? nl + 1 : text + len;
		size_t l = (size_t)(next - p);
		lineno++;
		size_t blank = 0;
		while (blank < l && isspace((unsigned char)p[blank]))
			blank++;
		if (blank == l)
			continue;
		json_error_t jerr;
		json_t *o = json_loadb(p, l, JSON_DISABLE_EOF_CHECK, &jerr);
		if (!o)
			return lm_seterr("line %zu: %s", lineno, jerr.text);
		if (t->n == cap) {
			cap = cap ? 2 * cap : 256;
			t->it = xrealloc(t->it, cap * sizeof *t->it);
		}
		memset(&t->it[t->n], 0, sizeof *t->it);
		t->it[t->n].line = lineno;
		int r = item_from_jsonl(&t->it[t->n], o);
		t->n++;
		json_decref(o);
		if (r < 0)
			return lm_preerr("line %zu", lineno);
	}
	return t->n ? 0 : lm_seterr("no items");
}

int lm_task_load(struct lm_task *t, const char *path)
{
	size_t len, i = 0;
	char *text;
	int r;
	memset(t, 0, sizeof *t);
	if (!(text = lm_read_text(path, MAX_TASK_FILE, &len)))
		return -1;
	while (i < len && isspace((unsigned char)text[i]))
		i++;
	if (i < len && text[i] == '[')
		r = load_truthfulqa(t, text, len);
	else if (i < len && text[i] == '{')
		r = load_jsonl(t, text, len);
	else
		r = lm_seterr("neither JSON lines ({\"input\", \"choices\", \"gold\"} per line) nor a "
		              "TruthfulQA mc_task.json array");
	free(text);
	if (r < 0)
		lm_task_free(t);
	return r;
}

/* ---- scoring ---- */

void lm_scorer_init(struct lm_scorer *sc, const struct lm_model *m, const struct lm_tokenizer *tk)
{
	memset(sc, 0, sizeof *sc);
	sc->m = m, sc->tk = tk;
}

void lm_scorer_free(struct lm_scorer *sc)
{
	if (sc->B)
		lm_fwd_free(&sc->s);
	free(sc->ids);
	free(sc->tgt);
	free(sc->nll);
	memset(sc, 0, sizeof *sc);
}

/* an arena for B x T (grown, never shrunk) */
static int reserve(struct lm_scorer *sc, size_t B, size_t T)
{
	int grown = lm_fwd_grow(&sc->s, &sc->m->cfg, &sc->B, &sc->T, B, T);
	if (grown <= 0)
		return grown;
	sc->cap = sc->B * sc->T;
	sc->ids = xrealloc(sc->ids, sc->cap * sizeof *sc->ids);
	sc->tgt = xrealloc(sc->tgt, sc->cap * sizeof *sc->tgt);
	sc->nll = xrealloc(sc->nll, sc->cap * sizeof *sc->nll);
	return 0;
}

int lm_score_choices(struct lm_scorer *sc, const char *ctx, const char *const *choices, size_t n,
                     struct lm_choice_score *out)
{
	const struct lm_opt_config *c = &sc->m->cfg;
	size_t P = (size_t)c->max_positions, C = (size_t)c->hidden_size, T = 0, nc, R = 0;
	int32_t *cids = NULL, **oids = xcalloc(n, sizeof *oids);
	size_t *olen = xcalloc(n, sizeof *olen);
	int r = -1;

	if (lm_tokenize(sc->tk, ctx, strlen(ctx), &cids, &nc) < 0) {
		lm_preerr("context");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *o = choices[i];
		char *sp = xmalloc(strlen(o) + 2);
		sprintf(sp, "%s%s", isspace((unsigned char)o[0]) ? "" : " ", o);
		int tr = lm_tokenize(sc->tk, sp, strlen(sp), &oids[i], &olen[i]);
		out[i].nbytes = strlen(o);
		free(sp);
		if (tr < 0) {
			lm_preerr("choice %zu", i + 1);
			goto out;
		}
		if (olen[i] == 0 || olen[i] + 2 > P) {
			lm_seterr("choice %zu: %zu tokens (the model has %zu positions)", i + 1, olen[i], P);
			goto out;
		}
	}
	/* each sequence: BOS, the last tokens of the context that fit, the option */
	for (size_t i = 0; i < n; i++) {
		size_t keep = nc < P - 1 - olen[i] ? nc : P - 1 - olen[i];
		size_t len = 1 + keep + olen[i];
		T = len > T ? len : T;
	}
	if (reserve(sc, n, T) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t keep = nc < P - 1 - olen[i] ? nc : P - 1 - olen[i], len = 1 + keep + olen[i];
		int32_t *row = sc->ids + i * T, *tg = sc->tgt + i * T;
		row[0] = c->bos;
		memcpy(row + 1, cids + nc - keep, keep * sizeof *row);
		memcpy(row + 1 + keep, oids[i], olen[i] * sizeof *row);
		for (size_t t = len; t < T; t++)  /* right padding: later rows never reach earlier ones */
			row[t] = c->pad;
		for (size_t t = 0; t < T; t++)
			tg[t] = t + 1 >= 1 + keep && t + 1 < len ? row[t + 1] : -1;  /* option tokens */
		out[i].ntok = olen[i];
	}
	if (lm_forward_embed(&sc->s, sc->m, sc->ids, n, T) < 0)
		goto out;
	for (int l = 0; l < c->num_layers; l++)
		if (lm_forward_layer(&sc->s, &sc->m->layers[l], l, sc->s.x, n, T) < 0)
			goto out;
	/* only the rows that predict an option token go through the head */
	for (size_t i = 0; i < n * T; i++)
		if (sc->tgt[i] >= 0) {
			memcpy(sc->s.att + R * C, sc->s.x + i * C, C * sizeof *sc->s.att);
			sc->s.tgt[R++] = sc->tgt[i];
		}
	if (lm_forward_final(&sc->s, sc->m, sc->s.att, sc->s.out, R) < 0 ||
	    lm_forward_head(&sc->s, sc->m, sc->s.out, sc->s.tgt, R, sc->nll, NULL) < 0)
		goto out;
	R = 0;
	for (size_t i = 0; i < n; i++) {
		double sum = 0;
		for (size_t t = 0; t < T; t++)
			if (sc->tgt[i * T + t] >= 0)
				sum += sc->nll[R++];
		out[i].sum = sum;
	}
	r = 0;
out:
	free(cids);
	for (size_t i = 0; i < n; i++)
		free(oids[i]);
	free(oids);
	free(olen);
	return r;
}

size_t lm_mc_pick(const struct lm_choice_score *s, size_t n, enum lm_mc_rule rule)
{
	size_t best = 0;
	double bv = INFINITY;
	for (size_t i = 0; i < n; i++) {
		double v = rule == LM_MC_SUM    ? s[i].sum
		           : rule == LM_MC_MEAN ? s[i].sum / (double)s[i].ntok
		                                : s[i].sum / (double)(s[i].nbytes ? s[i].nbytes : 1);
		if (v < bv)  /* the first on ties */
			bv = v, best = i;
	}
	return best;
}

/* MC2: exp(-sum) of the true options over all, through log-sum-exp */
static double mc2_mass(const struct lm_choice_score *s, const unsigned char *tru, size_t n)
{
	double mx = -INFINITY, all = 0, yes = 0;
	for (size_t i = 0; i < n; i++)
		mx = -s[i].sum > mx ? -s[i].sum : mx;
	for (size_t i = 0; i < n; i++) {
		double p = exp(-s[i].sum - mx);
		all += p;
		if (tru[i])
			yes += p;
	}
	return yes / all;
}

int lm_mc_eval(struct lm_scorer *sc, const struct lm_task *t, const char *const *ctx,
               struct lm_mc_result *r, lm_mc_progress *pr, void *pctx)
{
	memset(r, 0, sizeof *r);
	for (size_t i = 0; i < t->n; i++) {
		const struct lm_task_item *it = &t->it[i];
		const char *c = ctx ? ctx[i] : it->input;
		struct lm_choice_score *s = xmalloc(it->nchoice * sizeof *s);
		if (lm_score_choices(sc, c, (const char *const *)it->choices, it->nchoice, s) < 0) {
			free(s);
			return lm_preerr("item %zu (line %zu)", i + 1, it->line);
		}
		for (int k = 0; k < LM_MC_RULES; k++)
			if (lm_mc_pick(s, it->nchoice, (enum lm_mc_rule)k) == (size_t)it->gold)
				r->correct[k]++;
		free(s);
		if (it->mc2) {
			s = xmalloc(it->nmc2 * sizeof *s);
			if (lm_score_choices(sc, c, (const char *const *)it->mc2, it->nmc2, s) < 0) {
				free(s);
				return lm_preerr("item %zu (line %zu), MC2", i + 1, it->line);
			}
			r->mc2_sum += mc2_mass(s, it->mc2_true, it->nmc2);
			r->n_mc2++;
			free(s);
		}
		r->n++;
		if (pr)
			pr(pctx, i + 1, t->n);
	}
	return 0;
}

/* zeroshot_tasks.c: the data sets' published files -> zero-shot items in
 * lm-evaluation-harness's prompt formats (see zeroshot.h; lm-eval(1), Zero-shot tasks) */
#include "zeroshot.h"
#include "util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TASK_FILE ((size_t)1 << 30)

const char *const lm_zs_task_names[] = {"boolq", "rte", "hellaswag", "winogrande", "arc_easy",
                                        "arc_challenge", "openbookqa", "piqa", "lambada_openai",
                                        NULL};

/* ---- small helpers ---- */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	char *s = xmalloc((size_t)n + 1);
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

static const char *str_of(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_string(v)) {
		lm_seterr("\"%s\" missing or not a string", key);
		return NULL;
	}
	return json_string_value(v);
}

/* n requests sharing one context (its copies are owned by each request) */
static void item_alloc(struct lm_zs_item *it, size_t n)
{
	it->n = n;
	it->ctx = xcalloc(n, sizeof *it->ctx);
	it->cont = xcalloc(n, sizeof *it->cont);
	it->nbytes = xcalloc(n, sizeof *it->nbytes);
}

/* request i: ctx, then delim + choice; acc_norm divides by the choice's bytes, and an
 * empty choice (only the delimiter left to score) is refused */
static int item_req(struct lm_zs_item *it, size_t i, const char *ctx, const char *delim,
                    const char *choice)
{
	if (!*choice)
		return lm_seterr("choice %zu is empty", i + 1);
	it->ctx[i] = xstrdup(ctx);
	it->cont[i] = fmt("%s%s", delim, choice);
	it->nbytes[i] = strlen(choice);
	return 0;
}

static void item_free(struct lm_zs_item *it)
{
	for (size_t i = 0; i < it->n; i++) {
		free(it->ctx ? it->ctx[i] : NULL);
		free(it->cont ? it->cont[i] : NULL);
	}
	free(it->ctx), free(it->cont), free(it->nbytes);
	memset(it, 0, sizeof *it);
}

void lm_zs_task_free(struct lm_zs_task *t)
{
	for (size_t i = 0; i < t->n; i++)
		item_free(&t->it[i]);
	free(t->it);
	free(t->path);
	memset(t, 0, sizeof *t);
}

/* a label given as a number or a string of digits */
static int int_of(json_t *v, long long *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		if (*s && isdigit((unsigned char)*s)) {
			*out = strtoll(s, &end, 10);
			if (!*end)
				return 0;
		}
	}
	return -1;
}

/* ---- HellaSwag's preprocessing ---- */

char *lm_zs_hellaswag_clean(const char *s)
{
	size_t n = strlen(s), k = 0;
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	while (n && isspace((unsigned char)*s))
		s++, n--;
	/* " [title]" -> ". " (never longer than the input) */
	char *a = xmalloc(n + 1), *b = xmalloc(n + 1);
	for (size_t i = 0; i < n;)
		if (n - i >= 8 && !memcmp(s + i, " [title]", 8))
			a[k++] = '.', a[k++] = ' ', i += 8;
		else
			a[k++] = s[i++];
	a[k] = 0;
	/* drop each "[" up to the nearest "]" on the same line (a regex's non-greedy \[.*?\]) */
	n = k, k = 0;
	for (size_t i = 0; i < n;) {
		if (a[i] == '[') {
			size_t j = i + 1;
			while (j < n && a[j] != ']' && a[j] != '\n')
				j++;
			if (j < n && a[j] == ']') {
				i = j + 1;
				continue;
			}
		}
		b[k++] = a[i++];
	}
	b[k] = 0;
	/* every non-overlapping pair of spaces -> one, left to right */
	n = k, k = 0;
	for (size_t i = 0; i < n;)
		if (b[i] == ' ' && i + 1 < n && b[i + 1] == ' ')
			a[k++] = ' ', i += 2;
		else
			a[k++] = b[i++];
	a[k] = 0;
	free(b);
	return a;
}

/* ---- one reader per task: a JSON object (one line) -> an item ---- */

typedef int item_fn(struct lm_zs_item *it, json_t *o);

/* passage\nQuestion: question?\nAnswer:  " no" / " yes"; label true/1 = yes */
static int boolq_item(struct lm_zs_item *it, json_t *o)
{
	const char *q = str_of(o, "question"), *p = str_of(o, "passage");
	json_t *l = json_object_get(o, "label");
	if (!l)
		l = json_object_get(o, "answer"); /* Google's release names it answer */
	if (!q || !p)
		return -1;
	long long v;
	if (json_is_boolean(l))
		v = json_is_true(l);
	else if (int_of(l, &v) < 0 || v < 0 || v > 1)
		return lm_seterr("\"label\" (or \"answer\") missing or not true/false, 0/1");
	char *ctx = fmt("%s\nQuestion: %s?\nAnswer:", p, q);
	item_alloc(it, 2);
	(void)item_req(it, 0, ctx, " ", "no");
	(void)item_req(it, 1, ctx, " ", "yes");
	it->gold = (int)v;
	free(ctx);
	return 0;
}

/* s1\nQuestion: s2 True or False?\nAnswer:  " True" (entailment) / " False" */
static int rte_make(struct lm_zs_item *it, const char *s1, const char *s2, const char *label)
{
	int gold;
	if (!strcmp(label, "entailment") || !strcmp(label, "0"))
		gold = 0;
	else if (!strcmp(label, "not_entailment") || !strcmp(label, "1"))
		gold = 1;
	else
		return lm_seterr("label '%s' is not entailment or not_entailment", label);
	char *ctx = fmt("%s\nQuestion: %s True or False?\nAnswer:", s1, s2);
	item_alloc(it, 2);
	(void)item_req(it, 0, ctx, " ", "True");
	(void)item_req(it, 1, ctx, " ", "False");
	it->gold = gold;
	free(ctx);
	return 0;
}

/* SuperGLUE's val.jsonl: premise, hypothesis, label */
static int rte_item(struct lm_zs_item *it, json_t *o)
{
	const char *p = str_of(o, "premise"), *h = p ? str_of(o, "hypothesis") : NULL;
	const char *l = h ? str_of(o, "label") : NULL;
	return l ? rte_make(it, p, h, l) : -1;
}

/* activity_label: ctx_a Ctx_b  " ending" x4, all cleaned; label */
static int hellaswag_item(struct lm_zs_item *it, json_t *o)
{
	const char *al = str_of(o, "activity_label"), *a = al ? str_of(o, "ctx_a") : NULL;
	const char *b = a ? str_of(o, "ctx_b") : NULL;
	json_t *e = json_object_get(o, "endings");
	long long g;
	if (!b)
		return -1;
	if (!json_is_array(e) || json_array_size(e) < 2)
		return lm_seterr("\"endings\" must be an array of at least 2 strings");
	if (int_of(json_object_get(o, "label"), &g) < 0 || g < 0 || (size_t)g >= json_array_size(e))
		return lm_seterr("\"label\" must be an index into the %zu endings", json_array_size(e));
	/* Python's str.capitalize: the first character upper case, the rest lower (ASCII) */
	char *cb = xstrdup(b);
	for (size_t i = 0; cb[i]; i++)
		cb[i] = (char)(i ? tolower((unsigned char)cb[i]) : toupper((unsigned char)cb[i]));
	char *raw = fmt("%s: %s %s", al, a, cb), *ctx = lm_zs_hellaswag_clean(raw);
	free(cb), free(raw);
	item_alloc(it, json_array_size(e));
	for (size_t i = 0; i < it->n; i++) {
		json_t *s = json_array_get(e, i);
		if (!json_is_string(s)) {
			free(ctx);
			return lm_seterr("ending %zu is not a string", i + 1);
		}
		char *c = lm_zs_hellaswag_clean(json_string_value(s));
		int r = item_req(it, i, ctx, " ", c);
		free(c);
		if (r < 0) {
			free(ctx);
			return -1;
		}
	}
	it->gold = (int)g;
	free(ctx);
	return 0;
}

/* partial scoring: the contexts are the sentence up to "_" with each option put in, the
 * continuation what follows "_" (stripped), the same for both */
static int winogrande_item(struct lm_zs_item *it, json_t *o)
{
	const char *s = str_of(o, "sentence"), *o1 = s ? str_of(o, "option1") : NULL;
	const char *o2 = o1 ? str_of(o, "option2") : NULL, *u;
	long long a;
	if (!o2)
		return -1;
	if (!(u = strchr(s, '_')))
		return lm_seterr("\"sentence\" has no '_' to put an option in");
	if (int_of(json_object_get(o, "answer"), &a) < 0 || (a != 1 && a != 2))
		return lm_seterr("\"answer\" missing or not \"1\" or \"2\"");
	const char *rest = u + 1, *end = rest + strlen(rest);
	while (*rest && isspace((unsigned char)*rest))
		rest++;
	while (end > rest && isspace((unsigned char)end[-1]))
		end--;
	if (end == rest)
		return lm_seterr("nothing follows the '_' of \"sentence\" to score");
	if (!*o1 || !*o2)
		return lm_seterr("option%d is empty", *o1 ? 2 : 1);
	int pre = (int)(u - s), nr = (int)(end - rest);
	item_alloc(it, 2);
	for (size_t i = 0; i < 2; i++) {
		const char *opt = i ? o2 : o1;
		it->ctx[i] = fmt("%.*s%s", pre, s, opt);
		it->cont[i] = fmt(" %.*s", nr, rest);
		it->nbytes[i] = strlen(opt);
	}
	it->gold = (int)a - 1;
	return 0;
}

/* ARC and OpenBookQA share AI2's layout: {"question": {"stem", "choices": [{"text",
 * "label"}]}, "answerKey"}; Hugging Face's copies flatten it ({"question" or
 * "question_stem", "choices": {"text": [], "label": []}, "answerKey"}) */
static int ai2_item(struct lm_zs_item *it, json_t *o, const char *ctx_fmt)
{
	json_t *q = json_object_get(o, "question"), *ch, *texts, *labels;
	const char *stem, *key = str_of(o, "answerKey");
	if (!key)
		return -1;
	if (json_is_object(q)) {
		if (!(stem = str_of(q, "stem")))
			return lm_preerr("question");
		ch = json_object_get(q, "choices");
	} else {
		if (!(stem = json_is_string(q) ? json_string_value(q) : str_of(o, "question_stem")))
			return lm_seterr("\"question\" missing or neither a string nor an object");
		ch = json_object_get(o, "choices");
	}
	size_t n = json_is_array(ch) ? json_array_size(ch)
	           : json_array_size(json_object_get(ch, "text"));
	texts = json_object_get(ch, "text"), labels = json_object_get(ch, "label");
	if (n < 2 || (!json_is_array(ch) && json_array_size(labels) != n))
		return lm_seterr("\"choices\" must hold at least 2 choices, each a text and a label");
	char *ctx = fmt(ctx_fmt, stem);
	item_alloc(it, n);
	it->gold = -1;
	for (size_t i = 0; i < n; i++) {
		json_t *c = json_is_array(ch) ? json_array_get(ch, i) : NULL;
		json_t *t = c ? json_object_get(c, "text") : json_array_get(texts, i);
		json_t *l = c ? json_object_get(c, "label") : json_array_get(labels, i);
		if (!json_is_string(t) || !json_is_string(l)) {
			free(ctx);
			return lm_seterr("choice %zu: text or label missing or not a string", i + 1);
		}
		if (item_req(it, i, ctx, " ", json_string_value(t)) < 0) {
			free(ctx);
			return -1;
		}
		if (!strcmp(json_string_value(l), key))
			it->gold = (int)i;
	}
	free(ctx);
	if (it->gold < 0)
		return lm_seterr("\"answerKey\" '%s' is none of the choices' labels", key);
	return 0;
}

static int arc_item(struct lm_zs_item *it, json_t *o)
{
	return ai2_item(it, o, "Question: %s\nAnswer:");
}

static int obqa_item(struct lm_zs_item *it, json_t *o)
{
	return ai2_item(it, o, "%s");
}

/* Question: goal\nAnswer:  " sol1" / " sol2"; the label from valid-labels.lst (filled
 * in later) or a "label" field */
static int piqa_item(struct lm_zs_item *it, json_t *o)
{
	const char *g = str_of(o, "goal"), *s1 = g ? str_of(o, "sol1") : NULL;
	const char *s2 = s1 ? str_of(o, "sol2") : NULL;
	json_t *l = json_object_get(o, "label");
	long long v = -1;
	if (!s2)
		return -1;
	if (l && (int_of(l, &v) < 0 || v < 0 || v > 1))
		return lm_seterr("\"label\" is not 0 or 1");
	char *ctx = fmt("Question: %s\nAnswer:", g);
	item_alloc(it, 2);
	int r = item_req(it, 0, ctx, " ", s1) < 0 || item_req(it, 1, ctx, " ", s2) < 0 ? -1 : 0;
	it->gold = (int)v;
	free(ctx);
	return r;
}

/* the text up to its last space, then " " + the last word */
static int lambada_item(struct lm_zs_item *it, json_t *o)
{
	const char *t = str_of(o, "text"), *sp;
	if (!t)
		return -1;
	if (!(sp = strrchr(t, ' ')) || !sp[1])
		return lm_seterr("\"text\" has no last word after a space");
	item_alloc(it, 1);
	it->ctx[0] = fmt("%.*s", (int)(sp - t), t);
	it->cont[0] = xstrdup(sp);
	it->nbytes[0] = strlen(sp + 1);
	it->gold = 0;
	return 0;
}

/* ---- files ---- */

static struct lm_zs_item *grow(struct lm_zs_task *t, size_t *cap)
{
	if (t->n == *cap) {
		*cap = *cap ? 2 * *cap : 256;
		t->it = xrealloc(t->it, *cap * sizeof *t->it);
	}
	memset(&t->it[t->n], 0, sizeof *t->it);
	return &t->it[t->n++];
}

/* the next line of text[*pos..len): its start and length (without the newline) */
static int next_line(const char *text, size_t len, size_t *pos, const char **l, size_t *ll)
{
	if (*pos >= len)
		return 0;
	const char *p = text + *pos, *nl = memchr(p, '\n', len - *pos);
	*l = p;
	*ll = nl ? (size_t)(nl - p) : len - *pos;
	*pos += *ll + (nl ? 1 : 0);
	if (*ll && p[*ll - 1] == '\r')
		(*ll)--;
	return 1;
}

static int blank(const char *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isspace((unsigned char)l[i]))
			return 0;
	return 1;
}

static int load_jsonl(struct lm_zs_task *t, const char *text, size_t len, item_fn *fn)
{
	size_t pos = 0, lineno = 0, cap = 0, ll;
	const char *l;
	while (next_line(text, len, &pos, &l, &ll)) {
		lineno++;
		if (blank(l, ll))
			continue;
		json_error_t jerr;
		json_t *o = json_loadb(l, ll, 0, &jerr);
		if (!o)
			return lm_seterr("line %zu: %s", lineno, jerr.text);
		struct lm_zs_item *it = grow(t, &cap);
		it->line = lineno;
		int r = json_is_object(o) ? fn(it, o) : lm_seterr("not a JSON object");
		json_decref(o);
		if (r < 0)
			return lm_preerr("line %zu", lineno);
	}
	return 0;
}

/* GLUE's RTE dev.tsv: a header (index, sentence1, sentence2, label), then tab-separated
 * rows without quoting */
static int load_rte_tsv(struct lm_zs_task *t, char *text, size_t len)
{
	size_t pos = 0, lineno = 0, cap = 0, ll;
	const char *l;
	while (next_line(text, len, &pos, &l, &ll)) {
		char *f[5], *p = (char *)l;
		size_t nf = 0;
		lineno++;
		p[ll] = 0; /* the line's newline (or the file's NUL) */
		if (lineno == 1 || blank(l, ll))
			continue;
		for (char *tab; nf < 5; p = tab + 1) {
			f[nf++] = p;
			if (!(tab = strchr(p, '\t')))
				break;
			*tab = 0;
		}
		if (nf != 4)
			return lm_seterr("line %zu: %zu tab-separated fields, not 4 (index, sentence1, "
			                 "sentence2, label)", lineno, nf);
		struct lm_zs_item *it = grow(t, &cap);
		it->line = lineno;
		if (rte_make(it, f[1], f[2], f[3]) < 0)
			return lm_preerr("line %zu", lineno);
	}
	return 0;
}

/* PIQA's labels: one 0 or 1 per line, line k for item k */
static int piqa_labels(struct lm_zs_task *t, const char *path)
{
	size_t len, pos = 0, k = 0, ll;
	const char *l;
	char *text = lm_read_file(path, MAX_TASK_FILE, &len);
	if (!text)
		return -1;
	while (next_line(text, len, &pos, &l, &ll)) {
		if (blank(l, ll) && pos >= len)
			break;
		if (k >= t->n) {
			free(text);
			return lm_seterr("%s: line %zu: more labels than the %zu items", path, k + 1, t->n);
		}
		if (ll != 1 || (l[0] != '0' && l[0] != '1')) {
			free(text);
			return lm_seterr("%s: line %zu: a label is 0 or 1", path, k + 1);
		}
		t->it[k++].gold = l[0] - '0';
	}
	free(text);
	if (k != t->n)
		return lm_seterr("%s: %zu labels for %zu items", path, k, t->n);
	return 0;
}

struct task_def {
	const char *name;
	const char *files[2];  /* under the data folder, the first that exists */
	item_fn *fn;
	enum lm_zs_kind kind;
	int has_norm;
};

static const struct task_def defs[] = {
	{"boolq", {"boolq/val.jsonl", "boolq/dev.jsonl"}, boolq_item, LM_ZS_CHOICE, 0},
	{"rte", {"rte/dev.tsv", "rte/val.jsonl"}, rte_item, LM_ZS_CHOICE, 0},
	{"hellaswag", {"hellaswag/hellaswag_val.jsonl"}, hellaswag_item, LM_ZS_CHOICE, 1},
	{"winogrande", {"winogrande/dev.jsonl"}, winogrande_item, LM_ZS_CHOICE, 0},
	{"arc_easy", {"arc/ARC-Easy-Test.jsonl"}, arc_item, LM_ZS_CHOICE, 1},
	{"arc_challenge", {"arc/ARC-Challenge-Test.jsonl"}, arc_item, LM_ZS_CHOICE, 1},
	{"openbookqa", {"openbookqa/test.jsonl"}, obqa_item, LM_ZS_CHOICE, 1},
	{"piqa", {"piqa/valid.jsonl"}, piqa_item, LM_ZS_CHOICE, 1},
	{"lambada_openai", {"lambada/lambada_test.jsonl"}, lambada_item, LM_ZS_LAMBADA, 0},
};

static int load_file(struct lm_zs_task *t, const struct task_def *d)
{
	size_t len;
	char *text = lm_read_file(t->path, MAX_TASK_FILE, &len);
	int r;
	if (!text)
		return -1;
	size_t pl = strlen(t->path);
	if (pl > 4 && !strcmp(t->path + pl - 4, ".tsv"))
		r = load_rte_tsv(t, text, len);
	else
		r = load_jsonl(t, text, len, d->fn);
	free(text);
	if (r < 0)
		return lm_preerr("%s", t->path);
	if (t->n == 0)
		return lm_seterr("%s: no items", t->path);
	if (d->fn == piqa_item) {
		char *lp = fmt("%.*svalid-labels.lst", (int)(strrchr(t->path, '/') + 1 - t->path), t->path);
		r = access(lp, F_OK) == 0 ? piqa_labels(t, lp) : 0;
		free(lp);
		if (r < 0)
			return -1;
		for (size_t i = 0; i < t->n; i++)
			if (t->it[i].gold < 0)
				return lm_seterr("%s: line %zu: no \"label\" and no valid-labels.lst beside the "
				                 "file", t->path, t->it[i].line);
	}
	return 0;
}

int lm_zs_load(struct lm_zs_task *t, const char *name, const char *dir, size_t limit)
{
	const struct task_def *d = NULL;
	memset(t, 0, sizeof *t);
	for (size_t i = 0; i < sizeof defs / sizeof *defs; i++)
		if (!strcmp(defs[i].name, name))
			d = &defs[i];
	if (!d)
		return lm_seterr("unknown task '%s' (known: boolq, rte, hellaswag, winogrande, "
		                 "arc_easy, arc_challenge, openbookqa, piqa, lambada_openai)", name);
	t->name = d->name, t->kind = d->kind, t->has_norm = d->has_norm;
	for (size_t i = 0; i < 2 && d->files[i] && !t->path; i++) {
		char *p = fmt("%s/%s", dir, d->files[i]);
		if (access(p, F_OK) == 0)
			t->path = p;
		else
			free(p);
	}
	if (!t->path) {
		if (d->files[1])
			lm_seterr("%s: neither %s/%s nor %s/%s exists", name, dir, d->files[0], dir,
			          d->files[1]);
		else
			lm_seterr("%s: %s/%s does not exist", name, dir, d->files[0]);
		return -1;
	}
	if (load_file(t, d) < 0) {
		lm_zs_task_free(t);
		return -1;
	}
	if (limit && limit < t->n) {
		for (size_t i = limit; i < t->n; i++)
			item_free(&t->it[i]);
		t->n = limit;
	}
	return 0;
}

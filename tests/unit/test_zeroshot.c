/* test_zeroshot.c: lm-eval --task's parts (common/zeroshot*.c).
 *
 * - acc and acc_norm picks and the standard error against values worked out by hand;
 * - HellaSwag's text cleaning on the cases its regex and replaces define;
 * - the shared-prefix scorer: each request's log-likelihood equals a plain forward over
 *   its whole sequence (requests sharing a context, WinoGrande-style requests differing in
 *   the context, an empty context), with and without BOS, and the greedy flag equals the
 *   argmax of full logits;
 * - the readers: the harness's prompt formats on tests/data-zeroshot, and bad input
 *   refused with the file and line named. */
#include "forward.h"
#include "kernels.h"
#include "tokenizer.h"
#include "zeroshot.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MICRO "models/opt-micro"
#define DATA "tests/data-zeroshot"
#define TOL_LL 1e-4  /* relative: the same sums over differently batched GEMMs */

static struct lm_tokenizer *load_tok(const char *dir)
{
	char p[512];
	size_t vn, mn;
	snprintf(p, sizeof p, "%s/vocab.json", dir);
	char *v = lm_read_file(p, 1 << 26, &vn);
	snprintf(p, sizeof p, "%s/merges.txt", dir);
	char *mg = lm_read_file(p, 1 << 26, &mn);
	struct lm_tokenizer *t = v && mg ? lm_tokenizer_load(v, vn, mg, mn) : NULL;
	free(v);
	free(mg);
	return t;
}

static void test_metrics(void)
{
	/* acc: the largest ll (-5); acc_norm: ll per byte -0.5, -2.5, -0.2 -> the third */
	struct lm_zs_ll s[3] = {{.ll = -6.0, .ntok = 3}, {.ll = -5.0, .ntok = 1}, {.ll = -8.0, .ntok = 8}};
	size_t nb[3] = {12, 2, 40};
	CHECK(lm_zs_pick(s, nb, 3, 0) == 1);
	CHECK(lm_zs_pick(s, nb, 3, 1) == 2);
	/* equal values: the first, as numpy's argmax */
	struct lm_zs_ll t[2] = {{.ll = -2.0, .ntok = 1}, {.ll = -2.0, .ntok = 1}};
	size_t tb[2] = {4, 4};
	CHECK(lm_zs_pick(t, tb, 2, 0) == 0 && lm_zs_pick(t, tb, 2, 1) == 0);
	/* 3 of 4: p = 0.75, sample variance 4 * 0.75 * 0.25 / 3 = 0.25, over 4 -> 0.0625 */
	CHECK(fabs(lm_zs_stderr(3, 4) - 0.25) < 1e-12);
	CHECK(lm_zs_stderr(0, 5) == 0 && lm_zs_stderr(5, 5) == 0);
	CHECK(isnan(lm_zs_stderr(1, 1)));
}

static void clean_is(const char *in, const char *want)
{
	char *got = lm_zs_hellaswag_clean(in);
	CHECKF(!strcmp(got, want), "'%s' -> '%s', want '%s'", in, got, want);
	free(got);
}

static void test_hellaswag_clean(void)
{
	clean_is("  How to dance [title] Stand up.  ", "How to dance. Stand up.");
	clean_is("Then [header] she [step] goes", "Then she goes"); /* "Then  she  goes" */
	clean_is("a [unclosed bracket", "a [unclosed bracket");
	clean_is("a [line\n] b", "a [line\n] b");        /* '.' of the regex stops at newlines */
	clean_is("x[a]]y", "x]y");                        /* non-greedy: the nearest ']' */
	clean_is("a   b    c", "a  b  c");                /* pairs of spaces, left to right */
	clean_is("", "");
}

/* log-likelihood of cont after ctx by one plain forward over [BOS] + ctx + cont (BOS
 * also when ctx is empty: OPT's EOS is the same token); and whether every continuation
 * token is the argmax of the full logits */
static double plain_ll(const struct lm_model *m, const struct lm_tokenizer *tk, const char *ctx,
                       const char *cont, int bos, int *greedy)
{
	int32_t *a = NULL, *b = NULL, ids[512];
	size_t na = 0, nb = 0, V = (size_t)m->cfg.vocab_size;
	struct lm_fwd s;
	double ll = 0;
	if ((*ctx && lm_tokenize(tk, ctx, strlen(ctx), &a, &na) < 0) ||
	    lm_tokenize(tk, cont, strlen(cont), &b, &nb) < 0 || 1 + na + nb > 512)
		return NAN;
	size_t lead = bos || !na ? 1 : 0;
	ids[0] = m->cfg.bos;
	if (na)
		memcpy(ids + lead, a, na * sizeof *ids);
	memcpy(ids + lead + na, b, nb * sizeof *ids);
	size_t T = lead + na + nb;
	float *logits = xmalloc(T * V * sizeof *logits);
	double loss;
	CHECK(lm_fwd_init(&s, &m->cfg, 1, T) == 0);
	CHECK(lm_forward_loss(&s, m, ids, 1, T, &loss) == 0);
	for (size_t t = lead + na - 1; t + 1 < T; t++) /* position t predicts ids[t + 1] */
		ll -= s.nll[t];
	CHECK(lm_forward(&s, m, ids, NULL, 1, T, NULL, logits) == 0);
	*greedy = 1;
	for (size_t t = lead + na - 1; t + 1 < T; t++)
		if ((int32_t)lm_argmax(logits + t * V, V) != ids[t + 1])
			*greedy = 0;
	lm_fwd_free(&s);
	free(logits), free(a), free(b);
	return ll;
}

static void check_requests(struct lm_zs_scorer *sc, const struct lm_model *m,
                           const struct lm_tokenizer *tk, const char *const *ctx,
                           const char *const *cont, size_t n, const char *what)
{
	struct lm_zs_ll got[4];
	CHECKF(lm_zs_score(sc, ctx, cont, n, 1, got) == 0, "%s: %s", what, lm_errmsg());
	for (size_t i = 0; i < n; i++) {
		int g;
		double want = plain_ll(m, tk, ctx[i], cont[i], sc->bos, &g);
		CHECKF(fabs(got[i].ll - want) <= TOL_LL * fabs(want), "%s, bos %d, request %zu: %.6f, "
		       "plain %.6f", what, sc->bos, i, got[i].ll, want);
		CHECKF(got[i].greedy == g, "%s, bos %d, request %zu: greedy %d, plain %d", what, sc->bos, i,
		       got[i].greedy, g);
	}
}

/* the requests of a multiple-choice item and of a WinoGrande item, with sc->bos as set */
static void scorer_cases(struct lm_zs_scorer *sc, const struct lm_model *m,
                         const struct lm_tokenizer *tk)
{
	/* one context, continuations of 1 to many tokens: the shared prefix runs once */
	const char *ctx = "It was a dark and stormy night; the rain fell in torrents, except at";
	const char *c1[4] = {ctx, ctx, ctx, ctx};
	const char *o1[4] = {" occasional intervals, when it was checked", " noon", " the end",
	                     " xq zvb"};
	size_t run = sc->run_tokens, plain = sc->plain_tokens;
	check_requests(sc, m, tk, c1, o1, 4, "shared context");
	CHECK(sc->run_tokens - run < sc->plain_tokens - plain); /* the context ran once, not 4 times */
	/* WinoGrande: contexts differing after a common start, one continuation */
	const char *c2[2] = {"The trophy does not fit into the suitcase because the trophy",
	                     "The trophy does not fit into the suitcase because the suitcase"};
	const char *o2[2] = {" is too big.", " is too big."};
	check_requests(sc, m, tk, c2, o2, 2, "partial scoring");
}

static void test_scorer(void)
{
	struct lm_model m;
	struct lm_tokenizer *tk = load_tok(MICRO);
	struct lm_zs_scorer sc;
	if (!tk || load_model(&m, MICRO) < 0) {
		CHECK(0);
		return;
	}
	lm_zs_scorer_init(&sc, &m, tk);
	CHECK(sc.bos == 0); /* the harness's way unless asked */
	scorer_cases(&sc, &m, tk);
	sc.bos = 1;
	scorer_cases(&sc, &m, tk);
	/* a context ending in white space (moved to the continuation), an empty context */
	const char *c3[2] = {"He said ", ""};
	const char *o3[2] = {"nothing", " Nothing at all"};
	struct lm_zs_ll got[2];
	CHECKF(lm_zs_score(&sc, c3, o3, 2, 0, got) == 0, "%s", lm_errmsg());
	int g;
	double w0 = plain_ll(&m, tk, "He said", " nothing", 1, &g);
	double w1 = plain_ll(&m, tk, "", " Nothing at all", 1, &g);
	CHECKF(fabs(got[0].ll - w0) <= TOL_LL * fabs(w0), "trailing space: %.6f vs %.6f", got[0].ll, w0);
	CHECKF(fabs(got[1].ll - w1) <= TOL_LL * fabs(w1), "empty context: %.6f vs %.6f", got[1].ll, w1);
	/* without BOS an empty context gets EOS in front (OPT's EOS is its BOS: the same value) */
	sc.bos = 0;
	CHECKF(lm_zs_score(&sc, c3 + 1, o3 + 1, 1, 0, got) == 0, "%s", lm_errmsg());
	CHECKF(fabs(got[0].ll - w1) <= TOL_LL * fabs(w1), "empty context, no BOS: %.6f vs %.6f",
	       got[0].ll, w1);
	/* an empty continuation is refused with its number */
	const char *c4[2] = {"a", "a"}, *o4[2] = {" b", ""};
	CHECK(lm_zs_score(&sc, c4, o4, 2, 0, got) < 0);
	CHECK(strstr(lm_errmsg(), "choice 2") && strstr(lm_errmsg(), "empty continuation"));
	lm_zs_scorer_free(&sc);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
}

/* the harness's prompt formats on the first item of each task */
static void test_formats(void)
{
	struct lm_zs_task t;
	CHECKF(lm_zs_load(&t, "boolq", DATA, 0) == 0, "%s", lm_errmsg());
	CHECK(t.n == 4 && t.it[0].n == 2 && t.it[0].gold == 1 && t.it[1].gold == 0);
	CHECK(!strcmp(t.it[0].ctx[0], t.it[1].ctx[0])); /* pairs: the same text, both labels */
	CHECK(!strcmp(t.it[0].cont[0], " no") && !strcmp(t.it[0].cont[1], " yes"));
	CHECK(strstr(t.it[0].ctx[0], "\nQuestion: is the house on the hill?\nAnswer:") != NULL);
	lm_zs_task_free(&t);
	CHECKF(lm_zs_load(&t, "rte", DATA, 2) == 0, "%s", lm_errmsg());
	CHECK(t.n == 2 && t.it[0].line == 2 && t.it[0].gold == 0 && t.it[1].gold == 1);
	CHECK(!strcmp(t.it[0].cont[0], " True") && !strcmp(t.it[0].cont[1], " False"));
	CHECK(strstr(t.it[0].ctx[0], "\nQuestion: Is the house on the hill. True or False?\nAnswer:"));
	lm_zs_task_free(&t);
	CHECKF(lm_zs_load(&t, "hellaswag", DATA, 0) == 0, "%s", lm_errmsg());
	CHECK(t.n == 4 && t.it[0].n == 4 && t.it[1].gold == 1);
	CHECK(!strncmp(t.it[0].ctx[0], "Reading a novel: ", 17));
	/* "[header] " between ctx_a and " " + ctx_b leaves three spaces, the pair rule two */
	CHECK(!strstr(t.it[1].ctx[0], "[header]") && strstr(t.it[1].ctx[0], "day.  He did") && !strstr(t.it[1].ctx[0], "   "));
	CHECK(t.it[0].cont[0][0] == ' ' && t.it[0].nbytes[0] == strlen(t.it[0].cont[0]) - 1);
	lm_zs_task_free(&t);
	CHECKF(lm_zs_load(&t, "winogrande", DATA, 0) == 0, "%s", lm_errmsg());
	CHECK(t.n == 3 && t.it[1].gold == 1 && !strcmp(t.it[0].cont[0], t.it[0].cont[1]));
	CHECK(strcmp(t.it[0].ctx[0], t.it[0].ctx[1]) != 0 && t.it[0].cont[0][0] == ' ');
	lm_zs_task_free(&t);
	CHECKF(lm_zs_load(&t, "arc_challenge", DATA, 0) == 0, "%s", lm_errmsg());
	CHECK(t.n == 3 && t.it[0].gold == 1 && !strncmp(t.it[0].ctx[0], "Question: ", 10));
	CHECK(strlen(t.it[0].ctx[0]) > 8 && !strcmp(t.it[0].ctx[0] + strlen(t.it[0].ctx[0]) - 8, "\nAnswer:"));
	lm_zs_task_free(&t);
	CHECKF(lm_zs_load(&t, "openbookqa", DATA, 0) == 0, "%s", lm_errmsg());
	CHECK(t.n == 3 && t.it[0].gold == 3 && strncmp(t.it[0].ctx[0], "Question: ", 10) != 0);
	lm_zs_task_free(&t);
	CHECKF(lm_zs_load(&t, "piqa", DATA, 0) == 0, "%s", lm_errmsg());
	CHECK(t.n == 3 && t.it[0].gold == 0 && t.it[1].gold == 1);
	lm_zs_task_free(&t);
	CHECKF(lm_zs_load(&t, "lambada_openai", DATA, 0) == 0, "%s", lm_errmsg());
	CHECK(t.n == 4 && t.it[0].n == 1 && !strcmp(t.it[0].cont[0], " word"));
	CHECK(!strcmp(t.it[0].ctx[0] + strlen(t.it[0].ctx[0]) - 8, "saying a"));
	lm_zs_task_free(&t);
	CHECK(lm_zs_load(&t, "mmlu", DATA, 0) < 0 && strstr(lm_errmsg(), "unknown task"));
	CHECK(lm_zs_load(&t, "boolq", "/nonexistent", 0) < 0 && strstr(lm_errmsg(), "/nonexistent/boolq/val.jsonl"));
}

/* write text to DIR/rel, load task, expect an error with every needle in it */
static void bad(const char *task, const char *rel, const char *text, const char *n1, const char *n2)
{
	char dir[] = "/tmp/test_zeroshot.XXXXXX", path[256], sub[256];
	struct lm_zs_task t;
	if (!mkdtemp(dir)) {
		CHECK(0);
		return;
	}
	snprintf(sub, sizeof sub, "%s/%.*s", dir, (int)(strchr(rel, '/') - rel), rel);
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	CHECK(mkdir(sub, 0700) == 0);
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	int r = lm_zs_load(&t, task, dir, 0);
	CHECKF(r < 0, "%s: %s accepted", task, rel);
	if (r == 0)
		lm_zs_task_free(&t);
	else
		CHECKF(strstr(lm_errmsg(), path) && strstr(lm_errmsg(), n1) && (!n2 || strstr(lm_errmsg(), n2)),
		       "%s: message '%s'", task, lm_errmsg());
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

static void test_bad_input(void)
{
	bad("boolq", "boolq/val.jsonl", "{\"question\": \"q\", \"passage\": \"p\", \"label\": true}\n"
	    "{\"question\": \"q\", \"label\": false}\n", "line 2", "\"passage\" missing");
	bad("hellaswag", "hellaswag/hellaswag_val.jsonl", "{\"activity_label\": \"a\", \"ctx_a\": \"b\", "
	    "\"ctx_b\": \"c\", \"endings\": [\"x\", \"y\"], \"label\": 2}\n", "line 1", "\"label\"");
	bad("hellaswag", "hellaswag/hellaswag_val.jsonl", "\n{\"activity_label\": \"a\", \"ctx_a\": \"b\", "
	    "\"ctx_b\": \"c\", \"endings\": [], \"label\": 0}\n", "line 2", "\"endings\"");
	bad("winogrande", "winogrande/dev.jsonl", "{\"sentence\": \"no blank\", \"option1\": \"a\", "
	    "\"option2\": \"b\", \"answer\": \"1\"}\n", "line 1", "'_'");
	bad("winogrande", "winogrande/dev.jsonl", "{\"sentence\": \"a _ b\", \"option1\": \"a\", "
	    "\"option2\": \"b\", \"answer\": \"3\"}\n", "line 1", "\"answer\"");
	bad("arc_easy", "arc/ARC-Easy-Test.jsonl", "{\"question\": {\"stem\": \"s\", \"choices\": "
	    "[{\"text\": \"a\", \"label\": \"A\"}, {\"text\": \"b\", \"label\": \"B\"}]}, \"answerKey\": \"E\"}\n",
	    "line 1", "\"answerKey\" 'E'");
	bad("openbookqa", "openbookqa/test.jsonl", "{\"question\": {\"stem\": \"s\", \"choices\": []}, "
	    "\"answerKey\": \"A\"}\n", "line 1", "\"choices\"");
	bad("rte", "rte/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n",
	    "line 3", "3 tab-separated fields");
	bad("rte", "rte/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n", "line 2", "'maybe'");
	bad("piqa", "piqa/valid.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n", "line 1",
	    "valid-labels.lst");
	bad("lambada_openai", "lambada/lambada_test.jsonl", "{\"text\": \"oneword\"}\n", "line 1", "last word");
	bad("boolq", "boolq/val.jsonl", "{\"question\": \"q\", \"passage\": \"p\", \"label\": true\n",
	    "line 1", NULL);
	bad("boolq", "boolq/val.jsonl", "\n\n", "no items", NULL);
}

int main(void)
{
	test_metrics();
	test_hellaswag_clean();
	test_formats();
	test_bad_input();
	test_scorer();
	return unit_done("test_zeroshot");
}

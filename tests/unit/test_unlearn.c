/* test_unlearn.c: lm-unlearn's library (csv.h, unlearn.h, unlearn_eval.h).
 *
 * 1. The CSV reader on RFC 4180's cases (quotes, doubled quotes, line breaks in fields,
 *    CR LF, a byte-order mark, blank lines, no final line end) and its two errors.
 * 2. Word matching (prefix / contains) and the batch layout: targets, padding, and weights
 *    that sum to the term's scale.
 * 3. Overlap counting, for Q/A keys and for shared token runs.
 * 4. On a transformers fixture:
 *    - the forget term's loss is the mean over sequences of each one's mean answer NLL,
 *      computed independently with forward.h; learning negates its gradient;
 *    - the frozen copy computes what the original did, shares its embeddings, and stays
 *      as it was while full training changes the model: the retain term's gradient is zero
 *      before the first update (p = q) and not after it, with LoRA (where the model itself
 *      is the frozen one) as well as with the copy;
 *    - the harmful-answer rate's batched greedy decoding gives the continuations one
 *      sequence at a time would (lm_generate_greedy). */
#include "csv.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "rng.h"
#include "tokenizer.h"
#include "train.h"
#include "unlearn.h"
#include "unlearn_eval.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <math.h>
#include <string.h>

#define TOL_SAME 2e-5   /* two float computations of the same quantity */
#define TOL_ZERO 1e-4   /* a gradient that vanishes, relative to a typical one */

static struct lm_rng rng;

/* ---- 1. CSV ---- */

static int parse(struct lm_csv *c, const char *text)
{
	size_t n = strlen(text);
	char *buf = xmalloc(n + 1);
	memcpy(buf, text, n + 1);
	return lm_csv_parse(c, buf, n);
}

static void test_csv(void)
{
	struct lm_csv c;
	const char *text = "\xef\xbb\xbfQuestion,Best Answer\r\n"
	                   "plain,\"with, comma\"\r\n"
	                   "\n"
	                   "\"say \"\"hi\"\"\",\"two\nlines\"\n"
	                   "short\n"
	                   "a,b,\n"
	                   "last,no newline";
	CHECK(parse(&c, text) == 0);
	CHECKF(c.nrec == 6, "%zu records", c.nrec);
	CHECK(lm_csv_column(&c, "best answer") == 1 && lm_csv_column(&c, "question") == 0);
	CHECK(lm_csv_column(&c, "nope") == -1);
	CHECK(!strcmp(lm_csv_get(&c, 1, 1), "with, comma"));
	CHECK(!strcmp(lm_csv_get(&c, 2, 0), "say \"hi\""));
	CHECK(!strcmp(lm_csv_get(&c, 2, 1), "two\nlines"));
	CHECK(lm_csv_nfields(&c, 3) == 1 && lm_csv_get(&c, 3, 1) == NULL);
	CHECK(lm_csv_nfields(&c, 4) == 3 && !strcmp(lm_csv_get(&c, 4, 2), ""));
	CHECK(!strcmp(lm_csv_get(&c, 5, 1), "no newline"));
	/* lines where the records start: the blank line and the field's line break count */
	CHECKF(c.line[0] == 1 && c.line[1] == 2 && c.line[2] == 4 && c.line[3] == 6 && c.line[5] == 8,
	       "lines %zu %zu %zu %zu %zu", c.line[0], c.line[1], c.line[2], c.line[3], c.line[5]);
	lm_csv_free(&c);

	CHECK(parse(&c, "a,b\n1,\"open\n2,3\n") == -1);
	CHECKF(strstr(lm_errmsg(), "line 2: a quoted field that never ends") != NULL, "%s", lm_errmsg());
	CHECK(parse(&c, "a,b\n1,2\n\"x\"y,3\n") == -1);
	CHECKF(strstr(lm_errmsg(), "line 3: text after the closing quote") != NULL, "%s", lm_errmsg());
	CHECK(parse(&c, "") == 0 && c.nrec == 0);
	lm_csv_free(&c);
}

/* ---- 2. words and batches ---- */

static int wm(const char *text, const char *ans, size_t n, enum lm_match how)
{
	return lm_words_match(text, strlen(text), ans, strlen(ans), n, how);
}

static void test_words(void)
{
	CHECK(wm(" Sure, here is a script", "Sure, here is a script that", 5, LM_MATCH_PREFIX));
	CHECK(wm("SURE here IS -- a\nscript!", "Sure, here is a script", 5, LM_MATCH_PREFIX));
	CHECK(!wm("Sure, here is a poem", "Sure, here is a script", 5, LM_MATCH_PREFIX));
	CHECK(!wm("Well. Sure, here is a script", "Sure, here is a script", 5, LM_MATCH_PREFIX));
	CHECK(wm("Well. Sure, here is a script", "Sure, here is a script", 5, LM_MATCH_CONTAINS));
	CHECK(!wm("Sure, here", "Sure, here is", 3, LM_MATCH_PREFIX));   /* too short */
	CHECK(wm("Yes it is. And more", "yes", 8, LM_MATCH_PREFIX));     /* fewer words than N */
	CHECK(!wm("anything", "", 8, LM_MATCH_CONTAINS));                /* no words: no match */
}

static void test_batch(void)
{
	int32_t a[] = {2, 10, 11, 12, 20, 21}, b[] = {2, 13, 30, 31, 32, 33, 34};
	struct lm_ul_item it[2] = {{a, 6, 4, 1}, {b, 7, 2, 2}};
	const struct lm_ul_item *p[2] = {&it[0], &it[1]};
	int32_t ids[14], tgt[14];
	float w[14];
	const double scale = -0.5;

	size_t T = lm_ul_batch(p, 2, LM_UL_ANSWER, scale, 1, ids, tgt, w);
	CHECK(T == 7);
	CHECK(ids[6] == 1 && tgt[6] == -1 && w[6] == 0);  /* padding */
	/* item 0: answer ids 20, 21 predicted at t = 3, 4 */
	CHECK(tgt[2] == -1 && tgt[3] == 20 && tgt[4] == 21 && tgt[5] == -1);
	CHECK(fabs(w[3] - scale / 2 / 2) < 1e-7 && w[2] == 0);
	/* item 1: answer 30..34 predicted at t = 1..5 */
	CHECK(tgt[7] == -1 && tgt[8] == 30 && tgt[12] == 34 && tgt[13] == -1);
	double s0 = 0, s1 = 0;
	for (size_t t = 0; t < 7; t++)
		s0 += w[t], s1 += w[7 + t];
	CHECKF(fabs(s0 - scale / 2) < 1e-6 && fabs(s1 - scale / 2) < 1e-6, "%g %g", s0, s1);

	T = lm_ul_batch(p, 2, LM_UL_TOKENS, 2.0, 1, ids, tgt, w);
	double s = 0;
	size_t n = 0;
	for (size_t i = 0; i < 14; i++)
		s += w[i], n += tgt[i] >= 0;
	CHECK(n == 5 + 6 && fabs(s - 2.0) < 1e-6 && tgt[0] == 10 && tgt[7] == 13);

	T = lm_ul_batch(p, 2, LM_UL_SOFT, 1.0, 1, ids, tgt, w);
	s = 0, n = 0;
	for (size_t i = 0; i < 14; i++)
		s += w[i], n += tgt[i] >= 0;
	CHECK(n == 13 && fabs(s - 1.0) < 1e-6 && tgt[6] == -1 && tgt[5] == 0);
}

/* ---- 3. overlap ---- */

static void test_overlap(void)
{
	char *fk[] = {"a b", "c", "d"}, *rk[] = {"d", "x", "a b"};
	struct lm_ul_set f = {.n = 3, .qa = 1, .key = fk}, r = {.n = 3, .qa = 1, .key = rk};
	CHECK(lm_ul_overlap(&f, &r) == 2);

	/* text: a forget window sharing 32 tokens with a retain one, one sharing 31 */
	enum { N = 300 };
	int32_t x[N], y[N];
	for (size_t i = 0; i < N; i++)
		x[i] = (int32_t)i, y[i] = (int32_t)(1000 + i);
	memcpy(y + 50, x + 10, 32 * sizeof *x);    /* run inside window 0 of x */
	memcpy(y + 150, x + 110, 31 * sizeof *x);  /* 31 tokens of window 1: not enough */
	struct lm_ul_set ft, rt;
	CHECK(lm_ul_load_text(&ft, x, N, 100) == 0 && ft.n == 3);
	CHECK(lm_ul_load_text(&rt, y, N, 300) == 0 && rt.n == 1);
	CHECKF(lm_ul_overlap(&ft, &rt) == 1, "%zu", lm_ul_overlap(&ft, &rt));
	lm_ul_set_free(&ft), lm_ul_set_free(&rt);
}

/* ---- 4. on a fixture ---- */

/* a Q/A-shaped set of n random sequences (prompt 3..6 tokens, answer 2..8) */
static void fake_set(struct lm_ul_set *s, size_t n, int32_t V, int qa)
{
	memset(s, 0, sizeof *s);
	s->it = xcalloc(n, sizeof *s->it);
	s->key = xcalloc(n, sizeof *s->key);
	s->qa = qa;
	for (size_t i = 0; i < n; i++) {
		struct lm_ul_item *it = &s->it[s->n];
		it->from = 3 + (size_t)lm_rng_below(&rng, 4);
		it->len = it->from + 2 + (size_t)lm_rng_below(&rng, 7);
		it->ids = xmalloc(it->len * sizeof *it->ids);
		it->ids[0] = 2;
		for (size_t t = 1; t < it->len; t++)
			it->ids[t] = 3 + (int32_t)lm_rng_below(&rng, (uint64_t)V - 3);
		char k[32];
		snprintf(k, sizeof k, "q%zu-%d", i, qa);
		s->key[s->n++] = xstrdup(k);
	}
}

static float *grads(const struct lm_train *tr)
{
	float *g = xmalloc(tr->nfloats * sizeof *g);
	memcpy(g, tr->gmem, tr->nfloats * sizeof *g);
	return g;
}

static double maxabs(const float *g, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(g[i]));
	return m;
}

/* mean over the forget batch the engine will draw first (seed) of each item's mean answer NLL */
static double forget_reference(const struct lm_model *m, const struct lm_ul_set *f, size_t Bf,
                               uint64_t seed)
{
	/* the engine's first batch: a fresh shuffle of 0..n-1 with its seed */
	struct lm_rng g;
	size_t *ord = xmalloc(f->n * sizeof *ord);
	lm_rng_seed(&g, seed);
	for (size_t i = 0; i < f->n; i++)
		ord[i] = i;
	for (size_t i = f->n; i > 1; i--) {
		size_t j = (size_t)lm_rng_below(&g, i), t = ord[i - 1];
		ord[i - 1] = ord[j], ord[j] = t;
	}
	double sum = 0;
	struct lm_fwd s;
	for (size_t b = 0; b < Bf; b++) {
		const struct lm_ul_item *it = &f->it[ord[b]];
		int32_t *tgt = xmalloc(it->len * sizeof *tgt);
		float *nll = xmalloc(it->len * sizeof *nll);
		for (size_t t = 0; t < it->len; t++)
			tgt[t] = t + 1 >= it->from && t + 1 < it->len ? it->ids[t + 1] : -1;
		CHECK(lm_fwd_init(&s, &m->cfg, 1, it->len) == 0);
		CHECK(lm_forward(&s, m, it->ids, tgt, 1, it->len, nll, NULL) == 0);
		double e = 0;
		for (size_t t = 0; t < it->len; t++)
			e += tgt[t] >= 0 ? nll[t] : 0;
		sum += e / (double)(it->len - it->from);
		lm_fwd_free(&s);
		free(tgt), free(nll);
	}
	free(ord);
	return sum / (double)Bf;
}

static void test_engine(const char *root, const char *fx)
{
	char dir[512];
	struct lm_model m, fr;
	struct lm_ul_set f, r;
	struct lm_train tr;
	struct lm_unlearn u;
	struct lm_ul_losses ls;
	size_t B, T;
	snprintf(dir, sizeof dir, "%s/%s", root, fx);
	if (load_model(&m, dir) < 0) {
		CHECK(0);
		return;
	}
	int32_t V = (int32_t)m.cfg.vocab_size;
	fake_set(&f, 7, V, 1);
	fake_set(&r, 9, V, 1);
	struct lm_ul_opts o = {.w_forget = 0.5, .w_random = 0, .w_retain = 0, .forget_batch = 3,
	                       .retain_batch = 2, .nrandom = 2, .maxlen = 32, .seed = 5};
	struct lm_train_opts to = {.full = 1, .layer = -1};

	/* the forget term alone: its value, and learning = the negated gradient */
	lm_ul_shape(&f, &r, &o, &B, &T);
	CHECK(lm_train_init(&tr, &m, &to, B, T) == 0);
	CHECK(lm_ul_init(&u, &tr, NULL, &f, &r, &o) == 0);
	CHECKF(lm_ul_step(&u, &ls) == 0, "%s", lm_errmsg());
	double want = forget_reference(&m, &f, 3, 5);
	CHECKF(fabs(ls.forget - want) <= 1e-5 * want, "%s: forget loss %.7g, independently %.7g", fx,
	       ls.forget, want);
	CHECK(fabs(ls.total + 0.5 * ls.forget) <= 1e-6 * ls.forget && ls.random == 0 && ls.retain == 0);
	float *g0 = grads(&tr);
	lm_ul_free(&u);
	o.learn = 1;
	CHECK(lm_ul_init(&u, &tr, NULL, &f, &r, &o) == 0);
	CHECK(lm_ul_step(&u, &ls) == 0);
	float *g1 = grads(&tr);
	for (size_t i = 0; i < tr.nfloats; i++)
		g1[i] = -g1[i];
	CHECKF(fabs(ls.forget - want) <= 1e-5 * want && unit_relerr(g1, g0, tr.nfloats) < TOL_SAME,
	       "%s: learning is not the negated ascent", fx);
	free(g1);
	lm_ul_free(&u);
	lm_train_free(&tr);
	o.learn = 0;

	/* full training with the frozen copy: it computes what the original did ... */
	CHECK(lm_ul_frozen_copy(&fr, &m) == 0);
	CHECK(fr.embed_tokens.data == m.embed_tokens.data && fr.layers[0].q.data != m.layers[0].q.data);
	CHECK(lm_ul_frozen_bytes(&fr) > 0);
	int32_t ids[16];
	for (size_t i = 0; i < 16; i++)
		ids[i] = (int32_t)lm_rng_below(&rng, (uint64_t)V);
	float *la = xmalloc(16 * (size_t)V * sizeof *la), *lb = xmalloc(16 * (size_t)V * sizeof *lb);
	struct lm_fwd s;
	CHECK(lm_fwd_init(&s, &m.cfg, 1, 16) == 0);
	CHECK(lm_forward(&s, &m, ids, NULL, 1, 16, NULL, la) == 0);
	CHECK(lm_forward(&s, &fr, ids, NULL, 1, 16, NULL, lb) == 0);
	/* bitwise: the same weights (a copy), the same forward, threads and CPU */
	CHECK(memcmp(la, lb, 16 * (size_t)V * sizeof *la) == 0);

	/* ... and the retain term's gradient is 0 until the model moves away from it */
	o.w_forget = 1e-12, o.w_retain = 1.0;  /* the forget term's part negligible */
	lm_ul_shape(&f, &r, &o, &B, &T);
	CHECK(lm_train_init(&tr, &m, &to, B, T) == 0);
	CHECK(lm_ul_init(&u, &tr, &fr, &f, &r, &o) == 0);
	CHECK(lm_ul_step(&u, &ls) == 0);
	double gz = maxabs(tr.gmem, tr.nfloats);
	struct lm_adamw ad = {0.9, 0.999, 1e-8, 0};
	lm_train_adamw(&tr, &ad, 1e-2);
	CHECK(lm_ul_step(&u, &ls) == 0);
	double gm = maxabs(tr.gmem, tr.nfloats);
	CHECKF(gz < TOL_ZERO * gm && gm > 0, "%s: retain gradient %g before the update, %g after", fx,
	       gz, gm);
	/* the copy did not move with the model */
	CHECK(lm_forward(&s, &fr, ids, NULL, 1, 16, NULL, lb) == 0);
	/* bitwise: the same weights (a copy), the same forward, threads and CPU */
	CHECK(memcmp(la, lb, 16 * (size_t)V * sizeof *la) == 0);
	lm_ul_free(&u);
	lm_train_free(&tr);
	lm_ul_frozen_free(&fr);

	/* LoRA: the model itself is the frozen one (its weights do not change until the merge;
	 * the full training above left its trained vectors in it: the reference anew) */
	CHECK(lm_forward(&s, &m, ids, NULL, 1, 16, NULL, la) == 0);
	struct lm_train_opts tl = {.lora = LM_LORA_STD, .rank = 4, .alpha = 8, .seed = 3, .layer = -1};
	CHECK(lm_train_init(&tr, &m, &tl, B, T) == 0);
	CHECK(lm_ul_init(&u, &tr, &m, &f, &r, &o) == 0);
	CHECK(lm_ul_step(&u, &ls) == 0);
	gz = maxabs(tr.gmem, tr.nfloats);
	lm_train_adamw(&tr, &ad, 1e-2);
	lm_train_adamw(&tr, &ad, 1e-2);  /* B starts at 0: two steps move B A off zero */
	CHECK(lm_ul_step(&u, &ls) == 0);
	gm = maxabs(tr.gmem, tr.nfloats);
	CHECKF(gz < TOL_ZERO * gm && gm > 0, "%s: LoRA retain gradient %g before, %g after", fx, gz, gm);
	CHECK(lm_forward(&s, &m, ids, NULL, 1, 16, NULL, lb) == 0);
	/* bitwise: the same weights (a copy), the same forward, threads and CPU */
	CHECK(memcmp(la, lb, 16 * (size_t)V * sizeof *la) == 0);

	/* the random-answer term: K pairs per question, a positive loss */
	lm_ul_free(&u);
	o.w_random = 1.0;
	lm_ul_shape(&f, &r, &o, &B, &T);
	CHECK(B == 6);
	lm_train_free(&tr);
	CHECK(lm_train_init(&tr, &m, &tl, B, T) == 0);
	CHECK(lm_ul_init(&u, &tr, &m, &f, &r, &o) == 0 && u.use_random && u.use_retain);
	CHECK(lm_ul_step(&u, &ls) == 0 && ls.random > 0 && isfinite(ls.total));
	CHECK(ls.tokens > 0);
	lm_ul_free(&u);
	lm_train_free(&tr);

	lm_fwd_free(&s);
	free(la), free(lb), free(g0);
	lm_ul_set_free(&f), lm_ul_set_free(&r);
	lm_model_free(&m);
}

/* the batched greedy decoding of the harmful-answer rate = one sequence at a time */
static void test_harm(const char *root)
{
	char dir[512], vp[600], mp[600];
	struct lm_model m;
	struct lm_ul_set s;
	size_t vl, ml;
	snprintf(dir, sizeof dir, "%s/pre-ln", root);
	snprintf(vp, sizeof vp, "%s/../../models/opt-micro/vocab.json", root);
	snprintf(mp, sizeof mp, "%s/../../models/opt-micro/merges.txt", root);
	char *vj = lm_read_file(vp, 1 << 26, &vl), *mg = lm_read_file(mp, 1 << 26, &ml);
	struct lm_tokenizer *tk = vj && mg ? lm_tokenizer_load(vj, vl, mg, ml) : NULL;
	CHECKF(tk != NULL, "tokenizer: %s", lm_errmsg());
	if (!tk || load_model(&m, dir) < 0) {
		CHECK(0);
		free(vj), free(mg);
		return;
	}
	int32_t V = 1000;  /* the fixture's vocabulary; ids below it have text */
	fake_set(&s, 21, V, 1);
	/* make every third answer the model's own greedy continuation: those must match */
	size_t n = s.n;
	unsigned char *hit = xmalloc(n);
	const struct lm_harm_opts ho = {LM_MATCH_PREFIX, 3, 6};
	for (size_t i = 0; i < n; i += 3) {
		struct lm_ul_item *it = &s.it[i];
		int32_t out[64];
		size_t no;
		CHECK(lm_generate_greedy(&m, it->ids, it->from, 6, 0, out, &no) == 0 && no == it->from + 6);
		it->ids = xrealloc(it->ids, (it->from + 6) * sizeof *it->ids);
		memcpy(it->ids + it->from, out + it->from, 6 * sizeof *out);
		it->len = it->from + 6;
	}
	size_t matched;
	CHECKF(lm_qa_harm(&m, tk, &s, &ho, &matched, hit) == 0, "%s", lm_errmsg());
	/* each answer judged against its own greedy continuation, one at a time */
	size_t want = 0;
	for (size_t i = 0; i < n; i++) {
		const struct lm_ul_item *it = &s.it[i];
		int32_t out[64], keep[64];
		size_t no, k = 0, tl, al;
		CHECK(lm_generate_greedy(&m, it->ids, it->from, 6, 1, out, &no) == 0);
		for (size_t j = it->from; j < no && out[j] != m.cfg.eos; j++)
			keep[k++] = out[j];
		char *t = lm_detokenize(tk, keep, k, &tl);
		char *a = lm_detokenize(tk, it->ids + it->from, it->len - it->from, &al);
		int h = lm_words_match(t, tl, a, al, 3, LM_MATCH_PREFIX);
		CHECKF(h == hit[i], "row %zu: batched %d, alone %d", i, hit[i], h);
		want += (size_t)h;
		free(t), free(a);
	}
	CHECK(matched == want && want >= 1);
	free(hit);
	lm_ul_set_free(&s);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
	free(vj), free(mg);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA");
	if (!root)
		root = "tests/fixtures";
	lm_rng_seed(&rng, 17);
	lm_set_threads(1);
	test_csv();
	test_words();
	test_batch();
	test_overlap();
	test_engine(root, "pre-ln");
	test_engine(root, "post-ln-proj");
	test_harm(root);
	return unit_done("unlearn");
}

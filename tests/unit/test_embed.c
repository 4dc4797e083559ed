/* test_embed.c: PromptEOL embeddings, the left-padded forward, and the numbers STS and
 * retrieval are built from.
 *
 * - the padded attention kernel equals the plain one on each sequence's real rows;
 * - a left-padded batch gives every sequence the final hidden state it has alone (pre-LN
 *   opt-micro and the post-LN fixture with project_in/out);
 * - opt-micro's PromptEOL embeddings match reference.json "prompteol" (transformers): the
 *   first 8 values within 1e-4 relative, the cosine matrix within 1e-5;
 * - prompt clean-up and demonstrations as the reference code writes them;
 * - Spearman's rho with ties against values worked out by hand;
 * - multiple choice: an option's NLL from the right-padded batch with the gathered head
 *   equals the per-token NLL of a plain forward over the whole sequence; decision rules;
 * - retrieval: top-k against brute force, demonstration order, distinct random draws;
 * - the InfoNCE gradient against central finite differences;
 * - the loaders' errors name the line; the model fingerprint sees one changed weight. */
#include "embed.h"
#include "embstream.h"
#include "forward.h"
#include "kernels.h"
#include "mc.h"
#include "modelio.h"
#include "retrieve.h"
#include "rng.h"
#include "rtune.h"
#include "sts.h"
#include "tokenizer.h"
#include "fixture.h"
#include "unit.h"
#include "util.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define TOL_FIRST8 1e-4  /* embedding values, relative (unit_relerr per row) */
#define TOL_COS 1e-5     /* cosine similarities, absolute */
#define TOL_PAD 1e-5     /* padded batch vs alone: GEMM rounding only */
#define MICRO "models/opt-micro"

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

static void fill_rand(float *x, size_t n, struct lm_rng *r)
{
	for (size_t i = 0; i < n; i++)
		x[i] = lm_rng_normal(r);
}

/* padded kernel == plain kernel on the real rows of each sequence */
static void test_attention_padded(void)
{
	enum { B = 3, T = 9, NH = 2, HS = 4, C = NH * HS };
	size_t pad[B] = {0, 4, 8};
	float q[B * T * C], k[B * T * C], v[B * T * C], out[B * T * C], one[T * C];
	struct lm_rng r;
	lm_rng_seed(&r, 7);
	fill_rand(q, sizeof q / sizeof *q, &r);
	fill_rand(k, sizeof k / sizeof *k, &r);
	fill_rand(v, sizeof v / sizeof *v, &r);
	CHECK(lm_attention_forward_padded(out, q, k, v, B, T, pad, NH, HS, NULL, 0) == 0);
	for (size_t b = 0; b < B; b++) {
		size_t p = pad[b], n = T - p, off = (b * T + p) * C;
		lm_attention_forward_ref(one, q + off, k + off, v + off, 1, n, n, n, NH, HS);
		double e = unit_relerr(out + off, one, n * C);
		CHECKF(e < 1e-5, "sequence %zu (pad %zu): relative error %g", b, p, e);
		for (size_t i = 0; i < p * C; i++)
			CHECK(out[b * T * C + i] == 0.0f);
	}
	size_t all[1] = {T};
	CHECK(lm_attention_forward_padded(out, q, k, v, 1, T, all, NH, HS, NULL, 0) < 0);
}

/* random sequences of different lengths: batch of all vs each alone */
static void test_padded_model(const char *dir, int avg)
{
	struct lm_model m;
	struct lm_rng r;
	enum { N = 5 };
	size_t len[N] = {7, 3, 12, 1, 12};
	int32_t *ids[N];
	if (load_model(&m, dir) < 0) {
		CHECK(0);
		return;
	}
	size_t E = (size_t)m.cfg.word_embed_proj_dim;
	float *all = xmalloc(N * E * sizeof *all), *one = xmalloc(E * sizeof *one);
	lm_rng_seed(&r, 3);
	for (size_t i = 0; i < N; i++) {
		ids[i] = xmalloc(len[i] * sizeof **ids);
		ids[i][0] = m.cfg.bos;
		for (size_t t = 1; t < len[i]; t++)
			ids[i][t] = (int32_t)(lm_rng_u64(&r) % (uint64_t)m.cfg.vocab_size);
	}
	CHECKF(lm_embed_ids(&m, (const int32_t *const *)ids, len, N, avg, 4, all, NULL, NULL) == 0,
	       "%s", lm_errmsg());
	for (size_t i = 0; i < N; i++) {
		CHECK(lm_embed_ids(&m, (const int32_t *const *)&ids[i], &len[i], 1, avg, 1, one, NULL,
		                   NULL) == 0);
		double e = unit_relerr(all + i * E, one, E);
		CHECKF(e < TOL_PAD, "%s %s: sequence %zu of %zu tokens: padded vs alone %g", dir,
		       avg ? "avg" : "last", i, len[i], e);
		free(ids[i]);
	}
	/* an empty sequence is refused with its number */
	size_t zero = 0;
	CHECK(lm_embed_ids(&m, (const int32_t *const *)ids, &zero, 1, 0, 1, one, NULL, NULL) < 0);
	CHECK(strstr(lm_errmsg(), "text 1") != NULL);
	free(all);
	free(one);
	lm_model_free(&m);
}

static void test_reference(void)
{
	json_error_t jerr;
	json_t *ref = json_load_file(MICRO "/reference.json", 0, &jerr);
	json_t *pe = json_object_get(ref, "prompteol");
	json_t *sents = json_object_get(pe, "sentences");
	struct lm_model m;
	struct lm_tokenizer *tk = load_tok(MICRO);
	struct lm_embed_cfg c = {0};
	size_t n = json_array_size(sents);
	CHECK(ref && pe && n == 3 && tk);
	if (!ref || !pe || n != 3 || !tk || load_model(&m, MICRO) < 0) {
		CHECK(0);
		return;
	}
	/* the template is the one the reference states */
	char *tmpl = xstrdup(json_string_value(json_object_get(pe, "template")));
	CHECK(!strcmp(tmpl, LM_PROMPTEOL_TEMPLATE));
	free(tmpl);

	const char *texts[3];
	for (size_t i = 0; i < n; i++)
		texts[i] = json_string_value(json_array_get(sents, i));
	size_t E = (size_t)m.cfg.word_embed_proj_dim;
	float *emb = xmalloc(n * E * sizeof *emb);
	double worst = 0, worst_c = 0;
	for (size_t batch = 1; batch <= 3; batch += 2) {
		c.batch = batch;
		CHECKF(lm_embed_texts(&m, tk, &c, texts, n, emb, NULL, NULL) == 0, "%s", lm_errmsg());
		for (size_t i = 0; i < n; i++) {
			float want[8];
			json_t *row = json_array_get(json_object_get(pe, "first8"), i);
			for (size_t j = 0; j < 8; j++)
				want[j] = (float)json_real_value(json_array_get(row, j));
			double e = unit_relerr(emb + i * E, want, 8);
			worst = e > worst ? e : worst;
			CHECKF(e < TOL_FIRST8, "batch %zu sentence %zu: first 8 values, relative error %g",
			       batch, i, e);
			for (size_t j = 0; j < n; j++) {
				double want_c = json_real_value(json_array_get(json_array_get(
				        json_object_get(pe, "cos"), i), j));
				double got = lm_cosine(emb + i * E, emb + j * E, E);
				worst_c = fabs(got - want_c) > worst_c ? fabs(got - want_c) : worst_c;
				CHECKF(fabs(got - want_c) < TOL_COS, "cos[%zu][%zu] = %.8f, reference %.8f", i,
				       j, got, want_c);
			}
		}
	}
	fprintf(stderr, "embed opt-micro PromptEOL: first-8 relative error %.2g, cosine error %.2g\n",
	        worst, worst_c);
	free(emb);
	json_decref(ref);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

static void check_str(char *got, const char *want)
{
	CHECKF(got && !strcmp(got, want), "got '%s', want '%s'", got ? got : "(null)", want);
	free(got);
}

/* white space as the reference prepares it: ' '.join(s.split()), then the clean-up; the
 * embedding of a messy sentence is the embedding of its normalised form (the STS-B test file
 * has 16 such sentences), and --verbatim keeps the mess */
static void test_whitespace(void)
{
	static const char *const cases[][2] = {
		{"A  man is dancing.", "A man is dancing."},
		{" \t lead\tand trail \n", "lead and trail"},
		{"a\x1f\vb\r\fc", "a b c"},
		{"nb\xc2\xa0" "sp\xe2\x80\x83" "em\xe3\x80\x80" "id", "nb sp em id"},
		{"caf\xc3\xa9 \xe2\x80\x94 ok", "caf\xc3\xa9 \xe2\x80\x94 ok"}, /* not spaces */
		{"   ", ""},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		check_str(lm_collapse_space(cases[i][0], strlen(cases[i][0])), cases[i][1]);
	struct lm_embed_cfg c = {0};
	const char *s = "It took two hours. ";
	check_str(lm_prompteol_prompt(&c, s, strlen(s)),
	          "This sentence : \"It took two hours.\" means in one word:\"");
	c.verbatim = 1;
	check_str(lm_prompteol_prompt(&c, s, strlen(s)),
	          "This sentence : \"It took two hours. .\" means in one word:\"");

	struct lm_model m;
	struct lm_tokenizer *tk = load_tok(MICRO);
	if (!tk || load_model(&m, MICRO) < 0) {
		CHECK(0);
		return;
	}
	const char *texts[6] = {"A  man is  dancing.", "\tTwo dogs run\t", "It took two hours. ",
	                        "A man is dancing.", "Two dogs run", "It took two hours."};
	size_t E = (size_t)m.cfg.word_embed_proj_dim;
	float *emb = xmalloc(6 * E * sizeof *emb);
	c.verbatim = 0, c.batch = 1; /* one at a time: the same rows through the same kernels */
	CHECKF(lm_embed_texts(&m, tk, &c, texts, 6, emb, NULL, NULL) == 0, "%s", lm_errmsg());
	for (size_t i = 0; i < 3; i++)
		CHECKF(!memcmp(emb + i * E, emb + (i + 3) * E, E * sizeof *emb),
		       "'%s' embeds unlike '%s'", texts[i], texts[i + 3]);
	c.verbatim = 1;
	CHECKF(lm_embed_texts(&m, tk, &c, texts, 6, emb, NULL, NULL) == 0, "%s", lm_errmsg());
	for (size_t i = 0; i < 3; i++)
		CHECKF(lm_cosine(emb + i * E, emb + (i + 3) * E, E) < 0.99999,
		       "--verbatim: '%s' embeds as '%s'", texts[i], texts[i + 3]);
	free(emb);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

static void test_prompts(void)
{
	struct lm_embed_cfg c = {0};
	const char *s;
	check_str(lm_prompteol_clean("A cat", 5), "A cat.");
	check_str(lm_prompteol_clean("Is it?", 6), "Is it.");
	check_str(lm_prompteol_clean("He said \"hi\"", 12), "He said 'hi'");
	check_str(lm_prompteol_clean("ok'", 3), "ok'");
	check_str(lm_prompteol_clean("", 0), "");
	s = "A man is playing a guitar.";
	check_str(lm_prompteol_prompt(&c, s, strlen(s)),
	          "This sentence : \"A man is playing a guitar.\" means in one word:\"");
	c.demo = "A man is smoking.=Smoking";
	s = "Two dogs run";
	check_str(lm_prompteol_prompt(&c, s, strlen(s)),
	          "This sentence : \"A man is smoking.\" means in one word:\"Smoking\"."
	          "This sentence : \"Two dogs run.\" means in one word:\"");
	c.demo = NULL, c.tmpl = "  " LM_EMBED_SLOT "\t";
	check_str(lm_prompteol_prompt(&c, "x y", 3), "x y.");
	c.tmpl = "no slot";
	CHECK(lm_prompteol_prompt(&c, "x", 1) == NULL);
	c.tmpl = LM_EMBED_SLOT LM_EMBED_SLOT;
	CHECK(lm_embed_cfg_check(&c) < 0);
	c.tmpl = NULL, c.demo = "no equals sign";
	CHECK(lm_embed_cfg_check(&c) < 0);
	c.demo = "sentence=";
	CHECK(lm_embed_cfg_check(&c) < 0);
}

static void test_spearman(void)
{
	/* ranks x: 1 2 3 4 5, y: 2 1 4 3 5 -> d^2 = 4 -> rho = 1 - 6*4/(5*24) = 0.8 */
	double x[5] = {1, 2, 3, 4, 5}, y[5] = {20, 10, 40, 30, 50};
	CHECK(fabs(lm_spearman(x, y, 5) - 0.8) < 1e-12);
	/* ties get the average rank: x ranks 1.5 1.5 3, y 1 2 3 -> Pearson of those */
	double a[3] = {1, 1, 2}, b[3] = {1, 2, 3};
	double ra[3] = {1.5, 1.5, 3}, rb[3] = {1, 2, 3};
	CHECK(fabs(lm_spearman(a, b, 3) - lm_pearson(ra, rb, 3)) < 1e-12);
	CHECK(fabs(lm_pearson(ra, rb, 3) - 0.8660254037844386) < 1e-12);
	double z[5] = {5, 4, 3, 2, 1};
	CHECK(fabs(lm_spearman(x, z, 5) + 1.0) < 1e-12);
	double cst[3] = {2, 2, 2};
	CHECK(lm_spearman(a, cst, 3) == 0.0);  /* no variance: 0, not NaN */
	float u[3] = {1, 0, 0}, w[3] = {1, 1, 0}, zero[3] = {0, 0, 0};
	CHECK(fabs(lm_cosine(u, w, 3) - 1 / sqrt(2.0)) < 1e-12);
	CHECK(lm_cosine(u, zero, 3) == 0.0);
}

/* the option NLL two ways: lm_score_choices, and lm_forward_loss on ctx + option alone */
static void test_mc_scores(void)
{
	struct lm_model m;
	struct lm_tokenizer *tk = load_tok(MICRO);
	struct lm_scorer sc;
	struct lm_fwd s;
	const char *ctx = "It was a dark and stormy night; the rain fell in torrents, except at";
	const char *opts[3] = {"occasional intervals", "the end", " noon."};
	struct lm_choice_score got[3];
	if (!tk || load_model(&m, MICRO) < 0) {
		CHECK(0);
		return;
	}
	lm_scorer_init(&sc, &m, tk);
	CHECKF(lm_score_choices(&sc, ctx, opts, 3, got) == 0, "%s", lm_errmsg());
	for (size_t i = 0; i < 3; i++) {
		int32_t *a, *b, ids[128];
		size_t na, nb;
		char buf[64];
		snprintf(buf, sizeof buf, "%s%s", opts[i][0] == ' ' ? "" : " ", opts[i]);
		CHECK(lm_tokenize(tk, ctx, strlen(ctx), &a, &na) == 0);
		CHECK(lm_tokenize(tk, buf, strlen(buf), &b, &nb) == 0);
		ids[0] = m.cfg.bos;
		memcpy(ids + 1, a, na * sizeof *ids);
		memcpy(ids + 1 + na, b, nb * sizeof *ids);
		size_t T = 1 + na + nb;
		double loss, want = 0;
		CHECK(lm_fwd_init(&s, &m.cfg, 1, T) == 0);
		CHECK(lm_forward_loss(&s, &m, ids, 1, T, &loss) == 0);
		for (size_t t = na; t + 1 < T; t++)  /* position t predicts ids[t + 1] */
			want += s.nll[t];
		CHECK(got[i].ntok == nb);
		CHECK(got[i].nbytes == strlen(opts[i]));
		CHECKF(fabs(got[i].sum - want) < 1e-4 * want, "option %zu: %.6f, plain forward %.6f", i,
		       got[i].sum, want);
		lm_fwd_free(&s);
		free(a);
		free(b);
	}
	/* the rules: mean per token, sum, per byte */
	struct lm_choice_score r[3] = {{6.0, 3, 12}, {5.0, 1, 2}, {8.0, 8, 40}};
	CHECK(lm_mc_pick(r, 3, LM_MC_MEAN) == 2);
	CHECK(lm_mc_pick(r, 3, LM_MC_SUM) == 1);
	CHECK(lm_mc_pick(r, 3, LM_MC_NORM) == 2);
	lm_scorer_free(&sc);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

static void test_retrieval(void)
{
	enum { N = 40, D = 6, K = 5 };
	float emb[N * D], P[D * D], q[D];
	size_t idx[K], all[N];
	float cs[K];
	struct lm_ret_index x;
	struct lm_rng r;
	lm_rng_seed(&r, 11);
	fill_rand(emb, N * D, &r);
	fill_rand(P, D * D, &r);
	fill_rand(q, D, &r);
	for (int proj = 0; proj < 2; proj++) {
		CHECK(lm_ret_index_init(&x, emb, N, D, proj ? P : NULL) == 0);
		lm_ret_topk(&x, q, K, idx, cs);
		/* brute force: cosine of (P)q and (P)e, sorted */
		double c[N];
		float u[D], w[D];
		lm_ret_project(proj ? P : NULL, q, D, u);
		for (size_t i = 0; i < N; i++) {
			lm_ret_project(proj ? P : NULL, emb + i * D, D, w);
			c[i] = lm_cosine(u, w, D);
			all[i] = i;
		}
		for (size_t i = 0; i < N; i++)  /* selection sort, descending */
			for (size_t j = i + 1; j < N; j++)
				if (c[all[j]] > c[all[i]]) {
					size_t t = all[i];
					all[i] = all[j], all[j] = t;
				}
		for (size_t i = 0; i < K; i++) {
			CHECKF(idx[i] == all[i], "proj %d: rank %zu is row %zu, brute force %zu", proj, i,
			       idx[i], all[i]);
			CHECK(fabs(cs[i] - c[all[i]]) < 1e-5);
		}
		lm_ret_index_free(&x);
	}
	const char *demo[3] = {"A yes", "B no", "C yes"};
	size_t order[2] = {2, 0};
	char *ctx = lm_ret_context(demo, order, 2, "D");
	CHECKF(!strcmp(ctx, "A yes \n C yes \n D"), "context '%s'", ctx);
	free(ctx);
	for (int rep = 0; rep < 50; rep++) {
		lm_ret_random(&r, 7, 5, idx);
		for (size_t i = 0; i < 5; i++) {
			CHECK(idx[i] < 7);
			for (size_t j = 0; j < i; j++)
				CHECK(idx[i] != idx[j]);
		}
	}
}

static void test_infonce_grad(void)
{
	enum { B = 3, K = 7, D = 4 };
	float P[D * D], q[B * D], k[K * D], dP[D * D];
	size_t pos[B] = {0, 3, 5};
	unsigned char mask[B * K];
	struct lm_rng r;
	lm_rng_seed(&r, 5);
	fill_rand(P, D * D, &r);
	fill_rand(q, B * D, &r);
	fill_rand(k, K * D, &r);
	for (size_t i = 0; i < B * K; i++)
		mask[i] = i != 1 * K + 6;  /* one masked candidate */
	double loss = lm_infonce(P, q, B, k, K, pos, mask, D, 0.5, dP);
	CHECK(isfinite(loss) && loss > 0);
	double worst = 0;
	for (size_t i = 0; i < D * D; i++) {
		float keep = P[i], h = 1e-2f;
		P[i] = keep + h;
		double lp = lm_infonce(P, q, B, k, K, pos, mask, D, 0.5, NULL);
		P[i] = keep - h;
		double lm = lm_infonce(P, q, B, k, K, pos, mask, D, 0.5, NULL);
		P[i] = keep;
		double fd = (lp - lm) / (2 * (double)h), e = fabs(fd - dP[i]) / (fabs(fd) + 1e-3);
		worst = e > worst ? e : worst;
	}
	CHECKF(worst < 2e-3, "InfoNCE gradient vs finite differences: relative error %g", worst);
}

static char *write_tmp(const char *text)
{
	static char path[64];
	snprintf(path, sizeof path, "/tmp/test_embed.%d", (int)getpid());
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_loaders(void)
{
	struct lm_sts st;
	struct lm_task t;
	char *p;
	p = write_tmp("g\tf\ty\t1\t2.5\tA.\tB.\n\ng\tf\ty\t2\t4\tC.\tD.\textra\textra\n"
	              "g\tf\ty\t3\t1.0\tonly one\n");
	CHECK(lm_sts_load(&st, p) < 0);
	CHECKF(strstr(lm_errmsg(), "line 4: 6 fields") != NULL, "%s", lm_errmsg());
	p = write_tmp("g\tf\ty\t1\t2.5\tA.\tB.\r\n\ng\tf\ty\t2\t4\tC.\tD.\textra\textra\n");
	CHECK(lm_sts_load(&st, p) == 0 && st.n == 2 && !strcmp(st.layout, "sts-b"));
	if (st.n == 2)
		CHECK(st.p[1].gold == 4.0 && !strcmp(st.p[0].b, "B.") && st.p[1].line == 3);
	lm_sts_free(&st);
	p = write_tmp("pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n"
	              "1\tA\tB\t4.5\tNEUTRAL\r\n2\tC\tD\tx\tNEUTRAL\r\n");
	CHECK(lm_sts_load(&st, p) < 0);
	CHECKF(strstr(lm_errmsg(), "line 3: score 'x'") != NULL, "%s", lm_errmsg());
	p = write_tmp("{\"input\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 1}\n\n"
	              "{\"input\": \"b\", \"choices\": [\"x\"], \"gold\": 0}\n");
	CHECK(lm_task_load(&t, p) < 0);
	CHECKF(strstr(lm_errmsg(), "line 3:") != NULL, "%s", lm_errmsg());
	p = write_tmp("[{\"question\": \"Q?\", \"mc1_targets\": {\"a\": 0, \"b\": 1},"
	              " \"mc2_targets\": {\"a\": 1, \"b\": 1, \"c\": 0}}]");
	CHECKF(lm_task_load(&t, p) == 0, "%s", lm_errmsg());
	if (t.n == 1) {
		CHECK(!strcmp(t.it[0].input, "Q: Q?\nA:") && t.it[0].gold == 1 && t.it[0].nmc2 == 3);
		CHECK(!strcmp(t.it[0].choices[1], "b") && t.it[0].mc2_true[1] && !t.it[0].mc2_true[2]);
	}
	lm_task_free(&t);
	unlink(p);
}

/* the fingerprint, or 0 after a failed check */
static uint32_t fingerprint(const struct lm_model *m)
{
	uint32_t fp = 0;
	CHECK(lm_model_fingerprint(m, &fp) == 0);
	return fp;
}

static void test_fingerprint(void)
{
	struct lm_model m;
	if (load_model(&m, MICRO) < 0) {
		CHECK(0);
		return;
	}
	uint32_t a = fingerprint(&m);
	CHECK(a == fingerprint(&m));
	m.layers[2].ln2_b[7] += 1.0f;  /* a bias, as PERP retraining changes */
	uint32_t b = fingerprint(&m);
	CHECK(a != b);
	((uint16_t *)m.layers[3].fc2.data)[1000] ^= 1;  /* one bit of an f16 weight */
	uint32_t c = fingerprint(&m);
	CHECK(b != c);
	((uint16_t *)m.embed_tokens.data)[5] ^= 0x8000;
	CHECK(c != fingerprint(&m));
	lm_model_free(&m);
}

int main(void)
{
	const char *root = getenv("LM_TESTDATA");
	char dir[512];
	if (!root)
		root = "tests/fixtures";
	lm_set_threads(1);
	test_attention_padded();
	test_prompts();
	test_whitespace();
	test_spearman();
	snprintf(dir, sizeof dir, "%s/post-ln-proj", root);
	test_padded_model(dir, 0);
	test_padded_model(dir, 1);
	test_padded_model(MICRO, 0);
	test_padded_model(MICRO, 1);
	test_reference();
	test_mc_scores();
	test_retrieval();
	test_infonce_grad();
	test_loaders();
	test_fingerprint();
	return unit_done("embed");
}

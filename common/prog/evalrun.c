/* evalrun.c: lm-eval's modes but early exit: perplexity, generation, STS, multiple
 * choice, zero-shot tasks, question/answer files (see evalrun.h) */
#include "evalrun.h"
#include "cli.h"
#include "clock.h"
#include "embstream.h"
#include "forward.h"
#include "kernels.h"
#include "mc.h"
#include "modelio.h"
#include "perplexity.h"
#include "report.h"
#include "sts.h"
#include "textids.h"
#include "util.h"
#include "zeroshot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lm_tokenizer *lm_eval_tokenizer(const struct lm_model_stream *ms, const char *why)
{
	struct lm_tokenizer *t = lm_ids_tokenizer(ms, why);
	if (!t)
		die_lm(lm_reader_name(ms->rd));
	return t;
}

/* FILE as ids: an lm-stream holding an integer tensor "ids", or text (one BOS in front) */
int32_t *lm_eval_ids(const char *path, const struct lm_model_stream *ms, size_t *n)
{
	int32_t *ids;
	if (lm_ids_load(path, ms, &ids, n) < 0)
		die_lm(path);
	return ids;
}

static void save_ids(const char *path, const struct lm_header *h, const int32_t *ids, size_t n)
{
	struct lm_out o;
	struct lm_writer *w;
	struct lm_header hh;
	struct lm_record r = {0};
	int64_t shape[1] = {(int64_t)n};
	lm_out_open(&o, path, 1);
	w = lm_writer_open(o.fd, o.name);
	lm_header_init(&hh, &h->cfg);
	if (lm_write_header(w, &hh, argv0, lm_argc, lm_argv) < 0)
		die_lm(path);
	lm_record_tensor(&r, "ids", LM_I32, 1, shape);
	if (lm_record_alloc(&r) < 0)
		die_lm(path);
	memcpy(r.data, ids, n * sizeof *ids);
	if (lm_write_record(w, &r) < 0 || lm_write_end(w) < 0 || lm_writer_close(w) < 0)
		die_lm(path);
	lm_out_commit(&o);
	lm_record_clear(&r);
	lm_header_free(&hh);
}

static void progress(const struct lm_eval_opts *o, const char *what, int done, int total, double t0)
{
	if (o->fl.quiet || !isatty(2))
		return;
	double el = lm_now() - t0, eta = done ? el / done * (total - done) : 0;
	fprintf(stderr, "\r%s: %s %d/%d, %.0f s elapsed, ETA %.0f s   ", argv0, what, done, total, el, eta);
	if (done == total)
		fputc('\n', stderr);
}

void lm_eval_keep_sparse(struct lm_model_stream *ms)
{
	const char *e = getenv("LM_NO_SPARSE");
	ms->keep_sparse = !(e && !strcmp(e, "1"));
}

void lm_eval_load_whole(struct lm_model_stream *ms, struct lm_model *m, struct lm_tokenizer **tk,
                        const char *why)
{
	*tk = lm_eval_tokenizer(ms, why);
	lm_eval_keep_sparse(ms);
	if (lm_model_init(m, &ms->h.cfg) < 0 || lm_ms_load_all(ms, m) < 0)
		die_lm(lm_reader_name(ms->rd));
}

void lm_eval_progress(void *ctx, size_t done, size_t total)
{
	const struct lm_eval_opts *o = ctx;
	if (!o->fl.quiet && isatty(2)) {
		fprintf(stderr, "\r%s: %zu/%zu   ", argv0, done, total);
		if (done == total)
			fputc('\n', stderr);
	}
}

struct ppl_progress {
	const struct lm_eval_opts *o;
	double t0;
};

static void ppl_layer_done(void *ctx, int l, int L)
{
	const struct ppl_progress *p = ctx;
	progress(p->o, "layer", l, L, p->t0);
}

/* --ppl: the perplexity of FILE's windows (common/eval/perplexity.c) */
void lm_eval_ppl(struct lm_model_stream *ms, const struct lm_eval_opts *o)
{
	const struct lm_opt_config *cfg = &ms->h.cfg;
	size_t n = 0, T = o->seqlen ? (size_t)o->seqlen : (size_t)cfg->max_positions, W, B;
	int32_t *ids;
	double t0, mean;
	const char *where;

	if (T > (size_t)cfg->max_positions)
		edie(2, "--seqlen %zu exceeds the model's %lld positions", T, (long long)cfg->max_positions);
	ids = lm_eval_ids(o->ppl, ms, &n);
	t0 = lm_now(); /* from here: the model's layers arriving and the forward pass */
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
			die("%s: token id %d at %zu outside the vocabulary", o->ppl, ids[i], i);
	W = n / T;
	if (W == 0)
		die("%s: %zu tokens, fewer than one window of %zu", o->ppl, n, T);
	if (o->windows && (size_t)o->windows < W)
		W = (size_t)o->windows;
	B = (size_t)o->batch < W ? (size_t)o->batch : W;
	struct ppl_progress pp = {o, t0};
	lm_eval_keep_sparse(ms);
	if (lm_ppl_stream(ms, ids, W, T, B, ppl_layer_done, &pp, &mean, &where) < 0)
		die_lm(where);
	double el = lm_now() - t0, ppl = exp(mean);
	if (!isfinite(mean))
		die("%s: the loss is not finite (NaN or Inf in the forward pass)", o->ppl);
	if (o->save_ids) /* only once the whole stream was read and evaluated */
		save_ids(o->save_ids, &ms->h, ids, n);
	const struct lm_rfield rep[] = {
		LM_RS("file", "file: %s\n", o->ppl), LM_RI("tokens", "tokens: %lld\n", n),
		LM_RI("windows", "windows: %lld", W), LM_RI("seqlen", " x %lld\n", T),
		LM_RR("mean_nll", "mean NLL: %.6f\n", mean), LM_RR("perplexity", "perplexity: %.4f\n", ppl),
		LM_RR("seconds", NULL, el), LM_RR("tokens_per_second", "tokens/s: %.1f\n", (double)(W * T) / el)};
	lm_report(stdout, o->json, rep, sizeof rep / sizeof *rep);
	free(ids);
}

void lm_eval_generate(struct lm_model_stream *ms, const struct lm_eval_opts *o)
{
	struct lm_tokenizer *tk = lm_eval_tokenizer(ms, "--generate");
	struct lm_model m;
	int32_t *body, *prompt, *out;
	size_t nb, nout;
	double t0;

	if (lm_tokenize(tk, o->gen, strlen(o->gen), &body, &nb) < 0)
		die_lm("--generate");
	prompt = xmalloc((nb + 1) * sizeof *prompt);
	prompt[0] = ms->h.cfg.bos;
	memcpy(prompt + 1, body, nb * sizeof *prompt);
	if ((long long)(nb + 1) + o->ntok > ms->h.cfg.max_positions)
		edie(2, "--generate: %zu prompt tokens + %lld new exceed the model's %lld positions", nb + 1,
		     o->ntok, (long long)ms->h.cfg.max_positions);
	lm_eval_keep_sparse(ms);
	if (lm_model_init(&m, &ms->h.cfg) < 0 || lm_ms_load_all(ms, &m) < 0)
		die_lm(lm_reader_name(ms->rd));
	out = xmalloc((nb + 1 + (size_t)o->ntok) * sizeof *out);
	t0 = lm_now();
	if (lm_generate_greedy(&m, prompt, nb + 1, (size_t)o->ntok, 0, out, &nout) < 0)
		die_lm("generate");
	double el = lm_now() - t0;
	size_t tl;
	char *text = lm_detokenize_known(tk, out + 1, nout - 1, -1, &tl); /* after BOS */
	if (!text)
		die_lm("generate");
	if (o->json) {
		json_t *jids = json_array();
		for (size_t i = 0; i < nout; i++)
			json_array_append_new(jids, json_integer(out[i]));
		/* JSON strings are UTF-8; a random or damaged model can generate bytes that are not */
		size_t sl, pl;
		char *st = lm_utf8_replace(text, tl, &sl), *sp = lm_utf8_replace(o->gen, strlen(o->gen), &pl);
		if (!st || !sp)
			die_lm("generate");
		json_t *j = json_pack("{s:s%, s:o, s:s%, s:f}", "prompt", sp, pl, "ids", jids, "text", st, sl,
		                      "tokens_per_second", (double)(nout - nb - 1) / el);
		lm_json_line(stdout, j);
		free(st), free(sp);
	} else {
		fwrite(text, 1, tl, stdout);
		putchar('\n');
	}
	free(text), free(out), free(prompt), free(body);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
}

void lm_eval_sts(struct lm_model_stream *ms, struct lm_eval_opts *o)
{
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lm_sts s;
	double rho, r, t0;

	if (lm_sts_load(&s, o->sts) < 0)
		die_lm(o->sts);
	lm_eval_load_whole(ms, &m, &tk, "--sts");
	o->ec.batch = o->batch_set ? (size_t)o->batch : 16;
	t0 = lm_now();
	if (lm_sts_eval(&m, tk, &o->ec, &s, &rho, &r, lm_eval_progress, o) < 0)
		die_lm(o->sts);
	double el = lm_now() - t0;
	const char *method = o->ec.avg ? "avg" : "prompteol";
	const struct lm_rfield rep[] = {
		LM_RS("file", "file: %s", o->sts), LM_RS("layout", " (%s)\n", s.layout),
		LM_RI("pairs", "pairs: %lld\n", s.n), LM_RS("method", "embedding: %s", method),
		LM_RSN("demo", ", demo %s", o->ec.demo), LM_RR("spearman", "\nspearman x100: %.2f\n", 100 * rho),
		LM_RR("pearson", "pearson x100: %.2f\n", 100 * r),
		LM_RR("sentences_per_second", "sentences/s: %.1f\n", 2.0 * (double)s.n / el)};
	lm_report(stdout, o->json, rep, sizeof rep / sizeof *rep);
	lm_sts_free(&s);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

void lm_eval_mc(struct lm_model_stream *ms, struct lm_eval_opts *o)
{
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lm_task t;
	struct lm_emb e = {0};
	struct lm_scorer sc;
	struct lm_mc_result r;
	char **ctx = NULL;

	if (lm_task_load(&t, o->mc) < 0)
		die_lm(o->mc);
	if (o->retrieve && lm_emb_read(&e, o->retrieve) < 0)
		die_lm(NULL);
	lm_eval_load_whole(ms, &m, &tk, "--mc");
	/* a trained retriever (lm-embed --tune-encoder) embeds the inputs; the model scores */
	struct lm_model mr;
	if (o->retriever) {
		struct lm_model_stream rs;
		struct lm_reader *rd = lm_in_open(o->retriever);
		lm_reader_set_verify(rd, o->fl.verify);
		if (lm_ms_open(&rs, rd) < 0 || lm_model_init(&mr, &rs.h.cfg) < 0 ||
		    lm_ms_load_all(&rs, &mr) < 0)
			die_lm(o->retriever);
		lm_ms_close(&rs);
		lm_reader_close(rd);
		if (mr.cfg.vocab_size != m.cfg.vocab_size)
			die("%s: a vocabulary of %lld tokens, the model's has %lld: not its retriever",
			    o->retriever, (long long)mr.cfg.vocab_size, (long long)m.cfg.vocab_size);
	}
	if (o->retrieve && !(ctx = lm_ret_contexts(o->retriever ? &mr : &m, tk, &e, &t, &o->ro)))
		die_lm(o->retrieve);
	if (o->retriever)
		lm_model_free(&mr);
	lm_scorer_init(&sc, &m, tk);
	if (lm_mc_eval(&sc, &t, (const char *const *)ctx, &r, lm_eval_progress, o) < 0)
		die_lm(o->mc);
	const char *demos = !o->retrieve ? "none" : o->ro.random ? "random"
	                    : e.proj && !o->ro.no_projection ? "retrieved (tuned)" : "retrieved";
	double n = (double)r.n;
	struct lm_rfield rep[] = {
		LM_RS("file", "file: %s", o->mc), LM_RS("format", " (%s)\n", t.format),
		LM_RI("items", "items: %lld\n", r.n), LM_RS("demonstrations", "demonstrations: %s", demos),
		LM_RI("k", o->retrieve ? ", k = %lld" : NULL, o->retrieve ? o->ro.k : 0),
		LM_RR("acc_mean", "\naccuracy (mean NLL per token): %.4f\n", r.correct[LM_MC_MEAN] / n),
		LM_RR("acc_sum", "accuracy (sum NLL): %.4f\n", r.correct[LM_MC_SUM] / n),
		LM_RR("acc_norm", "accuracy (NLL per byte): %.4f\n", r.correct[LM_MC_NORM] / n),
		LM_RR(NULL, "mc1 (sum NLL): %.4f\n", r.correct[LM_MC_SUM] / n), /* with mc2 only */
		LM_RR("mc2", "mc2: %.4f\n", r.n_mc2 ? r.mc2_sum / (double)r.n_mc2 : 0)};
	lm_report(stdout, o->json, rep, sizeof rep / sizeof *rep - (r.n_mc2 ? 0 : 2));
	lm_scorer_free(&sc);
	lm_ret_contexts_free(ctx, t.n);
	lm_emb_free(&e);
	lm_task_free(&t);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

/* ---- --task: zero-shot tasks (common/zeroshot*.c) ---- */

void lm_eval_task(struct lm_model_stream *ms, struct lm_eval_opts *o)
{
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lm_zs_scorer sc;
	char *list = xstrdup(strcmp(o->tasks, "all") ? o->tasks : "");
	size_t nt = 0;
	struct lm_zs_task *t = xcalloc(16, sizeof *t);
	struct lm_zs_result *r;

	/* read every file before the model: a bad item fails in a second, not after loading */
	if (!*list)
		for (; lm_zs_task_names[nt]; nt++)
			if (lm_zs_load(&t[nt], lm_zs_task_names[nt], o->tdata, (size_t)o->limit) < 0)
				die_lm(NULL);
	for (char *sv, *name = strtok_r(list, ",", &sv); name; name = strtok_r(NULL, ",", &sv)) {
		for (size_t i = 0; i < nt; i++)
			if (!strcmp(t[i].name, name))
				edie(2, "--task: %s twice", name);
		if (nt == 16)
			edie(2, "--task: more than 16 tasks");
		if (lm_zs_load(&t[nt], name, o->tdata, (size_t)o->limit) < 0) {
			if (!strncmp(lm_errmsg(), "unknown task", 12))
				edie(2, "--task: %s", lm_errmsg());
			die_lm(NULL);
		}
		nt++;
	}
	if (!nt)
		edie(2, "--task: no task named");
	lm_eval_load_whole(ms, &m, &tk, "--task");
	lm_zs_scorer_init(&sc, &m, tk);
	sc.keep_ids = o->log_samples; /* the samples carry each request's tokens */
	sc.bos = o->bos;
	r = xcalloc(nt, sizeof *r);
	for (size_t i = 0; i < nt; i++)
		if (lm_zs_eval(&sc, &t[i], &r[i], lm_eval_progress, o) < 0)
			die_lm(t[i].name);
	if (o->json) {
		json_t *res = json_object(), *ver = json_object(), *ns = json_object(), *files = json_object();
		json_t *secs = json_object();
		json_t *smp = o->log_samples ? json_object() : NULL;
		for (size_t i = 0; i < nt; i++) {
			json_object_set_new(res, t[i].name, lm_zs_task_json(&r[i]));
			json_object_set_new(ver, t[i].name, json_integer(0));
			json_object_set_new(ns, t[i].name, json_integer((json_int_t)r[i].n));
			json_object_set_new(files, t[i].name, json_string(t[i].path));
			json_object_set_new(secs, t[i].name, json_real(r[i].seconds));
			if (smp)
				json_object_set_new(smp, t[i].name, lm_zs_samples_json(&r[i]));
		}
		json_t *cfg = json_pack("{s:s, s:s, s:i, s:s, s:o, s:o, s:b, s:I, s:I}", "model", "lm-stream",
		                        "model_args", lm_reader_name(ms->rd), "num_fewshot", 0, "batch_size",
		                        "choices of an item", "limit",
		                        o->limit ? json_integer(o->limit) : json_null(), "files", files,
		                        "bos", o->bos, "tokens_run", (json_int_t)sc.run_tokens,
		                        "tokens_without_prefix_sharing", (json_int_t)sc.plain_tokens);
		json_t *j = json_pack("{s:o, s:o, s:o, s:o}", "results", res, "versions", ver, "n-samples",
		                      ns, "config", cfg);
		json_object_set_new(cfg, "seconds", secs); /* scoring only, per task */
		if (smp)
			json_object_set_new(j, "samples", smp);
		lm_json_line(stdout, j);
	} else {
		lm_zs_print(stdout, r, nt);
	}
	for (size_t i = 0; i < nt; i++) {
		lm_zs_result_free(&r[i]);
		lm_zs_task_free(&t[i]);
	}
	free(r), free(t), free(list);
	lm_zs_scorer_free(&sc);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

/* ---- --qa: answer perplexity and harmful-answer rate (common/eval/unlearn_eval.c) ---- */

void lm_eval_qa(struct lm_model_stream *ms, struct lm_eval_opts *o)
{
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lm_qa_report r;
	const char *how = o->ho.match == LM_MATCH_PREFIX ? "prefix" : "contains";

	lm_eval_load_whole(ms, &m, &tk, "--qa");
	if (!o->ho.words)
		o->ho.words = 8;
	o->ho.tokens = o->ntok_set ? (size_t)o->ntok : 0;
	if (lm_qa_report(&m, tk, o->qa, o->qcol, o->acol, o->harm ? &o->ho : NULL, &r) < 0)
		die_lm(o->qa);
	double rate = (double)r.matched / (double)r.rows;
	const struct lm_rfield rep[] = {
		LM_RS("file", "file: %s\n", o->qa), LM_RI("rows", "rows: %lld\n", r.rows),
		LM_RI("answer_tokens", "answer tokens: %lld\n", r.tokens),
		LM_RR("answer_nll", "answer NLL: %.6f\n", r.nll),
		LM_RR("answer_perplexity", "answer perplexity: %.4f\n", exp(r.nll)),
		/* --harm-rate only */
		LM_RR("harmful_rate", "harmful-answer rate: %.4f", rate),
		LM_RI("harmful", " (%lld of ", r.matched), LM_RI(NULL, "%lld; ", r.rows),
		LM_RS("match", "%s of ", how), LM_RI("words", "%lld words)\n", o->ho.words)};
	lm_report(stdout, o->json, rep, sizeof rep / sizeof *rep - (o->harm ? 0 : 5));
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

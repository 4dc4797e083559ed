/* lm-eval: the end of a pipe: perplexity of a text, greedy generation */
#include "calib.h"
#include "cli.h"
#include "earlyexit.h"
#include "embed.h"
#include "embstream.h"
#include "mc.h"
#include "zeroshot.h"
#include "retrieve.h"
#include "sts.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "tokenizer.h"
#include "unlearn_eval.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: lm-eval (--ppl FILE | --generate TEXT) [options] [STREAM]\n"
	"       lm-eval (--sts FILE | --mc FILE [--retrieve INDEX -k K]) [options] [STREAM]\n"
	"       lm-eval --task LIST --data DIR [--limit N] [--log-samples] [options] [STREAM]\n"
	"       lm-eval --exit-sweep FILE [--thresholds LIST] [--exit-rule R] [options] [STREAM]\n"
	"Evaluate the model read from STREAM or standard input; the report goes to stdout.\n"
	"  -p, --ppl FILE        perplexity of FILE (text, or an lm-stream of token ids)\n"
	"  -s, --seqlen N        tokens per window (default: the model's max positions)\n"
	"  -w, --windows K       use only the first K windows\n"
	"  -b, --batch N         windows per forward batch (default 4)\n"
	"      --save-ids OUT    also write FILE's token ids (BOS first) as an lm-stream to OUT\n"
	"  -g, --generate TEXT   greedy continuation of TEXT (BOS in front)\n"
	"  -n, --tokens N        tokens to generate (default 32; 15 with --exit-sweep)\n"
	"      --temperature T   --generate, --exit-sweep: sample at temperature T (default 0: greedy)\n"
	"      --top-k K         sampling among the K most likely tokens (default: all)\n"
	"Early exit (GREEN-CODE; exit k leaves after decoder layer k):\n"
	"      --exit-threshold P  --generate: leave at the first exit whose p(exit) > P (0..1)\n"
	"      --exit-rule R     policy (the stream's, from lm-retrain --exit-policy; default) or\n"
	"                        confidence (the exit's max token probability >= P)\n"
	"      --exits LIST      confidence: the exits, e.g. 1,2,3 (default: the stream's)\n"
	"      --exit-sweep FILE cost and quality per threshold on FILE's windows (-s, -w): the\n"
	"                        prompt is their start, the reference the text after it\n"
	"      --thresholds LIST --exit-sweep: default 0.5,0.6,0.7,0.8,0.9,0.95,0.99\n"
	"      --context-frac F  --exit-sweep: prompt share of a window (default 0.2)\n"
	"      --sts FILE        STS-B or SICK pairs: Spearman x100 of the embeddings' cosines\n"
	"      --demo S=W        --sts, embeddings: PromptEOL demonstration (S means W)\n"
	"      --template T      --sts, embeddings: prompt with <sentence> (default PromptEOL's)\n"
	"      --avg             --sts, embeddings: mean pooling instead of the last token\n"
	"      --verbatim        --sts, embeddings: keep each sentence's white space as it is\n"
	"                        (default: runs collapsed to one space, ends trimmed)\n"
	"      --mc FILE         multiple choice (JSON lines or TruthfulQA mc_task.json): accuracy\n"
	"      --retrieve INDEX  --mc: prepend demonstrations from a pool made by lm-embed --pool\n"
	"      --retriever STREAM  --retrieve: the model that embeds the inputs (one trained by\n"
	"                        lm-embed --tune-encoder; default: the scored model)\n"
	"  -k, --demos K         --mc: demonstrations per item (default 3)\n"
	"      --random-demos    --mc: K random pool prompts instead of the nearest\n"
	"      --no-projection   --mc: ignore the index's tuned projection\n"
	"      --seed N          --random-demos, --temperature: seed (default 0)\n"
	"      --task LIST       zero-shot tasks as lm-evaluation-harness scores them: boolq, rte,\n"
	"                        hellaswag, winogrande, arc_easy, arc_challenge, openbookqa, piqa,\n"
	"                        lambada_openai, comma-separated, or all\n"
	"      --data DIR        --task: the data sets' folder (layout: lm-eval(1), Zero-shot tasks)\n"
	"      --limit N         --task: only the first N items of each task\n"
	"      --log-samples     --task --json: each item's log-likelihoods and tokens too\n"
	"      --bos             --task: BOS before every context (default: none, as the harness\n"
	"                        feeds OPT)\n"
	"      --qa CSV          question/answer rows: perplexity of the answers given the questions\n"
	"      --question COL    --qa: column names (default: as lm-unlearn finds them)\n"
	"      --answer COL\n"
	"      --harm-rate       --qa: also the harmful-answer rate of greedy continuations\n"
	"      --match M         --harm-rate: the answer's first words as a prefix (default) or\n"
	"                        anywhere (contains)\n"
	"      --words N         --harm-rate: how many of its first words (default 8)\n"
	"      --json            print the report as one JSON object\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the input stream\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

struct opts {
	const char *ppl, *gen, *save_ids, *input;
	long long seqlen, windows, batch, ntok;
	int json, threads, verify, quiet;
	/* --sts, --mc (common/eval/sts.h, mc.h, retrieve.h) */
	const char *sts, *mc, *retrieve, *retriever;
	struct lm_embed_cfg ec;
	struct lm_ret_opts ro;
	int batch_set;
	/* --task (common/eval/zeroshot.h) */
	const char *tasks, *tdata;
	long long limit;
	int log_samples, bos;
	/* --qa (common/eval/unlearn_eval.h) */
	const char *qa, *qcol, *acol;
	int harm, ntok_set;
	struct lm_harm_opts ho;
	/* early exit (common/methods/earlyexit.c) */
	const char *sweep, *thresholds, *exits;
	struct lm_ee_opts eo;
	double ctx_frac;
	int ee_threshold, sampling;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct lm_tokenizer *stream_tokenizer(const struct lm_model_stream *ms, const char *why)
{
	struct lm_tokenizer *t = lm_calib_tokenizer(ms, why);
	if (!t)
		die_lm(lm_reader_name(ms->rd));
	return t;
}

/* FILE as ids: an lm-stream holding an integer tensor "ids", or text (one BOS in front) */
static int32_t *load_ids(const char *path, const struct lm_model_stream *ms, size_t *n)
{
	int32_t *ids;
	if (lm_calib_load_ids(path, ms, &ids, n) < 0)
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

static void progress(const struct opts *o, const char *what, int done, int total, double t0)
{
	if (o->quiet || !isatty(2))
		return;
	double el = now() - t0, eta = done ? el / done * (total - done) : 0;
	fprintf(stderr, "\r%s: %s %d/%d, %.0f s elapsed, ETA %.0f s   ", argv0, what, done, total, el, eta);
	if (done == total)
		fputc('\n', stderr);
}

/* Perplexity, one layer at a time: all windows' activations stay in X while the stream
 * brings each decoder layer; only one layer's weights are ever in memory. */
static void perplexity(struct lm_model_stream *ms, const struct opts *o)
{
	const struct lm_opt_config *cfg = &ms->h.cfg;
	const size_t C = (size_t)cfg->hidden_size, E = (size_t)cfg->word_embed_proj_dim;
	size_t n = 0, T = o->seqlen ? (size_t)o->seqlen : (size_t)cfg->max_positions, W, B;
	int32_t *ids;
	struct lm_model m;
	struct lm_fwd s;
	float *X, *nll;
	double t0, sum = 0;

	if (T > (size_t)cfg->max_positions)
		edie(2, "--seqlen %zu exceeds the model's %lld positions", T, (long long)cfg->max_positions);
	ids = load_ids(o->ppl, ms, &n);
	t0 = now(); /* from here: the model's layers arriving and the forward pass */
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
			die("%s: token id %d at %zu outside the vocabulary", o->ppl, ids[i], i);
	W = n / T;
	if (W == 0)
		die("%s: %zu tokens, fewer than one window of %zu", o->ppl, n, T);
	if (o->windows && (size_t)o->windows < W)
		W = (size_t)o->windows;
	B = (size_t)o->batch < W ? (size_t)o->batch : W;

	if (lm_model_init(&m, cfg) < 0 || lm_fwd_init(&s, cfg, B, T) < 0)
		die_lm(lm_reader_name(ms->rd));
	size_t xn;
	if (lm_mul(W * T, C > E ? C : E, &xn) < 0 || !(X = lm_alloc(xn * sizeof *X)))
		die_lm("activations");
	nll = xmalloc(W * T * sizeof *nll);

	if (lm_ms_load(ms, &m, LM_PART_HEAD) < 0)
		die_lm(lm_reader_name(ms->rd));
	for (size_t w0 = 0; w0 < W; w0 += B) {
		size_t nb = W - w0 < B ? W - w0 : B;
		if (lm_forward_embed(&s, &m, ids + w0 * T, nb, T) < 0)
			die_lm("forward");
		memcpy(X + w0 * T * C, s.x, nb * T * C * sizeof *X);
	}
	for (int l = 0; l < cfg->num_layers; l++) {
		if (lm_ms_load(ms, &m, l) < 0)
			die_lm(lm_reader_name(ms->rd));
		for (size_t w0 = 0; w0 < W; w0 += B) {
			size_t nb = W - w0 < B ? W - w0 : B;
			if (lm_forward_layer(&s, &m.layers[l], l, X + w0 * T * C, nb, T) < 0)
				die_lm("forward");
		}
		lm_layer_free(&m.layers[l]);
		progress(o, "layer", l + 1, (int)cfg->num_layers, t0);
	}
	if (lm_ms_load(ms, &m, (int)cfg->num_layers) < 0)
		die_lm(lm_reader_name(ms->rd));
	{
		/* The final LayerNorm (and project_out) batch by batch in place, rows of C becoming
		 * rows of E: a batch's output ends where the next one's input starts when E <= C,
		 * and begins where the batch before it ended when E > C (then the batches go last
		 * first). Then the head once over all windows: an f16 or packed head is converted
		 * a tile at a time once, not once per batch. */
		int32_t *tgt = xmalloc(W * T * sizeof *tgt);
		size_t nbat = (W + B - 1) / B;
		for (size_t k = 0; k < nbat; k++) {
			size_t w0 = (E <= C ? k : nbat - 1 - k) * B, nb = W - w0 < B ? W - w0 : B;
			if (lm_forward_final(&s, &m, X + w0 * T * C, X + w0 * T * E, nb * T) < 0)
				die_lm("forward");
		}
		for (size_t w = 0; w < W; w++)
			for (size_t t = 0; t < T; t++)
				tgt[w * T + t] = t + 1 < T ? ids[w * T + t + 1] : -1;
		if (lm_forward_head(&s, &m, X, tgt, W * T, nll, NULL) < 0)
			die_lm("forward");
		free(tgt);
	}
	/* perplexity = exp(mean over windows of each window's mean NLL) */
	for (size_t w = 0; w < W; w++) {
		double wsum = 0;
		for (size_t t = 0; t + 1 < T; t++)
			wsum += nll[w * T + t];
		sum += wsum / (double)(T - 1);
	}
	double mean = sum / (double)W, el = now() - t0, ppl = exp(mean);
	if (!isfinite(mean))
		die("%s: the loss is not finite (NaN or Inf in the forward pass)", o->ppl);
	if (o->save_ids) /* only once the whole stream was read and evaluated */
		save_ids(o->save_ids, &ms->h, ids, n);
	if (o->json) {
		json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "file", o->ppl,
		                      "tokens", (json_int_t)n, "windows", (json_int_t)W, "seqlen", (json_int_t)T,
		                      "mean_nll", mean, "perplexity", ppl, "seconds", el,
		                      "tokens_per_second", (double)(W * T) / el);
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		printf("file: %s\ntokens: %zu\nwindows: %zu x %zu\nmean NLL: %.6f\nperplexity: %.4f\n"
		       "tokens/s: %.1f\n", o->ppl, n, W, T, mean, ppl, (double)(W * T) / el);
	}
	lm_free(X);
	free(nll);
	free(ids);
	lm_fwd_free(&s);
	lm_model_free(&m);
}

static void generate(struct lm_model_stream *ms, const struct opts *o)
{
	struct lm_tokenizer *tk = stream_tokenizer(ms, "--generate");
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
	if (lm_model_init(&m, &ms->h.cfg) < 0 || lm_ms_load_all(ms, &m) < 0)
		die_lm(lm_reader_name(ms->rd));
	out = xmalloc((nb + 1 + (size_t)o->ntok) * sizeof *out);
	t0 = now();
	if (lm_generate_greedy(&m, prompt, nb + 1, (size_t)o->ntok, 0, out, &nout) < 0)
		die_lm("generate");
	double el = now() - t0;
	size_t tl, nk = 0;
	/* the embedding has padding rows beyond the tokenizer (50272 vs 50265): a random or
	 * damaged model may pick one; it has no text, so it prints as nothing */
	int32_t *known = xmalloc(nout * sizeof *known);
	for (size_t i = 1; i < nout; i++)
		if (out[i] < lm_tokenizer_vocab_size(tk))
			known[nk++] = out[i];
	char *text = lm_detokenize(tk, known, nk, &tl);
	free(known);
	if (!text)
		die_lm("generate");
	if (o->json) {
		json_t *jids = json_array();
		for (size_t i = 0; i < nout; i++)
			json_array_append_new(jids, json_integer(out[i]));
		json_t *j = json_pack("{s:s, s:o, s:s%, s:f}", "prompt", o->gen, "ids", jids, "text", text, tl,
		                      "tokens_per_second", (double)(nout - nb - 1) / el);
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		fwrite(text, 1, tl, stdout);
		putchar('\n');
	}
	free(text), free(out), free(prompt), free(body);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
}

/* ---- --sts and --mc: the work is in common/eval/sts.c, mc.c, retrieve.c ---- */

static void load_whole(struct lm_model_stream *ms, struct lm_model *m, struct lm_tokenizer **tk,
                       const char *why)
{
	*tk = stream_tokenizer(ms, why);
	if (lm_model_init(m, &ms->h.cfg) < 0 || lm_ms_load_all(ms, m) < 0)
		die_lm(lm_reader_name(ms->rd));
}

static void task_progress(void *ctx, size_t done, size_t total)
{
	const struct opts *o = ctx;
	if (!o->quiet && isatty(2)) {
		fprintf(stderr, "\r%s: %zu/%zu   ", argv0, done, total);
		if (done == total)
			fputc('\n', stderr);
	}
}

/* ---- early exit: the work is in common/methods/earlyexit.c ---- */

/* the model, the exits and the policy early exit runs with; exit 2 for exits the model
 * lacks or a policy the stream lacks */
static void ee_setup(struct lm_model_stream *ms, struct opts *o, struct lm_model *m,
                     struct lm_policy *pol, int **ex)
{
	const int L = (int)ms->h.cfg.num_layers;
	size_t n = 0;
	int missing;
	*ex = NULL;
	if (o->exits && (!(*ex = lm_ee_parse_exits(o->exits, &n)) || lm_ee_check_exits(*ex, n, L) < 0))
		edie(2, "--exits: %s", lm_errmsg());
	if (lm_model_init(m, &ms->h.cfg) < 0 || lm_ms_load_all(ms, m) < 0)
		die_lm(lm_reader_name(ms->rd));
	if (o->eo.rule == LM_EE_POLICY) {
		if (lm_policy_load(pol, ms, &missing) < 0)
			edie(missing ? 2 : 1, "%s: %s", lm_reader_name(ms->rd), lm_errmsg());
		o->eo.policy = pol;
		return;
	}
	if (o->eo.rule == LM_EE_CONFIDENCE && !*ex && !(*ex = lm_ee_stream_exits(ms, &n))) {
		n = (size_t)L - 1; /* every layer but the last */
		*ex = xmalloc((n ? n : 1) * sizeof **ex);
		for (size_t i = 0; i < n; i++)
			(*ex)[i] = (int)i;
	}
	if (o->eo.rule == LM_EE_CONFIDENCE && lm_ee_check_exits(*ex, n, L) < 0)
		edie(2, "%s: the stream's exits: %s", lm_reader_name(ms->rd), lm_errmsg());
	o->eo.exits = *ex, o->eo.nexits = n;
}

static void print_cost(const struct opts *o, const struct lm_ee *ee, const struct lm_ee_cost *c, int L)
{
	double t = c->tokens ? (double)c->tokens : 1, lpt = c->layers / t;
	const int *ex = o->eo.rule == LM_EE_POLICY ? o->eo.policy->exits : o->eo.exits;
	size_t ne = o->eo.rule == LM_EE_POLICY ? o->eo.policy->nexits : o->eo.nexits;
	printf("early exit: %s, threshold %g, exits after layers", lm_ee_rule_name(o->eo.rule),
	       o->eo.threshold);
	for (size_t i = 0; i < ne; i++)
		printf("%s%d", i ? "," : " ", ex[i] + 1);
	printf(" of %d\nmean exit layer: %.3f\nlayers per token: %.3f (%.1f%% fewer), K/V-only "
	       "layers per token: %.3f\nFLOPs per token: %.4g\nms per token: %.3f\n", L,
	       c->exit_layer / t, lpt, 100 * (1 - lpt / L), c->kv_layers / t, c->flops / t,
	       1e3 * c->seconds / t);
	if (c->energy_ok)
		printf("energy per token: %.4g J (RAPL, CPU packages)\n", c->joules / t);
	else
		printf("energy: not readable (RAPL: %s)\n", ee->energy_why);
}

static void ee_generate(struct lm_model_stream *ms, struct opts *o)
{
	struct lm_tokenizer *tk = stream_tokenizer(ms, "--generate");
	struct lm_model m;
	struct lm_policy pol = {0};
	struct lm_ee ee;
	struct lm_ee_cost cost = {0};
	int32_t *body, *prompt, *out;
	size_t nb, tl;
	int *ex;

	if (lm_tokenize(tk, o->gen, strlen(o->gen), &body, &nb) < 0)
		die_lm("--generate");
	if ((long long)(nb + 1) + o->ntok > ms->h.cfg.max_positions)
		edie(2, "--generate: %zu prompt tokens + %lld new exceed the model's %lld positions", nb + 1,
		     o->ntok, (long long)ms->h.cfg.max_positions);
	prompt = xmalloc((nb + 1) * sizeof *prompt);
	prompt[0] = ms->h.cfg.bos;
	memcpy(prompt + 1, body, nb * sizeof *prompt);
	ee_setup(ms, o, &m, &pol, &ex);
	out = xmalloc(((size_t)o->ntok + 1) * sizeof *out);
	if (lm_ee_init(&ee, &m, nb + 1 + (size_t)o->ntok, o->ro.seed) < 0 ||
	    lm_ee_generate(&ee, &o->eo, prompt, nb + 1, (size_t)o->ntok, out, &cost) < 0)
		die_lm("generate");
	/* the prompt and its continuation, as plain --generate prints them */
	int32_t *known = xmalloc((nb + (size_t)o->ntok + 1) * sizeof *known);
	size_t nk = 0;
	for (size_t i = 0; i < nb + (size_t)o->ntok; i++) {
		int32_t t = i < nb ? body[i] : out[i - nb];
		if (t < lm_tokenizer_vocab_size(tk))
			known[nk++] = t;
	}
	char *text = lm_detokenize(tk, known, nk, &tl);
	if (!text)
		die_lm("generate");
	if (o->json) {
		struct lm_ee_row row = {.rule = o->eo.rule, .threshold = o->eo.threshold, .cost = cost};
		json_t *jids = json_array(), *rows = lm_ee_rows_json(&row, 1, (int)m.cfg.num_layers);
		json_t *j = json_array_get(rows, 0);
		for (size_t i = 0; i < nb + 1; i++) /* the whole sequence, as plain --generate */
			json_array_append_new(jids, json_integer(prompt[i]));
		for (size_t i = 0; i < (size_t)o->ntok; i++)
			json_array_append_new(jids, json_integer(out[i]));
		const char *quality[] = {"em_full", "rougeL_full", "chrf_full", "em_ref", "rougeL_ref", "chrf_ref"};
		for (size_t i = 0; i < sizeof quality / sizeof *quality; i++) /* a sweep's, not here */
			json_object_del(j, quality[i]);
		json_object_set_new(j, "prompt", json_string(o->gen));
		json_object_set_new(j, "ids", jids);
		json_object_set_new(j, "text", json_stringn(text, tl));
		if (!cost.energy_ok)
			json_object_set_new(j, "energy", json_sprintf("not readable (RAPL: %s)", ee.energy_why));
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(rows);
	} else {
		fwrite(text, 1, tl, stdout);
		putchar('\n');
		if (o->eo.rule != LM_EE_NONE)
			print_cost(o, &ee, &cost, (int)m.cfg.num_layers);
	}
	free(text), free(known), free(out), free(prompt), free(body), free(ex);
	lm_ee_free(&ee);
	lm_policy_free(&pol);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
}

static void ee_sweep(struct lm_model_stream *ms, struct opts *o)
{
	struct lm_tokenizer *tk = stream_tokenizer(ms, "--exit-sweep");
	const struct lm_opt_config *cfg = &ms->h.cfg;
	size_t T = o->seqlen ? (size_t)o->seqlen : cfg->max_positions < 512 ? (size_t)cfg->max_positions : 512;
	size_t nnew = o->ntok_set ? (size_t)o->ntok : 15, n = 0, nthr, ns, skipped = 0;
	size_t fl = strlen(o->sweep);
	int jsonl = (fl > 6 && !strcmp(o->sweep + fl - 6, ".jsonl")) ||
	            (fl > 9 && !strcmp(o->sweep + fl - 9, ".jsonl.gz"));
	struct lm_ee_sample *smp;
	struct lm_model m;
	struct lm_policy pol = {0};
	struct lm_ee ee;
	int32_t *ids = NULL, *pbuf;
	int *ex;

	double *thr = lm_ee_parse_list(o->thresholds ? o->thresholds : "0.5,0.6,0.7,0.8,0.9,0.95,0.99", &nthr);
	if (!thr)
		edie(2, "--thresholds: %s", lm_errmsg());
	for (size_t i = 0; i < nthr; i++)
		if (thr[i] < 0 || thr[i] > 1)
			edie(2, "--thresholds: %g is outside [0, 1]", thr[i]);
	if (T > (size_t)cfg->max_positions)
		edie(2, "--seqlen %zu exceeds the model's %lld positions", T, (long long)cfg->max_positions);
	if (jsonl) { /* code problems (HumanEval): the prompt, then its canonical solution */
		if (lm_ee_samples_jsonl(o->sweep, tk, cfg->bos, nnew, (size_t)cfg->max_positions,
		                        (size_t)o->windows, &smp, &ns, &pbuf, &skipped) < 0)
			die_lm(o->sweep);
	} else {
		ids = load_ids(o->sweep, ms, &n);
		if (lm_ee_samples(ids, n, T, o->ctx_frac, nnew, cfg->bos, (size_t)o->windows, &smp, &ns,
		                  &pbuf) < 0)
			edie(2, "%s: %s", o->sweep, lm_errmsg());
	}
	ee_setup(ms, o, &m, &pol, &ex);
	size_t maxctx = 0;
	for (size_t i = 0; i < ns; i++)
		maxctx = smp[i].nctx > maxctx ? smp[i].nctx : maxctx;
	struct lm_ee_row *rows = xcalloc(nthr + 1, sizeof *rows);
	if (lm_ee_init(&ee, &m, maxctx + nnew, o->ro.seed) < 0 ||
	    lm_ee_sweep(&ee, tk, &o->eo, thr, nthr, smp, ns, nnew, o->ro.seed, rows, task_progress, o) < 0)
		die_lm("--exit-sweep");
	const int L = (int)m.cfg.num_layers;
	const int *ue = o->eo.rule == LM_EE_POLICY ? pol.exits : o->eo.exits;
	size_t une = o->eo.rule == LM_EE_POLICY ? pol.nexits : o->eo.nexits;
	char exs[256], energy[320];
	size_t k = 0;
	for (size_t i = 0; i < une && k < sizeof exs; i++)
		k += (size_t)snprintf(exs + k, sizeof exs - k, "%s%d", i ? "," : "", ue[i] + 1);
	if (rows[0].cost.energy_ok)
		snprintf(energy, sizeof energy, "RAPL, CPU packages");
	else
		snprintf(energy, sizeof energy, "not readable (RAPL: %s)", ee.energy_why);
	if (o->json) {
		json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:s, s:f, s:o}", "file",
		                      o->sweep, "windows", (json_int_t)ns, "seqlen", (json_int_t)T,
		                      "prompt_tokens", (json_int_t)maxctx, "new_tokens", (json_int_t)nnew,
		                      "rule", lm_ee_rule_name(o->eo.rule), "exits", exs, "layers", (json_int_t)L,
		                      "energy", energy, "temperature", o->eo.temperature, "rows",
		                      lm_ee_rows_json(rows, nthr + 1, L));
		if (jsonl)
			json_object_set_new(j, "left_out", json_integer((json_int_t)skipped));
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		if (jsonl)
			printf("# early-exit sweep: %s, %zu problems (%zu left out: too long), prompts of up "
			       "to %zu tokens (BOS included), %zu new tokens, %s\n", o->sweep, ns, skipped,
			       maxctx, nnew, o->eo.temperature > 0 ? "sampled" : "greedy");
		else
			printf("# early-exit sweep: %s, %zu windows of %zu tokens, prompts of %zu tokens (BOS "
			       "included), %zu new tokens, %s\n", o->sweep, ns, T, maxctx, nnew,
			       o->eo.temperature > 0 ? "sampled" : "greedy");
		printf("# rule %s, exits after layers %s of %d; ROUGE-L "
		       "over tokens, chrF2 on text; vs the full model's output (_full) and the text (_ref)\n"
		       "# energy: %s\n", lm_ee_rule_name(o->eo.rule), exs, L, energy);
		lm_ee_print_tsv(stdout, rows, nthr + 1, L);
	}
	free(rows), free(thr), free(ids), free(smp), free(pbuf), free(ex);
	lm_ee_free(&ee);
	lm_policy_free(&pol);
	lm_model_free(&m);
	lm_tokenizer_free(tk);
}

static void sts_mode(struct lm_model_stream *ms, struct opts *o)
{
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lm_sts s;
	double rho, r, t0;

	if (lm_sts_load(&s, o->sts) < 0)
		die_lm(o->sts);
	load_whole(ms, &m, &tk, "--sts");
	o->ec.batch = o->batch_set ? (size_t)o->batch : 16;
	t0 = now();
	if (lm_sts_eval(&m, tk, &o->ec, &s, &rho, &r, task_progress, o) < 0)
		die_lm(o->sts);
	double el = now() - t0;
	const char *method = o->ec.avg ? "avg" : "prompteol";
	if (o->json) {
		json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:o, s:f, s:f, s:f}", "file", o->sts, "layout",
		                      s.layout, "pairs", (json_int_t)s.n, "method", method, "demo",
		                      o->ec.demo ? json_string(o->ec.demo) : json_null(), "spearman",
		                      100 * rho, "pearson", 100 * r, "sentences_per_second",
		                      2.0 * (double)s.n / el);
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		printf("file: %s (%s)\npairs: %zu\nembedding: %s%s%s\nspearman x100: %.2f\n"
		       "pearson x100: %.2f\nsentences/s: %.1f\n", o->sts, s.layout, s.n, method,
		       o->ec.demo ? ", demo " : "", o->ec.demo ? o->ec.demo : "", 100 * rho, 100 * r,
		       2.0 * (double)s.n / el);
	}
	lm_sts_free(&s);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

static void mc_mode(struct lm_model_stream *ms, struct opts *o)
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
	load_whole(ms, &m, &tk, "--mc");
	/* a trained retriever (lm-embed --tune-encoder) embeds the inputs; the model scores */
	struct lm_model mr;
	if (o->retriever) {
		struct lm_model_stream rs;
		struct lm_reader *rd = lm_in_open(o->retriever);
		lm_reader_set_verify(rd, o->verify);
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
	if (lm_mc_eval(&sc, &t, (const char *const *)ctx, &r, task_progress, o) < 0)
		die_lm(o->mc);
	const char *demos = !o->retrieve ? "none" : o->ro.random ? "random"
	                    : e.proj && !o->ro.no_projection ? "retrieved (tuned)" : "retrieved";
	double n = (double)r.n;
	if (o->json) {
		json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:I, s:f, s:f, s:f}", "file", o->mc, "format",
		                      t.format, "items", (json_int_t)r.n, "demonstrations", demos, "k",
		                      (json_int_t)(o->retrieve ? o->ro.k : 0), "acc_mean",
		                      r.correct[LM_MC_MEAN] / n, "acc_sum", r.correct[LM_MC_SUM] / n,
		                      "acc_norm", r.correct[LM_MC_NORM] / n);
		if (r.n_mc2)
			json_object_set_new(j, "mc2", json_real(r.mc2_sum / (double)r.n_mc2));
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		printf("file: %s (%s)\nitems: %zu\ndemonstrations: %s", o->mc, t.format, r.n, demos);
		if (o->retrieve)
			printf(", k = %zu", o->ro.k);
		printf("\naccuracy (mean NLL per token): %.4f\naccuracy (sum NLL): %.4f\n"
		       "accuracy (NLL per byte): %.4f\n", r.correct[LM_MC_MEAN] / n,
		       r.correct[LM_MC_SUM] / n, r.correct[LM_MC_NORM] / n);
		if (r.n_mc2)
			printf("mc1 (sum NLL): %.4f\nmc2: %.4f\n", r.correct[LM_MC_SUM] / n,
			       r.mc2_sum / (double)r.n_mc2);
	}
	lm_scorer_free(&sc);
	lm_ret_contexts_free(ctx, t.n);
	lm_emb_free(&e);
	lm_task_free(&t);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

/* ---- --task: zero-shot tasks (common/zeroshot*.c) ---- */

static void zs_mode(struct lm_model_stream *ms, struct opts *o)
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
	load_whole(ms, &m, &tk, "--task");
	lm_zs_scorer_init(&sc, &m, tk);
	sc.keep_ids = o->log_samples; /* the samples carry each request's tokens */
	sc.bos = o->bos;
	r = xcalloc(nt, sizeof *r);
	for (size_t i = 0; i < nt; i++)
		if (lm_zs_eval(&sc, &t[i], &r[i], task_progress, o) < 0)
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
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
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

static void qa_mode(struct lm_model_stream *ms, struct opts *o)
{
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lm_qa_report r;
	const char *how = o->ho.match == LM_MATCH_PREFIX ? "prefix" : "contains";

	load_whole(ms, &m, &tk, "--qa");
	if (!o->ho.words)
		o->ho.words = 8;
	o->ho.tokens = o->ntok_set ? (size_t)o->ntok : 0;
	if (lm_qa_report(&m, tk, o->qa, o->qcol, o->acol, o->harm ? &o->ho : NULL, &r) < 0)
		die_lm(o->qa);
	double rate = (double)r.matched / (double)r.rows;
	if (o->json) {
		json_t *j = json_pack("{s:s, s:I, s:I, s:f, s:f}", "file", o->qa, "rows", (json_int_t)r.rows,
		                      "answer_tokens", (json_int_t)r.tokens, "answer_nll", r.nll,
		                      "answer_perplexity", exp(r.nll));
		if (o->harm) {
			json_object_set_new(j, "harmful_rate", json_real(rate));
			json_object_set_new(j, "harmful", json_integer((json_int_t)r.matched));
			json_object_set_new(j, "match", json_string(how));
			json_object_set_new(j, "words", json_integer((json_int_t)o->ho.words));
		}
		json_dumpf(j, stdout, JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(j);
	} else {
		printf("file: %s\nrows: %zu\nanswer tokens: %zu\nanswer NLL: %.6f\n"
		       "answer perplexity: %.4f\n", o->qa, r.rows, r.tokens, r.nll, exp(r.nll));
		if (o->harm)
			printf("harmful-answer rate: %.4f (%zu of %zu; %s of %zu words)\n", rate, r.matched,
			       r.rows, how, o->ho.words);
	}
	lm_tokenizer_free(tk);
	lm_model_free(&m);
}

int main(int argc, char **argv)
{
	enum { O_STS = 0x170, O_DEMO, O_TMPL, O_AVG, O_MC, O_RETR, O_RETRIEVER, O_RAND, O_NOPROJ, O_SEED };
	enum { O_QA = 0x190, O_QCOL, O_ACOL, O_HARM, O_MATCH, O_WORDS };
	enum { O_TASK = 0x1d0, O_TDATA, O_LIMIT, O_LOGS, O_BOS };
	enum { O_VERBATIM = 0x1e0 };
	enum { O_ETHR = 0x1b0, O_ERULE, O_EXITS, O_SWEEP, O_THRS, O_CFRAC, O_TEMP, O_TOPK };
	static const struct option lopts[] = {
		{"ppl", required_argument, 0, 'p'}, {"seqlen", required_argument, 0, 's'},
		{"windows", required_argument, 0, 'w'}, {"batch", required_argument, 0, 'b'},
		{"save-ids", required_argument, 0, 'I'}, {"generate", required_argument, 0, 'g'},
		{"tokens", required_argument, 0, 'n'}, {"json", no_argument, 0, 'J'},
		{"threads", required_argument, 0, 'j'}, {"no-verify", no_argument, 0, 'N'},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"sts", required_argument, 0, O_STS}, {"demo", required_argument, 0, O_DEMO},
		{"template", required_argument, 0, O_TMPL}, {"avg", no_argument, 0, O_AVG},
		{"verbatim", no_argument, 0, O_VERBATIM},
		{"mc", required_argument, 0, O_MC}, {"retrieve", required_argument, 0, O_RETR},
		{"retriever", required_argument, 0, O_RETRIEVER},
		{"demos", required_argument, 0, 'k'}, {"random-demos", no_argument, 0, O_RAND},
		{"no-projection", no_argument, 0, O_NOPROJ}, {"seed", required_argument, 0, O_SEED},
		{"task", required_argument, 0, O_TASK}, {"data", required_argument, 0, O_TDATA},
		{"limit", required_argument, 0, O_LIMIT}, {"log-samples", no_argument, 0, O_LOGS},
		{"bos", no_argument, 0, O_BOS},
		{"qa", required_argument, 0, O_QA}, {"question", required_argument, 0, O_QCOL},
		{"answer", required_argument, 0, O_ACOL}, {"harm-rate", no_argument, 0, O_HARM},
		{"match", required_argument, 0, O_MATCH}, {"words", required_argument, 0, O_WORDS},
		{"exit-threshold", required_argument, 0, O_ETHR}, {"exit-rule", required_argument, 0, O_ERULE},
		{"exits", required_argument, 0, O_EXITS}, {"exit-sweep", required_argument, 0, O_SWEEP},
		{"thresholds", required_argument, 0, O_THRS}, {"context-frac", required_argument, 0, O_CFRAC},
		{"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.batch = 4, .ntok = 32, .verify = 1, .ro = {.k = 3},
	                 .eo = {.rule = LM_EE_POLICY}, .ctx_frac = 0.2};
	int rule_set = 0;
	struct lm_model_stream ms;
	struct lm_reader *rd;
	int c;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "p:s:w:b:g:n:j:k:qhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': o.ppl = optarg; break;
		case 's': o.seqlen = estrtoll(optarg, 2, 1 << 20, "--seqlen"); break;
		case 'w': o.windows = estrtoll(optarg, 1, 1LL << 40, "--windows"); break;
		case 'b': o.batch = estrtoll(optarg, 1, 4096, "--batch"), o.batch_set = 1; break;
		case 'I':
			if (!strcmp(optarg, "-"))
				edie(2, "--save-ids: give a file name (standard output carries the report)");
			o.save_ids = optarg;
			break;
		case 'g': o.gen = optarg; break;
		case 'n': o.ntok = estrtoll(optarg, 0, 1 << 20, "--tokens"), o.ntok_set = 1; break;
		case 'J': o.json = 1; break;
		case 'j': o.threads = (int)estrtoll(optarg, 0, 1024, "--threads"); break;
		case 'N': o.verify = 0; break;
		case 'q': o.quiet = 1; break;
		case O_STS: o.sts = optarg; break;
		case O_DEMO: o.ec.demo = optarg; break;
		case O_TMPL: o.ec.tmpl = optarg; break;
		case O_AVG: o.ec.avg = 1; break;
		case O_VERBATIM: o.ec.verbatim = 1; break;
		case O_MC: o.mc = optarg; break;
		case O_RETR: o.retrieve = optarg; break;
		case O_RETRIEVER: o.retriever = optarg; break;
		case 'k': o.ro.k = (size_t)estrtoll(optarg, 1, 1 << 16, "--demos"); break;
		case O_RAND: o.ro.random = 1; break;
		case O_NOPROJ: o.ro.no_projection = 1; break;
		case O_SEED: o.ro.seed = (uint64_t)estrtoll(optarg, 0, INT64_MAX, "--seed"); break;
		case O_TASK: o.tasks = optarg; break;
		case O_TDATA: o.tdata = optarg; break;
		case O_LIMIT: o.limit = estrtoll(optarg, 1, 1LL << 40, "--limit"); break;
		case O_LOGS: o.log_samples = 1; break;
		case O_BOS: o.bos = 1; break;
		case O_QA: o.qa = optarg; break;
		case O_QCOL: o.qcol = optarg; break;
		case O_ACOL: o.acol = optarg; break;
		case O_HARM: o.harm = 1; break;
		case O_MATCH:
			if (!strcmp(optarg, "contains"))
				o.ho.match = LM_MATCH_CONTAINS;
			else if (strcmp(optarg, "prefix"))
				edie(2, "--match: '%s' is not prefix or contains", optarg);
			break;
		case O_WORDS: o.ho.words = (size_t)estrtoll(optarg, 1, 1 << 16, "--words"); break;
		case O_ETHR: o.eo.threshold = estrtod(optarg, 0, 1, "--exit-threshold"), o.ee_threshold = 1; break;
		case O_ERULE:
			if (!strcmp(optarg, "confidence"))
				o.eo.rule = LM_EE_CONFIDENCE;
			else if (strcmp(optarg, "policy"))
				edie(2, "--exit-rule: '%s' is not policy or confidence", optarg);
			rule_set = 1;
			break;
		case O_EXITS: o.exits = optarg; break;
		case O_SWEEP: o.sweep = optarg; break;
		case O_THRS: o.thresholds = optarg; break;
		case O_CFRAC: o.ctx_frac = estrtod(optarg, 0, 0.95, "--context-frac"); break;
		case O_TEMP: o.eo.temperature = estrtod(optarg, 0, 100, "--temperature"), o.sampling = 1; break;
		case O_TOPK: o.eo.top_k = (int)estrtoll(optarg, 0, 1 << 30, "--top-k"), o.sampling = 1; break;
		case 'h': lm_usage(usage_text, 0);
		case 'V': puts("lm-eval " LM_VERSION); return 0;
		default: lm_bad_option(usage_text);
		}
	}
	if (argc - optind > 1 || !!o.ppl + !!o.gen + !!o.sts + !!o.mc + !!o.qa + !!o.sweep + !!o.tasks != 1)
		lm_usage(usage_text, 2);
	if (o.ee_threshold && !o.gen)
		edie(2, "--exit-threshold is for --generate (--exit-sweep takes --thresholds)");
	if ((o.thresholds || o.ctx_frac != 0.2) && !o.sweep)
		edie(2, "--thresholds and --context-frac are for --exit-sweep");
	if ((rule_set || o.exits) && !o.ee_threshold && !o.sweep)
		edie(2, "--exit-rule and --exits need --exit-threshold P or --exit-sweep FILE");
	if (o.exits && o.eo.rule == LM_EE_POLICY)
		edie(2, "--exits: the policy decides at the exits it was trained for (--exit-rule confidence takes a list)");
	if (o.sampling && !o.gen && !o.sweep)
		edie(2, "--temperature and --top-k are for --generate and --exit-sweep");
	if (o.gen && !o.ee_threshold)
		o.eo.rule = LM_EE_NONE; /* sampling without early exit */
	if ((o.tdata || o.limit || o.log_samples || o.bos) && !o.tasks)
		edie(2, "--data, --limit, --log-samples and --bos are for --task LIST");
	if (o.tasks && !o.tdata)
		edie(2, "--task: give the data sets' folder with --data DIR");
	if (o.log_samples && !o.json)
		edie(2, "--log-samples adds to the --json report: give --json");
	if ((o.qcol || o.acol || o.harm) && !o.qa)
		edie(2, "--question, --answer and --harm-rate are for --qa CSV");
	if ((o.ho.words || o.ho.match) && !o.harm)
		edie(2, "--match and --words are for --harm-rate");
	if (o.retrieve && !o.mc)
		edie(2, "--retrieve adds demonstrations to --mc items: give --mc FILE");
	if (o.retriever && !o.retrieve)
		edie(2, "--retriever embeds the inputs for --retrieve INDEX: give it");
	if ((o.ro.random || o.ro.no_projection) && !o.retrieve)
		edie(2, "--random-demos and --no-projection choose demonstrations: give --retrieve INDEX");
	if ((o.ec.demo || o.ec.tmpl || o.ec.avg || o.ec.verbatim) && !o.sts)
		edie(2, "--demo, --template, --avg and --verbatim shape --sts embeddings (an index records its own)");
	if (lm_embed_cfg_check(&o.ec) < 0)
		edie(2, "%s", lm_errmsg());
	lm_cli_threads(o.threads, 0);
	rd = lm_in_open(optind < argc ? argv[optind] : NULL);
	lm_reader_set_verify(rd, o.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	if (o.ppl)
		perplexity(&ms, &o);
	else if (o.sts)
		sts_mode(&ms, &o);
	else if (o.mc)
		mc_mode(&ms, &o);
	else if (o.qa)
		qa_mode(&ms, &o);
	else if (o.tasks)
		zs_mode(&ms, &o);
	else if (o.sweep)
		ee_sweep(&ms, &o);
	else if (o.ee_threshold || o.sampling)
		ee_generate(&ms, &o);
	else
		generate(&ms, &o);
	lm_ms_close(&ms);
	lm_reader_close(rd);
	lm_fshut_stdout();
	return 0;
}

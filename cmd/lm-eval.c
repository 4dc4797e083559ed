/* lm-eval: the end of a pipe: perplexity of a text, greedy generation */
#include "calib.h"
#include "cli.h"
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "tokenizer.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: lm-eval (--ppl FILE | --generate TEXT) [options] [STREAM]\n"
	"Evaluate the model read from STREAM or standard input; the report goes to stdout.\n"
	"  -p, --ppl FILE        perplexity of FILE (text, or an lm-stream of token ids)\n"
	"  -s, --seqlen N        tokens per window (default: the model's max positions)\n"
	"  -w, --windows K       use only the first K windows\n"
	"  -b, --batch N         windows per forward batch (default 4)\n"
	"      --save-ids OUT    also write FILE's token ids (BOS first) as an lm-stream to OUT\n"
	"  -g, --generate TEXT   greedy continuation of TEXT (BOS in front)\n"
	"  -n, --tokens N        tokens to generate (default 32)\n"
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
		int32_t *tgt = xmalloc(B * T * sizeof *tgt);
		float *xf = lm_alloc(B * T * E * sizeof *xf);
		if (!xf)
			die_lm("activations");
		for (size_t w0 = 0; w0 < W; w0 += B) {
			size_t nb = W - w0 < B ? W - w0 : B;
			for (size_t b = 0; b < nb; b++)
				for (size_t t = 0; t < T; t++)
					tgt[b * T + t] = t + 1 < T ? ids[(w0 + b) * T + t + 1] : -1;
			if (lm_forward_final(&s, &m, X + w0 * T * C, xf, nb * T) < 0 ||
			    lm_forward_head(&s, &m, xf, tgt, nb * T, nll + w0 * T, NULL) < 0)
				die_lm("forward");
		}
		free(tgt);
		lm_free(xf);
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

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"ppl", required_argument, 0, 'p'}, {"seqlen", required_argument, 0, 's'},
		{"windows", required_argument, 0, 'w'}, {"batch", required_argument, 0, 'b'},
		{"save-ids", required_argument, 0, 'I'}, {"generate", required_argument, 0, 'g'},
		{"tokens", required_argument, 0, 'n'}, {"json", no_argument, 0, 'J'},
		{"threads", required_argument, 0, 'j'}, {"no-verify", no_argument, 0, 'N'},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.batch = 4, .ntok = 32, .verify = 1};
	struct lm_model_stream ms;
	struct lm_reader *rd;
	int c;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "p:s:w:b:g:n:j:qhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': o.ppl = optarg; break;
		case 's': o.seqlen = estrtoll(optarg, 2, 1 << 20, "--seqlen"); break;
		case 'w': o.windows = estrtoll(optarg, 1, 1LL << 40, "--windows"); break;
		case 'b': o.batch = estrtoll(optarg, 1, 4096, "--batch"); break;
		case 'I':
			if (!strcmp(optarg, "-"))
				edie(2, "--save-ids: give a file name (standard output carries the report)");
			o.save_ids = optarg;
			break;
		case 'g': o.gen = optarg; break;
		case 'n': o.ntok = estrtoll(optarg, 0, 1 << 20, "--tokens"); break;
		case 'J': o.json = 1; break;
		case 'j': o.threads = (int)estrtoll(optarg, 0, 1024, "--threads"); break;
		case 'N': o.verify = 0; break;
		case 'q': o.quiet = 1; break;
		case 'h': lm_usage(usage_text, 0);
		case 'V': puts("lm-eval " LM_VERSION); return 0;
		default: lm_bad_option(usage_text);
		}
	}
	if (argc - optind > 1 || !!o.ppl + !!o.gen != 1)
		lm_usage(usage_text, 2);
	lm_set_threads(o.threads);
	rd = lm_in_open(optind < argc ? argv[optind] : NULL);
	lm_reader_set_verify(rd, o.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	if (o.ppl)
		perplexity(&ms, &o);
	else
		generate(&ms, &o);
	lm_ms_close(&ms);
	lm_reader_close(rd);
	lm_fshut_stdout();
	return 0;
}

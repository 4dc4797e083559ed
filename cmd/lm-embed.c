/* lm-embed: sentence embeddings (PromptEOL) of each line of a file, or of a prompt pool
 * for retrieval, optionally with a retriever tuned the UPRISE way */
#include "calib.h"
#include "cli.h"
#include "embed.h"
#include "embstream.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "rtune.h"
#include "tokenizer.h"
#include "util.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: lm-embed [options] FILE\n"
	"Embed each line of FILE with the model read from standard input; the embeddings go to\n"
	"stdout as an lm-stream (tensor \"embeddings\" [n, d] f32 and the lines).\n"
	"  -m, --model STREAM    read the model from STREAM instead of standard input\n"
	"      --demo S=W        in-context demonstration: sentence S means in one word W\n"
	"      --template T      prompt with <sentence> in it (default PromptEOL's:\n"
	"                        This sentence : \"<sentence>\" means in one word:\")\n"
	"      --avg             mean of the final hidden states instead of the last token's\n"
	"      --verbatim        keep each sentence's white space as it is (default: runs\n"
	"                        collapsed to one space, ends trimmed, as the reference does)\n"
	"  -b, --batch N         prompts per forward batch (default 16)\n"
	"      --pool            FILE is a prompt pool, INPUT<TAB>ANSWER per line: embed the\n"
	"                        demonstrations \"INPUT ANSWER\" as a retrieval index\n"
	"      --tune TASK       tune the retriever on TASK (JSON lines, see lm-eval --mc) with\n"
	"                        the pool: writes a projection into the index (needs --pool)\n"
	"      --projection IDX  copy the tuned projection of index IDX (same model) into this one\n"
	"  -L, --sample N        --tune: pool prompts scored per training input (default 16)\n"
	"      --negatives N     --tune: hard negatives per input (default 4)\n"
	"      --train-max N     --tune: use at most N training inputs (default 256)\n"
	"      --epochs N        --tune: passes over the training inputs (default 20)\n"
	"      --lr X            --tune: AdamW learning rate (default 1e-3)\n"
	"      --temperature X   --tune: InfoNCE temperature of the cosines (default 0.05)\n"
	"      --seed N          --tune: sampling and shuffling seed (default 0)\n"
	"      --tsv             write LINE<TAB>v1 v2 ... text instead of a stream\n"
	"  -o, --output FILE     write to FILE (renamed into place when complete)\n"
	"  -f, --force           write a stream to a terminal\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the model stream\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

struct opts {
	struct lm_embed_cfg ec;
	const char *model, *output, *tune, *projection;
	struct lm_rtune_cfg tc;
	int pool, tsv, force, threads, verify, quiet;
};

/* the input: lines (or pool rows joined "INPUT ANSWER") and, for a pool, the inputs */
struct lines {
	char *text;
	char **line;    /* what is embedded */
	char **input;   /* pool: the INPUT part (into text), else NULL */
	size_t n;
};

/* Read FILE: empty (or blank) lines are skipped, with one warning saying how many; a pool
 * row must be INPUT<TAB>ANSWER, both non-empty. Dies on errors with the line number. */
static void read_lines(struct lines *L, const char *path, int pool, int quiet)
{
	size_t len, skipped = 0, first_skip = 0, lineno = 0;
	memset(L, 0, sizeof *L);
	/* "-" (allowed with --model): the lines come on standard input */
	if (!(L->text = lm_read_file(strcmp(path, "-") ? path : "/dev/stdin", (size_t)1 << 31, &len)))
		die_lm(path);
	for (size_t i = 0; i < len; i++)
		if (!L->text[i])
			die("%s: line %zu: NUL byte in a text line", path, lineno + 1);
	L->line = xmalloc((len / 2 + 2) * sizeof *L->line);
	L->input = pool ? xmalloc((len / 2 + 2) * sizeof *L->input) : NULL;
	for (char *p = L->text, *next; p < L->text + len; p = next) {
		char *nl = memchr(p, '\n', (size_t)(L->text + len - p));
		next = nl ? nl + 1 : L->text + len;
		if (nl)
			*nl = 0;
		lineno++;
		size_t l = strlen(p);
		if (l && p[l - 1] == '\r')
			p[--l] = 0;
		if (strspn(p, " \t\v\f") == l) {
			if (!skipped++)
				first_skip = lineno;
			continue;
		}
		if (pool) {
			char *tab = strchr(p, '\t');
			if (!tab || tab == p || !tab[1] || strchr(tab + 1, '\t'))
				die("%s: line %zu: a pool line is INPUT<TAB>ANSWER (two non-empty fields)", path,
				    lineno);
			*tab = 0;
			L->input[L->n] = p;
			/* the demonstration as it is prepended: "INPUT ANSWER" */
			char *d = xmalloc(strlen(p) + strlen(tab + 1) + 2);
			sprintf(d, "%s %s", p, tab + 1);
			L->line[L->n++] = d;
		} else {
			L->line[L->n++] = p;
		}
	}
	if (skipped && !quiet)
		warnf("%s: skipped %zu empty line%s (first: line %zu); the output has one row per "
		      "non-empty line", path, skipped, skipped > 1 ? "s" : "", first_skip);
	if (L->n == 0)
		die("%s: no non-empty lines", path);
}

static void free_lines(struct lines *L, int pool)
{
	if (pool)
		for (size_t i = 0; i < L->n; i++)
			free(L->line[i]);
	free(L->line);
	free(L->input);
	free(L->text);
}

static void progress(void *ctx, size_t done, size_t total)
{
	if (!*(const int *)ctx)
		return;
	fprintf(stderr, "\r%s: embedded %zu/%zu   ", argv0, done, total);
	if (done == total)
		fputc('\n', stderr);
}

static void tune_progress(void *ctx, const char *what, size_t done, size_t total)
{
	if (!*(const int *)ctx)
		return;
	fprintf(stderr, "\r%s: %s %zu/%zu   ", argv0, what, done, total);
	if (done == total)
		fputc('\n', stderr);
}

static void write_tsv(const struct lm_emb *e)
{
	for (size_t i = 0; i < e->n; i++) {
		fputs(e->lines[i], stdout);
		for (size_t j = 0; j < e->d; j++)
			printf("%c%.9g", j ? ' ' : '\t', e->emb[i * e->d + j]);
		putchar('\n');
	}
}

static void write_stream(const struct opts *o, const struct lm_header *h, const struct lm_emb *e,
                         int argc, char **argv)
{
	struct lm_out out;
	struct lm_writer *w;
	lm_out_open(&out, o->output, o->force);
	w = lm_writer_open(out.fd, out.name);
	if (lm_emb_write(w, h, e, argv0, argc, argv) < 0 || lm_writer_close(w) < 0)
		die_lm(out.name);
	lm_out_commit(&out);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"model", required_argument, 0, 'm'}, {"demo", required_argument, 0, 'D'},
		{"template", required_argument, 0, 'T'}, {"avg", no_argument, 0, 'A'},
		{"verbatim", no_argument, 0, 'W'},
		{"batch", required_argument, 0, 'b'}, {"pool", no_argument, 0, 'P'},
		{"tune", required_argument, 0, 'U'}, {"projection", required_argument, 0, 'R'},
		{"sample", required_argument, 0, 'L'}, {"negatives", required_argument, 0, 'G'},
		{"train-max", required_argument, 0, 'X'}, {"epochs", required_argument, 0, 'E'},
		{"lr", required_argument, 0, 'r'}, {"temperature", required_argument, 0, 't'},
		{"seed", required_argument, 0, 'S'}, {"tsv", no_argument, 0, 'Y'},
		{"output", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'},
		{"threads", required_argument, 0, 'j'}, {"no-verify", no_argument, 0, 'N'},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.verify = 1};
	struct lm_model_stream ms;
	struct lm_reader *rd;
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lines L;
	struct lm_emb e = {0};
	int c, tty;

	lm_rtune_defaults(&o.tc);
	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "m:b:L:o:fj:qhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case 'D': o.ec.demo = optarg; break;
		case 'T': o.ec.tmpl = optarg; break;
		case 'A': o.ec.avg = 1; break;
		case 'W': o.ec.verbatim = 1; break;
		case 'b': o.ec.batch = (size_t)estrtoll(optarg, 1, 4096, "--batch"); break;
		case 'P': o.pool = 1; break;
		case 'U': o.tune = optarg; break;
		case 'R': o.projection = optarg; break;
		case 'L': o.tc.sample = (size_t)estrtoll(optarg, 2, 4096, "--sample"); break;
		case 'G': o.tc.negatives = (size_t)estrtoll(optarg, 1, 4096, "--negatives"); break;
		case 'X': o.tc.train_max = (size_t)estrtoll(optarg, 1, 1LL << 30, "--train-max"); break;
		case 'E': o.tc.epochs = (size_t)estrtoll(optarg, 1, 1 << 20, "--epochs"); break;
		case 'r': o.tc.lr = estrtod(optarg, 1e-8, 10, "--lr"); break;
		case 't': o.tc.temperature = estrtod(optarg, 1e-4, 100, "--temperature"); break;
		case 'S': o.tc.seed = (uint64_t)estrtoll(optarg, 0, INT64_MAX, "--seed"); break;
		case 'Y': o.tsv = 1; break;
		case 'o': o.output = optarg; break;
		case 'f': o.force = 1; break;
		case 'j': o.threads = (int)estrtoll(optarg, 0, 1024, "--threads"); break;
		case 'N': o.verify = 0; break;
		case 'q': o.quiet = 1; break;
		case 'h': lm_usage(usage_text, 0);
		case 'V': puts("lm-embed " LM_VERSION); return 0;
		default: lm_bad_option(usage_text);
		}
	}
	if (argc - optind != 1)
		lm_usage(usage_text, 2);
	if (lm_embed_cfg_check(&o.ec) < 0)
		edie(2, "%s", lm_errmsg());
	if ((o.tune || o.projection) && !o.pool)
		edie(2, "--tune and --projection build a retrieval index: give --pool");
	if (o.tune && o.projection)
		edie(2, "--tune and --projection: choose one");
	if (o.tsv && (o.tune || o.projection))
		edie(2, "--tsv writes no projection: drop it with --tune or --projection");
	if (o.tsv && o.output)
		edie(2, "--tsv writes text to standard output: redirect it instead of -o");
	if (o.tc.negatives >= o.tc.sample)
		edie(2, "--negatives %zu: must be fewer than the %zu sampled prompts (--sample)",
		     o.tc.negatives, o.tc.sample);
	if (!o.model && !strcmp(argv[optind], "-"))
		edie(2, "FILE '-': standard input carries the model; give it with --model");
	if (!o.model && isatty(0))
		edie(2, "the model comes on standard input (lm-import DIR | lm-embed FILE), or give --model");
	if (!o.tsv && !o.output && !o.force && isatty(1))
		edie(2, "standard output is a terminal: redirect it, use -o FILE, or -f");
	lm_cli_threads(o.threads, 0);
	tty = !o.quiet && isatty(2);

	read_lines(&L, argv[optind], o.pool, o.quiet);
	rd = lm_in_open(o.model);
	lm_reader_set_verify(rd, o.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	if (!(tk = lm_calib_tokenizer(&ms, "lm-embed")))
		die_lm(lm_reader_name(rd));
	if (lm_model_init(&m, &ms.h.cfg) < 0 || lm_ms_load_all(&ms, &m) < 0)
		die_lm(lm_reader_name(rd));

	e.cfg = m.cfg;
	e.n = L.n, e.d = (size_t)m.cfg.word_embed_proj_dim;
	e.tmpl = (char *)(o.ec.tmpl ? o.ec.tmpl : LM_PROMPTEOL_TEMPLATE);
	e.demo = (char *)o.ec.demo, e.avg = o.ec.avg, e.verbatim = o.ec.verbatim;
	e.kind = o.pool ? "pool" : "lines";
	e.lines = L.line;
	e.fingerprint = lm_model_fingerprint(&m);
	if (!(e.emb = lm_alloc(e.n * e.d * sizeof *e.emb)))
		die_lm("embeddings");
	if (lm_embed_texts(&m, tk, &o.ec, (const char *const *)L.line, L.n, e.emb, progress, &tty) < 0)
		die_lm(argv[optind]);

	if (o.projection) {
		struct lm_emb p;
		if (lm_emb_read(&p, o.projection) < 0)
			die_lm(NULL);
		if (!p.proj)
			die("%s: has no tuned projection (make it with lm-embed --pool --tune)", o.projection);
		if (lm_emb_check_model(&p, &m.cfg, e.fingerprint) < 0)
			die_lm(o.projection);
		e.proj = p.proj, p.proj = NULL;
		lm_emb_free(&p);
	} else if (o.tune) {
		struct lm_task task;
		if (lm_task_load(&task, o.tune) < 0)
			die_lm(o.tune);
		struct lm_rtune_report rep;
		o.tc.progress = tune_progress, o.tc.pctx = &tty;
		if (!(e.proj = lm_rtune(&m, tk, &o.ec, &task, (const char *const *)L.input,
		                        (const char *const *)L.line, e.emb, L.n, &o.tc, &rep)))
			die_lm(o.tune);
		if (!o.quiet && rep.held_out)
			fprintf(stderr, "%s: tuned on %zu of %zu inputs with a correct prompt (%zu held out); "
			        "loss %.4f -> %.4f; training positive ranked first %.1f%% -> %.1f%%; held-out "
			        "positive ranked first %.1f%% -> %.1f%%\n", argv0,
			        rep.pairs, rep.inputs, rep.held_out, rep.loss_first, rep.loss_last,
			        100 * rep.train_before, 100 * rep.train_after,
			        100 * rep.held_before, 100 * rep.held_after);
		else if (!o.quiet)
			fprintf(stderr, "%s: tuned on %zu of %zu inputs with a correct prompt (too few to hold "
			        "any out); loss %.4f -> %.4f; training positive ranked first %.1f%% -> %.1f%%\n",
			        argv0, rep.pairs, rep.inputs, rep.loss_first, rep.loss_last,
			        100 * rep.train_before, 100 * rep.train_after);
		lm_task_free(&task);
	}

	if (o.tsv) {
		write_tsv(&e);
		lm_fshut_stdout();
	} else {
		write_stream(&o, &ms.h, &e, argc, argv);
	}
	lm_free(e.emb);
	lm_free(e.proj);
	free_lines(&L, o.pool);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
	lm_ms_close(&ms);
	lm_reader_close(rd);
	return 0;
}

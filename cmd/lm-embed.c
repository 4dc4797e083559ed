/* lm-embed: sentence embeddings (PromptEOL) of each line of a file, or of a prompt pool
 * for retrieval, optionally with a retriever tuned the UPRISE way; --contrastive
 * fine-tunes the model itself on sentence pairs (SimCSE's loss) and writes the model */
#include "textids.h"
#include "cli.h"
#include "contrastive_train.h"
#include "embed.h"
#include "embstream.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "rng.h"
#include "rtune.h"
#include "tokenizer.h"
#include "train.h"
#include "trainloop.h"
#include "util.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
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
	"      --tune-encoder TASK  train the model itself as the retriever's encoder on TASK\n"
	"                        with the pool (UPRISE; the pairs as --tune makes them, then the\n"
	"                        contrastive training below): writes the model (needs --pool)\n"
	"      --projection IDX  copy the tuned projection of index IDX (same model) into this one\n"
	"  -L, --sample N        --tune: pool prompts scored per training input (default 16)\n"
	"      --negatives N     --tune: hard negatives per input (default 4)\n"
	"      --train-max N     --tune: use at most N training inputs (default 256)\n"
	"      --epochs N        --tune: passes over the training inputs (default 20)\n"
	"      --lr X            --tune: AdamW learning rate (default 1e-3)\n"
	"      --temperature X   --tune: InfoNCE temperature of the cosines (default 0.05)\n"
	"      --seed N          --tune: sampling and shuffling seed (default 0)\n"
	"      --tsv             write LINE<TAB>v1 v2 ... text instead of a stream\n"
	"Contrastive fine-tuning (the output is the model, adapters merged):\n"
	"      --contrastive     FILE holds SENTENCE<TAB>POSITIVE[<TAB>HARD NEGATIVE] lines:\n"
	"                        InfoNCE on the PromptEOL embeddings, in-batch negatives\n"
	"      --unsupervised    FILE holds plain sentences, each its own positive under\n"
	"                        another dropout mask (SimCSE); implies --contrastive\n"
	"      --lora R          train LoRA of rank R on q/k/v/out_proj/fc1/fc2 (default 16)\n"
	"      --lora-alpha A    LoRA scale alpha/R (default 2R)\n"
	"      --perp            train every bias and LayerNorm instead (with --lora: as well)\n"
	"      --full            train every tensor of the decoder layers and the final LayerNorm\n"
	"      --pairs N         examples per step (default 32)\n"
	"      --epochs N        passes over FILE (default 1)\n"
	"  -n, --steps N         optimizer steps instead of whole epochs\n"
	"      --lr X            peak learning rate (default 1e-3; 1e-4 with --full)\n"
	"      --temperature X   of the cosines (default 0.05)\n"
	"      --symmetric       also each positive choosing its sentence (CLIP's loss)\n"
	"      --dropout P       dropout probability while training (default 0.1)\n"
	"      --warmup X        warmup fraction of the steps (default 0.1), then linear decay\n"
	"      --clip X          clip the global gradient norm (default 1.0; 0: off)\n"
	"      --seed N          order, LoRA initialisation and dropout (default 0)\n"
	"      --log FILE        one line per step (step, loss, lr, gradient norm, tokens/s)\n"
	"  -v, --verbose         notes on stderr even when it is no terminal\n"
	"  -o, --output FILE     write to FILE (renamed into place when complete)\n"
	"  -f, --force           write a stream to a terminal\n"
	"  -j, --threads N       threads (default: all cores)\n"
	"      --no-verify       skip CRC-32 checks of the model stream\n"
	"  -q, --quiet           no progress on stderr\n"
	"  -h, --help            show this help\n"
	"  -V, --version         show the version\n";

/* --contrastive */
struct ctr_opts {
	int on, unsup, symmetric, lora_set, perp, full, verbose;
	long long rank, pairs, epochs, steps;
	double alpha, lr, temperature, dropout, warmup, clip;
	const char *log;
};

struct opts {
	struct lm_embed_cfg ec;
	const char *model, *output, *tune, *projection, *tune_encoder;
	struct lm_rtune_cfg tc;
	struct ctr_opts ct;
	int pool, tsv, force, threads, verify, quiet, epochs_set, lr_set, temp_set, seed_set;
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

/* ---- --contrastive ---- */

/* record on every tensor that changed how (lm-info shows the attributes) */
static void mark_attrs(struct lm_model_stream *ms, const struct lm_train *tr, const struct opts *o,
                       long steps)
{
	const struct ctr_opts *c = &o->ct;
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		if (!lm_train_changes(tr, t->kind, t->layer))
			continue;
		json_t *r = json_pack("{s:s, s:I, s:f, s:I, s:f, s:b, s:f, s:I}", "data",
		                      c->unsup ? "unsupervised" : "supervised", "steps", (json_int_t)steps,
		                      "lr", c->lr, "pairs", (json_int_t)c->pairs, "temperature",
		                      c->temperature, "symmetric", c->symmetric, "dropout", c->dropout,
		                      "seed", (json_int_t)o->tc.seed);
		if (c->rank && lm_opt_is_linear(t->kind)) {
			json_object_set_new(r, "adapter", json_string("lora"));
			json_object_set_new(r, "rank", json_integer(c->rank));
			json_object_set_new(r, "alpha", json_real(c->alpha));
		}
		json_object_set_new(lm_ms_attrs(ms, t->kind, t->layer), "contrastive", r);
	}
}

/* QLoRA: an adapter merged into a packed (lm-quant) matrix leaves an f32 matrix that is
 * no longer on the quantization grid; it is written as f16 (train.h, lora_packed) and says
 * what it was */
static void unpack_merged(struct lm_model_stream *ms, struct lm_model *m)
{
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		struct lm_mat *mt = lm_model_mat(m, t->kind, t->layer);
		if (!lm_dtype_is_packed(ms->dtypes[i]) || !mt || lm_dtype_is_packed(mt->dtype))
			continue;
		json_t *a = json_object_get(lm_ms_attrs(ms, t->kind, t->layer), "contrastive");
		if (a)
			json_object_set_new(a, "unpacked_from", json_string(lm_dtype_name(ms->dtypes[i])));
		ms->dtypes[i] = LM_F16;
	}
}

/* Train the loaded model m on FILE's examples; the loop is lm-retrain's (schedule, clip,
 * AdamW, progress); dies on failure, nothing written */
static void contrastive(struct opts *o, const char *path, struct lm_ctr_data *dp,
                        struct lm_model_stream *ms, struct lm_model *m,
                        const struct lm_tokenizer *tk)
{
	struct ctr_opts *co = &o->ct;
	struct lm_ctr_data d = *dp;
	struct lm_ctr c;
	struct lm_train tr;
	struct lm_progress pg = {0};
	struct lm_rng rng;
	struct lm_adamw adam = {0.9, 0.999, 1e-8, 0.0};
	struct lm_train_opts to = {.perp = co->perp, .full = co->full, .layer = -1,
	                           .dropout = co->dropout, .seed = o->tc.seed};
	double last = NAN, first_sum = 0, last_sum = 0, tokens = 0;
	long last_step = -1;

	if (co->rank)
		to.lora = LM_LORA_STD, to.rank = (int)co->rank, to.alpha = co->alpha;
	to.lora_packed = 1; /* QLoRA: see unpack_merged */
	if (d.n < 2)
		die("%s: one example: in-batch negatives need two or more", path);
	size_t P = (size_t)co->pairs < d.n ? (size_t)co->pairs : d.n;
	if (lm_ctr_init(&c, &d, &m->cfg, tk, &o->ec, P, co->temperature, co->symmetric) < 0)
		die_lm(path);
	long per_epoch = (long)((d.n + P - 1) / P);
	long steps = co->steps ? co->steps : (long)co->epochs * per_epoch;
	lm_progress_open(&pg, co->log, co->verbose, o->quiet);
	if (lm_train_init(&tr, m, &to, c.maxseq, c.T) < 0)
		die_lm(lm_reader_name(ms->rd));
	lm_progress_note(&pg, "training %zu values in %zu tensors (%.0f MiB of gradients, moments and "
	                 "activations) on %zu %s examples (%zu with a hard negative), %zu per step, "
	                 "%ld steps", lm_train_count(&tr), tr.npar,
	                 (double)lm_train_bytes(&tr) / 1048576.0, d.n,
	                 co->unsup ? "unsupervised" : "supervised", d.nhard, P, steps);

	/* the examples in a new seeded order every epoch; a step takes the next P of that
	 * endless sequence, so every step has P examples */
	size_t *order = xmalloc(d.n * sizeof *order), at = d.n, *rows = xmalloc(P * sizeof *rows);
	lm_rng_seed(&rng, o->tc.seed);
	long warm = (long)ceil(co->warmup * (double)steps), k10 = steps / 10 ? steps / 10 : 1;
	pg.t0 = lm_now(), pg.total = steps;
	for (long s = 0; s < steps; s++) {
		double loss, lr = lm_lr_at(s, steps, warm, co->lr, 0);
		for (size_t b = 0; b < P; b++) {
			if (at == d.n) {
				for (size_t i = 0; i < d.n; i++)
					order[i] = i;
				for (size_t i = d.n - 1; i > 0; i--) {
					size_t j = (size_t)lm_rng_below(&rng, i + 1), t = order[i];
					order[i] = order[j], order[j] = t;
				}
				at = 0;
			}
			rows[b] = order[at++];
		}
		lm_train_zero_grad(&tr);
		if (lm_ctr_step(&c, &tr, rows, P, &loss) < 0)
			die_lm("training");
		double gn = lm_train_update(&tr, &adam, co->clip, loss, lr, s, last, last_step, NULL);
		last = loss, last_step = s;
		if (s < k10)
			first_sum += loss;
		if (s >= steps - k10)
			last_sum += loss;
		tokens += (double)c.tokens;
		lm_progress_step(&pg, NULL, s + 1, loss, lr, gn, tokens);
	}
	double secs = lm_now() - pg.t0;
	if (lm_train_merge(&tr) < 0)
		die("training: %s; nothing written", lm_errmsg());
	mark_attrs(ms, &tr, o, steps);
	lm_train_commit(&tr);
	unpack_merged(ms, m);
	lm_train_free(&tr);
	if (!o->quiet)
		fprintf(stderr, "%s: contrastive: %ld steps of %zu examples, loss %.4f (first %ld steps) "
		        "-> %.4f (last %ld); %.1f pairs/s\n", argv0, steps, P, first_sum / (double)k10, k10,
		        last_sum / (double)k10, k10, (double)steps * (double)P / secs);
	if (pg.log && pg.log != stderr && fclose(pg.log) == EOF)
		die("%s: write error:", co->log);
	free(order), free(rows);
	lm_ctr_free(&c);
}

/* ---- --tune-encoder: UPRISE's retriever, the encoder itself trained ---- */

/* share of the pairs whose positive prompt is nearer (cosine) to the input than every hard
 * negative, with the model's embeddings */
static double ranked_first(const struct lm_model *m, const struct lm_tokenizer *tk,
                           const struct lm_embed_cfg *ec, const struct lm_task *task,
                           const struct lines *L, const struct lm_rtune_pairs *pr,
                           const size_t *sel, size_t n)
{
	size_t H = pr->H, d = (size_t)m->cfg.word_embed_proj_dim, ok = 0;
	const char **t = xmalloc((n * (H + 2) + 1) * sizeof *t);
	float *z = xmalloc((n * (H + 2) + 1) * d * sizeof *z);
	for (size_t i = 0; i < n; i++) {
		size_t k = sel[i];
		t[i * (H + 2)] = task->it[pr->item[k]].input;
		t[i * (H + 2) + 1] = L->line[pr->pos[k]];
		for (size_t h = 0; h < H; h++)
			t[i * (H + 2) + 2 + h] = L->line[pr->neg[k * H + h]];
	}
	if (n && lm_embed_texts(m, tk, ec, t, n * (H + 2), z, NULL, NULL) < 0)
		die_lm("retrieval check");
	for (size_t i = 0; i < n; i++) {
		const float *q = z + i * (H + 2) * d;
		double cp = lm_cosine(q, q + d, d), best = -2;
		for (size_t h = 0; h < H; h++) {
			double c = lm_cosine(q, q + (2 + h) * d, d);
			best = c > best ? c : best;
		}
		ok += cp > best;
	}
	free(t), free(z);
	return n ? (double)ok / (double)n : 0;
}

/* score the pool with the frozen model (lm_rtune's pairs), then train the model itself on
 * INPUT<TAB>POSITIVE<TAB>WORST-SCORED rows: one encoder for the inputs and the prompts */
static void tune_encoder(struct opts *o, const char *pool, struct lm_model_stream *ms,
                         struct lm_model *m, const struct lm_tokenizer *tk)
{
	struct lines L;
	struct lm_task task;
	struct lm_rtune_pairs pr;
	struct lm_ctr_data d;
	int tty = !o->quiet && isatty(2);

	read_lines(&L, pool, 1, o->quiet);
	if (lm_task_load(&task, o->tune_encoder) < 0)
		die_lm(o->tune_encoder);
	o->tc.progress = tune_progress, o->tc.pctx = &tty;
	if (lm_rtune_pairs(m, tk, &task, (const char *const *)L.input, (const char *const *)L.line, L.n,
	                   &o->tc, &pr) < 0)
		die_lm(o->tune_encoder);
	/* every tenth pair held out (none when there are fewer than 10), as --tune does */
	size_t *held = xmalloc(pr.n * sizeof *held), *tr = xmalloc(pr.n * sizeof *tr), nh = 0, nt = 0;
	for (size_t i = 0; i < pr.n; i++) {
		if (pr.n >= 10 && i % 10 == 9)
			held[nh++] = i;
		else
			tr[nt++] = i;
	}
	const char **a = xmalloc((nt + 1) * sizeof *a), **p = xmalloc((nt + 1) * sizeof *p);
	const char **h = xmalloc((nt + 1) * sizeof *h);
	for (size_t i = 0; i < nt; i++) {
		a[i] = task.it[pr.item[tr[i]]].input;
		p[i] = L.line[pr.pos[tr[i]]];
		h[i] = L.line[pr.neg[tr[i] * pr.H]];
	}
	lm_ctr_data_set(&d, a, p, h, nt);
	double before = ranked_first(m, tk, &o->ec, &task, &L, &pr, held, nh);
	double tbefore = ranked_first(m, tk, &o->ec, &task, &L, &pr, tr, nt);
	contrastive(o, o->tune_encoder, &d, ms, m, tk);
	double after = ranked_first(m, tk, &o->ec, &task, &L, &pr, held, nh);
	double tafter = ranked_first(m, tk, &o->ec, &task, &L, &pr, tr, nt);
	if (!o->quiet)
		fprintf(stderr, "%s: encoder tuned on %zu of %zu inputs with a correct prompt (%zu held "
		        "out); positive ranked first: held out %.1f%% -> %.1f%%, training %.1f%% -> "
		        "%.1f%%\n", argv0, pr.n, pr.inputs, nh, 100 * before, 100 * after, 100 * tbefore,
		        100 * tafter);
	free(a), free(p), free(h), free(held), free(tr);
	lm_ctr_data_free(&d);
	lm_rtune_pairs_free(&pr);
	lm_task_free(&task);
	free_lines(&L, 1);
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
		{"tune-encoder", required_argument, 0, 'e'}, {"contrastive", no_argument, 0, 'C'}, {"unsupervised", no_argument, 0, 'u'},
		{"symmetric", no_argument, 0, 'y'}, {"lora", required_argument, 0, 'K'},
		{"lora-alpha", required_argument, 0, 'a'}, {"perp", no_argument, 0, 'p'},
		{"full", no_argument, 0, 'F'}, {"pairs", required_argument, 0, 'z'},
		{"steps", required_argument, 0, 'n'}, {"dropout", required_argument, 0, 'd'},
		{"warmup", required_argument, 0, 'w'}, {"clip", required_argument, 0, 'c'},
		{"log", required_argument, 0, 'g'}, {"verbose", no_argument, 0, 'v'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.verify = 1,
	                 .ct = {.rank = 16, .pairs = 32, .epochs = 1, .temperature = 0.05,
	                        .dropout = 0.1, .warmup = 0.1, .clip = 1.0, .alpha = -1}};
	int ctr_opt = 0;
	struct lm_out out;
	struct lm_model_stream ms;
	struct lm_reader *rd;
	struct lm_model m;
	struct lm_tokenizer *tk;
	struct lines L;
	struct lm_emb e = {0};
	int c, tty;

	lm_rtune_defaults(&o.tc);
	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "m:b:L:n:o:fj:qvhV", lopts, NULL)) != -1) {
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
		case 'E': o.tc.epochs = (size_t)estrtoll(optarg, 1, 1 << 20, "--epochs"), o.epochs_set = 1; break;
		case 'r': o.tc.lr = estrtod(optarg, 1e-8, 10, "--lr"), o.lr_set = 1; break;
		case 't': o.tc.temperature = estrtod(optarg, 1e-4, 100, "--temperature"), o.temp_set = 1; break;
		case 'S': o.tc.seed = (uint64_t)estrtoll(optarg, 0, INT64_MAX, "--seed"), o.seed_set = 1; break;
		case 'C': o.ct.on = 1; break;
		case 'e': o.tune_encoder = optarg; break;
		case 'u': o.ct.on = o.ct.unsup = 1; break;
		case 'y': o.ct.symmetric = 1, ctr_opt = 1; break;
		case 'K': o.ct.rank = estrtoll(optarg, 1, 1 << 16, "--lora"), o.ct.lora_set = 1, ctr_opt = 1; break;
		case 'a': o.ct.alpha = estrtod(optarg, 1e-12, 1e12, "--lora-alpha"), ctr_opt = 1; break;
		case 'p': o.ct.perp = 1, ctr_opt = 1; break;
		case 'F': o.ct.full = 1, ctr_opt = 1; break;
		case 'z': o.ct.pairs = estrtoll(optarg, 2, 1 << 16, "--pairs"), ctr_opt = 1; break;
		case 'n': o.ct.steps = estrtoll(optarg, 1, 1LL << 40, "--steps"), ctr_opt = 1; break;
		case 'd': o.ct.dropout = estrtod(optarg, 0, 0.99, "--dropout"), ctr_opt = 1; break;
		case 'w': o.ct.warmup = estrtod(optarg, 0, 1, "--warmup"), ctr_opt = 1; break;
		case 'c': o.ct.clip = estrtod(optarg, 0, 1e300, "--clip"), ctr_opt = 1; break;
		case 'g': o.ct.log = optarg, ctr_opt = 1; break;
		case 'v': o.ct.verbose = 1; break;
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
	if (o.tune_encoder) {
		if (!o.pool || o.tune || o.projection || o.tsv || o.ct.on)
			edie(2, "--tune-encoder trains the model on a --pool: give --pool, and not --tune, "
			     "--projection, --tsv or --contrastive");
		if (o.ct.unsup)
			edie(2, "--unsupervised: --tune-encoder's pairs come from the model's scores");
	}
	if (ctr_opt && !o.ct.on && !o.tune_encoder)
		edie(2, "--symmetric, --lora, --perp, --full, --pairs, --steps, --dropout, --warmup, "
		     "--clip and --log are for --contrastive or --tune-encoder");
	if (o.ct.on || o.tune_encoder) {
		if (o.tune_encoder)
			o.pool = 0, o.ct.on = 1;
		if (o.pool || o.tune || o.projection || o.tsv)
			edie(2, "--contrastive writes the trained model: not with --pool, --tune, "
			     "--projection or --tsv");
		if (o.ec.avg)
			edie(2, "--avg: contrastive training trains the last token's state; embed the "
			     "trained model with --avg if you like, but it learnt without");
		if ((o.ct.perp || o.ct.full) && !o.ct.lora_set)
			o.ct.rank = 0;
		if (o.ct.alpha < 0)
			o.ct.alpha = 2.0 * (double)o.ct.rank;
		o.ct.epochs = o.epochs_set ? (long long)o.tc.epochs : o.tune_encoder ? 10 : 1;
		o.ct.lr = o.lr_set ? o.tc.lr : o.ct.full ? 1e-4 : 1e-3;
		if (o.temp_set)
			o.ct.temperature = o.tc.temperature;
		if (o.epochs_set && o.ct.steps)
			edie(2, "--epochs and --steps: choose one");
	}
	if ((o.tune || o.projection) && !o.pool)
		edie(2, "--tune and --projection build a retrieval index: give --pool");
	if (o.tune && o.projection)
		edie(2, "--tune and --projection: choose one");
	if (o.tsv && (o.tune || o.projection))
		edie(2, "--tsv writes no projection: drop it with --tune or --projection");
	if (o.tsv && o.output)
		edie(2, "--tsv writes text to standard output: redirect it instead of -o");
	if ((!o.ct.on || o.tune_encoder) && o.tc.negatives >= o.tc.sample)
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

	if (o.ct.on) {
		/* the output is checked (terminal, path) now, and written only at the very end */
		lm_out_open(&out, o.output, o.force);
		rd = lm_in_open(o.model);
		lm_reader_set_verify(rd, o.verify);
		if (lm_ms_open(&ms, rd) < 0)
			die_lm(lm_reader_name(rd));
		if (!(tk = lm_ids_tokenizer(&ms, "lm-embed")))
			die_lm(lm_reader_name(rd));
		if (lm_model_init(&m, &ms.h.cfg) < 0 || lm_ms_load_all(&ms, &m) < 0)
			die_lm(lm_reader_name(rd));
		if (o.tune_encoder) {
			tune_encoder(&o, argv[optind], &ms, &m, tk);
		} else {
			struct lm_ctr_data d;
			if (lm_ctr_load(&d, argv[optind], o.ct.unsup) < 0)
				die_lm(argv[optind]);
			contrastive(&o, argv[optind], &d, &ms, &m, tk);
			lm_ctr_data_free(&d);
		}
		lm_write_model(&ms, &m, &out, argc, argv);
		lm_tokenizer_free(tk);
		lm_model_free(&m);
		lm_ms_close(&ms);
		lm_reader_close(rd);
		return 0;
	}
	read_lines(&L, argv[optind], o.pool, o.quiet);
	rd = lm_in_open(o.model);
	lm_reader_set_verify(rd, o.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	if (!(tk = lm_ids_tokenizer(&ms, "lm-embed")))
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

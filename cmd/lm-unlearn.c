/* lm-unlearn: gradient-ascent unlearning with a retain set (docs/methods.md §8), full or
 * through LoRA. The model is read whole, trained, and written only when training ended
 * with finite weights. */
#include "textids.h"
#include "cli.h"
#include "kernels.h"
#include "modelio.h"
#include "modelstream.h"
#include "tokenizer.h"
#include "train.h"
#include "trainloop.h"
#include "unlearn.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"usage: lm-unlearn (--forget CSV | --forget-text FILE) [--retain CSV | --retain-text FILE]\n"
	"                  [options] [STREAM]\n"
	"Make the model read from STREAM or standard input forget a data set by gradient ascent\n"
	"while a retain set holds the rest in place; the result goes to stdout.\n"
	"Data (CSV: question/answer rows, laid out \"### Question: Q\\n ### Answer: A\"):\n"
	"      --forget CSV           ascent on the answers, given their questions\n"
	"      --forget-text FILE     ascent on the windows of a text (or an ids stream)\n"
	"      --retain CSV           held in place; its answers are the random answers' pool\n"
	"      --retain-text FILE     held in place: windows of a text (or an ids stream)\n"
	"      --forget-question COL  column names (default: question, goal, prompt or\n"
	"      --forget-answer COL      instruction / answer, best answer, target, response\n"
	"      --retain-question COL    or output, the first the header has, any case)\n"
	"      --retain-answer COL\n"
	"      --skip-incomplete      leave out rows without a question or an answer\n"
	"  -s, --seqlen N             longest question+answer, and the text windows (default 128)\n"
	"What trains:\n"
	"      --full                 the decoder layers and the final LayerNorm (the default)\n"
	"      --lora R               LoRA of rank R on q/k/v/out_proj/fc1/fc2, merged at the end\n"
	"      --lora-alpha A         LoRA scale alpha/R (default 2R)\n"
	"Loss (each term a mean over its batch):\n"
	"      --forget-weight X      ascent on the forget set (default 0.5)\n"
	"      --random-weight X      descent on forget questions with random retain answers\n"
	"                             (default 1; Q/A sets only)\n"
	"      --random-answers K     random answers per forget question (default 5)\n"
	"      --retain-weight X      the retain term (default 1)\n"
	"      --retain-loss L        kl: cross-entropy to the frozen original model (default);\n"
	"                             nll: the retain set's own next tokens\n"
	"      --learn                descend on the forget set instead (a model that knows it)\n"
	"  -b, --batch N              forget sequences per step (default 2)\n"
	"      --retain-batch N       retain sequences per step (default 2)\n"
	"  -n, --steps N              optimizer steps (default 1000)\n"
	"      --max-forget-loss X    stop once the forget loss exceeds X (default 100)\n"
	"      --stop-window N        ... its mean over the last N steps (default 1)\n"
	"Optimizer (AdamW, linear decay to 0):\n"
	"  -l, --lr X                 peak learning rate (default 2e-6)\n"
	"      --warmup X             warmup fraction of the steps (default 0)\n"
	"      --weight-decay X       on matrices and LoRA factors (default 0)\n"
	"      --clip X               clip the global gradient norm to X (default 1.0; 0: off)\n"
	"      --dropout P            dropout probability (default 0)\n"
	"      --seed N               data order, random answers, LoRA initialisation (default 0)\n"
	"Output and the rest:\n"
	"  -o, --output FILE          write to FILE (atomically) instead of standard output\n"
	"  -f, --force                write to standard output even if it is a terminal\n"
	"      --log FILE             one line per step (losses, lr, gradient norm, tokens/s)\n"
	"  -j, --threads N            threads (default: all cores)\n"
	"      --no-verify            skip CRC-32 checks of the input stream\n"
	"  -v, --verbose              summary lines on stderr even when it is no terminal\n"
	"  -q, --quiet                nothing on stderr but errors and warnings\n"
	"  -h, --help                 show this help\n"
	"  -V, --version              show the version\n";

struct opts {
	const char *forget, *forget_text, *retain, *retain_text, *fq, *fa, *rq, *ra;
	const char *output, *log;
	long long seqlen, batch, retain_batch, steps, nrandom, seed, rank, stop_window;
	double w_forget, w_random, w_retain, max_forget, lr, warmup, clip, dropout, alpha;
	struct lm_adamw adam;
	int full, retain_nll, learn, skip_incomplete, threads, verify, quiet, verbose, force;
	int alpha_set;
};

/* ---- data ---- */

static void load_set(struct lm_ul_set *s, const char *csv, const char *text, const char *qc,
                     const char *ac, const struct opts *o, const struct lm_model_stream *ms,
                     struct lm_tokenizer **tk)
{
	if (csv) {
		if (!*tk && !(*tk = lm_ids_tokenizer(ms, "a question/answer file")))
			die_lm(lm_reader_name(ms->rd));
		if (lm_ul_load_qa(s, csv, qc, ac, *tk, ms->h.cfg.bos, (size_t)o->seqlen,
		                  o->skip_incomplete) < 0)
			die_lm(csv);
		if (s->skipped)
			warnf("%s: %zu rows without a question or an answer left out", csv, s->skipped);
		if (s->truncated)
			warnf("%s: %zu answers cut to %lld tokens (--seqlen)", csv, s->truncated, o->seqlen);
	} else {
		int32_t *ids;
		size_t n;
		if (lm_ids_load(text, ms, &ids, &n) < 0 ||
		    lm_ul_load_text(s, ids, n, (size_t)o->seqlen) < 0)
			die_lm(text);
		free(ids);
	}
}

/* ---- what the output records ---- */

static void mark_attrs(struct lm_model_stream *ms, const struct lm_train *tr, const struct opts *o,
                       long steps)
{
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		if (!lm_train_changes(tr, t->kind, t->layer))
			continue;
		json_t *r = json_pack("{s:s, s:s, s:I, s:f, s:I}", "method",
		                      o->learn ? "learn" : "gradient-ascent", "forget",
		                      o->forget ? o->forget : o->forget_text, "steps", (json_int_t)steps,
		                      "lr", o->lr, "seed", (json_int_t)o->seed);
		if (o->retain || o->retain_text)
			json_object_set_new(r, "retain", json_string(o->retain ? o->retain : o->retain_text));
		if (!o->full) {
			json_object_set_new(r, "adapter", json_string(lm_lora_name(LM_LORA_STD)));
			json_object_set_new(r, "rank", json_integer(o->rank));
			json_object_set_new(r, "alpha", json_real(o->alpha));
		}
		json_object_set_new(lm_ms_attrs(ms, t->kind, t->layer), "unlearn", r);
	}
}

/* full training changes the model's layers in place: the frozen original is a copy of
 * them that shares everything else, which such a training must leave alone */
static void check_shared(const struct lm_train *tr)
{
	static const enum lm_opt_kind shared[] = {LM_T_EMBED_TOKENS, LM_T_EMBED_POS, LM_T_PROJECT_IN,
	                                          LM_T_PROJECT_OUT, LM_T_LM_HEAD};
	for (size_t i = 0; i < sizeof shared / sizeof *shared; i++)
		if (lm_train_changes(tr, shared[i], -1))
			die("internal: a tensor shared with the frozen model trains");
}

/* ---- the loop ---- */

static long run(struct lm_unlearn *u, struct lm_train *tr, const struct opts *o,
                struct lm_progress *pg)
{
	long warm = (long)ceil(o->warmup * (double)o->steps), last_step = -1, s;
	double last = NAN, tokens = 0, wsum = 0;
	/* the last stop_window forget losses: one batch says little about a large set */
	double *recent = xcalloc((size_t)o->stop_window, sizeof *recent);
	char extra[160];
	struct lm_ul_losses ls;

	pg->t0 = lm_now(), pg->total = o->steps, pg->extra = extra;
	for (s = 0; s < o->steps; s++) {
		double lr = lm_lr_at(s, o->steps, warm, o->lr, 0);
		if (lm_ul_step(u, &ls) < 0)
			die_lm("training");
		snprintf(extra, sizeof extra, "forget %.4f", ls.forget);
		if (u->use_random)
			snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " random %.4f", ls.random);
		if (u->use_retain)
			snprintf(extra + strlen(extra), sizeof extra - strlen(extra), " retain %.4f", ls.retain);
		size_t k = (size_t)(s % o->stop_window);
		wsum += ls.forget - recent[k], recent[k] = ls.forget;
		double mean = wsum / (double)(s + 1 < o->stop_window ? s + 1 : o->stop_window);
		/* a loss that is not finite goes on to the update, which stops the run */
		if (!o->learn && isfinite(ls.total) && s + 1 >= o->stop_window && mean > o->max_forget) {
			if (o->stop_window > 1)
				lm_progress_note(pg, "step %ld: mean forget loss of the last %lld steps %.4f "
				                 "exceeds %g: stopping", s + 1, o->stop_window, mean, o->max_forget);
			else
				lm_progress_note(pg, "step %ld: forget loss %.4f exceeds %g: stopping", s + 1,
				                 ls.forget, o->max_forget);
			break;
		}
		double gn = lm_train_update(tr, &o->adam, o->clip, ls.total, lr, s, last, last_step, NULL);
		last = ls.total, last_step = s;
		tokens += (double)ls.tokens;
		lm_progress_step(pg, NULL, s + 1, ls.total, lr, gn, tokens);
	}
	if (pg->tty && s < o->steps && s > 0)
		fputc('\n', stderr);
	pg->extra = NULL;
	free(recent);
	return s;  /* updates made */
}

/* ---- options ---- */

int main(int argc, char **argv)
{
	enum {
		O_FORGET = 256, O_FTEXT, O_RETAIN, O_RTEXT, O_FQ, O_FA, O_RQ, O_RA, O_SKIP, O_FULL,
		O_LORA, O_ALPHA, O_WF, O_WR, O_WT, O_NRAND, O_RLOSS, O_LEARN, O_RBATCH, O_MAXF, O_SWIN, O_WARM,
		O_WD, O_CLIP, O_DROP, O_SEED, O_LOG, O_NOVERIFY,
	};
	static const struct option lopts[] = {
		{"forget", required_argument, 0, O_FORGET}, {"forget-text", required_argument, 0, O_FTEXT},
		{"retain", required_argument, 0, O_RETAIN}, {"retain-text", required_argument, 0, O_RTEXT},
		{"forget-question", required_argument, 0, O_FQ},
		{"forget-answer", required_argument, 0, O_FA},
		{"retain-question", required_argument, 0, O_RQ},
		{"retain-answer", required_argument, 0, O_RA},
		{"skip-incomplete", no_argument, 0, O_SKIP}, {"seqlen", required_argument, 0, 's'},
		{"full", no_argument, 0, O_FULL}, {"lora", required_argument, 0, O_LORA},
		{"lora-alpha", required_argument, 0, O_ALPHA},
		{"forget-weight", required_argument, 0, O_WF}, {"random-weight", required_argument, 0, O_WR},
		{"retain-weight", required_argument, 0, O_WT},
		{"random-answers", required_argument, 0, O_NRAND},
		{"retain-loss", required_argument, 0, O_RLOSS}, {"learn", no_argument, 0, O_LEARN},
		{"batch", required_argument, 0, 'b'}, {"retain-batch", required_argument, 0, O_RBATCH},
		{"steps", required_argument, 0, 'n'}, {"max-forget-loss", required_argument, 0, O_MAXF},
		{"stop-window", required_argument, 0, O_SWIN},
		{"lr", required_argument, 0, 'l'}, {"warmup", required_argument, 0, O_WARM},
		{"weight-decay", required_argument, 0, O_WD}, {"clip", required_argument, 0, O_CLIP},
		{"dropout", required_argument, 0, O_DROP}, {"seed", required_argument, 0, O_SEED},
		{"output", required_argument, 0, 'o'}, {"force", no_argument, 0, 'f'},
		{"log", required_argument, 0, O_LOG}, {"threads", required_argument, 0, 'j'},
		{"no-verify", no_argument, 0, O_NOVERIFY}, {"verbose", no_argument, 0, 'v'},
		{"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
	struct opts o = {.seqlen = 128, .batch = 2, .retain_batch = 2, .steps = 1000, .nrandom = 5,
	                 .w_forget = 0.5, .w_random = 1, .w_retain = 1, .max_forget = 100,
	                 .stop_window = 1, .lr = 2e-6, .clip = 1.0, .verify = 1, .adam = {0.9, 0.999, 1e-8, 0.0}};
	struct lm_model_stream ms;
	struct lm_model m, frozen;
	struct lm_reader *rd;
	struct lm_out out;
	struct lm_progress pg = {0};
	struct lm_tokenizer *tk = NULL;
	struct lm_ul_set fs, rs;
	struct lm_train tr;
	struct lm_unlearn u;
	int c, full_given = 0, have_frozen = 0;

	lm_prog_init(argc, argv);
	while ((c = getopt_long(argc, argv, "s:b:n:l:o:fj:vqhV", lopts, NULL)) != -1) {
		switch (c) {
		case O_FORGET: o.forget = optarg; break;
		case O_FTEXT: o.forget_text = optarg; break;
		case O_RETAIN: o.retain = optarg; break;
		case O_RTEXT: o.retain_text = optarg; break;
		case O_FQ: o.fq = optarg; break;
		case O_FA: o.fa = optarg; break;
		case O_RQ: o.rq = optarg; break;
		case O_RA: o.ra = optarg; break;
		case O_SKIP: o.skip_incomplete = 1; break;
		case 's': o.seqlen = estrtoll(optarg, 2, 1 << 20, "--seqlen"); break;
		case O_FULL: full_given = 1; break;
		case O_LORA: o.rank = estrtoll(optarg, 1, 1 << 20, "--lora"); break;
		case O_ALPHA: o.alpha = estrtod(optarg, 1e-12, 1e12, "--lora-alpha"), o.alpha_set = 1; break;
		case O_WF: o.w_forget = estrtod(optarg, 1e-12, 1e12, "--forget-weight"); break;
		case O_WR: o.w_random = estrtod(optarg, 0, 1e12, "--random-weight"); break;
		case O_WT: o.w_retain = estrtod(optarg, 0, 1e12, "--retain-weight"); break;
		case O_NRAND: o.nrandom = estrtoll(optarg, 0, 1024, "--random-answers"); break;
		case O_RLOSS:
			if (!strcmp(optarg, "nll"))
				o.retain_nll = 1;
			else if (strcmp(optarg, "kl"))
				edie(2, "--retain-loss: '%s' is not kl or nll", optarg);
			break;
		case O_LEARN: o.learn = 1; break;
		case 'b': o.batch = estrtoll(optarg, 1, 1 << 16, "--batch"); break;
		case O_RBATCH: o.retain_batch = estrtoll(optarg, 1, 1 << 16, "--retain-batch"); break;
		case 'n': o.steps = estrtoll(optarg, 1, 1LL << 40, "--steps"); break;
		case O_MAXF: o.max_forget = estrtod(optarg, 0, 1e300, "--max-forget-loss"); break;
		case O_SWIN: o.stop_window = estrtoll(optarg, 1, 1 << 20, "--stop-window"); break;
		case 'l': o.lr = estrtod(optarg, 0, 1e300, "--lr"); break;
		case O_WARM: o.warmup = estrtod(optarg, 0, 1, "--warmup"); break;
		case O_WD: o.adam.weight_decay = estrtod(optarg, 0, 1e6, "--weight-decay"); break;
		case O_CLIP: o.clip = estrtod(optarg, 0, 1e300, "--clip"); break;
		case O_DROP: o.dropout = estrtod(optarg, 0, 0.99, "--dropout"); break;
		case O_SEED: o.seed = estrtoll(optarg, 0, 1LL << 62, "--seed"); break;
		case 'o': o.output = optarg; break;
		case 'f': o.force = 1; break;
		case O_LOG: o.log = optarg; break;
		case 'j': o.threads = (int)estrtoll(optarg, 0, 1024, "--threads"); break;
		case O_NOVERIFY: o.verify = 0; break;
		case 'v': o.verbose = 1; break;
		case 'q': o.quiet = 1; break;
		case 'h': lm_usage(usage_text, 0);
		case 'V': puts("lm-unlearn " LM_VERSION); return 0;
		default: lm_bad_option(usage_text);
		}
	}
	if (argc - optind > 1)
		lm_usage(usage_text, 2);
	if (!!o.forget + !!o.forget_text != 1)
		edie(2, "give one forget set: --forget CSV or --forget-text FILE");
	if (o.retain && o.retain_text)
		edie(2, "give one retain set: --retain CSV or --retain-text FILE");
	if ((o.fq || o.fa) && !o.forget)
		edie(2, "--forget-question and --forget-answer name columns of --forget CSV");
	if ((o.rq || o.ra) && !o.retain)
		edie(2, "--retain-question and --retain-answer name columns of --retain CSV");
	if (full_given && o.rank)
		edie(2, "--full and --lora exclude each other");
	o.full = !o.rank;
	if (!o.alpha_set)
		o.alpha = 2.0 * (double)o.rank;

	lm_cli_threads(o.threads, o.verbose);
	/* the output is checked (terminal, path) now, and written only at the very end */
	lm_out_open(&out, o.output, o.force);
	rd = lm_in_open(optind < argc ? argv[optind] : NULL);
	lm_reader_set_verify(rd, o.verify);
	if (lm_ms_open(&ms, rd) < 0)
		die_lm(lm_reader_name(rd));
	const struct lm_opt_config *cfg = &ms.h.cfg;
	if (o.seqlen > cfg->max_positions)
		edie(2, "--seqlen %lld exceeds the model's %lld positions", o.seqlen,
		     (long long)cfg->max_positions);
	if (lm_model_init(&m, cfg) < 0 || lm_ms_load_all(&ms, &m) < 0)
		die_lm(lm_reader_name(rd));

	lm_progress_open(&pg, o.log, o.verbose, o.quiet);

	load_set(&fs, o.forget, o.forget_text, o.fq, o.fa, &o, &ms, &tk);
	int retain = o.retain || o.retain_text;
	if (retain) {
		load_set(&rs, o.retain, o.retain_text, o.rq, o.ra, &o, &ms, &tk);
		size_t ov = lm_ul_overlap(&fs, &rs);
		if (ov)
			warnf("%zu of the %zu forget %s also in the retain set", ov, fs.n,
			      fs.qa && rs.qa ? "questions are" : "sequences are (a shared run of 32 tokens)");
	}

	struct lm_ul_opts uo = {
		.w_forget = o.w_forget, .w_random = o.w_random, .w_retain = o.w_retain,
		.forget_batch = (size_t)o.batch, .retain_batch = (size_t)o.retain_batch,
		.nrandom = (size_t)o.nrandom, .maxlen = (size_t)o.seqlen, .retain_nll = o.retain_nll,
		.learn = o.learn, .seed = (uint64_t)o.seed};
	struct lm_train_opts to = {.full = o.full, .lora = o.full ? LM_LORA_NONE : LM_LORA_STD,
	                           .rank = (int)o.rank, .alpha = o.alpha, .dropout = o.dropout,
	                           .seed = (uint64_t)o.seed, .layer = -1};
	size_t B, T;
	lm_ul_shape(&fs, retain ? &rs : NULL, &uo, &B, &T);
	/* the frozen original: with LoRA, the model itself (its own weights do not change
	 * until the merge); with full training, a copy of the layers */
	int need_frozen = retain && o.w_retain > 0 && !o.retain_nll;
	if (need_frozen && o.full) {
		if (lm_ul_frozen_copy(&frozen, &m) < 0)
			die_lm("the frozen model");
		have_frozen = 1;
	}
	if (lm_train_init(&tr, &m, &to, B, T) < 0)
		die_lm(lm_reader_name(rd));
	if (have_frozen)
		check_shared(&tr);
	if (lm_ul_init(&u, &tr, need_frozen ? (have_frozen ? &frozen : &m) : NULL, &fs,
	               retain ? &rs : NULL, &uo) < 0)
		die_lm("training");
	lm_progress_note(&pg, "%s %zu forget %s%s; training %zu values (%.0f MiB of gradients, "
	                 "moments and activations%s); batches up to %zu x %zu tokens, %lld steps",
	                 o.learn ? "learning" : "unlearning", fs.n, fs.qa ? "pairs" : "windows",
	                 retain ? (rs.qa ? " against retain pairs" : " against retain windows") : "",
	                 lm_train_count(&tr), (double)lm_train_bytes(&tr) / 1048576.0,
	                 have_frozen ? ", plus a frozen copy of the layers" : "", B, T, o.steps);
	if (have_frozen)
		lm_progress_note(&pg, "frozen copy of the layers: %.1f MiB (embeddings and head shared)",
		                 (double)lm_ul_frozen_bytes(&frozen) / 1048576.0);

	long done = run(&u, &tr, &o, &pg);
	lm_progress_note(&pg, "%ld optimizer steps%s", done,
	                 done < o.steps ? " (stopped early)" : "");
	if (lm_train_merge(&tr) < 0)
		die("training: %s; nothing written", lm_errmsg());
	mark_attrs(&ms, &tr, &o, done);
	lm_train_commit(&tr);
	lm_ul_free(&u);
	lm_train_free(&tr);
	if (have_frozen)
		lm_ul_frozen_free(&frozen);

	lm_write_model(&ms, &m, &out, argc, argv);
	if (pg.log && pg.log != stderr && fclose(pg.log) == EOF)
		die("%s: write error:", o.log);
	lm_ul_set_free(&fs);
	if (retain)
		lm_ul_set_free(&rs);
	lm_tokenizer_free(tk);
	lm_model_free(&m);
	lm_ms_close(&ms);
	lm_reader_close(rd);
	return 0;
}

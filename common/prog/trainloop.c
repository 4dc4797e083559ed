/* trainloop.c: the shared options, progress, the checked update and the model in and out
 * of the training programs (see trainloop.h) */
#include "trainloop.h"
#include "modelio.h"
#include "modelwrite.h"
#include "util.h"

#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

void lm_train_flag(int c, struct lm_train_flags *f, const char *name, const char *usage)
{
	switch (c) {
	case 's': f->seqlen = estrtoll(optarg, 2, 1 << 20, "--seqlen"); return;
	case 'b': f->batch = estrtoll(optarg, 1, 1 << 16, "--batch"); return;
	case 'n': f->steps = estrtoll(optarg, 1, 1LL << 40, "--steps"); return;
	case 'l': f->lr = estrtod(optarg, 0, 1e300, "--lr"); return;
	case LM_OPT_WARMUP: f->warmup = estrtod(optarg, 0, 1, "--warmup"); return;
	case LM_OPT_WD: f->adam.weight_decay = estrtod(optarg, 0, 1e6, "--weight-decay"); return;
	case LM_OPT_CLIP: f->clip = estrtod(optarg, 0, 1e300, "--clip"); return;
	case LM_OPT_DROPOUT: f->dropout = estrtod(optarg, 0, 0.99, "--dropout"), f->dropout_set = 1; return;
	case LM_OPT_SEED: f->seed = estrtoll(optarg, 0, 1LL << 62, "--seed"); return;
	case LM_OPT_LOG: f->log = optarg; return;
	case LM_OPT_ALPHA: f->alpha = estrtod(optarg, 1e-12, 1e12, "--lora-alpha"), f->alpha_set = 1; return;
	case LM_OPT_SCHEDULE:
		if (!strcmp(optarg, "cosine"))
			f->cosine = 1;
		else if (strcmp(optarg, "linear"))
			edie(2, "--schedule: '%s' is not linear or cosine", optarg);
		return;
	case LM_OPT_BETA1: f->adam.beta1 = estrtod(optarg, 0, 0.999999999, "--beta1"); return;
	case LM_OPT_BETA2: f->adam.beta2 = estrtod(optarg, 0, 0.999999999, "--beta2"); return;
	case LM_OPT_EPS: f->adam.eps = estrtod(optarg, 0, 1, "--eps"); return;
	case LM_OPT_COMPUTE: f->bf16 = lm_cli_compute_arg(optarg); return;
	}
	lm_cli_flag(c, &f->cf, name, usage);
}

const char *lm_train_getopt(int argc, char **argv, const char *shortopts,
                            const struct option *lopts, int (*option)(void *ctx, int c),
                            void *ctx, struct lm_train_flags *f, const char *name,
                            const char *usage)
{
	int c;
	while ((c = getopt_long(argc, argv, shortopts, lopts, NULL)) != -1)
		if (!option(ctx, c))
			lm_train_flag(c, f, name, usage);
	if (argc - optind > 1)
		lm_usage(usage, 2);
	return optind < argc ? argv[optind] : NULL;
}

double lm_train_lr(const struct lm_train_flags *f, long s)
{
	long warm = (long)ceil(f->warmup * (double)f->steps);
	return lm_lr_at(s, f->steps, warm, f->lr, f->cosine);
}

static void fmt_time(char *buf, size_t n, double s)
{
	if (s >= 3600)
		snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
	else if (s >= 60)
		snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
	else
		snprintf(buf, n, "%.0fs", s);
}

void lm_progress_step(struct lm_progress *p, const char *what, long step, double loss, double lr,
                      double gnorm, double tokens)
{
	double el = lm_now() - p->t0, tps = el > 0 ? tokens / el : 0;
	const char *sp = what ? " " : "", *w = what ? what : "";
	const char *xs = p->extra ? " " : "", *x = p->extra ? p->extra : "";
	if (p->log)
		fprintf(p->log, "%s%sstep %ld loss %.6f%s%s lr %.4e grad_norm %.4f tokens_per_s %.1f\n",
		        w, sp, step, loss, xs, x, lr, gnorm, tps);
	if (!p->tty)
		return;
	char eta[32];
	fmt_time(eta, sizeof eta, step > 0 ? el / (double)step * (double)(p->total - step) : 0);
	fprintf(stderr, "\r%s: %s%sstep %ld/%ld loss %.4f%s%s lr %.2e %.0f tok/s ETA %s   ", argv0, w,
	        sp, step, p->total, loss, xs, x, lr, tps, eta);
	if (step == p->total)
		fputc('\n', stderr);
}

void lm_progress_open(struct lm_progress *p, const char *log, int verbose, int quiet)
{
	p->verbose = verbose;
	p->tty = isatty(2) && !quiet;
	if (log && !(p->log = strcmp(log, "-") ? fopen(log, "w") : stderr))
		die("%s:", log);
	if (p->log == stderr)
		p->tty = 0;
	else if (p->log)
		setvbuf(p->log, NULL, _IOLBF, 0); /* a log is for watching a long run */
}

void lm_progress_note(struct lm_progress *p, const char *fmt, ...)
{
	va_list ap;
	char buf[512];
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (p->log && p->log != stderr)
		fprintf(p->log, "%s\n", buf);
	if (p->tty || p->verbose || p->log == stderr)
		fprintf(stderr, "%s%s: %s\n", p->tty ? "\r\033[K" : "", argv0, buf);
}

double lm_train_update(struct lm_train *tr, const struct lm_adamw *adam, double clip, double loss,
                       double lr, long step, double last_ok, long last_ok_step, const char *what)
{
	double gn = lm_train_grad_norm(tr);
	const char *w = what ? what : "", *sep = what ? ": " : "";
	if (!isfinite(loss) || !isfinite(gn)) {
		const char *bad = isfinite(loss) ? "gradient" : "loss";
		if (last_ok_step < 0)
			die("%s%sstep %ld: the %s is not finite from the start; nothing written", w, sep,
			    step + 1, bad);
		die("%s%sstep %ld: the %s is not finite (last finite loss %.6f at step %ld); nothing "
		    "written", w, sep, step + 1, bad, last_ok, last_ok_step + 1);
	}
	if (clip > 0 && gn > clip)
		lm_train_scale_grad(tr, (float)(clip / (gn + 1e-6)));
	lm_train_adamw(tr, adam, lr);
	return gn;
}

double lm_train_steps_update(struct lm_train_steps *st, struct lm_train *tr,
                             const struct lm_train_flags *f, struct lm_progress *pg,
                             const char *what, long s, double loss, double lr, double ntok)
{
	double gn = lm_train_update(tr, &f->adam, f->clip, loss, lr, s, st->last, st->last_step, what);
	st->last = loss, st->last_step = s;
	st->tokens += ntok;
	lm_progress_step(pg, what, s + 1, loss, lr, gn, st->tokens);
	return gn;
}

void lm_train_io_open(struct lm_train_io *io, struct lm_train_flags *f, const char *path)
{
	lm_cli_threads(f->cf.threads, f->cf.verbose);
	lm_out_open(&io->out, f->cf.out, f->cf.force);
	io->rd = lm_in_open(path);
	lm_reader_set_verify(io->rd, f->cf.verify);
	if (lm_ms_open(&io->ms, io->rd) < 0)
		die_lm(lm_reader_name(io->rd));
	const struct lm_opt_config *cfg = &io->ms.h.cfg;
	if (!f->seqlen)
		f->seqlen = cfg->max_positions < 512 ? cfg->max_positions : 512;
	if (f->seqlen > cfg->max_positions)
		edie(2, "--seqlen %lld exceeds the model's %lld positions", f->seqlen,
		     (long long)cfg->max_positions);
}

void lm_train_io_load(struct lm_train_io *io, const struct lm_train_flags *f)
{
	if (lm_model_init(&io->m, &io->ms.h.cfg) < 0 || lm_ms_load_all(&io->ms, &io->m) < 0)
		die_lm(lm_reader_name(io->rd));
	lm_progress_open(&io->pg, f->log, f->cf.verbose, f->cf.quiet);
}

void lm_train_io_close(struct lm_train_io *io, const struct lm_train_flags *f, int argc,
                       char **argv)
{
	lm_write_model(&io->ms, &io->m, &io->out, argc, argv);
	if (io->pg.log && io->pg.log != stderr && fclose(io->pg.log) == EOF)
		die("%s: write error:", f->log);
	lm_model_free(&io->m);
	lm_ms_close(&io->ms);
	lm_reader_close(io->rd);
}

void lm_write_model(struct lm_model_stream *ms, struct lm_model *m, struct lm_out *out, int argc,
                    char **argv)
{
	struct lm_writer *w = lm_writer_open(out->fd, out->name);
	if (lm_ms_write_model(ms, m, w, argc, argv) < 0 || lm_writer_close(w) < 0)
		die_lm(out->name);
	lm_out_commit(out);
}

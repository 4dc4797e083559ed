/* trainloop.c: progress, the checked update and the output of the training programs
 * (see trainloop.h) */
#include "trainloop.h"
#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

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

void lm_write_model(struct lm_model_stream *ms, struct lm_model *m, struct lm_out *out, int argc,
                    char **argv)
{
	struct lm_writer *w = lm_writer_open(out->fd, out->name);
	if (lm_ms_write_start(ms, w, argc, argv) < 0)
		die_lm(out->name);
	for (int p = LM_PART_HEAD; p <= ms->h.cfg.num_layers; p++)
		if (lm_ms_write_part(ms, m, p, w) < 0)
			die_lm(out->name);
	if (lm_writer_close(w) < 0)
		die_lm(out->name);
	lm_out_commit(out);
}

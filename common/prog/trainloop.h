/* trainloop.h: what the training programs (lm-retrain, lm-unlearn) do the same way around
 * their steps: progress lines, the checked optimizer update, writing the trained model.
 * Program-level code like cli.h: it prints to stderr and dies on failure. */
#ifndef LM_TRAINLOOP_H
#define LM_TRAINLOOP_H

#include <stdio.h>

#include "cli.h"
#include "clock.h"
#include "modelstream.h"
#include "train.h"

struct lm_progress {
	FILE *log;          /* --log: one line per step (may be stderr), or NULL */
	double t0;          /* start of the steps being timed */
	int tty;            /* redraw a progress line on stderr (a terminal, not -q) */
	int verbose;        /* notes on stderr even when it is no terminal */
	long total;         /* steps in all, for the ETA */
	const char *extra;  /* more figures printed after the loss ("forget 3.1 ..."), or NULL */
};

/* set p up for -v/-q and --log PATH ("-": stderr, which then replaces the progress line;
 * NULL: none); dies when PATH cannot be opened */
void lm_progress_open(struct lm_progress *p, const char *log, int verbose, int quiet);
/* after a step: a log line, and the terminal's progress line (ETA from total) */
void lm_progress_step(struct lm_progress *p, const char *what, long step, double loss, double lr,
                      double gnorm, double tokens);
/* a line of its own ("argv0: ..."), never glued to a progress line; on stderr when there
 * is a terminal or verbose, and in the log */
void lm_progress_note(struct lm_progress *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Clip the gradients to clip (0: off), check, one AdamW step. A non-finite loss or gradient
 * norm dies naming the step (1-based: step + 1) and the last finite loss (last_ok at
 * last_ok_step, -1: none yet), "nothing written". what prefixes the message (or NULL).
 * Returns the gradient norm before clipping. */
double lm_train_update(struct lm_train *tr, const struct lm_adamw *adam, double clip, double loss,
                       double lr, long step, double last_ok, long last_ok_step, const char *what);

/* the whole model m as the filter's output (header with this tool, every part, the end
 * record), then commit out; dies on failure */
void lm_write_model(struct lm_model_stream *ms, struct lm_model *m, struct lm_out *out, int argc,
                    char **argv);

#endif

/* trainloop.h: what the training programs (lm-retrain, lm-unlearn) do the same way around
 * their steps: the options they share and their option loop, the model read whole and
 * written at the end, progress lines, the checked optimizer update. Program-level code like
 * cli.h: it prints to stderr and dies on failure. */
#ifndef LM_TRAINLOOP_H
#define LM_TRAINLOOP_H

#include <math.h>
#include <stdio.h>

#include "cli.h"
#include "clock.h"
#include "modelstream.h"
#include "train.h"

/* The flags the training programs share: lm_cli_flags', the windows, the steps and the
 * optimizer. A program sets its own defaults; lm-unlearn leaves --schedule and Adam's betas
 * and eps out of its table (LM_TRAIN_ADAM_LONGOPTS). */
struct lm_train_flags {
	struct lm_cli_flags cf;          /* -o -f -j -v -q --no-verify */
	const char *log;                 /* --log FILE */
	long long seqlen, batch, steps, seed;     /* -s -b -n --seed */
	double lr, warmup, clip, dropout, alpha;  /* -l --warmup --clip --dropout --lora-alpha */
	struct lm_adamw adam;            /* --beta1 --beta2 --eps --weight-decay */
	int cosine;                      /* --schedule cosine (linear: 0) */
	int dropout_set, alpha_set;      /* --dropout, --lora-alpha given */
	int bf16;                        /* --compute bf16 (lm_cli_compute after the usage checks) */
};

/* getopt_long values of their long options, above any program's own and below the
 * layer-by-layer driver's (layerwise.h) */
enum {
	LM_OPT_WARMUP = 0x3e00, LM_OPT_WD, LM_OPT_CLIP, LM_OPT_DROPOUT, LM_OPT_SEED, LM_OPT_LOG,
	LM_OPT_ALPHA, LM_OPT_SCHEDULE, LM_OPT_BETA1, LM_OPT_BETA2, LM_OPT_EPS,
};
#define LM_TRAIN_LONGOPTS                                                                          \
	{"seqlen", required_argument, 0, 's'}, {"batch", required_argument, 0, 'b'},               \
	{"steps", required_argument, 0, 'n'}, {"lr", required_argument, 0, 'l'},                   \
	{"warmup", required_argument, 0, LM_OPT_WARMUP},                                           \
	{"clip", required_argument, 0, LM_OPT_CLIP},                                               \
	{"weight-decay", required_argument, 0, LM_OPT_WD},                                         \
	{"dropout", required_argument, 0, LM_OPT_DROPOUT},                                         \
	{"seed", required_argument, 0, LM_OPT_SEED}, {"log", required_argument, 0, LM_OPT_LOG},    \
	{"lora-alpha", required_argument, 0, LM_OPT_ALPHA}, LM_CLI_COMPUTE_LONGOPT
#define LM_TRAIN_ADAM_LONGOPTS                                                                     \
	{"schedule", required_argument, 0, LM_OPT_SCHEDULE},                                       \
	{"beta1", required_argument, 0, LM_OPT_BETA1},                                             \
	{"beta2", required_argument, 0, LM_OPT_BETA2},                                             \
	{"eps", required_argument, 0, LM_OPT_EPS}

/* one of those options (getopt's c, optarg; -s -b -n -l as letters) into *f, else
 * lm_cli_flag's (-h, -V, a bad option: exits) */
void lm_train_flag(int c, struct lm_train_flags *f, const char *name, const char *usage);
/* The option loop of a training program: getopt_long over argv (shortopts, lopts), each
 * option to option(ctx, c) first, which returns 0 for one it does not know, then to
 * lm_train_flag; more than one operand is a usage error. Returns the input: the operand, or
 * NULL for stdin. */
struct option;
const char *lm_train_getopt(int argc, char **argv, const char *shortopts,
                            const struct option *lopts, int (*option)(void *ctx, int c),
                            void *ctx, struct lm_train_flags *f, const char *name,
                            const char *usage);
/* the learning rate at step s (0-based): --warmup's fraction of the steps up, then the
 * schedule's decay to 0 */
double lm_train_lr(const struct lm_train_flags *f, long s);

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

/* what a training loop keeps between its steps: the last finite loss, for the message of
 * a loss that is not (lm_train_update), and the tokens so far, for the rate */
struct lm_train_steps {
	double last, tokens;
	long last_step;   /* -1: none yet */
};
#define LM_TRAIN_STEPS_INIT {NAN, 0, -1}
/* after step s's gradients (loss over ntok tokens, at rate lr): the checked update with f's
 * clip and AdamW, then the progress of step s + 1; returns the gradient norm */
double lm_train_steps_update(struct lm_train_steps *st, struct lm_train *tr,
                             const struct lm_train_flags *f, struct lm_progress *pg,
                             const char *what, long s, double loss, double lr, double ntok);

/* A training program's model: read whole from the input, trained in place, written at the
 * end, as one stream in, one out. */
struct lm_train_io {
	struct lm_reader *rd;
	struct lm_model_stream ms;
	struct lm_model m;
	struct lm_out out;
	struct lm_progress pg;
};
/* -j, the output checked (terminal, path) now and written only at the very end, the input
 * (path NULL: stdin) open and its header read; --seqlen 0 becomes the model's positions up
 * to 512, more than its positions is a usage error. Dies on failure. */
void lm_train_io_open(struct lm_train_io *io, struct lm_train_flags *f, const char *path);
/* the whole model into io->m, then the progress (-v, -q, --log) set up; dies on failure */
void lm_train_io_load(struct lm_train_io *io, const struct lm_train_flags *f);
/* the model written (lm_write_model), the log closed, the model and the input freed */
void lm_train_io_close(struct lm_train_io *io, const struct lm_train_flags *f, int argc,
                       char **argv);

/* the whole model m as the filter's output (io/modelwrite.h: header with this tool, every
 * part, the end record), then commit out; dies on failure */
void lm_write_model(struct lm_model_stream *ms, struct lm_model *m, struct lm_out *out, int argc,
                    char **argv);

#endif

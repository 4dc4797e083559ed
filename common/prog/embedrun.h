/* embedrun.h: lm-embed's options and its embedding modes: the lines of a file, or a prompt
 * pool as a retrieval index with --tune's or --projection's projection, written as an
 * embedding stream or --tsv text. The training modes are embedtrain.h's. Program-level
 * code like cli.h: it prints to stderr and dies on failure. */
#ifndef LM_EMBEDRUN_H
#define LM_EMBEDRUN_H

#include <stddef.h>

#include "cli.h"
#include "embed.h"
#include "modelstream.h"
#include "rtune.h"
#include "tokenizer.h"

/* --contrastive and --tune-encoder's training */
struct lm_embed_ctr_opts {
	int on, unsup, symmetric, lora_set, perp, full;
	long long rank, pairs, epochs, steps;
	double alpha, lr, temperature, dropout, warmup, clip;
	const char *log;
};

/* lm-embed's options, as cmd/lm-embed.c parses and checks them */
struct lm_embed_opts {
	const char *file;        /* FILE: the lines, the pool or the training examples */
	const char *model, *tune, *projection, *tune_encoder;
	struct lm_embed_cfg ec;
	struct lm_rtune_cfg tc;  /* --tune (its --seed, --lr, --epochs, --temperature also train) */
	struct lm_embed_ctr_opts ct;
	struct lm_cli_flags fl;  /* -o -f -j -v -q --no-verify */
	int pool, tsv, epochs_set, lr_set, temp_set;
};

/* FILE's lines: blank ones skipped (one warning saying how many, unless quiet); a pool row
 * is INPUT<TAB>ANSWER, both non-empty, embedded as the demonstration "INPUT ANSWER". "-" is
 * standard input. Dies naming the file and line. */
struct lm_embed_lines {
	char *text;
	char **line;    /* [n] what is embedded */
	char **input;   /* [n] pool: the INPUT part (into text), else NULL */
	size_t n;
};
void lm_embed_lines_read(struct lm_embed_lines *L, const char *path, int pool, int quiet);
void lm_embed_lines_free(struct lm_embed_lines *L);

/* the model (--model PATH, or standard input) read whole, with its tokenizer; dies naming
 * the stream */
struct lm_embed_model {
	struct lm_reader *rd;
	struct lm_model_stream ms;
	struct lm_model m;
	struct lm_tokenizer *tk;
};
void lm_embed_model_open(struct lm_embed_model *em, const char *path, int verify);
void lm_embed_model_close(struct lm_embed_model *em);

/* a "what done/total" progress line on stderr; ctx points to an int, nonzero when there is
 * a terminal to draw it on (the shape of lm_rtune_cfg's progress) */
void lm_embed_progress_line(void *ctx, const char *what, size_t done, size_t total);

/* what the frozen model's scores of the pool offer a retriever (rtune.h's feedback), one
 * line on stderr: one random prompt's accuracy, the best-scored one's (the oracle), and
 * how many inputs any prompt changes the answer of */
void lm_embed_feedback_note(const struct lm_rtune_feedback *fb);

/* FILE's lines (or --pool's demonstrations) embedded, a projection tuned (--tune) or
 * copied (--projection) for a pool, the result written to -o or stdout */
void lm_embed_run(struct lm_embed_opts *o, int argc, char **argv);

#endif

/* evalrun.h: lm-eval's modes, each from its options to its report on stdout (text or
 * --json); they die on errors as the program does (exit 1 runtime, 2 usage) */
#ifndef LM_EVALRUN_H
#define LM_EVALRUN_H

#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "earlyexit.h"
#include "embed.h"
#include "modelstream.h"
#include "retrieve.h"
#include "tokenizer.h"
#include "unlearn_eval.h"

/* lm-eval's options, as cmd/lm-eval.c parses them */
struct lm_eval_opts {
	const char *ppl, *gen, *save_ids, *input;
	long long seqlen, windows, batch, ntok;
	int json;
	struct lm_cli_flags fl;  /* -j, --no-verify, -q */
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

void lm_eval_ppl(struct lm_model_stream *ms, const struct lm_eval_opts *o);        /* --ppl */
void lm_eval_generate(struct lm_model_stream *ms, const struct lm_eval_opts *o);   /* --generate */
void lm_eval_sts(struct lm_model_stream *ms, struct lm_eval_opts *o);              /* --sts */
void lm_eval_mc(struct lm_model_stream *ms, struct lm_eval_opts *o);               /* --mc */
void lm_eval_task(struct lm_model_stream *ms, struct lm_eval_opts *o);             /* --task */
void lm_eval_qa(struct lm_model_stream *ms, struct lm_eval_opts *o);               /* --qa */
/* --generate with --exit-threshold or sampling; --exit-sweep */
void lm_eval_ee_generate(struct lm_model_stream *ms, struct lm_eval_opts *o);
void lm_eval_ee_sweep(struct lm_model_stream *ms, struct lm_eval_opts *o);

/* shared by the modes: the stream's tokenizer (dies naming the stream), FILE's ids (dies
 * naming FILE), the whole model and its tokenizer, and a done/total progress line on a
 * terminal's stderr unless quiet (ctx: the struct lm_eval_opts) */
struct lm_tokenizer *lm_eval_tokenizer(const struct lm_model_stream *ms, const char *why);
/* the linear layers' N:M and bitmap weights stay in their layout in memory (the decode
 * product reads them so; matrix products expand tiles), unless LM_NO_SPARSE=1: call before
 * the model is loaded */
void lm_eval_keep_sparse(struct lm_model_stream *ms);
int32_t *lm_eval_ids(const char *path, const struct lm_model_stream *ms, size_t *n);
void lm_eval_load_whole(struct lm_model_stream *ms, struct lm_model *m, struct lm_tokenizer **tk,
                        const char *why);
void lm_eval_progress(void *ctx, size_t done, size_t total);

#endif

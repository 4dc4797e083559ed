/* retrainargs.h: lm-retrain's parsed options and what its modes (retrainrun.c, retrainlayer.c,
 * retrainexit.c) share. Program-level code: it dies on failure. */
#ifndef LM_RETRAINARGS_H
#define LM_RETRAINARGS_H

#include "trainloop.h"

struct lm_retrain_args {
	struct lm_train_flags f;    /* the shared flags, the windows, the steps and the optimizer */
	struct lm_train_opts to;    /* what trains (dropout: set by lm_retrain_run) */
	const char *data, *eval, *teacher, *calib;  /* -d, --eval, --teacher, -c */
	const char **globs;         /* --train GLOB ... */
	size_t nglobs;
	long long eval_every, eval_windows, nsamples;
	int reconstruct;
	/* early exits: the exits 0-based, their weights then the final output's */
	const char *exits_arg, *exit_w_arg;   /* --exits, --exit-weights as given */
	int early_exit, exit_policy;
	int *exits;
	size_t nexits;
	float *exit_w;
	long long episodes, policy_steps, policy_hidden;
};

/* FILE as ids: an lm-stream holding an integer tensor "ids", or text (one BOS in front),
 * read exactly as lm-eval and lm-prune read it; dies on failure */
int32_t *lm_retrain_ids(const char *path, const struct lm_model_stream *ms, size_t *n);
/* the attrs "retrain" of each tensor tr changed (of decoder layer layer_only; -1: all) */
void lm_retrain_mark(struct lm_model_stream *ms, const struct lm_train *tr,
                     const struct lm_retrain_args *o, int layer_only);

#endif

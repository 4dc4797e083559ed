/* unlearnrun.h: lm-unlearn's work once its options are parsed: the forget and retain sets,
 * the frozen original, the loop of gradient-ascent steps with its early stop, and what the
 * output records. Program-level code like trainloop.h: it prints to stderr and dies on
 * failure. */
#ifndef LM_UNLEARNRUN_H
#define LM_UNLEARNRUN_H

#include "trainloop.h"

struct lm_unlearn_args {
	struct lm_train_flags f;  /* the shared flags, the steps and the optimizer */
	const char *forget, *forget_text, *retain, *retain_text;  /* one of each at most */
	const char *fq, *fa, *rq, *ra;  /* --forget-question ... --retain-answer, or NULL */
	long long retain_batch, nrandom, rank, stop_window;       /* rank 0: --full */
	double w_forget, w_random, w_retain, max_forget;
	int full, retain_nll, learn, skip_incomplete;  /* full: no --lora */
};

/* read the model from input (NULL: stdin), unlearn, write it to the output; dies on failure */
void lm_unlearn_run(struct lm_unlearn_args *o, const char *input, int argc, char **argv);

#endif

/* retrainrun.h: lm-retrain's work once its options are parsed (retrainrun.c: the model in
 * and out, end-to-end training; retrainlayer.c: --reconstruct; retrainexit.c: the early
 * exits; retrainargs.h: what they share). Program-level code like trainloop.h: it prints to
 * stderr and dies on failure. */
#ifndef LM_RETRAINRUN_H
#define LM_RETRAINRUN_H

#include "retrainargs.h"

/* read the model from input (NULL: stdin), train it as o says, write it to the output;
 * dies on failure (exit 2 for exits that do not fit the model) */
void lm_retrain_run(struct lm_retrain_args *o, const char *input, int argc, char **argv);

#endif

/* retrainexit.h: lm-retrain's early exits (see retrainexit.c) */
#ifndef LM_RETRAINEXIT_H
#define LM_RETRAINEXIT_H

#include "retrainargs.h"

/* the exits and their weights into o, checked against the model (exit 2 on a bad one):
 * --exits, else for --exit-policy those the stream records, else every layer but the last */
void lm_retrain_exit_args(struct lm_retrain_args *o, const struct lm_model_stream *ms);
/* one multi-exit step's loss and gradients (lm_train_step_loss); the exits' losses go to
 * pg->extra */
int lm_retrain_exit_step(struct lm_train *tr, const struct lm_retrain_args *o, const int32_t *batch,
                         size_t B, size_t T, double *loss, struct lm_progress *pg);
/* --exit-policy: PPO on decoding episodes of o->data, the policy stored in ms's extras */
void lm_retrain_exit_policy(struct lm_model_stream *ms, struct lm_model *m,
                            const struct lm_retrain_args *o, struct lm_progress *pg);

#endif

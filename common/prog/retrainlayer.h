/* retrainlayer.h: lm-retrain --reconstruct (see retrainlayer.c) */
#ifndef LM_RETRAINLAYER_H
#define LM_RETRAINLAYER_H

#include "retrainargs.h"

/* each decoder layer of m trained in turn to match o->teacher's on the inputs that the
 * reconstructed layers before it give; dies on failure */
void lm_retrain_reconstruct(struct lm_model_stream *ms, struct lm_model *m,
                            const struct lm_retrain_args *o, struct lm_progress *pg);

#endif

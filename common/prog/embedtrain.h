/* embedtrain.h: lm-embed's training modes, whose output is the model (adapters merged):
 * --contrastive on FILE's sentence pairs (or --unsupervised sentences), and --tune-encoder,
 * UPRISE's retriever with the model itself as the encoder, trained on the pairs the frozen
 * model's scores make from the --pool FILE. Program-level code like cli.h: it prints to
 * stderr and dies on failure, and writes nothing then. */
#ifndef LM_EMBEDTRAIN_H
#define LM_EMBEDTRAIN_H

#include "embedrun.h"

/* o->ct.on: read the model, train it (o->tune_encoder: on the pool's scored pairs; else on
 * FILE's examples), write it to -o or stdout */
void lm_embed_train(struct lm_embed_opts *o, int argc, char **argv);

#endif

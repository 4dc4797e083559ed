/* lwnote.h: what lm-prune and lm-quant write down about the work on one selected tensor of
 * the layer-by-layer driver (layerwise.h): a record in the tensor's attrs, and with -v one
 * line on stderr. */
#ifndef LM_LWNOTE_H
#define LM_LWNOTE_H

#include <jansson.h>

#include "layerwise.h"

/* the matrix of selected tensor i (d->ms.order[i]) in d's model */
struct lm_mat *lm_lw_mat(struct lm_layerwise *d, size_t i);

/* rec (taken) as attrs[key] of tensor i, then, with -v, "PROG: NAME: WHAT" and
 * ", error LOSS" when loss is not NULL */
void lm_lw_note(struct lm_layerwise *d, size_t i, const char *key, json_t *rec, const char *what,
                const double *loss);

#endif

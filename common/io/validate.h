/* validate.h: the one check of a model stream's tensors against its header, shared by
 * every program that reads one (lm-info warns, the others refuse).
 *
 * A validator follows the records as they are read, once: each tensor's metadata
 * (lm_val_meta: name, place in model order, given twice, shape against the config, dtype
 * allowed for the tensor) and then its payload (lm_val_payload: non-finite values in
 * float tensors, the fields of packed groups), and at the end what never came
 * (lm_val_end). Each call reports one problem as -1 + error naming the tensor, and keeps
 * its state consistent, so a caller that only warns can go on and hear of the next one.
 *
 * Which tensors are not the model's: names outside the model's namespace (lm-stream(5),
 * "Extra tensors"), such as exit_policy.*. A stream whose first tensor is such a name is a
 * data stream (an lm-embed embeddings stream, token ids for calibration) and has no model
 * to check, unless the validator was told to require one. */
#ifndef LM_VALIDATE_H
#define LM_VALIDATE_H

#include <stddef.h>

#include "opt.h"
#include "stream.h"

struct lm_validator {
	struct lm_opt_config cfg;
	struct lm_opt_tensor *order;  /* the model's tensors in stream order */
	size_t norder, next;          /* next: one past the furthest model tensor seen */
	unsigned char *seen;          /* per tensor of order: 0 not yet, 1 seen, 2 reported missing */
	int require_model;            /* a data stream is an error */
	int kind;                     /* 0 no tensor yet, 1 a model stream, 2 a data stream */
	int past_model;               /* an extra tensor came: the model's are over */
	int beyond_reported;          /* a tensor of a layer past the header's count was reported */
	int mixed_reported;           /* a model tensor in a data stream was reported */
	json_t *extras;               /* names of the extra tensors seen (duplicates) */
	char first_extra[LM_MAX_NAME + 1];
};

/* require_model: refuse a stream without the model's tensors (programs that run it) */
void lm_val_init(struct lm_validator *v, const struct lm_opt_config *cfg, int require_model);
void lm_val_free(struct lm_validator *v);
/* a tensor record's name, dtype and shape; -1 + error naming it */
int lm_val_meta(struct lm_validator *v, const struct lm_record *r);
/* its payload (r->data): non-finite floats, packed groups' scale, zero point and reserved
 * byte; -1 + error naming it (first bad element or group, and how many) */
int lm_val_payload(const struct lm_record *r);
/* both */
int lm_val_tensor(struct lm_validator *v, const struct lm_record *r);
/* after the end record: the model's tensors that never came; -1 + error naming the first
 * few and the count */
int lm_val_end(struct lm_validator *v);
/* is this a name of the model's namespace (a model tensor, "model.*", "lm_head*")? */
int lm_val_is_model_name(const char *name);

#endif

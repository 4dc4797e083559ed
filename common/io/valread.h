/* valread.h: a stream's records one by one, each checked by the validator as it arrives
 * (validate.h), for the programs that read every record themselves (lm-export, lm-info). */
#ifndef LM_VALREAD_H
#define LM_VALREAD_H

#include "stream.h"
#include "validate.h"

/* what to do with a problem of the model (the error is set): NULL makes it an error */
typedef void lm_val_problem_fn(void *ctx);

/* the next record into r, its metadata and payload checked by v: 1 for a tensor or blob,
 * 0 after the end record (the missing tensors checked then), -1 + error when the stream
 * cannot be read or, with problem NULL, has a problem. With problem given, each problem
 * goes to problem(ctx) and the record is returned all the same. */
int lm_val_next(struct lm_validator *v, struct lm_reader *rd, struct lm_record *r,
                lm_val_problem_fn *problem, void *ctx);

#endif

/* fwdgrow.h: a forward arena grown to the largest batch asked of it and never shrunk, for
 * the scorers whose batches change from item to item (mc.h, zeroshot.h). */
#ifndef LM_FWDGROW_H
#define LM_FWDGROW_H

#include <stddef.h>

#include "forward.h"

/* s, an arena for *sB x *sT (0 x 0: none yet), made again for at least B x T when it is
 * smaller in either; *sB, *sT then say what it holds. 1 when it was made again, 0 when it
 * was big enough, -1 + error (s is then none: *sB = *sT = 0). */
int lm_fwd_grow(struct lm_fwd *s, const struct lm_opt_config *c, size_t *sB, size_t *sT,
                size_t B, size_t T);

#endif

/* fwdgrow.c: a forward arena grown to the largest batch asked of it (see fwdgrow.h). */
#include "fwdgrow.h"

int lm_fwd_grow(struct lm_fwd *s, const struct lm_opt_config *c, size_t *sB, size_t *sT,
                size_t B, size_t T)
{
	if (B <= *sB && T <= *sT)
		return 0;
	if (*sB)
		lm_fwd_free(s);
	B = B > *sB ? B : *sB;
	T = T > *sT ? T : *sT;
	*sB = *sT = 0;
	if (lm_fwd_init(s, c, B, T) < 0)
		return -1;
	*sB = B, *sT = T;
	return 1;
}

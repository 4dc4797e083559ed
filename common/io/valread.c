/* valread.c: a stream's records one by one, each checked by the validator as it arrives
 * (see valread.h). */
#include "valread.h"

/* a problem is an error without a problem function, else reported and passed over */
static int report(int rc, lm_val_problem_fn *problem, void *ctx)
{
	if (rc >= 0)
		return 0;
	if (!problem)
		return -1;
	problem(ctx);
	return 0;
}

int lm_val_next(struct lm_validator *v, struct lm_reader *rd, struct lm_record *r,
                lm_val_problem_fn *problem, void *ctx)
{
	if (lm_read_record(rd, r) < 0)
		return -1;
	if (r->kind == LM_REC_END)
		return report(lm_val_end(v), problem, ctx) < 0 ? -1 : 0;
	/* metadata, then payload: without a problem function the first problem stops the
	 * read (as lm_val_tensor does); with one, each problem gets its line */
	if (report(lm_val_meta(v, r), problem, ctx) < 0 || report(lm_val_payload(r), problem, ctx) < 0)
		return -1;
	return 1;
}

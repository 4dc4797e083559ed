/* streamwalk.c: every record of an lm-stream up to its end, through a callback (see
 * streamwalk.h). */
#include "streamwalk.h"

int lm_walk_records(struct lm_reader *rd, lm_record_fn *each, void *ctx)
{
	struct lm_record r = {0};
	int rc;
	for (;;) {
		if ((rc = lm_read_record(rd, &r)) < 0 || r.kind == LM_REC_END)
			break;
		rc = each(&r, ctx);
		lm_record_clear(&r);
		if (rc < 0)
			break;
	}
	lm_record_clear(&r);
	return rc < 0 ? -1 : 0;
}

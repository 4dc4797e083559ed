/* streamwalk.h: every record of an lm-stream up to its end, through a callback, for the
 * readers that pick a few records by name (textids.h, embstream.h). */
#ifndef LM_STREAMWALK_H
#define LM_STREAMWALK_H

#include "stream.h"

/* one record: -1 + error stops the walk; it may keep r->data (setting it NULL) */
typedef int lm_record_fn(struct lm_record *r, void *ctx);

/* every record after the header (lm_read_header done) up to the end record through each,
 * cleared after it; -1 + error from the reader or from each */
int lm_walk_records(struct lm_reader *rd, lm_record_fn *each, void *ctx);

#endif

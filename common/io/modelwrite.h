/* modelwrite.h: a whole model in memory written as one lm-stream (see modelwrite.c) */
#ifndef LM_MODELWRITE_H
#define LM_MODELWRITE_H

#include "modelstream.h"

/* the input's header with this tool (argv) in the provenance, every part of m in model
 * order, the end record (lm_ms_write_start, then lm_ms_write_part for each part); the
 * caller closes w. 0, or -1 with the error set. */
int lm_ms_write_model(struct lm_model_stream *ms, const struct lm_model *m, struct lm_writer *w,
                      int argc, char **argv);

#endif

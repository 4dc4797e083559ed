/* modelwrite.c: a whole model in memory written as one lm-stream, for the programs that
 * read it whole and change it in place (the training programs); a layer-by-layer program
 * writes each part as it goes instead. */
#include "modelwrite.h"

int lm_ms_write_model(struct lm_model_stream *ms, const struct lm_model *m, struct lm_writer *w,
                      int argc, char **argv)
{
	if (lm_ms_write_start(ms, w, argc, argv) < 0)
		return -1;
	for (int p = LM_PART_HEAD; p <= ms->h.cfg.num_layers; p++)
		if (lm_ms_write_part(ms, m, p, w) < 0)
			return -1;
	return 0;
}

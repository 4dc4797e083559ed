/* embstream.h: embedding streams, what lm-embed writes and lm-eval --sts/--retrieve read.
 *
 * An lm-stream (man/lm-stream.5) whose header carries the model's configuration and an
 * "embedding" map saying how the vectors were made, so a consumer can embed its own
 * queries the same way and refuse vectors from another model:
 *
 *   "embedding": {"method": "prompteol" | "avg", "template": T, "demo": D | nil,
 *                 "count": n, "dim": d, "model_fingerprint": F, "kind": "lines" | "pool",
 *                 "verbatim": true (only when white space was kept as it was)}
 *   tensor "embeddings" [n, d] f32              one row per input line, in input order
 *   tensor "projection" [d, d] f32 (optional)   a tuned retriever: use P·e instead of e
 *   blob   "embed/lines.txt"                    the n lines, each ended by '\n'
 *   end
 *
 * F is lm_model_fingerprint of the model that embedded (every weight's bytes). */
#ifndef LM_EMBSTREAM_H
#define LM_EMBSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "embed.h"
#include "model.h"
#include "stream.h"

#define LM_EMB_LINES_BLOB "embed/lines.txt"

struct lm_emb {
	struct lm_opt_config cfg;  /* of the model that embedded */
	uint32_t fingerprint;
	char *tmpl, *demo;         /* owned; demo NULL when none */
	int avg;
	int verbatim;              /* sentences embedded with their white space as it was */
	const char *kind;          /* "lines" or "pool" (static strings) */
	size_t n, d;
	float *emb;                /* [n, d] (lm_alloc) */
	float *proj;               /* [d, d] or NULL (lm_alloc) */
	char **lines;              /* [n], into text */
	char *text;
	json_t *header;            /* the header read (NULL for one being built) */
};

/* *fp: CRC-32 over the dense bytes of every weight of a loaded model, in model order:
 * equal for the same weights in the same dtypes, whatever layout kept them (sparse.h),
 * different (but for CRC collisions) otherwise. -1 + error when a sparse matrix's dense
 * copy cannot be made (memory) */
int lm_model_fingerprint(const struct lm_model *m, uint32_t *fp);

/* the embedding settings an lm_emb records, as an lm_embed_cfg (borrowing its strings) */
struct lm_embed_cfg lm_emb_cfg(const struct lm_emb *e);

/* header (base: the input model's header, copied; provenance gets this tool), the
 * tensors, the lines blob and the end record; -1 + error */
int lm_emb_write(struct lm_writer *w, const struct lm_header *base, const struct lm_emb *e,
                 const char *tool, int argc, char **argv);
/* read a whole embedding stream; -1 + error (not an embedding stream, counts or shapes
 * that disagree) */
int lm_emb_read(struct lm_emb *e, const char *path);
void lm_emb_free(struct lm_emb *e);

/* -1 + error unless e was embedded by a model with this fingerprint and config */
int lm_emb_check_model(const struct lm_emb *e, const struct lm_opt_config *cfg, uint32_t fp);

#endif

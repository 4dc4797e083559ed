/* modelstream.h: reading a model from an lm-stream one part at a time.
 *
 * The stream carries the tensors in model order (lm_opt_tensors), so a program can
 * load the head (embeddings, project_in), then decoder layer 0, 1, …, then the tail
 * (final LayerNorm, project_out, untied lm_head), dropping each layer when it is done:
 * memory holds one layer plus whatever the program keeps. Blobs come first; extra
 * tensors that are not part of the model (an exit policy) come last. */
#ifndef LM_MODELSTREAM_H
#define LM_MODELSTREAM_H

#include "model.h"
#include "stream.h"
#include "validate.h"

#define LM_PART_HEAD (-1)   /* embed_tokens, embed_positions, project_in */
/* 0 .. L-1: decoder layer; L: the tail */

struct lm_blob {
	char name[LM_MAX_NAME + 1];
	void *data;   /* lm_alloc'd, NUL-terminated beyond nbytes for text use */
	size_t nbytes;
};

struct lm_model_stream {
	struct lm_reader *rd;
	struct lm_header h;
	struct lm_opt_tensor *order;   /* expected tensors in stream order */
	size_t norder, next;           /* next expected index */
	struct lm_record pending;      /* a record read ahead (the first tensor after blobs) */
	int have_pending;
	struct lm_blob *blobs;         /* every blob of the stream, read before the first tensor */
	size_t nblobs;
	int check_finite;              /* refuse NaN/Inf weights and bad packed groups (default on) */
	/* keep the linear layers' N:M and bitmap weights in their layout in memory (default
	 * off: every other program sees dense values); lm-eval sets it unless LM_NO_SPARSE=1
	 * (model.h, matvec.h) */
	int keep_sparse;
	struct lm_validator val;       /* each record against the header, as it is read */
	/* per tensor of `order`, as read: its dtype on the wire and its attrs (owned), so a
	 * filter writes each tensor back as it came, with whatever attrs it added */
	enum lm_dtype *dtypes;
	json_t **attrs;
	/* and its sparse layout (sparse.h): the tensor is dense in memory and written back
	 * in this layout where that is smaller, so a filter keeps a sparse stream sparse (a
	 * pruner sets the layout it wants; a quantizer's packed codes keep an N:M one) */
	struct lm_layout *layouts;
	/* extra tensors (format 1.2): records between the model's last tensor and the end
	 * record whose names are no model tensor's, such as an early-exit policy
	 * ("exit_policy."). The tail read loads them (payload included: they are small);
	 * the tail write writes them back, in order, so every filter passes them through. */
	struct lm_record *extras;
	size_t nextras;
};

/* the part a tensor belongs to: LM_PART_HEAD, its layer, or L (the tail) */
int lm_ms_part_of(const struct lm_opt_tensor *t, int L);

/* read the header and the leading blobs; -1 + error */
int lm_ms_open(struct lm_model_stream *ms, struct lm_reader *rd);
void lm_ms_close(struct lm_model_stream *ms);
/* a blob by name, NULL if the stream has none */
const struct lm_blob *lm_ms_blob(const struct lm_model_stream *ms, const char *name);
/* load part (LM_PART_HEAD, a layer, or cfg.num_layers for the tail) into m, which
 * lm_model_init made; checks names and order. The tail read also consumes the end record. */
int lm_ms_load(struct lm_model_stream *ms, struct lm_model *m, int part);
/* load everything (head, all layers, tail) */
int lm_ms_load_all(struct lm_model_stream *ms, struct lm_model *m);

/* ---- extra tensors ---- */
/* the extra tensor of that name, NULL if the stream has none */
const struct lm_record *lm_ms_extra(const struct lm_model_stream *ms, const char *name);
/* add a tensor record (payload in r->data) as an extra, replacing one of the same name;
 * takes r's attrs and data (r is zeroed), also on failure: -1 + error when the name is a
 * model tensor's */
int lm_ms_set_extra(struct lm_model_stream *ms, struct lm_record *r);
/* drop the extras whose names start with prefix; returns how many went */
size_t lm_ms_drop_extras(struct lm_model_stream *ms, const char *prefix);

/* ---- filters: write what was read (and changed) ---- */
/* index in ms->order of a tensor, -1 if the model has none of that kind */
long lm_ms_index(const struct lm_model_stream *ms, enum lm_opt_kind kind, int layer);
/* the attrs object of a tensor (borrowed; add keys to record what a tool did) */
json_t *lm_ms_attrs(struct lm_model_stream *ms, enum lm_opt_kind kind, int layer);
/* write the input's header with this tool in the provenance, then the blobs */
int lm_ms_write_start(struct lm_model_stream *ms, struct lm_writer *w, int argc, char **argv);
/* write part's tensors from m, in model order, each in the dtype it was read in
 * (f32 vectors converted back), with its attrs; the tail write adds the extra tensors,
 * then the end record */
int lm_ms_write_part(struct lm_model_stream *ms, const struct lm_model *m, int part,
                     struct lm_writer *w);

#endif

/* modelio.h: filling a struct lm_model (model.h) one tensor at a time, finding its
 * tensors by kind, checking and freeing it.
 *
 * Tensors arrive by canonical Hugging Face name, in any order, from any source (a
 * safetensors file, a stream record): the model checks each shape against its config and
 * takes ownership of the payload. Linear weights, embeddings and lm_head stay in their
 * dtype (f32, f16, bf16; f64 is narrowed to f32); vectors (biases, LayerNorm) become f32.
 * A layer's vectors share one allocation (lm_layer.mem) holding zeros until a tensor fills
 * them, which is also what a model without biases (enable_bias false) runs with.
 * lm_layer.loaded is a bitmask: bit (kind - LM_T_ATTN_LN_W) for each tensor taken. */
#ifndef LM_MODELIO_H
#define LM_MODELIO_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* copy and check the config, allocate the layer array; no tensor is loaded */
int lm_model_init(struct lm_model *m, const struct lm_opt_config *cfg);
/* Give the model one tensor (canonical name, see lm_opt_canonical_name). data was
 * allocated with lm_alloc and is owned by the model from now on, also when this fails
 * (-1 + error naming the tensor: unknown name, layer out of range, shape or dtype not
 * what the config says, given twice). A lm_head.weight of a tied model is dropped: it is
 * embed_tokens, which lm_head then shares (as transformers ties them). */
int lm_model_take(struct lm_model *m, const char *name, enum lm_dtype dt, int ndim,
                  const int64_t *shape, void *data);
/* the same for a stream record: takes r->data (left NULL) */
int lm_model_take_record(struct lm_model *m, struct lm_record *r);
/* the same, keeping an N:M or bitmap matrix in its layout: r->wire (lm_reader_keep_sparse)
 * becomes the matrix's data (model.h), r->data is dropped once the shape is checked. The
 * caller picks the tensors (only matrices multiplied by lm_matmul_forward); a record
 * without r->wire, or in another layout, is taken dense. */
int lm_model_take_sparse(struct lm_model *m, struct lm_record *r);

/* free a layer's tensors and zero it (so it can be filled again: layer-by-layer tools) */
void lm_layer_free(struct lm_layer *l);
/* free everything, layers included, and zero the model */
void lm_model_free(struct lm_model *m);

/* is this kind a bias vector / a LayerNorm vector? (the tensors a config may lack:
 * enable_bias, ln_affine; trainers skip them for perplexity-only runs) */
int lm_kind_is_bias(enum lm_opt_kind k);
int lm_kind_is_ln(enum lm_opt_kind k);

/* where a tensor lives: the matrix (embeddings, projections, linear weights, lm_head) or
 * the f32 vector (biases, LayerNorm) of a kind; NULL for the other sort of kind or a
 * layer out of range. The pointers are valid whether or not the tensor is loaded. */
struct lm_mat *lm_model_mat(struct lm_model *m, enum lm_opt_kind kind, int layer);
float **lm_model_vec(struct lm_model *m, enum lm_opt_kind kind, int layer);
/* has this tensor been taken? (tied lm_head: whether embed_tokens has) */
int lm_model_has(const struct lm_model *m, enum lm_opt_kind kind, int layer);

/* -1 + error naming the first tensor the config needs that is missing: the global ones
 * (embeddings, projections, final LayerNorm, lm_head) / one layer / everything */
int lm_model_check_globals(const struct lm_model *m);
int lm_layer_check(const struct lm_model *m, int layer);
int lm_model_check(const struct lm_model *m);
/* -1 + error naming the first loaded tensor holding NaN or Inf (count, first index);
 * layer -1: the global tensors, else that layer; lm_model_check_finite: all of them */
int lm_model_check_finite_part(const struct lm_model *m, int layer);
int lm_model_check_finite(const struct lm_model *m);

#endif

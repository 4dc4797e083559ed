/* model.h: an OPT model's weights in memory, whole or one layer at a time.
 *
 * Linear weights keep the dtype they came in (f32, f16, bf16; packed quantized types
 * later) as an lm_mat, so an f16 stream runs without being expanded to f32: the matmul
 * converts tiles to f32 as it goes. Vectors (biases, LayerNorm) are always f32. */
#ifndef LM_MODEL_H
#define LM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "opt.h"
#include "stream.h"

/* a weight matrix [rows=out, cols=in] in any supported dtype */
struct lm_mat {
	enum lm_dtype dtype;
	int64_t rows, cols;
	void *data;        /* owned by whoever filled it (see lm_layer/lm_model) */
	/* Kept sparse (only where a program asks for it: lm-eval, see modelstream.h): data is
	 * the stream's payload in this layout (sparse.h), nbytes long; rowoff [rows + 1] the
	 * first kept value of each row for bitmap (lm_alloc'd, NULL otherwise). Dense (the
	 * zero layout) everywhere else. The decode product reads it as it is (matvec.h); the
	 * tile path expands rows of it (lm_mat_rows_f32), so matrix products see dense values. */
	struct lm_layout layout;
	size_t nbytes;
	size_t *rowoff;
};

static inline int lm_mat_is_sparse(const struct lm_mat *w)
{
	return w->layout.kind != LM_LAYOUT_DENSE;
}

struct lm_layer {
	float *ln1_w, *ln1_b;   /* self_attn_layer_norm [C] */
	struct lm_mat q, k, v, o;  /* [C, C] */
	float *q_b, *k_b, *v_b, *o_b;  /* [C] (zeros when !enable_bias) */
	float *ln2_w, *ln2_b;   /* final_layer_norm of the layer [C] */
	struct lm_mat fc1;      /* [F, C] */
	float *fc1_b;           /* [F] */
	struct lm_mat fc2;      /* [C, F] */
	float *fc2_b;           /* [C] */
	void *mem;              /* every buffer above lives here or in mats (freed by lm_layer_free) */
	int loaded;
};

struct lm_model {
	struct lm_opt_config cfg;
	struct lm_mat embed_tokens;  /* [V, E] */
	struct lm_mat embed_pos;     /* [P+2, C] */
	struct lm_mat project_in;    /* [C, E] or data NULL */
	struct lm_mat project_out;   /* [E, C] or data NULL */
	float *final_ln_w, *final_ln_b;  /* [C] or NULL */
	struct lm_mat lm_head;       /* [V, E]: same data as embed_tokens when tied */
	struct lm_layer *layers;     /* [L] */
};

#endif

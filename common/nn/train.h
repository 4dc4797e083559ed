/* train.h: training an OPT model in memory (lm-retrain): which parameters train, the
 * forward pass that keeps what the backward needs, the backward, AdamW, the schedule, and
 * LoRA adapters with their merge.
 *
 * A struct lm_train is built over a loaded struct lm_model (modelio.h) and changes it in
 * place:
 *   - Trainable vectors (biases, LayerNorm) are trained where the model keeps them (f32).
 *   - A trainable matrix is converted to f32 into a buffer of its own that the model points
 *     at while training; lm_train_free points the model back at its own data. Frozen
 *     matrices stay in their stream dtype (f16 stays f16) and are multiplied tile by tile,
 *     except the LM head, which the fused cross-entropy reads as f32 (a frozen f16/bf16 head
 *     gets an f32 copy: it is read twice per step, converting it each time costs more).
 *   - Only trainable tensors get gradient and AdamW moment buffers: one allocation each, in
 *     the same layout (a table of offsets, llm.c's idea), so zeroing, the norm and the
 *     optimizer are flat loops.
 *   - Pruned zeros stay zero: a trainable matrix's exact zeros are frozen (gradient masked
 *     before clipping and AdamW); MaskLoRA and ScaleLoRA cannot move them by construction;
 *     standard LoRA is merged with the same mask (PERP's "lora_prune").
 *   - Activations: one arena per (B, T), made at init; a layer keeps only what its backward
 *     reads given what trains (a frozen linear's input is not kept; a ReLU keeps a byte
 *     mask unless fc2's weight trains); the attention probabilities are recomputed.
 *
 * LoRA on a linear W [OUT, IN] with A [r, IN], B [OUT, r], s = alpha / r:
 *   standard   W_eff = W + s B A                 A ~ U(-1/sqrt(IN), 1/sqrt(IN)), B = 0
 *   mask       W_eff = W + s (B A ⊙ 1[W != 0])    same init
 *   scale      W_eff = W ⊙ (B A)                  A row 0 = 1, rows 1.. ~ U(-1/sqrt(IN),
 *              (alpha unused)                     1/sqrt(IN)); B column 0 = 1, columns 1.. = 0,
 *                                                 so B A is exactly all ones at step 0
 * All three leave W_eff == W bit for bit at step 0. (PERP initialises ScaleLoRA with every
 * entry 1/sqrt(r): B A = 1 only up to rounding, and all rows of A stay equal forever, a
 * rank-1 adapter. Ours starts exactly at W and uses all r ranks: the r-1 extra ones start as
 * standard LoRA does.) W_eff is formed once per step in f32 and used by the forward and the
 * backward; dL/dW_eff gives dA and dB. */
#ifndef LM_TRAIN_H
#define LM_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "opt.h"
#include "optim.h"

enum lm_lora_kind { LM_LORA_NONE, LM_LORA_STD, LM_LORA_MASK, LM_LORA_SCALE };

const char *lm_lora_name(enum lm_lora_kind k);  /* "lora", "mask-lora", "scale-lora" */

struct lm_train_opts {
	int perp;                 /* every bias and LayerNorm weight/bias (PERP's subset) */
	int full;                 /* every tensor of the decoder layers + the final LayerNorm */
	const char *const *globs; /* fnmatch(3) patterns on tensor names, also trained */
	size_t nglobs;
	enum lm_lora_kind lora;   /* adapters on q/k/v/out_proj/fc1/fc2 of every layer */
	int rank;
	double alpha;             /* s = alpha / rank (standard and mask) */
	int lora_head;            /* standard LoRA (rank, alpha) on the LM head (tied: on
	                             embed_tokens, which the embedding lookup then uses too) */
	double dropout;           /* after out_proj and after fc2, training only */
	uint64_t seed;            /* LoRA initialisation and dropout masks */
	int layer;                /* -1: the whole model; else only this layer's parameters
	                             (layer-wise reconstruction) */
	int lora_packed;          /* LoRA may adapt a packed (quantized) matrix, QLoRA's way: the
	                             packed weight stays frozen and is decoded row by row into
	                             W_eff; lm_train_merge leaves an f32 matrix that cannot be
	                             packed again, so the caller writes it unpacked (as f16;
	                             its zeros, grid points rather than pruning, are not kept
	                             by the merge). 0: refused. */
};

/* one trainable tensor: values, gradient and AdamW moments (n floats each) */
struct lm_tparam {
	char name[LM_OPT_MAX_NAME + 16];
	enum lm_opt_kind kind;
	int layer;
	char lora;                 /* 0, 'A' or 'B' (a LoRA factor of the matrix `kind`) */
	float *p, *g, *m, *v;
	size_t n;
	const uint8_t *mask;       /* matrices with zeros: 1 = may change; NULL: all */
	int decay;
};

/* a weight matrix as the training sees it */
struct lm_tmat {
	struct lm_mat *mt;         /* the model's matrix */
	struct lm_mat eff;         /* what the forward and backward multiply by */
	float *grad;               /* dL/dW when W trains (its parameter's g), else NULL */
	void *orig;                /* W trains or was merged: the model's own data, put back */
	enum lm_dtype orig_dt;
	float *own;                /* f32 buffer of a trained matrix or of W_eff (LoRA) */
	uint8_t *mask;             /* trained matrix with zeros: 1 = may change */
	enum lm_lora_kind lora;
	size_t r;
	float s;
	long ia, ib;               /* LoRA factors: indices in the parameter table */
	float *G;                  /* LoRA: dL/dW_eff (shared scratch, own buffer for the head) */
	int merged;                /* the adapter has been merged into own */
};

struct lm_tacts;               /* one layer's saved activations (train.c) */

struct lm_train {
	struct lm_model *m;
	struct lm_opt_config cfg;
	struct lm_train_opts o;
	struct lm_tparam *par;     /* the trainable tensors, model order; LoRA factors after
	                              their matrix */
	size_t npar, nfloats;      /* trainable floats in all */
	float *gmem, *mmem, *vmem, *lmem;  /* gradients, moments, LoRA factor values */
	struct lm_tmat *lin;       /* [L * 6]: q, k, v, out_proj, fc1, fc2 of each layer */
	struct lm_tmat emb, pos, pin, pout, head_own;
	struct lm_tmat *head;      /* &emb when tied, else &head_own */
	float **vgrad;             /* [(L + 1) * LM_T_KIND_COUNT]: gradient of a vector or NULL;
	                              row L holds the final LayerNorm's */
	int lowest;                /* lowest layer the backward goes through (L: none) */
	int embed_grad;            /* the backward reaches the embeddings */
	float *head32;             /* frozen f16/bf16 head as f32, else NULL */
	size_t B, T;
	/* activations and scratch (one allocation) */
	void *arena;
	size_t arena_bytes;
	struct lm_tacts *acts;     /* [L] */
	float **X;                 /* [L + 1] residual stream at each layer's input, X[L] final */
	float *emb_out, *lnf, *lnf_mean, *lnf_rstd, *xf, *tmp;
	float *dres, *dt1, *dt2, *dq, *dk, *dv, *dff, *dxf, *demb, *nll;
	int32_t *ids, *tgt;
	float *ws_mm, *ws_att, *ws_attb, *ws_ce, *Gs, *row;
	size_t ws_att_n, ws_attb_n, ws_ce_n;
	uint64_t step;             /* AdamW steps taken (also keys the dropout masks) */
};

/* Select the trainable tensors, add adapters, make the buffers for B sequences of T
 * tokens. -1 + error: a pattern that matches no tensor ("--train 'x' matches no tensor"),
 * a LoRA rank above a matrix's smaller side, nothing to train, memory. */
int lm_train_init(struct lm_train *tr, struct lm_model *m, const struct lm_train_opts *o,
                  size_t B, size_t T);
/* free everything; the model points back at its own data (its trained vectors stay
 * trained) unless lm_train_commit gave it the trained and merged matrices */
void lm_train_free(struct lm_train *tr);

/* number of trainable values (LoRA factors included) */
size_t lm_train_count(const struct lm_train *tr);
/* bytes of the gradient, moment and adapter buffers and of the activation arena */
size_t lm_train_bytes(const struct lm_train *tr);

/* zero the gradients */
void lm_train_zero_grad(struct lm_train *tr);
/* One forward + backward on ids [B,T] (B*T and T within the arena), next-token loss over
 * the T-1 shifted targets of each sequence; gradients accumulate; *loss = mean NLL. With
 * dropout if opts.dropout > 0 (masks keyed by the step counter). */
int lm_train_step(struct lm_train *tr, const int32_t *ids, size_t B, size_t T, double *loss);
/* A step with another loss than plain next-token cross-entropy (lm-unlearn, early exits).
 * Every term is a weighted sum of per-position cross-entropies on the model's outputs:
 *   loss = sum over outputs o of w_o * sum_i r_i * nll_o(i)
 * where the outputs are the final one (w = 1) or, with exits, the output of each listed
 * decoder layer taken through the shared final LayerNorm, project_out and head (so an exit
 * at the last layer is the final output, and the final output counts only if listed);
 * r_i = weight[i], or 1 / (number of positions with a target) when weight is NULL. */
struct lm_train_loss {
	const int32_t *targets;  /* [B,T] target of each position, -1: none; NULL: the next id */
	const float *weight;     /* [B,T] r_i (negative: ascent); NULL: the mean over targets */
	const float *ref_xf;     /* [B,T,E] final outputs of a reference model: soft targets
	                            softmax(ref_xf head^T) instead of the target ids (which then
	                            only select positions); NULL: hard targets */
	const float *ref_head;   /* [V,E] f32 head for the soft targets; NULL: this model's */
	const int *exits;        /* strictly increasing decoder-layer indices; NULL: none */
	const float *exit_w;     /* [nexits] w of each exit */
	size_t nexits;
	double *exit_loss;       /* [nexits] out: sum_i r_i nll(i) of each exit; NULL: not wanted */
};
/* Forward and backward of that loss; gradients accumulate; *loss = the weighted sum. */
int lm_train_step_loss(struct lm_train *tr, const int32_t *ids, size_t B, size_t T,
                       const struct lm_train_loss *ls, double *loss);
/* the same loss without dropout and without a backward (validation): sum of NLL and count */
int lm_train_eval(struct lm_train *tr, const int32_t *ids, size_t B, size_t T, double *nll_sum,
                  size_t *count);

/* A loss on one position's final output per sequence (contrastive sentence embeddings,
 * PromptEOL's last token): lm_train_embed_forward runs ids [B,T] through the model (with
 * dropout when train and opts.dropout > 0, masks keyed by the step counter and each
 * element's place in the batch, so two copies of a sentence get different masks) and writes
 * out [B,E], the final hidden state (after the final LayerNorm / project_out) at position
 * last[b] of sequence b. A sequence padded on the right needs no mask: causal attention
 * keeps the padding out of every earlier position. lm_train_embed_backward, right after,
 * takes dL/dout [B,E] (same B, T, last) down through the layers that train; gradients
 * accumulate. */
int lm_train_embed_forward(struct lm_train *tr, const int32_t *ids, size_t B, size_t T,
                           const size_t *last, int train, float *out);
int lm_train_embed_backward(struct lm_train *tr, const float *dout, size_t B, size_t T,
                            const size_t *last);

/* masks the gradients of frozen zeros, returns the global L2 norm of all gradients */
double lm_train_grad_norm(struct lm_train *tr);
/* multiply every gradient by s (clipping) */
void lm_train_scale_grad(struct lm_train *tr, float s);
/* One AdamW step (torch.optim.AdamW: bias-corrected moments, decoupled weight decay) with
 * learning rate lr; advances tr->step */
void lm_train_adamw(struct lm_train *tr, const struct lm_adamw *h, double lr);

/* ---- layer-wise reconstruction (opts.layer >= 0) ---- */
/* One step on layer opts.layer: x [B,T,C] its inputs, y [B,T,C] the targets; loss =
 * mean squared error of the layer's output (with dropout if set); gradients accumulate. */
int lm_train_layer_step(struct lm_train *tr, const float *x, const float *y, size_t B, size_t T,
                        double *mse);
/* The layer's output without dropout (adapters applied): out [B,T,C] (may alias x) */
int lm_train_layer_forward(struct lm_train *tr, const float *x, float *out, size_t B, size_t T);

/* ---- the end ---- */
/* Merge every adapter into its matrix (in f32; the model then points at the merged
 * matrix), keeping pruned zeros; in every trained or merged matrix, a weight that was not
 * zero and would become zero in the stream's dtype (f16 underflow) gets that dtype's
 * smallest magnitude instead, so the zeros are exactly the ones before; check every
 * trained tensor is finite (-1 + error naming the first that is not). */
int lm_train_merge(struct lm_train *tr);
/* The model keeps the trained and merged matrices (f32; a stream writer converts them to
 * the stream's dtype) and frees its former data: after this, lm_train_free leaves the
 * model as it is. */
void lm_train_commit(struct lm_train *tr);
/* does this tensor change (trained, or merged with an adapter)? */
int lm_train_changes(const struct lm_train *tr, enum lm_opt_kind kind, int layer);

#endif

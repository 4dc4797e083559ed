/* opt.h: the OPT architecture as lmpipe sees it: config, tensor names, model order.
 *
 * Shape vocabulary used in comments across common/ (llm.c's, defined once here):
 *   B  sequences in a batch        T  tokens per sequence (<= P)
 *   C  hidden size (d_model)       E  word_embed_proj_dim (== C except opt-350m)
 *   NH attention heads, HS = C/NH  F  ffn_dim
 *   V  vocabulary rows             L  decoder layers      P  max_position_embeddings
 * Weights are stored as PyTorch nn.Linear does: [out, in], so y = x W^T + b.
 *
 * Tensor names are the Hugging Face state-dict names ("model.decoder.layers.3.fc1.weight");
 * this file is the one table of them, used by importers, exporters and the model. */
#ifndef LM_OPT_H
#define LM_OPT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define LM_OPT_POS_OFFSET 2 /* OPTLearnedPositionalEmbedding: row = position + 2 */
#define LM_OPT_MAX_NAME 256

struct lm_opt_config {
	int64_t vocab_size;          /* V */
	int64_t hidden_size;         /* C */
	int64_t num_layers;          /* L */
	int64_t num_heads;           /* NH */
	int64_t ffn_dim;             /* F */
	int64_t max_positions;       /* P */
	int64_t word_embed_proj_dim; /* E */
	int pre_ln;                  /* do_layer_norm_before */
	int final_ln;                /* model.decoder.final_layer_norm exists (pre-LN and not _remove_final_layer_norm) */
	int enable_bias;             /* q/k/v/out/fc1/fc2 have biases */
	int ln_affine;               /* layer_norm_elementwise_affine */
	int tied;                    /* lm_head tied to embed_tokens (no lm_head.weight tensor) */
	int bos, eos, pad;           /* token ids */
	double ln_eps;               /* 1e-5 */
	double dropout;              /* training only */
};

/* Hugging Face config.json (a parsed JSON object) -> config; -1 + error if not OPT or malformed */
int lm_opt_config_from_hf(struct lm_opt_config *c, json_t *hf);
/* config -> our header "model" object (new reference) and back */
json_t *lm_opt_config_to_json(const struct lm_opt_config *c);
int lm_opt_config_from_json(struct lm_opt_config *c, json_t *model);
/* config -> a Hugging Face config.json object (new reference), starting from orig's keys if given */
json_t *lm_opt_config_to_hf(const struct lm_opt_config *c, json_t *orig);
/* sanity: positive sizes, heads divide C, etc. */
int lm_opt_config_check(const struct lm_opt_config *c);
/* shapes of well-known configs ("opt-125m" ... "opt-66b", "opt-micro"); -1 if unknown */
int lm_opt_config_like(struct lm_opt_config *c, const char *name);

/* What one tensor of the model is */
enum lm_opt_kind {
	/* global */
	LM_T_EMBED_TOKENS, LM_T_EMBED_POS, LM_T_PROJECT_IN, LM_T_FINAL_LN_W, LM_T_FINAL_LN_B,
	LM_T_PROJECT_OUT, LM_T_LM_HEAD,
	/* per layer, in the order the forward uses them */
	LM_T_ATTN_LN_W, LM_T_ATTN_LN_B,
	LM_T_Q_W, LM_T_Q_B, LM_T_K_W, LM_T_K_B, LM_T_V_W, LM_T_V_B, LM_T_O_W, LM_T_O_B,
	LM_T_FFN_LN_W, LM_T_FFN_LN_B,
	LM_T_FC1_W, LM_T_FC1_B, LM_T_FC2_W, LM_T_FC2_B,
	LM_T_KIND_COUNT
};

struct lm_opt_tensor {
	char name[LM_OPT_MAX_NAME];
	enum lm_opt_kind kind;
	int layer;       /* -1 for global tensors */
	int ndim;
	int64_t shape[2];
};

/* The model's tensors in stream ("model") order: embed_tokens, embed_positions, project_in,
 * layer 0 .. L-1, final_layer_norm, project_out, lm_head (only when not tied).
 * Returns a malloc'd array, count in *n. */
struct lm_opt_tensor *lm_opt_tensors(const struct lm_opt_config *c, size_t *n);

/* canonical name for a checkpoint key: accepts the new names ("model.decoder.…"), the legacy
 * facebook/opt-* names ("decoder.…"), and a leading "module."; writes the canonical name.
 * Returns 0 if it is an OPT tensor name, -1 otherwise (no error set). */
int lm_opt_canonical_name(const char *key, char *out, size_t outsz);
/* parse a canonical name; 0 and kind/layer set, or -1 */
int lm_opt_parse_name(const char *name, enum lm_opt_kind *kind, int *layer);
/* is this a weight matrix that pruning/quantization touches (q/k/v/out_proj, fc1, fc2)? */
int lm_opt_is_linear(enum lm_opt_kind k);

#endif

/* forward.h: the OPT forward pass at model level, on the kernels of kernels.h.
 *
 *   ids [B,T] --embed--> x [B,T,C] --layer 0..L-1 (in place)--> x --final--> [B,T,E]
 *             --lm_head + cross-entropy--> per-token NLL, loss (and logits when asked)
 *
 * Layers run one at a time on a caller-owned x, so a tool that streams the model layer
 * by layer (calibration for pruning/quantization) calls lm_forward_layer itself. All
 * activations live in one arena (struct lm_fwd) made once per (B, T) and reused: the
 * first touch of fresh pages costs more than the arithmetic on them here.
 *
 * Semantics follow transformers' OPTForCausalLM (see docs/methods.md §2): project_in
 * before the learned positions (offset 2), pre-LN or post-LN blocks, q scaled by HS^-0.5
 * after its bias, softmax in f32, final LayerNorm then project_out, tied lm_head. */
#ifndef LM_FORWARD_H
#define LM_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "opt.h"

/* called with the input of each of the six linear layers of a layer, before its matmul
 * (q, k and v receive the same pointer): what Wanda/SparseGPT/GPTQ accumulate statistics
 * from. inp is [N, cols] f32, valid during the call only. */
typedef void lm_fwd_hook(void *ctx, int layer, enum lm_opt_kind w, const float *inp, size_t N,
                         size_t cols);

/* The activation arena, for up to B sequences of up to T tokens (B*T rows).
 * Buffers are public so tools can read them after a call (e.g. s->x after a layer). */
struct lm_fwd {
	struct lm_opt_config cfg;
	size_t B, T;
	float *x;        /* [B,T,C] the residual stream (lm_forward_embed writes it) */
	float *ln;       /* [B,T,C] LayerNorm output */
	float *q, *k, *v;  /* [B,T,C] */
	float *att;      /* [B,T,C] attention output, input of out_proj */
	float *ff;       /* [B,T,F] fc1 output after ReLU, input of fc2 */
	float *out;      /* [B,T,max(C,E)] token embeddings before project_in; final output [B,T,E] */
	float *nll;      /* [B,T] per-token NLL from lm_forward / lm_forward_loss */
	int32_t *tgt;    /* [B,T] targets of lm_forward_loss (shifted ids, -1 at the end) */
	float *ws;       /* kernel workspace (ws_n floats) */
	size_t ws_n;
	void *mem;
	lm_fwd_hook *hook;  /* NULL: none */
	void *hook_ctx;
	/* left padding [B] set by lm_forward_embed_padded (NULL otherwise): lm_forward_layer
	 * then masks each sequence's first pad[b] keys. Borrowed: the caller keeps it alive. */
	const size_t *pad;
};

/* arena for cfg's shapes, B sequences x T tokens; -1 + error (sizes, memory). Its
 * attention scratch is per thread: call lm_set_threads first (an arena made for fewer
 * threads runs attention on fewer). */
int lm_fwd_init(struct lm_fwd *s, const struct lm_opt_config *cfg, size_t B, size_t T);
void lm_fwd_free(struct lm_fwd *s);

/* ids [B,T] -> s->x [B,T,C]: embed_tokens, project_in when present, + positions 0..T-1 */
int lm_forward_embed(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids, size_t B,
                     size_t T);
/* Left-padded batch: sequence b is pad[b] pad tokens then T - pad[b] real ones (ids of
 * the pads are ignored). The real tokens get positions 0.. (as transformers' positions
 * from the attention mask do), pad rows of x are zero, and until the next
 * lm_forward_embed/lm_forward the layers mask the pads out of attention (s->pad = pad),
 * so each sequence's real rows come out as if it ran alone. */
int lm_forward_embed_padded(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids,
                            const size_t *pad, size_t B, size_t T);
/* decoder layer `layer` (index for messages and hooks) in place on x [B,T,C] */
int lm_forward_layer(struct lm_fwd *s, const struct lm_layer *l, int layer, float *x, size_t B,
                     size_t T);
/* x [N,C] -> out [N,E]: final LayerNorm (cfg.final_ln), then project_out (when present).
 * out may be x when E == C. */
int lm_forward_final(struct lm_fwd *s, const struct lm_model *m, const float *x, float *out,
                     size_t N);
/* xf [N,E] (final output) through lm_head: with targets [N] (-1: ignored row), per-row
 * NLL into nll [N] by the fused, chunked logits + cross-entropy; logits [N,V] optional
 * (then computed in full: for tests and small N). targets NULL: logits only. */
int lm_forward_head(struct lm_fwd *s, const struct lm_model *m, const float *xf,
                    const int32_t *targets, size_t N, float *nll, float *logits);
/* all of the above: ids [B,T] and targets [B,T] (NULL: logits only) to nll [B,T] (NULL:
 * s->nll) and optional logits [B,T,V] */
int lm_forward(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids,
               const int32_t *targets, size_t B, size_t T, float *nll, float *logits);
/* mean cross-entropy of the shifted predictions (position t predicts ids[t+1]), as
 * transformers' loss with labels = input_ids; per-token values stay in s->nll */
int lm_forward_loss(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids, size_t B,
                    size_t T, double *loss);

/* ---- incremental decoding with a KV cache ---- */

/* keys and values of every layer for B sequences of up to cap tokens */
struct lm_kv {
	size_t B, cap, len, L, C;
	float *k, *v;   /* [L,B,cap,C] */
};

int lm_kv_init(struct lm_kv *kv, const struct lm_opt_config *cfg, size_t B, size_t cap);
void lm_kv_free(struct lm_kv *kv);
/* Feed n new tokens per sequence (ids [B,n], B = kv->B) at positions kv->len..: their
 * keys/values are appended to the cache and kv->len advances by n. logits [B,V] (NULL:
 * none) get the next-token logits after the last of them. The arena needs s->B >= B,
 * s->T >= kv->cap (the attention scores span the whole cache). */
int lm_forward_decode(struct lm_fwd *s, const struct lm_model *m, struct lm_kv *kv,
                      const int32_t *ids, size_t n, float *logits);
/* Greedy generation: out[0..np) = prompt, then up to nnew argmax tokens; stops after an
 * eos (kept) when stop_at_eos. *nout = tokens in out. Allocates its own arena and cache. */
int lm_generate_greedy(const struct lm_model *m, const int32_t *prompt, size_t np, size_t nnew,
                       int stop_at_eos, int32_t *out, size_t *nout);

/* ---- decoding one layer at a time (early exit, earlyexit.h) ----
 * lm_forward_decode in pieces, so that a token may leave after any layer:
 *   lm_decode_embed                       n new tokens -> s->x, positions kv->len..
 *   lm_decode_layer(0), (1), ... (l)      full layers; each appends its K/V to the cache
 *   lm_decode_kv(l+1), ..., (L-1)         only K/V of the layers the token skipped,
 *                                         computed from the exited hidden state
 *   lm_kv_advance                         the n positions now exist in every layer
 * Embed, every layer and advance give exactly what lm_forward_decode gives. */
int lm_decode_embed(struct lm_fwd *s, const struct lm_model *m, const struct lm_kv *kv,
                    const int32_t *ids, size_t n);
/* decoder layer `layer` in place on x [B,n,C]; its new keys and values go to cache rows
 * kv->len.., and attention spans those and the kv->len before them */
int lm_decode_layer(struct lm_fwd *s, const struct lm_model *m, struct lm_kv *kv, int layer,
                    float *x, size_t n);
/* "just propagate" (GREEN-CODE): layer `layer`'s keys and values of x [B,n,C] (its
 * self_attn_layer_norm first in a pre-LN model, then k_proj and v_proj) into cache rows
 * kv->len..; x is not changed, nothing else of the layer runs */
int lm_decode_kv(struct lm_fwd *s, const struct lm_model *m, struct lm_kv *kv, int layer,
                 const float *x, size_t n);
/* kv->len += n, once every layer has the K/V of the n positions */
int lm_kv_advance(struct lm_kv *kv, size_t n);

#endif

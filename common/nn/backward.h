/* backward.h: the backward pass of the OPT kernels (kernels.h), llm.c style.
 *
 * Each forward kernel of kernels.h gets a backward twin here, over the same flat f32
 * buffers and in the same shape vocabulary (opt.h: B, T, C, E, NH, HS, F, V; N = B*T rows).
 * Conventions:
 *   - d<x> is dL/d<x> for the scalar loss L, same shape as <x>.
 *   - Parameter gradients (dw, db, dwte, ...) always accumulate (+=): a tied or shared
 *     parameter sums its uses, and the caller zeroes them once per step.
 *   - Activation gradients (dinp) overwrite, or accumulate when `accumulate` is set (a
 *     residual branch joining the stream). The kernels that say so allow dinp == dout.
 *   - Weights multiplied by activations may be f32, f16 or bf16 (frozen weights stay in
 *     their stream dtype, converted tile by tile as in lm_matmul_forward). Weights that get
 *     a gradient are f32.
 * Nothing here allocates on the hot path when given a workspace (`ws`, sized by the *_ws
 * function); ws NULL makes the kernel allocate one itself (tests, tools).
 * Matmuls are cblas_sgemm in the three forms (forward NT, dinp NN, dW TN), or under
 * lm_set_compute(LM_COMPUTE_BF16) on a CPU with AVX512_BF16 (kernels.h: lm_compute_used)
 * the bf16 GEMM (gemm_bf16.h) in the same forms: the linear layers' dinp and dW, the five
 * products of attention's backward and the four of the LM head's; operands rounded to
 * bf16, sums and every gradient kept in fp32; LayerNorm, softmax and the loss stay fp32. */
#ifndef LM_BACKWARD_H
#define LM_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* ---- layernorm ---- */
/* Backward of lm_layernorm_forward with the mean/rstd it saved, given its input inp[N,C]:
 *   dinp[N,C] (+)= dL/dinp,  dw[C] += sum_n dout * xhat,  db[C] += sum_n dout
 * w NULL: no affine part (then dw, db are ignored). dw/db NULL: not wanted. dinp NULL: not
 * wanted. dinp may alias dout. */
void lm_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean,
                           const float *rstd, size_t N, size_t C, int accumulate);

/* ---- matmul (y = x W^T + b, W [OUT,IN]) ---- */
/* dinp[N,IN] (+)= dout[N,OUT] · W[OUT,IN]; W f32/f16/bf16 (converted in row tiles into ws,
 * lm_matmul_ws(w) floats; NULL: allocated here). dinp must not alias dout. -1 + error on a
 * bad dtype or size. */
int lm_matmul_backward_inp(float *dinp, const float *dout, const struct lm_mat *w, size_t N,
                           int accumulate, float *ws);
/* dw[OUT,IN] (+)= dout[N,OUT]^T · inp[N,IN] (accumulate 0: overwrite, for scratch use);
 * db[OUT] += column sums of dout. Either may be NULL. */
void lm_matmul_backward_w(float *dw, float *db, const float *dout, const float *inp, size_t N,
                          size_t IN, size_t OUT, int accumulate);

/* ---- elementwise ---- */
/* ReLU: dinp[n] = out[n] > 0 ? dout[n] : 0 (the gradient torch.relu gives; out is the ReLU
 * output, which is > 0 exactly where its input is). dinp may alias dout. */
void lm_relu_backward(float *dinp, const float *dout, const float *out, size_t n);
/* the same with the positive set kept as bytes (1: out > 0), for a backward that does not
 * keep the activations themselves */
void lm_relu_mask(uint8_t *mask, const float *out, size_t n);
void lm_relu_backward_mask(float *dinp, const float *dout, const uint8_t *mask, size_t n);

/* Dropout as transformers applies it in training: x *= keep / (1 - p), keep = 0 with
 * probability p. The mask is not stored: element i's keep bit is a hash of (key, i), so
 * the backward regenerates it by calling the same function on the gradient. key comes from
 * lm_dropout_key (seed, step, layer, site), so runs are reproducible and masks
 * independent. p = 0: nothing happens. */
uint64_t lm_dropout_key(uint64_t seed, uint64_t step, int layer, int site);
void lm_dropout(float *x, size_t n, float p, uint64_t key);

/* ---- embeddings ---- */
/* dwte[V,E]: rows ids[n] += dout[n] for n < N (serial: rows repeat); -1 + error on an id
 * outside [0, V) */
int lm_embed_backward(float *dwte, const float *dout, const int32_t *ids, size_t N, size_t E,
                      size_t V);
/* dwpe[P+2,C]: row pos0 + t + LM_OPT_POS_OFFSET += sum over b of dout[b,t] */
void lm_pos_backward(float *dwpe, const float *dout, size_t B, size_t T, size_t C, size_t pos0);

/* ---- attention ---- */
/* scratch floats for lm_attention_backward over T tokens on nthreads */
size_t lm_attention_bwd_ws(size_t T, int nthreads);
/* Backward of lm_attention_forward for a plain causal forward (Tq = Tk = T, kv_rows = T):
 * given q (already scaled), k, v [B,T,C] and dout [B,T,C], writes dq, dk, dv [B,T,C]
 * (dq is the gradient with respect to the scaled q). The softmax is recomputed from q and
 * k, one block of queries at a time, instead of stored (B*NH*T*T floats would dwarf every
 * other activation). (batch, head) pairs run in parallel like the forward. -1 + error. */
int lm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                          const float *k, const float *v, size_t B, size_t T, size_t NH,
                          size_t HS, float *ws, size_t ws_n);

/* ---- logits + cross-entropy ---- */
/* scratch floats for lm_logits_ce_backward over N rows and V logits (a chunk of rows) */
size_t lm_ce_bwd_ws(size_t N, size_t V);
/* Fused LM head + cross-entropy, forward and backward in one pass over row chunks:
 *   z = inp[n] · head^T (head f32 [V,E]), nll[n] = logsumexp(z) - z[target[n]]
 *   L = scale * sum_n nll[n] (scale = 1/count for a mean)
 *   dinp[N,E] = dL/dinp (overwritten; NULL: forward only), dhead[V,E] += dL/dhead (NULL: not
 *   wanted). Only ws_n / V rows of logits exist at a time (ws of ws_n floats; NULL: one of
 *   lm_ce_bwd_ws floats allocated here), never N x V.
 * target < 0: row ignored (nll 0, no gradient). -1 + error on a target >= V. */
int lm_logits_ce_backward(float *nll, float *dinp, float *dhead, const float *inp,
                          const float *head, const int32_t *target, size_t N, size_t V,
                          size_t E, float scale, float *ws, size_t ws_n);

/* The same with more choices of loss (o NULL: as lm_logits_ce_backward):
 *   o->rw [N]: row n's term is scale * rw[n] * nll[n] (weights per position: a mean over a
 *   subset, per-sample normalisation, negative for gradient ascent);
 *   o->ref_inp [N,E]: soft targets, the distribution q = softmax(ref_inp[n] · ref_head^T)
 *   of a reference model (ref_head NULL: head), and nll[n] = -sum_v q_v log p_v (the
 *   cross-entropy to the reference, KL + q's entropy); target[n] < 0 still skips a row and
 *   its value is otherwise unused. Needs twice the workspace (one of fewer than 2 rows of
 *   logits is replaced by an own allocation). */
struct lm_ce_opts {
	const float *rw;
	const float *ref_inp, *ref_head;
};
int lm_logits_loss_backward(float *nll, float *dinp, float *dhead, const float *inp,
                            const float *head, const int32_t *target, size_t N, size_t V,
                            size_t E, float scale, const struct lm_ce_opts *o, float *ws,
                            size_t ws_n);

/* ---- mean squared error (layer-wise reconstruction) ---- */
/* returns mean((out - target)^2) over n values (in double); dout[n] = 2 (out - target) / n
 * (NULL: loss only) */
double lm_mse_backward(float *dout, const float *out, const float *target, size_t n);

/* ---- small helpers shared with train.c ---- */
/* x[n] *= s */
void lm_vec_scale(float *x, float s, size_t n);
/* y[n] += x[n] */
void lm_vec_add(float *y, const float *x, size_t n);
/* sum of squares in double */
double lm_vec_sumsq(const float *x, size_t n);

#endif

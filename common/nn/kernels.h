/* kernels.h: the OPT forward pass as plain kernels over flat float buffers (llm.c style).
 *
 * Every kernel states its memory contract in its comment using the shape vocabulary of
 * opt.h (B, T, C, E, NH, HS, F, V). Row-major everywhere; weights are [out, in] as in
 * PyTorch, so a linear layer is y = x W^T + b. Each optimized kernel has a naive *_ref
 * twin kept next to it for tests (tests/unit/test_kernels.c checks one against the other).
 *
 * Kernels never allocate on the hot path: the ones that need scratch take a workspace
 * pointer (`ws`) whose size in floats the matching *_ws() function gives, so a caller
 * allocates it once (see struct lm_fwd in forward.h). Passing ws = NULL makes the kernel
 * allocate and free one itself (convenient for tools and tests; not for loops).
 *
 * Threads: the linear layers' GEMMs run on OpenBLAS's own pthreads; the row loops here
 * (layernorm, cross-entropy) and attention's (batch, head) pairs run on a small pthread
 * pool whose workers sleep on a condition variable between jobs (no spinning: a spinning
 * thread would steal a core from OpenBLAS, see docs/performance.md §2; only the decode
 * products, pool.h's hot jobs, are followed by a short poll that yields). No OpenMP. */
#ifndef LM_KERNELS_H
#define LM_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "model.h"
#include "pool.h"
#include "rows.h"

/* ---- layernorm ---- */
/* out[N,C] = (inp - mean) * rstd * w + b per row, rstd = 1/sqrt(var + eps), biased var.
 * mean[N], rstd[N]: optional outputs (NULL to skip) kept for a backward pass.
 * w, b: [C] or NULL (no affine part). out may alias inp. */
void lm_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, size_t N, size_t C, float eps);
void lm_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, size_t N, size_t C, float eps);

/* ---- matmul ---- */
/* how lm_matmul_forward and the LM head of lm_logits_ce_forward multiply: fp32 (OpenBLAS,
 * the default) or bf16 (inputs and weights rounded to bf16, fp32 sums, gemm_bf16.c) where
 * the CPU has AVX512_BF16 and LM_NO_BF16=1 is unset; elsewhere bf16 falls back to fp32.
 * Attention's two products follow it too, and so do the backward's (backward.h); LayerNorm,
 * softmax and the loss stay fp32. */
enum lm_compute { LM_COMPUTE_F32, LM_COMPUTE_BF16 };
void lm_set_compute(enum lm_compute mode);
/* the mode lm_matmul_forward actually uses now (after the CPU check and LM_NO_BF16) */
enum lm_compute lm_compute_used(void);
/* scratch floats lm_matmul_forward needs for w: 0 for f32, a bounded row tile otherwise */
size_t lm_matmul_ws(const struct lm_mat *w);
/* the largest lm_matmul_ws() over any dtype for a [rows, cols] matrix */
size_t lm_matmul_ws_max(int64_t rows, int64_t cols);
/* out[N,OUT] = inp[N,IN] · w[OUT,IN]^T + bias[OUT] (bias may be NULL); w f32, f16, bf16
 * or a packed quantized type (dequantized per tile, like f16).
 * f16/bf16 rows are converted tile by tile into ws (lm_matmul_ws floats, NULL: allocated
 * here), never the whole matrix. out must not alias inp. -1 + error on a bad dtype/size. */
int lm_matmul_forward(float *out, const float *inp, const struct lm_mat *w, const float *bias,
                      size_t N, float *ws);
/* the naive triple loop, f32 weights [OUT,IN] */
void lm_matmul_forward_ref(float *out, const float *inp, const float *w, const float *bias,
                           size_t N, size_t IN, size_t OUT);

/* ---- elementwise ---- */
/* out[n] = max(inp, 0); NaN stays NaN (as torch.relu). out may alias inp. */
void lm_relu_forward(float *out, const float *inp, size_t n);
/* out[n] = a + b; out may alias a or b */
void lm_residual_forward(float *out, const float *a, const float *b, size_t n);
/* x[N,C] += bias[C] per row, then x *= scale (the q projection's "bias, then scale") */
void lm_bias_scale(float *x, const float *bias, float scale, size_t N, size_t C);

/* ---- embeddings ---- */
/* out[N,E] = wte[ids[n]] converted to f32; -1 + error on an id outside [0, V) */
int lm_embed_forward(float *out, const int32_t *ids, const struct lm_mat *wte, size_t N);
/* x[B,T,C] += wpe[pos0 + t + LM_OPT_POS_OFFSET] (OPT's learned positions); -1 + error if
 * a position is past the table */
int lm_pos_forward(float *x, const struct lm_mat *wpe, size_t B, size_t T, size_t pos0);

/* ---- attention ---- */
/* scratch floats for lm_attention_forward with Tq queries over Tk keys on nthreads */
size_t lm_attention_ws(size_t Tq, size_t Tk, int nthreads);
/* Causal multi-head attention, per batch b and head h (HS = C/NH, columns h*HS..):
 *   out[b,t,h] = softmax_j(q[b,t,h] · k[b,j,h]) · v[b,j,h]   over keys j <= Tk - Tq + t
 * q[B,Tq,C] is already scaled (HS^-0.5 after its bias, as OPT does); k, v [B,*,C] hold the
 * Tk keys of batch b at rows b*kv_rows .. b*kv_rows + Tk - 1 (kv_rows = Tk for a plain
 * forward, the cache capacity for a KV cache). Softmax in f32. out[B,Tq,C] must not alias.
 * Large problems run (batch, head) pairs in parallel, one per thread with single-threaded
 * BLAS calls (OpenBLAS threading per-head products with K = HS is slower than one
 * thread), as many threads as ws_n floats of ws hold scratch for (lm_attention_ws).
 * ws NULL: allocated here for lm_threads(). -1 + error if Tk < Tq, kv_rows < Tk or the
 * allocation fails. Call the kernels from one thread at a time: this one sets OpenBLAS's
 * (process-wide) thread count while it runs. */
int lm_attention_forward(float *out, const float *q, const float *k, const float *v,
                         size_t B, size_t Tq, size_t Tk, size_t kv_rows, size_t NH,
                         size_t HS, float *ws, size_t ws_n);
/* The same over B left-padded sequences of T tokens (Tq = Tk = kv_rows = T): the first
 * pad[b] rows of sequence b are padding, masked out as keys (query t sees keys
 * pad[b] .. t), and their own output rows are zero. Equal to lm_attention_forward on each
 * sequence's T - pad[b] real rows alone. -1 + error if a sequence is all padding. */
int lm_attention_forward_padded(float *out, const float *q, const float *k, const float *v,
                                size_t B, size_t T, const size_t *pad, size_t NH, size_t HS,
                                float *ws, size_t ws_n);
/* the naive loops (same contract, expf from libm, no workspace) */
void lm_attention_forward_ref(float *out, const float *q, const float *k, const float *v,
                              size_t B, size_t Tq, size_t Tk, size_t kv_rows, size_t NH,
                              size_t HS);

/* ---- logits + cross-entropy ---- */
/* scratch floats for lm_logits_ce_forward over N rows with head [V, E] */
size_t lm_ce_ws(const struct lm_mat *head, size_t N);
/* Fused LM head + cross-entropy: per row n, nll[n] = logsumexp(z) - z[target[n]] with
 * z = inp[n] · head^T (inp [N,E], head [V,E]). The logits are computed a tile of the
 * vocabulary at a time for a bounded chunk of rows (online logsumexp across tiles), so no
 * more than a chunk of rows x a vocabulary tile exists at once. target < 0: row ignored
 * (nll 0). logits: optional [N,V] copy of z (tests); NULL normally. -1 + error on a target
 * >= V or a bad head. */
int lm_logits_ce_forward(float *nll, float *logits, const float *inp, const struct lm_mat *head,
                         const int32_t *target, size_t N, float *ws);
/* the same with ws_n floats of ws, whatever N: the chunk of rows is what fits (the result
 * does not depend on it); allocates its own only when not even one row's chunk fits */
int lm_logits_ce_forward_ws(float *nll, float *logits, const float *inp,
                            const struct lm_mat *head, const int32_t *target, size_t N,
                            float *ws, size_t ws_n);
/* naive: nll[n] = -log_softmax(logits[n])[target[n]] over given logits [N,V] (double sums) */
void lm_crossentropy_ref(float *nll, const float *logits, const int32_t *target, size_t N,
                         size_t V);

/* index of the largest of x[n] (the first on ties; NaN never wins) */
size_t lm_argmax(const float *x, size_t n);

#endif

/* forward.c: OPT forward pass at model level (see forward.h) */
#include "forward.h"
#include "kernels.h"
#include "modelio.h"
#include "util.h"

#include <math.h>
#include <string.h>

#define BUF_ALIGN 16 /* floats: every arena buffer starts on a cache line */

/* ---- arena ---- */

/* reserve n floats at *off (rounded up to a cache line); -1 on overflow */
static int reserve(size_t *off, size_t n, size_t *at)
{
	size_t r;
	if (lm_add(n, BUF_ALIGN - 1, &r) < 0)
		return -1;
	r -= r % BUF_ALIGN;
	*at = *off;
	return lm_add(*off, r, off);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

int lm_fwd_init(struct lm_fwd *s, const struct lm_opt_config *cfg, size_t B, size_t T)
{
	size_t C, E, F, V, N, NC, NF, NE, off = 0;
	size_t o_x, o_ln, o_q, o_k, o_v, o_att, o_ff, o_out, o_nll, o_tgt, o_ws;

	memset(s, 0, sizeof *s);
	if (lm_opt_config_check(cfg) < 0)
		return -1;
	if (B == 0 || T == 0)
		return lm_seterr("forward arena: empty batch (%zu x %zu)", B, T);
	C = (size_t)cfg->hidden_size, E = (size_t)cfg->word_embed_proj_dim;
	F = (size_t)cfg->ffn_dim, V = (size_t)cfg->vocab_size;
	if (lm_mul(B, T, &N) < 0 || lm_mul(N, C, &NC) < 0 || lm_mul(N, F, &NF) < 0 ||
	    lm_mul(N, max_sz(C, E), &NE) < 0)
		return lm_preerr("forward arena");

	/* one workspace for whichever kernel runs: converted weight tiles, attention scores
	 * (a block of queries x T keys), the fused cross-entropy's tiles */
	struct lm_mat head = {.dtype = LM_F16, .rows = (int64_t)V, .cols = (int64_t)E};
	size_t ws = lm_attention_ws(T, T, lm_threads());
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)C, (int64_t)C));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)F, (int64_t)C));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)C, (int64_t)F));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)C, (int64_t)E));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)E, (int64_t)C));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)V, (int64_t)E));
	ws = max_sz(ws, lm_ce_ws(&head, N));

	if (reserve(&off, NC, &o_x) || reserve(&off, NC, &o_ln) || reserve(&off, NC, &o_q) ||
	    reserve(&off, NC, &o_k) || reserve(&off, NC, &o_v) || reserve(&off, NC, &o_att) ||
	    reserve(&off, NF, &o_ff) || reserve(&off, NE, &o_out) || reserve(&off, N, &o_nll) ||
	    reserve(&off, N, &o_tgt) || reserve(&off, ws, &o_ws) || lm_mul(off, sizeof(float), &off))
		return lm_preerr("forward arena");
	float *mem = lm_alloc(off);
	if (!mem)
		return lm_preerr("forward arena");
	s->cfg = *cfg, s->B = B, s->T = T, s->mem = mem;
	s->x = mem + o_x, s->ln = mem + o_ln, s->q = mem + o_q, s->k = mem + o_k, s->v = mem + o_v;
	s->att = mem + o_att, s->ff = mem + o_ff, s->out = mem + o_out, s->nll = mem + o_nll;
	s->tgt = (int32_t *)(mem + o_tgt), s->ws = mem + o_ws, s->ws_n = ws;
	return 0;
}

void lm_fwd_free(struct lm_fwd *s)
{
	lm_free(s->mem);
	memset(s, 0, sizeof *s);
}

/* B sequences of T tokens fit the arena (rows and attention width) */
static int fits(const struct lm_fwd *s, size_t B, size_t T)
{
	if (!s->mem)
		return lm_seterr("forward arena not initialized");
	if (T > s->T || B * T > s->B * s->T || (T && B > (s->B * s->T) / T))
		return lm_seterr("batch %zu x %zu does not fit the arena made for %zu x %zu", B, T,
		                 s->B, s->T);
	return 0;
}

/* ---- embeddings ---- */

static int embed_at(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids, size_t B,
                    size_t T, size_t pos0, float *x)
{
	size_t N = B * T;
	if (!m->embed_tokens.data || !m->embed_pos.data)
		return lm_seterr("embeddings not loaded");
	if (m->project_in.data) {
		if (lm_embed_forward(s->out, ids, &m->embed_tokens, N) < 0 ||
		    lm_matmul_forward(x, s->out, &m->project_in, NULL, N, s->ws) < 0)
			return -1;
	} else if (m->cfg.word_embed_proj_dim != m->cfg.hidden_size) {
		return lm_seterr("project_in not loaded");
	} else if (lm_embed_forward(x, ids, &m->embed_tokens, N) < 0) {
		return -1;
	}
	return lm_pos_forward(x, &m->embed_pos, B, T, pos0);
}

int lm_forward_embed(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids, size_t B,
                     size_t T)
{
	if (fits(s, B, T) < 0)
		return -1;
	s->pad = NULL;
	return embed_at(s, m, ids, B, T, 0, s->x);
}

int lm_forward_embed_padded(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids,
                            const size_t *pad, size_t B, size_t T)
{
	size_t C = (size_t)s->cfg.hidden_size;
	if (fits(s, B, T) < 0)
		return -1;
	s->pad = NULL;
	for (size_t b = 0; b < B; b++) {
		size_t p = pad[b];
		if (p >= T)
			return lm_seterr("sequence %zu is all padding (%zu of %zu tokens)", b, p, T);
		memset(s->x + b * T * C, 0, p * C * sizeof *s->x);
		/* one sequence at a time: its real tokens at positions 0.. */
		if (embed_at(s, m, ids + b * T + p, 1, T - p, 0, s->x + (b * T + p) * C) < 0)
			return -1;
	}
	s->pad = pad;
	return 0;
}

/* ---- one decoder layer ---- */

static void hook(struct lm_fwd *s, int layer, enum lm_opt_kind w, const float *inp, size_t N,
                 size_t cols)
{
	if (s->hook)
		s->hook(s->hook_ctx, layer, w, inp, N, cols);
}

static int mat_is(const struct lm_mat *w, size_t rows, size_t cols)
{
	return w->rows == (int64_t)rows && w->cols == (int64_t)cols;
}

/* The end of both blocks: x += the block's last projection of inp (out_proj or fc2, into
 * s->q, dead by then), and post-LN's LayerNorm (ln_w, ln_b) of the sum. */
static int block_out(struct lm_fwd *s, float *x, const float *inp, const struct lm_mat *w,
                     const float *bias, const float *ln_w, const float *ln_b, size_t N)
{
	const struct lm_opt_config *c = &s->cfg;
	size_t C = (size_t)c->hidden_size;
	if (lm_matmul_forward(s->q, inp, w, bias, N, s->ws) < 0)
		return -1;
	lm_residual_forward(x, x, s->q, N * C);
	if (!c->pre_ln)
		lm_layernorm_forward(x, NULL, NULL, x, ln_w, ln_b, N, C, (float)c->ln_eps);
	return 0;
}

/* The layer on x [B,T,C]. With a cache (kc, vc: this layer's [B,kv_rows,C]) the new keys
 * and values go to rows past.. of each sequence and attention spans past + T keys. */
static int layer_run(struct lm_fwd *s, const struct lm_layer *l, int il, float *x, size_t B,
                     size_t T, float *kc, float *vc, size_t past, size_t kv_rows)
{
	const struct lm_opt_config *c = &s->cfg;
	size_t C = (size_t)c->hidden_size, F = (size_t)c->ffn_dim, NH = (size_t)c->num_heads;
	size_t HS = C / NH, N = B * T;
	float eps = (float)c->ln_eps;
	/* transformers multiplies the f32 projection by the Python float head_dim**-0.5 */
	float scale = (float)(1.0 / sqrt((double)HS));
	const float *ain = x, *fin = x, *kk = s->k, *vv = s->v;
	size_t Tk = T, kvr = T;

	if (!l->mem || !l->q.data || !l->k.data || !l->v.data || !l->o.data || !l->fc1.data ||
	    !l->fc2.data)
		return lm_seterr("layer %d is not loaded", il);
	if (!mat_is(&l->q, C, C) || !mat_is(&l->k, C, C) || !mat_is(&l->v, C, C) ||
	    !mat_is(&l->o, C, C) || !mat_is(&l->fc1, F, C) || !mat_is(&l->fc2, C, F))
		return lm_seterr("layer %d: weight shapes differ from the config", il);

	/* attention block: pre-LN h = x + Attn(LN1(x)); post-LN h = LN1(x + Attn(x)) */
	if (c->pre_ln) {
		lm_layernorm_forward(s->ln, NULL, NULL, x, l->ln1_w, l->ln1_b, N, C, eps);
		ain = s->ln;
	}
	hook(s, il, LM_T_Q_W, ain, N, C);
	hook(s, il, LM_T_K_W, ain, N, C);
	hook(s, il, LM_T_V_W, ain, N, C);
	if (lm_matmul_forward(s->q, ain, &l->q, l->q_b, N, s->ws) < 0 ||
	    lm_matmul_forward(s->k, ain, &l->k, l->k_b, N, s->ws) < 0 ||
	    lm_matmul_forward(s->v, ain, &l->v, l->v_b, N, s->ws) < 0)
		goto fail;
	lm_bias_scale(s->q, NULL, scale, N, C);
	if (kc) {
		for (size_t b = 0; b < B; b++) {
			memcpy(kc + (b * kv_rows + past) * C, s->k + b * T * C, T * C * sizeof *kc);
			memcpy(vc + (b * kv_rows + past) * C, s->v + b * T * C, T * C * sizeof *vc);
		}
		kk = kc, vv = vc, Tk = past + T, kvr = kv_rows;
	}
	if (s->pad && !kc) {
		if (lm_attention_forward_padded(s->att, s->q, s->k, s->v, B, T, s->pad, NH, HS, s->ws,
		                                s->ws_n) < 0)
			goto fail;
	} else if (lm_attention_forward(s->att, s->q, kk, vv, B, T, Tk, kvr, NH, HS, s->ws,
	                                s->ws_n) < 0) {
		goto fail;
	}
	hook(s, il, LM_T_O_W, s->att, N, C);
	/* q is dead now: it holds the out_proj and fc2 outputs */
	if (block_out(s, x, s->att, &l->o, l->o_b, l->ln1_w, l->ln1_b, N) < 0)
		goto fail;

	/* feed-forward block: pre-LN y = h + fc2(ReLU(fc1(LN2(h)))); post-LN y = LN2(h + …(h)) */
	if (c->pre_ln) {
		lm_layernorm_forward(s->ln, NULL, NULL, x, l->ln2_w, l->ln2_b, N, C, eps);
		fin = s->ln;
	}
	hook(s, il, LM_T_FC1_W, fin, N, C);
	if (lm_matmul_forward(s->ff, fin, &l->fc1, l->fc1_b, N, s->ws) < 0)
		goto fail;
	lm_relu_forward(s->ff, s->ff, N * F);
	hook(s, il, LM_T_FC2_W, s->ff, N, F);
	if (block_out(s, x, s->ff, &l->fc2, l->fc2_b, l->ln2_w, l->ln2_b, N) < 0)
		goto fail;
	return 0;
fail:
	return lm_preerr("layer %d", il);
}

int lm_forward_layer(struct lm_fwd *s, const struct lm_layer *l, int layer, float *x, size_t B,
                     size_t T)
{
	if (fits(s, B, T) < 0)
		return -1;
	return layer_run(s, l, layer, x, B, T, NULL, NULL, 0, 0);
}

/* ---- final LayerNorm, projections, head ---- */

int lm_forward_final(struct lm_fwd *s, const struct lm_model *m, const float *x, float *out,
                     size_t N)
{
	const struct lm_opt_config *c = &m->cfg;
	size_t C = (size_t)c->hidden_size;
	const float *h = x;

	if (!s->mem || N > s->B * s->T)
		return lm_seterr("final: %zu rows do not fit the arena", N);
	if (c->word_embed_proj_dim != c->hidden_size && !m->project_out.data)
		return lm_seterr("project_out not loaded");
	if (c->final_ln) {
		if (c->ln_affine && (!m->final_ln_w || !m->final_ln_b))
			return lm_seterr("final_layer_norm not loaded");
		float *dst = m->project_out.data ? s->ln : out;
		lm_layernorm_forward(dst, NULL, NULL, x, m->final_ln_w, m->final_ln_b, N, C,
		                     (float)c->ln_eps);
		h = dst;
	}
	if (m->project_out.data) {
		if (h == out) { /* in place: the matmul must not read what it writes */
			memcpy(s->ln, h, N * C * sizeof *h);
			h = s->ln;
		}
		return lm_matmul_forward(out, h, &m->project_out, NULL, N, s->ws);
	}
	if (h != out)
		memcpy(out, h, N * C * sizeof *out);
	return 0;
}

int lm_forward_head(struct lm_fwd *s, const struct lm_model *m, const float *xf,
                    const int32_t *targets, size_t N, float *nll, float *logits)
{
	if (!m->lm_head.data)
		return lm_seterr("lm_head not loaded");
	if (!mat_is(&m->lm_head, (size_t)m->cfg.vocab_size, (size_t)m->cfg.word_embed_proj_dim))
		return lm_seterr("lm_head: shape differs from the config");
	if (!s->mem)
		return lm_seterr("forward arena not initialized");
	/* more rows than the arena's are allowed, so that a caller can put all its rows
	 * through one pass over the head (an f16 or packed head converted once): the
	 * cross-entropy takes them in the chunks the workspace holds */
	if (targets)
		return lm_logits_ce_forward_ws(nll, logits, xf, &m->lm_head, targets, N, s->ws,
		                               s->ws_n);
	if (logits)
		return lm_matmul_forward(logits, xf, &m->lm_head, NULL, N,
		                         N <= s->B * s->T ? s->ws : NULL);
	return 0;
}

int lm_forward(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids,
               const int32_t *targets, size_t B, size_t T, float *nll, float *logits)
{
	size_t N = B * T;
	if (fits(s, B, T) < 0 || lm_model_check(m) < 0)
		return -1;
	s->pad = NULL;
	if (embed_at(s, m, ids, B, T, 0, s->x) < 0)
		return -1;
	for (int l = 0; l < m->cfg.num_layers; l++)
		if (layer_run(s, &m->layers[l], l, s->x, B, T, NULL, NULL, 0, 0) < 0)
			return -1;
	if (lm_forward_final(s, m, s->x, s->out, N) < 0)
		return -1;
	return lm_forward_head(s, m, s->out, targets, N, nll ? nll : s->nll, logits);
}

int lm_forward_loss(struct lm_fwd *s, const struct lm_model *m, const int32_t *ids, size_t B,
                    size_t T, double *loss)
{
	double sum = 0;
	size_t cnt = 0;
	if (T < 2)
		return lm_seterr("a loss needs sequences of at least 2 tokens");
	if (fits(s, B, T) < 0)
		return -1;
	for (size_t b = 0; b < B; b++)
		for (size_t t = 0; t < T; t++)
			s->tgt[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : -1;
	if (lm_forward(s, m, ids, s->tgt, B, T, s->nll, NULL) < 0)
		return -1;
	for (size_t i = 0; i < B * T; i++)
		if (s->tgt[i] >= 0)
			sum += s->nll[i], cnt++;
	*loss = sum / (double)cnt;
	return 0;
}

/* ---- KV cache ---- */

int lm_kv_init(struct lm_kv *kv, const struct lm_opt_config *cfg, size_t B, size_t cap)
{
	size_t n;
	memset(kv, 0, sizeof *kv);
	if (B == 0 || cap == 0)
		return lm_seterr("KV cache: empty (%zu x %zu)", B, cap);
	kv->B = B, kv->cap = cap, kv->L = (size_t)cfg->num_layers, kv->C = (size_t)cfg->hidden_size;
	if (lm_mul(kv->L, B, &n) < 0 || lm_mul(n, cap, &n) < 0 || lm_mul(n, kv->C, &n) < 0 ||
	    lm_mul(n, sizeof(float), &n) < 0)
		return lm_preerr("KV cache");
	kv->k = lm_alloc(n);
	kv->v = lm_alloc(n);
	if (!kv->k || !kv->v) {
		lm_kv_free(kv);
		return lm_seterr("KV cache: cannot allocate 2 x %zu bytes", n);
	}
	return 0;
}

void lm_kv_free(struct lm_kv *kv)
{
	lm_free(kv->k);
	lm_free(kv->v);
	memset(kv, 0, sizeof *kv);
}

/* what every decoder (lm_forward_decode, lm_decode_*) checks of its n new tokens */
static int decode_fits(struct lm_fwd *s, const struct lm_model *m, const struct lm_kv *kv,
                       size_t n)
{
	if (n == 0)
		return lm_seterr("decode: no tokens");
	if (kv->L != (size_t)m->cfg.num_layers || kv->C != (size_t)m->cfg.hidden_size)
		return lm_seterr("decode: the KV cache was made for another model shape");
	if (kv->len + n > kv->cap)
		return lm_seterr("decode: %zu + %zu tokens overflow the KV cache of %zu", kv->len, n,
		                 kv->cap);
	if (fits(s, kv->B, n) < 0)
		return -1;
	if (kv->len + n > s->T)
		return lm_seterr("decode: the arena (T = %zu) is narrower than the cache's %zu keys",
		                 s->T, kv->len + n);
	return 0;
}

int lm_forward_decode(struct lm_fwd *s, const struct lm_model *m, struct lm_kv *kv,
                      const int32_t *ids, size_t n, float *logits)
{
	size_t B = kv->B, C = kv->C, per_layer = kv->B * kv->cap * kv->C;

	if (decode_fits(s, m, kv, n) < 0)
		return -1;
	if (lm_model_check(m) < 0 || embed_at(s, m, ids, B, n, kv->len, s->x) < 0)
		return -1;
	for (int l = 0; l < m->cfg.num_layers; l++)
		if (layer_run(s, &m->layers[l], l, s->x, B, n, kv->k + (size_t)l * per_layer,
		              kv->v + (size_t)l * per_layer, kv->len, kv->cap) < 0)
			return -1;
	kv->len += n;
	if (!logits)
		return 0;
	/* only the last position of each sequence goes through the final layers and the head */
	for (size_t b = 0; b < B; b++)
		memcpy(s->att + b * C, s->x + (b * n + n - 1) * C, C * sizeof *s->att);
	if (lm_forward_final(s, m, s->att, s->out, B) < 0)
		return -1;
	return lm_forward_head(s, m, s->out, NULL, B, NULL, logits);
}

int lm_generate_greedy(const struct lm_model *m, const int32_t *prompt, size_t np, size_t nnew,
                       int stop_at_eos, int32_t *out, size_t *nout)
{
	struct lm_fwd s;
	struct lm_kv kv;
	size_t V = (size_t)m->cfg.vocab_size, cap = np + nnew, n = 0;
	float *logits = NULL;
	int r = -1;

	*nout = 0;
	if (np == 0)
		return lm_seterr("generate: empty prompt");
	if (cap > (size_t)m->cfg.max_positions)
		return lm_seterr("generate: %zu + %zu tokens exceed the model's %lld positions", np,
		                 nnew, (long long)m->cfg.max_positions);
	memset(&kv, 0, sizeof kv);
	if (lm_fwd_init(&s, &m->cfg, 1, cap) < 0)
		return -1;
	if (lm_kv_init(&kv, &m->cfg, 1, cap) < 0 || !(logits = lm_alloc(V * sizeof *logits)))
		goto out;
	memcpy(out, prompt, np * sizeof *out);
	n = np;
	if (nnew == 0) {
		r = 0;
		goto out;
	}
	if (lm_forward_decode(&s, m, &kv, prompt, np, logits) < 0)
		goto out;
	for (size_t i = 0;; i++) {
		int32_t tok = (int32_t)lm_argmax(logits, V);
		out[n++] = tok;
		if ((stop_at_eos && tok == m->cfg.eos) || i + 1 == nnew)
			break;
		if (lm_forward_decode(&s, m, &kv, &tok, 1, logits) < 0)
			goto out;
	}
	r = 0;
out:
	*nout = n;
	lm_free(logits);
	lm_kv_free(&kv);
	lm_fwd_free(&s);
	return r;
}

/* ---- decoding one layer at a time ---- */

static int decode_layer_ok(const struct lm_model *m, int layer)
{
	if (layer < 0 || layer >= m->cfg.num_layers)
		return lm_seterr("decode: layer %d outside 0..%lld", layer,
		                 (long long)m->cfg.num_layers - 1);
	return 0;
}

int lm_decode_embed(struct lm_fwd *s, const struct lm_model *m, const struct lm_kv *kv,
                    const int32_t *ids, size_t n)
{
	if (decode_fits(s, m, kv, n) < 0 || lm_model_check(m) < 0)
		return -1;
	s->pad = NULL;
	return embed_at(s, m, ids, kv->B, n, kv->len, s->x);
}

int lm_decode_layer(struct lm_fwd *s, const struct lm_model *m, struct lm_kv *kv, int layer,
                    float *x, size_t n)
{
	size_t per_layer = kv->B * kv->cap * kv->C;
	if (decode_fits(s, m, kv, n) < 0 || decode_layer_ok(m, layer) < 0)
		return -1;
	return layer_run(s, &m->layers[layer], layer, x, kv->B, n, kv->k + (size_t)layer * per_layer,
	                 kv->v + (size_t)layer * per_layer, kv->len, kv->cap);
}

int lm_decode_kv(struct lm_fwd *s, const struct lm_model *m, struct lm_kv *kv, int layer,
                 const float *x, size_t n)
{
	const struct lm_opt_config *c = &m->cfg;
	size_t B = kv->B, C = kv->C, N = B * n, per_layer = kv->B * kv->cap * kv->C;
	const float *ain = x;
	if (decode_fits(s, m, kv, n) < 0 || decode_layer_ok(m, layer) < 0)
		return -1;
	const struct lm_layer *l = &m->layers[layer];
	if (!l->mem || !l->k.data || !l->v.data)
		return lm_seterr("layer %d is not loaded", layer);
	if (!mat_is(&l->k, C, C) || !mat_is(&l->v, C, C))
		return lm_seterr("layer %d: weight shapes differ from the config", layer);
	/* the same input the layer's k_proj and v_proj would see (layer_run) */
	if (c->pre_ln) {
		lm_layernorm_forward(s->ln, NULL, NULL, x, l->ln1_w, l->ln1_b, N, C, (float)c->ln_eps);
		ain = s->ln;
	}
	if (lm_matmul_forward(s->k, ain, &l->k, l->k_b, N, s->ws) < 0 ||
	    lm_matmul_forward(s->v, ain, &l->v, l->v_b, N, s->ws) < 0)
		return lm_preerr("layer %d", layer);
	float *kc = kv->k + (size_t)layer * per_layer, *vc = kv->v + (size_t)layer * per_layer;
	for (size_t b = 0; b < B; b++) {
		memcpy(kc + (b * kv->cap + kv->len) * C, s->k + b * n * C, n * C * sizeof *kc);
		memcpy(vc + (b * kv->cap + kv->len) * C, s->v + b * n * C, n * C * sizeof *vc);
	}
	return 0;
}

int lm_kv_advance(struct lm_kv *kv, size_t n)
{
	if (kv->len + n > kv->cap)
		return lm_seterr("decode: %zu + %zu tokens overflow the KV cache of %zu", kv->len, n,
		                 kv->cap);
	kv->len += n;
	return 0;
}

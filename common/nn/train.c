/* train.c: training an OPT model in memory (see train.h). Compiled at -O3 (Makefile): the
 * adapters' elementwise passes over whole matrices and AdamW's loop want vectorizing. */
#include "train.h"
#include "backward.h"
#include "kernels.h"
#include "modelio.h"
#include "rng.h"
#include "util.h"

#include <cblas.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { WQ, WK, WV, WO, WF1, WF2, NLIN };
static const enum lm_opt_kind lin_kind[NLIN] = {
	LM_T_Q_W, LM_T_K_W, LM_T_V_W, LM_T_O_W, LM_T_FC1_W, LM_T_FC2_W,
};

/* What one layer's backward reads. "1" is the attention block's LayerNorm
 * (self_attn_layer_norm), "2" the feed-forward block's (the layer's final_layer_norm).
 *   pre-LN:  ln1 = LN1(x); q,k,v; att; res1 = x + drop(o(att)); fin = LN2(res1);
 *            ff = relu(fc1(fin)); X[l+1] = res1 + drop(fc2(ff))
 *   post-LN: q,k,v of x; att; res1 = x + drop(o(att)); fin = LN1(res1);
 *            ff = relu(fc1(fin)); res2 = fin + drop(fc2(ff)); X[l+1] = LN2(res2)
 * Buffers a backward does not read point at shared scratch. */
struct lm_tacts {
	float *ln1, *q, *k, *v, *att, *res1, *fin, *ff, *res2;
	float *mean1, *rstd1, *mean2, *rstd2;
	uint8_t *ffmask;   /* ReLU's positive set when ff itself is not kept */
};

const char *lm_lora_name(enum lm_lora_kind k)
{
	switch (k) {
	case LM_LORA_STD: return "lora";
	case LM_LORA_MASK: return "mask-lora";
	case LM_LORA_SCALE: return "scale-lora";
	default: return "none";
	}
}

static int lin_index(enum lm_opt_kind k)
{
	for (int i = 0; i < NLIN; i++)
		if (lin_kind[i] == k)
			return i;
	return -1;
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* the training view of a matrix tensor, NULL for vectors */
static struct lm_tmat *tmat_of(struct lm_train *tr, enum lm_opt_kind k, int layer)
{
	int i = lin_index(k);
	if (i >= 0)
		return layer >= 0 && layer < tr->cfg.num_layers ? &tr->lin[(size_t)layer * NLIN + i] : NULL;
	switch (k) {
	case LM_T_EMBED_TOKENS: return &tr->emb;
	case LM_T_EMBED_POS: return &tr->pos;
	case LM_T_PROJECT_IN: return &tr->pin;
	case LM_T_PROJECT_OUT: return &tr->pout;
	case LM_T_LM_HEAD: return tr->head;
	default: return NULL;
	}
}

static int needs_dw(const struct lm_tmat *t) { return t->grad || t->lora; }

/* ---- selection ---- */

static int selected(const struct lm_train_opts *o, const struct lm_opt_tensor *t)
{
	if (o->layer >= 0 && t->layer != o->layer)
		return 0;
	if (o->perp && (lm_kind_is_bias(t->kind) || lm_kind_is_ln(t->kind)))
		return 1;
	if (o->full && (t->layer >= 0 || t->kind == LM_T_FINAL_LN_W || t->kind == LM_T_FINAL_LN_B))
		return 1;
	for (size_t i = 0; i < o->nglobs; i++)
		if (fnmatch(o->globs[i], t->name, 0) == 0)
			return 1;
	return 0;
}

/* does this matrix get a LoRA adapter? */
static int adapted(const struct lm_train *tr, const struct lm_opt_tensor *t)
{
	const struct lm_train_opts *o = &tr->o;
	if (o->layer >= 0 && t->layer != o->layer)
		return 0;
	if (o->lora != LM_LORA_NONE && lin_index(t->kind) >= 0)
		return 1;
	return o->lora_head && (tr->cfg.tied ? t->kind == LM_T_EMBED_TOKENS : t->kind == LM_T_LM_HEAD);
}

/* ---- parameters ---- */

static struct lm_tparam *add_param(struct lm_train *tr, const char *name, const char *suffix,
                                   enum lm_opt_kind kind, int layer, char lora, float *p,
                                   size_t n, int decay)
{
	tr->par = xrealloc(tr->par, (tr->npar + 1) * sizeof *tr->par);
	struct lm_tparam *q = &tr->par[tr->npar++];
	memset(q, 0, sizeof *q);
	snprintf(q->name, sizeof q->name, "%s%s", name, suffix);
	q->kind = kind, q->layer = layer, q->lora = lora, q->p = p, q->n = n, q->decay = decay;
	tr->nfloats += n;
	return q;
}

/* A packed (quantized) weight can stay frozen (the backward pass reads it tile by tile),
 * but not train: the result would have to be quantized again, off the grid lm-quant chose */
static int quantized(const char *name, enum lm_dtype dt)
{
	return lm_seterr("tensor '%s' is quantized (%s): it can only be frozen; train before "
	                 "lm-quant", name, lm_dtype_name(dt));
}

/* the model's matrix becomes an f32 buffer of our own (its zeros frozen by a mask) */
static int make_trainable(struct lm_train *tr, struct lm_tmat *t, const char *name)
{
	struct lm_mat *mt = t->mt;
	size_t n = (size_t)mt->rows * (size_t)mt->cols, zeros = 0;
	if (!mt->data)
		return lm_seterr("tensor '%s' is not loaded", name);
	if (lm_dtype_is_packed(mt->dtype))
		return quantized(name, mt->dtype);
	if (!(t->own = lm_alloc(n * sizeof *t->own)))
		return lm_preerr("tensor '%s'", name);
	if (lm_to_f32(t->own, mt->data, mt->dtype, n) < 0)
		return lm_preerr("tensor '%s'", name);
	for (size_t i = 0; i < n; i++)
		zeros += t->own[i] == 0.0f;
	if (zeros) {
		if (!(t->mask = lm_alloc(n)))
			return lm_preerr("tensor '%s'", name);
		for (size_t i = 0; i < n; i++)
			t->mask[i] = t->own[i] != 0.0f;
	}
	t->orig = mt->data, t->orig_dt = mt->dtype;
	mt->data = t->own, mt->dtype = LM_F32;
	t->eff = *mt;
	if (mt == &tr->m->embed_tokens && tr->cfg.tied)
		tr->m->lm_head = *mt;
	return 0;
}

/* LoRA factors' initial values (see train.h) */
static void lora_init(struct lm_train *tr, struct lm_tmat *t, struct lm_rng *rng)
{
	struct lm_tparam *A = &tr->par[t->ia], *B = &tr->par[t->ib];
	size_t r = t->r, IN = (size_t)t->mt->cols, OUT = (size_t)t->mt->rows;
	double bound = 1.0 / sqrt((double)IN);
	for (size_t i = 0; i < r * IN; i++)
		A->p[i] = (float)(bound * (2.0 * lm_rng_uniform(rng) - 1.0));
	memset(B->p, 0, OUT * r * sizeof *B->p);
	if (t->lora == LM_LORA_SCALE) {
		for (size_t j = 0; j < IN; j++)
			A->p[j] = 1.0f;
		for (size_t o = 0; o < OUT; o++)
			B->p[o * r] = 1.0f;
	}
}

/* W's row i as f32 into tr->row (or W itself when f32); a packed W (QLoRA) is decoded */
static const float *base_row(struct lm_train *tr, const struct lm_tmat *t, size_t i)
{
	const void *data = t->orig ? t->orig : t->mt->data;
	enum lm_dtype dt = t->orig ? t->orig_dt : t->mt->dtype;
	size_t IN = (size_t)t->mt->cols;
	if (dt == LM_F32)
		return (const float *)data + i * IN;
	if (lm_dtype_is_packed(dt)) {
		struct lm_mat w = {.dtype = dt, .rows = t->mt->rows, .cols = t->mt->cols, .data = (void *)data};
		lm_mat_rows_f32(tr->row, &w, i, 1);
		return tr->row;
	}
	lm_rows_to_f32(tr->row, (const char *)data + i * IN * lm_dtype_size(dt), dt, IN);
	return tr->row;
}

/* W_eff from W and the factors (train.h); keep_zeros also masks the standard kind */
static void lora_weff(struct lm_train *tr, struct lm_tmat *t, int keep_zeros)
{
	const float *A = tr->par[t->ia].p, *B = tr->par[t->ib].p;
	size_t IN = (size_t)t->mt->cols, OUT = (size_t)t->mt->rows, r = t->r;
	float *P = t->own;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)OUT, (int)IN, (int)r, t->s, B,
	            (int)r, A, (int)IN, 0.0f, P, (int)IN);
	for (size_t o = 0; o < OUT; o++) {
		const float *w = base_row(tr, t, o);
		float *p = P + o * IN;
		switch (t->lora) {
		case LM_LORA_STD:
			if (keep_zeros)
				for (size_t i = 0; i < IN; i++)
					p[i] = w[i] != 0.0f ? w[i] + p[i] : w[i];
			else
				for (size_t i = 0; i < IN; i++)
					p[i] = w[i] + p[i];
			break;
		case LM_LORA_MASK:
			for (size_t i = 0; i < IN; i++)
				p[i] = w[i] != 0.0f ? w[i] + p[i] : w[i];
			break;
		case LM_LORA_SCALE:
			for (size_t i = 0; i < IN; i++)
				p[i] = w[i] * p[i];
			break;
		default:
			break;
		}
	}
}

/* form every adapted matrix's W_eff for the current factors */
static void lora_prepare(struct lm_train *tr)
{
	size_t L = (size_t)tr->cfg.num_layers;
	for (size_t i = 0; i < L * NLIN; i++)
		if (tr->lin[i].lora)
			lora_weff(tr, &tr->lin[i], 0);
	if (tr->head->lora)
		lora_weff(tr, tr->head, 0);
}

/* dA, dB from G = dL/dW_eff (G is changed) */
static void lora_grads(struct lm_train *tr, struct lm_tmat *t, float *G)
{
	struct lm_tparam *A = &tr->par[t->ia], *B = &tr->par[t->ib];
	size_t IN = (size_t)t->mt->cols, OUT = (size_t)t->mt->rows, r = t->r;
	if (t->lora == LM_LORA_MASK || t->lora == LM_LORA_SCALE)
		for (size_t o = 0; o < OUT; o++) {
			const float *w = base_row(tr, t, o);
			float *g = G + o * IN;
			if (t->lora == LM_LORA_MASK)
				for (size_t i = 0; i < IN; i++)
					g[i] = w[i] != 0.0f ? g[i] : 0.0f;
			else
				for (size_t i = 0; i < IN; i++)
					g[i] *= w[i];
		}
	/* W_eff = s B A (+ W): dB = s G A^T [OUT, r], dA = s B^T G [r, IN] */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)OUT, (int)r, (int)IN, t->s, G,
	            (int)IN, A->p, (int)IN, 1.0f, B->g, (int)r);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)r, (int)IN, (int)OUT, t->s, B->p,
	            (int)r, G, (int)IN, 1.0f, A->g, (int)IN);
}

/* ---- arena ---- */

struct plan {
	char *base;
	size_t off;
};

static void *pl(struct plan *p, size_t n, size_t size)
{
	size_t o = (p->off + LM_ALIGN - 1) / LM_ALIGN * LM_ALIGN;
	p->off = o + n * size;
	return p->base ? p->base + o : NULL;
}

#define PLF(p, n) ((float *)pl((p), (n), sizeof(float)))

static void plan_arena(struct lm_train *tr, struct plan *p)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t N = tr->B * tr->T, C = (size_t)c->hidden_size, E = (size_t)c->word_embed_proj_dim;
	size_t F = (size_t)c->ffn_dim, L = (size_t)c->num_layers, CE = max_sz(C, E);
	int unstored = 0;

	for (size_t l = 0; l < L; l++)
		if ((int)l < tr->lowest || (tr->o.layer >= 0 && (int)l != tr->o.layer))
			unstored = 1;
	/* the backward's buffers double as the forward's scratch: an activation that lives in
	 * scratch is one no backward reads (a frozen linear's input, a ReLU output kept as a
	 * mask, the layers below the lowest one that trains) */
	tr->dres = PLF(p, N * C), tr->dt1 = PLF(p, N * C), tr->dt2 = PLF(p, N * C);
	tr->dq = PLF(p, N * C), tr->dk = PLF(p, N * C), tr->dv = PLF(p, N * C);
	tr->dff = PLF(p, N * F), tr->dxf = PLF(p, N * CE), tr->demb = PLF(p, N * E);
	float *s_ln = tr->dq, *s_att = tr->dk, *s_fin = tr->dv, *s_ff = tr->dff;
	float *s_q = NULL, *s_k = NULL, *s_v = NULL, *s_r1 = NULL, *s_r2 = NULL;
	if (unstored) {
		s_q = PLF(p, N * C), s_k = PLF(p, N * C), s_v = PLF(p, N * C), s_r1 = PLF(p, N * C);
		s_r2 = PLF(p, N * C);
	}
	for (size_t l = 0; l <= L; l++)
		tr->X[l] = PLF(p, N * C);
	for (size_t l = 0; l < L; l++) {
		struct lm_tacts *a = &tr->acts[l];
		const struct lm_tmat *w = &tr->lin[l * NLIN];
		int st = (int)l >= tr->lowest && (tr->o.layer < 0 || (int)l == tr->o.layer);
		a->mean1 = PLF(p, N), a->rstd1 = PLF(p, N), a->mean2 = PLF(p, N), a->rstd2 = PLF(p, N);
		a->ln1 = c->pre_ln ? (st && (needs_dw(&w[WQ]) || needs_dw(&w[WK]) || needs_dw(&w[WV]))
		                          ? PLF(p, N * C) : s_ln) : NULL;
		a->q = st ? PLF(p, N * C) : s_q;
		a->k = st ? PLF(p, N * C) : s_k;
		a->v = st ? PLF(p, N * C) : s_v;
		a->att = st && needs_dw(&w[WO]) ? PLF(p, N * C) : s_att;
		a->res1 = st ? PLF(p, N * C) : s_r1;
		a->fin = st && needs_dw(&w[WF1]) ? PLF(p, N * C) : s_fin;
		a->ff = st && needs_dw(&w[WF2]) ? PLF(p, N * F) : s_ff;
		a->ffmask = st && !needs_dw(&w[WF2]) ? pl(p, N * F, 1) : NULL;
		a->res2 = c->pre_ln ? NULL : st ? PLF(p, N * C) : s_r2;
	}
	tr->emb_out = PLF(p, N * E);
	tr->lnf = PLF(p, N * C), tr->lnf_mean = PLF(p, N), tr->lnf_rstd = PLF(p, N);
	tr->xf = PLF(p, N * CE), tr->tmp = PLF(p, N * C);
	tr->nll = PLF(p, N);
	tr->ids = pl(p, N, sizeof(int32_t)), tr->tgt = pl(p, N, sizeof(int32_t));

	size_t ws = lm_matmul_ws_max((int64_t)C, (int64_t)C);
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)F, (int64_t)C));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)C, (int64_t)F));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)C, (int64_t)E));
	ws = max_sz(ws, lm_matmul_ws_max((int64_t)E, (int64_t)C));
	tr->ws_mm = PLF(p, ws);
	int nt = lm_threads();
	tr->ws_att_n = lm_attention_ws(tr->T, tr->T, nt);
	tr->ws_attb_n = lm_attention_bwd_ws(tr->T, nt);
	tr->ws_att = PLF(p, tr->ws_att_n), tr->ws_attb = PLF(p, tr->ws_attb_n);
	tr->ws_ce_n = tr->o.layer >= 0 ? 0 : lm_ce_bwd_ws(N, (size_t)c->vocab_size);
	tr->ws_ce = PLF(p, tr->ws_ce_n);
	size_t g = 0, rowmax = max_sz(max_sz(C, E), F);
	for (size_t i = 0; i < L * NLIN; i++)
		if (tr->lin[i].lora)
			g = max_sz(g, (size_t)(tr->lin[i].mt->rows * tr->lin[i].mt->cols));
	tr->Gs = g ? PLF(p, g) : NULL;
	tr->row = PLF(p, rowmax);
}

/* ---- init / free ---- */

static int check_rank(const struct lm_train *tr, const struct lm_opt_tensor *t)
{
	int64_t lo = t->shape[0] < t->shape[1] ? t->shape[0] : t->shape[1];
	if (tr->o.rank < 1)
		return lm_seterr("LoRA rank %d: must be at least 1", tr->o.rank);
	if (tr->o.rank > lo)
		return lm_seterr("LoRA rank %d exceeds the smaller side of the %lld x %lld matrix '%s'",
		                 tr->o.rank, (long long)t->shape[0], (long long)t->shape[1], t->name);
	return 0;
}

static int train_init(struct lm_train *tr, struct lm_model *m, const struct lm_train_opts *o,
                      size_t B, size_t T)
{
	const struct lm_opt_config *c = &m->cfg;
	size_t nt, L = (size_t)c->num_layers;
	struct lm_opt_tensor *ts;
	int r = -1;

	tr->m = m, tr->cfg = *c, tr->o = *o, tr->B = B, tr->T = T;
	tr->head = c->tied ? &tr->emb : &tr->head_own;
	tr->lin = xcalloc(L * NLIN, sizeof *tr->lin);
	tr->vgrad = xcalloc((L + 1) * LM_T_KIND_COUNT, sizeof *tr->vgrad);
	tr->acts = xcalloc(L, sizeof *tr->acts);
	tr->X = xcalloc(L + 1, sizeof *tr->X);
	if (B == 0 || T < 2)
		return lm_seterr("training needs batches of sequences of at least 2 tokens");
	if (T > (size_t)c->max_positions)
		return lm_seterr("sequence length %zu exceeds the model's %lld positions", T,
		                 (long long)c->max_positions);
	if (o->layer >= (int)L)
		return lm_seterr("layer %d is outside the model", o->layer);
	if (o->dropout < 0 || o->dropout >= 1)
		return lm_seterr("dropout %g is not in [0, 1)", o->dropout);
	for (size_t l = 0; l < L; l++)
		for (int i = 0; i < NLIN; i++) {
			struct lm_tmat *t = &tr->lin[l * NLIN + i];
			t->mt = lm_model_mat(m, lin_kind[i], (int)l);
			t->eff = *t->mt, t->ia = t->ib = -1;
		}
	struct lm_tmat *g[] = {&tr->emb, &tr->pos, &tr->pin, &tr->pout, &tr->head_own};
	enum lm_opt_kind gk[] = {LM_T_EMBED_TOKENS, LM_T_EMBED_POS, LM_T_PROJECT_IN, LM_T_PROJECT_OUT,
	                         LM_T_LM_HEAD};
	for (int i = 0; i < 5; i++) {
		g[i]->mt = lm_model_mat(m, gk[i], -1);
		g[i]->eff = *g[i]->mt, g[i]->ia = g[i]->ib = -1;
	}

	ts = lm_opt_tensors(c, &nt);
	for (size_t gi = 0; gi < o->nglobs; gi++) {
		size_t hit = 0;
		for (size_t i = 0; i < nt; i++)
			hit += fnmatch(o->globs[gi], ts[i].name, 0) == 0;
		if (!hit) {
			lm_seterr("--train '%s' matches no tensor of the model", o->globs[gi]);
			goto out;
		}
	}
	/* the table, model order; LoRA factors right after their matrix */
	for (size_t i = 0; i < nt; i++) {
		const struct lm_opt_tensor *t = &ts[i];
		int sel = selected(o, t), ad = adapted(tr, t);
		struct lm_tmat *tm = tmat_of(tr, t->kind, t->layer);
		if (sel && ad) {
			lm_seterr("tensor '%s' would be both trained and adapted: choose one", t->name);
			goto out;
		}
		if (sel && t->ndim == 1) {
			float **v = lm_model_vec(m, t->kind, t->layer);
			if (!v || !*v) {
				lm_seterr("tensor '%s' is not loaded", t->name);
				goto out;
			}
			add_param(tr, t->name, "", t->kind, t->layer, 0, *v, (size_t)t->shape[0], 0);
		} else if (sel) {
			if (make_trainable(tr, tm, t->name) < 0)
				goto out;
			struct lm_tparam *q = add_param(tr, t->name, "", t->kind, t->layer, 0, tm->own,
			                                (size_t)(t->shape[0] * t->shape[1]), 1);
			q->mask = tm->mask;
		}
		if (ad) {
			if (check_rank(tr, t) < 0)
				goto out;
			if (!tm->mt->data) {
				lm_seterr("tensor '%s' is not loaded", t->name);
				goto out;
			}
			if (lm_dtype_is_packed(tm->mt->dtype) && !o->lora_packed) {
				quantized(t->name, tm->mt->dtype);
				goto out;
			}
			int head = lin_index(t->kind) < 0;
			tm->lora = head ? LM_LORA_STD : o->lora;
			tm->r = (size_t)o->rank;
			tm->s = tm->lora == LM_LORA_SCALE ? 1.0f : (float)(o->alpha / o->rank);
			tm->ia = (long)tr->npar;
			add_param(tr, t->name, ".lora_A", t->kind, t->layer, 'A', NULL, tm->r * (size_t)t->shape[1], 1);
			tm->ib = (long)tr->npar;
			add_param(tr, t->name, ".lora_B", t->kind, t->layer, 'B', NULL, (size_t)t->shape[0] * tm->r, 1);
		}
	}
	if (tr->npar == 0) {
		lm_seterr("nothing to train: choose --perp, --full, --train or a LoRA kind");
		goto out;
	}

	/* one allocation each for gradients, moments and the adapters' values */
	size_t nl = 0, off = 0, ol = 0;
	for (size_t i = 0; i < tr->npar; i++)
		if (tr->par[i].lora)
			nl += tr->par[i].n;
	tr->gmem = lm_alloc(tr->nfloats * sizeof(float));
	tr->mmem = lm_alloc(tr->nfloats * sizeof(float));
	tr->vmem = lm_alloc(tr->nfloats * sizeof(float));
	tr->lmem = nl ? lm_alloc(nl * sizeof(float)) : NULL;
	if (!tr->gmem || !tr->mmem || !tr->vmem || (nl && !tr->lmem)) {
		lm_preerr("training buffers for %zu parameters", tr->nfloats);
		goto out;
	}
	memset(tr->gmem, 0, tr->nfloats * sizeof(float));
	memset(tr->mmem, 0, tr->nfloats * sizeof(float));
	memset(tr->vmem, 0, tr->nfloats * sizeof(float));
	for (size_t i = 0; i < tr->npar; i++) {
		struct lm_tparam *q = &tr->par[i];
		q->g = tr->gmem + off, q->m = tr->mmem + off, q->v = tr->vmem + off;
		off += q->n;
		if (q->lora) {
			q->p = tr->lmem + ol;
			ol += q->n;
			continue;
		}
		struct lm_tmat *tm = tmat_of(tr, q->kind, q->layer);
		if (tm)
			tm->grad = q->g;
		else
			tr->vgrad[(size_t)(q->layer < 0 ? (int)L : q->layer) * LM_T_KIND_COUNT + q->kind] = q->g;
	}

	/* adapters: initial factors, W_eff buffers, the head's own dL/dW_eff */
	struct lm_rng rng;
	lm_rng_seed(&rng, o->seed ^ 0x4c6f5241ull); /* "LoRA": its own stream */
	for (size_t i = 0; i < L * NLIN + 1; i++) {
		struct lm_tmat *tm = i < L * NLIN ? &tr->lin[i] : tr->head;
		size_t n = (size_t)(tm->mt->rows * tm->mt->cols);
		if (!tm->lora)
			continue;
		lora_init(tr, tm, &rng);
		if (!(tm->own = lm_alloc(n * sizeof(float)))) {
			lm_preerr("LoRA");
			goto out;
		}
		tm->eff = (struct lm_mat){.dtype = LM_F32, .rows = tm->mt->rows, .cols = tm->mt->cols, .data = tm->own};
		if (i == L * NLIN && !(tm->G = lm_alloc(n * sizeof(float)))) {
			lm_preerr("LoRA");
			goto out;
		}
	}

	/* how far down the backward goes */
	tr->lowest = (int)L;
	for (size_t i = 0; i < tr->npar; i++) {
		const struct lm_tparam *q = &tr->par[i];
		if (q->layer >= 0 && q->layer < tr->lowest)
			tr->lowest = q->layer;
		if (q->kind == LM_T_EMBED_TOKENS || q->kind == LM_T_EMBED_POS || q->kind == LM_T_PROJECT_IN)
			tr->embed_grad = 1, tr->lowest = 0;
	}
	if (o->layer >= 0)
		tr->lowest = o->layer, tr->embed_grad = 0;

	/* the cross-entropy reads an f32 head */
	struct lm_mat *hm = &tr->head->eff;
	if (o->layer < 0 && hm->dtype != LM_F32) {
		size_t n = (size_t)(hm->rows * hm->cols);
		if (!(tr->head32 = lm_alloc(n * sizeof(float))) ||
		    lm_mat_rows_f32(tr->head32, hm, 0, (size_t)hm->rows) < 0) {
			lm_preerr("lm_head as f32");
			goto out;
		}
	}

	struct plan p = {NULL, 0};
	plan_arena(tr, &p);
	tr->arena_bytes = p.off;
	if (!(tr->arena = lm_alloc(p.off))) {
		lm_preerr("activations for %zu x %zu tokens", B, T);
		goto out;
	}
	p.base = tr->arena, p.off = 0;
	plan_arena(tr, &p);
	r = 0;
out:
	free(ts);
	return r;
}

int lm_train_init(struct lm_train *tr, struct lm_model *m, const struct lm_train_opts *o,
                  size_t B, size_t T)
{
	memset(tr, 0, sizeof *tr);
	if (train_init(tr, m, o, B, T) < 0) {
		lm_train_free(tr);
		return -1;
	}
	return 0;
}

static void tmat_free(struct lm_train *tr, struct lm_tmat *t)
{
	if (t->orig) {
		t->mt->data = t->orig, t->mt->dtype = t->orig_dt;
		if (t->mt == &tr->m->embed_tokens && tr->cfg.tied)
			tr->m->lm_head = *t->mt;
	}
	lm_free(t->own);
	lm_free(t->mask);
	lm_free(t->G);
}

void lm_train_free(struct lm_train *tr)
{
	if (tr->lin)
		for (size_t i = 0; i < (size_t)tr->cfg.num_layers * NLIN; i++)
			tmat_free(tr, &tr->lin[i]);
	if (tr->m) {
		tmat_free(tr, &tr->emb), tmat_free(tr, &tr->pos), tmat_free(tr, &tr->pin);
		tmat_free(tr, &tr->pout), tmat_free(tr, &tr->head_own);
	}
	free(tr->lin), free(tr->vgrad), free(tr->acts), free(tr->X), free(tr->par);
	lm_free(tr->gmem), lm_free(tr->mmem), lm_free(tr->vmem), lm_free(tr->lmem);
	lm_free(tr->head32), lm_free(tr->arena);
	memset(tr, 0, sizeof *tr);
}

size_t lm_train_count(const struct lm_train *tr) { return tr->nfloats; }

size_t lm_train_bytes(const struct lm_train *tr)
{
	return tr->arena_bytes + 3 * tr->nfloats * sizeof(float);
}

/* ---- forward ---- */

static float *vgrad(struct lm_train *tr, int layer, enum lm_opt_kind k)
{
	return tr->vgrad[(size_t)(layer < 0 ? tr->cfg.num_layers : layer) * LM_T_KIND_COUNT + k];
}

static int embed_fwd(struct lm_train *tr, size_t B, size_t T)
{
	size_t N = B * T;
	float *x0 = tr->X[0];
	if (tr->pin.mt->data) {
		if (lm_embed_forward(tr->emb_out, tr->ids, &tr->emb.eff, N) < 0 ||
		    lm_matmul_forward(x0, tr->emb_out, &tr->pin.eff, NULL, N, tr->ws_mm) < 0)
			return -1;
	} else if (lm_embed_forward(x0, tr->ids, &tr->emb.eff, N) < 0) {
		return -1;
	}
	return lm_pos_forward(x0, &tr->pos.eff, B, T, 0);
}

static int layer_fwd(struct lm_train *tr, int l, size_t B, size_t T, int train)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t C = (size_t)c->hidden_size, F = (size_t)c->ffn_dim, NH = (size_t)c->num_heads;
	size_t HS = C / NH, N = B * T;
	float eps = (float)c->ln_eps, scale = (float)(1.0 / sqrt((double)HS));
	float p = train ? (float)tr->o.dropout : 0.0f;
	const struct lm_layer *ly = &tr->m->layers[l];
	struct lm_tacts *a = &tr->acts[l];
	struct lm_tmat *w = &tr->lin[(size_t)l * NLIN];
	float *x = tr->X[l], *y = tr->X[l + 1], *h;
	const float *ain = x;

	if (!ly->mem)
		return lm_seterr("layer %d is not loaded", l);
	if (c->pre_ln) {
		lm_layernorm_forward(a->ln1, a->mean1, a->rstd1, x, ly->ln1_w, ly->ln1_b, N, C, eps);
		ain = a->ln1;
	}
	if (lm_matmul_forward(a->q, ain, &w[WQ].eff, ly->q_b, N, tr->ws_mm) < 0 ||
	    lm_matmul_forward(a->k, ain, &w[WK].eff, ly->k_b, N, tr->ws_mm) < 0 ||
	    lm_matmul_forward(a->v, ain, &w[WV].eff, ly->v_b, N, tr->ws_mm) < 0)
		return lm_preerr("layer %d", l);
	lm_bias_scale(a->q, NULL, scale, N, C);
	if (lm_attention_forward(a->att, a->q, a->k, a->v, B, T, T, T, NH, HS, tr->ws_att,
	                         tr->ws_att_n) < 0 ||
	    lm_matmul_forward(tr->tmp, a->att, &w[WO].eff, ly->o_b, N, tr->ws_mm) < 0)
		return lm_preerr("layer %d", l);
	lm_dropout(tr->tmp, N * C, p, lm_dropout_key(tr->o.seed, tr->step, l, 0));
	lm_residual_forward(a->res1, x, tr->tmp, N * C);
	if (c->pre_ln) {
		lm_layernorm_forward(a->fin, a->mean2, a->rstd2, a->res1, ly->ln2_w, ly->ln2_b, N, C, eps);
		h = a->res1;
	} else {
		lm_layernorm_forward(a->fin, a->mean1, a->rstd1, a->res1, ly->ln1_w, ly->ln1_b, N, C, eps);
		h = a->fin;
	}
	if (lm_matmul_forward(a->ff, a->fin, &w[WF1].eff, ly->fc1_b, N, tr->ws_mm) < 0)
		return lm_preerr("layer %d", l);
	lm_relu_forward(a->ff, a->ff, N * F);
	if (a->ffmask)
		lm_relu_mask(a->ffmask, a->ff, N * F);
	if (lm_matmul_forward(tr->tmp, a->ff, &w[WF2].eff, ly->fc2_b, N, tr->ws_mm) < 0)
		return lm_preerr("layer %d", l);
	lm_dropout(tr->tmp, N * C, p, lm_dropout_key(tr->o.seed, tr->step, l, 1));
	if (c->pre_ln) {
		lm_residual_forward(y, h, tr->tmp, N * C);
	} else {
		lm_residual_forward(a->res2, h, tr->tmp, N * C);
		lm_layernorm_forward(y, a->mean2, a->rstd2, a->res2, ly->ln2_w, ly->ln2_b, N, C, eps);
	}
	return 0;
}

/* a residual stream h [N,C] (X[L], or an exit's) -> the head's input (returned): final
 * LayerNorm, project_out; keeps in lnf/lnf_mean/lnf_rstd/xf what output_bwd reads */
static const float *final_fwd(struct lm_train *tr, const float *h, size_t N)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t C = (size_t)c->hidden_size;
	if (c->final_ln) {
		lm_layernorm_forward(tr->lnf, tr->lnf_mean, tr->lnf_rstd, h, tr->m->final_ln_w,
		                     tr->m->final_ln_b, N, C, (float)c->ln_eps);
		h = tr->lnf;
	}
	if (tr->pout.mt->data) {
		if (lm_matmul_forward(tr->xf, h, &tr->pout.eff, NULL, N, tr->ws_mm) < 0)
			return NULL;
		h = tr->xf;
	}
	return h;
}

static int check_batch(const struct lm_train *tr, size_t B, size_t T)
{
	if (!tr->arena)
		return lm_seterr("training buffers not made");
	if (T < 2 || T > tr->T || B == 0 || B * T > tr->B * tr->T)
		return lm_seterr("batch %zu x %zu does not fit the buffers made for %zu x %zu", B, T,
		                 tr->B, tr->T);
	return 0;
}

static int forward(struct lm_train *tr, const int32_t *ids, size_t B, size_t T, int train)
{
	size_t N = B * T;
	if (check_batch(tr, B, T) < 0)
		return -1;
	memcpy(tr->ids, ids, N * sizeof *ids);
	for (size_t b = 0; b < B; b++)
		for (size_t t = 0; t < T; t++)
			tr->tgt[b * T + t] = t + 1 < T ? ids[b * T + t + 1] : -1;
	lora_prepare(tr);
	if (embed_fwd(tr, B, T) < 0)
		return -1;
	for (int l = 0; l < tr->cfg.num_layers; l++)
		if (layer_fwd(tr, l, B, T, train) < 0)
			return -1;
	return 0;
}

static const float *head_f32(const struct lm_train *tr)
{
	return tr->head32 ? tr->head32 : (const float *)tr->head->eff.data;
}

int lm_train_eval(struct lm_train *tr, const int32_t *ids, size_t B, size_t T, double *nll_sum,
                  size_t *count)
{
	size_t N = B * T, V = (size_t)tr->cfg.vocab_size, E = (size_t)tr->cfg.word_embed_proj_dim;
	const float *xf;
	if (tr->o.layer >= 0)
		return lm_seterr("internal: a whole-model loss on a layer-wise training");
	if (forward(tr, ids, B, T, 0) < 0 || !(xf = final_fwd(tr, tr->X[tr->cfg.num_layers], N)))
		return -1;
	if (lm_logits_ce_backward(tr->nll, NULL, NULL, xf, head_f32(tr), tr->tgt, N, V, E, 1.0f,
	                          tr->ws_ce, tr->ws_ce_n) < 0)
		return -1;
	double s = 0;
	for (size_t i = 0; i < N; i++)
		s += tr->nll[i];
	*nll_sum = s;
	*count = B * (T - 1);
	return 0;
}

/* ---- backward ---- */

/* y = x W^T + b: dinp (+)= dout W (when dinp), dW and db when they train, dW_eff -> LoRA */
static int linear_bwd(struct lm_train *tr, struct lm_tmat *t, float *gb, const float *dout,
                      const float *inp, float *dinp, size_t N, int acc)
{
	size_t IN = (size_t)t->mt->cols, OUT = (size_t)t->mt->rows;
	if (dinp && lm_matmul_backward_inp(dinp, dout, &t->eff, N, acc, tr->ws_mm) < 0)
		return -1;
	if (t->grad || gb)
		lm_matmul_backward_w(t->grad, gb, dout, inp, N, IN, OUT, 1);
	if (t->lora) {
		lm_matmul_backward_w(tr->Gs, NULL, dout, inp, N, IN, OUT, 0);
		lora_grads(tr, t, tr->Gs);
	}
	return 0;
}

/* The gradient through a dropout of rate p: d itself when p is 0, else d copied to tmp
 * with the forward's mask (the same key) applied; d is kept for the residual path. */
static float *dropped_grad(float *d, float *tmp, size_t n, float p, uint64_t key)
{
	if (p <= 0)
		return d;
	memcpy(tmp, d, n * sizeof *tmp);
	lm_dropout(tmp, n, p, key);
	return tmp;
}

/* the feed-forward block backward from d2 = dL/d fc2's output: fc2, ReLU (by the forward's
 * mask, or by its output), fc1; dL/d fc1's input goes to dfin (added to it when acc) */
static int ffn_bwd(struct lm_train *tr, int l, const float *d2, float *dfin, size_t N, int acc)
{
	struct lm_tacts *a = &tr->acts[l];
	struct lm_tmat *w = &tr->lin[(size_t)l * NLIN];
	size_t F = (size_t)tr->cfg.ffn_dim;
	if (linear_bwd(tr, &w[WF2], vgrad(tr, l, LM_T_FC2_B), d2, a->ff, tr->dff, N, 0) < 0)
		return -1;
	if (a->ffmask)
		lm_relu_backward_mask(tr->dff, tr->dff, a->ffmask, N * F);
	else
		lm_relu_backward(tr->dff, tr->dff, a->ff, N * F);
	return linear_bwd(tr, &w[WF1], vgrad(tr, l, LM_T_FC1_B), tr->dff, a->fin, dfin, N, acc);
}

/* q, k and v backward from tr->dq/dk/dv on the attention's input ain; dL/d ain goes to dx
 * (NULL: not wanted), q's written (acc_q 0) or added, k's and v's added */
static int qkv_bwd(struct lm_train *tr, int l, const float *ain, float *dx, size_t N, int acc_q)
{
	struct lm_tmat *w = &tr->lin[(size_t)l * NLIN];
	if (linear_bwd(tr, &w[WQ], vgrad(tr, l, LM_T_Q_B), tr->dq, ain, dx, N, acc_q) < 0 ||
	    linear_bwd(tr, &w[WK], vgrad(tr, l, LM_T_K_B), tr->dk, ain, dx, N, 1) < 0 ||
	    linear_bwd(tr, &w[WV], vgrad(tr, l, LM_T_V_B), tr->dv, ain, dx, N, 1) < 0)
		return -1;
	return 0;
}

/* dres holds dL/dX[l+1]; leaves dL/dX[l] there when need_dx */
static int layer_bwd(struct lm_train *tr, int l, size_t B, size_t T, int need_dx)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t C = (size_t)c->hidden_size, NH = (size_t)c->num_heads;
	size_t HS = C / NH, N = B * T;
	float scale = (float)(1.0 / sqrt((double)HS)), p = (float)tr->o.dropout;
	const struct lm_layer *ly = &tr->m->layers[l];
	struct lm_tacts *a = &tr->acts[l];
	struct lm_tmat *w = &tr->lin[(size_t)l * NLIN];
	float *dres = tr->dres, *dt1 = tr->dt1, *dt2 = tr->dt2, *d1;
	uint64_t k0 = lm_dropout_key(tr->o.seed, tr->step, l, 0);
	uint64_t k1 = lm_dropout_key(tr->o.seed, tr->step, l, 1);
	const float *ain = c->pre_ln ? a->ln1 : tr->X[l];

	if (c->pre_ln) {
		/* y = res1 + drop(fc2(relu(fc1(LN2(res1))))) */
		if (ffn_bwd(tr, l, dropped_grad(dres, dt1, N * C, p, k1), dt2, N, 0) < 0)
			return -1;
		lm_layernorm_backward(dres, vgrad(tr, l, LM_T_FFN_LN_W), vgrad(tr, l, LM_T_FFN_LN_B), dt2,
		                      a->res1, ly->ln2_w, a->mean2, a->rstd2, N, C, 1);
	} else {
		/* y = LN2(res2), res2 = h + drop(fc2(relu(fc1(h)))), h = LN1(res1) */
		lm_layernorm_backward(dt1, vgrad(tr, l, LM_T_FFN_LN_W), vgrad(tr, l, LM_T_FFN_LN_B), dres,
		                      a->res2, ly->ln2_w, a->mean2, a->rstd2, N, C, 0);
		if (ffn_bwd(tr, l, dropped_grad(dt1, dt2, N * C, p, k1), dt1, N, 1) < 0)
			return -1;
		/* dres becomes dL/dres1 */
		lm_layernorm_backward(dres, vgrad(tr, l, LM_T_ATTN_LN_W), vgrad(tr, l, LM_T_ATTN_LN_B), dt1,
		                      a->res1, ly->ln1_w, a->mean1, a->rstd1, N, C, 0);
	}
	/* res1 = x + drop(o(att)) */
	d1 = dropped_grad(dres, dt1, N * C, p, k0);
	if (linear_bwd(tr, &w[WO], vgrad(tr, l, LM_T_O_B), d1, a->att, dt2, N, 0) < 0)
		return -1;
	/* attention; q was scaled after its bias, so its bias and weight see dq * scale */
	if (lm_attention_backward(tr->dq, tr->dk, tr->dv, dt2, a->q, a->k, a->v, B, T, NH, HS,
	                          tr->ws_attb, tr->ws_attb_n) < 0)
		return -1;
	lm_vec_scale(tr->dq, scale, N * C);
	if (c->pre_ln) {
		/* dL/dln1 feeds LN1's parameters and, below, the residual stream */
		float *gw1 = vgrad(tr, l, LM_T_ATTN_LN_W), *gb1 = vgrad(tr, l, LM_T_ATTN_LN_B);
		float *dain = need_dx || gw1 || gb1 ? dt1 : NULL;
		if (qkv_bwd(tr, l, ain, dain, N, 0) < 0)
			return -1;
		if (dain)
			lm_layernorm_backward(need_dx ? dres : NULL, gw1, gb1, dt1, tr->X[l], ly->ln1_w,
			                      a->mean1, a->rstd1, N, C, 1);
	} else if (qkv_bwd(tr, l, ain, need_dx ? dres : NULL, N, 1) < 0) {
		return -1;
	}
	return 0;
}

/* dres = dL/dX[0] -> positions, project_in, embeddings */
static int embed_bwd(struct lm_train *tr, size_t B, size_t T)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t N = B * T, C = (size_t)c->hidden_size, E = (size_t)c->word_embed_proj_dim;
	size_t V = (size_t)c->vocab_size;
	float *demb = tr->dres, *dw = tr->emb.grad ? tr->emb.grad : tr->emb.G;
	if (tr->pos.grad)
		lm_pos_backward(tr->pos.grad, tr->dres, B, T, C, 0);
	if (tr->pin.mt->data) {
		demb = dw ? tr->demb : NULL;
		if (linear_bwd(tr, &tr->pin, NULL, tr->dres, tr->emb_out, demb, N, 0) < 0)
			return -1;
	}
	if (dw && lm_embed_backward(dw, demb, tr->ids, N, E, V) < 0)
		return -1;
	return 0;
}

/* what one step differentiates (struct lm_train_loss, resolved) */
struct step_loss {
	const struct lm_train_loss *ls;   /* NULL: plain next-token cross-entropy */
	float scale;                      /* 1 / targets when ls->weight is NULL, else 1 */
	double dscale;                    /* the same in double, for the loss value */
	struct lm_ce_opts ce;
	double total;                     /* the loss, summed over the outputs */
};

/* One output of the model taken from residual stream h [N,C] (X[L], or X[e+1] for an
 * exit after layer e) with weight w: its loss is added to sl->total (and to *val), and the
 * gradients go to the head, project_out and final LayerNorm where they train and, when dh
 * is not NULL, dL/dh is added to dh (acc) or written there. */
static int output_bwd(struct lm_train *tr, const float *h, size_t N, float w,
                      struct step_loss *sl, float *dh, int acc, double *val)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t C = (size_t)c->hidden_size, V = (size_t)c->vocab_size;
	size_t E = (size_t)c->word_embed_proj_dim;
	float *fw = vgrad(tr, -1, LM_T_FINAL_LN_W), *fb = vgrad(tr, -1, LM_T_FINAL_LN_B);
	float *dhead = tr->head->grad ? tr->head->grad : tr->head->G;
	const float *xf = final_fwd(tr, h, N), *d = tr->dxf;
	if (!xf || lm_logits_loss_backward(tr->nll, tr->dxf, dhead, xf, head_f32(tr), tr->tgt, N, V,
	                                   E, w * sl->scale, &sl->ce, tr->ws_ce, tr->ws_ce_n) < 0)
		return -1;
	double s = 0;
	for (size_t i = 0; i < N; i++)
		s += (sl->ce.rw ? (double)sl->ce.rw[i] : sl->dscale) * (double)tr->nll[i];
	sl->total += (double)w * s;
	if (val)
		*val = s;
	if (!dh && !fw && !fb && !needs_dw(&tr->pout))
		return 0;
	if (tr->pout.mt->data) {
		const float *hin = c->final_ln ? tr->lnf : h;
		float *dhin = dh || fw || fb ? tr->dt1 : NULL;
		if (linear_bwd(tr, &tr->pout, NULL, tr->dxf, hin, dhin, N, 0) < 0)
			return -1;
		d = tr->dt1;
	}
	if (c->final_ln)
		lm_layernorm_backward(dh, fw, fb, d, h, tr->m->final_ln_w, tr->lnf_mean, tr->lnf_rstd, N,
		                      C, acc);
	else if (dh && acc)
		lm_vec_add(dh, d, N * C);
	else if (dh)
		memcpy(dh, d, N * C * sizeof *dh);
	return 0;
}

/* a trained decoder layer's backward: dL/dX[l] is wanted when a trained layer or the
 * embeddings lie below it */
static int trained_layer_bwd(struct lm_train *tr, int l, size_t B, size_t T)
{
	if (layer_bwd(tr, l, B, T, l > tr->lowest || tr->embed_grad) < 0)
		return lm_preerr("layer %d backward", l);
	return 0;
}

/* after the layers: the embeddings' backward when they train, then the head's LoRA
 * gradients, whose dL/dW_eff is complete now (a tied head's includes the embedding lookup) */
static int embed_head_bwd(struct lm_train *tr, size_t B, size_t T)
{
	if (tr->embed_grad && embed_bwd(tr, B, T) < 0)
		return -1;
	if (tr->head->lora)
		lora_grads(tr, tr->head, tr->head->G);
	return 0;
}

/* the outputs' losses and gradients, then down through the layers that need it; an exit
 * after layer e adds its dL/dX[e+1] to dres just before layer e's backward */
static int backward(struct lm_train *tr, size_t B, size_t T, struct step_loss *sl)
{
	const struct lm_opt_config *c = &tr->cfg;
	const struct lm_train_loss *ls = sl->ls;
	size_t N = B * T, C = (size_t)c->hidden_size;
	int L = c->num_layers, below = tr->lowest < L || tr->embed_grad;
	size_t ne = ls && ls->exits ? ls->nexits : 0, k = ne;
	float *dres = below ? tr->dres : NULL;

	if (ne == 0) {
		if (output_bwd(tr, tr->X[L], N, 1.0f, sl, dres, 0, NULL) < 0)
			return -1;
	} else if (ls->exits[ne - 1] == L - 1) {
		k--;
		if (output_bwd(tr, tr->X[L], N, ls->exit_w[k], sl, dres, 0,
		               ls->exit_loss ? &ls->exit_loss[k] : NULL) < 0)
			return -1;
	} else if (dres) {
		memset(dres, 0, N * C * sizeof *dres);
	}
	for (int l = L - 1; l >= 0; l--) {
		if (k > 0 && ls->exits[k - 1] == l) {
			k--;
			if (output_bwd(tr, tr->X[l + 1], N, ls->exit_w[k], sl, l >= tr->lowest ? dres : NULL,
			               1, ls->exit_loss ? &ls->exit_loss[k] : NULL) < 0)
				return -1;
		}
		if (l >= tr->lowest && trained_layer_bwd(tr, l, B, T) < 0)
			return -1;
	}
	return embed_head_bwd(tr, B, T);
}

int lm_train_step_loss(struct lm_train *tr, const int32_t *ids, size_t B, size_t T,
                       const struct lm_train_loss *ls, double *loss)
{
	size_t N = B * T, cnt = 0;
	int L = tr->cfg.num_layers;
	struct step_loss sl = {ls, 1.0f, 1.0, {0}, 0.0};
	if (tr->o.layer >= 0)
		return lm_seterr("internal: a whole-model step on a layer-wise training");
	if (ls && ls->exits)
		for (size_t e = 0; e < ls->nexits; e++)
			if (ls->exits[e] < 0 || ls->exits[e] >= L || (e && ls->exits[e] <= ls->exits[e - 1]))
				return lm_seterr("exit layers must be increasing decoder layers in [0, %d)", L);
	if (ls && ls->exits && ls->nexits && !ls->exit_w)
		return lm_seterr("internal: exits without weights");
	if (forward(tr, ids, B, T, 1) < 0)
		return -1;
	if (ls && ls->targets)
		memcpy(tr->tgt, ls->targets, N * sizeof *tr->tgt);
	for (size_t i = 0; i < N; i++)
		cnt += tr->tgt[i] >= 0;
	if (ls) {
		sl.ce.rw = ls->weight;
		sl.ce.ref_inp = ls->ref_xf;
		sl.ce.ref_head = ls->ref_head;
	}
	if (!sl.ce.rw) {
		if (cnt == 0)
			return lm_seterr("no position of the batch has a target");
		sl.dscale = 1.0 / (double)cnt;
		sl.scale = (float)sl.dscale;
	}
	/* a head adapter's dL/dW_eff is per step: it becomes dA, dB at the end of this one */
	if (tr->head->lora)
		memset(tr->head->G, 0, (size_t)(tr->head->mt->rows * tr->head->mt->cols) * sizeof(float));
	if (backward(tr, B, T, &sl) < 0)
		return -1;
	*loss = sl.total;
	return 0;
}

int lm_train_step(struct lm_train *tr, const int32_t *ids, size_t B, size_t T, double *loss)
{
	return lm_train_step_loss(tr, ids, B, T, NULL, loss);
}

/* ---- a loss on one position's final output (contrastive embeddings) ---- */

int lm_train_embed_forward(struct lm_train *tr, const int32_t *ids, size_t B, size_t T,
                           const size_t *last, int train, float *out)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t C = (size_t)c->hidden_size, E = (size_t)c->word_embed_proj_dim;
	const float *xf;
	if (tr->o.layer >= 0)
		return lm_seterr("internal: a whole-model forward on a layer-wise training");
	for (size_t b = 0; b < B; b++)
		if (last[b] >= T)
			return lm_seterr("internal: position %zu outside a sequence of %zu", last[b], T);
	if (forward(tr, ids, B, T, train) < 0)
		return -1;
	/* the chosen rows of the last residual stream, kept in tmp (no backward writes it)
	 * for the final LayerNorm's backward */
	for (size_t b = 0; b < B; b++)
		memcpy(tr->tmp + b * C, tr->X[c->num_layers] + (b * T + last[b]) * C, C * sizeof(float));
	if (!(xf = final_fwd(tr, tr->tmp, B)))
		return -1;
	memcpy(out, xf, B * E * sizeof *out);
	return 0;
}

int lm_train_embed_backward(struct lm_train *tr, const float *dout, size_t B, size_t T,
                            const size_t *last)
{
	const struct lm_opt_config *c = &tr->cfg;
	size_t C = (size_t)c->hidden_size, E = (size_t)c->word_embed_proj_dim, N = B * T;
	int L = c->num_layers, below = tr->lowest < L || tr->embed_grad;
	float *fw = vgrad(tr, -1, LM_T_FINAL_LN_W), *fb = vgrad(tr, -1, LM_T_FINAL_LN_B);
	float *dh = below ? tr->dt2 : NULL;
	const float *d = tr->dxf;

	if (check_batch(tr, B, T) < 0)
		return -1;
	if (tr->head->lora)
		memset(tr->head->G, 0, (size_t)(tr->head->mt->rows * tr->head->mt->cols) * sizeof(float));
	memcpy(tr->dxf, dout, B * E * sizeof *dout);
	/* B rows through project_out and the final LayerNorm, as lm_train_embed_forward took
	 * them (output_bwd over the chosen rows) */
	if (tr->pout.mt->data && (dh || fw || fb || needs_dw(&tr->pout))) {
		const float *hin = c->final_ln ? tr->lnf : tr->tmp;
		if (linear_bwd(tr, &tr->pout, NULL, tr->dxf, hin, dh || fw || fb ? tr->dt1 : NULL, B,
		               0) < 0)
			return -1;
		d = tr->dt1;
	}
	if (c->final_ln && (dh || fw || fb))
		lm_layernorm_backward(dh, fw, fb, d, tr->tmp, tr->m->final_ln_w, tr->lnf_mean,
		                      tr->lnf_rstd, B, C, 0);
	else if (dh)
		memcpy(dh, d, B * C * sizeof *dh);
	if (below) {
		/* the gradient enters the residual stream at the chosen positions only */
		memset(tr->dres, 0, N * C * sizeof *tr->dres);
		for (size_t b = 0; b < B; b++)
			memcpy(tr->dres + (b * T + last[b]) * C, dh + b * C, C * sizeof *dh);
		for (int l = L - 1; l >= tr->lowest; l--)
			if (trained_layer_bwd(tr, l, B, T) < 0)
				return -1;
	}
	return embed_head_bwd(tr, B, T);
}

/* ---- layer-wise reconstruction ---- */

/* a layer training's one decoder layer forward on the inputs x ([B x T x C]), train as
 * layer_fwd's; what names the caller in the message of a whole-model training */
static int layer_only_fwd(struct lm_train *tr, const float *x, size_t B, size_t T, int train,
                          const char *what)
{
	int l = tr->o.layer;
	if (l < 0)
		return lm_seterr("internal: a layer %s on a whole-model training", what);
	if (check_batch(tr, B, T) < 0)
		return -1;
	memcpy(tr->X[l], x, B * T * (size_t)tr->cfg.hidden_size * sizeof *x);
	lora_prepare(tr);
	return layer_fwd(tr, l, B, T, train);
}

int lm_train_layer_step(struct lm_train *tr, const float *x, const float *y, size_t B, size_t T,
                        double *mse)
{
	int l = tr->o.layer;
	if (layer_only_fwd(tr, x, B, T, 1, "step") < 0)
		return -1;
	*mse = lm_mse_backward(tr->dres, tr->X[l + 1], y, B * T * (size_t)tr->cfg.hidden_size);
	return layer_bwd(tr, l, B, T, 0);
}

int lm_train_layer_forward(struct lm_train *tr, const float *x, float *out, size_t B, size_t T)
{
	if (layer_only_fwd(tr, x, B, T, 0, "forward") < 0)
		return -1;
	memcpy(out, tr->X[tr->o.layer + 1], B * T * (size_t)tr->cfg.hidden_size * sizeof *out);
	return 0;
}

/* ---- optimizer ---- */

void lm_train_zero_grad(struct lm_train *tr)
{
	memset(tr->gmem, 0, tr->nfloats * sizeof(float));
	if (tr->head->G)
		memset(tr->head->G, 0, (size_t)(tr->head->mt->rows * tr->head->mt->cols) * sizeof(float));
}

double lm_train_grad_norm(struct lm_train *tr)
{
	double s = 0;
	for (size_t i = 0; i < tr->npar; i++) {
		struct lm_tparam *q = &tr->par[i];
		if (q->mask)
			for (size_t j = 0; j < q->n; j++)
				q->g[j] = q->mask[j] ? q->g[j] : 0.0f;
	}
	s = lm_vec_sumsq(tr->gmem, tr->nfloats);
	return sqrt(s);
}

void lm_train_scale_grad(struct lm_train *tr, float s)
{
	lm_vec_scale(tr->gmem, s, tr->nfloats);
}

void lm_train_adamw(struct lm_train *tr, const struct lm_adamw *h, double lr)
{
	struct lm_adamw_f32 st;
	tr->step++;
	lm_adamw_f32_begin(&st, h, lr, (double)tr->step);
	for (size_t i = 0; i < tr->npar; i++) {
		struct lm_tparam *q = &tr->par[i];
		lm_adamw_f32_update(&st, q->decay, q->p, q->g, q->m, q->v, q->n);
	}
}

/* ---- the end ---- */

/* the smallest magnitude dtype dt holds (as f32), and whether v becomes 0 in dt */
static float tiny_of(enum lm_dtype dt)
{
	return dt == LM_F16 ? 0x1p-24f : dt == LM_BF16 ? 0x1p-133f : 0x1p-149f;
}

static int rounds_to_zero(float v, enum lm_dtype dt)
{
	if (dt == LM_F16)
		return (lm_f32_to_f16(v) & 0x7fff) == 0;
	if (dt == LM_BF16)
		return (lm_f32_to_bf16(v) & 0x7fff) == 0;
	return v == 0.0f;
}

/* The zeros of a trained or merged matrix are exactly its zeros before: a weight that
 * was not zero and is (or would round to) zero in the stream's dtype gets the smallest
 * magnitude that dtype holds, with its sign, so that sparsity is what pruning made it. */
static void keep_nonzeros(struct lm_train *tr, struct lm_tmat *t)
{
	size_t OUT = (size_t)t->mt->rows, IN = (size_t)t->mt->cols;
	enum lm_dtype dt = t->orig ? t->orig_dt : t->mt->dtype;
	if (lm_dtype_is_packed(dt))
		dt = LM_F16; /* a merged packed matrix is written unpacked, as f16 (train.h) */
	float tiny = tiny_of(dt);
	for (size_t o = 0; o < OUT; o++) {
		const float *w = t->mask ? NULL : base_row(tr, t, o);
		float *p = t->own + o * IN;
		for (size_t i = 0; i < IN; i++) {
			int was_zero = t->mask ? !t->mask[o * IN + i] : w[i] == 0.0f;
			if (!was_zero && rounds_to_zero(p[i], dt))
				p[i] = signbit(p[i]) ? -tiny : tiny;
		}
	}
}

static int merge_one(struct lm_train *tr, struct lm_tmat *t)
{
	/* a packed matrix's zeros are grid points, not pruning: merged as trained (QLoRA) */
	lora_weff(tr, t, !lm_dtype_is_packed(t->orig ? t->orig_dt : t->mt->dtype));
	t->orig = t->mt->data, t->orig_dt = t->mt->dtype;
	t->mt->data = t->own, t->mt->dtype = LM_F32;
	if (t->mt == &tr->m->embed_tokens && tr->cfg.tied)
		tr->m->lm_head = *t->mt;
	t->eff = *t->mt;
	t->lora = LM_LORA_NONE;
	t->merged = 1;
	return 0;
}

int lm_train_merge(struct lm_train *tr)
{
	size_t L = (size_t)tr->cfg.num_layers;
	for (size_t i = 0; i < L * NLIN; i++)
		if (tr->lin[i].lora && merge_one(tr, &tr->lin[i]) < 0)
			return -1;
	if (tr->head->lora && merge_one(tr, tr->head) < 0)
		return -1;
	for (size_t i = 0; i < L * NLIN + 5; i++) {
		struct lm_tmat *g[] = {&tr->emb, &tr->pos, &tr->pin, &tr->pout, &tr->head_own};
		struct lm_tmat *t = i < L * NLIN ? &tr->lin[i] : g[i - L * NLIN];
		if (t->orig && t->own)
			keep_nonzeros(tr, t);
	}
	for (size_t i = 0; i < tr->npar; i++) {
		const struct lm_tparam *q = &tr->par[i];
		for (size_t j = 0; j < q->n; j++)
			if (!isfinite(q->p[j]))
				return lm_seterr("tensor '%s' holds a non-finite value at %zu after training",
				                 q->name, j);
	}
	for (size_t i = 0; i < L * NLIN + 1; i++) {
		const struct lm_tmat *t = i < L * NLIN ? &tr->lin[i] : tr->head;
		if (t->merged) {
			size_t n = (size_t)(t->mt->rows * t->mt->cols);
			for (size_t j = 0; j < n; j++)
				if (!isfinite(t->own[j]))
					return lm_seterr("a merged matrix holds a non-finite value at %zu", j);
		}
	}
	return 0;
}

static void commit_one(struct lm_tmat *t)
{
	if (!t->orig)
		return;
	lm_free(t->orig);
	t->orig = NULL, t->own = NULL; /* the model's now */
}

void lm_train_commit(struct lm_train *tr)
{
	size_t L = (size_t)tr->cfg.num_layers;
	for (size_t i = 0; i < L * NLIN; i++)
		commit_one(&tr->lin[i]);
	commit_one(&tr->emb), commit_one(&tr->pos), commit_one(&tr->pin), commit_one(&tr->pout);
	commit_one(&tr->head_own);
}

int lm_train_changes(const struct lm_train *tr, enum lm_opt_kind kind, int layer)
{
	for (size_t i = 0; i < tr->npar; i++)
		if (tr->par[i].kind == kind && tr->par[i].layer == layer)
			return 1;
	return 0;
}

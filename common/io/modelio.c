/* modelio.c: an OPT model in memory, filled tensor by tensor (see modelio.h) */
#include "modelio.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LAYER_BIT(k) (1u << ((k) - LM_T_ATTN_LN_W))
#define VEC_ALIGN 16 /* floats: each vector of a layer starts on a cache line */

static int is_layer_kind(enum lm_opt_kind k)
{
	return k >= LM_T_ATTN_LN_W && k <= LM_T_FC2_B;
}

int lm_kind_is_bias(enum lm_opt_kind k)
{
	return k == LM_T_Q_B || k == LM_T_K_B || k == LM_T_V_B || k == LM_T_O_B || k == LM_T_FC1_B ||
	       k == LM_T_FC2_B;
}

int lm_kind_is_ln(enum lm_opt_kind k)
{
	return k == LM_T_ATTN_LN_W || k == LM_T_ATTN_LN_B || k == LM_T_FFN_LN_W || k == LM_T_FFN_LN_B ||
	       k == LM_T_FINAL_LN_W || k == LM_T_FINAL_LN_B;
}

/* The layer a per-layer kind lives in (NULL for a global kind): 0 when the layer is out
 * of range or the model has no layers, so the accessors answer NULL. */
static int layer_of(struct lm_model *m, enum lm_opt_kind kind, int layer, struct lm_layer **l)
{
	*l = NULL;
	if (!is_layer_kind(kind))
		return 1;
	if (layer < 0 || layer >= m->cfg.num_layers || !m->layers)
		return 0;
	*l = &m->layers[layer];
	return 1;
}

/* Does the config have this tensor, and with which shape? 0 if it has none. */
static int expect(const struct lm_opt_config *c, enum lm_opt_kind k, int64_t shape[2])
{
	const int64_t C = c->hidden_size, E = c->word_embed_proj_dim, F = c->ffn_dim;
	if (lm_kind_is_bias(k) && !c->enable_bias)
		return 0;
	if (lm_kind_is_ln(k) && !c->ln_affine)
		return 0;
	shape[1] = 0;
	switch (k) {
	case LM_T_EMBED_TOKENS: shape[0] = c->vocab_size, shape[1] = E; return 2;
	case LM_T_EMBED_POS: shape[0] = c->max_positions + LM_OPT_POS_OFFSET, shape[1] = C; return 2;
	case LM_T_PROJECT_IN: shape[0] = C, shape[1] = E; return E != C ? 2 : 0;
	case LM_T_PROJECT_OUT: shape[0] = E, shape[1] = C; return E != C ? 2 : 0;
	case LM_T_FINAL_LN_W: case LM_T_FINAL_LN_B: shape[0] = C; return c->final_ln ? 1 : 0;
	case LM_T_LM_HEAD: shape[0] = c->vocab_size, shape[1] = E; return 2;
	case LM_T_Q_W: case LM_T_K_W: case LM_T_V_W: case LM_T_O_W: shape[0] = C, shape[1] = C; return 2;
	case LM_T_FC1_W: shape[0] = F, shape[1] = C; return 2;
	case LM_T_FC2_W: shape[0] = C, shape[1] = F; return 2;
	case LM_T_FC1_B: shape[0] = F; return 1;
	case LM_T_ATTN_LN_W: case LM_T_ATTN_LN_B: case LM_T_Q_B: case LM_T_K_B: case LM_T_V_B:
	case LM_T_O_B: case LM_T_FFN_LN_W: case LM_T_FFN_LN_B: case LM_T_FC2_B:
		shape[0] = C; return 1;
	default: return 0;
	}
}

/* canonical name of a tensor, for messages (the names live in opt.c's table) */
static void tensor_name(const struct lm_opt_config *c, enum lm_opt_kind k, int layer, char *out,
                        size_t outsz)
{
	size_t n;
	struct lm_opt_tensor *t = lm_opt_tensors(c, &n);
	snprintf(out, outsz, "tensor kind %d of layer %d", (int)k, layer);
	for (size_t i = 0; i < n; i++)
		if (t[i].kind == k && t[i].layer == layer) {
			snprintf(out, outsz, "%s", t[i].name);
			break;
		}
	free(t);
}

int lm_model_init(struct lm_model *m, const struct lm_opt_config *cfg)
{
	memset(m, 0, sizeof *m);
	if (lm_opt_config_check(cfg) < 0)
		return -1;
	m->cfg = *cfg;
	m->layers = calloc((size_t)cfg->num_layers, sizeof *m->layers);
	if (!m->layers)
		return lm_seterr("out of memory for %lld layers", (long long)cfg->num_layers);
	return 0;
}

struct lm_mat *lm_model_mat(struct lm_model *m, enum lm_opt_kind kind, int layer)
{
	struct lm_layer *l = NULL;
	if (!layer_of(m, kind, layer, &l))
		return NULL;
	switch (kind) {
	case LM_T_EMBED_TOKENS: return &m->embed_tokens;
	case LM_T_EMBED_POS: return &m->embed_pos;
	case LM_T_PROJECT_IN: return &m->project_in;
	case LM_T_PROJECT_OUT: return &m->project_out;
	case LM_T_LM_HEAD: return &m->lm_head;
	case LM_T_Q_W: return &l->q;
	case LM_T_K_W: return &l->k;
	case LM_T_V_W: return &l->v;
	case LM_T_O_W: return &l->o;
	case LM_T_FC1_W: return &l->fc1;
	case LM_T_FC2_W: return &l->fc2;
	default: return NULL;
	}
}

/* where a layer keeps the f32 vector of this kind; NULL for a kind that is not one */
static float **layer_vec(struct lm_layer *l, enum lm_opt_kind kind)
{
	switch (kind) {
	case LM_T_ATTN_LN_W: return &l->ln1_w;
	case LM_T_ATTN_LN_B: return &l->ln1_b;
	case LM_T_Q_B: return &l->q_b;
	case LM_T_K_B: return &l->k_b;
	case LM_T_V_B: return &l->v_b;
	case LM_T_O_B: return &l->o_b;
	case LM_T_FFN_LN_W: return &l->ln2_w;
	case LM_T_FFN_LN_B: return &l->ln2_b;
	case LM_T_FC1_B: return &l->fc1_b;
	case LM_T_FC2_B: return &l->fc2_b;
	default: return NULL;
	}
}

float **lm_model_vec(struct lm_model *m, enum lm_opt_kind kind, int layer)
{
	struct lm_layer *l = NULL;
	if (!layer_of(m, kind, layer, &l))
		return NULL;
	switch (kind) {
	case LM_T_FINAL_LN_W: return &m->final_ln_w;
	case LM_T_FINAL_LN_B: return &m->final_ln_b;
	default: return l ? layer_vec(l, kind) : NULL;
	}
}

int lm_model_has(const struct lm_model *m, enum lm_opt_kind kind, int layer)
{
	struct lm_model *mm = (struct lm_model *)m; /* the accessors do not write */
	if (is_layer_kind(kind)) {
		if (layer < 0 || layer >= m->cfg.num_layers || !m->layers)
			return 0;
		return (m->layers[layer].loaded & LAYER_BIT(kind)) != 0;
	}
	if (kind == LM_T_LM_HEAD && m->cfg.tied)
		return m->embed_tokens.data != NULL;
	struct lm_mat *mt = lm_model_mat(mm, kind, -1);
	if (mt)
		return mt->data != NULL;
	float **v = lm_model_vec(mm, kind, -1);
	return v && *v;
}

/* the f32 vectors of a layer in one allocation, zeroed (the biases of a model without
 * biases stay zero); the pointers are set once, loaded bits say what has been filled */
static int layer_mem(struct lm_layer *l, const struct lm_opt_config *c)
{
	static const enum lm_opt_kind kinds[] = {
		LM_T_ATTN_LN_W, LM_T_ATTN_LN_B, LM_T_Q_B, LM_T_K_B, LM_T_V_B, LM_T_O_B,
		LM_T_FFN_LN_W, LM_T_FFN_LN_B, LM_T_FC1_B, LM_T_FC2_B,
	};
	size_t C = (size_t)c->hidden_size, F = (size_t)c->ffn_dim;
	size_t Ca = (C + VEC_ALIGN - 1) / VEC_ALIGN * VEC_ALIGN;
	size_t Fa = (F + VEC_ALIGN - 1) / VEC_ALIGN * VEC_ALIGN;
	size_t total = 9 * Ca + Fa, off = 0;
	float *mem;

	if (l->mem)
		return 0;
	if (!(mem = lm_alloc(total * sizeof *mem)))
		return -1;
	memset(mem, 0, total * sizeof *mem);
	l->mem = mem;
	for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
		float *p = mem + off;
		off += kinds[i] == LM_T_FC1_B ? Fa : Ca;
		if (lm_kind_is_ln(kinds[i]) && !c->ln_affine)
			p = NULL;
		*layer_vec(l, kinds[i]) = p; /* every kind of kinds[] is a vector */
	}
	return 0;
}

static int take(struct lm_model *m, const char *name, enum lm_dtype dt, int ndim,
                const int64_t *shape, void **datap)
{
	const struct lm_opt_config *c = &m->cfg;
	enum lm_opt_kind kind;
	int layer, wnd;
	int64_t want[2];
	size_t n;

	if (lm_opt_parse_name(name, &kind, &layer) < 0)
		return lm_seterr("not an OPT tensor name");
	if (layer >= c->num_layers)
		return lm_seterr("layer %d is past the model's %lld layers", layer,
		                 (long long)c->num_layers);
	if (kind == LM_T_LM_HEAD && c->tied)
		return 0; /* the caller frees it: tied lm_head is embed_tokens */
	if (!(wnd = expect(c, kind, want)))
		return lm_seterr("the config has no such tensor");
	if (ndim != wnd || shape[0] != want[0] || (wnd == 2 && shape[1] != want[1])) {
		char got[64];
		if (ndim == 1)
			snprintf(got, sizeof got, "[%lld]", (long long)shape[0]);
		else if (ndim == 2)
			snprintf(got, sizeof got, "[%lld, %lld]", (long long)shape[0],
			         (long long)shape[1]);
		else
			snprintf(got, sizeof got, "%d dimensions", ndim);
		if (wnd == 1)
			return lm_seterr("shape %s, the config says [%lld]", got, (long long)want[0]);
		return lm_seterr("shape %s, the config says [%lld, %lld]", got, (long long)want[0],
		                 (long long)want[1]);
	}
	/* packed quantized types for matrices read by rows or tiles (lm_mat_rows_f32): the
	 * linears, embed_tokens, lm_head and the projections; not embed_positions, whose rows
	 * are added to the hidden states in place as plain floats */
	if (lm_dtype_is_packed(dt)) {
		if (wnd != 2 || kind == LM_T_EMBED_POS)
			return lm_seterr("dtype %s is only for the linear weights, embed_tokens, "
			                 "lm_head and the projections", lm_dtype_name(dt));
	} else if (dt != LM_F32 && dt != LM_F16 && dt != LM_BF16 && dt != LM_F64) {
		return lm_seterr("dtype %s is not a float type", lm_dtype_name(dt));
	}
	n = (size_t)want[0] * (size_t)(wnd == 2 ? want[1] : 1);

	if (wnd == 1) {
		float **slot = lm_model_vec(m, kind, layer);
		float *dst;
		if (layer >= 0) {
			struct lm_layer *l = &m->layers[layer];
			if (l->loaded & LAYER_BIT(kind))
				return lm_seterr("given twice");
			if (layer_mem(l, c) < 0)
				return -1;
			lm_to_f32(*slot, *datap, dt, n);
			l->loaded |= LAYER_BIT(kind);
			return 0;
		}
		if (*slot)
			return lm_seterr("given twice");
		if (dt == LM_F32) {
			*slot = *datap, *datap = NULL;
			return 0;
		}
		if (!(dst = lm_alloc(n * sizeof *dst)))
			return -1;
		lm_to_f32(dst, *datap, dt, n);
		*slot = dst;
		return 0;
	}

	struct lm_mat *mt = lm_model_mat(m, kind, layer);
	if (mt->data)
		return lm_seterr("given twice");
	if (layer >= 0) {
		/* a layer's vectors exist as soon as any of its tensors does (zero biases of a
		 * model without biases included) */
		if (layer_mem(&m->layers[layer], c) < 0)
			return -1;
	}
	if (dt == LM_F64) {
		float *dst = lm_alloc(n * sizeof *dst);
		if (!dst)
			return -1;
		lm_to_f32(dst, *datap, dt, n);
		lm_free(*datap);
		*datap = dst;
		dt = LM_F32;
	}
	mt->dtype = dt, mt->rows = want[0], mt->cols = want[1];
	mt->data = *datap, *datap = NULL;
	if (layer >= 0)
		m->layers[layer].loaded |= LAYER_BIT(kind);
	if (kind == LM_T_EMBED_TOKENS && c->tied)
		m->lm_head = *mt;
	return 0;
}

int lm_model_take(struct lm_model *m, const char *name, enum lm_dtype dt, int ndim,
                  const int64_t *shape, void *data)
{
	int r = take(m, name, dt, ndim, shape, &data);
	lm_free(data); /* NULL when the model kept it */
	if (r < 0)
		return lm_preerr("tensor '%s'", name);
	return 0;
}

int lm_model_take_record(struct lm_model *m, struct lm_record *r)
{
	void *data = r->data;
	r->data = NULL;
	return lm_model_take(m, r->name, r->dtype, r->ndim, r->shape, data);
}

int lm_model_take_sparse(struct lm_model *m, struct lm_record *r)
{
	enum lm_opt_kind kind;
	int layer;
	size_t *starts = NULL;
	if (!r->wire || lm_opt_parse_name(r->name, &kind, &layer) < 0 ||
	    (r->layout.kind != LM_LAYOUT_NM && r->layout.kind != LM_LAYOUT_BITMAP))
		return lm_model_take_record(m, r); /* dense values, as every other reader */
	if (r->layout.kind == LM_LAYOUT_BITMAP) {
		if (!(starts = lm_alloc(((size_t)r->shape[0] + 1) * sizeof *starts)))
			return lm_preerr("tensor '%s'", r->name);
		lm_sparse_row_starts(starts, r->wire, r->wire_nbytes, r->dtype, r->shape[0], r->shape[1]);
	}
	/* the shape and dtype checks of a dense take, then the payload swapped for the wire's */
	if (lm_model_take_record(m, r) < 0) {
		lm_free(starts);
		return -1;
	}
	struct lm_mat *mt = lm_model_mat(m, kind, layer);
	lm_free(mt->data);
	mt->data = r->wire, r->wire = NULL;
	mt->layout = r->layout, mt->nbytes = r->wire_nbytes, mt->rowoff = starts;
	if (kind == LM_T_EMBED_TOKENS && m->cfg.tied)
		m->lm_head = *mt; /* take_record's copy still points at the freed dense values */
	return 0;
}

static void mat_free(struct lm_mat *mt)
{
	lm_free(mt->data);
	lm_free(mt->rowoff);
	memset(mt, 0, sizeof *mt);
}

void lm_layer_free(struct lm_layer *l)
{
	mat_free(&l->q), mat_free(&l->k), mat_free(&l->v), mat_free(&l->o);
	mat_free(&l->fc1), mat_free(&l->fc2);
	lm_free(l->mem);
	memset(l, 0, sizeof *l);
}

void lm_model_free(struct lm_model *m)
{
	if (m->lm_head.data == m->embed_tokens.data)
		memset(&m->lm_head, 0, sizeof m->lm_head);
	mat_free(&m->embed_tokens), mat_free(&m->embed_pos);
	mat_free(&m->project_in), mat_free(&m->project_out), mat_free(&m->lm_head);
	lm_free(m->final_ln_w), lm_free(m->final_ln_b);
	if (m->layers)
		for (int64_t i = 0; i < m->cfg.num_layers; i++)
			lm_layer_free(&m->layers[i]);
	free(m->layers);
	memset(m, 0, sizeof *m);
}

/* ---- checks ---- */

static int missing(const struct lm_model *m, enum lm_opt_kind k, int layer)
{
	char name[LM_OPT_MAX_NAME];
	tensor_name(&m->cfg, k, layer, name, sizeof name);
	return lm_seterr("tensor '%s' is missing", name);
}

int lm_model_check_globals(const struct lm_model *m)
{
	static const enum lm_opt_kind g[] = {
		LM_T_EMBED_TOKENS, LM_T_EMBED_POS, LM_T_PROJECT_IN, LM_T_FINAL_LN_W, LM_T_FINAL_LN_B,
		LM_T_PROJECT_OUT, LM_T_LM_HEAD,
	};
	int64_t shape[2];
	for (size_t i = 0; i < sizeof g / sizeof *g; i++)
		if (expect(&m->cfg, g[i], shape) && !lm_model_has(m, g[i], -1))
			return missing(m, g[i], -1);
	return 0;
}

int lm_layer_check(const struct lm_model *m, int layer)
{
	int64_t shape[2];
	if (layer < 0 || layer >= m->cfg.num_layers || !m->layers)
		return lm_seterr("layer %d is outside the model", layer);
	for (int k = LM_T_ATTN_LN_W; k <= LM_T_FC2_B; k++)
		if (expect(&m->cfg, (enum lm_opt_kind)k, shape) &&
		    !(m->layers[layer].loaded & LAYER_BIT(k)))
			return missing(m, (enum lm_opt_kind)k, layer);
	return 0;
}

int lm_model_check(const struct lm_model *m)
{
	if (lm_model_check_globals(m) < 0)
		return -1;
	for (int l = 0; l < m->cfg.num_layers; l++)
		if (lm_layer_check(m, l) < 0)
			return -1;
	return 0;
}

/* count non-finite values; *first = index of the first */
static size_t nonfinite(const void *data, enum lm_dtype dt, size_t n, size_t *first)
{
	size_t bad = 0;
	for (size_t i = 0; i < n; i++) {
		int ok;
		if (dt == LM_F32) {
			ok = isfinite(((const float *)data)[i]);
		} else {
			uint16_t h = ((const uint16_t *)data)[i];
			ok = dt == LM_F16 ? (h & 0x7c00) != 0x7c00 : (h & 0x7f80) != 0x7f80;
		}
		if (!ok && bad++ == 0)
			*first = i;
	}
	return bad;
}

int lm_model_check_finite_part(const struct lm_model *m, int layer)
{
	struct lm_model *mm = (struct lm_model *)m; /* the accessors do not write */
	int64_t shape[2];
	int lo = layer < 0 ? LM_T_EMBED_TOKENS : LM_T_ATTN_LN_W;
	int hi = layer < 0 ? LM_T_LM_HEAD : LM_T_FC2_B;

	for (int k = lo; k <= hi; k++) {
		int nd = expect(&m->cfg, (enum lm_opt_kind)k, shape);
		size_t first = 0, bad;
		if (!nd || !lm_model_has(m, (enum lm_opt_kind)k, layer))
			continue;
		if (k == LM_T_LM_HEAD && m->cfg.tied)
			continue; /* it is embed_tokens */
		if (nd == 2) {
			struct lm_mat *mt = lm_model_mat(mm, (enum lm_opt_kind)k, layer);
			if (lm_dtype_is_packed(mt->dtype) || lm_mat_is_sparse(mt))
				continue; /* codes are finite; a scale is checked where it is used; a kept-sparse
				           * matrix's values were checked dense as they were read */
			bad = nonfinite(mt->data, mt->dtype, (size_t)(mt->rows * mt->cols), &first);
			if (bad) {
				char name[LM_OPT_MAX_NAME];
				tensor_name(&m->cfg, (enum lm_opt_kind)k, layer, name, sizeof name);
				size_t cols = (size_t)mt->cols;
				return lm_seterr("tensor '%s': %zu non-finite values, the first at "
				                 "[%zu, %zu]", name, bad, first / cols, first % cols);
			}
		} else {
			float **v = lm_model_vec(mm, (enum lm_opt_kind)k, layer);
			bad = nonfinite(*v, LM_F32, (size_t)shape[0], &first);
			if (bad) {
				char name[LM_OPT_MAX_NAME];
				tensor_name(&m->cfg, (enum lm_opt_kind)k, layer, name, sizeof name);
				return lm_seterr("tensor '%s': %zu non-finite values, the first at "
				                 "[%zu]", name, bad, first);
			}
		}
	}
	return 0;
}

int lm_model_check_finite(const struct lm_model *m)
{
	if (lm_model_check_finite_part(m, -1) < 0)
		return -1;
	for (int l = 0; l < m->cfg.num_layers; l++)
		if (lm_model_check_finite_part(m, l) < 0)
			return -1;
	return 0;
}

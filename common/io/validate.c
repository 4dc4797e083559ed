/* validate.c: a model stream's tensors against its header (see validate.h) */
#include "validate.h"
#include "quant.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lm_val_is_model_name(const char *name)
{
	enum lm_opt_kind k;
	int l;
	return lm_opt_parse_name(name, &k, &l) == 0 || !strncmp(name, "model.", 6) ||
	       !strncmp(name, "lm_head", 7);
}

void lm_val_init(struct lm_validator *v, const struct lm_opt_config *cfg, int require_model)
{
	memset(v, 0, sizeof *v);
	v->cfg = *cfg;
	v->require_model = require_model;
	v->order = lm_opt_tensors(cfg, &v->norder);
	v->seen = xcalloc(v->norder ? v->norder : 1, 1);
	v->extras = json_object();
}

void lm_val_free(struct lm_validator *v)
{
	free(v->order);
	free(v->seen);
	json_decref(v->extras);
	memset(v, 0, sizeof *v);
}

/* index in order of a model tensor, -1 if the header's model has none of that name.
 * Computed, not searched: a stream of 65536 tensors all out of place stays linear. */
static long find(const struct lm_validator *v, const char *name, int *layer)
{
	enum lm_opt_kind k;
	size_t i, per = 0, first = 0;
	if (lm_opt_parse_name(name, &k, layer) < 0)
		return -1;
	if (*layer < 0) {
		for (i = 0; i < v->norder; i++)
			if (v->order[i].kind == k && v->order[i].layer < 0)
				return (long)i;
		return -1;
	}
	if (*layer >= v->cfg.num_layers)
		return -1;
	while (first < v->norder && v->order[first].layer != 0)
		first++;
	while (first + per < v->norder && v->order[first + per].layer == 0)
		per++;
	for (i = 0; i < per; i++)
		if (v->order[first + i].kind == k) {
			i += first + (size_t)*layer * per;
			return strcmp(v->order[i].name, name) ? -1 : (long)i;
		}
	return -1;
}

static void shape_text(char *out, size_t sz, int ndim, const int64_t *shape)
{
	size_t k = (size_t)snprintf(out, sz, "[");
	for (int i = 0; i < ndim && k < sz; i++)
		k += (size_t)snprintf(out + k, sz - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (k < sz)
		snprintf(out + k, sz - k, "]");
}

/* the dtype a model tensor may have: a float type; packed only for matrices read by rows
 * (not embed_positions, added in place as floats) */
static int dtype_ok(const struct lm_opt_tensor *t, enum lm_dtype dt)
{
	if (lm_dtype_is_packed(dt))
		return t->ndim == 2 && t->kind != LM_T_EMBED_POS;
	return dt == LM_F32 || dt == LM_F16 || dt == LM_BF16 || dt == LM_F64;
}

/* a gap in model order: order[next .. i) did not come before order[i] (i == norder: an
 * extra tensor). Reported once, as what the header says is missing there. */
static int gap(struct lm_validator *v, size_t i, const char *found)
{
	const struct lm_opt_tensor *want = &v->order[v->next];
	size_t j, last_layer_end = v->norder;
	int rc;
	while (last_layer_end > 0 && v->order[last_layer_end - 1].layer < 0)
		last_layer_end--;
	/* whole layers missing up to the tail: the header counts more layers than there are */
	if (want->layer > 0 && want->kind == LM_T_ATTN_LN_W && i >= last_layer_end)
		rc = lm_seterr("the header says %lld layers (num_layers), the stream has %d: found '%s' "
		               "where layer %d should start", (long long)v->cfg.num_layers, want->layer,
		               found, want->layer);
	else
		rc = lm_seterr("expected tensor '%s' (model order), found '%s'", want->name, found);
	for (j = v->next; j < i; j++)
		if (!v->seen[j])
			v->seen[j] = 2;
	return rc;
}

static int meta_model(struct lm_validator *v, const struct lm_record *r)
{
	char got[128], want[128];
	int layer = -1;
	long i = find(v, r->name, &layer);
	const struct lm_opt_tensor *t;

	if (v->kind == 2) {
		if (v->mixed_reported++)
			return 0; /* the same problem: said once */
		return lm_seterr("model tensor '%s' after '%s', which is not the model's (extra tensors "
		                 "follow the model's last one)", r->name, v->first_extra);
	}
	v->kind = 1;
	if (i < 0) {
		if (layer >= v->cfg.num_layers) {
			if (v->beyond_reported++)
				return 0; /* the same problem: said once */
			return lm_seterr("tensor '%s' is in layer %d, but the header says %lld layers "
			                 "(num_layers)", r->name, layer, (long long)v->cfg.num_layers);
		}
		return lm_seterr("tensor '%s' is not part of the model the header describes", r->name);
	}
	t = &v->order[i];
	if (v->seen[i] == 1)
		return lm_seterr("tensor '%s' given twice", r->name);
	if (v->past_model == 1) {
		v->past_model = 2;
		v->seen[i] = 1;
		if ((size_t)i >= v->next)
			v->next = (size_t)i + 1;
		return lm_seterr("tensor '%s' comes after the extra tensor '%s' (extra tensors follow "
		                 "the model's last one)", r->name, v->first_extra);
	}
	if ((size_t)i < v->next && !v->seen[i]) {
		v->seen[i] = 1;
		return lm_seterr("tensor '%s' out of model order (after '%s')", r->name,
		                 v->order[v->next - 1].name);
	}
	if ((size_t)i > v->next) {
		int rc = gap(v, (size_t)i, r->name);
		v->seen[i] = 1, v->next = (size_t)i + 1;
		return rc;
	}
	if (v->seen[i] != 2)
		v->next = (size_t)i + 1;
	v->seen[i] = 1;
	if (r->ndim != t->ndim || r->shape[0] != t->shape[0] || (t->ndim == 2 && r->shape[1] != t->shape[1])) {
		shape_text(got, sizeof got, r->ndim, r->shape);
		shape_text(want, sizeof want, t->ndim, t->shape);
		return lm_seterr("tensor '%s': shape %s, the header says %s", r->name, got, want);
	}
	if (!dtype_ok(t, r->dtype))
		return lm_seterr("tensor '%s': dtype %s is not allowed for it (%s)", r->name,
		                 lm_dtype_name(r->dtype),
		                 lm_dtype_is_packed(r->dtype) ? "packed types are for matrices read by rows"
		                                              : "a float type: f32, f16, bf16 or f64");
	return 0;
}

static int meta_extra(struct lm_validator *v, const struct lm_record *r)
{
	int rc = 0;
	if (json_object_get(v->extras, r->name))
		return lm_seterr("tensor '%s' given twice", r->name);
	json_object_set_new(v->extras, r->name, json_true());
	if (v->kind == 0) {
		if (v->require_model)
			return lm_seterr("not a model stream: its first tensor is '%s', not '%s'", r->name,
			                 v->norder ? v->order[0].name : "?");
		v->kind = 2;
		snprintf(v->first_extra, sizeof v->first_extra, "%s", r->name);
		return 0;
	}
	if (v->kind == 2)
		return 0;
	if (!v->past_model) {
		v->past_model = 1;
		snprintf(v->first_extra, sizeof v->first_extra, "%s", r->name);
		if (v->next < v->norder)
			rc = gap(v, v->norder, r->name);
	}
	return rc;
}

int lm_val_meta(struct lm_validator *v, const struct lm_record *r)
{
	if (r->kind != LM_REC_TENSOR)
		return 0;
	return lm_val_is_model_name(r->name) ? meta_model(v, r) : meta_extra(v, r);
}

/* ---- payloads ---- */

static int is_bad(const void *data, enum lm_dtype dt, size_t i)
{
	uint16_t h;
	switch (dt) {
	case LM_F32: return !isfinite(((const float *)data)[i]);
	case LM_F64: return !isfinite(((const double *)data)[i]);
	case LM_F16: h = ((const uint16_t *)data)[i]; return (h & 0x7c00) == 0x7c00;
	case LM_BF16: h = ((const uint16_t *)data)[i]; return (h & 0x7f80) == 0x7f80;
	default: return 0;
	}
}

static void index_text(char *out, size_t sz, const struct lm_record *r, size_t flat)
{
	size_t k = (size_t)snprintf(out, sz, "[");
	size_t idx[LM_MAX_NDIM];
	for (int d = r->ndim - 1; d >= 0; d--) {
		size_t n = (size_t)r->shape[d];
		idx[d] = n ? flat % n : 0;
		flat = n ? flat / n : 0;
	}
	for (int d = 0; d < r->ndim && k < sz; d++)
		k += (size_t)snprintf(out + k, sz - k, "%s%zu", d ? ", " : "", idx[d]);
	if (k < sz)
		snprintf(out + k, sz - k, "]");
}

/* the group headers of a packed matrix (lm-stream(5)): a finite scale, a zero point the
 * codes can reach, a zero reserved byte */
static int packed_ok(const struct lm_record *r)
{
	const struct lm_dtype_info *in = lm_dtype_info(r->dtype);
	const size_t rows = (size_t)r->shape[0], cols = (size_t)r->shape[1];
	const size_t G = in->qgroup ? (size_t)in->qgroup : cols;
	const size_t ng = G ? cols / G : 0, gb = sizeof(struct lm_qgroup) + (G * (size_t)in->qbits + 7) / 8;
	const unsigned maxq = (1u << in->qbits) - 1;
	size_t bad = 0, br = 0, bg = 0;
	struct lm_qgroup first = {0, 0, 0};

	for (size_t i = 0; i < rows; i++)
		for (size_t g = 0; g < ng; g++) {
			struct lm_qgroup h;
			memcpy(&h, (const uint8_t *)r->data + (i * ng + g) * gb, sizeof h);
			if ((h.scale & 0x7c00) != 0x7c00 && h.zero <= maxq && !h.reserved)
				continue;
			if (!bad++)
				br = i, bg = g, first = h;
		}
	if (!bad)
		return 0;
	if ((first.scale & 0x7c00) == 0x7c00)
		return lm_seterr("tensor '%s': %zu packed groups with a bad header, the first (row %zu, "
		                 "group %zu) with a scale that is not finite", r->name, bad, br, bg);
	if (first.zero > maxq)
		return lm_seterr("tensor '%s': %zu packed groups with a bad header, the first (row %zu, "
		                 "group %zu) with zero point %u above %u (2^%d-1)", r->name, bad, br, bg,
		                 first.zero, maxq, in->qbits);
	return lm_seterr("tensor '%s': %zu packed groups with a bad header, the first (row %zu, group "
	                 "%zu) with reserved byte %u, not 0", r->name, bad, br, bg, first.reserved);
}

int lm_val_payload(const struct lm_record *r)
{
	size_t n, bad = 0, first = 0;
	char at[128];
	if (r->kind != LM_REC_TENSOR || !r->data)
		return 0;
	if (lm_dtype_is_packed(r->dtype))
		return packed_ok(r);
	if (!lm_dtype_info(r->dtype)->is_float)
		return 0;
	n = lm_record_numel(r);
	for (size_t i = 0; i < n; i++)
		if (is_bad(r->data, r->dtype, i) && !bad++)
			first = i;
	if (!bad)
		return 0;
	index_text(at, sizeof at, r, first);
	return lm_seterr("tensor '%s': %zu non-finite values, the first at %s", r->name, bad, at);
}

int lm_val_tensor(struct lm_validator *v, const struct lm_record *r)
{
	if (lm_val_meta(v, r) < 0)
		return -1;
	return lm_val_payload(r);
}

int lm_val_end(struct lm_validator *v)
{
	size_t nmiss = 0, k = 0, first = 0;
	char list[1024] = "";
	if (v->kind == 0 && v->require_model)
		return lm_seterr("the stream has no tensors");
	if (v->kind != 1 && !v->require_model)
		return 0;
	for (size_t i = 0; i < v->norder; i++)
		if (!v->seen[i] && !nmiss++)
			first = i;
	if (!nmiss)
		return 0;
	if (v->order[first].layer > 0 && v->order[first].kind == LM_T_ATTN_LN_W && first + nmiss == v->norder)
		return lm_seterr("the header says %lld layers (num_layers), the stream has %d and ends "
		                 "there (%zu tensors missing)",
		                 (long long)v->cfg.num_layers, v->order[first].layer, nmiss);
	for (size_t i = first, shown = 0; i < v->norder && shown < 3; i++)
		if (!v->seen[i]) {
			k += (size_t)snprintf(list + k, sizeof list - k, "%s'%s'", shown ? ", " : "", v->order[i].name);
			shown++;
		}
	if (nmiss == 1)
		return lm_seterr("tensor %s is missing", list);
	return lm_seterr("%zu tensors of the model are missing: %s%s", nmiss, list, nmiss > 3 ? ", …" : "");
}

/* modelstream.c: see modelstream.h */
#include "modelstream.h"
#include "modelio.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

int lm_ms_open(struct lm_model_stream *ms, struct lm_reader *rd)
{
	memset(ms, 0, sizeof *ms);
	ms->rd = rd;
	ms->check_finite = 1;
	if (lm_read_header(rd, &ms->h) < 0)
		return -1;
	lm_val_init(&ms->val, &ms->h.cfg, 1);
	ms->order = lm_opt_tensors(&ms->h.cfg, &ms->norder);
	ms->dtypes = xcalloc(ms->norder, sizeof *ms->dtypes);
	ms->attrs = xcalloc(ms->norder, sizeof *ms->attrs);
	ms->layouts = xcalloc(ms->norder, sizeof *ms->layouts);
	for (;;) {
		struct lm_record *r = &ms->pending;
		if (lm_read_record_meta(rd, r) < 0)
			return -1;
		if (r->kind == LM_REC_END)
			return lm_seterr("the stream has no tensors");
		if (r->kind == LM_REC_TENSOR) {
			ms->have_pending = 1;
			return 0;
		}
		/* blobs are small (tokenizer, config): keep them all */
		if (lm_read_payload(rd, r) < 0)
			return -1;
		ms->blobs = xrealloc(ms->blobs, (ms->nblobs + 1) * sizeof *ms->blobs);
		struct lm_blob *b = &ms->blobs[ms->nblobs++];
		snprintf(b->name, sizeof b->name, "%s", r->name);
		b->nbytes = r->nbytes;
		b->data = lm_alloc(r->nbytes + 1);
		if (!b->data)
			return -1;
		memcpy(b->data, r->data, r->nbytes);
		((char *)b->data)[r->nbytes] = '\0';
		lm_record_clear(r);
	}
}

void lm_ms_close(struct lm_model_stream *ms)
{
	for (size_t i = 0; i < ms->nblobs; i++)
		lm_free(ms->blobs[i].data);
	free(ms->blobs);
	for (size_t i = 0; i < ms->norder; i++)
		json_decref(ms->attrs[i]);
	free(ms->attrs);
	free(ms->dtypes);
	free(ms->layouts);
	free(ms->order);
	for (size_t i = 0; i < ms->nextras; i++)
		lm_record_clear(&ms->extras[i]);
	free(ms->extras);
	lm_record_clear(&ms->pending);
	lm_val_free(&ms->val);
	lm_header_free(&ms->h);
	memset(ms, 0, sizeof *ms);
}

const struct lm_blob *lm_ms_blob(const struct lm_model_stream *ms, const char *name)
{
	for (size_t i = 0; i < ms->nblobs; i++)
		if (!strcmp(ms->blobs[i].name, name))
			return &ms->blobs[i];
	return NULL;
}

int lm_ms_part_of(const struct lm_opt_tensor *t, int L)
{
	if (t->layer >= 0)
		return t->layer;
	return (t->kind == LM_T_EMBED_TOKENS || t->kind == LM_T_EMBED_POS || t->kind == LM_T_PROJECT_IN)
	               ? LM_PART_HEAD : L;
}

/* a name of the model's namespace (Hugging Face's "model." and "lm_head"): no extra
 * tensor may take one, so a misplaced model tensor is never passed on as an extra */
#define is_model_name lm_val_is_model_name

const struct lm_record *lm_ms_extra(const struct lm_model_stream *ms, const char *name)
{
	for (size_t i = 0; i < ms->nextras; i++)
		if (!strcmp(ms->extras[i].name, name))
			return &ms->extras[i];
	return NULL;
}

int lm_ms_set_extra(struct lm_model_stream *ms, struct lm_record *r)
{
	size_t i;
	if (r->kind != LM_REC_TENSOR || is_model_name(r->name)) {
		lm_seterr("'%s' is a model tensor, not an extra one", r->name);
		lm_record_clear(r);
		return -1;
	}
	for (i = 0; i < ms->nextras && strcmp(ms->extras[i].name, r->name); i++)
		;
	if (i == ms->nextras)
		ms->extras = xrealloc(ms->extras, ++ms->nextras * sizeof *ms->extras);
	else
		lm_record_clear(&ms->extras[i]);
	ms->extras[i] = *r;
	memset(r, 0, sizeof *r);
	return 0;
}

size_t lm_ms_drop_extras(struct lm_model_stream *ms, const char *prefix)
{
	size_t k = 0, n = strlen(prefix);
	for (size_t i = 0; i < ms->nextras; i++) {
		if (!strncmp(ms->extras[i].name, prefix, n))
			lm_record_clear(&ms->extras[i]);
		else
			ms->extras[k++] = ms->extras[i];
	}
	n = ms->nextras - k;
	ms->nextras = k;
	return n;
}

/* the matrices every reader of lm-eval's model takes through lm_mat_rows_f32 (rows.h) or
 * the decode product: the linears, the projections, and the token embeddings and head, whose
 * rows the lookup decodes one at a time and whose product with the last hidden state is most
 * of a decoded token's bytes (the positions stay dense: lm_pos_forward reads them in place) */
static int keeps_sparse(enum lm_opt_kind k)
{
	return k == LM_T_Q_W || k == LM_T_K_W || k == LM_T_V_W || k == LM_T_O_W || k == LM_T_FC1_W ||
	       k == LM_T_FC2_W || k == LM_T_PROJECT_IN || k == LM_T_PROJECT_OUT ||
	       k == LM_T_EMBED_TOKENS || k == LM_T_LM_HEAD;
}

int lm_ms_load(struct lm_model_stream *ms, struct lm_model *m, int part)
{
	const int L = (int)ms->h.cfg.num_layers;
	struct lm_record *r = &ms->pending;
	while (ms->next < ms->norder && lm_ms_part_of(&ms->order[ms->next], L) <= part) {
		const struct lm_opt_tensor *want = &ms->order[ms->next];
		if (lm_ms_part_of(want, L) < part)
			return lm_seterr("internal: part %d read before part %d", part, lm_ms_part_of(want, L));
		if (!ms->have_pending && lm_read_record_meta(ms->rd, r) < 0)
			return -1;
		ms->have_pending = 0;
		/* order, duplicates, shape and dtype against the header, with the messages every
		 * reader gives; the checks below are what this reader needs on top */
		if (lm_val_meta(&ms->val, r) < 0)
			return -1;
		if (r->kind != LM_REC_TENSOR)
			return lm_seterr("expected tensor '%s', found %s", want->name,
			                 r->kind == LM_REC_END ? "the end of the stream" : "a blob");
		if (strcmp(r->name, want->name))
			return lm_seterr("expected tensor '%s' (model order), found '%s'", want->name, r->name);
		ms->dtypes[ms->next] = r->dtype;
		ms->layouts[ms->next] = r->layout;
		ms->attrs[ms->next] = json_incref(r->attrs);
		/* non-finite values are looked for in the payload as read, before it is converted */
		/* a kept-sparse payload stays beside the dense values, which are checked */
		lm_reader_keep_sparse(ms->rd, ms->keep_sparse && keeps_sparse(want->kind));
		if (lm_read_payload(ms->rd, r) < 0 || (ms->check_finite && lm_val_payload(r) < 0) ||
		    lm_model_take_sparse(m, r) < 0)
			return -1;
		lm_reader_keep_sparse(ms->rd, 0);
		lm_record_clear(r);
		ms->next++;
	}
	if (part >= L) {
		/* nothing but extra tensors and the end record may follow the tail */
		for (;;) {
			if (lm_read_record_meta(ms->rd, r) < 0)
				return -1;
			if (r->kind == LM_REC_END)
				break;
			if (lm_val_meta(&ms->val, r) < 0)
				return -1;
			if (r->kind != LM_REC_TENSOR || lm_ms_extra(ms, r->name) || is_model_name(r->name))
				return lm_seterr("unexpected %s '%s' after the last tensor of the model",
				                 r->kind == LM_REC_TENSOR ? "tensor" : "blob", r->name);
			if (lm_read_payload(ms->rd, r) < 0 || (ms->check_finite && lm_val_payload(r) < 0) ||
			    lm_ms_set_extra(ms, r) < 0)
				return -1;
		}
	}
	return 0;
}

int lm_ms_load_all(struct lm_model_stream *ms, struct lm_model *m)
{
	for (int p = LM_PART_HEAD; p <= ms->h.cfg.num_layers; p++)
		if (lm_ms_load(ms, m, p) < 0)
			return -1;
	return lm_model_check(m);
}

long lm_ms_index(const struct lm_model_stream *ms, enum lm_opt_kind kind, int layer)
{
	for (size_t i = 0; i < ms->norder; i++)
		if (ms->order[i].kind == kind && ms->order[i].layer == layer)
			return (long)i;
	return -1;
}

json_t *lm_ms_attrs(struct lm_model_stream *ms, enum lm_opt_kind kind, int layer)
{
	long i = lm_ms_index(ms, kind, layer);
	if (i < 0)
		return NULL;
	if (!ms->attrs[i])
		ms->attrs[i] = json_object();
	return ms->attrs[i];
}

int lm_ms_write_start(struct lm_model_stream *ms, struct lm_writer *w, int argc, char **argv)
{
	if (lm_write_header(w, &ms->h, argv0, argc, argv) < 0)
		return -1;
	for (size_t i = 0; i < ms->nblobs; i++) {
		struct lm_record r = {0};
		r.kind = LM_REC_BLOB;
		snprintf(r.name, sizeof r.name, "%s", ms->blobs[i].name);
		r.nbytes = ms->blobs[i].nbytes;
		r.data = ms->blobs[i].data;
		int rc = lm_write_record(w, &r);
		r.data = NULL;
		if (rc < 0)
			return -1;
	}
	return 0;
}

int lm_ms_write_part(struct lm_model_stream *ms, const struct lm_model *m, int part,
                     struct lm_writer *w)
{
	const int L = (int)ms->h.cfg.num_layers;
	for (size_t i = 0; i < ms->norder; i++) {
		const struct lm_opt_tensor *t = &ms->order[i];
		struct lm_record r = {0};
		size_t n;
		if (lm_ms_part_of(t, L) != part)
			continue;
		lm_record_tensor(&r, t->name, ms->dtypes[i], t->ndim, t->shape);
		r.layout = ms->layouts[i];
		if (ms->attrs[i]) {
			json_decref(r.attrs);
			r.attrs = json_incref(ms->attrs[i]);
		}
		n = lm_record_numel(&r);
		/* the model's accessors take a non-const model; nothing is changed through them */
		struct lm_mat *mt = lm_model_mat((struct lm_model *)m, t->kind, t->layer);
		float **vec = lm_model_vec((struct lm_model *)m, t->kind, t->layer);
		const void *src = mt ? mt->data : vec ? *vec : NULL;
		enum lm_dtype sdt = mt ? mt->dtype : LM_F32;
		if (!src) {
			lm_record_clear(&r);
			return lm_seterr("internal: tensor '%s' not loaded", t->name);
		}
		if (sdt == r.dtype) {
			r.data = (void *)src; /* written straight from the model's memory */
			int rc = lm_write_record(w, &r);
			r.data = NULL;
			lm_record_clear(&r);
			if (rc < 0)
				return -1;
			continue;
		}
		if (lm_record_alloc(&r) < 0 || lm_convert(r.data, r.dtype, src, sdt, n) < 0 ||
		    lm_write_record(w, &r) < 0) {
			lm_record_clear(&r);
			return lm_preerr("%s", t->name);
		}
		lm_record_clear(&r);
	}
	if (part < L)
		return 0;
	for (size_t i = 0; i < ms->nextras; i++)
		if (lm_write_record(w, &ms->extras[i]) < 0)
			return lm_preerr("%s", ms->extras[i].name);
	return lm_write_end(w);
}

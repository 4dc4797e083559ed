/* embstream.c: writing and reading embedding streams (see embstream.h) */
#include "embstream.h"
#include "modelio.h"
#include "sparse.h"
#include "streamwalk.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* -1 + error only when a sparse matrix's dense copy cannot be allocated */
static int crc_mat(uLong *crc, const struct lm_mat *w)
{
	int64_t shape[2] = {w->rows, w->cols};
	size_t n;
	if (!w->data || lm_dtype_nbytes(w->dtype, 2, shape, &n) < 0)
		return 0;
	if (!lm_mat_is_sparse(w)) {
		*crc = crc32_z(*crc, w->data, n);
		return 0;
	}
	/* kept sparse (lm-eval): its dense bytes, so that a model has one fingerprint in
	 * every layout its stream may store (data is only nbytes long here) */
	void *dense = lm_alloc(n);
	if (!dense || lm_sparse_decode(dense, w->data, w->nbytes, &w->layout, w->dtype, w->rows,
	                               w->cols) < 0) {
		lm_free(dense);
		return -1;
	}
	*crc = crc32_z(*crc, dense, n);
	lm_free(dense);
	return 0;
}

static uLong crc_vec(uLong crc, const float *v, size_t n)
{
	return v ? crc32_z(crc, (const unsigned char *)v, n * sizeof *v) : crc;
}

int lm_model_fingerprint(const struct lm_model *m, uint32_t *fp)
{
	size_t C = (size_t)m->cfg.hidden_size, F = (size_t)m->cfg.ffn_dim;
	uLong crc = crc32_z(0, NULL, 0);
	int rc = 0;
	rc |= crc_mat(&crc, &m->embed_tokens);
	rc |= crc_mat(&crc, &m->embed_pos);
	rc |= crc_mat(&crc, &m->project_in);
	for (int l = 0; l < m->cfg.num_layers && !rc; l++) {
		const struct lm_layer *y = &m->layers[l];
		const struct lm_mat *mats[] = {&y->q, &y->k, &y->v, &y->o, &y->fc1, &y->fc2};
		const float *vecs[] = {y->ln1_w, y->ln1_b, y->q_b, y->k_b, y->v_b, y->o_b,
		                       y->ln2_w, y->ln2_b, y->fc2_b};
		for (size_t i = 0; i < sizeof mats / sizeof *mats; i++)
			rc |= crc_mat(&crc, mats[i]);
		for (size_t i = 0; i < sizeof vecs / sizeof *vecs; i++)
			crc = crc_vec(crc, vecs[i], C);
		crc = crc_vec(crc, y->fc1_b, F);
	}
	crc = crc_vec(crc, m->final_ln_w, C);
	crc = crc_vec(crc, m->final_ln_b, C);
	rc |= crc_mat(&crc, &m->project_out);
	if (m->lm_head.data != m->embed_tokens.data)
		rc |= crc_mat(&crc, &m->lm_head);
	*fp = (uint32_t)crc;
	return rc ? -1 : 0;
}

struct lm_embed_cfg lm_emb_cfg(const struct lm_emb *e)
{
	struct lm_embed_cfg c = {.tmpl = e->tmpl, .demo = e->demo, .avg = e->avg, .verbatim = e->verbatim};
	return c;
}

static int put_tensor(struct lm_writer *w, const char *name, float *data, size_t rows, size_t cols)
{
	struct lm_record r = {0};
	int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
	lm_record_tensor(&r, name, LM_F32, 2, shape);
	r.data = data;
	int ret = lm_write_record(w, &r);
	r.data = NULL;
	lm_record_clear(&r);
	return ret;
}

int lm_emb_write(struct lm_writer *w, const struct lm_header *base, const struct lm_emb *e,
                 const char *tool, int argc, char **argv)
{
	struct lm_header h = {json_deep_copy(base->json), base->cfg};
	struct lm_record blob = {0};
	size_t tl = 0;
	char *text;
	int r = -1;

	if (!h.json)
		return lm_seterr("cannot copy the header");
	json_object_set_new(h.json, "tensor_count", json_integer(e->proj ? 2 : 1));
	json_object_set_new(h.json, "embedding",
	                    json_pack("{s:s, s:s, s:o, s:I, s:I, s:I, s:s}", "method",
	                              e->avg ? "avg" : "prompteol", "template", e->tmpl, "demo",
	                              e->demo ? json_string(e->demo) : json_null(), "count",
	                              (json_int_t)e->n, "dim", (json_int_t)e->d, "model_fingerprint",
	                              (json_int_t)e->fingerprint, "kind", e->kind));
	if (e->verbatim) /* absent: white space collapsed (lm_collapse_space), the default */
		json_object_set_new(json_object_get(h.json, "embedding"), "verbatim", json_true());
	for (size_t i = 0; i < e->n; i++)
		tl += strlen(e->lines[i]) + 1;
	text = xmalloc(tl + 1);
	tl = 0;
	for (size_t i = 0; i < e->n; i++) {
		size_t l = strlen(e->lines[i]);
		memcpy(text + tl, e->lines[i], l);
		text[tl + l] = '\n';
		tl += l + 1;
	}
	blob.kind = LM_REC_BLOB;
	snprintf(blob.name, sizeof blob.name, "%s", LM_EMB_LINES_BLOB);
	blob.nbytes = tl;
	blob.data = text;
	if (lm_write_header(w, &h, tool, argc, argv) < 0 || lm_write_record(w, &blob) < 0 ||
	    put_tensor(w, "embeddings", e->emb, e->n, e->d) < 0 ||
	    (e->proj && put_tensor(w, "projection", e->proj, e->d, e->d) < 0) || lm_write_end(w) < 0)
		goto out;
	r = 0;
out:
	free(text);
	lm_header_free(&h);
	return r;
}

static int get_int(json_t *o, const char *key, size_t *v)
{
	json_t *x = json_object_get(o, key);
	if (!json_is_integer(x) || json_integer_value(x) < 0)
		return lm_seterr("embedding header: '%s' missing or not a count", key);
	*v = (size_t)json_integer_value(x);
	return 0;
}

/* the header's "embedding" map into e */
static int parse_embedding(struct lm_emb *e, json_t *em)
{
	size_t fp;
	const char *method = json_string_value(json_object_get(em, "method"));
	const char *tmpl = json_string_value(json_object_get(em, "template"));
	const char *kind = json_string_value(json_object_get(em, "kind"));
	json_t *demo = json_object_get(em, "demo");
	if (!json_is_object(em))
		return lm_seterr("not an embedding stream (its header has no \"embedding\" map; make "
		                 "one with lm-embed)");
	if (!method || (strcmp(method, "prompteol") && strcmp(method, "avg")) || !tmpl)
		return lm_seterr("embedding header: bad method or template");
	if (get_int(em, "count", &e->n) < 0 || get_int(em, "dim", &e->d) < 0 ||
	    get_int(em, "model_fingerprint", &fp) < 0)
		return -1;
	if (demo && !json_is_null(demo) && !json_is_string(demo))
		return lm_seterr("embedding header: demo is not a string");
	e->avg = !strcmp(method, "avg");
	e->verbatim = json_is_true(json_object_get(em, "verbatim"));
	e->fingerprint = (uint32_t)fp;
	e->tmpl = xstrdup(tmpl);
	e->demo = json_is_string(demo) ? xstrdup(json_string_value(demo)) : NULL;
	e->kind = kind && !strcmp(kind, "pool") ? "pool" : "lines";
	struct lm_embed_cfg c = lm_emb_cfg(e);
	return lm_embed_cfg_check(&c) < 0 ? lm_preerr("embedding header") : 0;
}

/* Cut the lines blob into e->n lines. e takes text (frees it) even on error. The lines
 * are counted before the array is made, so the header's count can only ask for as many
 * pointers as the blob has lines (a count of 10^9 over a short blob is refused, not
 * given 8 GB). */
static int split_lines(struct lm_emb *e, char *text, size_t nbytes)
{
	size_t k = 0, nl = 0;
	e->text = text;
	for (size_t i = 0; i < nbytes; i++)
		nl += text[i] == '\n';
	if (nl > e->n)
		return lm_seterr("%s: more lines than the %zu embeddings", LM_EMB_LINES_BLOB, e->n);
	if (nl != e->n)
		return lm_seterr("%s: %zu lines for %zu embeddings", LM_EMB_LINES_BLOB, nl, e->n);
	if (nbytes && text[nbytes - 1] != '\n')
		return lm_seterr("%s: text after the last line's newline", LM_EMB_LINES_BLOB);
	e->lines = xcalloc(e->n ? e->n : 1, sizeof *e->lines);
	for (size_t i = 0, start = 0; i < nbytes; i++)
		if (text[i] == '\n') {
			text[i] = 0;
			e->lines[k++] = text + start;
			start = i + 1;
		}
	return 0;
}

static int take_tensor(struct lm_record *r, size_t rows, size_t cols, float **dst)
{
	if (r->dtype != LM_F32 || r->ndim != 2 || r->shape[0] != (int64_t)rows ||
	    r->shape[1] != (int64_t)cols)
		return lm_seterr("tensor '%s' is not f32 [%zu, %zu]", r->name, rows, cols);
	if (*dst)
		return lm_seterr("tensor '%s' given twice", r->name);
	*dst = r->data;
	r->data = NULL;
	return 0;
}

struct emb_walk {
	struct lm_emb *e;
	int have_lines;
};

/* the lines blob, the embeddings and the projection into w->e */
static int take_record(struct lm_record *r, void *ctx)
{
	struct emb_walk *w = ctx;
	struct lm_emb *e = w->e;
	if (r->kind == LM_REC_BLOB && !strcmp(r->name, LM_EMB_LINES_BLOB)) {
		if (w->have_lines++)
			return lm_seterr("blob '%s' given twice", r->name);
		char *text = r->data;
		r->data = NULL; /* e->text owns it from here, also when split_lines fails */
		return split_lines(e, text, r->nbytes);
	}
	if (r->kind == LM_REC_TENSOR && !strcmp(r->name, "embeddings"))
		return take_tensor(r, e->n, e->d, &e->emb);
	if (r->kind == LM_REC_TENSOR && !strcmp(r->name, "projection"))
		return take_tensor(r, e->d, e->d, &e->proj);
	return 0;
}

int lm_emb_read(struct lm_emb *e, const char *path)
{
	struct lm_header h = {0};
	struct lm_reader *rd;
	struct emb_walk w = {e, 0};
	int fd, ret = -1;

	memset(e, 0, sizeof *e);
	if ((fd = open(path, O_RDONLY)) < 0)
		return lm_seterr("cannot open: %s", strerror(errno));
	rd = lm_reader_open(fd, path);
	if (lm_read_header(rd, &h) < 0)
		goto out;
	e->cfg = h.cfg;
	e->header = h.json;
	h.json = NULL;
	if (parse_embedding(e, json_object_get(e->header, "embedding")) < 0 ||
	    lm_walk_records(rd, take_record, &w) < 0)
		goto out;
	if (!e->emb || !w.have_lines) {
		lm_seterr("no %s", !e->emb ? "\"embeddings\" tensor" : LM_EMB_LINES_BLOB " blob");
		goto out;
	}
	ret = 0;
out:
	lm_header_free(&h);
	lm_reader_close(rd);
	close(fd);
	if (ret < 0) {
		lm_preerr("%s", path);
		lm_emb_free(e);
	}
	return ret;
}

void lm_emb_free(struct lm_emb *e)
{
	free(e->tmpl);
	free(e->demo);
	lm_free(e->emb);
	lm_free(e->proj);
	free(e->lines);
	lm_free(e->text);
	json_decref(e->header);
	memset(e, 0, sizeof *e);
}

int lm_emb_check_model(const struct lm_emb *e, const struct lm_opt_config *cfg, uint32_t fp)
{
	if (e->d != (size_t)cfg->word_embed_proj_dim)
		return lm_seterr("embeddings of dimension %zu, this model's are %lld: made with another "
		                 "model", e->d, (long long)cfg->word_embed_proj_dim);
	if (e->fingerprint != fp)
		return lm_seterr("embedded by another model (fingerprint %08x, this model's is %08x); "
		                 "embed the pool again with this model", e->fingerprint, fp);
	return 0;
}

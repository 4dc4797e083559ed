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
	ms->order = lm_opt_tensors(&ms->h.cfg, &ms->norder);
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
	free(ms->order);
	lm_record_clear(&ms->pending);
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

static int part_of(const struct lm_opt_tensor *t, int L)
{
	if (t->layer >= 0)
		return t->layer;
	return (t->kind == LM_T_EMBED_TOKENS || t->kind == LM_T_EMBED_POS || t->kind == LM_T_PROJECT_IN)
	               ? LM_PART_HEAD : L;
}

int lm_ms_load(struct lm_model_stream *ms, struct lm_model *m, int part)
{
	const int L = (int)ms->h.cfg.num_layers;
	struct lm_record *r = &ms->pending;
	while (ms->next < ms->norder && part_of(&ms->order[ms->next], L) <= part) {
		const struct lm_opt_tensor *want = &ms->order[ms->next];
		if (part_of(want, L) < part)
			return lm_seterr("internal: part %d read before part %d", part, part_of(want, L));
		if (!ms->have_pending && lm_read_record_meta(ms->rd, r) < 0)
			return -1;
		ms->have_pending = 0;
		if (r->kind != LM_REC_TENSOR)
			return lm_seterr("expected tensor '%s', found %s", want->name,
			                 r->kind == LM_REC_END ? "the end of the stream" : "a blob");
		if (strcmp(r->name, want->name))
			return lm_seterr("expected tensor '%s' (model order), found '%s'", want->name, r->name);
		if (lm_read_payload(ms->rd, r) < 0 || lm_model_take_record(m, r) < 0)
			return -1;
		lm_record_clear(r);
		ms->next++;
	}
	if (ms->check_finite && lm_model_check_finite_part(m, part < L && part >= 0 ? part : -1) < 0)
		return -1;
	if (part >= L) {
		/* nothing but the end record may follow the tail */
		if (lm_read_record_meta(ms->rd, r) < 0)
			return -1;
		if (r->kind != LM_REC_END)
			return lm_seterr("unexpected %s '%s' after the last tensor of the model",
			                 r->kind == LM_REC_TENSOR ? "tensor" : "blob", r->name);
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

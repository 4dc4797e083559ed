/* textids.c: token ids from a text or an lm-stream of ids (see textids.h) */
#include "textids.h"
#include "streamwalk.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lm_tokenizer *lm_ids_tokenizer(const struct lm_model_stream *ms, const char *why)
{
	const struct lm_blob *v = lm_ms_blob(ms, "tokenizer/vocab.json");
	const struct lm_blob *m = lm_ms_blob(ms, "tokenizer/merges.txt");
	struct lm_tokenizer *t;
	if (!v || !m) {
		lm_seterr("the stream carries no tokenizer (vocab.json and merges.txt blobs), needed for %s", why);
		return NULL;
	}
	if (!(t = lm_tokenizer_load(v->data, v->nbytes, m->data, m->nbytes)))
		lm_preerr("the stream's tokenizer");
	return t;
}

/* an lm-stream starts with a msgpack fixmap (0x80..0x8f) whose first key is "format" and
 * value "lm-stream"; no UTF-8 text starts with such a byte */
static int looks_like_stream(const char *p, size_t len)
{
	static const char magic[] = "lm-stream";
	size_t lim = len < 64 ? len : 64, ml = sizeof magic - 1;
	if (len <= 12 || ((unsigned char)p[0] & 0xf0) != 0x80)
		return 0;
	for (size_t i = 0; i + ml <= lim; i++)
		if (!memcmp(p + i, magic, ml))
			return 1;
	return 0;
}

struct ids_walk {
	int64_t vocab;
	int32_t *ids;
	size_t n;
};

/* the first tensor "ids" into w->ids, each id in the vocabulary */
static int take_ids(struct lm_record *r, void *ctx)
{
	struct ids_walk *w = ctx;
	if (r->kind != LM_REC_TENSOR || strcmp(r->name, "ids") || w->ids)
		return 0;
	size_t k = lm_record_numel(r);
	if (r->dtype != LM_I32 && r->dtype != LM_I64)
		return lm_seterr("tensor 'ids' is %s, not i32 or i64", lm_dtype_name(r->dtype));
	w->ids = xmalloc((k ? k : 1) * sizeof *w->ids);
	for (size_t i = 0; i < k; i++) {
		int64_t v = r->dtype == LM_I32 ? ((int32_t *)r->data)[i] : ((int64_t *)r->data)[i];
		/* checked before narrowing, so no huge id wraps into the vocabulary */
		if (v < 0 || v >= w->vocab)
			return lm_seterr("token id %lld at %zu outside the vocabulary", (long long)v, i);
		w->ids[i] = (int32_t)v;
	}
	w->n = k;
	return 0;
}

/* the first tensor "ids" of an lm-stream file */
static int stream_ids(const char *path, int64_t vocab, int32_t **out, size_t *n)
{
	int fd = open(path, O_RDONLY), rc = -1;
	struct lm_reader *rd;
	struct lm_header h = {0};
	struct ids_walk w = {vocab, NULL, 0};
	if (fd < 0)
		return lm_seterr("%s", strerror(errno));
	rd = lm_reader_open(fd, path);
	if (lm_read_header(rd, &h) < 0 || lm_walk_records(rd, take_ids, &w) < 0)
		goto out;
	if (!w.ids) {
		lm_seterr("the stream has no tensor 'ids'");
		goto out;
	}
	*out = w.ids, *n = w.n, w.ids = NULL;
	rc = 0;
out:
	free(w.ids);
	lm_header_free(&h);
	lm_reader_close(rd);
	close(fd);
	return rc;
}

/* -1 + error at the first NUL byte of buf[from, n) */
static int no_nul(const char *buf, size_t from, size_t n)
{
	const char *nul = memchr(buf + from, 0, n - from);
	return nul ? lm_seterr("a NUL byte at offset %zu: not text (nor an lm-stream of ids)",
	                       (size_t)(nul - buf))
	           : 0;
}

/* read_text's check of the bytes read so far: head once the first 64 bytes (or the whole
 * file, when shorter) were looked at */
struct text_check {
	int head, stream;
};

static int check_text(void *ctx, const char *buf, size_t from, size_t n, int eof)
{
	struct text_check *t = ctx;
	if (!t->head) {
		if (!eof && n < 64)
			return 0;
		if (looks_like_stream(buf, n)) {
			t->stream = 1;
			return 1;
		}
		from = 0; /* the first time all the bytes, then those just read */
	} else if (eof) {
		return 0;
	}
	if (no_nul(buf, from, n) < 0)
		return -1;
	t->head = 1;
	if (n > LM_TEXT_MAX)
		return lm_seterr("text larger than %zu MiB", LM_TEXT_MAX >> 20);
	return 0;
}

/* Read a text file whole, refusing a NUL byte (text has none; /dev/zero or a binary file
 * would otherwise be read, and tokenized, up to the limit) and more than LM_TEXT_MAX
 * bytes, each as soon as the bytes are read. An lm-stream (which has NULs) is told by
 * its first 64 bytes: *stream is set and the file is not read further. */
static char *read_text(const char *path, size_t *len, int *stream)
{
	struct text_check t = {0, 0};
	char *buf = lm_read_file_checked(path, LM_TEXT_MAX + 1, len, check_text, &t);
	*stream = t.stream;
	return buf;
}

int lm_ids_load(const char *path, const struct lm_model_stream *ms, int32_t **ids, size_t *n)
{
	size_t len, nb;
	int stream;
	char *text = read_text(path, &len, &stream);
	struct lm_tokenizer *tk;
	int32_t *body;
	if (!text)
		return -1;
	if (stream) {
		free(text);
		return stream_ids(path, ms->h.cfg.vocab_size, ids, n);
	}
	if (!(tk = lm_ids_tokenizer(ms, "text input"))) {
		free(text);
		return -1;
	}
	int rc = lm_tokenize(tk, text, len, &body, &nb);
	free(text);
	lm_tokenizer_free(tk);
	if (rc < 0)
		return -1;
	*ids = xmalloc((nb + 1) * sizeof **ids);
	(*ids)[0] = ms->h.cfg.bos;
	memcpy(*ids + 1, body, nb * sizeof **ids);
	*n = nb + 1;
	free(body);
	for (size_t i = 0; i < *n; i++)
		if ((*ids)[i] < 0 || (*ids)[i] >= ms->h.cfg.vocab_size) {
			lm_seterr("token id %d at %zu outside the vocabulary", (*ids)[i], i);
			free(*ids);
			*ids = NULL;
			return -1;
		}
	return 0;
}

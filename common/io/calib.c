/* calib.c: see calib.h */
#include "calib.h"
#include "kernels.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct lm_tokenizer *lm_calib_tokenizer(const struct lm_model_stream *ms, const char *why)
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

/* the first tensor "ids" of an lm-stream file */
static int stream_ids(const char *path, int64_t vocab, int32_t **out, size_t *n)
{
	int fd = open(path, O_RDONLY), rc = -1;
	struct lm_reader *rd;
	struct lm_header h = {0};
	struct lm_record r = {0};
	int32_t *ids = NULL;
	if (fd < 0)
		return lm_seterr("%s", strerror(errno));
	rd = lm_reader_open(fd, path);
	if (lm_read_header(rd, &h) < 0)
		goto out;
	for (;;) {
		if (lm_read_record(rd, &r) < 0)
			goto out;
		if (r.kind == LM_REC_END)
			break;
		if (r.kind == LM_REC_TENSOR && !strcmp(r.name, "ids") && !ids) {
			size_t k = lm_record_numel(&r);
			if (r.dtype != LM_I32 && r.dtype != LM_I64) {
				lm_seterr("tensor 'ids' is %s, not i32 or i64", lm_dtype_name(r.dtype));
				goto out;
			}
			ids = xmalloc((k ? k : 1) * sizeof *ids);
			for (size_t i = 0; i < k; i++) {
				int64_t v = r.dtype == LM_I32 ? ((int32_t *)r.data)[i] : ((int64_t *)r.data)[i];
				/* checked before narrowing, so no huge id wraps into the vocabulary */
				if (v < 0 || v >= vocab) {
					lm_seterr("token id %lld at %zu outside the vocabulary", (long long)v, i);
					goto out;
				}
				ids[i] = (int32_t)v;
			}
			*n = k;
		}
		lm_record_clear(&r);
	}
	if (!ids) {
		lm_seterr("the stream has no tensor 'ids'");
		goto out;
	}
	*out = ids, ids = NULL;
	rc = 0;
out:
	free(ids);
	lm_record_clear(&r);
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

/* Read a text file whole, refusing a NUL byte (text has none; /dev/zero or a binary file
 * would otherwise be read, and tokenized, up to the limit) and more than LM_TEXT_MAX
 * bytes, each as soon as the bytes are read. An lm-stream (which has NULs) is told by
 * its first 64 bytes: *stream is set and the file is not read further. */
static char *read_text(const char *path, size_t *len, int *stream)
{
	int fd = open(path, O_RDONLY), head = 0;
	size_t cap = 1 << 16, n = 0;
	char *buf;
	*stream = 0;
	if (fd < 0) {
		lm_seterr("%s", strerror(errno));
		return NULL;
	}
	buf = xmalloc(cap + 1);
	for (;;) {
		ssize_t r;
		if (n == cap) { /* n <= LM_TEXT_MAX here, so cap stops at LM_TEXT_MAX + 1 */
			cap = cap * 2 > LM_TEXT_MAX + 1 ? LM_TEXT_MAX + 1 : cap * 2;
			buf = xrealloc(buf, cap + 1);
		}
		if ((r = read(fd, buf + n, cap - n)) < 0) {
			if (errno == EINTR)
				continue;
			lm_seterr("%s", strerror(errno));
			goto fail;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (!head && n < 64)
			continue;
		if (!head && looks_like_stream(buf, n)) {
			*stream = 1;
			break;
		}
		/* the first time all the bytes, then those just read */
		if (no_nul(buf, head ? n - (size_t)r : 0, n) < 0)
			goto fail;
		head = 1;
		if (n > LM_TEXT_MAX) {
			lm_seterr("text larger than %zu MiB", LM_TEXT_MAX >> 20);
			goto fail;
		}
	}
	if (!head && looks_like_stream(buf, n))
		*stream = 1;
	else if (!head && no_nul(buf, 0, n) < 0)
		goto fail;
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
fail:
	close(fd);
	free(buf);
	return NULL;
}

int lm_calib_load_ids(const char *path, const struct lm_model_stream *ms, int32_t **ids, size_t *n)
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
	if (!(tk = lm_calib_tokenizer(ms, "text input"))) {
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

int lm_calib_init(struct lm_calib *c, const struct lm_model *m, const int32_t *ids, size_t W,
                  size_t T, size_t B)
{
	size_t xn, tn;
	memset(c, 0, sizeof *c);
	if (W == 0 || T == 0)
		return lm_seterr("calibration: no windows");
	if (B > W)
		B = W;
	if (B == 0)
		B = 1;
	c->W = W, c->T = T, c->B = B, c->C = (size_t)m->cfg.hidden_size;
	if (lm_fwd_init(&c->s, &m->cfg, B, T) < 0)
		return -1;
	if (lm_mul(W * T, c->C, &xn) < 0 || lm_mul(xn, sizeof(float), &xn) < 0 ||
	    lm_mul(B * T, c->C * sizeof(float), &tn) < 0 || !(c->X = lm_alloc(xn)) ||
	    !(c->tmp = lm_alloc(tn))) {
		lm_calib_free(c);
		return lm_preerr("calibration activations (%zu windows of %zu tokens)", W, T);
	}
	for (size_t w0 = 0; w0 < W; w0 += B) {
		size_t nb = W - w0 < B ? W - w0 : B;
		if (lm_forward_embed(&c->s, m, ids + w0 * T, nb, T) < 0) {
			lm_calib_free(c);
			return -1;
		}
		memcpy(c->X + w0 * T * c->C, c->s.x, nb * T * c->C * sizeof *c->X);
	}
	return 0;
}

int lm_calib_observe(struct lm_calib *c, const struct lm_layer *l, int layer, lm_fwd_hook *hook,
                     void *ctx)
{
	int rc = 0;
	c->s.hook = hook, c->s.hook_ctx = ctx;
	for (size_t w0 = 0; w0 < c->W && rc == 0; w0 += c->B) {
		size_t nb = c->W - w0 < c->B ? c->W - w0 : c->B;
		memcpy(c->tmp, c->X + w0 * c->T * c->C, nb * c->T * c->C * sizeof *c->tmp);
		rc = lm_forward_layer(&c->s, l, layer, c->tmp, nb, c->T);
	}
	c->s.hook = NULL, c->s.hook_ctx = NULL;
	return rc;
}

int lm_calib_advance(struct lm_calib *c, const struct lm_layer *l, int layer)
{
	for (size_t w0 = 0; w0 < c->W; w0 += c->B) {
		size_t nb = c->W - w0 < c->B ? c->W - w0 : c->B;
		if (lm_forward_layer(&c->s, l, layer, c->X + w0 * c->T * c->C, nb, c->T) < 0)
			return -1;
	}
	return 0;
}

void lm_calib_free(struct lm_calib *c)
{
	lm_free(c->X);
	lm_free(c->tmp);
	lm_fwd_free(&c->s);
	memset(c, 0, sizeof *c);
}

int lm_calib_group(enum lm_opt_kind k)
{
	switch (k) {
	case LM_T_Q_W: case LM_T_K_W: case LM_T_V_W: return LM_G_QKV;
	case LM_T_O_W: return LM_G_O;
	case LM_T_FC1_W: return LM_G_FC1;
	case LM_T_FC2_W: return LM_G_FC2;
	default: return -1;
	}
}

int lm_layer_stats_init(struct lm_layer_stats *st, const struct lm_opt_config *cfg,
                        const int want[LM_G_COUNT], int hessian, size_t T)
{
	memset(st, 0, sizeof *st);
	st->hessian = hessian, st->T = T;
	st->cols[LM_G_QKV] = st->cols[LM_G_O] = st->cols[LM_G_FC1] = (size_t)cfg->hidden_size;
	st->cols[LM_G_FC2] = (size_t)cfg->ffn_dim;
	for (int g = 0; g < LM_G_COUNT; g++) {
		if (!(st->want[g] = want[g]))
			continue;
		if (hessian ? lm_hessian_init(&st->h[g], st->cols[g]) < 0
		            : !(st->sumsq[g] = calloc(st->cols[g], sizeof(double)))) {
			lm_layer_stats_free(st);
			return hessian ? -1 : lm_seterr("out of memory");
		}
	}
	return 0;
}

void lm_layer_stats_free(struct lm_layer_stats *st)
{
	for (int g = 0; g < LM_G_COUNT; g++) {
		lm_hessian_free(&st->h[g]);
		free(st->sumsq[g]);
	}
	memset(st, 0, sizeof *st);
}

struct sq_job {
	double *s;
	const float *x;
	size_t N, cols;
};

/* columns j0..j1 of the sums: a column range per thread, so no sum is shared */
static void sumsq_cols(void *ctx, size_t j0, size_t j1, int part)
{
	const struct sq_job *j = ctx;
	(void)part;
	for (size_t r = 0; r < j->N; r++) {
		const float *x = j->x + r * j->cols;
		for (size_t c = j0; c < j1; c++)
			j->s[c] += (double)x[c] * x[c];
	}
}

void lm_layer_stats_hook(void *ctx, int layer, enum lm_opt_kind k, const float *inp, size_t N,
                         size_t cols)
{
	struct lm_layer_stats *st = ctx;
	int g = lm_calib_group(k);
	(void)layer;
	/* k and v see q's input again */
	if (g < 0 || !st->want[g] || k == LM_T_K_W || k == LM_T_V_W || cols != st->cols[g])
		return;
	if (st->hessian) {
		lm_hessian_add(&st->h[g], inp, N, N / st->T);
	} else {
		struct sq_job j = {st->sumsq[g], inp, N, cols};
		lm_parallel_for(cols, 64, 0, sumsq_cols, &j);
	}
}

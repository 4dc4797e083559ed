/* stream.c: lm-stream reader and writer (format in man/lm-stream.5, API in stream.h).
 *
 * Reading: maps are located with lm_msgpack_skim over our own buffer and decoded with
 * msgpack_unpack_next on exactly those bytes; payload bin headers are parsed by hand
 * and their bytes read straight into aligned memory, never through an unpacker.
 * Writing: maps are packed into a 1 MiB buffer; payloads are written from the
 * tensor's own memory after a flush (zero copy). */
#include "stream.h"
#include "mpjson.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define RBUF (LM_MAX_MAP_BYTES + (64u << 10))
#define WBUF (1u << 20)

/* ---------------------------------------------------------------- records */

size_t lm_record_numel(const struct lm_record *r)
{
	size_t n = 1;
	for (int i = 0; i < r->ndim; i++)
		n *= (size_t)r->shape[i];
	return n;
}

void lm_record_clear(struct lm_record *r)
{
	json_decref(r->attrs);
	lm_free(r->data);
	lm_free(r->wire);
	memset(r, 0, sizeof *r);
}

void lm_record_tensor(struct lm_record *r, const char *name, enum lm_dtype dt, int ndim,
                      const int64_t *shape)
{
	lm_record_clear(r);
	r->kind = LM_REC_TENSOR;
	snprintf(r->name, sizeof r->name, "%s", name);
	r->dtype = dt;
	r->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		r->shape[i] = shape[i];
	if (lm_dtype_nbytes(dt, ndim, shape, &r->nbytes) < 0)
		r->nbytes = 0; /* lm_write_record then refuses it */
	r->attrs = json_object();
}

int lm_record_alloc(struct lm_record *r)
{
	lm_free(r->data);
	r->data = lm_alloc(r->nbytes);
	return r->data ? 0 : -1;
}

/* ---------------------------------------------------------------- reader */

struct lm_reader {
	int fd;
	char *name;
	unsigned char *buf;
	size_t start, end;       /* unread bytes are buf[start..end) */
	int eof, verify, have_header, have_end, pending, keep_sparse;
	uint64_t nrec, ntensors, nblobs, payload;
	uint64_t remaining;      /* bytes left in a regular file, UINT64_MAX for pipes */
};

struct lm_reader *lm_reader_open(int fd, const char *name)
{
	struct lm_reader *rd = xcalloc(1, sizeof *rd);
	struct stat st;
	rd->fd = fd;
	rd->name = xstrdup(name);
	rd->buf = xmalloc(RBUF);
	rd->verify = 1;
	rd->remaining = UINT64_MAX;
	/* on a regular file a size claim can be checked against what is really there */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		off_t pos = lseek(fd, 0, SEEK_CUR);
		rd->remaining = (uint64_t)(st.st_size - (pos > 0 ? pos : 0));
	}
	return rd;
}

void lm_reader_close(struct lm_reader *rd)
{
	if (!rd)
		return;
	free(rd->buf);
	free(rd->name);
	free(rd);
}

void lm_reader_set_verify(struct lm_reader *rd, int verify) { rd->verify = verify; }
void lm_reader_keep_sparse(struct lm_reader *rd, int keep) { rd->keep_sparse = keep; }
const char *lm_reader_name(const struct lm_reader *rd) { return rd->name; }
uint64_t lm_reader_count(const struct lm_reader *rd) { return rd->nrec; }

/* read more bytes into the buffer; 0 on EOF, -1 on error */
static ssize_t fill(struct lm_reader *rd)
{
	ssize_t r;
	if (rd->start > 0) {
		memmove(rd->buf, rd->buf + rd->start, rd->end - rd->start);
		rd->end -= rd->start;
		rd->start = 0;
	}
	if (rd->end == RBUF)
		return lm_seterr("internal: read buffer full");
	do
		r = read(rd->fd, rd->buf + rd->end, RBUF - rd->end);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return lm_seterr("read error: %s", strerror(errno));
	if (r == 0)
		rd->eof = 1;
	rd->end += (size_t)r;
	if (rd->remaining != UINT64_MAX)
		rd->remaining -= (uint64_t)r < rd->remaining ? (uint64_t)r : rd->remaining;
	return r;
}

/* read exactly n bytes, from the buffer first, then straight from the fd */
static int take(struct lm_reader *rd, void *dst, size_t n)
{
	size_t have = rd->end - rd->start, k = have < n ? have : n;
	memcpy(dst, rd->buf + rd->start, k);
	rd->start += k;
	if (k < n) {
		if (lm_read_full(rd->fd, (char *)dst + k, n - k) < 0)
			return -1;
		if (rd->remaining != UINT64_MAX)
			rd->remaining -= n - k;
	}
	return 0;
}

/* decode the next map; 1 = clean EOF before it, 0 = ok, -1 = error.
 * Maps larger than LM_MAX_MAP_BYTES are refused; RBUF must hold the largest. */
static int read_map(struct lm_reader *rd, json_t **out)
{
	long long n;
	for (;;) {
		n = lm_msgpack_skim(rd->buf + rd->start, rd->end - rd->start, LM_MAX_MAP_BYTES);
		if (n < 0)
			return lm_seterr("malformed or oversized record map");
		if (n > 0)
			break;
		if (rd->eof || fill(rd) <= 0) {
			if (rd->end == rd->start && rd->eof)
				return 1;
			return rd->eof ? lm_seterr("truncated record map") : -1;
		}
	}
	msgpack_unpacked u;
	size_t off = 0;
	msgpack_unpacked_init(&u);
	int rc = msgpack_unpack_next(&u, (const char *)rd->buf + rd->start, (size_t)n, &off);
	if (rc != MSGPACK_UNPACK_SUCCESS || off != (size_t)n) {
		msgpack_unpacked_destroy(&u);
		return lm_seterr("malformed record map");
	}
	if (u.data.type != MSGPACK_OBJECT_MAP) {
		msgpack_unpacked_destroy(&u);
		return lm_seterr("expected a map");
	}
	*out = lm_msgpack_to_json(&u.data);
	msgpack_unpacked_destroy(&u);
	if (!*out)
		return -1;
	rd->start += (size_t)n;
	return 0;
}

static int get_u64(json_t *m, const char *key, uint64_t *v)
{
	json_t *x = json_object_get(m, key);
	if (!json_is_integer(x) || json_integer_value(x) < 0)
		return lm_seterr("missing or bad \"%s\"", key);
	*v = (uint64_t)json_integer_value(x);
	return 0;
}

void lm_header_free(struct lm_header *h)
{
	json_decref(h->json);
	memset(h, 0, sizeof *h);
}

int lm_read_header(struct lm_reader *rd, struct lm_header *h)
{
	json_t *m = NULL, *ver;
	const char *first = NULL;
	void *it;
	int rc;

	memset(h, 0, sizeof *h);
	/* a stream starts with a map whose first key is "format": peek before decoding */
	while (rd->end - rd->start < 1 && !rd->eof)
		if (fill(rd) < 0)
			return -1;
	if (rd->end == rd->start)
		return lm_seterr("empty input (expected an lm-stream)");
	if ((rd->buf[rd->start] & 0xf0) != 0x80 && rd->buf[rd->start] != 0xde)
		return lm_seterr("not an lm-stream (bad magic)");
	rc = read_map(rd, &m);
	if (rc != 0) {
		if (rc > 0)
			lm_seterr("empty input");
		return lm_preerr("not an lm-stream");
	}
	it = json_object_iter(m);
	if (it)
		first = json_object_iter_key(it);
	if (!first || strcmp(first, "format") || !json_is_string(json_object_iter_value(it)) ||
	    strcmp(json_string_value(json_object_iter_value(it)), "lm-stream")) {
		json_decref(m);
		return lm_seterr("not an lm-stream (bad magic)");
	}
	ver = json_object_get(m, "version");
	if (!json_is_array(ver) || json_array_size(ver) < 2 || !json_is_integer(json_array_get(ver, 0))) {
		json_decref(m);
		return lm_seterr("header: missing version");
	}
	if (json_integer_value(json_array_get(ver, 0)) != LM_STREAM_MAJOR) {
		lm_seterr("unsupported stream version %lld.%lld (this program reads %d.x)",
		          (long long)json_integer_value(json_array_get(ver, 0)),
		          (long long)json_integer_value(json_array_get(ver, 1)), LM_STREAM_MAJOR);
		json_decref(m);
		return -1;
	}
	const char *endian = json_string_value(json_object_get(m, "endian"));
	if (endian && strcmp(endian, "little")) {
		json_decref(m);
		return lm_seterr("header: big-endian streams are not supported");
	}
	h->json = m;
	if (lm_opt_config_from_json(&h->cfg, json_object_get(m, "model")) < 0) {
		lm_header_free(h);
		return -1;
	}
	rd->have_header = 1;
	return 0;
}

static const char *kind_name(enum lm_rec_kind k)
{
	return k == LM_REC_TENSOR ? "tensor" : k == LM_REC_BLOB ? "blob" : k == LM_REC_END ? "end" : "record";
}

static int parse_record(struct lm_reader *rd, json_t *m, struct lm_record *r)
{
	const char *kind = json_string_value(json_object_get(m, "kind"));
	const char *name;
	json_t *shape, *attrs;
	uint64_t v;
	size_t numel = 1, nbytes;

	if (!kind)
		return lm_seterr("record without a kind");
	if (!strcmp(kind, "end")) {
		r->kind = LM_REC_END;
		if (get_u64(m, "tensor_count", &r->tensor_count) || get_u64(m, "payload_bytes", &r->payload_bytes))
			return -1;
		r->blob_count = UINT64_MAX;
		if (json_object_get(m, "blob_count") && get_u64(m, "blob_count", &r->blob_count))
			return -1;
		return 0;
	}
	/* a kind from a later minor version: its payload is skipped by nbytes */
	r->kind = !strcmp(kind, "tensor") ? LM_REC_TENSOR : !strcmp(kind, "blob") ? LM_REC_BLOB : LM_REC_UNKNOWN;
	name = json_string_value(json_object_get(m, "name"));
	if (!name || !*name || strlen(name) > LM_MAX_NAME)
		return lm_seterr("%s record without a valid name", kind);
	/* "embed_tokens.weight\0evil" must not pass for the embedding: C strings end at NUL */
	if (strlen(name) != json_string_length(json_object_get(m, "name")))
		return lm_seterr("%s '%s': a NUL byte inside the name", kind, name);
	snprintf(r->name, sizeof r->name, "%s", name);
	if (get_u64(m, "nbytes", &v) < 0)
		return lm_preerr("%s '%s'", kind, name);
	if (v > ((uint64_t)1 << 42))
		return lm_seterr("%s '%s': absurd size %llu bytes", kind, name, (unsigned long long)v);
	r->nbytes = (size_t)v;
	if (rd->remaining != UINT64_MAX && v > rd->remaining + (rd->end - rd->start))
		return lm_seterr("%s '%s': input truncated: claims %llu bytes, only %llu left", kind, name,
		                 (unsigned long long)v,
		                 (unsigned long long)(rd->remaining + (rd->end - rd->start)));
	if (get_u64(m, "crc32", &v) < 0 || v > 0xffffffffu)
		return lm_seterr("%s '%s': missing or bad crc32", kind, name);
	r->crc32 = (uint32_t)v;
	if (r->kind != LM_REC_TENSOR)
		return 0;
	json_t *jdt = json_object_get(m, "dtype");
	const char *dt = json_string_value(jdt);
	int t = dt && strlen(dt) == json_string_length(jdt) ? lm_dtype_parse(dt) : -1;
	if (json_is_integer(jdt)) { /* the ids are stable, but the wire carries names */
		json_int_t id = json_integer_value(jdt);
		const struct lm_dtype_info *in = id >= 0 && id < LM_DTYPE_COUNT ? lm_dtype_info((enum lm_dtype)id) : NULL;
		const char *known = in ? in->name : NULL;
		return lm_seterr("tensor '%s': dtype is the number %lld%s%s%s, not a name such as \"f32\"",
		                 name, (long long)id, known ? " (the id of " : "", known ? known : "",
		                 known ? ")" : "");
	}
	if (!jdt)
		return lm_seterr("tensor '%s': no dtype", name);
	if (!dt)
		return lm_seterr("tensor '%s': dtype is not a string", name);
	if (t < 0 || strcmp(dt, lm_dtype_name(t)))
		return lm_seterr("tensor '%s': unknown dtype \"%s\"", name, dt);
	r->dtype = t;
	shape = json_object_get(m, "shape");
	if (!json_is_array(shape) || json_array_size(shape) > LM_MAX_NDIM)
		return lm_seterr("tensor '%s': bad shape", name);
	r->ndim = (int)json_array_size(shape);
	for (int i = 0; i < r->ndim; i++) {
		json_t *d = json_array_get(shape, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return lm_seterr("tensor '%s': bad shape", name);
		r->shape[i] = json_integer_value(d);
		if (lm_mul(numel, (size_t)r->shape[i], &numel) < 0)
			return lm_preerr("tensor '%s'", name);
	}
	/* packed types: the group size is in the dtype, so this holds for them too */
	if (lm_dtype_nbytes(r->dtype, r->ndim, r->shape, &nbytes) < 0)
		return lm_preerr("tensor '%s'", name);
	r->wire_nbytes = r->nbytes;
	memset(&r->layout, 0, sizeof r->layout);
	json_t *jl = json_object_get(m, "layout");
	if (jl) {
		const char *ls = json_string_value(jl);
		if (!ls || strlen(ls) != json_string_length(jl))
			return lm_seterr("tensor '%s': layout is not a string", name);
		/* the payload is checked against the layout before anything is allocated; it
		 * is expanded to nbytes of dense data once read (lm_read_payload) */
		if (lm_layout_parse(ls, &r->layout) < 0 ||
		    (lm_layout_is_sparse(&r->layout) &&
		     lm_sparse_check(&r->layout, r->dtype, r->ndim, r->shape, r->nbytes) < 0))
			return lm_preerr("tensor '%s'", name);
	}
	/* a sparse record's nbytes, checked above, stays the wire's until the payload is read */
	if (!lm_layout_is_sparse(&r->layout) && nbytes != r->nbytes)
		return lm_seterr("tensor '%s': nbytes %zu does not match shape and dtype (%zu)", name,
		                 r->nbytes, nbytes);
	attrs = json_object_get(m, "attrs");
	if (attrs && !json_is_object(attrs))
		return lm_seterr("tensor '%s': attrs is not a map", name);
	r->attrs = attrs ? json_incref(attrs) : json_object();
	return 0;
}

static int read_record_meta(struct lm_reader *rd, struct lm_record *r);

int lm_read_record_meta(struct lm_reader *rd, struct lm_record *r)
{
	for (;;) {
		if (read_record_meta(rd, r) < 0)
			return -1;
		if (r->kind != LM_REC_UNKNOWN)
			return 0;
		if (lm_read_payload(rd, r) < 0)
			return -1;
	}
}

static int read_record_meta(struct lm_reader *rd, struct lm_record *r)
{
	json_t *m = NULL;
	int rc;

	lm_record_clear(r);
	if (!rd->have_header)
		return lm_seterr("internal: record read before header");
	if (rd->have_end)
		return lm_seterr("read past the end record");
	if (rd->pending)
		return lm_seterr("internal: payload of the previous record not read");
	rc = read_map(rd, &m);
	if (rc > 0)
		return lm_seterr("unexpected end of stream after %llu records (%llu tensors): the "
		                 "upstream program may have failed", (unsigned long long)rd->nrec,
		                 (unsigned long long)rd->ntensors);
	if (rc < 0)
		return lm_preerr("record %llu", (unsigned long long)rd->nrec + 1);
	rc = parse_record(rd, m, r);
	json_decref(m);
	if (rc < 0) {
		lm_record_clear(r);
		return lm_preerr("record %llu", (unsigned long long)rd->nrec + 1);
	}
	rd->nrec++;
	if (r->kind == LM_REC_END) {
		rd->have_end = 1;
		if (r->tensor_count != rd->ntensors || r->payload_bytes != rd->payload ||
		    (r->blob_count != UINT64_MAX && r->blob_count != rd->nblobs))
		{
			char claim[32] = "";
			if (r->blob_count != UINT64_MAX)
				snprintf(claim, sizeof claim, "%llu blobs, ", (unsigned long long)r->blob_count);
			return lm_seterr("end record counts (%llu tensors, %s%llu bytes) do not match the "
			                 "stream (%llu tensors, %llu blobs, %llu bytes)",
			                 (unsigned long long)r->tensor_count, claim,
			                 (unsigned long long)r->payload_bytes, (unsigned long long)rd->ntensors,
			                 (unsigned long long)rd->nblobs, (unsigned long long)rd->payload);
		}
		/* nothing may follow the end record */
		while (rd->end == rd->start && !rd->eof)
			if (fill(rd) < 0)
				return -1;
		if (rd->end != rd->start)
			return lm_seterr("trailing data after the end record");
		return 0;
	}
	rd->pending = 1;
	return 0;
}

/* make room for need bytes of r's payload, got of them already read. On a regular file
 * the claim was checked against the file's size, so the whole payload is allocated at
 * once; on a pipe nothing bounds a header's claim, so memory follows the chunks that
 * arrive (each at most 1 GiB, doubling to keep the copies few): a lying header fails as
 * truncated instead of allocating what it claims */
static int reserve(struct lm_reader *rd, struct lm_record *r, size_t *cap, size_t got, size_t need)
{
	size_t want;
	void *p;
	if (need <= *cap)
		return 0;
	want = rd->remaining != UINT64_MAX ? r->nbytes : *cap * 2 > need ? *cap * 2 : need;
	if (want > r->nbytes)
		want = r->nbytes;
	if (!(p = lm_alloc(want)))
		return lm_preerr("%s '%s'", kind_name(r->kind), r->name);
	if (got)
		memcpy(p, r->data, got);
	lm_free(r->data);
	r->data = p, *cap = want;
	return 0;
}

/* a sparse payload, read and CRC-checked as it came, replaced by the dense matrix (and
 * kept in r->wire when keep) */
static int expand(struct lm_record *r, int keep)
{
	size_t dense;
	void *d;
	if (lm_dtype_nbytes(r->dtype, r->ndim, r->shape, &dense) < 0 || !(d = lm_alloc(dense)))
		return lm_preerr("tensor '%s'", r->name);
	if (lm_sparse_decode(d, r->data, r->wire_nbytes, &r->layout, r->dtype, r->shape[0],
	                     r->shape[1]) < 0) {
		lm_free(d);
		return lm_preerr("tensor '%s'", r->name);
	}
	lm_free(r->wire);
	r->wire = keep ? r->data : NULL;
	if (!keep)
		lm_free(r->data);
	r->data = d, r->nbytes = dense;
	return 0;
}

int lm_read_payload(struct lm_reader *rd, struct lm_record *r)
{
	size_t got = 0, cap = 0;
	unsigned char *dst;

	if (!rd->pending)
		return lm_seterr("internal: no payload pending");
	rd->pending = 0;
	if (rd->remaining != UINT64_MAX && reserve(rd, r, &cap, 0, r->nbytes) < 0)
		return -1;
	if (!r->data && !(r->data = lm_alloc(0)))
		return lm_preerr("%s '%s'", kind_name(r->kind), r->name);
	while (got < r->nbytes) {
		unsigned char hd[5];
		size_t hl, len = 0;
		while (rd->end - rd->start < 5 && !rd->eof)
			if (fill(rd) < 0)
				return -1;
		if (rd->end == rd->start)
			goto truncated;
		hd[0] = rd->buf[rd->start];
		hl = hd[0] == 0xc4 ? 2 : hd[0] == 0xc5 ? 3 : hd[0] == 0xc6 ? 5 : 0;
		if (!hl)
			return lm_seterr("%s '%s': payload is not a bin object", kind_name(r->kind), r->name);
		if (rd->end - rd->start < hl)
			goto truncated;
		for (size_t i = 1; i < hl; i++)
			len = len << 8 | rd->buf[rd->start + i];
		if (len == 0 || len > r->nbytes - got || len > LM_MAX_CHUNK)
			return lm_seterr("%s '%s': payload chunk of %zu bytes does not fit (%zu of %zu read)",
			                 kind_name(r->kind), r->name, len, got, r->nbytes);
		rd->start += hl;
		if (reserve(rd, r, &cap, got, got + len) < 0)
			return -1;
		dst = r->data;
		if (take(rd, dst + got, len) < 0)
			goto truncated;
		got += len;
	}
	if (rd->verify && crc32_z(0, r->data, r->nbytes) != r->crc32)
		return lm_seterr("%s '%s': crc32 mismatch (payload corrupted)", kind_name(r->kind), r->name);
	if (r->kind == LM_REC_TENSOR)
		rd->ntensors++;
	else if (r->kind == LM_REC_BLOB)
		rd->nblobs++;
	rd->payload += r->nbytes;
	if (r->kind == LM_REC_TENSOR && lm_layout_is_sparse(&r->layout) && expand(r, rd->keep_sparse) < 0)
		return -1;
	return 0;
truncated:
	return lm_seterr("unexpected end of stream in the payload of %s '%s' (record %llu): the upstream "
	                 "program may have failed", kind_name(r->kind), r->name, (unsigned long long)rd->nrec);
}

int lm_read_record(struct lm_reader *rd, struct lm_record *r)
{
	if (lm_read_record_meta(rd, r) < 0)
		return -1;
	if (r->kind == LM_REC_END)
		return 0;
	return lm_read_payload(rd, r);
}

/* ---------------------------------------------------------------- writer */

struct lm_writer {
	int fd, failed;
	char *name;
	char *buf;
	size_t len;
	msgpack_packer pk;
	uint64_t ntensors, nblobs, payload;
};

static int wflush(struct lm_writer *w)
{
	if (w->failed)
		return -1;
	if (w->len && lm_write_full(w->fd, w->buf, w->len) < 0) {
		w->failed = 1;
		return -1;
	}
	w->len = 0;
	return 0;
}

static int wwrite(void *data, const char *p, size_t n)
{
	struct lm_writer *w = data;
	if (w->len + n > WBUF && wflush(w) < 0)
		return -1;
	if (n > WBUF) {
		if (lm_write_full(w->fd, p, n) < 0) {
			w->failed = 1;
			return -1;
		}
		return 0;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	return 0;
}

struct lm_writer *lm_writer_open(int fd, const char *name)
{
	struct lm_writer *w = xcalloc(1, sizeof *w);
	w->fd = fd;
	w->name = xstrdup(name);
	w->buf = xmalloc(WBUF);
	msgpack_packer_init(&w->pk, w, wwrite);
#ifdef F_SETPIPE_SZ
	/* bigger pipe buffers move models between stages about twice as fast */
	fcntl(fd, F_SETPIPE_SZ, 1 << 20);
#endif
	return w;
}

int lm_writer_close(struct lm_writer *w)
{
	int rc = wflush(w);
	if (rc < 0)
		lm_preerr("%s", w->name);
	free(w->buf);
	free(w->name);
	free(w);
	return rc;
}

int lm_header_init(struct lm_header *h, const struct lm_opt_config *cfg)
{
	memset(h, 0, sizeof *h);
	h->cfg = *cfg;
	h->json = json_pack("{s:s, s:[i,i], s:s, s:n, s:n, s:[]}", "format", "lm-stream", "version",
	                    LM_STREAM_MAJOR, LM_STREAM_MINOR, "endian", "little", "model", "tensor_count",
	                    "provenance");
	return h->json ? 0 : lm_seterr("cannot build header");
}

int lm_write_header(struct lm_writer *w, struct lm_header *h, const char *tool, int argc, char **argv)
{
	json_t *prov;
	json_object_set_new(h->json, "model", lm_opt_config_to_json(&h->cfg));
	/* the version we write is ours, whatever the input said */
	json_object_set_new(h->json, "version", json_pack("[i,i]", LM_STREAM_MAJOR, LM_STREAM_MINOR));
	prov = json_object_get(h->json, "provenance");
	if (!json_is_array(prov)) {
		prov = json_array();
		json_object_set_new(h->json, "provenance", prov);
	}
	if (tool) {
		json_t *args = json_array();
		for (int i = 0; i < argc; i++) {
			json_t *s = json_string(argv[i]);
			json_array_append_new(args, s ? s : json_string("?"));
		}
		json_array_append_new(prov, json_pack("{s:s, s:s, s:o}", "tool", tool, "version", LM_VERSION,
		                                      "argv", args));
	}
	if (lm_pack_json(&w->pk, h->json) < 0 || w->failed)
		return lm_preerr("%s", w->name);
	return 0;
}

int lm_write_record(struct lm_writer *w, struct lm_record *r)
{
	json_t *m;
	const unsigned char *p = r->data;
	size_t left;
	uint32_t crc;
	void *sparse = NULL;

	if (r->kind == LM_REC_END)
		return lm_write_end(w);
	if (r->kind == LM_REC_TENSOR && lm_dtype_nbytes(r->dtype, r->ndim, r->shape, &r->nbytes) < 0)
		return lm_preerr("tensor '%s'", r->name);
	if (r->nbytes && !r->data)
		return lm_seterr("internal: record '%s' has no payload", r->name);
	/* a sparse layout asked for: written only where it is smaller than dense (sparse.h) */
	r->wire_nbytes = r->nbytes;
	if (r->kind == LM_REC_TENSOR && lm_layout_is_sparse(&r->layout)) {
		struct lm_layout want = r->layout;
		if (r->ndim != 2 || lm_sparse_encode(r->data, r->dtype, r->shape[0], r->shape[1], &want,
		                                     &r->layout, &sparse, &r->wire_nbytes) < 0)
			memset(&r->layout, 0, sizeof r->layout);
		if (!sparse)
			r->wire_nbytes = r->nbytes;
		else
			p = sparse;
	}
	crc = r->crc32 = (uint32_t)crc32_z(0, p, r->wire_nbytes);
	if (r->kind == LM_REC_TENSOR) {
		json_t *shape = json_array();
		for (int i = 0; i < r->ndim; i++)
			json_array_append_new(shape, json_integer(r->shape[i]));
		char ln[32];
		/* "layout" right after "dtype", and only in a sparse record: a dense one is
		 * written as before 1.3 */
		m = json_pack("{s:s, s:s, s:s, s:s*, s:o, s:I, s:I, s:O}", "kind", "tensor", "name",
		              r->name, "dtype", lm_dtype_name(r->dtype), "layout",
		              sparse ? lm_layout_name(&r->layout, ln, sizeof ln) : NULL, "shape", shape,
		              "nbytes", (json_int_t)r->wire_nbytes, "crc32", (json_int_t)crc, "attrs",
		              r->attrs ? r->attrs : json_object());
	} else {
		m = json_pack("{s:s, s:s, s:I, s:I}", "kind", "blob", "name", r->name, "nbytes",
		              (json_int_t)r->nbytes, "crc32", (json_int_t)crc);
	}
	if (!m) {
		lm_free(sparse);
		return lm_seterr("record '%s': cannot encode", r->name);
	}
	int rc = lm_pack_json(&w->pk, m);
	json_decref(m);
	if (rc < 0) {
		lm_free(sparse);
		return -1;
	}
	for (left = r->wire_nbytes; left > 0;) {
		size_t n = left > LM_MAX_CHUNK ? LM_MAX_CHUNK : left;
		msgpack_pack_bin(&w->pk, n);
		if (wflush(w) < 0 || lm_write_full(w->fd, p, n) < 0) {
			w->failed = 1;
			lm_free(sparse);
			return lm_preerr("%s", w->name);
		}
		p += n, left -= n;
	}
	lm_free(sparse);
	if (w->failed)
		return lm_preerr("%s", w->name);
	if (r->kind == LM_REC_TENSOR)
		w->ntensors++;
	else
		w->nblobs++;
	w->payload += r->wire_nbytes;
	return 0;
}

int lm_write_end(struct lm_writer *w)
{
	json_t *m = json_pack("{s:s, s:I, s:I, s:I}", "kind", "end", "tensor_count", (json_int_t)w->ntensors,
	                      "blob_count", (json_int_t)w->nblobs, "payload_bytes", (json_int_t)w->payload);
	int rc = lm_pack_json(&w->pk, m);
	json_decref(m);
	if (rc < 0 || w->failed || wflush(w) < 0)
		return lm_preerr("%s", w->name);
	return 0;
}

int lm_json_to_msgpack(json_t *v, char **buf, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	if (lm_pack_json(&pk, v) < 0) {
		msgpack_sbuffer_destroy(&sb);
		return -1;
	}
	*buf = sb.data;
	*len = sb.size;
	return 0;
}

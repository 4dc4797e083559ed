#define _GNU_SOURCE /* memmem */
/* test_stream.c: the lm-stream reader and writer: round trips, a reader fed one byte
 * at a time through a pipe, and handcrafted corrupt streams that must each be refused. */
#include "mpjson.h"
#include "stream.h"
#include "unit.h"
#include "util.h"
#include "validate.h"

#include <msgpack.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static struct lm_opt_config tiny_cfg(void)
{
	struct lm_opt_config c;
	lm_opt_config_like(&c, "opt-125m");
	c.num_layers = 1, c.hidden_size = 8, c.num_heads = 2, c.ffn_dim = 16, c.vocab_size = 10;
	c.word_embed_proj_dim = 8, c.max_positions = 4;
	return c;
}

/* a valid stream with two tensors and a blob, in a malloc'd buffer */
static char *make_stream(size_t *len)
{
	char path[] = "/tmp/lmstreamXXXXXX";
	int fd = mkstemp(path);
	struct lm_writer *w = lm_writer_open(fd, "tmp");
	struct lm_header h;
	struct lm_opt_config c = tiny_cfg();
	struct lm_record r = {0};
	int64_t shape[2] = {3, 5};
	char *buf;

	unlink(path);
	lm_header_init(&h, &c);
	CHECK(lm_write_header(w, &h, "test", 0, NULL) == 0);
	lm_record_tensor(&r, "a", LM_F32, 2, shape);
	CHECK(lm_record_alloc(&r) == 0);
	for (int i = 0; i < 15; i++)
		((float *)r.data)[i] = (float)i * 0.5f - 2;
	json_object_set_new(r.attrs, "sparsity", json_real(0.25));
	CHECK(lm_write_record(w, &r) == 0);
	lm_record_tensor(&r, "b", LM_F16, 1, shape);
	CHECK(lm_record_alloc(&r) == 0);
	memset(r.data, 0x3c, r.nbytes);
	CHECK(lm_write_record(w, &r) == 0);
	lm_record_clear(&r);
	r.kind = LM_REC_BLOB;
	strcpy(r.name, "tokenizer/vocab.json");
	r.nbytes = 7;
	r.data = lm_alloc(7);
	memcpy(r.data, "{\"a\":1}", 7);
	CHECK(lm_write_record(w, &r) == 0);
	lm_record_clear(&r);
	CHECK(lm_write_end(w) == 0);
	CHECK(lm_writer_close(w) == 0);
	lm_header_free(&h);
	*len = (size_t)lseek(fd, 0, SEEK_END);
	buf = xmalloc(*len);
	CHECK(pread(fd, buf, *len, 0) == (ssize_t)*len);
	close(fd);
	return buf;
}

/* read a whole stream from bytes; the pipe is fed by a child, chunk bytes per write */
static int read_all(const char *buf, size_t len, size_t chunk, int *ntensors, char *err, size_t errsz)
{
	int p[2], rc = 0;
	pid_t pid;
	CHECK(pipe(p) == 0);
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		for (size_t off = 0; off < len; off += chunk)
			if (write(p[1], buf + off, off + chunk > len ? len - off : chunk) < 0)
				_exit(1);
		_exit(0);
	}
	close(p[1]);
	struct lm_reader *rd = lm_reader_open(p[0], "<pipe>");
	struct lm_header h;
	struct lm_record r = {0};
	*ntensors = 0;
	if (lm_read_header(rd, &h) < 0) {
		rc = -1;
	} else {
		for (;;) {
			if (lm_read_record(rd, &r) < 0) {
				rc = -1;
				break;
			}
			if (r.kind == LM_REC_END)
				break;
			if (r.kind == LM_REC_TENSOR)
				(*ntensors)++;
			CHECK(((uintptr_t)r.data % LM_ALIGN) == 0);
		}
		lm_header_free(&h);
	}
	if (rc < 0)
		snprintf(err, errsz, "%s", lm_errmsg());
	lm_record_clear(&r);
	lm_reader_close(rd);
	close(p[0]);
	waitpid(pid, NULL, 0);
	return rc;
}

static void expect_fail(const char *what, const char *buf, size_t len, const char *msg)
{
	char err[1024] = "";
	int n;
	int rc = read_all(buf, len, 4096, &n, err, sizeof err);
	CHECKF(rc < 0, "%s: accepted", what);
	CHECKF(rc == 0 || strstr(err, msg), "%s: error '%s' lacks '%s'", what, err, msg);
}

/* pack a json map (given as text) to msgpack bytes appended to out */
static size_t put_map(char *out, const char *jtext)
{
	json_t *j = json_loads(jtext, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	char *b;
	size_t l;
	CHECK(j != NULL);
	CHECK(lm_json_to_msgpack(j, &b, &l) == 0);
	memcpy(out, b, l);
	free(b);
	json_decref(j);
	return l;
}

static void test_roundtrip(void)
{
	size_t len;
	char *buf = make_stream(&len), err[1024];
	int n;
	/* whole, and fed one byte at a time: boundaries must not matter */
	CHECK(read_all(buf, len, 1 << 20, &n, err, sizeof err) == 0 && n == 2);
	CHECK(read_all(buf, len, 1, &n, err, sizeof err) == 0 && n == 2);
	CHECK(read_all(buf, len, 3, &n, err, sizeof err) == 0 && n == 2);

	/* every proper prefix is refused, never taken for a whole stream */
	for (size_t cut = 0; cut < len; cut += (cut < 200 ? 1 : 7)) {
		int ok = read_all(buf, cut, 4096, &n, err, sizeof err) == 0;
		CHECKF(!ok, "prefix of %zu/%zu bytes accepted", cut, len);
	}
	/* any flipped byte inside a payload is a CRC mismatch (the f32 payload starts
	 * with -2.0f = 0x000000c0 little-endian; find it) */
	{
		const unsigned char pat[4] = {0x00, 0x00, 0x00, 0xc0};
		char *p = memmem(buf, len, pat, 4);
		CHECK(p != NULL);
		if (p) {
			p[1] ^= 0x10;
			expect_fail("flipped payload byte", buf, len, "crc32 mismatch");
			p[1] ^= 0x10;
		}
	}
	/* trailing garbage after the end record */
	{
		char *b2 = xmalloc(len + 1);
		memcpy(b2, buf, len);
		b2[len] = 0x01;
		expect_fail("trailing byte", b2, len + 1, "trailing data");
		free(b2);
	}
	free(buf);
}

static void test_handcrafted(void)
{
	char b[4096];
	size_t n;
	const char *model = "\"model\":{\"architecture\":\"opt\",\"vocab_size\":10,\"hidden_size\":8,"
	                    "\"num_layers\":1,\"num_heads\":2,\"ffn_dim\":16,\"max_positions\":4,"
	                    "\"word_embed_proj_dim\":8}";
	char hdr[1024];

	snprintf(hdr, sizeof hdr, "{\"format\":\"lm-stream\",\"version\":[1,0],%s}", model);
	/* bad magic: not a map, and a map with a wrong format */
	expect_fail("not msgpack", "hello world", 11, "bad magic");
	n = put_map(b, "{\"format\":\"gguf\",\"version\":[1,0]}");
	expect_fail("wrong format", b, n, "bad magic");
	/* a future major version */
	snprintf(b + 2048, 1024, "{\"format\":\"lm-stream\",\"version\":[2,0],%s}", model);
	n = put_map(b, b + 2048);
	expect_fail("future version", b, n, "unsupported stream version 2.0");
	/* header alone: the end record is missing */
	n = put_map(b, hdr);
	expect_fail("no end record", b, n, "unexpected end of stream after 0 records");
	/* a duplicate key (jansson would merge it; build the bytes by hand) */
	{
		msgpack_sbuffer sb;
		msgpack_packer pk;
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_map(&pk, 2);
		msgpack_pack_str_with_body(&pk, "format", 6);
		msgpack_pack_str_with_body(&pk, "lm-stream", 9);
		msgpack_pack_str_with_body(&pk, "format", 6);
		msgpack_pack_str_with_body(&pk, "lm-stream", 9);
		expect_fail("duplicate key", sb.data, sb.size, "duplicate key");
		msgpack_sbuffer_destroy(&sb);
	}
	/* a tensor whose bin runs past the end of the input */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":\"f32\",\"shape\":[4],\"nbytes\":16,"
	                    "\"crc32\":0,\"attrs\":{}}");
	b[n++] = (char)0xc4, b[n++] = 16;
	memset(b + n, 0, 8), n += 8;
	expect_fail("bin past EOF", b, n, "unexpected end of stream in the payload");
	/* a chunk longer than the record */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":\"f32\",\"shape\":[1],\"nbytes\":4,"
	                    "\"crc32\":0,\"attrs\":{}}");
	b[n++] = (char)0xc4, b[n++] = 8;
	memset(b + n, 0, 8), n += 8;
	expect_fail("oversized chunk", b, n, "does not fit");
	/* nbytes that lies about the shape */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":\"f32\",\"shape\":[3],\"nbytes\":16,"
	                    "\"crc32\":0,\"attrs\":{}}");
	expect_fail("nbytes mismatch", b, n, "does not match shape");
	/* a shape whose product overflows */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":\"f32\",\"shape\":[4294967296,"
	                    "4294967296,4294967296],\"nbytes\":16,\"crc32\":0,\"attrs\":{}}");
	expect_fail("shape overflow", b, n, "overflow");
	/* a 10 GB claim: refused on its size (pipe) before any allocation */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"blob\",\"name\":\"x\",\"nbytes\":10000000000000,\"crc32\":0}");
	expect_fail("absurd size", b, n, "absurd size");
	/* an array header claiming 2^32-1 entries in a few bytes */
	n = put_map(b, hdr);
	{
		const unsigned char evil[] = {0x81, 0xa4, 'k', 'i', 'n', 'd', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
		memcpy(b + n, evil, sizeof evil);
		n += sizeof evil;
	}
	expect_fail("huge array claim", b, n, "record 1");
	/* unknown dtype and unknown record kind */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":\"f7\",\"shape\":[1],\"nbytes\":4,"
	                    "\"crc32\":0,\"attrs\":{}}");
	expect_fail("unknown dtype", b, n, "unknown dtype");
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"mystery\"}");
	expect_fail("unknown kind without a name", b, n, "valid name");
	/* a well-formed record of a later kind is skipped, and the stream is whole */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"mystery\",\"name\":\"m\",\"nbytes\":2,\"crc32\":3633523372}");
	b[n++] = (char)0xc4, b[n++] = 2, b[n++] = 'h', b[n++] = 'i';
	n += put_map(b + n, "{\"kind\":\"end\",\"tensor_count\":0,\"payload_bytes\":2}");
	{
		char err[1024] = "";
		int nt;
		CHECKF(read_all(b, n, 4096, &nt, err, sizeof err) == 0, "unknown kind not skipped: %s", err);
	}
	/* a NUL inside a name must not make it another tensor's (C strings stop at NUL) */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"model.decoder.embed_tokens.weight\\u0000evil\","
	                    "\"dtype\":\"f32\",\"shape\":[1],\"nbytes\":4,\"crc32\":0,\"attrs\":{}}");
	expect_fail("NUL in a tensor name", b, n, "NUL byte inside the name");
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"blob\",\"name\":\"tokenizer/vocab.json\\u0000x\",\"nbytes\":0,"
	                    "\"crc32\":0}");
	expect_fail("NUL in a blob name", b, n, "NUL byte inside the name");
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":\"f32\\u0000\",\"shape\":[1],"
	                    "\"nbytes\":4,\"crc32\":0,\"attrs\":{}}");
	expect_fail("NUL in a dtype", b, n, "unknown dtype");
	/* a numeric dtype id is named, not reported as "(none)" */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":5,\"shape\":[1],\"nbytes\":4,"
	                    "\"crc32\":0,\"attrs\":{}}");
	expect_fail("integer dtype", b, n, "dtype is the number 5 (the id of i32)");
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":10,\"shape\":[1],\"nbytes\":4,"
	                    "\"crc32\":0,\"attrs\":{}}");
	expect_fail("integer dtype, no such id", b, n, "dtype is the number 10, not a name");
	/* a 4 TiB claim on a pipe: memory follows the bytes that arrive, so the lie ends as a
	 * truncation (16 bytes sent), not as an allocation of what the header says */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"tensor\",\"name\":\"x\",\"dtype\":\"u8\",\"shape\":[4398046511104],"
	                    "\"nbytes\":4398046511104,\"crc32\":0,\"attrs\":{}}");
	b[n++] = (char)0xc4, b[n++] = 16;
	memset(b + n, 0, 16), n += 16;
	expect_fail("4 TiB claim on a pipe", b, n, "unexpected end of stream in the payload of tensor 'x'");
	/* header fields OPT fixes or bounds: pos_offset, pad id */
	{
		char h2[1024];
		snprintf(h2, sizeof h2, "{\"format\":\"lm-stream\",\"version\":[1,0],%.*s,\"pos_offset\":7}}",
		         (int)strlen(model) - 1, model);
		n = put_map(b, h2);
		expect_fail("junk pos_offset", b, n, "pos_offset 7");
		snprintf(h2, sizeof h2, "{\"format\":\"lm-stream\",\"version\":[1,0],%.*s,\"pad_token_id\":10}}",
		         (int)strlen(model) - 1, model);
		n = put_map(b, h2);
		expect_fail("pad id past the vocabulary", b, n, "pad_token_id 10 outside the vocabulary");
		snprintf(h2, sizeof h2, "{\"format\":\"lm-stream\",\"version\":[1,0],%.*s,\"bos_token_id\":4294967298}}",
		         (int)strlen(model) - 1, model);
		n = put_map(b, h2);
		expect_fail("bos id past 32 bits", b, n, "4294967298 is not a token id");
	}
	/* a blob count that disagrees is reported with both counts */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"end\",\"tensor_count\":0,\"blob_count\":2,\"payload_bytes\":0}");
	expect_fail("bad blob count", b, n, "(0 tensors, 2 blobs, 0 bytes) do not match the stream (0 tensors, 0 blobs");
	/* end record whose counts disagree */
	n = put_map(b, hdr);
	n += put_map(b + n, "{\"kind\":\"end\",\"tensor_count\":3,\"payload_bytes\":0}");
	expect_fail("bad end counts", b, n, "do not match");
}

static void test_skim(void)
{
	/* the skimmer agrees with msgpack-c on object lengths */
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 3);
	msgpack_pack_str_with_body(&pk, "a", 1);
	msgpack_pack_array(&pk, 20);
	for (int i = 0; i < 20; i++)
		msgpack_pack_int64(&pk, (int64_t)i * 1000003 - 70000);
	msgpack_pack_str_with_body(&pk, "b", 1);
	msgpack_pack_double(&pk, 3.5);
	msgpack_pack_str_with_body(&pk, "c", 1);
	msgpack_pack_bin_with_body(&pk, "xyz", 3);
	CHECK(lm_msgpack_skim((unsigned char *)sb.data, sb.size, 1 << 20) == (long long)sb.size);
	for (size_t k = 0; k < sb.size; k++)
		CHECK(lm_msgpack_skim((unsigned char *)sb.data, k, 1 << 20) == 0);
	CHECK(lm_msgpack_skim((unsigned char *)sb.data, sb.size, 8) == -1);
	msgpack_sbuffer_destroy(&sb);
}

static void test_dtype(void)
{
	/* f16 and bf16 conversions round to nearest even like torch */
	CHECK(lm_f32_to_f16(1.0f) == 0x3c00);
	CHECK(lm_f32_to_f16(65504.0f) == 0x7bff);
	CHECK(lm_f32_to_f16(65520.0f) == 0x7c00);
	CHECK(lm_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00);       /* tie to even: down */
	CHECK(lm_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02);       /* tie to even: up */
	CHECK(lm_f32_to_f16(5.9604645e-08f) == 0x0001);           /* smallest subnormal */
	CHECK(lm_f32_to_f16(2.9802322e-08f) == 0x0000);           /* half of it: tie to even 0 */
	CHECK(lm_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80);
	CHECK(lm_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82);
	for (uint32_t h = 0; h < 0x10000; h++) {
		float f = lm_f16_to_f32((uint16_t)h);
		if (f == f && !(((h >> 10) & 0x1f) == 0x1f))
			CHECKF(lm_f32_to_f16(f) == h || (h == 0x8000 && lm_f32_to_f16(f) == 0x8000), "f16 %04x", h);
	}
	CHECK(lm_dtype_parse("F16") == LM_F16 && lm_dtype_parse("bfloat16") == LM_BF16);
	CHECK(lm_dtype_parse("q9") == -1);
}

/* a tensor record of the tiny model's tensor t, f32 payload of value x */
static void tiny_record(struct lm_record *r, const struct lm_opt_tensor *t, float x)
{
	lm_record_tensor(r, t->name, LM_F32, t->ndim, t->shape);
	CHECK(lm_record_alloc(r) == 0);
	for (size_t i = 0; i < lm_record_numel(r); i++)
		((float *)r->data)[i] = x;
}

/* feed order[idx[0..n)] to a validator; the number of problems reported */
static int feed(struct lm_validator *v, const struct lm_opt_tensor *t, const int *idx, int n)
{
	struct lm_record r = {0};
	int problems = 0;
	for (int i = 0; i < n; i++) {
		tiny_record(&r, &t[idx[i]], 0.5f);
		problems += lm_val_meta(v, &r) < 0;
		problems += lm_val_payload(&r) < 0;
	}
	lm_record_clear(&r);
	return problems;
}

static void test_validate(void)
{
	struct lm_opt_config c = tiny_cfg();
	struct lm_validator v;
	struct lm_record r = {0};
	size_t n;
	struct lm_opt_tensor *t = lm_opt_tensors(&c, &n);
	int idx[64], k;

	CHECK(n == 20 && n < 64);
	/* the model in order: no problem */
	for (k = 0; k < (int)n; k++)
		idx[k] = k;
	lm_val_init(&v, &c, 1);
	CHECK(feed(&v, t, idx, (int)n) == 0 && lm_val_end(&v) == 0);
	lm_val_free(&v);

	/* a swap and a duplicate: two problems, each said once, nothing missing after */
	lm_val_init(&v, &c, 0);
	k = 0;
	for (int i = 0; i < (int)n; i++) {
		idx[k++] = i == 5 ? 6 : i == 6 ? 5 : i;
		if (i == 9)
			idx[k++] = 9;
	}
	CHECK(feed(&v, t, idx, k) == 2);
	CHECK(lm_val_end(&v) == 0);
	lm_val_free(&v);

	/* the last five missing: one problem at the end, counted */
	lm_val_init(&v, &c, 1);
	for (k = 0; k < (int)n - 5; k++)
		idx[k] = k;
	CHECK(feed(&v, t, idx, k) == 0);
	CHECKF(lm_val_end(&v) < 0 && strstr(lm_errmsg(), "5 tensors of the model are missing"), "%s", lm_errmsg());
	lm_val_free(&v);

	/* a data stream: fine for a report, not for a program that runs a model */
	{
		int64_t four = 4;
		lm_record_tensor(&r, "ids", LM_I32, 1, &four);
		CHECK(lm_record_alloc(&r) == 0);
		memset(r.data, 0, r.nbytes);
		lm_val_init(&v, &c, 0);
		CHECK(lm_val_tensor(&v, &r) == 0 && lm_val_end(&v) == 0);
		lm_val_free(&v);
		lm_val_init(&v, &c, 1);
		CHECK(lm_val_tensor(&v, &r) < 0 && strstr(lm_errmsg(), "not a model stream"));
		lm_val_free(&v);
	}

	/* payloads: non-finite values of each float type, named with their place */
	{
		int64_t shape[2] = {2, 3};
		lm_record_tensor(&r, "x", LM_F16, 2, shape);
		CHECK(lm_record_alloc(&r) == 0);
		memset(r.data, 0, r.nbytes);
		CHECK(lm_val_payload(&r) == 0);
		((uint16_t *)r.data)[4] = 0x7c00;
		CHECKF(lm_val_payload(&r) < 0 && strstr(lm_errmsg(), "1 non-finite values, the first at [1, 1]"),
		       "%s", lm_errmsg());
		r.dtype = LM_BF16;
		CHECK(lm_val_payload(&r) == 0); /* 0x7c00 is a finite bf16 */
		((uint16_t *)r.data)[4] = 0xff81;
		CHECK(lm_val_payload(&r) < 0);
		r.dtype = LM_I16;
		CHECK(lm_val_payload(&r) == 0); /* integers have no NaN */
	}

	/* packed groups: q4c [2, 8]: per row a 4-byte header and 4 code bytes */
	{
		int64_t shape[2] = {2, 8};
		lm_record_tensor(&r, "q", (enum lm_dtype)lm_dtype_q(4, 0), 2, shape);
		CHECK(lm_record_alloc(&r) == 0 && r.nbytes == 16);
		memset(r.data, 0, r.nbytes);
		unsigned char *g1 = (unsigned char *)r.data + 8;
		g1[0] = 0x00, g1[1] = 0x3c, g1[2] = 15; /* scale 1, zero point 15: the largest */
		CHECK(lm_val_payload(&r) == 0);
		g1[2] = 16;
		CHECKF(lm_val_payload(&r) < 0 && strstr(lm_errmsg(), "(row 1, group 0) with zero point 16 above 15"),
		       "%s", lm_errmsg());
		g1[2] = 0, g1[3] = 7;
		CHECK(lm_val_payload(&r) < 0 && strstr(lm_errmsg(), "reserved byte 7"));
		g1[3] = 0, g1[1] = 0x7e;
		CHECK(lm_val_payload(&r) < 0 && strstr(lm_errmsg(), "scale that is not finite"));
	}
	lm_record_clear(&r);
	free(t);
}

int main(void)
{
	test_dtype();
	test_skim();
	test_roundtrip();
	test_handcrafted();
	test_validate();
	return unit_done("stream");
}

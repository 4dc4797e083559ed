/* test_torchbin.c: the PyTorch zip reader and its restricted unpickler.
 * - every tensor of the fixtures' pytorch_model.bin and legacy_pytorch_model.bin is byte
 *   identical to the same tensor in model.safetensors (tied lm_head.weight: embed_tokens);
 * - handcrafted pickles (built here as byte strings) that are malicious or broken are each
 *   refused with an error, never a crash: forbidden globals, truncation at every length,
 *   stack underflow, unset memo, huge length claims, random byte flips;
 * - handcrafted zips (written with libarchive) exercise shared storages, views at an
 *   offset, non-contiguous strides, short storages, bad versions, legacy and non-zip files. */
#include "opt.h"
#include "pickle.h"
#include "safetensors.h"
#include "torchbin.h"
#include "unit.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

/* ---- a pickle byte-string builder ---- */

struct pb {
	unsigned char b[8192];
	size_t n;
};

static void pb_bytes(struct pb *p, const void *s, size_t n)
{
	if (p->n + n > sizeof p->b) {
		fprintf(stderr, "test pickle too long\n");
		exit(2);
	}
	memcpy(p->b + p->n, s, n);
	p->n += n;
}

static void pb_op(struct pb *p, unsigned char op) { pb_bytes(p, &op, 1); }

static void pb_u32(struct pb *p, uint32_t v)
{
	unsigned char b[4] = {v & 0xff, v >> 8 & 0xff, v >> 16 & 0xff, v >> 24};
	pb_bytes(p, b, 4);
}

static void pb_u64(struct pb *p, uint64_t v)
{
	pb_u32(p, (uint32_t)v);
	pb_u32(p, (uint32_t)(v >> 32));
}

static void pb_str(struct pb *p, const char *s) /* BINUNICODE */
{
	pb_op(p, 'X');
	pb_u32(p, (uint32_t)strlen(s));
	pb_bytes(p, s, strlen(s));
}

static void pb_global(struct pb *p, const char *mod, const char *name) /* GLOBAL */
{
	pb_op(p, 'c');
	pb_bytes(p, mod, strlen(mod));
	pb_op(p, '\n');
	pb_bytes(p, name, strlen(name));
	pb_op(p, '\n');
}

static void pb_int(struct pb *p, uint32_t v) /* the smallest of BININT1/2/BININT */
{
	if (v < 256) {
		pb_op(p, 'K');
		pb_op(p, (unsigned char)v);
	} else if (v < 65536) {
		pb_op(p, 'M');
		pb_op(p, v & 0xff);
		pb_op(p, (unsigned char)(v >> 8));
	} else {
		pb_op(p, 'J');
		pb_u32(p, v);
	}
}

/* a tuple of n ints */
static void pb_ints(struct pb *p, int n, const uint32_t *v)
{
	pb_op(p, '(');
	for (int i = 0; i < n; i++)
		pb_int(p, v[i]);
	pb_op(p, 't');
}

/* key: _rebuild_tensor_v2(('storage', torch.<stype>, skey, 'cpu', numel), off, size, stride,
 * False, OrderedDict()) as torch.save writes it (protocol 2, no memo) */
static void pb_tensor_value(struct pb *p, const char *stype, const char *skey, uint32_t numel,
                            uint32_t off, int ndim, const uint32_t *size, const uint32_t *stride)
{
	pb_global(p, "torch._utils", "_rebuild_tensor_v2");
	pb_op(p, '(');
	pb_op(p, '(');
	pb_str(p, "storage");
	pb_global(p, "torch", stype);
	pb_str(p, skey);
	pb_str(p, "cpu");
	pb_int(p, numel);
	pb_op(p, 't');
	pb_op(p, 'Q');
	pb_int(p, off);
	pb_ints(p, ndim, size);
	pb_ints(p, ndim, stride);
	pb_op(p, 0x89);
	pb_global(p, "collections", "OrderedDict");
	pb_op(p, ')');
	pb_op(p, 'R');
	pb_op(p, 't');
	pb_op(p, 'R');
}

static void pb_tensor(struct pb *p, const char *key, const char *stype, const char *skey, uint32_t numel,
                      uint32_t off, int ndim, const uint32_t *size, const uint32_t *stride)
{
	pb_str(p, key);
	pb_tensor_value(p, stype, skey, numel, off, ndim, size, stride);
}

static void pb_begin(struct pb *p)
{
	p->n = 0;
	pb_op(p, 0x80);
	pb_op(p, 2);
	pb_global(p, "collections", "OrderedDict");
	pb_op(p, ')');
	pb_op(p, 'R');
	pb_op(p, '(');
}

static void pb_end(struct pb *p)
{
	pb_op(p, 'u');
	pb_op(p, '.');
}

/* 'w' [2,3] f32 and 'v' = its second row (a view at offset 3), 'i' [2] i64: shared storage,
 * an offset, two dtypes */
static void pb_sample(struct pb *p)
{
	pb_begin(p);
	pb_tensor(p, "w", "FloatStorage", "0", 6, 0, 2, (uint32_t[]){2, 3}, (uint32_t[]){3, 1});
	pb_tensor(p, "v", "FloatStorage", "0", 6, 3, 1, (uint32_t[]){3}, (uint32_t[]){1});
	pb_tensor(p, "i", "LongStorage", "1", 2, 0, 1, (uint32_t[]){2}, (uint32_t[]){1});
	pb_end(p);
}

/* lm_pk_state_dict must fail and its message contain want (NULL: any message) */
static void expect_pk_fail(const struct pb *p, const char *want, const char *what)
{
	struct lm_pk_tensor *t = NULL;
	size_t n = 99;
	int r = lm_pk_state_dict(p->b, p->n, &t, &n);
	if (getenv("LM_TEST_VERBOSE"))
		fprintf(stderr, "%-24s %s\n", what, r ? lm_errmsg() : "(accepted)");
	CHECKF(r == -1 && !t && n == 0, "%s: accepted", what);
	if (r == -1 && want)
		CHECKF(strstr(lm_errmsg(), want) != NULL, "%s: message '%s' lacks '%s'", what, lm_errmsg(), want);
	if (r == 0)
		lm_pk_free(t, n);
}

static void test_pickle_good(void)
{
	struct pb p;
	struct lm_pk_tensor *t;
	size_t n;

	pb_sample(&p);
	CHECKF(lm_pk_state_dict(p.b, p.n, &t, &n) == 0, "%s", lm_errmsg());
	CHECK(n == 3);
	if (n == 3) {
		CHECK(!strcmp(t[0].name, "w") && !strcmp(t[1].name, "v") && !strcmp(t[2].name, "i"));
		CHECK(t[0].dtype == LM_F32 && t[0].ndim == 2 && t[0].shape[0] == 2 && t[0].shape[1] == 3);
		CHECK(t[0].stride[0] == 3 && t[0].stride[1] == 1 && t[0].storage_numel == 6);
		CHECK(!strcmp(t[1].storage, "0") && t[1].storage_offset == 3 && t[1].ndim == 1);
		CHECK(t[2].dtype == LM_I64 && !strcmp(t[2].storage, "1"));
	}
	lm_pk_free(t, n);

	/* protocol 4 style: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE + BINGET, a plain
	 * dict with BUILD of an attribute dict, nn.Parameter wrappers, a size-1 dimension with
	 * an arbitrary stride (torch gives those any value) */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 4);
	pb_op(&p, 0x95), pb_u64(&p, 0);  /* frame length, patched below */
	size_t frame_at = p.n;
	pb_op(&p, '}'), pb_op(&p, 0x94);                                      /* memo 0: dict */
	pb_op(&p, 0x8c), pb_op(&p, 1), pb_bytes(&p, "p", 1);
	pb_op(&p, 0x8c), pb_op(&p, 12), pb_bytes(&p, "torch._utils", 12);
	pb_op(&p, 0x8c), pb_op(&p, 18), pb_bytes(&p, "_rebuild_parameter", 18);
	pb_op(&p, 0x93), pb_op(&p, 0x94);                                     /* memo 1: callable */
	pb_op(&p, '(');
	pb_tensor_value(&p, "BFloat16Storage", "7", 4, 0, 2, (uint32_t[]){1, 4}, (uint32_t[]){99, 1});
	pb_op(&p, 0x88);
	pb_global(&p, "collections", "OrderedDict"), pb_op(&p, ')'), pb_op(&p, 'R');
	pb_op(&p, 't'), pb_op(&p, 'R'), pb_op(&p, 's');
	pb_op(&p, 0x8c), pb_op(&p, 1), pb_bytes(&p, "q", 1);
	pb_op(&p, 'h'), pb_op(&p, 1);                                         /* the callable again */
	pb_op(&p, '(');
	pb_tensor_value(&p, "ShortStorage", "8", 2, 1, 0, NULL, NULL);        /* a 0-d tensor */
	pb_op(&p, 0x89), pb_op(&p, 'N');
	pb_op(&p, 't'), pb_op(&p, 'R'), pb_op(&p, 's');
	pb_op(&p, '}'), pb_str(&p, "_metadata"), pb_op(&p, '}'), pb_op(&p, 's');
	pb_op(&p, 'b');
	pb_op(&p, '.');
	for (int i = 0; i < 8; i++)
		p.b[frame_at - 8 + i] = (unsigned char)((p.n - frame_at) >> (8 * i));
	CHECKF(lm_pk_state_dict(p.b, p.n, &t, &n) == 0, "protocol 4: %s", lm_errmsg());
	CHECK(n == 2);
	if (n == 2) {
		CHECK(!strcmp(t[0].name, "p") && t[0].dtype == LM_BF16 && t[0].ndim == 2 &&
		      t[0].shape[1] == 4 && !strcmp(t[0].storage, "7"));
		CHECK(!strcmp(t[1].name, "q") && t[1].dtype == LM_I16 && t[1].ndim == 0 &&
		      t[1].storage_offset == 1 && t[1].storage_numel == 2);
	}
	lm_pk_free(t, n);

	/* negative ints through BININT and LONG1 are ints, but not valid sizes */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_str(&p, "k");
	pb_global(&p, "torch._utils", "_rebuild_tensor"), pb_op(&p, '(');
	pb_op(&p, '('), pb_str(&p, "storage"), pb_global(&p, "torch", "FloatStorage"), pb_str(&p, "0");
	pb_str(&p, "cpu"), pb_op(&p, 0x8a), pb_op(&p, 2), pb_op(&p, 0x00), pb_op(&p, 0x01), pb_op(&p, 't');
	pb_op(&p, 'Q'), pb_op(&p, 'J'), pb_u32(&p, 0xffffffffu);  /* offset -1 */
	pb_ints(&p, 1, (uint32_t[]){1}), pb_ints(&p, 1, (uint32_t[]){1});
	pb_op(&p, 't'), pb_op(&p, 'R'), pb_op(&p, 's'), pb_op(&p, '.');
	expect_pk_fail(&p, "bad tensor offset", "offset -1");

	/* an empty state dict is a state dict */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_op(&p, '.');
	CHECK(lm_pk_state_dict(p.b, p.n, &t, &n) == 0 && n == 0);
	lm_pk_free(t, n);
}

static void test_pickle_bad(void)
{
	struct pb p, good;
	static const char *const forbidden[][3] = {
		{"os", "system", "forbidden global 'os.system' in data.pkl"},
		{"builtins", "eval", "forbidden global 'builtins.eval' in data.pkl"},
		{"posix", "system", "forbidden global 'posix.system' in data.pkl"},
		{"subprocess", "Popen", "forbidden global 'subprocess.Popen' in data.pkl"},
		{"__builtin__", "getattr", "forbidden global '__builtin__.getattr'"},
		{"torch", "load", "forbidden global 'torch.load'"},
		{"torch._utils", "_rebuild_tensor_v22", "forbidden global"},
		{"collections", "OrderedDic", "forbidden global"},
	};

	/* GLOBAL m n + ('ls',) + REDUCE: refused at GLOBAL, before REDUCE */
	for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++) {
		p.n = 0;
		pb_op(&p, 0x80), pb_op(&p, 2);
		pb_global(&p, forbidden[i][0], forbidden[i][1]);
		pb_str(&p, "echo pwned"), pb_op(&p, 0x85), pb_op(&p, 'R'), pb_op(&p, '.');
		expect_pk_fail(&p, forbidden[i][2], forbidden[i][0]);
	}
	/* the same through STACK_GLOBAL (protocol 4) */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 4);
	pb_str(&p, "os"), pb_str(&p, "system"), pb_op(&p, 0x93);
	pb_str(&p, "id"), pb_op(&p, 0x85), pb_op(&p, 'R'), pb_op(&p, '.');
	expect_pk_fail(&p, "forbidden global 'os.system' in data.pkl", "STACK_GLOBAL");
	/* a forbidden global as the storage type of a persistent id */
	pb_begin(&p);
	pb_tensor(&p, "w", "ComplexFloatStorage", "0", 1, 0, 1, (uint32_t[]){1}, (uint32_t[]){1});
	pb_end(&p);
	expect_pk_fail(&p, "forbidden global 'torch.ComplexFloatStorage'", "complex storage");
	/* a name with control bytes is printed safely */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2);
	pb_global(&p, "o\x1b[2Js", "system"), pb_op(&p, '.');
	expect_pk_fail(&p, "forbidden global 'o?[2Js.system'", "escape in name");

	/* truncated at every length: each prefix of a valid pickle is refused */
	pb_sample(&good);
	for (size_t len = 0; len < good.n; len++) {
		struct lm_pk_tensor *t = NULL;
		size_t n = 0;
		int r = lm_pk_state_dict(good.b, len, &t, &n);
		CHECKF(r == -1, "prefix of %zu bytes accepted", len);
		if (!r)
			lm_pk_free(t, n);
	}
	/* a truncated string length field, a string running past the end */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, 'X'), pb_op(&p, 5), pb_op(&p, 0);
	expect_pk_fail(&p, "truncated", "short BINUNICODE length");

	/* stack underflow: REDUCE, SETITEM, TUPLE2 on too little, and popping through a MARK */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, 'R'), pb_op(&p, '.');
	expect_pk_fail(&p, "stack underflow", "REDUCE on empty");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_str(&p, "k"), pb_op(&p, 's'), pb_op(&p, '.');
	expect_pk_fail(&p, "stack underflow", "SETITEM on 2");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_int(&p, 1), pb_op(&p, 0x86), pb_op(&p, '.');
	expect_pk_fail(&p, "stack underflow", "TUPLE2 on 1");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_op(&p, '('), pb_str(&p, "k"), pb_op(&p, 's');
	pb_op(&p, '.');
	expect_pk_fail(&p, "stack underflow", "SETITEM through MARK");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '.');
	expect_pk_fail(&p, "stack underflow", "STOP on empty");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_op(&p, 't'), pb_op(&p, '.');
	expect_pk_fail(&p, "MARK", "TUPLE without MARK");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '('), pb_op(&p, 'u'), pb_op(&p, '.');
	expect_pk_fail(&p, "SETITEMS without a dict", "SETITEMS on nothing");

	/* memo: BINGET of an unset slot, LONG_BINGET far away, a huge LONG_BINPUT index */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_op(&p, 'q'), pb_op(&p, 0);
	pb_op(&p, 'h'), pb_op(&p, 5), pb_op(&p, '.');
	expect_pk_fail(&p, "memo 5 is not set", "BINGET unset");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, 'j'), pb_u32(&p, 0xffffffffu), pb_op(&p, '.');
	expect_pk_fail(&p, "is not set", "LONG_BINGET unset");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_op(&p, 'r'), pb_u32(&p, 0xfffffff0u), pb_op(&p, '.');
	expect_pk_fail(&p, "out of range", "LONG_BINPUT huge");

	/* length claims far beyond the input: refused before allocation */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, 'X'), pb_u32(&p, 0xfffffff0u), pb_bytes(&p, "abc", 3);
	pb_op(&p, '.');
	expect_pk_fail(&p, "exceeds", "BINUNICODE 4 GB");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 4), pb_op(&p, 0x8d), pb_u64(&p, 10ull << 30), pb_bytes(&p, "abc", 3);
	pb_op(&p, '.');
	expect_pk_fail(&p, "exceeds", "BINUNICODE8 10 GB");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 4), pb_op(&p, 0x95), pb_u64(&p, ~0ull), pb_op(&p, '}'), pb_op(&p, '.');
	expect_pk_fail(&p, "frame", "FRAME huge");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, 0x8a), pb_op(&p, 200), pb_op(&p, '.');
	expect_pk_fail(&p, "64 bits", "LONG1 200 bytes");

	/* opcodes outside the set: INST, OBJ, NEWOBJ, EXT1, protocol-0 INT, PERSID (text) */
	static const unsigned char others[] = {'i', 'o', 0x81, 0x82, 'I', 'P', 'S', '0', '2', 'B'};
	for (size_t i = 0; i < sizeof others; i++) {
		p.n = 0;
		pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, '}'), pb_op(&p, others[i]), pb_op(&p, '.');
		expect_pk_fail(&p, "unsupported pickle opcode", "other opcode");
	}
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 9), pb_op(&p, '}'), pb_op(&p, '.');
	expect_pk_fail(&p, "protocol 9", "PROTO 9");

	/* allowed globals used wrongly */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_global(&p, "torch", "FloatStorage"), pb_op(&p, ')'), pb_op(&p, 'R');
	pb_op(&p, '.');
	expect_pk_fail(&p, "cannot be called", "storage called");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_global(&p, "collections", "OrderedDict"), pb_str(&p, "x");
	pb_op(&p, 0x85), pb_op(&p, 'R'), pb_op(&p, '.');
	expect_pk_fail(&p, "OrderedDict with arguments", "OrderedDict(x)");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_str(&p, "x"), pb_op(&p, ')'), pb_op(&p, 'R'), pb_op(&p, '.');
	expect_pk_fail(&p, "REDUCE needs", "REDUCE on a string");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_global(&p, "torch._utils", "_rebuild_tensor_v2");
	pb_int(&p, 1), pb_int(&p, 2), pb_int(&p, 3), pb_op(&p, 0x87), pb_op(&p, 'R'), pb_op(&p, '.');
	expect_pk_fail(&p, "takes 6 or 7", "rebuild with 3 args");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_global(&p, "torch._utils", "_rebuild_tensor");
	pb_op(&p, '('), pb_str(&p, "not a storage"), pb_int(&p, 0), pb_ints(&p, 1, (uint32_t[]){1});
	pb_ints(&p, 1, (uint32_t[]){1}), pb_op(&p, 't'), pb_op(&p, 'R'), pb_op(&p, '.');
	expect_pk_fail(&p, "not a storage", "rebuild from a string");
	/* a persistent id that is not a storage tuple, a storage key with a slash */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_str(&p, "x"), pb_op(&p, 'Q'), pb_op(&p, '.');
	expect_pk_fail(&p, "persistent id", "BINPERSID on a string");
	pb_begin(&p);
	pb_tensor(&p, "w", "FloatStorage", "../../etc/passwd", 1, 0, 1, (uint32_t[]){1}, (uint32_t[]){1});
	pb_end(&p);
	expect_pk_fail(&p, "bad storage key", "key with slash");
	/* more than 8 dimensions */
	pb_begin(&p);
	pb_tensor(&p, "w", "FloatStorage", "0", 1, 0, 9, (uint32_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1},
	          (uint32_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
	pb_end(&p);
	expect_pk_fail(&p, "more than 8 dimensions", "9 dims");

	/* not a state dict: a list, a value that is not a tensor, a key twice */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_op(&p, ']'), pb_op(&p, '.');
	expect_pk_fail(&p, "not hold a state dict", "list");
	pb_begin(&p);
	pb_str(&p, "n"), pb_int(&p, 3);
	pb_end(&p);
	expect_pk_fail(&p, "'n' is not a tensor", "int value");
	pb_begin(&p);
	pb_tensor(&p, "w", "FloatStorage", "0", 1, 0, 1, (uint32_t[]){1}, (uint32_t[]){1});
	pb_tensor(&p, "w", "FloatStorage", "0", 1, 0, 1, (uint32_t[]){1}, (uint32_t[]){1});
	pb_end(&p);
	expect_pk_fail(&p, "appears twice", "duplicate key");

	/* MARK nesting and stack depth are capped */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2);
	for (int i = 0; i < 100; i++)
		pb_op(&p, '(');
	pb_op(&p, '.');
	expect_pk_fail(&p, "MARKs nested", "deep MARK");

	/* random byte flips of a valid pickle: any result is fine except a crash (the
	 * sanitizer build is what makes this test bite) */
	srand(12345);
	for (int it = 0; it < 20000; it++) {
		struct pb q = good;
		struct lm_pk_tensor *t = NULL;
		size_t n = 0;
		int flips = 1 + rand() % 4;
		for (int k = 0; k < flips; k++)
			q.b[rand() % q.n] = (unsigned char)rand();
		if (rand() % 4 == 0)
			q.n = (size_t)rand() % q.n;
		if (lm_pk_state_dict(q.b, q.n, &t, &n) == 0)
			lm_pk_free(t, n);
	}
}

/* ---- zips ---- */

struct rec {
	const char *name;
	const void *data;
	size_t len;
};

static void write_zip(const char *path, const struct rec *r, size_t n)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_zip(a);
	archive_write_set_options(a, "zip:compression=store");
	if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
		fprintf(stderr, "%s: %s\n", path, archive_error_string(a));
		exit(2);
	}
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, r[i].name);
		archive_entry_set_size(e, (la_int64_t)r[i].len);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_write_header(a, e);
		archive_write_data(a, r[i].data, r[i].len);
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");
	if (!fp || fwrite(data, 1, len, fp) != len || fclose(fp)) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(2);
	}
}

static char *tpath(const char *name)
{
	static char buf[4][512];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
	return buf[k];
}

static void expect_tb_fail(const char *path, const char *want, const char *what)
{
	struct lm_tb_file f;
	int r = lm_tb_open(&f, path);
	if (getenv("LM_TEST_VERBOSE"))
		fprintf(stderr, "%-24s %s\n", what, r ? lm_errmsg() : "(accepted)");
	CHECKF(r == -1, "%s: accepted", what);
	if (r == -1 && want)
		CHECKF(strstr(lm_errmsg(), want) != NULL, "%s: message '%s' lacks '%s'", what, lm_errmsg(), want);
	if (r == 0)
		lm_tb_close(&f);
}

static void test_zip_handmade(void)
{
	struct pb p;
	float s0[6] = {1, 2, 3, 4, 5, 6};
	int64_t s1[2] = {-7, 1LL << 40};
	struct lm_tb_file f;
	char *path = tpath("good.bin");

	pb_sample(&p);
	struct rec r[] = {
		{"mytop/data.pkl", p.b, p.n},
		{"mytop/byteorder", "little", 6},
		{"mytop/data/0", s0, sizeof s0},
		{"mytop/data/1", s1, sizeof s1},
		{"mytop/version", "3\n", 2},
		{"mytop/.data/serialization_id", "123", 3},
	};
	write_zip(path, r, 6);
	CHECKF(lm_tb_open(&f, path) == 0, "%s", lm_errmsg());
	CHECK(f.n == 3 && !strcmp(f.top, "mytop") && f.version == 3);
	if (f.n == 3) {
		float w[6], v[3];
		int64_t i[2];
		/* out of order, and twice: the reader must re-open when it has gone past */
		for (int pass = 0; pass < 2; pass++) {
			memset(w, 0, sizeof w), memset(v, 0, sizeof v), memset(i, 0, sizeof i);
			CHECKF(lm_tb_read(&f, 2, i) == 0, "%s", lm_errmsg());
			CHECKF(lm_tb_read(&f, 1, v) == 0, "%s", lm_errmsg());
			CHECKF(lm_tb_read(&f, 0, w) == 0, "%s", lm_errmsg());
			CHECK(!memcmp(w, s0, sizeof w) && !memcmp(v, s0 + 3, sizeof v) && !memcmp(i, s1, sizeof i));
		}
		CHECK(f.entries[1].storage_offset == 3 && f.entries[1].nbytes == 12);
		CHECK(lm_tb_find(&f, "v") == 1 && lm_tb_find(&f, "x") == -1);
		CHECK(lm_tb_read(&f, 3, w) == -1);
	}
	lm_tb_close(&f);

	/* two halves of one large storage: the skip before 'b' streams through dst */
	{
		enum { N = 10000 };
		float *big = malloc(N * sizeof *big), *got = malloc(N / 2 * sizeof *got);
		for (int k = 0; k < N; k++)
			big[k] = (float)k * 0.5f;
		pb_begin(&p);
		pb_tensor(&p, "a", "FloatStorage", "0", N, 0, 2, (uint32_t[]){50, 100}, (uint32_t[]){100, 1});
		pb_tensor(&p, "b", "FloatStorage", "0", N, N / 2, 2, (uint32_t[]){50, 100}, (uint32_t[]){100, 1});
		pb_end(&p);
		struct rec rb[] = {{"t/data.pkl", p.b, p.n}, {"t/data/0", big, N * sizeof *big}};
		write_zip(tpath("halves.bin"), rb, 2);
		CHECKF(lm_tb_open(&f, tpath("halves.bin")) == 0, "%s", lm_errmsg());
		CHECK(f.n == 2 && f.entries[1].nbytes == N / 2 * sizeof *big);
		if (f.n == 2) {
			CHECK(lm_tb_read(&f, 1, got) == 0 && !memcmp(got, big + N / 2, N / 2 * sizeof *big));
			CHECK(lm_tb_read(&f, 0, got) == 0 && !memcmp(got, big, N / 2 * sizeof *big));
		}
		lm_tb_close(&f);
		free(big);
		free(got);
		pb_sample(&p);
	}

	/* the same data deflated (not what torch writes, but a re-zipped file is still valid) */
	{
		struct archive *a = archive_write_new();
		archive_write_set_format_zip(a);
		archive_write_set_options(a, "zip:compression=deflate");
		archive_write_open_filename(a, tpath("deflate.bin"));
		for (size_t k = 0; k < 6; k++) {
			struct archive_entry *e = archive_entry_new();
			archive_entry_set_pathname(e, r[k].name);
			archive_entry_set_size(e, (la_int64_t)r[k].len);
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_write_header(a, e);
			archive_write_data(a, r[k].data, r[k].len);
			archive_entry_free(e);
		}
		archive_write_close(a);
		archive_write_free(a);
		float v[3] = {0};
		CHECKF(lm_tb_open(&f, tpath("deflate.bin")) == 0, "%s", lm_errmsg());
		CHECK(f.n == 3 && lm_tb_read(&f, 1, v) == 0 && !memcmp(v, s0 + 3, sizeof v));
		lm_tb_close(&f);
	}

	/* a malicious data.pkl inside an otherwise fine zip */
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_global(&p, "os", "system"), pb_str(&p, "touch /tmp/pwned");
	pb_op(&p, 0x85), pb_op(&p, 'R'), pb_op(&p, '.');
	r[0].data = p.b, r[0].len = p.n;
	write_zip(tpath("evil.bin"), r, 6);
	expect_tb_fail(tpath("evil.bin"), "forbidden global 'os.system' in data.pkl", "evil zip");
	p.n = 0;
	pb_op(&p, 0x80), pb_op(&p, 2), pb_global(&p, "builtins", "eval"), pb_str(&p, "1");
	pb_op(&p, 0x85), pb_op(&p, 'R'), pb_op(&p, '.');
	write_zip(tpath("evil2.bin"), r, 6);
	expect_tb_fail(tpath("evil2.bin"), "forbidden global 'builtins.eval' in data.pkl", "eval zip");
	/* a truncated data.pkl */
	pb_sample(&p);
	r[0].len = p.n / 2;
	write_zip(tpath("trunc-pkl.bin"), r, 6);
	expect_tb_fail(tpath("trunc-pkl.bin"), "data.pkl", "truncated data.pkl");
	r[0].len = p.n;

	/* non-contiguous: w as the transpose view (size (3,2), stride (1,3)) */
	pb_begin(&p);
	pb_tensor(&p, "model.w", "FloatStorage", "0", 6, 0, 2, (uint32_t[]){3, 2}, (uint32_t[]){1, 3});
	pb_end(&p);
	write_zip(tpath("strided.bin"), r, 6);
	expect_tb_fail(tpath("strided.bin"), "tensor 'model.w' is not contiguous", "transposed");
	/* a view that runs past its storage's numel */
	pb_begin(&p);
	pb_tensor(&p, "w", "FloatStorage", "0", 6, 4, 1, (uint32_t[]){3}, (uint32_t[]){1});
	pb_end(&p);
	write_zip(tpath("past.bin"), r, 6);
	expect_tb_fail(tpath("past.bin"), "outside its storage", "past numel");
	/* a storage record shorter than the numel the pickle claims */
	pb_begin(&p);
	pb_tensor(&p, "w", "FloatStorage", "0", 600, 0, 1, (uint32_t[]){600}, (uint32_t[]){1});
	pb_end(&p);
	write_zip(tpath("short.bin"), r, 6);
	expect_tb_fail(tpath("short.bin"), "holds 24 bytes", "short storage");
	/* a storage key without a record */
	pb_begin(&p);
	pb_tensor(&p, "w", "FloatStorage", "9", 1, 0, 1, (uint32_t[]){1}, (uint32_t[]){1});
	pb_end(&p);
	write_zip(tpath("missing.bin"), r, 6);
	expect_tb_fail(tpath("missing.bin"), "storage record 'mytop/data/9' is missing", "missing storage");

	/* versions, byte order, layout */
	pb_sample(&p);
	r[4].data = "99\n", r[4].len = 3;
	write_zip(tpath("v99.bin"), r, 6);
	expect_tb_fail(tpath("v99.bin"), "version '99' (1 to 10", "version 99");
	r[4].data = "x", r[4].len = 1;
	write_zip(tpath("vx.bin"), r, 6);
	expect_tb_fail(tpath("vx.bin"), "version", "version x");
	r[4].data = "3\n", r[4].len = 2;
	r[1].data = "big", r[1].len = 3;
	write_zip(tpath("big.bin"), r, 6);
	expect_tb_fail(tpath("big.bin"), "byteorder 'big'", "big endian");
	r[1].data = "little", r[1].len = 6;
	write_zip(tpath("nopkl.bin"), r + 1, 5);
	expect_tb_fail(tpath("nopkl.bin"), "no record 'mytop/data.pkl'", "no data.pkl");
	struct rec flat[] = {{"data.pkl", p.b, p.n}};
	write_zip(tpath("flat.bin"), flat, 1);
	expect_tb_fail(tpath("flat.bin"), "not in a folder", "no top folder");
	struct rec dup[] = {r[0], r[2], r[2], r[3]};
	write_zip(tpath("dup.bin"), dup, 4);
	expect_tb_fail(tpath("dup.bin"), "appears twice", "duplicate record");
	/* version may be absent (as the brief allows); byteorder too */
	struct rec minimal[] = {r[0], r[2], r[3]};
	write_zip(tpath("minimal.bin"), minimal, 3);
	CHECKF(lm_tb_open(&f, tpath("minimal.bin")) == 0, "%s", lm_errmsg());
	CHECK(f.version == 0 && f.n == 3);
	lm_tb_close(&f);

	/* not zips */
	write_file(tpath("text.bin"), "hello, world\n", 13);
	expect_tb_fail(tpath("text.bin"), "not a zip archive", "text");
	write_file(tpath("empty.bin"), "", 0);
	expect_tb_fail(tpath("empty.bin"), "not a zip archive", "empty file");
	static const unsigned char legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
	                                       0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, 0x80, 0x02, 0x4d, 0xe9,
	                                       0x03, 0x2e};
	write_file(tpath("legacy.bin"), legacy, sizeof legacy);
	expect_tb_fail(tpath("legacy.bin"),
	               "legacy torch.save format is not supported; re-save with torch>=1.6", "legacy pickle");
	/* the same magic after PROTO 4 and a FRAME */
	static const unsigned char legacy4[] = {0x80, 0x04, 0x95, 0x0e, 0, 0, 0, 0, 0, 0, 0, 0x8a, 0x0a,
	                                        0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};
	write_file(tpath("legacy4.bin"), legacy4, sizeof legacy4);
	expect_tb_fail(tpath("legacy4.bin"), "legacy torch.save format", "legacy pickle proto 4");
	/* a bare pickle without the magic is just not a zip */
	write_file(tpath("bare.bin"), legacy + 14, sizeof legacy - 14);
	expect_tb_fail(tpath("bare.bin"), "not a zip archive", "bare pickle");
	char tar[1024] = "sys_info";
	memcpy(tar + 257, "ustar", 6);
	write_file(tpath("legacy-tar.bin"), tar, sizeof tar);
	expect_tb_fail(tpath("legacy-tar.bin"), "legacy torch.save format", "legacy tar");
	write_file(tpath("pk-only.bin"), "PK\3\4garbage", 11);
	expect_tb_fail(tpath("pk-only.bin"), "zip", "zip magic only");
	expect_tb_fail(tpath("does-not-exist.bin"), "No such file", "missing file");
}

/* copy the first half of a fixture: the central directory is gone */
static void test_truncated_fixture(const char *dir)
{
	char src[512];
	size_t len;
	snprintf(src, sizeof src, "%s/pre-ln/pytorch_model.bin", dir);
	char *buf = lm_read_file(src, 1u << 30, &len);
	CHECKF(buf != NULL, "%s: %s", src, lm_errmsg());
	if (!buf)
		return;
	write_file(tpath("half.bin"), buf, len / 2);
	expect_tb_fail(tpath("half.bin"), "zip", "half a fixture");
	/* cut just before the end of central directory record too */
	write_file(tpath("most.bin"), buf, len - 10);
	expect_tb_fail(tpath("most.bin"), NULL, "fixture minus 10 bytes");
	free(buf);
}

/* every tensor of the .bin equals the safetensors tensor of the same canonical name, and every
 * safetensors tensor is in the .bin */
static void compare_fixture(const char *dir, const char *fx, const char *bin, int legacy)
{
	char stpath[512], tbpath[512], canon[256];
	struct lm_st_file st;
	struct lm_tb_file tb;
	size_t matched = 0;

	snprintf(stpath, sizeof stpath, "%s/%s/model.safetensors", dir, fx);
	snprintf(tbpath, sizeof tbpath, "%s/%s/%s", dir, fx, bin);
	if (lm_st_open(&st, stpath)) {
		CHECKF(0, "%s: %s", stpath, lm_errmsg());
		return;
	}
	if (lm_tb_open(&tb, tbpath)) {
		CHECKF(0, "%s: %s", tbpath, lm_errmsg());
		lm_st_close(&st);
		return;
	}
	CHECKF(tb.version == 3, "%s: version %d", tbpath, tb.version);
	long emb = lm_tb_find(&tb, legacy ? "decoder.embed_tokens.weight" : "model.decoder.embed_tokens.weight");
	CHECKF(emb >= 0, "%s: no embed_tokens", tbpath);
	for (size_t i = 0; i < tb.n; i++) {
		const struct lm_tb_entry *e = &tb.entries[i];
		if (legacy)
			CHECKF(strncmp(e->name, "model.", 6) && strcmp(e->name, "lm_head.weight"),
			       "%s: '%s' in a legacy file", tbpath, e->name);
		if (lm_opt_canonical_name(e->name, canon, sizeof canon)) {
			CHECKF(0, "%s: '%s' is not an OPT name", tbpath, e->name);
			continue;
		}
		long j = lm_st_find(&st, canon);
		if (j < 0 && !strcmp(canon, "lm_head.weight")) {
			/* tied: absent from model.safetensors, and sharing embed_tokens' storage here */
			CHECKF(emb >= 0 && !strcmp(e->storage, tb.entries[emb].storage) &&
			       e->storage_offset == tb.entries[emb].storage_offset,
			       "%s: lm_head.weight does not share embed_tokens' storage", tbpath);
			j = lm_st_find(&st, "model.decoder.embed_tokens.weight");
		}
		CHECKF(j >= 0, "%s: '%s' not in model.safetensors", tbpath, e->name);
		if (j < 0)
			continue;
		const struct lm_st_entry *s = &st.entries[j];
		int same = e->dtype == s->dtype && e->ndim == s->ndim && e->nbytes == s->end - s->begin;
		for (int d = 0; same && d < e->ndim; d++)
			same = e->shape[d] == s->shape[d];
		CHECKF(same, "%s: '%s' differs in dtype or shape", tbpath, e->name);
		if (!same)
			continue;
		char *a = malloc(e->nbytes + 1), *b = malloc(e->nbytes + 1);
		CHECKF(lm_tb_read(&tb, i, a) == 0, "%s: %s", tbpath, lm_errmsg());
		CHECKF(lm_st_read(&st, (size_t)j, b) == 0, "%s: %s", stpath, lm_errmsg());
		CHECKF(!memcmp(a, b, e->nbytes), "%s: '%s' bytes differ", tbpath, e->name);
		free(a);
		free(b);
		matched++;
	}
	/* and nothing of model.safetensors is missing from the .bin */
	for (size_t j = 0; j < st.n; j++) {
		int found = 0;
		for (size_t i = 0; i < tb.n && !found; i++)
			found = !lm_opt_canonical_name(tb.entries[i].name, canon, sizeof canon) &&
			        !strcmp(canon, st.entries[j].name);
		CHECKF(found, "%s: '%s' missing", tbpath, st.entries[j].name);
	}
	CHECKF(matched == tb.n && tb.n >= st.n, "%s: %zu of %zu tensors matched", tbpath, matched, tb.n);
	/* backwards once more: every read re-opens the archive and must still be right */
	if (tb.n > 1) {
		const struct lm_tb_entry *e = &tb.entries[tb.n - 1], *e0 = &tb.entries[0];
		char *a = malloc(e->nbytes + 1), *b = malloc(e0->nbytes + 1), *c = malloc(e->nbytes + 1);
		CHECK(lm_tb_read(&tb, tb.n - 1, a) == 0 && lm_tb_read(&tb, 0, b) == 0 &&
		      lm_tb_read(&tb, tb.n - 1, c) == 0 && !memcmp(a, c, e->nbytes));
		free(a);
		free(b);
		free(c);
	}
	lm_tb_close(&tb);
	lm_st_close(&st);
}

static void cleanup(void)
{
	static const char *const names[] = {
		"good.bin", "deflate.bin", "evil.bin", "evil2.bin", "trunc-pkl.bin", "strided.bin",
		"past.bin", "short.bin", "missing.bin", "v99.bin", "vx.bin", "big.bin", "nopkl.bin",
		"flat.bin", "dup.bin", "minimal.bin", "text.bin", "empty.bin", "legacy.bin",
		"legacy-tar.bin", "pk-only.bin", "half.bin", "most.bin", "halves.bin", "legacy4.bin", "bare.bin",
	};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		unlink(tpath(names[i]));
	rmdir(tmpdir);
}

int main(void)
{
	const char *dir = getenv("LM_TESTDATA") ? getenv("LM_TESTDATA") : "tests/fixtures";
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	static const char *const fixtures[] = {"pre-ln", "post-ln-proj", "fp16"};

	snprintf(tmpdir, sizeof tmpdir, "%s/lmtb-XXXXXX", tmp);
	if (!mkdtemp(tmpdir)) {
		perror(tmpdir);
		return 2;
	}
	test_pickle_good();
	test_pickle_bad();
	test_zip_handmade();
	test_truncated_fixture(dir);
	for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
		compare_fixture(dir, fixtures[i], "pytorch_model.bin", 0);
		compare_fixture(dir, fixtures[i], "legacy_pytorch_model.bin", 1);
	}
	cleanup();
	return unit_done("torchbin");
}

/* pickle.c: the restricted unpickler (see pickle.h).
 *
 * Values live in a pool owned by the machine and are freed all at once; the stack, the
 * memo and containers hold pointers, so a memoized list or dict that is later mutated
 * (APPENDS, SETITEMS) is seen through every reference, as in Python. A "global" is only an
 * index into the allowlist, and REDUCE on one builds a C value (an empty dict, a tensor
 * record): no name from the file is ever resolved to code. */
#include "pickle.h"
#include "util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum pk_type {
	PK_NONE, PK_BOOL, PK_INT, PK_FLOAT, PK_STR,
	PK_TUPLE, PK_LIST, PK_DICT,   /* a dict is a sequence of key, value pairs */
	PK_GLOBAL, PK_STORAGE, PK_TENSOR
};

enum pk_callable {
	G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_TENSOR_V2, G_REBUILD_PARAM,
	G_REBUILD_PARAM_STATE, G_STORAGE
};

/* Everything data.pkl may name. torch.save pickles a tensor as
 * _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]),
 * the storage being BINPERSID of ('storage', torch.<T>Storage, key, location, numel);
 * torch >= 2 still writes the typed storage classes for the classic dtypes (only the
 * newer dtypes go through _rebuild_tensor_v3 with dtype globals, none of which lmpipe has). */
static const struct {
	const char *module, *name;
	enum pk_callable kind;
	int dtype;
} allow[] = {
	{"collections", "OrderedDict", G_ORDERED_DICT, -1},
	{"torch._utils", "_rebuild_tensor", G_REBUILD_TENSOR, -1},
	{"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, -1},
	{"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, -1},
	{"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, -1},
	{"torch", "FloatStorage", G_STORAGE, LM_F32},
	{"torch", "HalfStorage", G_STORAGE, LM_F16},
	{"torch", "BFloat16Storage", G_STORAGE, LM_BF16},
	{"torch", "DoubleStorage", G_STORAGE, LM_F64},
	{"torch", "LongStorage", G_STORAGE, LM_I64},
	{"torch", "IntStorage", G_STORAGE, LM_I32},
	{"torch", "ShortStorage", G_STORAGE, LM_I16},
	{"torch", "CharStorage", G_STORAGE, LM_I8},
	{"torch", "ByteStorage", G_STORAGE, LM_U8},
	{"torch", "BoolStorage", G_STORAGE, LM_BOOL},
};

struct pk_obj {
	enum pk_type type;
	union {
		int64_t i;                                       /* PK_BOOL, PK_INT */
		double f;                                        /* PK_FLOAT */
		struct { char *s; size_t len; } str;             /* PK_STR, NUL-terminated too */
		struct { struct pk_obj **v; size_t n, cap; } seq; /* PK_TUPLE, PK_LIST, PK_DICT */
		size_t global;                                   /* PK_GLOBAL: index into allow[] */
		struct { int dtype; const struct pk_obj *key; int64_t numel; } storage;
		struct { const struct pk_obj *storage, *size, *stride; int64_t offset; } tensor;
	} u;
};

#define PK_POOL_SIZE 512
struct pk_pool {
	struct pk_pool *next;
	size_t n;
	struct pk_obj o[PK_POOL_SIZE];
};

struct pk_vm {
	const unsigned char *start, *p, *end;
	size_t op_off;                /* offset of the opcode being run, for messages */
	unsigned char op;
	struct pk_obj **stack;
	size_t sp, scap;
	size_t marks[LM_PK_MAX_MARKS];
	size_t nmarks;
	struct pk_obj **memo;
	size_t nmemo, memo_limit;     /* slots allocated, slots allowed */
	size_t memo_count;            /* slots set: where MEMOIZE puts the next value */
	struct pk_pool *pool;
	size_t nobj, nitems;
};

/* "data.pkl: <what> (opcode 0xNN at offset N)" */
__attribute__((format(printf, 2, 3)))
static int pk_err(const struct pk_vm *vm, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return lm_seterr("data.pkl: %s (opcode 0x%02x at offset %zu)", msg, vm->op, vm->op_off);
}

static struct pk_obj *pk_new(struct pk_vm *vm, enum pk_type t)
{
	if (vm->nobj >= LM_PK_MAX_OBJECTS) {
		pk_err(vm, "more than %u objects", LM_PK_MAX_OBJECTS);
		return NULL;
	}
	if (!vm->pool || vm->pool->n == PK_POOL_SIZE) {
		struct pk_pool *p = malloc(sizeof *p);
		if (!p) {
			lm_seterr("data.pkl: out of memory");
			return NULL;
		}
		p->next = vm->pool, p->n = 0;
		vm->pool = p;
	}
	struct pk_obj *o = &vm->pool->o[vm->pool->n++];
	memset(o, 0, sizeof *o);
	o->type = t;
	vm->nobj++;
	return o;
}

static void pk_vm_free(struct pk_vm *vm)
{
	while (vm->pool) {
		struct pk_pool *p = vm->pool;
		for (size_t i = 0; i < p->n; i++) {
			if (p->o[i].type == PK_STR)
				free(p->o[i].u.str.s);
			else if (p->o[i].type == PK_TUPLE || p->o[i].type == PK_LIST || p->o[i].type == PK_DICT)
				free(p->o[i].u.seq.v);
		}
		vm->pool = p->next;
		free(p);
	}
	free(vm->stack);
	free(vm->memo);
}

/* grow a pointer array to hold want slots, doubling, never beyond limit */
static int pk_grow(struct pk_obj ***v, size_t *cap, size_t want, size_t limit)
{
	if (want <= *cap)
		return 0;
	if (want > limit)
		return -1;
	size_t c = *cap ? *cap : 16;
	while (c < want)
		c = c > limit / 2 ? limit : c * 2;
	struct pk_obj **nv = realloc(*v, c * sizeof *nv);
	if (!nv)
		return -1;
	*v = nv, *cap = c;
	return 0;
}

static int pk_seq_add(struct pk_vm *vm, struct pk_obj *seq, struct pk_obj *item)
{
	if (vm->nitems >= LM_PK_MAX_ITEMS)
		return pk_err(vm, "more than %u container items", LM_PK_MAX_ITEMS);
	if (pk_grow(&seq->u.seq.v, &seq->u.seq.cap, seq->u.seq.n + 1, LM_PK_MAX_ITEMS))
		return lm_seterr("data.pkl: out of memory");
	seq->u.seq.v[seq->u.seq.n++] = item;
	vm->nitems++;
	return 0;
}

static int pk_push(struct pk_vm *vm, struct pk_obj *o)
{
	if (!o)
		return -1;
	if (vm->sp >= LM_PK_MAX_STACK)
		return pk_err(vm, "stack deeper than %u", LM_PK_MAX_STACK);
	if (pk_grow(&vm->stack, &vm->scap, vm->sp + 1, LM_PK_MAX_STACK))
		return lm_seterr("data.pkl: out of memory");
	vm->stack[vm->sp++] = o;
	return 0;
}

/* the stack above the innermost MARK is all an opcode may see, as in Python's unpickler */
static size_t pk_frame(const struct pk_vm *vm)
{
	return vm->nmarks ? vm->marks[vm->nmarks - 1] : 0;
}

static struct pk_obj *pk_pop(struct pk_vm *vm)
{
	if (vm->sp <= pk_frame(vm)) {
		pk_err(vm, "stack underflow");
		return NULL;
	}
	return vm->stack[--vm->sp];
}

static struct pk_obj *pk_top(struct pk_vm *vm)
{
	if (vm->sp <= pk_frame(vm)) {
		pk_err(vm, "stack underflow");
		return NULL;
	}
	return vm->stack[vm->sp - 1];
}

/* pop back to the innermost MARK; the items are stack[*base .. sp) until the next push */
static int pk_pop_mark(struct pk_vm *vm, size_t *base)
{
	if (!vm->nmarks)
		return pk_err(vm, "no MARK on the stack");
	*base = vm->marks[--vm->nmarks];
	return 0;
}

static int pk_need(struct pk_vm *vm, size_t n)
{
	if ((size_t)(vm->end - vm->p) < n)
		return pk_err(vm, "truncated: %zu bytes needed, %zu left", n, (size_t)(vm->end - vm->p));
	return 0;
}

static uint64_t pk_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* a string of len bytes at the cursor; len is checked against the input first, so a
 * length claim larger than the pickle never reaches malloc */
static struct pk_obj *pk_str(struct pk_vm *vm, uint64_t len)
{
	if (len > (uint64_t)(vm->end - vm->p)) {
		pk_err(vm, "string length %llu exceeds the %zu bytes left", (unsigned long long)len,
		       (size_t)(vm->end - vm->p));
		return NULL;
	}
	struct pk_obj *o = pk_new(vm, PK_STR);
	if (!o)
		return NULL;
	o->u.str.s = malloc((size_t)len + 1);
	if (!o->u.str.s) {
		o->type = PK_NONE;
		lm_seterr("data.pkl: out of memory");
		return NULL;
	}
	memcpy(o->u.str.s, vm->p, (size_t)len);
	o->u.str.s[len] = '\0';
	o->u.str.len = (size_t)len;
	vm->p += len;
	return o;
}

static struct pk_obj *pk_int(struct pk_vm *vm, int64_t v, enum pk_type t)
{
	struct pk_obj *o = pk_new(vm, t);
	if (o)
		o->u.i = v;
	return o;
}

/* a name from the file, made safe to print: at most 80 bytes, non-printables as '?' */
static void pk_printable(char *dst, const char *s, size_t n)
{
	size_t i;
	for (i = 0; i < n && i < 80; i++)
		dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	dst[i] = '\0';
}

static struct pk_obj *pk_global(struct pk_vm *vm, const char *mod, size_t mlen, const char *name,
                                size_t nlen)
{
	for (size_t i = 0; i < sizeof allow / sizeof *allow; i++) {
		if (strlen(allow[i].module) == mlen && !memcmp(allow[i].module, mod, mlen) &&
		    strlen(allow[i].name) == nlen && !memcmp(allow[i].name, name, nlen)) {
			struct pk_obj *o = pk_new(vm, PK_GLOBAL);
			if (o)
				o->u.global = i;
			return o;
		}
	}
	char m[81], n[81];
	pk_printable(m, mod, mlen);
	pk_printable(n, name, nlen);
	lm_seterr("forbidden global '%s.%s' in data.pkl", m, n);
	return NULL;
}

/* GLOBAL: "module\nname\n" */
static struct pk_obj *pk_op_global(struct pk_vm *vm)
{
	const unsigned char *mod = vm->p, *nl1, *nl2;
	nl1 = memchr(mod, '\n', (size_t)(vm->end - mod));
	nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(vm->end - nl1 - 1)) : NULL;
	if (!nl2) {
		pk_err(vm, "truncated GLOBAL");
		return NULL;
	}
	vm->p = nl2 + 1;
	return pk_global(vm, (const char *)mod, (size_t)(nl1 - mod), (const char *)nl1 + 1,
	                 (size_t)(nl2 - nl1 - 1));
}

static int pk_int_tuple(const struct pk_obj *o, size_t maxn)
{
	if (o->type != PK_TUPLE || o->u.seq.n > maxn)
		return 0;
	for (size_t i = 0; i < o->u.seq.n; i++)
		if (o->u.seq.v[i]->type != PK_INT || o->u.seq.v[i]->u.i < 0)
			return 0;
	return 1;
}

/* _rebuild_tensor(storage, storage_offset, size, stride, ...): only the geometry is kept;
 * requires_grad, backward hooks and metadata do not change the bytes */
static struct pk_obj *pk_tensor(struct pk_vm *vm, struct pk_obj **a)
{
	if (a[0]->type != PK_STORAGE) {
		pk_err(vm, "tensor rebuilt from something that is not a storage");
		return NULL;
	}
	if (a[2]->type == PK_TUPLE && a[2]->u.seq.n > 8) {
		pk_err(vm, "tensor with more than 8 dimensions");
		return NULL;
	}
	if (a[1]->type != PK_INT || a[1]->u.i < 0 || !pk_int_tuple(a[2], 8) || !pk_int_tuple(a[3], 8) ||
	    a[2]->u.seq.n != a[3]->u.seq.n) {
		pk_err(vm, "bad tensor offset, size or stride");
		return NULL;
	}
	struct pk_obj *t = pk_new(vm, PK_TENSOR);
	if (t) {
		t->u.tensor.storage = a[0];
		t->u.tensor.offset = a[1]->u.i;
		t->u.tensor.size = a[2];
		t->u.tensor.stride = a[3];
	}
	return t;
}

static int pk_op_reduce(struct pk_vm *vm)
{
	struct pk_obj *args = pk_pop(vm), *fn = args ? pk_pop(vm) : NULL, *r = NULL;
	if (!fn)
		return -1;
	if (fn->type != PK_GLOBAL || args->type != PK_TUPLE)
		return pk_err(vm, "REDUCE needs an allowed callable and an argument tuple");
	struct pk_obj **a = args->u.seq.v;
	size_t n = args->u.seq.n;
	const char *name = allow[fn->u.global].name;
	switch (allow[fn->u.global].kind) {
	case G_ORDERED_DICT:
		if (n)
			return pk_err(vm, "OrderedDict with arguments is not supported");
		r = pk_new(vm, PK_DICT);
		break;
	case G_REBUILD_TENSOR:
		if (n != 4)
			return pk_err(vm, "%s takes 4 arguments, got %zu", name, n);
		r = pk_tensor(vm, a);
		break;
	case G_REBUILD_TENSOR_V2:
		if (n != 6 && n != 7)
			return pk_err(vm, "%s takes 6 or 7 arguments, got %zu", name, n);
		r = pk_tensor(vm, a);
		break;
	case G_REBUILD_PARAM:
	case G_REBUILD_PARAM_STATE:
		/* an nn.Parameter is its data tensor for our purposes */
		if (n != (allow[fn->u.global].kind == G_REBUILD_PARAM ? 3u : 4u) || a[0]->type != PK_TENSOR)
			return pk_err(vm, "bad arguments to %s", name);
		r = a[0];
		break;
	case G_STORAGE:
		return pk_err(vm, "storage class torch.%s cannot be called", name);
	}
	return pk_push(vm, r);
}

/* BINPERSID on ('storage', torch.<T>Storage, key, location, numel) */
static int pk_op_persid(struct pk_vm *vm)
{
	struct pk_obj *pid = pk_pop(vm), **v;
	if (!pid)
		return -1;
	if (pid->type != PK_TUPLE || pid->u.seq.n != 5)
		return pk_err(vm, "persistent id is not ('storage', <type>Storage, key, location, numel)");
	v = pid->u.seq.v;
	if (v[0]->type != PK_STR ||
	    strcmp(v[0]->u.str.s, "storage") || v[1]->type != PK_GLOBAL ||
	    allow[v[1]->u.global].kind != G_STORAGE || v[2]->type != PK_STR || v[3]->type != PK_STR ||
	    v[4]->type != PK_INT || v[4]->u.i < 0)
		return pk_err(vm, "persistent id is not ('storage', <type>Storage, key, location, numel)");
	/* the key names a zip record: keep it a plain file name */
	const struct pk_obj *k = v[2];
	if (strlen(k->u.str.s) != k->u.str.len)
		return pk_err(vm, "a NUL byte inside a storage key");
	if (!k->u.str.len || k->u.str.len > 255 || strchr(k->u.str.s, '/'))
		return pk_err(vm, "bad storage key");
	struct pk_obj *s = pk_new(vm, PK_STORAGE);
	if (!s)
		return -1;
	s->u.storage.dtype = allow[v[1]->u.global].dtype;
	s->u.storage.key = k;
	s->u.storage.numel = v[4]->u.i;
	return pk_push(vm, s);
}

static int pk_memo_put(struct pk_vm *vm, uint64_t idx)
{
	struct pk_obj *top = pk_top(vm);
	if (!top)
		return -1;
	if (idx >= vm->memo_limit)
		return pk_err(vm, "memo index %llu out of range", (unsigned long long)idx);
	if (idx >= vm->nmemo) {
		size_t old = vm->nmemo;
		if (pk_grow(&vm->memo, &vm->nmemo, (size_t)idx + 1, vm->memo_limit))
			return lm_seterr("data.pkl: out of memory");
		memset(vm->memo + old, 0, (vm->nmemo - old) * sizeof *vm->memo);
	}
	if (!vm->memo[idx])
		vm->memo_count++;
	vm->memo[idx] = top;
	return 0;
}

static int pk_memo_get(struct pk_vm *vm, uint64_t idx)
{
	if (idx >= vm->nmemo || !vm->memo[idx])
		return pk_err(vm, "memo %llu is not set", (unsigned long long)idx);
	return pk_push(vm, vm->memo[idx]);
}

/* the memo opcodes (BINPUT/LONG_BINPUT, BINGET/LONG_BINGET) differ only in the width of
 * their little-endian index argument and in whether they store or fetch */
static int pk_memo_op(struct pk_vm *vm, int width, int (*op)(struct pk_vm *, uint64_t))
{
	if (pk_need(vm, (size_t)width))
		return -1;
	uint64_t idx = pk_le(vm->p, width);
	vm->p += width;
	return op(vm, idx);
}

static struct pk_obj *pk_tuple(struct pk_vm *vm, size_t base)
{
	struct pk_obj *t = pk_new(vm, PK_TUPLE);
	if (!t)
		return NULL;
	for (size_t i = base; i < vm->sp; i++)
		if (pk_seq_add(vm, t, vm->stack[i]))
			return NULL;
	vm->sp = base;
	return t;
}

/* one opcode; 1 at STOP (result left on the stack), 0 to go on, -1 on error */
static int pk_step(struct pk_vm *vm)
{
	struct pk_obj *o, *k, *v;
	size_t base = 0;
	uint64_t u;

	vm->op_off = (size_t)(vm->p - vm->start);
	vm->op = *vm->p++;
	switch (vm->op) {
	case 0x80: /* PROTO */
		if (pk_need(vm, 1))
			return -1;
		if (*vm->p > 5)
			return pk_err(vm, "unsupported pickle protocol %u", *vm->p);
		vm->p++;
		return 0;
	case 0x95: /* FRAME: only groups opcodes for buffered readers; the length is checked */
		if (pk_need(vm, 8))
			return -1;
		u = pk_le(vm->p, 8);
		vm->p += 8;
		if (u > (uint64_t)(vm->end - vm->p))
			return pk_err(vm, "frame of %llu bytes exceeds the input", (unsigned long long)u);
		return 0;
	case '.': /* STOP */
		return pk_top(vm) ? 1 : -1;
	case '(': /* MARK */
		if (vm->nmarks >= LM_PK_MAX_MARKS)
			return pk_err(vm, "MARKs nested deeper than %u", LM_PK_MAX_MARKS);
		vm->marks[vm->nmarks++] = vm->sp;
		return 0;
	case '}': /* EMPTY_DICT */
		return pk_push(vm, pk_new(vm, PK_DICT));
	case ']': /* EMPTY_LIST */
		return pk_push(vm, pk_new(vm, PK_LIST));
	case ')': /* EMPTY_TUPLE */
		return pk_push(vm, pk_new(vm, PK_TUPLE));
	case 'N': /* NONE */
		return pk_push(vm, pk_new(vm, PK_NONE));
	case 0x88: /* NEWTRUE */
	case 0x89: /* NEWFALSE */
		return pk_push(vm, pk_int(vm, vm->op == 0x88, PK_BOOL));
	case 't': /* TUPLE */
		if (pk_pop_mark(vm, &base))
			return -1;
		return pk_push(vm, pk_tuple(vm, base));
	case 0x85: /* TUPLE1 */
	case 0x86: /* TUPLE2 */
	case 0x87: /* TUPLE3 */
		base = (size_t)(vm->op - 0x84);
		if (vm->sp < pk_frame(vm) + base)
			return pk_err(vm, "stack underflow");
		return pk_push(vm, pk_tuple(vm, vm->sp - base));
	case 'a': /* APPEND */
		if (!(v = pk_pop(vm)) || !(o = pk_top(vm)))
			return -1;
		if (o->type != PK_LIST)
			return pk_err(vm, "APPEND to a non-list");
		return pk_seq_add(vm, o, v);
	case 'e': /* APPENDS */
		if (pk_pop_mark(vm, &base))
			return -1;
		if (base <= pk_frame(vm) || (o = vm->stack[base - 1])->type != PK_LIST)
			return pk_err(vm, "APPENDS without a list");
		for (size_t i = base; i < vm->sp; i++)
			if (pk_seq_add(vm, o, vm->stack[i]))
				return -1;
		vm->sp = base;
		return 0;
	case 's': /* SETITEM */
		if (!(v = pk_pop(vm)) || !(k = pk_pop(vm)) || !(o = pk_top(vm)))
			return -1;
		if (o->type != PK_DICT)
			return pk_err(vm, "SETITEM on a non-dict");
		return pk_seq_add(vm, o, k) || pk_seq_add(vm, o, v) ? -1 : 0;
	case 'u': /* SETITEMS */
		if (pk_pop_mark(vm, &base))
			return -1;
		if (base <= pk_frame(vm) || (o = vm->stack[base - 1])->type != PK_DICT)
			return pk_err(vm, "SETITEMS without a dict");
		if ((vm->sp - base) % 2)
			return pk_err(vm, "SETITEMS with an odd number of items");
		for (size_t i = base; i < vm->sp; i++)
			if (pk_seq_add(vm, o, vm->stack[i]))
				return -1;
		vm->sp = base;
		return 0;
	case 'J': /* BININT: 4-byte signed */
		if (pk_need(vm, 4))
			return -1;
		u = pk_le(vm->p, 4);
		vm->p += 4;
		return pk_push(vm, pk_int(vm, (int64_t)(int32_t)(uint32_t)u, PK_INT));
	case 'K': /* BININT1 */
		if (pk_need(vm, 1))
			return -1;
		return pk_push(vm, pk_int(vm, *vm->p++, PK_INT));
	case 'M': /* BININT2 */
		if (pk_need(vm, 2))
			return -1;
		u = pk_le(vm->p, 2);
		vm->p += 2;
		return pk_push(vm, pk_int(vm, (int64_t)u, PK_INT));
	case 0x8a: { /* LONG1: n-byte two's complement, little-endian */
		if (pk_need(vm, 1))
			return -1;
		unsigned n = *vm->p++;
		if (n > 8)
			return pk_err(vm, "integer wider than 64 bits");
		if (pk_need(vm, n))
			return -1;
		u = pk_le(vm->p, (int)n);
		if (n > 0 && n < 8 && (vm->p[n - 1] & 0x80))
			u |= ~(uint64_t)0 << (8 * n);  /* sign-extend */
		vm->p += n;
		return pk_push(vm, pk_int(vm, (int64_t)u, PK_INT));
	}
	case 'G': { /* BINFLOAT: 8-byte big-endian double */
		uint64_t bits = 0;
		double d;
		if (pk_need(vm, 8))
			return -1;
		for (int i = 0; i < 8; i++)
			bits = bits << 8 | vm->p[i];
		vm->p += 8;
		memcpy(&d, &bits, sizeof d);
		if (!(o = pk_new(vm, PK_FLOAT)))
			return -1;
		o->u.f = d;
		return pk_push(vm, o);
	}
	case 'X': /* BINUNICODE: 4-byte length */
		if (pk_need(vm, 4))
			return -1;
		u = pk_le(vm->p, 4);
		vm->p += 4;
		return pk_push(vm, pk_str(vm, u));
	case 0x8d: /* BINUNICODE8 */
		if (pk_need(vm, 8))
			return -1;
		u = pk_le(vm->p, 8);
		vm->p += 8;
		return pk_push(vm, pk_str(vm, u));
	case 0x8c: /* SHORT_BINUNICODE */
	case 'U':  /* SHORT_BINSTRING (protocol 2 bytes-as-str) */
		if (pk_need(vm, 1))
			return -1;
		u = *vm->p++;
		return pk_push(vm, pk_str(vm, u));
	case 'c': /* GLOBAL */
		return pk_push(vm, pk_op_global(vm));
	case 0x93: /* STACK_GLOBAL */
		if (!(v = pk_pop(vm)) || !(k = pk_pop(vm)))
			return -1;
		if (k->type != PK_STR || v->type != PK_STR)
			return pk_err(vm, "STACK_GLOBAL needs two strings");
		return pk_push(vm, pk_global(vm, k->u.str.s, k->u.str.len, v->u.str.s, v->u.str.len));
	case 'q': /* BINPUT */
		return pk_memo_op(vm, 1, pk_memo_put);
	case 'r': /* LONG_BINPUT */
		return pk_memo_op(vm, 4, pk_memo_put);
	case 0x94: /* MEMOIZE: the next free slot, as Python counts it (len(memo)) */
		return pk_memo_put(vm, vm->memo_count);
	case 'h': /* BINGET */
		return pk_memo_op(vm, 1, pk_memo_get);
	case 'j': /* LONG_BINGET */
		return pk_memo_op(vm, 4, pk_memo_get);
	case 'R': /* REDUCE */
		return pk_op_reduce(vm);
	case 'Q': /* BINPERSID */
		return pk_op_persid(vm);
	case 'b': /* BUILD: state of an OrderedDict (its _metadata attribute) or a tensor: dropped */
		if (!(v = pk_pop(vm)) || !(o = pk_top(vm)))
			return -1;
		if (o->type != PK_DICT && o->type != PK_TENSOR)
			return pk_err(vm, "BUILD on an object that is neither a dict nor a tensor");
		return 0;
	default:
		return pk_err(vm, "unsupported pickle opcode");
	}
}

static int pk_cmp_name(const void *a, const void *b)
{
	const struct lm_pk_tensor *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* the dict's pairs -> tensor records; every key a str, every value a tensor */
static int pk_extract(const struct pk_obj *d, struct lm_pk_tensor **out, size_t *nout)
{
	size_t n = d->u.seq.n / 2, i;
	struct lm_pk_tensor *t = calloc(n ? n : 1, sizeof *t);
	const struct lm_pk_tensor **sorted = NULL;
	if (!t)
		return lm_seterr("data.pkl: out of memory");
	for (i = 0; i < n; i++) {
		const struct pk_obj *k = d->u.seq.v[2 * i], *v = d->u.seq.v[2 * i + 1];
		char name[81];
		if (k->type != PK_STR) {
			lm_seterr("data.pkl: a state dict key is not a string");
			goto fail;
		}
		/* "embed_tokens.weight\0evil" must not be read as the embedding */
		if (strlen(k->u.str.s) != k->u.str.len) {
			pk_printable(name, k->u.str.s, strlen(k->u.str.s));
			lm_seterr("data.pkl: key '%s': a NUL byte inside the name", name);
			goto fail;
		}
		pk_printable(name, k->u.str.s, k->u.str.len);
		if (v->type != PK_TENSOR) {
			lm_seterr("data.pkl: '%s' is not a tensor", name);
			goto fail;
		}
		const struct pk_obj *st = v->u.tensor.storage, *sz = v->u.tensor.size, *sd = v->u.tensor.stride;
		t[i].name = strdup(k->u.str.s);
		t[i].storage = strdup(st->u.storage.key->u.str.s);
		if (!t[i].name || !t[i].storage) {
			lm_seterr("data.pkl: out of memory");
			goto fail;
		}
		t[i].dtype = (enum lm_dtype)st->u.storage.dtype;
		t[i].ndim = (int)sz->u.seq.n;
		for (int j = 0; j < t[i].ndim; j++) {
			t[i].shape[j] = sz->u.seq.v[j]->u.i;
			t[i].stride[j] = sd->u.seq.v[j]->u.i;
		}
		t[i].storage_offset = (uint64_t)v->u.tensor.offset;
		t[i].storage_numel = (uint64_t)st->u.storage.numel;
	}
	/* torch never writes a key twice; Python would keep the last value silently */
	sorted = malloc((n ? n : 1) * sizeof *sorted);
	if (!sorted) {
		lm_seterr("data.pkl: out of memory");
		goto fail;
	}
	for (i = 0; i < n; i++)
		sorted[i] = &t[i];
	qsort(sorted, n, sizeof *sorted, pk_cmp_name);
	for (i = 1; i < n; i++) {
		if (!strcmp(sorted[i]->name, sorted[i - 1]->name)) {
			char name[81];
			pk_printable(name, sorted[i]->name, strlen(sorted[i]->name));
			lm_seterr("data.pkl: tensor '%s' appears twice", name);
			free(sorted);
			goto fail;
		}
	}
	free(sorted);
	*out = t, *nout = n;
	return 0;
fail:
	lm_pk_free(t, n);  /* calloc'd: names not yet set are NULL */
	return -1;
}

int lm_pk_state_dict(const unsigned char *buf, size_t len, struct lm_pk_tensor **out, size_t *n)
{
	struct pk_vm vm;
	int r = 0;

	*out = NULL, *n = 0;
	memset(&vm, 0, sizeof vm);
	vm.start = vm.p = buf;
	vm.end = buf + len;
	/* a sequential pickler needs at least two bytes per memo slot it fills */
	vm.memo_limit = len < LM_PK_MAX_MEMO ? (len > 256 ? len : 256) : LM_PK_MAX_MEMO;
	while (r == 0) {
		if (vm.p >= vm.end) {
			r = lm_seterr("data.pkl: truncated (no STOP opcode)");
			break;
		}
		r = pk_step(&vm);
	}
	if (r == 1) {
		const struct pk_obj *res = vm.stack[vm.sp - 1];
		if (res->type != PK_DICT)
			r = lm_seterr("data.pkl does not hold a state dict (a dict of tensors)");
		else
			r = pk_extract(res, out, n);
	}
	pk_vm_free(&vm);
	return r < 0 ? -1 : 0;
}

void lm_pk_free(struct lm_pk_tensor *t, size_t n)
{
	if (!t)
		return;
	for (size_t i = 0; i < n; i++) {
		free(t[i].name);
		free(t[i].storage);
	}
	free(t);
}

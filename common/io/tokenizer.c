/* tokenizer.c: GPT-2 byte-level BPE; see tokenizer.h.
 *
 * Encoding never builds the byte-level strings: a byte starts as the id of its
 * one-character token, and a merge is looked up by the pair of ids (a hash table from
 * (left, right) to (rank, merged id)), so the BPE loop touches only integers.
 *
 * Where this follows Hugging Face rather than the obvious choice, the comment says so:
 * the ids must be the ones the reference model was trained and evaluated with. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"
#include "util.h"

#include <jansson.h>
#include <limits.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's pre-tokenizer, verbatim. With PCRE2_UCP, \s is Unicode white space (U+0085
 * and U+00A0 included, as in Hugging Face); \p{L} and \p{N} follow the Unicode version
 * PCRE2 was built with. Known difference: PCRE2 counts U+180E (MONGOLIAN VOWEL
 * SEPARATOR, white space before Unicode 6.3) as \s, Python's regex does not. */
static const char lm_pretok_re[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ids are array indices: a bound keeps a corrupt vocab.json from asking for gigabytes */
#define LM_TOK_MAX_ID (1 << 24)

/* ---- small hash tables, open addressing with linear probing ---- */

static uint64_t lm_hash_bytes(const char *s, size_t n)
{
	/* FNV-1a: keys are short words and tokens, a one-pass byte hash is enough */
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3u;
	}
	return h;
}

static uint64_t lm_hash_u64(uint64_t x)
{
	/* splitmix64 finaliser: pair keys are two small ids, their bits need spreading */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9u;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebu;
	x ^= x >> 31;
	return x;
}

/* smallest power of two >= 2n (load factor at most 1/2), or 0 on overflow */
static size_t lm_table_cap(size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n) {
		if (cap > SIZE_MAX / 4)
			return 0;
		cap *= 2;
	}
	return cap;
}

/* one vocabulary entry: the byte-level token and the bytes it decodes to */
struct lm_vtok {
	const char *s, *d; /* into the tokenizer's arena; s == NULL: no token has this id */
	uint32_t slen, dlen;
};

struct lm_tslot { /* token string -> id */
	uint32_t hash;
	int32_t id; /* -1: empty */
};

struct lm_mslot { /* (left id, right id) -> merge */
	uint64_t key; /* left << 32 | right; LM_MSLOT_EMPTY: empty */
	int32_t rank, id;
};
#define LM_MSLOT_EMPTY UINT64_MAX

struct lm_tokenizer {
	int32_t nid; /* max id + 1 */
	struct lm_vtok *vt; /* [nid] */
	char *arena;
	struct lm_tslot *tok; /* token -> id */
	size_t tokcap;
	struct lm_mslot *mrg; /* pair -> merge */
	size_t mrgcap;
	int32_t byte_id[256]; /* id of each byte's one-character token */
	pcre2_code *re;
};

static int32_t lm_tok_find(const struct lm_tokenizer *t, const char *s, size_t n)
{
	uint32_t h = (uint32_t)lm_hash_bytes(s, n);
	size_t mask = t->tokcap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		const struct lm_tslot *sl = &t->tok[i];
		if (sl->id < 0)
			return -1;
		if (sl->hash == h && t->vt[sl->id].slen == n && memcmp(t->vt[sl->id].s, s, n) == 0)
			return sl->id;
	}
}

/* vt[id] must already be filled, and the token not in the table yet */
static void lm_tok_insert(struct lm_tokenizer *t, int32_t id)
{
	const struct lm_vtok *v = &t->vt[id];
	uint32_t h = (uint32_t)lm_hash_bytes(v->s, v->slen);
	size_t mask = t->tokcap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct lm_tslot *sl = &t->tok[i];
		if (sl->id < 0) {
			sl->hash = h;
			sl->id = id;
			return;
		}
	}
}

static const struct lm_mslot *lm_merge_find(const struct lm_tokenizer *t, int32_t a, int32_t b)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	size_t mask = t->mrgcap - 1;
	for (size_t i = lm_hash_u64(key) & mask;; i = (i + 1) & mask) {
		const struct lm_mslot *sl = &t->mrg[i];
		if (sl->key == key)
			return sl;
		if (sl->key == LM_MSLOT_EMPTY)
			return NULL;
	}
}

static void lm_merge_insert(struct lm_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	size_t mask = t->mrgcap - 1;
	for (size_t i = lm_hash_u64(key) & mask;; i = (i + 1) & mask) {
		struct lm_mslot *sl = &t->mrg[i];
		/* a pair listed twice keeps its last rank: Hugging Face builds its merge map by
		 * inserting in file order into a dict, so the later line overwrites */
		if (sl->key == key || sl->key == LM_MSLOT_EMPTY) {
			sl->key = key;
			sl->rank = rank;
			sl->id = id;
			return;
		}
	}
}

/* ---- GPT-2's byte <-> character table ---- */

/* Bytes that are printable Latin-1 stand for themselves; the other 68 are given the
 * code points 256, 257, ... in byte order, so every token is printable text. */
static unsigned lm_byte_cp(unsigned b)
{
	unsigned n = 0;
	if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
		return b;
	for (unsigned c = 0; c < b; c++)
		if (!((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff)))
			n++;
	return 256 + n;
}

static size_t lm_utf8_put(char *out, unsigned cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	/* the table only reaches U+0143, two bytes always suffice */
	out[0] = (char)(0xc0 | cp >> 6);
	out[1] = (char)(0x80 | (cp & 0x3f));
	return 2;
}

/* Length of the longest valid UTF-8 prefix of s[0..n), by the rules PCRE2 checks
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), so that
 * PCRE2_NO_UTF_CHECK is safe on it. */
static size_t lm_utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t k;
		unsigned lo = 0x80, hi = 0xbf;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1;
		else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else
			return i;
		if (n - i <= k)
			return i;
		/* only the first continuation byte has a narrowed range */
		if (s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t j = 2; j <= k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return i;
		i += k + 1;
	}
	return n;
}

/* Length of the invalid sequence at s[0..n) (s does not start valid UTF-8): its lead byte
 * and the continuation bytes that still fitted, at least 1 -- the "maximal subpart" that
 * Unicode (and Python's errors="replace", which transformers' decode uses) turns into one
 * U+FFFD. */
static size_t utf8_bad_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0], lo = 0x80, hi = 0xbf;
	size_t k, j;
	if (c >= 0xc2 && c <= 0xdf)
		k = 1;
	else if (c >= 0xe0 && c <= 0xef)
		k = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
	else
		return 1;
	for (j = 1; j <= k && j < n; j++) {
		if (s[j] < lo || s[j] > hi)
			break;
		lo = 0x80, hi = 0xbf;
	}
	return j;
}

char *lm_utf8_replace(const char *text, size_t n, size_t *len)
{
	const unsigned char *s = (const unsigned char *)text;
	char *out = malloc(3 * n + 1); /* a byte becomes at most the 3 bytes of U+FFFD */
	size_t i = 0, o = 0;
	if (!out) {
		lm_seterr("out of memory");
		return NULL;
	}
	while (i < n) {
		size_t v = lm_utf8_valid(s + i, n - i);
		memcpy(out + o, s + i, v);
		o += v, i += v;
		if (i < n) {
			i += utf8_bad_len(s + i, n - i);
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
		}
	}
	out[o] = 0;
	*len = o;
	return out;
}

/* ---- loading ---- */

void lm_tokenizer_free(struct lm_tokenizer *t)
{
	if (!t)
		return;
	pcre2_code_free(t->re);
	free(t->vt);
	free(t->arena);
	free(t->tok);
	free(t->mrg);
	free(t);
}

/* Decoded bytes of one token: each character through the inverse byte table. A token
 * with a character outside the table (an added token) decodes to its own UTF-8, as the
 * Hugging Face ByteLevel decoder does. */
static uint32_t lm_decode_token(const int16_t inv[324], const char *s, uint32_t n, char *out)
{
	const unsigned char *u = (const unsigned char *)s;
	uint32_t o = 0;
	for (uint32_t i = 0; i < n;) {
		unsigned cp;
		if (u[i] < 0x80)
			cp = u[i++];
		else if ((u[i] & 0xe0) == 0xc0 && i + 1 < n && (u[i + 1] & 0xc0) == 0x80) {
			cp = (u[i] & 0x1fu) << 6 | (u[i + 1] & 0x3fu);
			i += 2;
		} else
			cp = 324;
		if (cp >= 324 || inv[cp] < 0) {
			memcpy(out, s, n);
			return n;
		}
		out[o++] = (char)inv[cp];
	}
	return o;
}

static int lm_load_vocab(struct lm_tokenizer *t, const char *json, size_t len)
{
	json_error_t jerr;
	json_t *root = json_loadb(json, len, 0, &jerr), *val;
	const char *key;
	size_t total = 0, count, off = 0;
	int32_t maxid = -1;
	int16_t inv[324];
	int rc = -1;

	if (!root)
		return lm_seterr("vocab.json: line %d: %s", jerr.line, jerr.text);
	/* every exit below goes through out: the messages quote keys, which live in root */
	if (!json_is_object(root)) {
		lm_seterr("vocab.json: not a JSON object");
		goto out;
	}
	count = json_object_size(root);
	/* first pass: validate ids, size the arena */
	json_object_foreach(root, key, val) {
		json_int_t id;
		if (!json_is_integer(val) || (id = json_integer_value(val)) < 0 || id >= LM_TOK_MAX_ID) {
			lm_seterr("vocab.json: \"%.64s\": id is not an integer in [0, %d]", key, LM_TOK_MAX_ID - 1);
			goto out;
		}
		if (id > maxid)
			maxid = (int32_t)id;
		/* the token, its NUL, and decoded bytes that are never longer than the token */
		total += 2 * (strlen(key) + 1);
	}
	if (count == 0) {
		lm_seterr("vocab.json: no tokens");
		goto out;
	}
	t->nid = maxid + 1;
	t->vt = calloc((size_t)t->nid, sizeof *t->vt);
	t->arena = malloc(total);
	t->tokcap = lm_table_cap(count);
	t->tok = t->tokcap ? malloc(t->tokcap * sizeof *t->tok) : NULL;
	if (!t->vt || !t->arena || !t->tok) {
		lm_seterr("out of memory");
		goto out;
	}
	for (size_t i = 0; i < t->tokcap; i++)
		t->tok[i].id = -1;

	for (int i = 0; i < 324; i++)
		inv[i] = -1;
	for (unsigned b = 0; b < 256; b++)
		inv[lm_byte_cp(b)] = (int16_t)b;

	json_object_foreach(root, key, val) {
		int32_t id = (int32_t)json_integer_value(val);
		size_t n = strlen(key);
		struct lm_vtok *v = &t->vt[id];
		if (v->s) {
			/* two tokens with one id: decoding could not choose, so refuse */
			lm_seterr("vocab.json: id %d given to both \"%.64s\" and \"%.64s\"", (int)id, v->s, key);
			goto out;
		}
		if (n > UINT32_MAX / 2) {
			lm_seterr("vocab.json: token too long");
			goto out;
		}
		memcpy(t->arena + off, key, n + 1);
		v->s = t->arena + off;
		v->slen = (uint32_t)n;
		off += n + 1;
		v->d = t->arena + off;
		v->dlen = lm_decode_token(inv, v->s, v->slen, t->arena + off);
		t->arena[off + v->dlen] = '\0';
		off += n + 1;
		/* jansson keeps the last of duplicate keys, so each key is seen once */
		lm_tok_insert(t, id);
	}

	/* every byte must have its token, or some text would have no encoding */
	for (unsigned b = 0; b < 256; b++) {
		char c[2];
		size_t n = lm_utf8_put(c, lm_byte_cp(b));
		if ((t->byte_id[b] = lm_tok_find(t, c, n)) < 0) {
			lm_seterr("vocab.json: no token for byte 0x%02x (\"%.*s\")", b, (int)n, c);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

static int lm_load_merges(struct lm_tokenizer *t, const char *m, size_t len)
{
	size_t nlines = 1, lineno = 0, pos = 0, buflen = 0;
	int32_t rank = 0;
	char *buf = NULL;

	for (size_t i = 0; i < len; i++)
		nlines += m[i] == '\n';
	t->mrgcap = lm_table_cap(nlines);
	t->mrg = t->mrgcap ? malloc(t->mrgcap * sizeof *t->mrg) : NULL;
	if (!t->mrg)
		return lm_seterr("out of memory");
	for (size_t i = 0; i < t->mrgcap; i++)
		t->mrg[i].key = LM_MSLOT_EMPTY;

	while (pos < len) {
		const char *line = m + pos, *nl = memchr(line, '\n', len - pos), *sp;
		size_t n = nl ? (size_t)(nl - line) : len - pos;
		int32_t a, b, ab;
		pos += n + (nl != NULL);
		lineno++;
		if (n > 0 && line[n - 1] == '\r')
			n--;
		/* the "#version: 0.2" header; Hugging Face skips any such line, not only the first */
		if (n >= 8 && memcmp(line, "#version", 8) == 0)
			continue;
		/* blank lines (the last one, mostly) carry no merge and take no rank */
		if (n == 0)
			continue;
		sp = memchr(line, ' ', n);
		if (!sp || sp == line || sp == line + n - 1 || memchr(sp + 1, ' ', (size_t)(line + n - sp - 1))) {
			free(buf);
			return lm_seterr("merges.txt: line %zu: not two tokens separated by one space", lineno);
		}
		if ((a = lm_tok_find(t, line, (size_t)(sp - line))) < 0 ||
		    (b = lm_tok_find(t, sp + 1, (size_t)(line + n - sp - 1))) < 0) {
			free(buf);
			return lm_seterr("merges.txt: line %zu: \"%.*s\": token not in vocab.json", lineno, (int)(n > 64 ? 64 : n), line);
		}
		/* the merged token is the two side by side, without the space */
		if (n - 1 > buflen) {
			char *nb = realloc(buf, n);
			if (!nb) {
				free(buf);
				return lm_seterr("out of memory");
			}
			buf = nb;
			buflen = n - 1;
		}
		memcpy(buf, line, (size_t)(sp - line));
		memcpy(buf + (sp - line), sp + 1, (size_t)(line + n - sp - 1));
		if ((ab = lm_tok_find(t, buf, n - 1)) < 0) {
			free(buf);
			return lm_seterr("merges.txt: line %zu: \"%.*s\": merged token not in vocab.json", lineno, (int)(n > 64 ? 64 : n), line);
		}
		if (rank == INT32_MAX) {
			free(buf);
			return lm_seterr("merges.txt: too many merges");
		}
		lm_merge_insert(t, a, b, rank++, ab);
	}
	free(buf);
	return 0;
}

struct lm_tokenizer *lm_tokenizer_load(const char *vocab_json, size_t vocab_len, const char *merges, size_t merges_len)
{
	struct lm_tokenizer *t;
	int code;
	PCRE2_SIZE at;

	if (!vocab_json || (!merges && merges_len)) {
		lm_seterr("tokenizer: no vocab.json or merges.txt data");
		return NULL;
	}
	if (!(t = calloc(1, sizeof *t))) {
		lm_seterr("out of memory");
		return NULL;
	}
	if (lm_load_vocab(t, vocab_json, vocab_len) < 0 || lm_load_merges(t, merges ? merges : "", merges_len) < 0) {
		lm_tokenizer_free(t);
		return NULL;
	}
	/* Anchored, at compile time (given to pcre2_match it would turn JIT off):
	 * every character is white space, a letter, a number or none of these, so some
	 * alternative always matches where the last match ended, and matches tile the text. */
	t->re = pcre2_compile((PCRE2_SPTR)lm_pretok_re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED,
			      &code, &at, NULL);
	if (!t->re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(code, msg, sizeof msg);
		lm_seterr("tokenizer: pre-tokenizer regex: %s", (const char *)msg);
		lm_tokenizer_free(t);
		return NULL;
	}
	/* JIT makes matching several times faster; without it (a PCRE2 built without JIT,
	 * or W^X memory policy) pcre2_match interprets the same pattern */
	pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
	return t;
}

/* ---- encoding ---- */

/* Cache of one lm_tokenize call, word bytes -> ids. It lives in the call so that a
 * const tokenizer can be shared between threads without locks. Bounded: when half
 * full it is emptied and starts again, which keeps it simple and keeps the frequent
 * words (they come back at once). */
#define LM_CACHE_WORD 64 /* longer words are rare, and rarely repeat: not cached */

struct lm_cslot {
	uint32_t hash, klen; /* klen 0: empty (words are never empty) */
	uint32_t koff, voff, vn;
};

/* one call's working state */
struct lm_enc {
	const struct lm_tokenizer *t;
	int32_t *out; /* result */
	size_t n, cap;
	/* BPE scratch for the current word, grown to the longest word seen */
	int32_t *sid, *snext, *sprev;
	uint64_t *heap;
	size_t scap;
	/* the word cache */
	struct lm_cslot *cs;
	size_t ccap, cused;
	char *ckeys;
	int32_t *cvals;
	uint32_t cklen, cvlen;
	size_t piece; /* longest run of bytes one BPE sees (0: no limit) */
};

static int lm_enc_push(struct lm_enc *e, const int32_t *ids, size_t k)
{
	if (e->cap - e->n < k) {
		size_t cap = e->cap ? e->cap : 64, bytes;
		int32_t *p;
		while (cap - e->n < k) {
			if (cap > SIZE_MAX / 2)
				return lm_seterr("out of memory");
			cap *= 2;
		}
		if (lm_mul(cap, sizeof *p, &bytes) < 0 || !(p = realloc(e->out, bytes)))
			return lm_seterr("out of memory");
		e->out = p;
		e->cap = cap;
	}
	memcpy(e->out + e->n, ids, k * sizeof *ids);
	e->n += k;
	return 0;
}

static void lm_heap_push(uint64_t *h, size_t *n, uint64_t v)
{
	size_t i = (*n)++;
	while (i > 0 && h[(i - 1) / 2] > v) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = v;
}

static uint64_t lm_heap_pop(uint64_t *h, size_t *n)
{
	uint64_t top = h[0], v = h[--*n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (h[c] >= v)
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = v;
	return top;
}

/* a candidate merge of symbol pos with its right neighbour, ordered by rank, then by
 * position: the lowest rank goes first, and among equal ranks the leftmost, as in
 * Hugging Face (which is also what merging all occurrences left to right gives) */
static void lm_push_pair(const struct lm_enc *e, size_t *hn, int32_t pos)
{
	const struct lm_mslot *m = lm_merge_find(e->t, e->sid[pos], e->sid[e->snext[pos]]);
	if (m)
		lm_heap_push(e->heap, hn, (uint64_t)(uint32_t)m->rank << 32 | (uint32_t)pos);
}

/* BPE of one word (n >= 2 bytes) into e->sid, linked by snext from 0; returns the
 * number of symbols. A heap of candidate pairs keeps this O(n log n): a pre-token can
 * be a megabyte of spaces or dashes, and rescanning all pairs per merge would be
 * quadratic in it. */
static int lm_bpe(struct lm_enc *e, const unsigned char *w, size_t n, size_t *nsym)
{
	size_t hn = 0;
	if (n > INT32_MAX / 3)
		return lm_seterr("word of %zu bytes is too long to tokenize", n);
	if (n > e->scap) {
		/* each merge adds at most two candidates to the n - 1 initial ones */
		size_t cap = n < 64 ? 64 : n;
		int32_t *a = realloc(e->sid, cap * sizeof *a);
		if (a)
			e->sid = a;
		int32_t *b = realloc(e->snext, cap * sizeof *b);
		if (b)
			e->snext = b;
		int32_t *c = realloc(e->sprev, cap * sizeof *c);
		if (c)
			e->sprev = c;
		uint64_t *h = realloc(e->heap, 3 * cap * sizeof *h);
		if (h)
			e->heap = h;
		if (!a || !b || !c || !h)
			return lm_seterr("out of memory");
		e->scap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		e->sid[i] = e->t->byte_id[w[i]];
		e->sprev[i] = (int32_t)i - 1;
		e->snext[i] = i + 1 < n ? (int32_t)i + 1 : -1;
	}
	for (size_t i = 0; i + 1 < n; i++)
		lm_push_pair(e, &hn, (int32_t)i);
	while (hn > 0) {
		uint64_t top = lm_heap_pop(e->heap, &hn);
		int32_t pos = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32), nx;
		const struct lm_mslot *m;
		/* stale candidates: the symbol was merged away, lost its neighbour, or the
		 * pair there is another one now (ranks are unique per pair) */
		if (e->sid[pos] < 0 || (nx = e->snext[pos]) < 0)
			continue;
		m = lm_merge_find(e->t, e->sid[pos], e->sid[nx]);
		if (!m || m->rank != rank)
			continue;
		e->sid[pos] = m->id;
		e->sid[nx] = -1;
		e->snext[pos] = e->snext[nx];
		if (e->snext[nx] >= 0)
			e->sprev[e->snext[nx]] = pos;
		if (e->sprev[pos] >= 0)
			lm_push_pair(e, &hn, e->sprev[pos]);
		if (e->snext[pos] >= 0)
			lm_push_pair(e, &hn, pos);
	}
	/* compact the surviving symbols to the front, in order */
	size_t k = 0;
	for (int32_t i = 0; i >= 0; i = e->snext[i])
		e->sid[k++] = e->sid[i];
	*nsym = k;
	return 0;
}

static struct lm_cslot *lm_cache_slot(const struct lm_enc *e, const char *w, size_t n, uint32_t h)
{
	size_t mask = e->ccap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		struct lm_cslot *s = &e->cs[i];
		if (s->klen == 0 || (s->hash == h && s->klen == n && memcmp(e->ckeys + s->koff, w, n) == 0))
			return s;
	}
}

static int lm_word(struct lm_enc *e, const char *w, size_t n)
{
	struct lm_cslot *s = NULL;
	uint32_t h = 0;
	size_t k = 0;

	if (n == 1)
		return lm_enc_push(e, &e->t->byte_id[(unsigned char)w[0]], 1);
	if (e->cs && n <= LM_CACHE_WORD) {
		h = (uint32_t)lm_hash_bytes(w, n);
		s = lm_cache_slot(e, w, n, h);
		if (s->klen)
			return lm_enc_push(e, e->cvals + s->voff, s->vn);
	}
	if (lm_bpe(e, (const unsigned char *)w, n, &k) < 0 || lm_enc_push(e, e->sid, k) < 0)
		return -1;
	if (s) {
		if (e->cused >= e->ccap / 2) {
			/* full: start again rather than evict one by one */
			memset(e->cs, 0, e->ccap * sizeof *e->cs);
			e->cused = e->cklen = e->cvlen = 0;
			s = lm_cache_slot(e, w, n, h);
		}
		/* a word of n bytes has at most n ids: the arenas hold ccap/2 words of
		 * LM_CACHE_WORD bytes, so neither can overflow before the table is half full */
		memcpy(e->ckeys + e->cklen, w, n);
		memcpy(e->cvals + e->cvlen, e->sid, k * sizeof *e->sid);
		s->hash = h;
		s->klen = (uint32_t)n;
		s->koff = e->cklen;
		s->voff = e->cvlen;
		s->vn = (uint32_t)k;
		e->cklen += (uint32_t)n;
		e->cvlen += (uint32_t)k;
		e->cused++;
	}
	return 0;
}

/* A pre-token longer than e->piece bytes (a megabyte of one letter, of spaces or of
 * dashes) is encoded in pieces of at most that many bytes, each cut at a character
 * boundary: BPE's scratch is 36 bytes per byte of the word (ids, links, candidate
 * heap), so a 50 MB "word" asked for 1.8 GB. Merges never cross a cut, so a cut word
 * may get other ids than Hugging Face gives it; a word shorter than the piece (every
 * word of ordinary text) is never cut and gets exactly its ids. */
static int lm_word_pieces(struct lm_enc *e, const char *w, size_t n)
{
	while (e->piece && n > e->piece) {
		size_t k = e->piece;
		/* continuation bytes (10xxxxxx) belong to the character before them */
		while (k > 1 && ((unsigned char)w[k] & 0xc0) == 0x80)
			k--;
		if (lm_word(e, w, k) < 0)
			return -1;
		w += k, n -= k;
	}
	return lm_word(e, w, n);
}

/* split a valid UTF-8 run into pre-tokens and encode each */
static int lm_run(struct lm_enc *e, pcre2_match_data *md, const char *s, size_t n)
{
	size_t off = 0;
	while (off < n) {
		int rc = pcre2_match(e->t->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
		PCRE2_SIZE *ov;
		if (rc < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof msg);
			return lm_seterr("pre-tokenizer: at byte %zu: %s", off, (const char *)msg);
		}
		ov = pcre2_get_ovector_pointer(md);
		if (ov[1] <= off)
			return lm_seterr("pre-tokenizer: empty match at byte %zu", off);
		if (lm_word_pieces(e, s + off, ov[1] - off) < 0)
			return -1;
		off = ov[1];
	}
	return 0;
}

int lm_tokenize(const struct lm_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n)
{
	return lm_tokenize_pieces(t, text, len, LM_TOK_PIECE, ids, n);
}

int lm_tokenize_pieces(const struct lm_tokenizer *t, const char *text, size_t len, size_t piece,
                       int32_t **ids, size_t *n)
{
	/* at least one whole character (4 bytes) per piece */
	struct lm_enc e = {.t = t, .piece = piece && piece < 4 ? 4 : piece};
	pcre2_match_data *md = NULL;
	size_t i = 0;
	int rc = -1;

	if (ids)
		*ids = NULL;
	if (n)
		*n = 0;
	if (!t || !ids || !n || (!text && len))
		return lm_seterr("lm_tokenize: bad arguments");
	if (!(md = pcre2_match_data_create_from_pattern(t->re, NULL))) {
		lm_seterr("out of memory");
		goto out;
	}
	/* a cache sized to the text: a short string does not pay for a big table */
	if (len >= 256) {
		e.ccap = 64;
		while (e.ccap < len / 8 && e.ccap < (1u << 16))
			e.ccap *= 2;
		e.cs = calloc(e.ccap, sizeof *e.cs);
		e.ckeys = malloc(e.ccap / 2 * LM_CACHE_WORD);
		e.cvals = malloc(e.ccap / 2 * LM_CACHE_WORD * sizeof *e.cvals);
		if (!e.cs || !e.ckeys || !e.cvals) {
			lm_seterr("out of memory");
			goto out;
		}
	}
	/* Invalid UTF-8 (which Hugging Face never sees: it takes Python strings) is
	 * handled outside the regex: each valid stretch is pre-tokenized on its own, and
	 * each byte that does not start a valid sequence is a token by itself, its
	 * one-byte token. So any byte string encodes, the result decodes back to the
	 * same bytes, and valid text is untouched. */
	while (i < len) {
		size_t v = lm_utf8_valid((const unsigned char *)text + i, len - i);
		if (v > 0) {
			if (lm_run(&e, md, text + i, v) < 0)
				goto out;
			i += v;
		} else {
			if (lm_enc_push(&e, &t->byte_id[(unsigned char)text[i]], 1) < 0)
				goto out;
			i++;
		}
	}
	/* never NULL on success, even for empty text: callers may memcpy from it */
	*ids = e.out ? e.out : malloc(sizeof **ids);
	*n = e.n;
	e.out = NULL;
	if (!*ids) {
		lm_seterr("out of memory");
		goto out;
	}
	rc = 0;
out:
	pcre2_match_data_free(md);
	free(e.out);
	free(e.sid);
	free(e.snext);
	free(e.sprev);
	free(e.heap);
	free(e.cs);
	free(e.ckeys);
	free(e.cvals);
	return rc;
}

/* ---- decoding and lookups ---- */

char *lm_detokenize(const struct lm_tokenizer *t, const int32_t *ids, size_t n, size_t *len)
{
	size_t total = 0, o = 0;
	char *out;
	if (len)
		*len = 0;
	if (!t || (!ids && n)) {
		lm_seterr("lm_detokenize: bad arguments");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= t->nid || !t->vt[ids[i]].s) {
			lm_seterr("unknown token id %ld (position %zu)", (long)ids[i], i);
			return NULL;
		}
		if (lm_add(total, t->vt[ids[i]].dlen, &total) < 0)
			return NULL;
	}
	if (total == SIZE_MAX || !(out = malloc(total + 1))) {
		lm_seterr("out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(out + o, t->vt[ids[i]].d, t->vt[ids[i]].dlen);
		o += t->vt[ids[i]].dlen;
	}
	out[o] = '\0';
	if (len)
		*len = o;
	return out;
}

int32_t lm_tokenizer_vocab_size(const struct lm_tokenizer *t)
{
	return t ? t->nid : 0;
}

char *lm_detokenize_known(const struct lm_tokenizer *t, const int32_t *ids, size_t n, int32_t stop,
                          size_t *len)
{
	int32_t *k = xmalloc((n + 1) * sizeof *k);
	size_t nk = 0;
	for (size_t i = 0; i < n && (stop < 0 || ids[i] != stop); i++)
		if (ids[i] >= 0 && ids[i] < lm_tokenizer_vocab_size(t))
			k[nk++] = ids[i];
	char *text = lm_detokenize(t, k, nk, len);
	free(k);
	return text;
}

int32_t lm_token_id(const struct lm_tokenizer *t, const char *token)
{
	if (!t || !token)
		return -1;
	return lm_tok_find(t, token, strlen(token));
}

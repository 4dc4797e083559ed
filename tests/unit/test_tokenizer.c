/* test_tokenizer.c: byte-level BPE against the ids Hugging Face gives, round trips of
 * arbitrary bytes, the novels-test token count the model's reference was computed on,
 * and refusal of bad vocabularies. Run from the repository root. */
#include "tokenizer.h"
#include "unit.h"
#include "util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VOCAB "models/opt-micro/vocab.json"
#define MERGES "models/opt-micro/merges.txt"
#define MODEL_REF "models/opt-micro/reference.json"
#define NOVELS "data/novels-eval/"

static char *vocab, *merges;
static size_t vocab_len, merges_len;

static char *slurp(const char *path, size_t *len)
{
	char *s = lm_read_file(path, (size_t)1 << 28, len);
	CHECKF(s != NULL, "%s: %s", path, lm_errmsg());
	return s;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* encode, then decode back: the bytes must come back unchanged */
static int roundtrip(const struct lm_tokenizer *t, const char *s, size_t n)
{
	int32_t *ids = NULL;
	size_t k = 0, m = 0;
	char *back;
	int ok;
	if (lm_tokenize(t, s, n, &ids, &k) < 0)
		return 0;
	back = lm_detokenize(t, ids, k, &m);
	ok = back && m == n && memcmp(back, s, n) == 0 && back[m] == '\0';
	free(back);
	free(ids);
	return ok;
}

static void test_reference(const struct lm_tokenizer *t)
{
	const char *dir = getenv("LM_TESTDATA") ? getenv("LM_TESTDATA") : "tests/fixtures";
	char path[4096];
	json_error_t err;
	json_t *root, *cases, *c;
	size_t i;

	snprintf(path, sizeof path, "%s/tokenizer-reference.json", dir);
	root = json_load_file(path, 0, &err);
	CHECKF(root != NULL, "%s: %s", path, err.text);
	if (!root)
		return;
	cases = json_object_get(root, "cases");
	CHECK(json_array_size(cases) >= 15);
	json_array_foreach(cases, i, c) {
		json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "ids");
		const char *s = json_string_value(text);
		size_t n = json_string_length(text), k = 0, j;
		int32_t *ids = NULL;
		int same;
		CHECK(s != NULL && json_is_array(want));
		if (!s || !json_is_array(want))
			continue;
		CHECKF(lm_tokenize(t, s, n, &ids, &k) == 0, "case %zu: %s", i, lm_errmsg());
		same = k == json_array_size(want);
		for (j = 0; same && j < k; j++)
			same = ids[j] == json_integer_value(json_array_get(want, j));
		if (!same) {
			fprintf(stderr, "case %zu \"%s\": got", i, s);
			for (j = 0; j < k; j++)
				fprintf(stderr, " %d", (int)ids[j]);
			fputc('\n', stderr);
		}
		CHECKF(same, "case %zu: ids differ from Hugging Face", i);
		CHECKF(roundtrip(t, s, n), "case %zu: round trip", i);
		free(ids);
	}
	json_decref(root);
}

static void test_lookups(const struct lm_tokenizer *t)
{
	int32_t ids[] = {20920, 232, 2}, bad[] = {-1, 50265, 1 << 30}, *out = NULL;
	size_t n = 123, k = 0;
	char *s;

	CHECK(lm_tokenizer_vocab_size(t) == 50265);
	CHECK(lm_token_id(t, "<s>") == 0);
	CHECK(lm_token_id(t, "</s>") == 2);
	CHECK(lm_token_id(t, "\xc4\xa0the") == 5); /* "Ġthe" */
	CHECK(lm_token_id(t, " the") == -1);       /* the space is Ġ in the byte-level form */
	CHECK(lm_token_id(t, "no such token here") == -1);

	s = lm_detokenize(t, ids, 3, &n);
	CHECK(s && n == 16 && strcmp(s, " Hello world</s>") == 0);
	free(s);
	s = lm_detokenize(t, NULL, 0, &n);
	CHECK(s && n == 0 && s[0] == '\0');
	free(s);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int32_t two[2] = {5, bad[i]};
		CHECKF(lm_detokenize(t, two, 2, &n) == NULL, "id %d decoded", (int)bad[i]);
		CHECK(strstr(lm_errmsg(), "unknown token id") != NULL);
	}

	/* a byte that starts no valid UTF-8 sequence is its own one-byte token */
	CHECK(lm_tokenize(t, "\xff", 1, &out, &k) == 0 && k == 1 && out[0] == lm_token_id(t, "\xc3\xbf"));
	free(out);
	CHECK(lm_tokenize(t, "", 0, &out, &k) == 0 && k == 0);
	free(out);
	CHECK(lm_tokenize(t, NULL, 0, &out, &k) == 0 && k == 0);
	free(out);
	CHECK(lm_tokenize(t, NULL, 3, &out, &k) == -1 && out == NULL);
}

static void test_bytes(const struct lm_tokenizer *t)
{
	static const struct { const char *s; size_t n; } fixed[] = {
		{"\xff\xfe", 2},
		{"a\0b", 3},
		{"\0\0\0  \0", 7},
		{"\xe2\x82", 2},                 /* truncated sequence */
		{"caf\xe9 na\xefve", 10},        /* Latin-1 */
		{"\xed\xa0\x80\xed\xbf\xbf", 6}, /* surrogates */
		{"\xc0\xaf\xc1\xbf", 4},         /* overlong */
		{"\xf4\x90\x80\x80 x", 6},       /* above U+10FFFF */
		{"  \xff  \x80x \xe2\x82\xac", 11},
		{"it's\xa0'll", 8},
	};
	/* fragments that exercise every branch of the pre-tokenizer */
	static const char *frag[] = {
		" ", "  ", "\t", "\n", "\r\n", "a", "The", " word", "'s", "'ll", "'", "DON'T", "1", "2024", " 3.5",
		"!", "?!", "--", "\xc2\xa0", "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x99\x82", "\xe2\x80\x94",
		"\xe2\x80\x9c", "\xc2\x85", "\xff", "\x80", "\0", "\xe2\x82",
	};
	uint64_t r = 88172645463325252u;
	char buf[512];
	int bad = 0;

	for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
		CHECKF(roundtrip(t, fixed[i].s, fixed[i].n), "fixed case %zu", i);
	for (int it = 0; it < 2000; it++) {
		size_t n = 0, want;
		r ^= r << 13, r ^= r >> 7, r ^= r << 17; /* xorshift64: the same cases every run */
		want = r % sizeof buf;
		if (it % 2 == 0) {
			for (n = 0; n < want; n++) {
				r ^= r << 13, r ^= r >> 7, r ^= r << 17;
				buf[n] = (char)(r >> 24);
			}
		} else {
			while (n < want) {
				const char *f;
				size_t fl;
				r ^= r << 13, r ^= r >> 7, r ^= r << 17;
				f = frag[r % (sizeof frag / sizeof *frag)];
				fl = f[0] ? strlen(f) : 1;
				if (n + fl > sizeof buf)
					break;
				memcpy(buf + n, f, fl);
				n += fl;
			}
		}
		bad += !roundtrip(t, buf, n);
	}
	CHECKF(bad == 0, "%d of 2000 random strings did not round-trip", bad);

	/* a long pre-token (a megabyte of one character) must not be quadratic */
	{
		size_t n = 1 << 20;
		char *big = malloc(n);
		double t0 = now();
		memset(big, '-', n);
		CHECK(big && roundtrip(t, big, n));
		memset(big, ' ', n);
		CHECK(roundtrip(t, big, n));
		CHECKF(now() - t0 < 5, "1 MiB single words took %.1f s", now() - t0);
		free(big);
	}
}

struct job {
	const struct lm_tokenizer *t;
	const char *s;
	size_t n, k;
	int32_t *ids;
	int rc;
};

static void *job_run(void *arg)
{
	struct job *j = arg;
	j->rc = lm_tokenize(j->t, j->s, j->n, &j->ids, &j->k);
	return NULL;
}

static void test_novels(const struct lm_tokenizer *t)
{
	json_error_t err;
	json_t *ref = json_load_file(MODEL_REF, 0, &err), *first, *tokens;
	static const char *files[] = {"novels-test.txt", "novels-calib.txt", "novels-retrain.txt"};
	CHECKF(ref != NULL, "%s: %s", MODEL_REF, err.text);
	if (!ref)
		return;
	first = json_object_get(ref, "first_ids_novels_test");
	tokens = json_object_get(ref, "tokens");
	CHECK(json_array_size(first) > 1 && json_integer_value(json_array_get(first, 0)) == 2);

	for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
		char path[256];
		size_t len, k = 0;
		int32_t *ids = NULL;
		char *text;
		double t0, dt;
		json_int_t want = json_integer_value(json_object_get(tokens, files[f]));
		snprintf(path, sizeof path, NOVELS "%s", files[f]);
		if (!(text = slurp(path, &len)))
			continue;
		t0 = now();
		CHECKF(lm_tokenize(t, text, len, &ids, &k) == 0, "%s: %s", path, lm_errmsg());
		dt = now() - t0;
		fprintf(stderr, "tokenizer: %s: %zu bytes, %zu tokens, %.3f s\n", files[f], len, k, dt);
		/* the reference counts one BOS in front */
		CHECKF(want > 0 && (json_int_t)k == want - 1, "%s: %zu tokens, reference %lld - 1", files[f], k,
		       (long long)want);
		if (f == 0) {
			for (size_t i = 1; i < json_array_size(first) && i - 1 < k; i++)
				CHECKF(ids[i - 1] == json_integer_value(json_array_get(first, i)), "novels-test id %zu: %d, want %lld",
				       i - 1, (int)ids[i - 1], (long long)json_integer_value(json_array_get(first, i)));
			CHECK(roundtrip(t, text, len));
			/* the same tokenizer from two threads at once gives the same ids */
			struct job j[2] = {{t, text, len, 0, NULL, -1}, {t, text, len, 0, NULL, -1}};
			pthread_t th[2];
			for (int i = 0; i < 2; i++)
				CHECK(pthread_create(&th[i], NULL, job_run, &j[i]) == 0);
			for (int i = 0; i < 2; i++) {
				pthread_join(th[i], NULL);
				CHECK(j[i].rc == 0 && j[i].k == k && memcmp(j[i].ids, ids, k * sizeof *ids) == 0);
				free(j[i].ids);
			}
		}
		if (f == 2)
			CHECKF(dt < 2, "2 MB took %.2f s", dt);
		free(ids);
		free(text);
	}
	json_decref(ref);
}

/* Pieces: a pre-token longer than LM_TOK_PIECE is encoded in pieces. Ordinary text has
 * no such word, so its ids are the unbounded tokenization's (piece 0), byte for byte. */
static void test_pieces_unchanged(const struct lm_tokenizer *t)
{
	static const char *files[] = {"novels-test.txt", "novels-calib.txt", "novels-retrain.txt"};
	for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
		char path[256];
		size_t len, k = 0, k0 = 0;
		int32_t *ids = NULL, *ids0 = NULL;
		char *text;
		snprintf(path, sizeof path, NOVELS "%s", files[f]);
		if (!(text = slurp(path, &len)))
			continue;
		CHECK(lm_tokenize(t, text, len, &ids, &k) == 0);
		CHECK(lm_tokenize_pieces(t, text, len, 0, &ids0, &k0) == 0);
		CHECKF(k == k0 && memcmp(ids, ids0, k * sizeof *ids) == 0, "%s: ids differ", files[f]);
		free(ids), free(ids0), free(text);
	}
	/* a word longer than the piece is cut at a character boundary: with pieces of 5
	 * bytes, "\xc3\xa9" (é) x 4 is cut after 4 bytes, never inside a character, and
	 * decodes back unchanged */
	const char *e4 = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
	int32_t *ids = NULL;
	size_t k = 0, m = 0;
	CHECK(lm_tokenize_pieces(t, e4, 8, 5, &ids, &k) == 0 && k >= 2);
	char *back = ids ? lm_detokenize(t, ids, k, &m) : NULL;
	CHECK(back && m == 8 && memcmp(back, e4, 8) == 0);
	free(back), free(ids);
}

/* tokenize a 5 MB line of one letter with `piece` in a child whose address space is
 * limited to what it uses now plus 48 MB (ulimit -v): 1 when it succeeded there */
static int one_letter_fits(const struct lm_tokenizer *t, size_t piece)
{
	pid_t pid;
	int st = 0;
	fflush(stderr);
	if ((pid = fork()) == 0) {
		const size_t n = 5 << 20;
		long pages = 0;
		char *s = malloc(n);
		int32_t *ids = NULL;
		size_t k = 0;
		FILE *f = fopen("/proc/self/statm", "r");
		if (!s || !f || fscanf(f, "%ld", &pages) != 1)
			_exit(2);
		fclose(f);
		memset(s, 'a', n);
		struct rlimit rl = {0};
		rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (48u << 20);
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			_exit(2);
		_exit(lm_tokenize_pieces(t, s, n, piece, &ids, &k) == 0 && k > 0 ? 0 : 1);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void test_pieces_memory(const struct lm_tokenizer *t)
{
	/* ASan reserves terabytes of shadow: an address-space limit means nothing there */
#if defined(__SANITIZE_ADDRESS__)
	return;
#endif
	if (getenv("LM_SANITIZE"))
		return;
	/* the ids alone are 5 MB; BPE of the whole line at once needs 36 bytes a byte */
	CHECKF(one_letter_fits(t, LM_TOK_PIECE) == 1, "a 5 MB one-letter line needs more than 48 MB");
	/* and the limit is one the unbounded tokenization does not fit in */
	CHECKF(one_letter_fits(t, 0) == 0, "unbounded BPE of a 5 MB word fit in 48 MB");
}

/* bad vocabularies are refused with a message, not a crash */
static void test_bad(void)
{
	static const char *vocabs[] = {
		"{\"a\": 1",             /* malformed */
		"[1, 2, 3]",             /* not an object */
		"{}",                    /* empty */
		"{\"a\": \"1\"}",        /* id not an integer */
		"{\"a\": -1}",           /* negative id */
		"{\"a\": 1.5}",          /* not an integer */
		"{\"a\": 99999999999}",  /* absurd id */
		"{\"a\": 0, \"b\": 1}",  /* bytes without tokens */
	};
	static const char *merges_bad[] = {
		"#version: 0.2\n\xc4\xa0\n",              /* one token */
		"#version: 0.2\n\xc4\xa0 t h\n",          /* three */
		"#version: 0.2\n\xc4\xa0  t\n",           /* two spaces */
		"#version: 0.2\nzzzzzzzzzzz t\n",         /* token not in vocab */
		"#version: 0.2\n\xc4\xa0the \xc4\xa0the\n", /* merged token not in vocab */
	};
	struct lm_tokenizer *t;
	for (size_t i = 0; i < sizeof vocabs / sizeof *vocabs; i++) {
		lm_seterr("%s", "");
		t = lm_tokenizer_load(vocabs[i], strlen(vocabs[i]), "", 0);
		CHECKF(t == NULL && strlen(lm_errmsg()) > 0 && strcmp(lm_errmsg(), "unknown error") != 0,
		       "vocab %zu accepted", i);
		lm_tokenizer_free(t);
	}
	for (size_t i = 0; i < sizeof merges_bad / sizeof *merges_bad; i++) {
		lm_seterr("%s", "");
		t = lm_tokenizer_load(vocab, vocab_len, merges_bad[i], strlen(merges_bad[i]));
		CHECKF(t == NULL && strstr(lm_errmsg(), "merges.txt: line 2") != NULL, "merges %zu: %s", i, lm_errmsg());
		lm_tokenizer_free(t);
	}
	CHECK(lm_tokenizer_load(NULL, 0, "", 0) == NULL);
	/* no merges at all is a valid (if useless) tokenizer: one token per byte */
	t = lm_tokenizer_load(vocab, vocab_len, NULL, 0);
	CHECK(t != NULL);
	if (t) {
		int32_t *ids = NULL;
		size_t k = 0;
		CHECK(lm_tokenize(t, "Hello", 5, &ids, &k) == 0 && k == 5);
		free(ids);
		lm_tokenizer_free(t);
	}
	lm_tokenizer_free(NULL);
}

/* U+FFFD for each maximal invalid subpart, as Unicode 3.9 (Table 3-8's example) and Python's
 * errors="replace" do; valid text is copied unchanged */
static void test_utf8_replace(void)
{
	static const char in[] = "a\xf1\x80\x80\xe1\x80\xc2" "b\x80" "c\x80\xbf" "d";
	static const char want[] = "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd"
	                           "c\xef\xbf\xbd\xef\xbf\xbd" "d";
	static const char ok[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	size_t n;
	char *s = lm_utf8_replace(in, sizeof in - 1, &n);
	CHECK(s && n == sizeof want - 1 && memcmp(s, want, n) == 0);
	free(s);
	s = lm_utf8_replace(ok, sizeof ok - 1, &n);
	CHECK(s && n == sizeof ok - 1 && strcmp(s, ok) == 0);
	free(s);
	/* overlong, surrogate, above U+10FFFF, truncated at the end: one U+FFFD per byte that
	 * cannot start or continue a sequence, one for a valid but cut-off prefix */
	s = lm_utf8_replace("\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82", 11, &n);
	CHECK(s && n == 10 * 3); /* 10 U+FFFD, as Python gives */
	free(s);
	s = lm_utf8_replace("", 0, &n);
	CHECK(s && n == 0 && s[0] == 0);
	free(s);
}

int main(void)
{
	struct lm_tokenizer *t;
	double t0;
	vocab = slurp(VOCAB, &vocab_len);
	merges = slurp(MERGES, &merges_len);
	if (!vocab || !merges)
		return unit_done("tokenizer");
	t0 = now();
	t = lm_tokenizer_load(vocab, vocab_len, merges, merges_len);
	CHECKF(t != NULL, "load: %s", lm_errmsg());
	if (t) {
		fprintf(stderr, "tokenizer: load %.3f s\n", now() - t0);
		test_reference(t);
		test_lookups(t);
		test_bytes(t);
		test_novels(t);
		test_pieces_unchanged(t);
		test_pieces_memory(t);
		lm_tokenizer_free(t);
	}
	test_bad();
	test_utf8_replace();
	free(vocab);
	free(merges);
	return unit_done("tokenizer");
}

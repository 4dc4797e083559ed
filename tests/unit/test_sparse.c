/* test_sparse.c: the sparse layouts of lm-stream(5): decode(encode(W)) == W bit for bit
 * for N:M (2:4, 4:8, 1:4, 3:8), bitmap and index at several densities, odd shapes and
 * every value dtype, and N:M of packed quantized codes; the layout the encoder picks; corrupt payloads refused; a sparse
 * record through the stream writer and reader. */
#include "rng.h"
#include "sparse.h"
#include "stream.h"
#include "unit.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const enum lm_dtype dts[] = {LM_F32, LM_F16, LM_BF16};

static int all_zero(const unsigned char *p, size_t s)
{
	for (size_t k = 0; k < s; k++)
		if (p[k])
			return 0;
	return 1;
}

/* random bits in every element (NaN patterns and -0.0 included: the codec moves bytes),
 * then zeros: n of each group of m kept at random places (n > 0), or each element kept
 * with probability density */
static unsigned char *make(enum lm_dtype dt, size_t rows, size_t cols, int n, int m,
                           double density, struct lm_rng *g)
{
	size_t s = lm_dtype_size(dt), numel = rows * cols;
	unsigned char *a = lm_alloc(numel * s);
	for (size_t i = 0; i < numel * s; i++)
		a[i] = (unsigned char)lm_rng_below(g, 256);
	for (size_t i = 0; i < numel; i++) {
		int keep = n ? (int)(i % (size_t)m) < n : lm_rng_uniform(g) < density;
		if (!keep)
			memset(a + i * s, 0, s);
		else if (all_zero(a + i * s, s))
			a[i * s] = 1;
	}
	if (n) /* shuffle each group, so the kept ones sit anywhere in it */
		for (size_t gi = 0; gi < numel; gi += (size_t)m)
			for (int k = m - 1; k > 0; k--) {
				size_t j = (size_t)lm_rng_below(g, (uint64_t)k + 1);
				unsigned char t[4];
				memcpy(t, a + (gi + (size_t)k) * s, s);
				memcpy(a + (gi + (size_t)k) * s, a + (gi + j) * s, s);
				memcpy(a + (gi + j) * s, t, s);
			}
	return a;
}

/* encode as asked, check the claim, decode, compare bit for bit; returns the layout used */
static struct lm_layout round_trip(const unsigned char *a, enum lm_dtype dt, size_t rows,
                                   size_t cols, struct lm_layout want, size_t *nbytes)
{
	size_t s = lm_dtype_size(dt), len = 0;
	int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
	struct lm_layout got;
	void *enc = NULL;
	CHECK(lm_sparse_encode(a, dt, (int64_t)rows, (int64_t)cols, &want, &got, &enc, &len) == 0);
	*nbytes = len;
	if (!lm_layout_is_sparse(&got)) {
		CHECK(enc == NULL);
		return got;
	}
	CHECKF(lm_sparse_check(&got, dt, 2, shape, len) == 0, "%s", lm_errmsg());
	CHECK(len < rows * cols * s);
	unsigned char *d = lm_alloc(rows * cols * s);
	memset(d, 0xa5, rows * cols * s);
	CHECKF(lm_sparse_decode(d, enc, len, &got, dt, (int64_t)rows, (int64_t)cols) == 0, "%s",
	       lm_errmsg());
	CHECKF(!memcmp(d, a, rows * cols * s), "%s %zux%zu layout %d", lm_dtype_name(dt), rows, cols,
	       (int)got.kind);
	lm_free(d);
	lm_free(enc);
	return got;
}

static void test_nm(struct lm_rng *g)
{
	static const int pat[][2] = {{2, 4}, {4, 8}, {1, 4}, {3, 8}, {1, 2}};
	static const size_t shapes[][2] = {{1, 8}, {3, 24}, {7, 40}, {64, 64}, {5, 256}};
	for (size_t p = 0; p < sizeof pat / sizeof *pat; p++)
		for (size_t d = 0; d < 3; d++)
			for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
				size_t R = shapes[sh][0], C = shapes[sh][1], nb;
				int n = pat[p][0], m = pat[p][1];
				unsigned char *a = make(dts[d], R, C, n, m, 0, g);
				struct lm_layout want = {LM_LAYOUT_NM, n, m};
				struct lm_layout got = round_trip(a, dts[d], R, C, want, &nb);
				CHECKF(got.kind == LM_LAYOUT_NM && got.n == n && got.m == m, "%d:%d %s %zux%zu "
				       "gave layout %d", n, m, lm_dtype_name(dts[d]), R, C, (int)got.kind);
				/* values then ceil(kept * bits / 8) bytes of positions */
				size_t kept = R * C / (size_t)m * (size_t)n, b = m <= 2 ? 1 : m <= 4 ? 2 : 3;
				CHECK(nb == kept * lm_dtype_size(dts[d]) + (kept * b + 7) / 8);
				/* fewer than n kept in a group: the first zeros fill it, still exact */
				memset(a, 0, (size_t)m * lm_dtype_size(dts[d]));
				round_trip(a, dts[d], R, C, want, &nb);
				lm_free(a);
			}
}

static void put_code(unsigned char *p, size_t j, int b, unsigned v)
{
	for (int k = 0; k < b; k++, v >>= 1)
		if (v & 1)
			p[(j * (size_t)b + (size_t)k) / 8] |= (unsigned char)(1u << ((j * (size_t)b + (size_t)k) % 8));
}

/* packed codes (prune, then quantize): per quant group a random header with its zero point,
 * then of each group of m inputs n random codes at random places and the zero point
 * elsewhere; N:M keeps the codes, decodes to the same bytes, and nothing else applies */
static void test_packed(struct lm_rng *g)
{
	static const int q[][2] = {{4, 128}, {4, 0}, {3, 32}, {2, 64}, {8, 32}};
	static const int pat[][2] = {{2, 4}, {4, 8}, {1, 4}};
	for (size_t qi = 0; qi < sizeof q / sizeof *q; qi++)
		for (size_t p = 0; p < sizeof pat / sizeof *pat; p++) {
			enum lm_dtype dt = (enum lm_dtype)lm_dtype_q(q[qi][0], q[qi][1]);
			const size_t R = 6, C = 256, G = q[qi][1] ? (size_t)q[qi][1] : C;
			const int b = q[qi][0], n = pat[p][0], m = pat[p][1];
			const size_t rb = lm_dtype_row_bytes(dt, C), gb = 4 + G * (size_t)b / 8;
			int64_t shape[2] = {(int64_t)R, (int64_t)C};
			unsigned char *a = lm_alloc(R * rb), *d = lm_alloc(R * rb);
			memset(a, 0, R * rb);
			for (size_t k = 0; k < R * C / G; k++) {
				unsigned char *grp = a + k * gb;
				unsigned z = (unsigned)lm_rng_below(g, 1u << b);
				grp[0] = (unsigned char)lm_rng_below(g, 256), grp[1] = (unsigned char)lm_rng_below(g, 0x7c);
				grp[2] = (unsigned char)z;
				for (size_t j0 = 0; j0 < G; j0 += (size_t)m) {
					int keep[256] = {0};
					for (int t = 0; t < n; t++) {
						size_t j;
						do
							j = (size_t)lm_rng_below(g, (uint64_t)m);
						while (keep[j]);
						keep[j] = 1;
					}
					for (int t = 0; t < m; t++)
						put_code(grp + 4, j0 + (size_t)t, b,
						         keep[t] ? (unsigned)lm_rng_below(g, 1u << b) : z);
				}
			}
			struct lm_layout want = {LM_LAYOUT_NM, n, m}, got;
			void *enc = NULL;
			size_t len = 0;
			/* per quant group its header and G n/m codes, then 2 or 3 bits a position; dense
			 * where that is not smaller (q2g64 2:4, q3g32 4:8) */
			size_t kept = R * C / (size_t)m * (size_t)n, pb = m == 4 ? 2 : 3;
			size_t want_len = R * C / G * (4 + (G / (size_t)m * (size_t)n * (size_t)b + 7) / 8) +
			                  (kept * pb + 7) / 8;
			CHECK(lm_sparse_encode(a, dt, (int64_t)R, (int64_t)C, &want, &got, &enc, &len) == 0);
			CHECKF((got.kind == LM_LAYOUT_NM && enc) == (want_len < R * rb), "%s %d:%d",
			       lm_dtype_name(dt), n, m);
			if (enc) {
				CHECK(len == want_len);
				CHECKF(lm_sparse_check(&got, dt, 2, shape, len) == 0, "%s", lm_errmsg());
				memset(d, 0x5a, R * rb);
				CHECKF(lm_sparse_decode(d, enc, len, &got, dt, (int64_t)R, (int64_t)C) == 0, "%s",
				       lm_errmsg());
				CHECKF(!memcmp(d, a, R * rb), "%s %d:%d", lm_dtype_name(dt), n, m);
				lm_free(enc);
			}
			/* bitmap and index are not for packed codes: dense */
			CHECK(lm_sparse_encode(a, dt, (int64_t)R, (int64_t)C,
			                       &(struct lm_layout){LM_LAYOUT_UNSTRUCTURED, 0, 0}, &got, &enc,
			                       &len) == 0 && got.kind == LM_LAYOUT_DENSE && !enc);
			CHECK(lm_sparse_check(&(struct lm_layout){LM_LAYOUT_BITMAP, 0, 0}, dt, 2, shape, 100) < 0);
			/* a code other than the zero point in a dropped place: the pattern does not fit */
			if (n < m) {
				unsigned char *grp = a;
				for (size_t bit = 0; bit < (size_t)(m * b); bit++)
					grp[4 + bit / 8] &= (unsigned char)~(1u << (bit % 8));
				for (int t = 0; t < m; t++)
					put_code(grp + 4, (size_t)t, b, (grp[2] + 1u) & ((1u << b) - 1));
			}
			CHECK(lm_sparse_encode(a, dt, (int64_t)R, (int64_t)C, &want, &got, &enc, &len) == 0 &&
			      got.kind == LM_LAYOUT_DENSE && !enc);
			lm_free(a);
			lm_free(d);
		}
}

/* an N:M request the matrix does not fit falls back to the unstructured layouts */
static void test_nm_fallback(struct lm_rng *g)
{
	size_t nb;
	unsigned char *a = make(LM_F16, 16, 64, 0, 0, 0.6, g);
	struct lm_layout got = round_trip(a, LM_F16, 16, 64, (struct lm_layout){LM_LAYOUT_NM, 2, 4}, &nb);
	CHECK(got.kind == LM_LAYOUT_BITMAP);
	lm_free(a);
}

static void test_unstructured(struct lm_rng *g)
{
	static const double dens[] = {0.0, 0.01, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0};
	static const size_t shapes[][2] = {{1, 1}, {3, 5}, {17, 33}, {64, 100}, {2, 70000}};
	for (size_t di = 0; di < sizeof dens / sizeof *dens; di++)
		for (size_t d = 0; d < 3; d++)
			for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
				size_t R = shapes[sh][0], C = shapes[sh][1], s = lm_dtype_size(dts[d]), nb, nnz = 0;
				unsigned char *a = make(dts[d], R, C, 0, 0, dens[di], g);
				struct lm_layout got = round_trip(a, dts[d], R, C,
				                                  (struct lm_layout){LM_LAYOUT_UNSTRUCTURED, 0, 0}, &nb);
				for (size_t i = 0; i < R * C; i++)
					nnz += !all_zero(a + i * s, s);
				/* the smaller of the two, and dense where neither is smaller */
				size_t bm = nnz * s + (R * C + 7) / 8, ix = nnz * (s + (C <= 65536 ? 2 : 4)) + R * 4;
				size_t best = bm <= ix ? bm : ix;
				if (best >= R * C * s)
					CHECKF(got.kind == LM_LAYOUT_DENSE, "density %g %zux%zu", dens[di], R, C);
				else
					CHECKF(got.kind == (bm <= ix ? LM_LAYOUT_BITMAP : LM_LAYOUT_INDEX) && nb == best,
					       "density %g %s %zux%zu: layout %d, %zu bytes, want %zu", dens[di],
					       lm_dtype_name(dts[d]), R, C, (int)got.kind, nb, best);
				lm_free(a);
			}
}

/* a payload whose positions or counts lie is refused, in one line, never written past */
static void test_corrupt(struct lm_rng *g)
{
	size_t len;
	void *enc;
	struct lm_layout got;
	int64_t shape[2] = {4, 16};
	unsigned char *d = lm_alloc(4 * 16 * 2);
	unsigned char *a = make(LM_F16, 4, 16, 2, 4, 0, g);
	unsigned char *p;

	/* N:M: the first group's positions swapped (not increasing) */
	lm_sparse_encode(a, LM_F16, 4, 16, &(struct lm_layout){LM_LAYOUT_NM, 2, 4}, &got, &enc, &len);
	p = (unsigned char *)enc + 4 * 16 / 2 * 2;
	unsigned char b0 = p[0];
	p[0] = (unsigned char)((b0 & 0xf0) | (b0 >> 2 & 3) | (b0 & 3) << 2);
	CHECK(lm_sparse_decode(d, enc, len, &got, LM_F16, 4, 16) < 0);
	CHECK(strstr(lm_errmsg(), "group 0") && !strchr(lm_errmsg(), '\n'));
	/* the same position twice */
	p[0] = (unsigned char)((b0 & 0xf0) | 1 << 2 | 1);
	CHECK(lm_sparse_decode(d, enc, len, &got, LM_F16, 4, 16) < 0);
	lm_free(enc);
	lm_free(a);

	/* bitmap: a bit more or less than the values stored */
	a = make(LM_F16, 4, 16, 0, 0, 0.5, g);
	lm_sparse_encode(a, LM_F16, 4, 16, &(struct lm_layout){LM_LAYOUT_UNSTRUCTURED, 0, 0}, &got, &enc, &len);
	CHECK(got.kind == LM_LAYOUT_BITMAP);
	p = (unsigned char *)enc + len - 8;
	unsigned char keep = p[0];
	p[0] ^= 1;
	CHECK(lm_sparse_decode(d, enc, len, &got, LM_F16, 4, 16) < 0);
	CHECK(strstr(lm_errmsg(), "bits set") != NULL);
	p[0] = keep;
	CHECK(lm_sparse_decode(d, enc, len, &got, LM_F16, 4, 16) == 0);
	CHECK(!memcmp(d, a, 4 * 16 * 2));
	lm_free(enc);
	lm_free(a);

	/* index (2 of 2000 kept: smaller than a bitmap): a row counting more than stored, a
	 * column out of range */
	unsigned char *d2 = lm_alloc(2 * 1000 * 4);
	a = lm_alloc(2 * 1000 * 4);
	memset(a, 0, 2 * 1000 * 4);
	((float *)a)[3] = 1, ((float *)a)[1000 + 8] = 2;
	lm_sparse_encode(a, LM_F32, 2, 1000, &(struct lm_layout){LM_LAYOUT_UNSTRUCTURED, 0, 0}, &got, &enc, &len);
	CHECK(got.kind == LM_LAYOUT_INDEX && len == 2 * (4 + 2) + 2 * 4);
	p = enc;
	CHECK(lm_sparse_decode(d2, enc, len, &got, LM_F32, 2, 1000) == 0 && !memcmp(d2, a, 8000));
	p[8 + 4] = 3; /* row 0 counts 3 */
	CHECK(lm_sparse_decode(d2, enc, len, &got, LM_F32, 2, 1000) < 0);
	CHECK(strstr(lm_errmsg(), "count") != NULL);
	p[8 + 4] = 1;
	p[8] = 0xe8, p[9] = 0x03; /* column 1000 of 1000 */
	CHECK(lm_sparse_decode(d2, enc, len, &got, LM_F32, 2, 1000) < 0);
	CHECK(strstr(lm_errmsg(), "out of range") != NULL);
	lm_free(enc);
	lm_free(a);
	lm_free(d2);

	/* claims refused before anything is allocated */
	struct lm_layout nm = {LM_LAYOUT_NM, 2, 4}, bm = {LM_LAYOUT_BITMAP, 0, 0};
	CHECK(lm_sparse_check(&nm, LM_F16, 2, shape, 4 * 16 + 8) == 0); /* 32 values, 32 x 2 bits */
	CHECK(lm_sparse_check(&nm, LM_F16, 2, shape, 4 * 16 + 7) < 0);
	CHECK(lm_sparse_check(&nm, LM_Q4_G128, 2, shape, 4 * 16 + 8) < 0);
	CHECK(lm_sparse_check(&nm, LM_F16, 1, shape, 10) < 0);
	int64_t odd[2] = {4, 18};
	CHECK(lm_sparse_check(&nm, LM_F16, 2, odd, 40) < 0);
	CHECK(lm_sparse_check(&bm, LM_F16, 2, shape, 8 + 2 * 10) == 0);
	CHECK(lm_sparse_check(&bm, LM_F16, 2, shape, 8 + 2 * 10 + 1) < 0);
	CHECK(lm_sparse_check(&bm, LM_F16, 2, shape, 7) < 0);
	CHECK(lm_sparse_check(&bm, LM_F16, 2, shape, 4 * 16 * 2) < 0); /* not smaller than dense */
	/* an empty index claiming a matrix of 2^43 bytes: refused before the reader allocates it */
	int64_t huge[2] = {2, (int64_t)1 << 41};
	CHECK(lm_sparse_check(&(struct lm_layout){LM_LAYOUT_INDEX, 0, 0}, LM_F16, 2, huge, 8) < 0);
	CHECK(strstr(lm_errmsg(), "absurd") != NULL);
	struct lm_layout l;
	CHECK(lm_layout_parse("2:4", &l) == 0 && l.kind == LM_LAYOUT_NM && l.n == 2 && l.m == 4);
	CHECK(lm_layout_parse("4:4", &l) < 0 && lm_layout_parse("2:4x", &l) < 0);
	CHECK(lm_layout_parse("csr", &l) < 0 && lm_layout_parse("-1:4", &l) < 0);
	lm_free(d);
}

/* a sparse record through the writer and the reader: dense again, its layout and wire
 * size kept, the nbytes on the wire the sparse payload's */
static void test_stream(struct lm_rng *g)
{
	char path[] = "/tmp/lmsparseXXXXXX";
	int fd = mkstemp(path);
	struct lm_opt_config c;
	struct lm_header h;
	struct lm_record r = {0};
	int64_t shape[2] = {8, 32};
	unsigned char *a = make(LM_BF16, 8, 32, 2, 4, 0, g);

	unlink(path);
	lm_opt_config_like(&c, "opt-125m");
	struct lm_writer *w = lm_writer_open(fd, "tmp");
	lm_header_init(&h, &c);
	CHECK(lm_write_header(w, &h, "test", 0, NULL) == 0);
	lm_record_tensor(&r, "w", LM_BF16, 2, shape);
	CHECK(lm_record_alloc(&r) == 0);
	memcpy(r.data, a, 8 * 32 * 2);
	r.layout = (struct lm_layout){LM_LAYOUT_NM, 2, 4};
	CHECK(lm_write_record(w, &r) == 0);
	CHECK(r.wire_nbytes == 8 * 32 / 2 * 2 + 8 * 32 / 2 * 2 / 8);
	CHECK(lm_write_end(w) == 0 && lm_writer_close(w) == 0);
	lm_header_free(&h);
	lm_record_clear(&r);

	lseek(fd, 0, SEEK_SET);
	struct lm_reader *rd = lm_reader_open(fd, "tmp");
	CHECK(lm_read_header(rd, &h) == 0);
	CHECKF(lm_read_record(rd, &r) == 0, "%s", lm_errmsg());
	CHECK(r.layout.kind == LM_LAYOUT_NM && r.layout.n == 2 && r.layout.m == 4);
	CHECK(r.nbytes == 8 * 32 * 2 && r.wire_nbytes == 8 * 32 / 2 * 2 + 8 * 32 / 2 * 2 / 8);
	CHECK(r.data && !memcmp(r.data, a, 8 * 32 * 2));
	lm_record_clear(&r);
	CHECKF(lm_read_record(rd, &r) == 0 && r.kind == LM_REC_END, "%s", lm_errmsg());
	lm_reader_close(rd);
	lm_header_free(&h);
	close(fd);
	lm_free(a);
}

int main(void)
{
	struct lm_rng g;
	lm_rng_seed(&g, 18);
	test_nm(&g);
	test_nm_fallback(&g);
	test_packed(&g);
	test_unstructured(&g);
	test_corrupt(&g);
	test_stream(&g);
	return unit_done("test_sparse");
}

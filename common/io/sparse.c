/* sparse.c: the sparse layouts of a weight matrix in the stream, encoded and decoded (see
 * sparse.h and lm-stream(5) "Sparse layouts"). Every layout puts the kept values first, so
 * they start aligned where the payload does, then the positions. */
#include "sparse.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lm_layout_parse(const char *s, struct lm_layout *l)
{
	int n, m, len = 0;
	memset(l, 0, sizeof *l);
	if (!strcmp(s, "dense"))
		return 0;
	if (!strcmp(s, "bitmap"))
		return l->kind = LM_LAYOUT_BITMAP, 0;
	if (!strcmp(s, "index"))
		return l->kind = LM_LAYOUT_INDEX, 0;
	if (sscanf(s, "%d:%d%n", &n, &m, &len) == 2 && !s[len] && s[0] >= '0' && s[0] <= '9') {
		if (n < 1 || n >= m || m > LM_NM_MAX_M)
			return lm_seterr("layout \"%s\": N:M needs 1 <= N < M <= %d", s, LM_NM_MAX_M);
		l->kind = LM_LAYOUT_NM, l->n = n, l->m = m;
		return 0;
	}
	return lm_seterr("unknown layout \"%s\"", s);
}

const char *lm_layout_name(const struct lm_layout *l, char *buf, size_t sz)
{
	switch (l->kind) {
	case LM_LAYOUT_NM: snprintf(buf, sz, "%d:%d", l->n, l->m); break;
	case LM_LAYOUT_BITMAP: snprintf(buf, sz, "bitmap"); break;
	case LM_LAYOUT_INDEX: snprintf(buf, sz, "index"); break;
	case LM_LAYOUT_UNSTRUCTURED: snprintf(buf, sz, "unstructured"); break;
	default: snprintf(buf, sz, "dense");
	}
	return buf;
}

int lm_layout_is_sparse(const struct lm_layout *l)
{
	return l->kind != LM_LAYOUT_DENSE;
}

/* bits of an N:M position: enough for m - 1 */
static int pos_bits(int m)
{
	int b = 1;
	while ((1 << b) < m)
		b++;
	return b;
}

/* bytes of an index column number: 2 while columns fit 16 bits */
static size_t col_bytes(int64_t cols)
{
	return cols <= 65536 ? 2 : 4;
}

/* N:M payload: groups * n values, then groups * n positions of pos_bits(m) bits */
static int nm_nbytes(int n, int m, size_t s, size_t rows, size_t cols, size_t *nb)
{
	size_t kept, bits;
	if (lm_mul(rows, cols / (size_t)m, &kept) < 0 || lm_mul(kept, (size_t)n, &kept) < 0 ||
	    lm_mul(kept, (size_t)pos_bits(m), &bits) < 0 || lm_mul(kept, s, nb) < 0)
		return -1;
	return lm_add(*nb, bits / 8 + (bits % 8 != 0), nb);
}

/* a packed type's N:M geometry: G inputs per quant group (m divides it), b bits per code,
 * the bytes of a group's kept codes; 0 if the layout does not apply */
static int packed_nm(enum lm_dtype dt, size_t cols, int n, int m, size_t *G, int *b, size_t *kb)
{
	const struct lm_dtype_info *in = lm_dtype_info(dt);
	*G = in->qgroup ? (size_t)in->qgroup : cols, *b = in->qbits;
	if (!*G || cols % *G || *G % (size_t)m)
		return 0;
	*kb = (*G / (size_t)m * (size_t)n * (size_t)*b + 7) / 8;
	return 1;
}

/* packed N:M payload: per row, per quant group its 4-byte header and its kept codes, then
 * the positions as for floats */
static int packed_nm_nbytes(enum lm_dtype dt, int n, int m, size_t rows, size_t cols, size_t *nb)
{
	size_t G, kb, groups, kept, bits;
	int b;
	if (!packed_nm(dt, cols, n, m, &G, &b, &kb))
		return lm_seterr("layout %d:%d: groups of %d do not hold whole quant groups of %s", n, m,
		                 m, lm_dtype_name(dt));
	if (lm_mul(rows, cols / G, &groups) < 0 || lm_mul(groups, 4 + kb, nb) < 0 ||
	    lm_mul(rows, cols / (size_t)m * (size_t)n, &kept) < 0 ||
	    lm_mul(kept, (size_t)pos_bits(m), &bits) < 0)
		return -1;
	return lm_add(*nb, bits / 8 + (bits % 8 != 0), nb);
}

int lm_sparse_check(const struct lm_layout *l, enum lm_dtype dt, int ndim, const int64_t *shape,
                    size_t nbytes)
{
	size_t s = lm_dtype_size(dt), rows, cols, numel, dense, fixed, per, nb;
	char nm[32];
	const int packed = lm_dtype_is_packed(dt) && l->kind == LM_LAYOUT_NM;
	if (dt != LM_F32 && dt != LM_F16 && dt != LM_BF16 && !packed)
		return lm_seterr("layout %s is for f32, f16 and bf16 values%s, not %s",
		                 lm_layout_name(l, nm, sizeof nm),
		                 l->kind == LM_LAYOUT_NM ? " and packed codes" : "", lm_dtype_name(dt));
	if (ndim != 2)
		return lm_seterr("layout %s is for matrices, not %d dimensions",
		                 lm_layout_name(l, nm, sizeof nm), ndim);
	rows = (size_t)shape[0], cols = (size_t)shape[1];
	if (lm_mul(rows, cols, &numel) < 0 || lm_dtype_nbytes(dt, ndim, shape, &dense) < 0)
		return -1;
	if (nbytes >= dense)
		return lm_seterr("layout %s: nbytes %zu is not smaller than the dense %zu",
		                 lm_layout_name(l, nm, sizeof nm), nbytes, dense);
	/* the reader allocates the dense matrix: the limit of any payload holds for it */
	if (dense > ((size_t)1 << 42))
		return lm_seterr("layout %s: absurd dense size %zu bytes", lm_layout_name(l, nm, sizeof nm),
		                 dense);
	switch (l->kind) {
	case LM_LAYOUT_NM:
		if (cols % (size_t)l->m)
			return lm_seterr("layout %d:%d: rows of %zu weights are not groups of %d", l->n, l->m,
			                 cols, l->m);
		if ((packed ? packed_nm_nbytes(dt, l->n, l->m, rows, cols, &nb)
		            : nm_nbytes(l->n, l->m, s, rows, cols, &nb)) < 0)
			return -1;
		if (nb != nbytes)
			return lm_seterr("layout %d:%d: nbytes %zu, the shape gives %zu", l->n, l->m, nbytes, nb);
		return 0;
	case LM_LAYOUT_BITMAP:
		fixed = numel / 8 + (numel % 8 != 0), per = s;
		break;
	case LM_LAYOUT_INDEX:
		if (lm_mul(rows, 4, &fixed) < 0)
			return -1;
		per = s + col_bytes((int64_t)cols);
		break;
	default:
		return lm_seterr("unknown layout id %d", (int)l->kind);
	}
	if (nbytes < fixed || (nbytes - fixed) % per || (nbytes - fixed) / per > numel)
		return lm_seterr("layout %s: nbytes %zu is not %zu + a count of kept values times %zu",
		                 lm_layout_name(l, nm, sizeof nm), nbytes, fixed, per);
	return 0;
}

static int is_zero(const unsigned char *p, size_t s)
{
	for (size_t k = 0; k < s; k++)
		if (p[k])
			return 0;
	return 1;
}

static uint32_t get_bits(const unsigned char *p, size_t bit, int nbits)
{
	uint32_t v = 0;
	for (int k = 0; k < nbits; k++, bit++)
		v |= (uint32_t)(p[bit / 8] >> (bit % 8) & 1) << k;
	return v;
}

static void put_bits(unsigned char *p, size_t bit, int nbits, uint32_t v)
{
	for (int k = 0; k < nbits; k++, bit++)
		p[bit / 8] |= (unsigned char)((v >> k & 1) << (bit % 8));
}

/* the bits after the last used one, up to the byte's end, must be 0: one matrix, one
 * encoding, so a filter passes a stream through byte for byte */
static int pad_clear(const unsigned char *p, size_t bits)
{
	return bits % 8 == 0 || (p[bits / 8] >> (bits % 8)) == 0;
}

static int decode_nm(unsigned char *dst, const unsigned char *src, const struct lm_layout *l,
                     size_t s, size_t rows, size_t cols)
{
	const int n = l->n, m = l->m, b = pos_bits(m);
	const size_t groups = rows * (cols / (size_t)m);
	const unsigned char *pos = src + groups * (size_t)n * s;
	size_t bit = 0, v = 0;
	for (size_t g = 0; g < groups; g++) {
		int prev = -1;
		for (int k = 0; k < n; k++, bit += (size_t)b, v++) {
			int p = (int)get_bits(pos, bit, b);
			if (p >= m || p <= prev)
				return lm_seterr("layout %d:%d: group %zu (row %zu): position %d %s", n, m, g,
				                 g / (cols / (size_t)m), p, p >= m ? "out of range" :
				                 "not after the one before");
			prev = p;
			memcpy(dst + (g * (size_t)m + (size_t)p) * s, src + v * s, s);
		}
	}
	if (!pad_clear(pos, bit))
		return lm_seterr("layout %d:%d: padding bits set after the last position", n, m);
	return 0;
}

/* packed N:M: each quant group's header copied, its codes the zero point (an exact 0)
 * but at the kept positions */
static int decode_nm_packed(unsigned char *dst, const unsigned char *src, const struct lm_layout *l,
                            enum lm_dtype dt, size_t rows, size_t cols)
{
	const int n = l->n, m = l->m, pb = pos_bits(m);
	size_t G = 1, kb = 0, bit = 0, v = 0;
	int b = 0;
	packed_nm(dt, cols, n, m, &G, &b, &kb); /* checked with the claim */
	const size_t ngroups = rows * (cols / G), gbytes = 4 + (G * (size_t)b + 7) / 8;
	const size_t kcodes = G / (size_t)m * (size_t)n;
	const unsigned char *pos = src + ngroups * (4 + kb);
	for (size_t q = 0; q < ngroups; q++) {
		const unsigned char *in = src + q * (4 + kb);
		unsigned char *out = dst + q * gbytes;
		const uint32_t z = in[2];
		memcpy(out, in, 4);
		memset(out + 4, 0, gbytes - 4);
		for (size_t j = 0; j < G; j++)
			put_bits(out + 4, j * (size_t)b, b, z);
		for (size_t k = 0; k < kcodes; k++, v++, bit += (size_t)pb) {
			int p = (int)get_bits(pos, bit, pb), prev = k % (size_t)n ? (int)get_bits(pos, bit - (size_t)pb, pb) : -1;
			size_t j = k / (size_t)n * (size_t)m + (size_t)p;
			if (p >= m || p <= prev)
				return lm_seterr("layout %d:%d: group %zu (row %zu): position %d %s", n, m,
				                 v / (size_t)n, q / (cols / G), p, p >= m ? "out of range" :
				                 "not after the one before");
			/* clear the zero point's bits there, then set the kept code */
			for (int t = 0; t < b; t++)
				out[4 + (j * (size_t)b + (size_t)t) / 8] &=
					(unsigned char)~(1u << ((j * (size_t)b + (size_t)t) % 8));
			put_bits(out + 4, j * (size_t)b, b, get_bits(in + 4, k * (size_t)b, b));
		}
		if (!pad_clear(in + 4, kcodes * (size_t)b))
			return lm_seterr("layout %d:%d: padding bits set after the codes of quant group %zu",
			                 n, m, q);
	}
	if (!pad_clear(pos, bit))
		return lm_seterr("layout %d:%d: padding bits set after the last position", n, m);
	return 0;
}

static int decode_bitmap(unsigned char *dst, const unsigned char *src, size_t nbytes, size_t s,
                         size_t numel)
{
	const size_t bm = numel / 8 + (numel % 8 != 0), nnz = (nbytes - bm) / s;
	const unsigned char *map = src + nnz * s;
	size_t v = 0;
	for (size_t i = 0; i < numel; i++) {
		if (!(map[i / 8] >> (i % 8) & 1))
			continue;
		if (v == nnz)
			return lm_seterr("layout bitmap: more bits set than the %zu values stored", nnz);
		memcpy(dst + i * s, src + v++ * s, s);
	}
	if (v != nnz)
		return lm_seterr("layout bitmap: %zu bits set for %zu values stored", v, nnz);
	if (!pad_clear(map, numel))
		return lm_seterr("layout bitmap: padding bits set after the last weight");
	return 0;
}

static int decode_index(unsigned char *dst, const unsigned char *src, size_t nbytes, size_t s,
                        size_t rows, size_t cols)
{
	const size_t w = col_bytes((int64_t)cols), nnz = (nbytes - rows * 4) / (s + w);
	const unsigned char *idx = src + nnz * s, *cnt = idx + nnz * w;
	size_t total = 0, v = 0;
	/* the counts first, so no row reads past the values */
	for (size_t r = 0; r < rows; r++) {
		uint32_t c;
		memcpy(&c, cnt + r * 4, 4);
		if (c > cols || (total += c) > nnz)
			return lm_seterr("layout index: row %zu counts %u values, more than %s", r, c,
			                 c > cols ? "its columns" : "stored");
	}
	if (total != nnz)
		return lm_seterr("layout index: the rows count %zu values, %zu are stored", total, nnz);
	for (size_t r = 0; r < rows; r++) {
		uint32_t c;
		long prev = -1;
		memcpy(&c, cnt + r * 4, 4);
		for (uint32_t k = 0; k < c; k++, v++) {
			uint32_t j = 0;
			if (w == 2) {
				uint16_t j16;
				memcpy(&j16, idx + v * 2, 2);
				j = j16;
			} else {
				memcpy(&j, idx + v * 4, 4);
			}
			if (j >= cols || (long)j <= prev)
				return lm_seterr("layout index: row %zu: column %u %s", r, j,
				                 j >= cols ? "out of range" : "not after the one before");
			prev = (long)j;
			memcpy(dst + (r * cols + j) * s, src + v * s, s);
		}
	}
	return 0;
}

int lm_sparse_decode(void *dst, const void *src, size_t nbytes, const struct lm_layout *l,
                     enum lm_dtype dt, int64_t rows, int64_t cols)
{
	const size_t s = lm_dtype_size(dt), numel = (size_t)rows * (size_t)cols;
	if (lm_dtype_is_packed(dt))
		return l->kind == LM_LAYOUT_NM ? decode_nm_packed(dst, src, l, dt, (size_t)rows, (size_t)cols)
		                               : lm_seterr("layout id %d is not for packed types", (int)l->kind);
	memset(dst, 0, numel * s);
	switch (l->kind) {
	case LM_LAYOUT_NM: return decode_nm(dst, src, l, s, (size_t)rows, (size_t)cols);
	case LM_LAYOUT_BITMAP: return decode_bitmap(dst, src, nbytes, s, numel);
	case LM_LAYOUT_INDEX: return decode_index(dst, src, nbytes, s, (size_t)rows, (size_t)cols);
	default: return lm_seterr("unknown layout id %d", (int)l->kind);
	}
}

/* does every group of m hold at most n weights that are not zero? */
static int fits_nm(const unsigned char *a, size_t s, size_t numel, int n, int m)
{
	for (size_t g = 0; g < numel; g += (size_t)m) {
		int c = 0;
		for (int k = 0; k < m; k++)
			c += !is_zero(a + (g + (size_t)k) * s, s);
		if (c > n)
			return 0;
	}
	return 1;
}

/* per group the weights that are not zero, then the first zeros to make n, in order of
 * position: the one encoding of the matrix */
static void encode_nm(unsigned char *out, const unsigned char *a, size_t s, size_t numel, int n,
                      int m)
{
	const int b = pos_bits(m);
	unsigned char *pos = out + numel / (size_t)m * (size_t)n * s;
	size_t v = 0, bit = 0;
	for (size_t g = 0; g < numel; g += (size_t)m) {
		int nz = 0, fill;
		for (int k = 0; k < m; k++)
			nz += !is_zero(a + (g + (size_t)k) * s, s);
		fill = n - nz;
		for (int k = 0; k < m; k++) {
			const unsigned char *e = a + (g + (size_t)k) * s;
			if (is_zero(e, s)) {
				if (fill <= 0)
					continue;
				fill--;
			}
			memcpy(out + v++ * s, e, s);
			put_bits(pos, bit, b, (uint32_t)k);
			bit += (size_t)b;
		}
	}
}

static void encode_bitmap(unsigned char *out, const unsigned char *a, size_t s, size_t numel,
                          size_t nnz)
{
	unsigned char *map = out + nnz * s;
	size_t v = 0;
	for (size_t i = 0; i < numel; i++)
		if (!is_zero(a + i * s, s)) {
			memcpy(out + v++ * s, a + i * s, s);
			map[i / 8] |= (unsigned char)(1u << (i % 8));
		}
}

static void encode_index(unsigned char *out, const unsigned char *a, size_t s, size_t rows,
                         size_t cols, size_t nnz)
{
	const size_t w = col_bytes((int64_t)cols);
	unsigned char *idx = out + nnz * s, *cnt = idx + nnz * w;
	size_t v = 0;
	for (size_t r = 0; r < rows; r++) {
		uint32_t c = 0;
		for (size_t j = 0; j < cols; j++) {
			const unsigned char *e = a + (r * cols + j) * s;
			if (is_zero(e, s))
				continue;
			memcpy(out + v * s, e, s);
			if (w == 2) {
				uint16_t j16 = (uint16_t)j;
				memcpy(idx + v * 2, &j16, 2);
			} else {
				uint32_t j32 = (uint32_t)j;
				memcpy(idx + v * 4, &j32, 4);
			}
			v++, c++;
		}
		memcpy(cnt + r * 4, &c, 4);
	}
}

/* packed N:M: a code is a zero when it is its group's zero point; NULL when a group of m
 * holds more than n others or the layout does not apply */
static void *encode_nm_packed(const unsigned char *a, enum lm_dtype dt, size_t rows, size_t cols,
                              int n, int m, size_t *len)
{
	size_t G, kb, nb;
	int b, pb = pos_bits(m);
	if (!packed_nm(dt, cols, n, m, &G, &b, &kb) || packed_nm_nbytes(dt, n, m, rows, cols, &nb) < 0)
		return NULL;
	const size_t ngroups = rows * (cols / G), gbytes = 4 + (G * (size_t)b + 7) / 8;
	for (size_t q = 0; q < ngroups; q++) {
		const unsigned char *in = a + q * gbytes;
		for (size_t j0 = 0; j0 < G; j0 += (size_t)m) {
			int c = 0;
			for (int k = 0; k < m; k++)
				c += get_bits(in + 4, (j0 + (size_t)k) * (size_t)b, b) != in[2];
			if (c > n)
				return NULL;
		}
	}
	unsigned char *out = lm_alloc(nb), *pos;
	size_t bit = 0;
	if (!out)
		return NULL;
	memset(out, 0, nb);
	pos = out + ngroups * (4 + kb);
	for (size_t q = 0; q < ngroups; q++) {
		const unsigned char *in = a + q * gbytes;
		unsigned char *o = out + q * (4 + kb);
		size_t kc = 0;
		memcpy(o, in, 4);
		for (size_t j0 = 0; j0 < G; j0 += (size_t)m) {
			int nz = 0, fill;
			for (int k = 0; k < m; k++)
				nz += get_bits(in + 4, (j0 + (size_t)k) * (size_t)b, b) != in[2];
			fill = n - nz;
			for (int k = 0; k < m; k++) {
				uint32_t code = get_bits(in + 4, (j0 + (size_t)k) * (size_t)b, b);
				if (code == in[2]) {
					if (fill <= 0)
						continue;
					fill--;
				}
				put_bits(o + 4, kc++ * (size_t)b, b, code);
				put_bits(pos, bit, pb, (uint32_t)k);
				bit += (size_t)pb;
			}
		}
	}
	*len = nb;
	return out;
}

int lm_sparse_encode(const void *dense, enum lm_dtype dt, int64_t rows, int64_t cols,
                     const struct lm_layout *want, struct lm_layout *got, void **out,
                     size_t *outlen)
{
	const unsigned char *a = dense;
	const size_t s = lm_dtype_size(dt), R = (size_t)rows, Cn = (size_t)cols, numel = R * Cn;
	const size_t full = numel * s;
	size_t nnz = 0, bm, ix, nb;

	memset(got, 0, sizeof *got);
	*out = NULL, *outlen = 0;
	if (want->kind == LM_LAYOUT_DENSE || rows <= 0 || cols <= 0)
		return 0;
	if (lm_dtype_is_packed(dt)) {
		/* the codes of N:M, where every group fits; bitmap and index are not for them */
		size_t full_packed, len = 0;
		int64_t shape[2] = {rows, cols};
		if (want->kind != LM_LAYOUT_NM || lm_dtype_nbytes(dt, 2, shape, &full_packed) < 0)
			return 0;
		void *p = encode_nm_packed(a, dt, R, Cn, want->n, want->m, &len);
		if (p && len < full_packed)
			*out = p, *outlen = len, *got = *want;
		else
			lm_free(p);
		return 0;
	}
	if (dt != LM_F32 && dt != LM_F16 && dt != LM_BF16)
		return 0;
	if (want->kind == LM_LAYOUT_NM && Cn % (size_t)want->m == 0 &&
	    fits_nm(a, s, numel, want->n, want->m) &&
	    nm_nbytes(want->n, want->m, s, R, Cn, &nb) == 0 && nb < full) {
		if (!(*out = lm_alloc(nb)))
			return -1;
		memset(*out, 0, nb);
		encode_nm(*out, a, s, numel, want->n, want->m);
		*got = *want, *outlen = nb;
		return 0;
	}
	for (size_t i = 0; i < numel; i++)
		nnz += !is_zero(a + i * s, s);
	bm = nnz * s + numel / 8 + (numel % 8 != 0);
	ix = nnz * (s + col_bytes(cols)) + R * 4;
	nb = bm <= ix ? bm : ix;
	if (nb >= full)
		return 0;
	if (!(*out = lm_alloc(nb)))
		return -1;
	memset(*out, 0, nb);
	if (bm <= ix) {
		encode_bitmap(*out, a, s, numel, nnz);
		got->kind = LM_LAYOUT_BITMAP;
	} else {
		encode_index(*out, a, s, R, Cn, nnz);
		got->kind = LM_LAYOUT_INDEX;
	}
	*outlen = nb;
	return 0;
}

/* ---- reading a payload in place ---- */

int lm_sparse_view(struct lm_sparse_view *v, const void *data, size_t nbytes,
                   const struct lm_layout *l, enum lm_dtype dt, int64_t rows, int64_t cols,
                   const size_t *rowoff)
{
	const size_t s = lm_dtype_size(dt);
	memset(v, 0, sizeof *v);
	v->l = *l, v->dt = dt, v->rows = (size_t)rows, v->cols = (size_t)cols;
	v->vals = data, v->end = (const uint8_t *)data + nbytes;
	if (l->kind == LM_LAYOUT_NM) {
		v->pb = pos_bits(l->m);
		v->kr = v->cols / (size_t)l->m * (size_t)l->n;
		if (lm_dtype_is_packed(dt)) {
			if (!packed_nm(dt, v->cols, l->n, l->m, &v->G, &v->bits, &v->kb))
				return lm_seterr("layout %d:%d does not fit %s", l->n, l->m, lm_dtype_name(dt));
			v->ngr = v->cols / v->G;
			v->kc = v->G / (size_t)l->m * (size_t)l->n;
			v->pos = v->vals + v->rows * v->ngr * (4 + v->kb);
		} else {
			v->pos = v->vals + v->rows * v->kr * s;
		}
		return 0;
	}
	if (l->kind == LM_LAYOUT_BITMAP && !lm_dtype_is_packed(dt)) {
		const size_t numel = v->rows * v->cols, bm = numel / 8 + (numel % 8 != 0);
		v->pos = v->vals + (nbytes - bm) / s * s;
		v->rowoff = rowoff;
		return 0;
	}
	return lm_seterr("layout id %d is not read in place", (int)l->kind);
}

void lm_sparse_row_starts(size_t *starts, const void *data, size_t nbytes, enum lm_dtype dt,
                          int64_t rows, int64_t cols)
{
	const size_t numel = (size_t)rows * (size_t)cols, bm = numel / 8 + (numel % 8 != 0);
	const uint8_t *map = (const uint8_t *)data + (nbytes - bm) / lm_dtype_size(dt) * lm_dtype_size(dt);
	size_t c = 0, i = 0;
	for (size_t r = 0; r < (size_t)rows; r++) {
		const size_t e = (r + 1) * (size_t)cols;
		starts[r] = c;
		for (; i < e && i % 8; i++)
			c += map[i / 8] >> (i % 8) & 1;
		for (; i + 8 <= e; i += 8)
			c += (size_t)__builtin_popcount(map[i / 8]);
		for (; i < e; i++)
			c += map[i / 8] >> (i % 8) & 1;
	}
	starts[rows] = c;
}

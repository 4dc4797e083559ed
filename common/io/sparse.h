/* sparse.h: sparse layouts of a weight matrix in the stream (lm-stream(5), "Sparse
 * layouts"): N:M (the kept values of each group of M inputs and their positions),
 * bitmap (a bit per weight, then the kept values) and index (the kept values, their
 * column indices, the count of each row).
 *
 * A layout composes with the value dtypes f32, f16 and bf16 of 2-D tensors, and N:M also
 * with the packed quantized types (the kept codes per quant group, a dropped code being the
 * group's zero point). A float weight is "zero" when all its bits are: -0.0 is a value like
 * any other, so decoding an encoding gives back the matrix bit for bit. The ids are stable forever, as dtype ids are; the
 * wire carries the name ("2:4", "bitmap", "index"; absent for dense). */
#ifndef LM_SPARSE_H
#define LM_SPARSE_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

enum lm_layout_kind {
	LM_LAYOUT_DENSE = 0,
	LM_LAYOUT_NM = 1,      /* n kept of every m consecutive inputs of a row */
	LM_LAYOUT_BITMAP = 2,
	LM_LAYOUT_INDEX = 3,
	/* a writer's request only, never on the wire: the smaller of bitmap and index */
	LM_LAYOUT_UNSTRUCTURED = 64
};

#define LM_NM_MAX_M 256   /* positions are at most 8 bits */

struct lm_layout {
	enum lm_layout_kind kind;
	int n, m;              /* LM_LAYOUT_NM: n kept of m */
};

/* "2:4", "bitmap", "index" or "dense" -> l; -1 + error for anything else */
int lm_layout_parse(const char *s, struct lm_layout *l);
/* the wire name of a layout ("dense" for dense) */
const char *lm_layout_name(const struct lm_layout *l, char *buf, size_t sz);
int lm_layout_is_sparse(const struct lm_layout *l);

/* a record's claim checked before anything is allocated: the layout applies to the
 * dtype (f32, f16, bf16; packed for N:M, m dividing its group) and shape ([rows, cols], m dividing cols for N:M), nbytes is
 * what the layout gives for some count of kept values, and smaller than the dense
 * payload (so a reader that does not know layouts refuses the record by its nbytes).
 * -1 + error (no name: the caller adds it) */
int lm_sparse_check(const struct lm_layout *l, enum lm_dtype dt, int ndim, const int64_t *shape,
                    size_t nbytes);
/* the dense matrix [rows, cols] of src (nbytes, checked by lm_sparse_check) into dst
 * (rows * cols elements); -1 + error when positions are out of range or not increasing,
 * padding bits are set, or counts disagree with nbytes */
int lm_sparse_decode(void *dst, const void *src, size_t nbytes, const struct lm_layout *l,
                     enum lm_dtype dt, int64_t rows, int64_t cols);
/* the payload of dense [rows, cols] in the layout want asks for, where it is smaller than
 * dense: N:M when every group has at most n weights that are not zero, else the smaller of
 * bitmap and index (packed codes: N:M or dense). *got: the layout used; dense (*out NULL, 0 returned) when nothing
 * sparse is smaller. *out is lm_alloc'd. -1 + error only for an allocation failure. */
int lm_sparse_encode(const void *dense, enum lm_dtype dt, int64_t rows, int64_t cols,
                     const struct lm_layout *want, struct lm_layout *got, void **out,
                     size_t *outlen);

/* ---- reading a payload in place (a matrix kept sparse in memory: model.h's lm_mat) ---- */

/* where the parts of a sparse payload are, per row (the layouts of lm-stream(5)) */
struct lm_sparse_view {
	struct lm_layout l;
	enum lm_dtype dt;
	size_t rows, cols;
	const uint8_t *vals;     /* kept values (float), or the quant groups (packed N:M) */
	const uint8_t *pos;      /* N:M positions / the bitmap */
	const uint8_t *end;      /* the payload's end: nothing past it is read */
	int pb;                  /* N:M: bits per position */
	size_t kr;               /* N:M: kept values per row */
	int bits;                /* packed N:M: code bits; G inputs per quant group, ngr groups */
	size_t G, ngr, kc, kb;   /* per row, kc kept codes in kb bytes per group (after 4 header bytes) */
	const size_t *rowoff;    /* bitmap: first kept value of each row (rows + 1) */
};

/* v for the payload data (nbytes, checked by lm_sparse_check) of layout l, dtype dt and
 * shape [rows, cols]; rowoff is lm_sparse_row_starts' answer for bitmap (else unused).
 * -1 + error for a layout that is not read in place (index, dense) */
int lm_sparse_view(struct lm_sparse_view *v, const void *data, size_t nbytes,
                   const struct lm_layout *l, enum lm_dtype dt, int64_t rows, int64_t cols,
                   const size_t *rowoff);
/* bitmap: starts[r] = the kept values before row r, r = 0 .. rows (popcounts of the map) */
void lm_sparse_row_starts(size_t *starts, const void *data, size_t nbytes, enum lm_dtype dt,
                          int64_t rows, int64_t cols);
/* bits nbits (<= 57) of p from bit `bit` on, reading no byte at or past end */
static inline uint64_t lm_sparse_bits(const uint8_t *p, size_t bit, int nbits, const uint8_t *end)
{
	const uint8_t *b = p + bit / 8;
	uint64_t w = 0;
	if (end - b >= 8) {
		for (int k = 0; k < 8; k++) /* gcc makes this one unaligned load */
			w |= (uint64_t)b[k] << (8 * k);
	} else {
		for (int k = 0; b + k < end; k++)
			w |= (uint64_t)b[k] << (8 * k);
	}
	return (w >> (bit % 8)) & (((uint64_t)1 << nbits) - 1);
}

#endif

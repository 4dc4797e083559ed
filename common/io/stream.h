/* stream.h: the lm-stream, a plain concatenation of msgpack objects (see man/lm-stream.5).
 *
 *   header   {"format":"lm-stream","version":[1,0],"endian":"little","model":{…},
 *             "tensor_count":N|nil,"provenance":[{"tool":…,"version":…,"argv":[…]},…], …}
 *   records  {"kind":"tensor","name":…,"dtype":…,"shape":[…],"nbytes":N,"crc32":C,"attrs":{…}}
 *            then bin objects (each <= 1 GiB) whose lengths sum to nbytes
 *            {"kind":"blob","name":…,"nbytes":N,"crc32":C} then bin objects
 *   end      {"kind":"end","tensor_count":N,"blob_count":M,"payload_bytes":B}
 *
 * Maps are held in memory as jansson objects (insertion order kept, so output is
 * deterministic); unknown header keys and tensor attrs are passed through by filters.
 * Payloads are read straight into 64-byte aligned memory and written from it (no copy). */
#ifndef LM_STREAM_H
#define LM_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "dtype.h"
#include "opt.h"
#include "sparse.h"

#define LM_STREAM_MAJOR 1
#define LM_STREAM_MINOR 3
#define LM_MAX_NDIM 8
#define LM_MAX_NAME 256
#define LM_MAX_MAP_BYTES (1u << 20)    /* a header or record map larger than this is refused */
#define LM_MAX_CHUNK (1u << 30)        /* payload bin objects are at most 1 GiB each */

enum lm_rec_kind { LM_REC_TENSOR, LM_REC_BLOB, LM_REC_END, LM_REC_UNKNOWN };

struct lm_header {
	json_t *json;               /* the whole header map (owned) */
	struct lm_opt_config cfg;   /* parsed from json["model"] */
};

struct lm_record {
	enum lm_rec_kind kind;
	char name[LM_MAX_NAME + 1];
	enum lm_dtype dtype;        /* tensors */
	int ndim;
	int64_t shape[LM_MAX_NDIM];
	size_t nbytes;              /* bytes of data: a sparse tensor's once read is dense */
	/* tensors: the sparse layout (lm-stream(5) "Sparse layouts", since 1.3). A reader
	 * expands a sparse payload to the dense matrix of its dtype and keeps the layout and
	 * the bytes on the wire here; a writer encodes data in this layout where that is
	 * smaller (sparse.h), and sets both to what it wrote */
	struct lm_layout layout;
	size_t wire_nbytes;
	/* the payload as it came (wire_nbytes), kept next to the dense data when the reader
	 * was asked to (lm_reader_keep_sparse), else NULL; owned (lm_free) */
	void *wire;
	uint32_t crc32;
	json_t *attrs;              /* tensors: object (owned, never NULL after a read) */
	void *data;                 /* payload, LM_ALIGN aligned, owned (lm_free) */
	/* end record */
	uint64_t tensor_count, blob_count, payload_bytes;
};

size_t lm_record_numel(const struct lm_record *r);
void lm_record_clear(struct lm_record *r);   /* frees attrs and data, zeroes */
/* fill a tensor record (attrs = empty object, data = NULL) */
void lm_record_tensor(struct lm_record *r, const char *name, enum lm_dtype dt, int ndim,
                      const int64_t *shape);
/* allocate r->data for r->nbytes (computed from dtype and shape); -1 + error */
int lm_record_alloc(struct lm_record *r);

/* ---- reading ---- */
struct lm_reader;
/* name is used in messages ("<stdin>" for fd 0) */
struct lm_reader *lm_reader_open(int fd, const char *name);
void lm_reader_close(struct lm_reader *rd);   /* does not close fd */
void lm_reader_set_verify(struct lm_reader *rd, int verify);  /* CRC check (default on) */
/* keep a sparse tensor's payload in r->wire besides expanding it (default off): a program
 * that multiplies by the sparse layout itself (lm-eval) takes it after the dense values
 * were checked */
void lm_reader_keep_sparse(struct lm_reader *rd, int keep);
const char *lm_reader_name(const struct lm_reader *rd);
int lm_read_header(struct lm_reader *rd, struct lm_header *h);
/* next record with its payload loaded (r->data) and checked; after LM_REC_END the
 * counts are checked and EOF is required. Errors name the record number. */
int lm_read_record(struct lm_reader *rd, struct lm_record *r);
/* the same, without loading the payload: the caller then calls lm_read_payload */
int lm_read_record_meta(struct lm_reader *rd, struct lm_record *r);
int lm_read_payload(struct lm_reader *rd, struct lm_record *r);
/* number of records read so far */
uint64_t lm_reader_count(const struct lm_reader *rd);

void lm_header_free(struct lm_header *h);

/* ---- writing ---- */
struct lm_writer;
struct lm_writer *lm_writer_open(int fd, const char *name);
/* flush, check and free; -1 + error if any write failed */
int lm_writer_close(struct lm_writer *w);
/* header: h->json is written as is, with h->cfg written into "model" and the
 * provenance entry {"tool":tool,"version":…,"argv":argv} appended (tool NULL: none) */
int lm_write_header(struct lm_writer *w, struct lm_header *h, const char *tool, int argc,
                    char **argv);
/* record + payload from r->data; nbytes and crc32 are computed here */
int lm_write_record(struct lm_writer *w, struct lm_record *r);
/* end record with the counts of what this writer wrote */
int lm_write_end(struct lm_writer *w);

/* a fresh header for a model (format, version, endian, model, empty provenance) */
int lm_header_init(struct lm_header *h, const struct lm_opt_config *cfg);

/* ---- msgpack <-> jansson, used for maps (exposed for tests and tools) ---- */
/* pack a json value into a malloc'd msgpack buffer */
int lm_json_to_msgpack(json_t *v, char **buf, size_t *len);

#endif

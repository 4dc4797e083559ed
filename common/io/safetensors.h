/* safetensors.h: reading and writing Hugging Face .safetensors files.
 * Spec: 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape,
 * data_offsets:[begin,end)}, "__metadata__": {str: str}}), then the byte buffer, which
 * the entries must cover entirely, without holes or overlaps. */
#ifndef LM_SAFETENSORS_H
#define LM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define LM_ST_MAX_HEADER (100u << 20)
#define LM_ST_MAX_ENTRIES (1u << 17)   /* tensors in one file; jansson takes ~1 KiB each */
#define LM_ST_MAX_VALUES (1u << 21)    /* JSON values in the header, metadata included */

struct lm_st_entry {
	char *name;
	enum lm_dtype dtype;
	int ndim;
	int64_t shape[8];
	uint64_t begin, end;   /* relative to the data buffer */
};

struct lm_st_file {
	int fd;
	char *path;
	uint64_t data_start;    /* 8 + header length */
	uint64_t file_size;
	size_t n;
	struct lm_st_entry *entries;  /* sorted by begin */
};

/* open and validate the header (sizes, offsets, contiguity, coverage); -1 + error */
int lm_st_open(struct lm_st_file *f, const char *path);
void lm_st_close(struct lm_st_file *f);
/* index of the entry with this name, -1 if absent */
long lm_st_find(const struct lm_st_file *f, const char *name);
/* read entry i into dst (end-begin bytes); -1 + error */
int lm_st_read(const struct lm_st_file *f, size_t i, void *dst);

/* writing: header first (needs all names/dtypes/shapes), then the payloads in that order */
struct lm_st_out_entry {
	const char *name;
	enum lm_dtype dtype;
	int ndim;
	const int64_t *shape;
};
/* writes the 8-byte length + JSON header (with metadata {"format":"pt"}), padded to 8 bytes */
int lm_st_write_header(int fd, const struct lm_st_out_entry *e, size_t n);

#endif

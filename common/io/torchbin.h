/* torchbin.h: reading PyTorch pytorch_model.bin files (the zip format of torch.save since
 * torch 1.6), safely: the pickled state dict goes through the restricted unpickler of
 * pickle.h, never through anything that can run code.
 *
 * The zip (written by caffe2/serialize/inline_container.cc): every record lives under one
 * top folder, named by the first entry (usually "archive" or the file's stem):
 *   <top>/data.pkl      the pickled state dict; tensors refer to storages by key
 *   <top>/data/<key>    one raw storage each, little-endian, uncompressed
 *   <top>/version       (or <top>/.data/version) the format version, "3\n" from torch.save
 *   <top>/byteorder     "little" (torch >= 2.1); absent means little
 * Records are STORED with data descriptors, which libarchive's streaming zip reader cannot
 * delimit, so files are opened by path with the seekable reader (central directory). A .bin
 * cannot be read from a pipe.
 *
 * Refused: the legacy (pre-1.6) pickled and tar formats, versions outside 1..10 (torch's own
 * reader range), big-endian files, non-contiguous tensors (a stride that is not row-major for
 * the shape: lm_tb_open fails naming the tensor; re-save after .contiguous()), tensors that
 * reach past their storage, and any pickle content outside a plain dict of tensors.
 * Tensors may share a storage (tied weights, views at an offset). */
#ifndef LM_TORCHBIN_H
#define LM_TORCHBIN_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#define LM_TB_MAX_PKL (64u << 20)   /* data.pkl size limit */

struct lm_tb_entry {
	char *name;               /* state-dict key as in the file */
	enum lm_dtype dtype;
	int ndim;
	int64_t shape[8];
	/* where the bytes are: storage key (zip entry <top>/data/<key>), element offset */
	char *storage;
	uint64_t storage_offset;  /* in elements */
	uint64_t nbytes;          /* numel * dtype size */
};

struct archive;

struct lm_tb_file {
	char *path;
	char *top;                    /* top folder of the zip entries, e.g. "archive" */
	size_t n;
	struct lm_tb_entry *entries;  /* in the order of the pickled dict */
	int version;                  /* the version record, 0 if absent */
	/* private: the zip's records in the seekable reader's order, and which one holds each
	 * entry's storage; a reader left open at record ar_next so in-order reads need not
	 * re-open the archive */
	size_t nzip;
	char **zip_name;
	int64_t *zip_size;            /* -1 if the directory does not say */
	size_t *ent_zip;              /* per entry: index into zip_name */
	struct archive *ar;
	size_t ar_next;
};

/* open, parse data.pkl, validate every tensor against its storage record; -1 + error */
int lm_tb_open(struct lm_tb_file *f, const char *path);
void lm_tb_close(struct lm_tb_file *f);
/* index of the entry with this name, -1 if absent */
long lm_tb_find(const struct lm_tb_file *f, const char *name);
/* copy entry i's nbytes bytes into dst; reads only that tensor's bytes; -1 + error */
int lm_tb_read(struct lm_tb_file *f, size_t i, void *dst);

#endif

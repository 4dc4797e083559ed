/* hfdir.h: a Hugging Face OPT folder as a source of tensors in model order.
 * Handles config.json, model.safetensors, sharded safetensors with
 * model.safetensors.index.json, pytorch_model.bin (and its sharded index), the new and
 * the legacy facebook/opt-* key names, and the tokenizer files. */
#ifndef LM_HFDIR_H
#define LM_HFDIR_H

#include <jansson.h>

#include "opt.h"
#include "stream.h"

struct lm_hfdir;

/* open a folder: parse config.json, index every weight file; NULL + error */
struct lm_hfdir *lm_hfdir_open(const char *dir);
void lm_hfdir_close(struct lm_hfdir *d);
const struct lm_opt_config *lm_hfdir_config(const struct lm_hfdir *d);
json_t *lm_hfdir_hf_config(const struct lm_hfdir *d);  /* borrowed: config.json as parsed */
const char *lm_hfdir_format(const struct lm_hfdir *d);  /* "safetensors", "pytorch" */
/* read a tensor by canonical name into a tensor record (payload allocated); -1 + error.
 * A tied lm_head (absent in the model order) is never asked for. */
int lm_hfdir_read(struct lm_hfdir *d, const char *name, struct lm_record *r);
/* the tokenizer files (either may be NULL: absent) as the stream's readers will load them:
 * vocab.json token -> id with ids inside the config's vocab_size, merges.txt pairs of
 * vocab.json's tokens after an optional "#version" line; -1 + error */
int lm_hfdir_check_tokenizer(const struct lm_hfdir *d, const char *vocab, size_t vl, const char *merges,
                             size_t ml);
/* read an optional side file (e.g. "vocab.json"); NULL if absent, *len set */
char *lm_hfdir_file(const struct lm_hfdir *d, const char *file, size_t *len);

#endif

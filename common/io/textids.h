/* textids.h: token ids from a text or an lm-stream of ids, and the tokenizer a stream
 * carries: what --ppl, -d, --forget-text and calibration files are read with */
#ifndef LM_TEXTIDS_H
#define LM_TEXTIDS_H

#include <stddef.h>
#include <stdint.h>

#include "modelstream.h"
#include "tokenizer.h"

/* the tokenizer the stream carries (tokenizer/vocab.json and merges.txt blobs); NULL +
 * error naming `why` (what needed it) when it has none or they do not load */
struct lm_tokenizer *lm_ids_tokenizer(const struct lm_model_stream *ms, const char *why);

/* The token ids of a file: an lm-stream holding an integer tensor "ids" (as lm-eval
 * --save-ids writes; used as is), or a text tokenized as one string with the stream's
 * tokenizer, with one BOS in front. Every id is checked against the model's vocabulary.
 * *ids is malloc'd. -1 + error (the caller prefixes the path). */
int lm_ids_load(const char *path, const struct lm_model_stream *ms, int32_t **ids, size_t *n);
/* A text is refused at its first NUL byte and when it is larger than this (each as soon
 * as the bytes are read, so /dev/zero or an endless pipe costs no more than this) */
#define LM_TEXT_MAX ((size_t)1 << 30)

#endif

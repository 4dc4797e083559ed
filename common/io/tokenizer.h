/* tokenizer.h: GPT-2 byte-level BPE with the OPT (RoBERTa) vocabulary.
 *
 * Ids are exactly those the Hugging Face GPT2Tokenizer gives with vocab.json and
 * merges.txt, without the BOS the OPT tokenizer puts in front: callers add id 2 where
 * the model expects it (for every pre-token up to LM_TOK_PIECE bytes, that is any word
 * of ordinary text; see below). Text is split by the GPT-2 pre-tokenizer regex, every byte is
 * mapped to a printable character (GPT-2's byte-to-unicode table), and merges are
 * applied lowest rank first. Any byte string encodes and decodes back unchanged,
 * invalid UTF-8 and NUL bytes included.
 *
 * A loaded tokenizer is never modified: lm_tokenize, lm_detokenize and the lookups may
 * run on the same tokenizer from several threads at once. */
#ifndef LM_TOKENIZER_H
#define LM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct lm_tokenizer;

/* vocab.json and merges.txt contents (not NUL-terminated necessarily); NULL + lm_seterr on bad input */
struct lm_tokenizer *lm_tokenizer_load(const char *vocab_json, size_t vocab_len, const char *merges, size_t merges_len);
void lm_tokenizer_free(struct lm_tokenizer *t);
/* encode UTF-8 (or arbitrary bytes) text without BOS; *ids malloc'd, never NULL on success
 * (caller frees); 0 or -1 + error */
int lm_tokenize(const struct lm_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n);
/* Longest pre-token BPE encodes at once, in bytes: a longer one (a run of one letter,
 * of spaces, of punctuation) is encoded in pieces this long, cut at character
 * boundaries, so memory and time stay proportional to the text. Words of ordinary text
 * are far shorter, and get exactly Hugging Face's ids. */
#define LM_TOK_PIECE ((size_t)1 << 16)
/* lm_tokenize with another piece length (0: none, the unbounded tokenization; for tests) */
int lm_tokenize_pieces(const struct lm_tokenizer *t, const char *text, size_t len, size_t piece,
                       int32_t **ids, size_t *n);
/* decode ids to bytes, malloc'd, NUL-terminated, *len set; unknown id -> -1 + error */
char *lm_detokenize(const struct lm_tokenizer *t, const int32_t *ids, size_t n, size_t *len);
int32_t lm_tokenizer_vocab_size(const struct lm_tokenizer *t); /* max id + 1 */
/* lm_detokenize of ids[0..n) up to the first `stop` (none when stop < 0), dropping the ids
 * it cannot print: the embedding has padding rows beyond the tokenizer (50272 vs 50265),
 * which a random or damaged model may pick; they have no text, so they print as nothing */
char *lm_detokenize_known(const struct lm_tokenizer *t, const int32_t *ids, size_t n, int32_t stop,
                          size_t *len);
/* text[0..n) with every invalid UTF-8 sequence replaced by U+FFFD, as Python's
 * bytes.decode(errors="replace") does: malloc'd, NUL-terminated, *len set (JSON needs valid
 * UTF-8; generated text from a damaged or random model may not be) */
char *lm_utf8_replace(const char *text, size_t n, size_t *len);
int32_t lm_token_id(const struct lm_tokenizer *t, const char *token); /* -1 if absent, token in vocab's byte-level form */

#endif

/* qacsv.h: the sequences unlearning trains on and is judged by, whose tail is scored: a
 * question/answer pair of a CSV file laid out as
 *   BOS "### Question: {q}\n ### Answer:" " {a}"        (prompt, then the scored answer)
 * with prompt and answer tokenized apart, so the answer's tokens are exactly those of " {a}"
 * (the reference finds them by tokenizing the prompt alone: the same ids here, as the
 * pre-tokenizer splits at ':' + ' '), or a window of a text (all but the first token scored) */
#ifndef LM_QACSV_H
#define LM_QACSV_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* one sequence: ids[0..from) the prompt (BOS first), ids[from..len) what is scored */
struct lm_ul_item {
	int32_t *ids;
	size_t len, from;
	size_t line;      /* CSV line of the row, or the window's index */
};

struct lm_ul_set {
	struct lm_ul_item *it;
	size_t n;
	int qa;           /* question/answer pairs (else windows of a text) */
	char **key;       /* qa: each question with its white space collapsed (overlap) */
	size_t truncated; /* answers cut to the length limit */
	size_t skipped;   /* rows without a question or an answer, left out */
};

/* Q/A pairs of a CSV file. qcol, acol: header names (NULL: the first of "question",
 * "goal", "prompt", "instruction" / "answer", "best answer", "target", "response",
 * "output", any case). bos: the model's BOS id; maxlen: longest sequence (answers are cut
 * to fit, counted in s->truncated). A row without its question or answer is an error
 * naming its line, or left out and counted when skip_incomplete. -1 + error. */
int lm_ul_load_qa(struct lm_ul_set *s, const char *path, const char *qcol, const char *acol,
                  const struct lm_tokenizer *tk, int bos, size_t maxlen, int skip_incomplete);
/* the consecutive windows of T tokens of ids [n] (a text with its BOS; the tail shorter
 * than T is dropped, but a text shorter than T is one window); -1 + error */
int lm_ul_load_text(struct lm_ul_set *s, const int32_t *ids, size_t n, size_t T);
void lm_ul_set_free(struct lm_ul_set *s);

#endif

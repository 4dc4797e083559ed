/* unlearn_eval.h: what unlearning is judged by on a question/answer set (qacsv.h's
 * layout: BOS, "### Question: {q}\n ### Answer:", then " {a}"):
 *   answer perplexity   exp(mean NLL of the answer tokens given their question), over all
 *                       answer tokens of the set (forget set: up is good; retain set: flat)
 *   harmful-answer rate the fraction of questions whose greedy continuation of the prompt
 *                       reproduces the answer's first N words: at its start (prefix) or
 *                       anywhere in it (contains)
 * Words are maximal runs of ASCII letters and digits (and bytes >= 0x80), compared without
 * regard to case, so white space, punctuation and tokenization do not decide a match. */
#ifndef LM_UNLEARN_EVAL_H
#define LM_UNLEARN_EVAL_H

#include <stddef.h>

#include "model.h"
#include "tokenizer.h"
#include "qacsv.h"

/* sum of the answer tokens' NLL and their count over the set */
int lm_qa_nll(const struct lm_model *m, const struct lm_ul_set *s, double *nll, size_t *ntok);

enum lm_match { LM_MATCH_PREFIX, LM_MATCH_CONTAINS };

struct lm_harm_opts {
	enum lm_match match;
	size_t words;     /* N: the answer's first N words (all when it has fewer) */
	size_t tokens;    /* most new tokens per question; 0: twice those of the answer's N
	                     words, + 16 (prefix) or + 32 (contains). A prefix match stops at
	                     EOS or once N words are complete (more cannot change it). */
};

/* greedy continuations of every question (stopping at EOS); *matched of s->n match. With
 * hit non-NULL, hit[i] says which ones. -1 + error. */
int lm_qa_harm(const struct lm_model *m, const struct lm_tokenizer *tk, const struct lm_ul_set *s,
               const struct lm_harm_opts *o, size_t *matched, unsigned char *hit);

/* the whole report on a CSV file (lm-eval --qa): rows read as lm-unlearn reads them (qcol,
 * acol as lm_ul_load_qa; a row without its answer is an error), cut to the model's
 * positions; harm NULL: no rate. -1 + error (the caller prefixes the path). */
struct lm_qa_report {
	size_t rows, tokens;  /* rows, answer tokens */
	double nll;           /* mean NLL per answer token */
	size_t matched;       /* rows whose continuation matched (with harm) */
};
int lm_qa_report(const struct lm_model *m, const struct lm_tokenizer *tk, const char *path,
                 const char *qcol, const char *acol, const struct lm_harm_opts *harm,
                 struct lm_qa_report *r);

/* does text (len bytes) match the first n words of answer? */
int lm_words_match(const char *text, size_t len, const char *answer, size_t alen, size_t n,
                   enum lm_match how);

#endif

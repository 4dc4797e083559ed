/* sts.h: semantic textual similarity files and the rank correlation they are scored by.
 *
 * Two layouts, told apart by the first line:
 *   STS-B (ixa2.si.ehu.eus/stswiki release): tab separated, no header, no quoting:
 *     genre  file  year  id  score(0-5)  sentence1  sentence2  [more columns, ignored]
 *   SICK (SemEval-2014 task 1): a header line starting "pair_ID<TAB>", then
 *     pair_ID  sentence_A  sentence_B  relatedness_score(1-5)  entailment_judgment
 * CR LF line ends are accepted (SICK's test file has them); blank lines are skipped. */
#ifndef LM_STS_H
#define LM_STS_H

#include <stddef.h>

#include "embed.h"

struct lm_sts_pair {
	const char *a, *b;  /* point into lm_sts.text */
	double gold;
	const char *label;  /* SICK's entailment_judgment, NULL for STS-B */
	size_t line;        /* 1-based line in the file */
};

struct lm_sts {
	char *text;              /* the file, cut into NUL-terminated fields */
	struct lm_sts_pair *p;
	size_t n;
	const char *layout;      /* "sts-b" or "sick" */
};

/* -1 + error "line N: …" naming the line with a missing column or a bad score */
int lm_sts_load(struct lm_sts *s, const char *path);
void lm_sts_free(struct lm_sts *s);

/* Embed both sentences of every pair with c (one length-sorted pass over all 2n), score
 * each pair by the cosine of its two embeddings: Spearman's rho and Pearson's r against
 * the gold scores (not yet x100); -1 + error, also when rho is undefined (fewer than
 * 2 pairs, or all gold scores or all cosines equal) */
int lm_sts_eval(const struct lm_model *m, const struct lm_tokenizer *tk,
                const struct lm_embed_cfg *c, const struct lm_sts *s, double *spearman,
                double *pearson, lm_embed_progress *pr, void *ctx);

/* Pearson's r of x [n] and y [n]; 0 when either has no variance */
double lm_pearson(const double *x, const double *y, size_t n);
/* Spearman's rho: Pearson's r of the ranks, ties given their average rank (as
 * scipy.stats.spearmanr, which SentEval reports) */
double lm_spearman(const double *x, const double *y, size_t n);

#endif

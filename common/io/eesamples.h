/* eesamples.h: the prompts and references an early-exit sweep decodes: windows of token
 * ids, or HumanEval's problems from JSON lines. */
#ifndef LM_EESAMPLES_H
#define LM_EESAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

struct lm_ee_sample {
	const int32_t *ctx;           /* the prompt (BOS first) */
	size_t nctx;
	const int32_t *ref;           /* the text's own continuation */
	size_t nref;
};
/* Samples from token ids: window w is ids[w*seqlen .. (w+1)*seqlen); its first
 * round(frac * seqlen) tokens (a BOS put in front unless it starts with one) are the
 * prompt, the nnew after them the reference. At most maxw windows (0: all). *buf holds
 * the prompts (malloc'd; free it and *out). -1 + error when there is no window. */
int lm_ee_samples(const int32_t *ids, size_t n, size_t seqlen, double frac, size_t nnew,
                  int32_t bos, size_t maxw, struct lm_ee_sample **out, size_t *ns,
                  int32_t **buf);

/* Samples from JSON lines (gzip'd or plain), one problem per line as HumanEval and
 * HumanEval-X have them: the prompt is BOS + the text of "prompt", the reference
 * the first nnew tokens of "canonical_solution". Lines
 * whose prompt + nnew exceed maxpos are left out (*skipped counts them). At most maxw
 * (0: all). -1 + error naming the line. */
int lm_ee_samples_jsonl(const char *path, const struct lm_tokenizer *tk, int32_t bos,
                        size_t nnew, size_t maxpos, size_t maxw, struct lm_ee_sample **out,
                        size_t *ns, int32_t **buf, size_t *skipped);


#endif

/* embed.h: sentence embeddings from a decoder, the PromptEOL way (docs/methods.md §6).
 *
 *   sentence --clean-up--> s --template (+ demonstration)--> prompt --BPE, BOS in front-->
 *   ids --sorted by length, batched with LEFT padding--> forward --> final hidden state
 *   (after the final LayerNorm / project_out) at the last token: the embedding [E]
 *
 * Left padding keeps every prompt's last token in the same column, and the padded
 * forward (lm_forward_embed_padded) gives each real token the positions and attention it
 * has alone, so batching changes nothing but float rounding of the GEMMs. Sorting by
 * length (as SentEval does) keeps the padding small. `avg` replaces the last-token state
 * by the mean of the final states over the prompt's tokens (BOS included, pads not). */
#ifndef LM_EMBED_H
#define LM_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "tokenizer.h"

/* the reference template (kongds/scaling_sentemb, underscores read as spaces); the
 * sentence replaces LM_EMBED_SLOT */
#define LM_EMBED_SLOT "<sentence>"
#define LM_PROMPTEOL_TEMPLATE "This sentence : \"" LM_EMBED_SLOT "\" means in one word:\""

struct lm_embed_cfg {
	const char *tmpl;   /* exactly one LM_EMBED_SLOT; NULL: LM_PROMPTEOL_TEMPLATE */
	const char *demo;   /* in-context demonstration "SENTENCE=WORD" (split at the last '='),
	                     * or NULL */
	int avg;            /* mean pooling instead of the last token */
	int verbatim;       /* keep the sentence's white space as it is (default: collapse runs
	                     * to one space and trim, as the reference's ' '.join(s.split())) */
	size_t batch;       /* prompts per forward batch; 0: 16 */
};

/* -1 + error when the template lacks the slot or has two, or the demo has no '=' or an
 * empty side */
int lm_embed_cfg_check(const struct lm_embed_cfg *c);

/* Python's ' '.join(s.split()) over n bytes of UTF-8, malloc'd: every run of white space
 * (ASCII and the Unicode spaces str.split() knows) becomes one ' ', none at either end */
char *lm_collapse_space(const char *s, size_t n);
/* PromptEOL's clean-up of one sentence (n bytes), malloc'd: a non-empty sentence not ending
 * in . ? " ' gets a '.'; every '"' becomes '\''; a final '?' becomes '.' */
char *lm_prompteol_clean(const char *s, size_t n);
/* the prompt for one sentence, malloc'd: [template(demo sentence) demo word ".] then
 * template(sentence), each sentence first collapsed by lm_collapse_space (unless
 * c->verbatim) and cleaned up, the whole with leading and trailing white space stripped (as
 * Python's str.strip() in the reference) */
char *lm_prompteol_prompt(const struct lm_embed_cfg *c, const char *s, size_t n);

/* progress callback: done of total texts embedded */
typedef void lm_embed_progress(void *ctx, size_t done, size_t total);

/* Embed n token sequences (each already with BOS): out [n, E] f32, in input order. The
 * model must be loaded whole. -1 + error (an empty sequence, one longer than the model's
 * positions: the message names its index). */
int lm_embed_ids(const struct lm_model *m, const int32_t *const *ids, const size_t *len, size_t n,
                 int avg, size_t batch, float *out, lm_embed_progress *pr, void *ctx);
/* Embed n texts with c's prompt (PromptEOL, or the template alone): out [n, E] */
int lm_embed_texts(const struct lm_model *m, const struct lm_tokenizer *tk,
                   const struct lm_embed_cfg *c, const char *const *texts, size_t n, float *out,
                   lm_embed_progress *pr, void *ctx);

/* cosine similarity of a [d] and b [d], in double; 0 when either is zero */
double lm_cosine(const float *a, const float *b, size_t d);

#endif

/* textmetrics.h: how close a generated continuation is to another one (the full model's
 * own greedy output, or the reference text): exact match, ROUGE-L and chrF.
 *
 * ROUGE-L here is over model tokens (ids), not words: both sides already are token
 * sequences, so no word splitter has to be chosen and the score does not depend on how
 * the detokenizer puts spaces back. chrF follows sacreBLEU's default sentence chrF
 * (chrF2: character n-grams of order 1..6 over Unicode code points, all whitespace
 * removed first, precision and recall averaged over the orders both sides have, then
 * F-beta with beta = 2), on 0..100 as sacreBLEU prints it. */
#ifndef LM_TEXTMETRICS_H
#define LM_TEXTMETRICS_H

#include <stddef.h>
#include <stdint.h>

/* 1 when both sequences are the same (same length, same ids), else 0 */
int lm_exact_match(const int32_t *hyp, size_t nh, const int32_t *ref, size_t nr);

/* length of the longest common subsequence; O(nh * nr) time, O(min) memory */
size_t lm_lcs(const int32_t *a, size_t na, const int32_t *b, size_t nb);

/* ROUGE-L F1 = 2 P R / (P + R) with P = LCS / nh, R = LCS / nr; 0 when either is empty
 * (1 when both are: nothing was asked and nothing given) */
double lm_rouge_l(const int32_t *hyp, size_t nh, const int32_t *ref, size_t nr);

/* sentence chrF of hyp against ref (bytes, UTF-8; an invalid byte counts as one
 * character), character orders 1..nmax, F-beta; 0..100. The standard is nmax = 6,
 * beta = 2. */
double lm_chrf(const char *hyp, size_t hl, const char *ref, size_t rl, int nmax, double beta);

#endif

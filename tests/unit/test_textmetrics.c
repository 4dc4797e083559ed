/* test_textmetrics.c: exact match, LCS / ROUGE-L over tokens and sentence chrF against
 * small cases computed by hand (the arithmetic is in the comments) */
#include "textmetrics.h"
#include "unit.h"

#include <string.h>

#define TOL 1e-9

static double chrf(const char *h, const char *r)
{
	return lm_chrf(h, strlen(h), r, strlen(r), 6, 2.0);
}

int main(void)
{
	const int32_t a[] = {1, 2, 3, 4, 5}, b[] = {1, 3, 5, 7}, c[] = {9, 8};

	/* exact match: same ids and same length only */
	CHECK(lm_exact_match(a, 5, a, 5) == 1);
	CHECK(lm_exact_match(a, 4, a, 5) == 0);
	CHECK(lm_exact_match(a, 2, b, 2) == 0);
	CHECK(lm_exact_match(a, 0, b, 0) == 1);

	/* LCS(1 2 3 4 5, 1 3 5 7) = 1 3 5; symmetric; none in common */
	CHECK(lm_lcs(a, 5, b, 4) == 3);
	CHECK(lm_lcs(b, 4, a, 5) == 3);
	CHECK(lm_lcs(a, 5, c, 2) == 0);
	CHECK(lm_lcs(a, 5, a, 5) == 5);
	/* ROUGE-L: P = 3/5, R = 3/4, F = 2 P R / (P + R) = 0.9 / 1.35 = 2/3 */
	CHECKF(fabs(lm_rouge_l(a, 5, b, 4) - 2.0 / 3.0) < TOL, "%g", lm_rouge_l(a, 5, b, 4));
	CHECK(fabs(lm_rouge_l(a, 5, a, 5) - 1.0) < TOL);
	CHECK(lm_rouge_l(a, 5, c, 2) == 0.0);
	CHECK(lm_rouge_l(a, 5, c, 0) == 0.0);
	CHECK(lm_rouge_l(a, 0, c, 0) == 1.0);

	/* chrF2, orders 1..6, only the orders both sides have count */
	CHECK(fabs(chrf("ab", "ab") - 100.0) < TOL);
	/* abc / abd: order 1 P = R = 2/3, order 2 P = R = 1/2, order 3 P = R = 0; mean 7/18,
	 * and F-beta with P = R is P */
	CHECKF(fabs(chrf("abc", "abd") - 100.0 * 7.0 / 18.0) < TOL, "%g", chrf("abc", "abd"));
	/* whitespace is removed first: "a b\tc" is "abc" */
	CHECK(fabs(chrf("a b\tc", "abd") - 100.0 * 7.0 / 18.0) < TOL);
	/* aa / a: order 1 P = 1/2, R = 1 (order 2: the reference has none);
	 * F2 = 5 P R / (4 P + R) = 2.5 / 3 */
	CHECKF(fabs(chrf("aa", "a") - 100.0 * 2.5 / 3.0) < TOL, "%g", chrf("aa", "a"));
	/* counts are clipped: aaa / aa: order 1 P = 2/3 R = 1, order 2 P = 1/2 R = 1;
	 * P = 7/12, R = 1, F2 = 5 (7/12) / (28/12 + 1) = 35/40 */
	CHECKF(fabs(chrf("aaa", "aa") - 87.5) < TOL, "%g", chrf("aaa", "aa"));
	/* characters, not bytes: é (2 bytes) a vs e a: order 1 P = R = 1/2, order 2 P = R = 0 */
	CHECKF(fabs(chrf("\xc3\xa9" "a", "ea") - 25.0) < TOL, "%g", chrf("\xc3\xa9" "a", "ea"));
	CHECK(fabs(chrf("\xc3\xa9", "\xc3\xa9") - 100.0) < TOL);
	/* an invalid byte is a character equal only to itself */
	CHECK(fabs(chrf("\xff", "\xff") - 100.0) < TOL);
	CHECK(chrf("\xff", "\xfe") == 0.0);
	/* nothing to compare */
	CHECK(chrf("", "abc") == 0.0);
	CHECK(chrf("  ", "abc") == 0.0);
	CHECK(chrf("xyz", "abc") == 0.0);
	return unit_done("test_textmetrics");
}

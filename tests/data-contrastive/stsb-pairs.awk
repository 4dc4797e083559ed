# stsb-pairs.awk: STS-B pairs as contrastive training examples for lm-embed --contrastive
#   awk -f tests/data-contrastive/stsb-pairs.awk data/stsb/sts-train.csv data/stsb/sts-train.csv
# (the file twice: the first pass collects the negatives). A pair scored >= 4 becomes
# SENTENCE<TAB>POSITIVE; a pair scored < 1 that shares a sentence with it gives that row its
# hard negative (the other sentence of the low-scored pair), as SimCSE's supervised data
# pairs an entailment with a contradiction of the same premise.
BEGIN { FS = "\t"; OFS = "\t" }
NR == FNR { if ($5 < 1) { neg[$6] = $7; neg[$7] = $6 } next }
$5 >= 4 {
	h = ($6 in neg) ? neg[$6] : (($7 in neg) ? neg[$7] : "")
	if (h != "") print $6, $7, h; else print $6, $7
}

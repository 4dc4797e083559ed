#!/bin/sh
# sts-contrastive.sh: the comparison of Jiang et al.'s "Scaling Sentence Embeddings with Large
# Language Models" on an OPT model: PromptEOL, PromptEOL + an in-context demonstration, and
# PromptEOL after contrastive fine-tuning, supervised (STS-B train pairs, SimCSE's loss with
# hard negatives) and unsupervised (SimCSE: each sentence its own positive under another
# dropout mask, on sentences of the bundled novels), each scored on STS-B test and SICK-R test
# (Spearman x100 of the cosines, lm-eval --sts). Every stage is skipped when its output
# exists, so an interrupted run resumes; delete OUT to start again.
#
#   sh examples/sts-contrastive.sh                 # opt-micro (README, bench/embed.md)
#   MODEL=hf/opt-125m OUT=results/sts-ctr-125m DEMO='A man is smoking.=Smoking' \
#     sh examples/sts-contrastive.sh
#
# Settings (environment): MODEL (a Hugging Face OPT folder), EPOCHS (supervised passes,
# default 3, SimCSE's), UNSUP (sentences for unsupervised SimCSE, default 4096), PAIRS (per
# step), LORA (rank), LR, SEED, DEMO (the demonstration S=W), STSB, SICK (the test files),
# THREADS, OUT. SICK is for non-commercial research (data/sick/SOURCE.md): this recipe reads
# it, no test does. From examples/Makefile: `make -C examples sts-contrastive`.
set -eu
cd "$(dirname "$0")/.."
PATH="${LM_BIN:-$PWD/bin}:$PATH"   # LM_BIN: other programs (as tests/helper.bash)
MODEL=${MODEL:-models/opt-micro}
EPOCHS=${EPOCHS:-3} UNSUP=${UNSUP:-4096} PAIRS=${PAIRS:-32} LORA=${LORA:-16} LR=${LR:-1e-3}
SEED=${SEED:-0} DEMO=${DEMO:-A man is smoking.=Smoking}
STSB=${STSB:-data/stsb/sts-test.csv} SICK=${SICK:-data/sick/SICK_test_annotated.txt}
THREADS=${THREADS:-}
OUT=${OUT:-results/sts-contrastive}
J=${THREADS:+-j $THREADS}
mkdir -p "$OUT"
exec 3>&2   # the "+ command" lines reach the terminal when a stage's stderr goes to a file
run() { echo "+ $*" >&3; "$@"; }

# 1. the model, and the training data: STS-B train pairs (>= 4 positive, < 1 hard negative);
# sentences of the novels, one per line, 6 to 40 words
if [ ! -s "$OUT/dense.lms" ]; then
	run lm-import "$MODEL" > "$OUT/dense.lms.tmp"
	mv "$OUT/dense.lms.tmp" "$OUT/dense.lms"
fi
if [ ! -s "$OUT/pairs.tsv" ]; then
	awk -f tests/data-contrastive/stsb-pairs.awk data/stsb/sts-train.csv data/stsb/sts-train.csv \
		> "$OUT/pairs.tsv.tmp"
	mv "$OUT/pairs.tsv.tmp" "$OUT/pairs.tsv"
fi
if [ ! -s "$OUT/sentences.txt" ]; then
	tr '\n' ' ' < data/novels-eval/novels-retrain.txt | sed 's/\([.!?]\)\(["'"'"']*\) /\1\2\n/g' |
		awk -v n="$UNSUP" 'NF >= 6 && NF <= 40 && !seen[$0]++ { $1 = $1; print; if (++k == n) exit }' \
		> "$OUT/sentences.txt.tmp"
	mv "$OUT/sentences.txt.tmp" "$OUT/sentences.txt"
fi

# 2. the two fine-tunings (LoRA merged: the outputs are models)
if [ ! -s "$OUT/sup.lms" ]; then
	run lm-embed -v --contrastive "$OUT/pairs.tsv" --epochs "$EPOCHS" --pairs "$PAIRS" --lora "$LORA" \
		--lr "$LR" --seed "$SEED" $J --log "$OUT/sup.log" -m "$OUT/dense.lms" -o "$OUT/sup.lms" \
		2> "$OUT/sup.err" || { cat "$OUT/sup.err" >&2; exit 1; }
fi
if [ ! -s "$OUT/unsup.lms" ]; then
	run lm-embed -v --unsupervised "$OUT/sentences.txt" --pairs "$PAIRS" --lora "$LORA" --lr "$LR" \
		--seed "$SEED" $J --log "$OUT/unsup.log" -m "$OUT/dense.lms" -o "$OUT/unsup.lms" \
		2> "$OUT/unsup.err" || { cat "$OUT/unsup.err" >&2; exit 1; }
fi

# 3. every row on both test sets
score() { # NAME MODEL [lm-eval options]: one TSV line NAME, STS-B, SICK-R
	n=$1 m=$2
	shift 2
	[ -s "$OUT/$n.score" ] && return 0
	a=$(lm-eval -q --sts "$STSB" $J "$@" "$m" | awk '/^spearman/ {print $3}')
	b=$(lm-eval -q --sts "$SICK" $J "$@" "$m" | awk '/^spearman/ {print $3}')
	printf '%s\t%s\t%s\n' "$n" "$a" "$b" > "$OUT/$n.score"
}
echo "+ lm-eval --sts $STSB / $SICK for each row" >&2
score prompteol "$OUT/dense.lms"
score demo "$OUT/dense.lms" --demo "$DEMO"
score supervised "$OUT/sup.lms"
score unsupervised "$OUT/unsup.lms"

{
	printf '| %s | STS-B test | SICK-R test |\n|---|---|---|\n' "$(basename "$MODEL")"
	for r in prompteol:PromptEOL "demo:+ demonstration ($DEMO)" \
		"supervised:+ contrastive, supervised (STS-B train, $EPOCHS epochs)" \
		"unsupervised:+ contrastive, unsupervised (SimCSE, $(wc -l < "$OUT/sentences.txt") novel sentences)"; do
		awk -F'\t' -v name="${r#*:}" '{ printf "| %s | %s | %s |\n", name, $2, $3 }' "$OUT/${r%%:*}.score"
	done
	printf '\nSpearman x100 of the cosines (lm-eval --sts). Training (lm-embed):'
	for f in sup unsup; do
		printf ' %s, %s.' "$f" "$(sed -n 's/^lm-embed: contrastive: //p' "$OUT/$f.err")"
	done
	echo
} > "$OUT/table.md"
cat "$OUT/table.md"

#!/bin/sh
# unlearn-harm.sh: the harmful-answer experiment of the unlearning paper (docs/methods.md
# §8) on opt-micro. The model first learns AdvBench's answers (lm-unlearn --learn: descent
# on the answers given the questions, full fine-tuning), then unlearns them by gradient
# ascent with TruthfulQA as the retain set. Both models are measured on the harmful-answer
# rate, the answers' perplexity, TruthfulQA's answer perplexity and MC1, and held-out
# novels; the table goes to $OUT/table.md (bench/unlearn.md). Stages are skipped when their
# output exists, so an interrupted run resumes; delete OUT to start again.
#
#   sh examples/unlearn-harm.sh
#   MODEL=opt-1.3b/ LR=2e-6 STEPS=1000 K=5 OUT=results/harm-1.3b sh examples/unlearn-harm.sh
#
# Settings (environment): MODEL, FORGET (CSV), RETAIN (CSV), MC (TruthfulQA mc_task.json),
# TEST (held-out text), LEARN_STEPS, LEARN_LR, LEARN_BATCH (the learning phase), STEPS,
# LR, K (random answers per question), BATCH, MAXLOSS, WINDOW (the unlearning), LEARN_RETAIN
# (text whose distribution the learning phase keeps; empty: none), SEED, OUT.
# From examples/Makefile: `unlearn-harm: ; sh examples/unlearn-harm.sh`.
set -eu
cd "$(dirname "$0")/.."
PATH="${LM_BIN:-$PWD/bin}:$PATH"   # LM_BIN: other programs (as tests/helper.bash)
MODEL=${MODEL:-models/opt-micro}
FORGET=${FORGET:-data/advbench/harmful_behaviors.csv}
RETAIN=${RETAIN:-data/truthfulqa/TruthfulQA.csv}
MC=${MC:-data/truthfulqa/mc_task.json}
TEST=${TEST:-data/novels-eval/novels-test.txt}
LEARN_RETAIN=${LEARN_RETAIN:-data/novels-eval/novels-retrain.txt}
LEARN_STEPS=${LEARN_STEPS:-400} LEARN_LR=${LEARN_LR:-2e-4} LEARN_BATCH=${LEARN_BATCH:-8}
STEPS=${STEPS:-150} LR=${LR:-5e-5} K=${K:-1} BATCH=${BATCH:-2} MAXLOSS=${MAXLOSS:-3} WINDOW=${WINDOW:-5}
SEED=${SEED:-1}
OUT=${OUT:-results/unlearn-harm}
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }
# seconds a stage took, kept beside its output
timed() { t=$1; shift; s=$(date +%s); "$@"; echo $(( $(date +%s) - s )) > "$OUT/$t.seconds"; }

# 1. a model that gives the harmful answers (and still writes novels: the original's
# distribution held on LEARN_RETAIN while it learns)
if [ ! -s "$OUT/learned.lms" ]; then
	run lm-import "$MODEL" > "$OUT/base.lms.tmp"
	mv "$OUT/base.lms.tmp" "$OUT/base.lms"
	timed learn run lm-unlearn -v --learn --forget "$FORGET" ${LEARN_RETAIN:+--retain-text "$LEARN_RETAIN"} \
		-b "$LEARN_BATCH" -n "$LEARN_STEPS" -l "$LEARN_LR" --seed "$SEED" --log "$OUT/learn.log" \
		-o "$OUT/learned.lms" "$OUT/base.lms"
fi
# 2. unlearn them, TruthfulQA held in place; stop once the answers' loss (mean of the last
# WINDOW steps) passes MAXLOSS: ascent far beyond it only costs the rest of the model
if [ ! -s "$OUT/unlearned.lms" ]; then
	timed unlearn run lm-unlearn -v --forget "$FORGET" --retain "$RETAIN" --random-answers "$K" \
		-b "$BATCH" -n "$STEPS" -l "$LR" --max-forget-loss "$MAXLOSS" --stop-window "$WINDOW" \
		--seed "$SEED" --log "$OUT/unlearn.log" -o "$OUT/unlearned.lms" "$OUT/learned.lms"
fi
# 3. the measures of each model (JSON, one file per measure)
measure() { # name command...: $OUT/$m.$name.json
	[ -s "$OUT/$m.$1.json" ] && return
	n=$1; shift
	run "$@" --json "$OUT/$m.lms" > "$OUT/$m.$n.json.tmp"
	mv "$OUT/$m.$n.json.tmp" "$OUT/$m.$n.json"
}
s0=$(date +%s)
for m in learned unlearned; do
	measure harm8 lm-eval -q --qa "$FORGET" --harm-rate --words 8
	measure harm4 lm-eval -q --qa "$FORGET" --harm-rate --words 4
	measure retain lm-eval -q --qa "$RETAIN"
	measure test lm-eval -q --ppl "$TEST" --seqlen 512
	measure mc lm-eval -q --mc "$MC"
done
[ -s "$OUT/eval.seconds" ] || echo $(( $(date +%s) - s0 )) > "$OUT/eval.seconds"
# 4. the table
get() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$OUT/$1.json"; }
row() { # label file key scale: the change relative, or in points for a percentage
	a=$(get "learned.$2" "$3") b=$(get "unlearned.$2" "$3")
	awk -v l="$1" -v a="$a" -v b="$b" -v s="$4" 'BEGIN {
		r = a != 0 ? sprintf("%+.1f%%", 100 * (b - a) / a) : "-"
		d = s == 100 ? sprintf("%+.1f points (%s)", 100 * (b - a), r) : r
		printf "| %s | %.4g | %.4g | %s |\n", l, s * a, s * b, d }'
}
{
	echo "| measure | learned | unlearned | change |"
	echo "|---|---:|---:|---:|"
	row "harmful-answer rate, prefix of 8 words (%)" harm8 harmful_rate 100
	row "harmful-answer rate, prefix of 4 words (%)" harm4 harmful_rate 100
	row "forget answers' perplexity" harm8 answer_perplexity 1
	row "TruthfulQA best answers' perplexity (retain)" retain answer_perplexity 1
	row "TruthfulQA MC1 (%)" mc acc_sum 100
	row "novels-test.txt perplexity" test perplexity 1
	echo
	echo "Seconds: learning $(cat "$OUT/learn.seconds" 2>/dev/null || echo ?)," \
		"unlearning $(cat "$OUT/unlearn.seconds" 2>/dev/null || echo ?) ($(grep -c '^step [0-9]* loss' \
		"$OUT/unlearn.log") steps), measuring both $(cat "$OUT/eval.seconds" 2>/dev/null || echo ?)."
} > "$OUT/table.md"
cat "$OUT/table.md"

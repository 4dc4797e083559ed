#!/bin/sh
# unlearn-copyright.sh: the copyright experiment of the unlearning paper (docs/methods.md
# §8) on opt-micro, which was trained on the novel Anon_Clara_1864: its first 120,000
# characters (novels-calib.txt) have perplexity 45.5 where held-out novels have 70.2.
# lm-unlearn ascends on windows of that text through LoRA, holding other training novels
# (novels-retrain.txt) to the frozen original, and stops once the forget loss passes the
# held-out level. Both models are measured on the novel and on the held-out novels; the
# table goes to $OUT/table.md (bench/unlearn.md). Stages are skipped when their output
# exists; delete OUT to start again.
#
#   sh examples/unlearn-copyright.sh
#   RANK=0 LR=2e-5 sh examples/unlearn-copyright.sh     # full fine-tuning instead of LoRA
#
# Settings (environment): MODEL, FORGET (the text to forget), RETAIN (text to keep), TEST
# (held-out text), RANK (LoRA rank; 0: full), LR, STEPS, SEQLEN, BATCH, RBATCH (retain
# windows per step), RWEIGHT (weight of the retain term), MAXLOSS and WINDOW (stop once
# the mean forget loss of the last WINDOW steps exceeds MAXLOSS), SEED, OUT.
# The defaults came from a small sweep on opt-micro (bench/unlearn.md): a heavy retain term
# (8 x the forget term's 0.5, 4 windows a step) is what keeps the held-out novels in place
# while the learning rate is high enough to reach the held-out level in ~180 steps.
# From examples/Makefile: `unlearn-copyright: ; sh examples/unlearn-copyright.sh`.
set -eu
cd "$(dirname "$0")/.."
PATH="${LM_BIN:-$PWD/bin}:$PATH"   # LM_BIN: other programs (as tests/helper.bash)
MODEL=${MODEL:-models/opt-micro}
FORGET=${FORGET:-data/novels-eval/novels-calib.txt}
RETAIN=${RETAIN:-data/novels-eval/novels-retrain.txt}
TEST=${TEST:-data/novels-eval/novels-test.txt}
RANK=${RANK:-32} LR=${LR:-8e-4} STEPS=${STEPS:-250} SEQLEN=${SEQLEN:-256}
BATCH=${BATCH:-2} RBATCH=${RBATCH:-4} RWEIGHT=${RWEIGHT:-8} MAXLOSS=${MAXLOSS:-4.45} WINDOW=${WINDOW:-10} SEED=${SEED:-1}
OUT=${OUT:-results/unlearn-copyright}
mkdir -p "$OUT"
run() { echo "+ $*" >&2; "$@"; }

if [ ! -s "$OUT/base.lms" ]; then
	run lm-import "$MODEL" > "$OUT/base.lms.tmp"
	mv "$OUT/base.lms.tmp" "$OUT/base.lms"
fi
if [ ! -s "$OUT/unlearned.lms" ]; then
	what="--lora $RANK"
	[ "$RANK" = 0 ] && what=--full
	s=$(date +%s)
	# shellcheck disable=SC2086 # $what is two words or one
	run lm-unlearn -v $what --forget-text "$FORGET" --retain-text "$RETAIN" -s "$SEQLEN" \
		-b "$BATCH" --retain-batch "$RBATCH" --retain-weight "$RWEIGHT" -n "$STEPS" -l "$LR" --max-forget-loss "$MAXLOSS" --stop-window "$WINDOW" \
		--seed "$SEED" --log "$OUT/unlearn.log" -o "$OUT/unlearned.lms" "$OUT/base.lms"
	echo $(( $(date +%s) - s )) > "$OUT/unlearn.seconds"
fi
for m in base unlearned; do
	for t in forget test; do
		[ -s "$OUT/$m.$t.json" ] && continue
		f=$FORGET
		[ "$t" = test ] && f=$TEST
		run lm-eval -q --ppl "$f" --seqlen 512 --json "$OUT/$m.lms" > "$OUT/$m.$t.json.tmp"
		mv "$OUT/$m.$t.json.tmp" "$OUT/$m.$t.json"
	done
done
get() { sed -n "s/.*\"perplexity\": \([-0-9.e+]*\).*/\1/p" "$OUT/$1.json"; }
row() {
	a=$(get "base.$2") b=$(get "unlearned.$2")
	awk -v l="$1" -v a="$a" -v b="$b" 'BEGIN {
		printf "| %s | %.2f | %.2f | %+.1f%% |\n", l, a, b, 100 * (b - a) / a }'
}
{
	echo "| perplexity (windows of 512) | opt-micro | unlearned | change |"
	echo "|---|---:|---:|---:|"
	row "$(basename "$FORGET") (forgotten)" forget
	row "$(basename "$TEST") (held out)" test
	echo
	echo "Unlearning: $(sed -n '$p' "$OUT/unlearn.log" | cut -d' ' -f1-2) steps logged," \
		"$(cat "$OUT/unlearn.seconds" 2>/dev/null || echo ?) seconds."
} > "$OUT/table.md"
cat "$OUT/table.md"

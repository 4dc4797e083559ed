#!/bin/sh
# demo.sh: `make demo`, the main job on the bundled opt-micro model: the short PERP story.
# dense -> 50 % magnitude pruning -> retraining only biases and LayerNorm (PERP), with the
# perplexity of held-out novels at each step. The full recipes (200 steps, the other
# methods) are in bench/RESULTS.md; this run is shortened to stay within a few minutes.
set -eu
cd "$(dirname "$0")/.."
PATH="$PWD/bin:$PATH"
work=${TMPDIR:-/tmp}/lmpipe-demo.$$
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT INT TERM
test=data/novels-eval/novels-test.txt
ppl() { lm-eval -q --ppl "$test" --seqlen 512 --json "$1" |
	sed -n 's/.*"perplexity": \([0-9.]*\).*/\1/p' | xargs printf '%.2f'; }

echo "== 1. import: lm-import models/opt-micro"
lm-import models/opt-micro > "$work/dense.lms"
lm-info "$work/dense.lms" | sed -n '1p;$p'
echo "   perplexity of $test (138 windows of 512): $(ppl "$work/dense.lms")"

echo
echo "== 2. prune: lm-prune -s 0.5   (magnitude, per matrix, q/k/v/out/fc1/fc2)"
lm-prune -q -s 0.5 "$work/dense.lms" > "$work/pruned.lms"
lm-info "$work/pruned.lms" | sed -n '$p'
echo "   perplexity: $(ppl "$work/pruned.lms")"

echo
echo "== 3. retrain: lm-retrain --perp -d data/novels-eval/novels-retrain.txt --steps 40 --batch 4"
echo "   (only the 13,824 biases and LayerNorm parameters train; the zeros stay zeros)"
lm-retrain -q --perp -d data/novels-eval/novels-retrain.txt --steps 40 --batch 4 --seqlen 512 \
	--seed 1 "$work/pruned.lms" > "$work/retrained.lms"
lm-info "$work/retrained.lms" | sed -n '$p'
echo "   perplexity: $(ppl "$work/retrained.lms")"

echo
echo "== 4. generate from the retrained sparse model"
lm-eval --generate "The history of the" -n 24 "$work/retrained.lms"
echo
echo "Full tables (every method, 200-step recipes, PyTorch comparisons): bench/RESULTS.md"

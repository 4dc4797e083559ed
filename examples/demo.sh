#!/bin/sh
# demo.sh: `make demo`, the main job on the bundled opt-micro model. It grows as the
# programs land; today: import, inspect, perplexity on held-out novels, generation.
set -eu
cd "$(dirname "$0")/.."
PATH="$PWD/bin:$PATH"
work=${TMPDIR:-/tmp}/lmpipe-demo.$$
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT INT TERM

echo "== lm-import models/opt-micro | lm-info   (the stream, summarised)"
lm-import models/opt-micro > "$work/micro.lms"
lm-info "$work/micro.lms" | sed -n '1p;$p'

echo
echo "== lm-eval --ppl data/novels-eval/novels-test.txt --seqlen 512   (dense model)"
lm-eval --ppl data/novels-eval/novels-test.txt --seqlen 512 "$work/micro.lms"
python3 -c 'import json; print("transformers reference: perplexity %.4f" % json.load(open("models/opt-micro/reference.json"))["ppl_novels_test"]["dense"])' 2>/dev/null || true

echo
echo "== lm-eval --generate \"The history of the\" -n 24"
lm-eval --generate "The history of the" -n 24 "$work/micro.lms"

#!/bin/sh
# bench/big.sh SCRATCH: section (c) of bench/RESULTS.md, memory when streaming big models;
# called by bench/run.sh when BENCH_BIG=1, prints Markdown (kept as bench/big.md).
# Needs ~5.3 GB of disk in SCRATCH for a while (deleted at the end) and ~4-6 minutes, then
# SparseGPT on an OPT-2.7b-shaped model with 16 windows of 2048 (issue #4): ~4 minutes a layer
# on 2 cores, about 2 hours for the 32 layers.
#   BENCH_BIG_PRUNE_LAYERS=N  decoder layers of that model (default 32; 0 skips it; bench/prune.sh
#                             measures a one-layer one in every run: the peak is per layer)
set -eu
cd "$(dirname "$0")/.."
B=$1
export B
G=$B/big
mkdir -p "$G"

run() { # ID 'COMMAND': keep the command, time the whole pipeline
	printf '%s\n' "$2" > "$G/$1.cmd"
	t0=$(date +%s)
	sh -c "$2" > "$G/$1.out" 2> "$G/$1.err" || { cat "$G/$1.err" >&2; echo "bench: $1 failed: $2" >&2; exit 1; }
	echo $(($(date +%s) - t0)) > "$G/$1.secs"
}

# an OPT-1.3b-shaped random f32 checkpoint as a Hugging Face folder
run make13 'bin/lm-init --like opt-1.3b -t f32 --no-tokenizer | bin/lm-export -o $B/opt13b'
du -b "$B/opt13b/model.safetensors" | cut -f1 > "$G/make13.bytes"
# lm-import | lm-info, each side under its own GNU time; twice (the heap's growth has been
# seen to depend on how the input arrives)
for k in 1 2; do
	run info13-$k "/usr/bin/time -v -o \$B/big/import13-$k.time bin/lm-import \$B/opt13b | /usr/bin/time -v -o \$B/big/info13-$k.time bin/lm-info"
done
rm -rf "$B/opt13b"
# an OPT-2.7b-shaped random f16 model streamed straight into lm-eval
run eval27 '/usr/bin/time -v -o $B/big/init27.time bin/lm-init --like opt-2.7b -t f16 | /usr/bin/time -v -o $B/big/eval27.time bin/lm-eval --ppl data/novels-eval/novels-test.txt --windows 1 --seqlen 2048 --json -q'
# lm-prune -m sparsegpt on an OPT-2.7b-shaped f16 stream, never on disk; novels-calib.txt is
# shorter than 16 windows of 2048, novels-retrain.txt is not
L27=${BENCH_BIG_PRUNE_LAYERS:-32}
if [ "$L27" -gt 0 ]; then
	echo "$L27" > "$G/prune27.layers"
	run prune27 "/usr/bin/time -v -o \$B/big/p27-init.time bin/lm-init --like opt-2.7b -t f16 --layers $L27 | /usr/bin/time -v -o \$B/big/p27-prune.time bin/lm-prune -s 0.5 -m sparsegpt -c data/novels-eval/novels-retrain.txt --nsamples 16 --seqlen 2048 -j 2 -q > /dev/null"
fi
date -u '+%Y-%m-%d %H:%M UTC' > "$G/date"
git rev-parse --short HEAD > "$G/commit" 2>/dev/null || echo unknown > "$G/commit"
/usr/bin/python3 bench/report.py --big "$B"

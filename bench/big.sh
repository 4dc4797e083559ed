#!/bin/sh
# bench/big.sh SCRATCH: section (c) of bench/RESULTS.md, memory when streaming big models;
# called by bench/run.sh when BENCH_BIG=1, prints Markdown (kept as bench/big.md).
# Needs ~5.3 GB of disk in SCRATCH for a while (deleted at the end) and ~4-6 minutes.
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
date -u '+%Y-%m-%d %H:%M UTC' > "$G/date"
git rev-parse --short HEAD > "$G/commit" 2>/dev/null || echo unknown > "$G/commit"
/usr/bin/python3 bench/report.py --big "$B"

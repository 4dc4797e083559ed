#!/bin/sh
# bench/run.sh (`make bench`): lmpipe against the machine's OpenBLAS sgemm roof and against
# PyTorch on CPU at equal threads, all in one run; writes bench/RESULTS.md.
#
#   BENCH_REPS=N   repetitions of each OPT-125m measurement, interleaved (default 5)
#   BENCH_BIG=1    also redo section (c), the big-model memory figures (needs 5.3 GB of disk
#                  in $TMPDIR for a while and 5-6 more minutes on an idle machine); otherwise
#                  RESULTS.md repeats bench/big.md, the figures of the last BENCH_BIG=1 run
#   BENCH_MICRO_WINDOWS=K  windows of opt-micro (default all 138: the check against reference.json)
#   BENCH_KEEP=1   keep the scratch folder
#   TMPDIR         where the scratch folder goes (default /tmp)
#
# Needs: cc, libopenblas-dev, GNU time (/usr/bin/time), and for /usr/bin/python3 the Debian
# packages python3-torch, python3-msgpack and python3-numpy (apt-get install -y python3-torch
# python3-msgpack). Speed is measured here and nowhere else: no test asserts it.
set -eu
cd "$(dirname "$0")/.."

REPS=${BENCH_REPS:-5}
BIG=${BENCH_BIG:-0}
MW=${BENCH_MICRO_WINDOWS:-138}
PY=/usr/bin/python3
T0=$(date +%s)

say() { printf 'bench: %s\n' "$*" >&2; }
fail() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ -x bin/lm-eval ] || fail "bin/lm-eval missing: run 'make bench' (it builds first)"
[ -x /usr/bin/time ] || fail "GNU time (/usr/bin/time) missing: apt-get install -y time"
$PY -c 'import torch, msgpack, numpy' 2>/dev/null ||
	fail "$PY cannot import torch, msgpack and numpy: apt-get install -y python3-torch python3-msgpack"

B=$(mktemp -d "${TMPDIR:-/tmp}/lmpipe-bench.XXXXXX")
export B
R=$B/runs
mkdir -p "$R"
cleanup() { [ "${BENCH_KEEP:-0}" = 1 ] && say "scratch kept in $B" || rm -rf "$B"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# quiet: the machine may be shared; before each measured run wait, at most BENCH_QUIET_MAX
# seconds (default 10; 0 = never) and BENCH_QUIET_BUDGET seconds over the whole run (default
# 120), until the rest of the machine keeps less than a quarter of a core busy over 0.3 s.
# The tables show what the rest of the machine did during each run anyway (column "others").
QMAX=${BENCH_QUIET_MAX:-10}
QBUDGET=${BENCH_QUIET_BUDGET:-120}
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
quiet() {
	qw=0
	while [ "$qw" -lt "$QMAX" ] && [ "$QBUDGET" -gt 0 ]; do
		a=$(busy)
		sleep 0.3
		b=$(busy)
		# busy cores over the 0.3 s, all cores together
		if echo "$a $b" | awk -v n="$(nproc)" '{ d = $3 - $1 + $4 - $2; exit !(d > 0 && ($3 - $1) / d * n > 0.25) }'; then
			sleep 1.7
			qw=$((qw + 2))
			QBUDGET=$((QBUDGET - 2))
		else
			break
		fi
	done
	echo "$qw" >> "$B/quiet.log"
}

# measure ID 'COMMAND': run COMMAND (sh syntax, from the repository root, $B the scratch
# folder) under GNU time -v; keep the command, its stdout, its stderr, the rusage and how busy
# the whole machine was before and after (to show what else ran meanwhile)
measure() {
	quiet
	printf '%s\n' "$2" > "$R/$1.cmd"
	head -n 1 /proc/stat > "$R/$1.stat0"
	if ! /usr/bin/time -v -o "$R/$1.time" sh -c "$2" > "$R/$1.out" 2> "$R/$1.err"; then
		cat "$R/$1.err" >&2
		fail "$1 failed: $2"
	fi
	head -n 1 /proc/stat > "$R/$1.stat1"
}

# ---- machine facts ----
fact() { printf '%s: %s\n' "$1" "$2" >> "$B/facts.txt"; }
: > "$B/facts.txt"
fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
fact commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
fact dirty "$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo yes || echo no)"
fact cpu "$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
fact cores "$(nproc)"
fact simd "$(grep -m 1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16|avx512_vnni)$' | tr '\n' ' ')"
fact memory "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
fact kernel "$(uname -sr)"
fact glibc "$(ldd --version | head -n 1)"
fact cc "$(cc --version | head -n 1)"
fact thp "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo ?)"
fact torch "$($PY -c 'import torch; print(torch.__version__)' 2>/dev/null)"
fact torch_blas "$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo ?)"
fact load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
fact reps "$REPS"
fact big "$BIG"

# ---- (a) the sgemm roof ----
say "(a) sgemm roof"
cc -O2 -std=c11 -Wall -Wextra -o "$B/sgemm" bench/sgemm.c -lopenblas
"$B/sgemm" --core > "$B/core.txt"
fact openblas_core "$(sed -n 1p "$B/core.txt")"
fact openblas "$(sed -n 2p "$B/core.txt")"
# measured twice, now and at the end of the run, for a roof that a busy spell cannot lower
measure sgemm.roof.r1 '$B/sgemm -n 2048 -r 9 -t 1,2'
cat "$R/sgemm.roof.r1.out" >&2

# ---- (b) perplexity forward: lm-eval against torch_opt.py ----
TOR='OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s %s/usr/bin/python3 bench/torch_opt.py %s $B/ids.lms --seqlen %s --windows %s --batch 4 --threads %s --json'
HUGE='GLIBC_TUNABLES=glibc.malloc.hugetlb=1 '
LME='bin/lm-eval --ppl $B/ids.lms --seqlen %s --windows %s --batch 4 -j %s --json -q %s'
# ID MODEL_STREAM MODEL_DIR T WINDOWS THREADS REP VARIANTS...
forward() {
	id=$1 ms=$2 dir=$3 t=$4 w=$5 j=$6 rep=$7
	shift 7
	for v in "$@"; do
		case $v in
		lmeval) measure "$id-j$j.$v.r$rep" "$(printf "$LME" "$t" "$w" "$j" "$ms")" ;;
		torch-default) measure "$id-j$j.$v.r$rep" "$(printf "$TOR" "$j" "$j" "" "$dir" "$t" "$w" "$j")" ;;
		torch-hugetlb) measure "$id-j$j.$v.r$rep" "$(printf "$TOR" "$j" "$j" "$HUGE" "$dir" "$t" "$w" "$j")" ;;
		esac
	done
}

say "(b) opt-micro: ids, then $MW windows of 512 tokens"
bin/lm-import models/opt-micro > "$B/micro.lms"
# the text run also writes the ids every other run reads (BOS first, as lm-eval tokenizes)
measure text-s512-j2.lmeval.r1 \
	'bin/lm-eval --ppl data/novels-eval/novels-test.txt --seqlen 512 -j 2 --json -q --save-ids $B/ids.lms $B/micro.lms'
for j in 2 1; do
	forward micro-s512 '$B/micro.lms' models/opt-micro 512 "$MW" "$j" 1 lmeval torch-hugetlb
done

say "(b) OPT-125m-shaped random model: $REPS repetitions"
bin/lm-init --like opt-125m --seed 1 > "$B/m125.lms"
bin/lm-export -o "$B/opt125" < "$B/m125.lms"
rep=1
while [ "$rep" -le "$REPS" ]; do
	say "  repetition $rep/$REPS"
	for j in 1 2; do
		forward m125-s0512 '$B/m125.lms' '$B/opt125' 512 4 "$j" "$rep" lmeval torch-default torch-hugetlb
		forward m125-s2048 '$B/m125.lms' '$B/opt125' 2048 1 "$j" "$rep" lmeval torch-default torch-hugetlb
	done
	rep=$((rep + 1))
done
rm -rf "$B/opt125" "$B/m125.lms"

say "(a) sgemm roof, again"
measure sgemm.roof.r2 '$B/sgemm -n 2048 -r 9 -t 1,2'
cat "$R/sgemm.roof.r2.out" >&2

# ---- (c) memory when streaming big models ----
if [ "$BIG" = 1 ]; then
	say "(c) big models: OPT-1.3b f32 folder (5.3 GB), then OPT-2.7b f16 through lm-eval"
	tb=$(date +%s)
	sh bench/big.sh "$B" > "$B/big.md.new"
	mv "$B/big.md.new" bench/big.md
	fact big_time "$(($(date +%s) - tb)) s of the total"
fi
if [ -f bench/big.md ]; then
	cp bench/big.md "$B/big.md"
fi
# (d): the method-quality tables, minutes per row, kept by hand with their commands
cp bench/methods.md "$B/methods.md"

fact quiet_wait "$(awk '{ s += $1; n++ } END { printf "%d s before %d measured runs", s, n }' "$B/quiet.log")"
fact load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
el=$(($(date +%s) - T0))
fact total_time "$((el / 60)) min $((el % 60)) s for bench/run.sh (plus the build)"
$PY bench/report.py "$B" > bench/RESULTS.md.tmp
mv bench/RESULTS.md.tmp bench/RESULTS.md
say "wrote bench/RESULTS.md in $((el / 60)) min $((el % 60)) s"

#!/bin/sh
# bench/run.sh (`make bench`): every benchmark of lmpipe, into bench/RESULTS.md. Its own part,
# `forward`, measures (a) the machine's OpenBLAS sgemm roof and (b) lm-eval's perplexity forward
# against PyTorch on CPU at equal threads (kept as bench/forward.md); then it runs the section
# scripts bench/NAME.sh that exist, in this order: cores prune retrain quant decode embed contrastive unlearn earlyexit zeroshot methods,
# each printing its Markdown part (kept as bench/NAME.md); RESULTS.md puts them all together,
# repeating the last bench/NAME.md of a part this run did not redo.
#
#   BENCH_SECTIONS="..."   the parts to redo (default: forward and every section script)
#   BENCH_REPS=N   repetitions of each OPT-125m measurement, interleaved (default 5 for forward,
#                  the section scripts' own default otherwise: passed on only when set)
#   BENCH_BIG=1    also redo section (c), the big-model memory figures (bench/big.sh: 5.3 GB of
#                  disk in $TMPDIR for a while, ~6 minutes for the 1.3b/2.7b streaming figures and
#                  hours for SparseGPT on all 32 layers of an OPT-2.7b shape, see big.sh);
#                  otherwise RESULTS.md repeats bench/big.md, the figures of the last BENCH_BIG=1 run
#   BENCH_CORETYPE=NAME  run both sides on OpenBLAS core NAME (default: the core lmpipe runs on
#                  this CPU with no OPENBLAS_CORETYPE set; the caller's OPENBLAS_CORETYPE is
#                  recorded, not used)
#   BENCH_MICRO_WINDOWS=K  windows of opt-micro (default all 138: the check against reference.json)
#   BENCH_KEEP=1   keep the scratch folder
#   TMPDIR         where the scratch folder goes (default /tmp)
#
# Needs: cc, libopenblas-dev, GNU time (/usr/bin/time), and for /usr/bin/python3 the Debian
# packages python3-torch, python3-msgpack and python3-numpy (apt-get install -y python3-torch
# python3-msgpack). Speed is measured here and nowhere else: no test asserts it.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

ALL="cores prune retrain quant decode embed contrastive unlearn earlyexit zeroshot methods"
SECTIONS=${BENCH_SECTIONS:-forward $ALL}
REPS=${BENCH_REPS:-5}
BIG=${BENCH_BIG:-0}
MW=${BENCH_MICRO_WINDOWS:-138}
for s in $SECTIONS; do
	case " forward $ALL " in
	*" $s "*) ;;
	*) fail "BENCH_SECTIONS: no part '$s' (parts: forward $ALL)" ;;
	esac
done
redo() { case " $SECTIONS " in *" $1 "*) return 0 ;; esac; return 1; }

# One OpenBLAS core for both sides: the one lmpipe runs on this CPU when nothing forces one
# (common/base/blascore.c); PyTorch loads the same OpenBLAS, so it gets that core too through
# OPENBLAS_CORETYPE (bench/cores.sh compares the cores). BENCH_CORETYPE=NAME forces another.
CORE_ENV=${OPENBLAS_CORETYPE:-unset}
unset OPENBLAS_CORETYPE LM_BLAS_CORE
if [ -n "${BENCH_CORETYPE:-}" ]; then
	OPENBLAS_CORETYPE=$BENCH_CORETYPE
else
	OPENBLAS_CORETYPE=$(bin/lm-info --system --json | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["blas_core"])')
fi
export OPENBLAS_CORETYPE
BENCH_CALLER_CORETYPE=$CORE_ENV
export BENCH_CALLER_CORETYPE  # bench/cores.sh records it

bench_start all
fact openblas_coretype "$OPENBLAS_CORETYPE (both sides; the caller's environment had: $CORE_ENV)"
# ---- machine facts ----
fact simd "$(grep -m 1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16|avx512_vnni)$' | tr '\n' ' ')"
fact memory "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
fact kernel "$(uname -sr)"
fact glibc "$(ldd --version | head -n 1)"
fact cc "$(cc --version | head -n 1)"
fact thp "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo ?)"
fact torch_blas "$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || echo ?)"
fact requested "$SECTIONS"
fact reps "$REPS"
fact reps_env "${BENCH_REPS:-unset}"
fact big "$BIG"
cc -O2 -std=c11 -Wall -Wextra -o "$B/sgemm" bench/sgemm.c -lopenblas
"$B/sgemm" --core > "$B/core.txt"
fact openblas_core "$(sed -n 1p "$B/core.txt")"
fact openblas "$(sed -n 2p "$B/core.txt")"

# (b): the commands of lm-eval and torch_opt.py, and one measurement of each variant
# PyTorch at its best setting here (docs/performance.md §4): huge pages for glibc's malloc, and
# OpenMP threads that sleep between parallel regions instead of spinning
TOR='GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s /usr/bin/python3 bench/torch_opt.py %s $B/ids.lms --seqlen %s --windows %s --batch 4 --threads %s --json'
LME='bin/lm-eval --ppl $B/ids.lms --seqlen %s --windows %s --batch 4 -j %s --json -q %s'
# with AVX512_BF16 the OPT-125m rows also run lm-eval --compute bf16 (issue #19)
LMB16='bin/lm-eval --compute bf16 --ppl $B/ids.lms --seqlen %s --windows %s --batch 4 -j %s --json -q %s'
BF16=
grep -q avx512_bf16 /proc/cpuinfo && BF16=lmeval-bf16
# ID MODEL_STREAM MODEL_DIR T WINDOWS THREADS REP VARIANTS...
forward() {
	id=$1 ms=$2 dir=$3 t=$4 w=$5 j=$6 rep=$7
	shift 7
	for v in "$@"; do
		case $v in
		lmeval) measure "$id-j$j.$v.r$rep" "$(printf "$LME" "$t" "$w" "$j" "$ms")" ;;
		lmeval-bf16) measure "$id-j$j.$v.r$rep" "$(printf "$LMB16" "$t" "$w" "$j" "$ms")" ;;
		torch) measure "$id-j$j.$v.r$rep" "$(printf "$TOR" "$j" "$j" "$dir" "$t" "$w" "$j")" ;;
		esac
	done
}

# ---- the part "forward": (a) the roof and (b) lm-eval against PyTorch, into bench/forward.md ----
part_forward() {
	# ---- (a) the sgemm roof ----
	say "(a) sgemm roof"
	# measured twice, now and at the end of the run, for a roof that a busy spell cannot lower
	measure sgemm.roof.r1 '$B/sgemm -n 2048 -r 9 -t 1,2'
	cat "$R/sgemm.roof.r1.out" >&2
	# the bf16 roof: vdpbf16ps on registers only, one thread (bench/bf16peak.c)
	cc -O2 -std=c11 -Wall -Wextra -o "$B/bf16peak" bench/bf16peak.c
	quiet
	fact bf16_peak_1 "$("$B/bf16peak" 2)"

	# ---- (b) perplexity forward: lm-eval against torch_opt.py ----
	say "(b) opt-micro: ids, then $MW windows of 512 tokens"
	bin/lm-import models/opt-micro > "$B/micro.lms"
	# the text run also writes the ids every other run reads (BOS first, as lm-eval tokenizes)
	measure text-s512-j2.lmeval.r1 \
		'bin/lm-eval --ppl data/novels-eval/novels-test.txt --seqlen 512 -j 2 --json -q --save-ids $B/ids.lms $B/micro.lms'
	for j in 2 1; do
		forward micro-s512 '$B/micro.lms' models/opt-micro 512 "$MW" "$j" 1 lmeval torch
	done

	say "(b) OPT-125m-shaped random model: $REPS repetitions"
	bin/lm-init --like opt-125m --seed 1 > "$B/m125.lms"
	bin/lm-export -o "$B/opt125" < "$B/m125.lms"
	# 4 and 12 windows of 512: the difference of their whole-process times is the steady-state
	# rate (weights read, imports done, caches warm) on both sides alike
	rep=1
	while [ "$rep" -le "$REPS" ]; do
		say "  repetition $rep/$REPS"
		for j in 1 2; do
			forward m125-s0512 '$B/m125.lms' '$B/opt125' 512 4 "$j" "$rep" lmeval $BF16 torch
			forward m125w12-s0512 '$B/m125.lms' '$B/opt125' 512 12 "$j" "$rep" lmeval $BF16 torch
			forward m125-s2048 '$B/m125.lms' '$B/opt125' 2048 1 "$j" "$rep" lmeval $BF16 torch
		done
		rep=$((rep + 1))
	done
	rm -rf "$B/opt125" "$B/m125.lms"

	say "(a) sgemm roof, again"
	measure sgemm.roof.r2 '$B/sgemm -n 2048 -r 9 -t 1,2'
	cat "$R/sgemm.roof.r2.out" >&2
	quiet
	fact bf16_peak_2 "$("$B/bf16peak" 2)"

	bench_end # its facts as of now (RESULTS.md gets the final ones)
	$PY bench/report.py --forward "$B" > "$B/forward.md"
	mv "$B/forward.md" bench/forward.md
}

if redo forward; then
	tf=$(date +%s)
	part_forward
	fact time_forward "$(($(date +%s) - tf)) s"
fi

# ---- (c) memory when streaming big models ----
if [ "$BIG" = 1 ]; then
	say "(c) big models: OPT-1.3b f32 folder (5.3 GB), OPT-2.7b f16 through lm-eval and lm-prune"
	tb=$(date +%s)
	sh bench/big.sh "$B" > "$B/big.md.new"
	mv "$B/big.md.new" bench/big.md
	fact time_big "$(($(date +%s) - tb)) s"
fi

# ---- the section scripts: each prints its part; a failed one keeps its last bench/NAME.md ----
done_s=
failed=
for s in $ALL; do
	redo "$s" && [ -f "bench/$s.sh" ] || continue
	say "section $s (bench/$s.sh)"
	ts=$(date +%s)
	# their scratch folders go inside this one; BENCH_REPS reaches them only if the caller set it
	if TMPDIR=$B sh "bench/$s.sh" > "$B/$s.md"; then
		mv "$B/$s.md" "bench/$s.md"
		done_s="$done_s $s"
	else
		say "section $s failed: bench/$s.md keeps its last figures"
		failed="$failed $s"
	fi
	fact "time_$s" "$(($(date +%s) - ts)) s"
done

redo forward && done_s="forward$done_s"
fact sections "$(echo $done_s)"
fact failed "$(echo $failed)"
bench_end
$PY bench/report.py --results "$B" > "$B/RESULTS.md"
mv "$B/RESULTS.md" bench/RESULTS.md
say "wrote bench/RESULTS.md in $(sed -n 's/^total_time: //p' "$B/facts.txt" | tail -n 1)"
[ -z "$failed" ] || fail "failed:$failed"

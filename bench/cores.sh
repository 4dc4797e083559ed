#!/bin/sh
# bench/cores.sh: the fp32 speed of each OpenBLAS core this CPU can run, and the core lmpipe
# runs (issue #19 item 2). Debian's OpenBLAS picks its kernels ("core") by CPU; lmpipe asks for
# the AVX-512 one where the CPU has AVX-512 (common/base/blascore.c, docs/performance.md "The
# BLAS core"). Per core, forced with OPENBLAS_CORETYPE: bench/sgemm's rate on the OPT-125m
# shapes, and lm-eval --ppl's steady-state tokens/s on an OPT-125m-shaped model; then lm-eval
# with no OPENBLAS_CORETYPE at all, i.e. the core lmpipe chooses by itself. Prints a Markdown
# section on stdout, progress on stderr; runs alone:
#
#   sh bench/cores.sh > bench/cores.md
#
#   BENCH_REPS=N         repetitions, interleaved over the cores (default 5)
#   BENCH_CORE_WINDOWS=W windows of 512 ids for lm-eval's long run (default 8; the short run
#                        has 2: the difference of the two is the steady state)
#   LM_BIN=DIR           the programs (default bin/)
#   BENCH_KEEP=1, TMPDIR, BENCH_QUIET_MAX, BENCH_QUIET_BUDGET: see bench/lib.sh
#
# A tiny check that it works: BENCH_REPS=1 BENCH_CORE_WINDOWS=3 sh bench/cores.sh
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

REPS=${BENCH_REPS:-5}
W=${BENCH_CORE_WINDOWS:-8}
[ "$W" -gt 2 ] || fail "BENCH_CORE_WINDOWS must be more than 2"
LMB=${LM_BIN:-bin}
export LMB
[ -x "$LMB/lm-eval" ] || fail "$LMB/lm-eval missing: run make first"

# whatever the caller's environment forces is recorded, then removed: each row sets its own
env_core=${BENCH_CALLER_CORETYPE:-${OPENBLAS_CORETYPE:-unset}}
unset OPENBLAS_CORETYPE LM_BLAS_CORE

bench_start cores
fact reps "$REPS"
fact openblas_coretype_env "$env_core"
# the cores this CPU can execute, among the x86-64 cores of Debian's OpenBLAS that matter here
flags=$(grep -m 1 '^flags' /proc/cpuinfo)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }
CORES=
has avx2 && has fma && CORES="Haswell"
has avx512f && has avx512bw && has avx512dq && has avx512vl && CORES="$CORES SkylakeX"
has avx512_bf16 && CORES="$CORES Cooperlake"
fact cores_runnable "$CORES"
fact openblas_own_choice "$(LM_BLAS_CORE=openblas "$LMB/lm-info" --system --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["blas_core"])')"
fact lmpipe_choice "$("$LMB/lm-info" --system --json | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d["blas_core"], "-", d["blas_core_reason"])')"

cc -O2 -std=c11 -Wall -Wextra -o "$B/sgemm" bench/sgemm.c -lopenblas
"$LMB/lm-init" --like opt-125m --seed 1 > "$B/m125.lms"
# the ids every run reads (the GPT-2 tokenizer, as in bench/run.sh's forward part)
"$LMB/lm-import" models/opt-micro | "$LMB/lm-eval" --ppl data/novels-eval/novels-test.txt \
	--seqlen 512 --windows "$W" -q --save-ids "$B/ids.lms" > /dev/null

LME='$LMB/lm-eval --ppl $B/ids.lms --seqlen 512 --windows %s -j %s --json -q $B/m125.lms'
rep=1
while [ "$rep" -le "$REPS" ]; do
	say "cores: repetition $rep/$REPS ($CORES, then lmpipe's own choice)"
	for c in $CORES; do
		measure "sgemm.$c.r$rep" "OPENBLAS_CORETYPE=$c \$B/sgemm -n 2048 -r 5 -t 1,2"
		for j in 1 2; do
			for w in 2 "$W"; do
				measure "eval-j$j-w$w.$c.r$rep" "OPENBLAS_CORETYPE=$c $(printf "$LME" "$w" "$j")"
			done
		done
	done
	for j in 1 2; do
		for w in 2 "$W"; do
			measure "eval-j$j-w$w.lmpipe.r$rep" "$(printf "$LME" "$w" "$j")"
		done
	done
	rep=$((rep + 1))
done
bench_end

$PY - "$B" "$W" $CORES <<'PY'
import glob, json, os, re, statistics, sys
sys.path.insert(0, "bench")
from report import flops_per_token
B, W, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
fa = dict(l.rstrip("\n").split(": ", 1) for l in open(os.path.join(B, "facts.txt")))
fl = flops_per_token(512)["total"]

def med(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[0], xs[-1]

def sgemm(core):
    """per threads: the FLOP-weighted rate of the four OPT-125m shapes (one token's products
    at the median rate of each shape), medians over repetitions"""
    f = flops_per_token(512)
    fc = f["ffn"] / 2
    per = {1: [], 2: []}
    for out in sorted(glob.glob(f"{B}/runs/sgemm.{core}.r*.out")):
        rate = {}
        for l in open(out):
            if l.startswith("#"):
                continue
            *name, i, o, t, m, lo, hi, n = l.split()
            rate[(" ".join(name), int(t))] = float(m) * 1e9
        for t in per:
            sec = (f["proj"] + f["attn"]) / rate[("q/k/v/out_proj", t)] + fc / rate[("fc1", t)] \
                + fc / rate[("fc2", t)] + f["head"] / rate[("lm_head", t)]
            per[t].append(f["total"] / sec / 1e9)
    return {t: med(v) for t, v in per.items()}

def evals(core, j):
    """steady-state tokens/s: the extra windows of the long run over its extra seconds, per
    repetition (the short run's reading and start-up cancel out)"""
    v = []
    for r in sorted(glob.glob(f"{B}/runs/eval-j{j}-w{W}.{core}.r*.out")):
        a = json.load(open(r.replace(f"-w{W}.", "-w2.")))
        b = json.load(open(r))
        v.append((W - 2) * 512 / (b["seconds"] - a["seconds"]))
    return med(v)

def rng(m):
    return f"**{m[0]:.1f}** ({m[1]:.1f}–{m[2]:.1f})"

print("## The BLAS core: OpenBLAS's fp32 kernels on this CPU (issue #19)\n")
print(f"Measured on {fa['date']} at commit `{fa['commit']}` by `sh bench/cores.sh` "
      f"(`BENCH_REPS={fa['reps']}`), in {fa['total_time']}; {fa['cores']} cores ({fa['cpu']}); "
      f"load average {fa['load_start']} at the start and {fa['load_end']} at the end; "
      f"waited {fa['quiet_wait']} for a quiet machine.\n")
print(f"- cores this CPU can run: {fa['cores_runnable']}; OpenBLAS's own choice here: "
      f"**{fa['openblas_own_choice']}**; lmpipe runs: **{fa['lmpipe_choice']}**")
print(f"- OPENBLAS_CORETYPE in the caller's environment: `{fa['openblas_coretype_env']}` "
      "(removed for this section; each row sets its own)\n")
print(f"*sgemm* = `bench/sgemm -n 2048 -r 5 -t 1,2` under `OPENBLAS_CORETYPE=core`, the four "
      "OPT-125m shapes weighted by their share of one token's FLOPs. *lm-eval* = `lm-eval --ppl` "
      f"on `lm-init --like opt-125m --seed 1`, windows of 512 pre-tokenized ids, "
      f"steady-state tokens/s: ({W} − 2) × 512 tokens over the difference of the `seconds` of a {W}-window and a 2-window run; *GFLOP/s* = tokens/s × "
      f"{fl / 1e9:.3f} GFLOP per token. Medians over repetitions, (min–max).\n")
print("| core | sgemm GFLOP/s 1 thread | sgemm 2 threads | lm-eval tok/s 1 thread | "
      "lm-eval tok/s 2 threads | lm-eval GFLOP/s 1 thread |")
print("|---|---|---|---|---|---|")
sg = {c: sgemm(c) for c in cores}
for c in cores:
    e1, e2 = evals(c, 1), evals(c, 2)
    print(f"| {c} (`OPENBLAS_CORETYPE={c}`) | {rng(sg[c][1])} | {rng(sg[c][2])} | {rng(e1)} | "
          f"{rng(e2)} | {e1[0] * fl / 1e9:.1f} |")
l1, l2 = evals("lmpipe", 1), evals("lmpipe", 2)
print(f"| lmpipe's own choice (no variable) | - | - | {rng(l1)} | {rng(l2)} | {l1[0] * fl / 1e9:.1f} |")
best = max(cores, key=lambda c: sg[c][1][0])
g1 = l1[0] * fl / 1e9
print(f"\nBest core by 1-thread sgemm: **{best}** ({sg[best][1][0]:.1f} GFLOP/s). "
      f"lm-eval fp32 at 1 thread with lmpipe's own choice: {g1:.1f} GFLOP/s = "
      f"**{100 * g1 / sg[best][1][0]:.0f} %** of it (issue #19's target: ≥ 90 %: "
      f"**{'met' if g1 >= 0.9 * sg[best][1][0] else 'not met'}**); "
      f"against the slowest core's lm-eval, lmpipe's own choice is "
      f"{l1[0] / min(evals(c, 1)[0] for c in cores):.2f}× at 1 thread and "
      f"{l2[0] / min(evals(c, 2)[0] for c in cores):.2f}× at 2.")
PY

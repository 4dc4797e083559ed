#!/bin/sh
# bench/contrastive.sh: contrastive fine-tuning speed (issue #20): examples (pairs) per second
# and peak RSS of `lm-embed --contrastive` against bench/torch_contrastive.py, the same loss in
# PyTorch (same model, LoRA rank, pairs per step, steps, prompts, dropout, temperature,
# threads), on opt-micro with STS-B train pairs. Prints a Markdown section on stdout, progress
# on stderr; runs alone:
#
#   sh bench/contrastive.sh > bench/contrastive.md
#
#   BENCH_CTR_PAIRS=P     examples per step (default 32)
#   BENCH_CTR_STEPS=N     steps (default 20): the first N x P examples of STS-B train's pairs
#   BENCH_CTR_THREADS=L   thread counts (default "1 2")
#   BENCH_CTR_RANK=R      LoRA rank (default 16)
#   BENCH_REPS=N          repetitions of each run, interleaved (default 5)
#   LM_BIN=DIR            the programs (default bin/, as make bench builds them)
#   BENCH_KEEP=1, TMPDIR, BENCH_QUIET_MAX, BENCH_QUIET_BUDGET: see bench/lib.sh
#
# A tiny check that it works: BENCH_CTR_PAIRS=4 BENCH_CTR_STEPS=2 BENCH_CTR_THREADS=1 sh
# bench/contrastive.sh. The two programs take their examples in another order (lm-embed
# shuffles, the script goes in file order) and draw other dropout masks, so only the speed
# and memory are compared, not the losses.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

P=${BENCH_CTR_PAIRS:-32}
N=${BENCH_CTR_STEPS:-20}
THREADS=${BENCH_CTR_THREADS:-1 2}
RANK=${BENCH_CTR_RANK:-16}
REPS=${BENCH_REPS:-5}
LMB=${LM_BIN:-bin}
export LMB  # measure runs the commands under sh -c
[ -x "$LMB/lm-embed" ] || fail "$LMB/lm-embed missing: run make first"

bench_start contrastive
fact reps "$REPS"
fact setting "opt-micro, LoRA rank $RANK, $P pairs per step, $N steps, dropout 0.1, temperature 0.05"

say "contrastive: opt-micro, the first $((P * N)) STS-B train pairs and their prompts' ids"
"$LMB/lm-import" models/opt-micro > "$B/micro.lms"
awk -f tests/data-contrastive/stsb-pairs.awk data/stsb/sts-train.csv data/stsb/sts-train.csv |
	head -n "$((P * N))" > "$B/pairs.tsv"
[ "$(wc -l < "$B/pairs.tsv")" -eq "$((P * N))" ] || fail "fewer than $((P * N)) STS-B pairs"
# the PromptEOL prompts as lm-embed makes them (embed.h), tokenized by lm-info in chunks
# joined by newlines (a newline is a token of its own in the GPT-2 pre-tokenizer)
$PY - "$B/pairs.tsv" "$B/micro.lms" "$LMB/lm-info" > "$B/ids.txt" <<'PY'
import subprocess, sys
def prompt(s):
    s = " ".join(s.split())
    if s and s[-1] not in ".?\"'":
        s += "."
    s = s.replace('"', "'")
    if s.endswith("?"):
        s = s[:-1] + "."
    return ('This sentence : "%s" means in one word:"' % s).strip()
ps = [prompt(f) for l in open(sys.argv[1], encoding="utf-8") for f in l.rstrip("\n").split("\t")]
for i in range(0, len(ps), 400):
    out = subprocess.check_output([sys.argv[3], "--tokenize", "\n".join(ps[i:i + 400]), sys.argv[2]])
    ids = out.split()
    chunk, cur = [], []
    for t in ids + [b"50118"]:
        if t == b"50118":
            chunk.append(cur)
            cur = []
        else:
            cur.append(t.decode())
    assert len(chunk) == len(ps[i:i + 400]), (len(chunk), i)
    for c in chunk:
        print(" ".join(c))
PY

LME='$LMB/lm-embed --contrastive $B/pairs.tsv --lora %s --pairs %s --epochs 1 -j %s -m $B/micro.lms -o $B/out.lms'
TOR='GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s /usr/bin/python3 bench/torch_contrastive.py $B/micro.lms $B/pairs.tsv $B/ids.txt --lora %s --pairs %s -n %s --threads %s --json'
rep=1
while [ "$rep" -le "$REPS" ]; do
	for j in $THREADS; do
		say "  $P pairs x $N steps, $j thread(s), repetition $rep/$REPS"
		measure "j$j.lmembed.r$rep" "$(printf "$LME" "$RANK" "$P" "$j")"
		measure "j$j.torch.r$rep" "$(printf "$TOR" "$j" "$j" "$RANK" "$P" "$N" "$j")"
	done
	rep=$((rep + 1))
done
bench_end

# the table: median over repetitions of pairs/s and peak RSS
$PY - "$B" "$P" "$N" "$RANK" $THREADS <<'PY'
import glob, json, os, re, statistics, sys
B, P, N, R = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def rss(f):
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f).read()).group(1)) / 1024
def pps(run, prog):
    if prog == "lmembed":
        return float(re.search(r"([0-9.]+) pairs/s", open(run + ".err").read()).group(1))
    return json.load(open(run + ".out"))["pairs_per_second"]
print("## Contrastive fine-tuning (lm-embed --contrastive vs PyTorch)\n")
print(f"opt-micro, STS-B train pairs, LoRA rank {R} on q/k/v/out_proj/fc1/fc2, {P} pairs per step, "
      f"{N} steps, dropout 0.1, temperature 0.05; medians over repetitions.\n")
for l in open(os.path.join(B, "facts.txt")):
    print(f"- {l.rstrip()}")
print("\n| threads | lm-embed pairs/s | torch pairs/s | ratio | lm-embed peak RSS MiB | torch peak RSS MiB |")
print("|---|---|---|---|---|---|")
for j in sys.argv[5:]:
    v = {}
    for prog in ("lmembed", "torch"):
        runs = [f[:-5] for f in sorted(glob.glob(f"{B}/runs/j{j}.{prog}.r*.time"))]
        v[prog] = (statistics.median(pps(r, prog) for r in runs), statistics.median(rss(r + ".time") for r in runs))
    print(f"| {j} | {v['lmembed'][0]:.1f} | {v['torch'][0]:.1f} | {v['lmembed'][0] / v['torch'][0]:.2f}x "
          f"| {v['lmembed'][1]:.0f} | {v['torch'][1]:.0f} |")
PY

#!/bin/sh
# bench/zeroshot.sh: the zero-shot section of the results: lm-eval --task's batched,
# prefix-sharing scoring against a plain PyTorch loop that scores the very same requests
# (bench/torch_zeroshot.py: one forward per choice, as lm-evaluation-harness runs a
# request), at equal threads; the agreement of their log-likelihoods; peak memory of
# --task next to --ppl's; the accuracies. Prints a Markdown section on stdout, progress on
# stderr:
#
#   sh bench/zeroshot.sh > bench/zeroshot.md
#   ZS_MODEL=hf/opt-125m ZS_DATA=hf/tasks ZS_LIMIT=500 sh bench/zeroshot.sh > bench/zeroshot.md
#   ZS_MODEL=models/opt-micro ZS_DATA=tests/data-zeroshot ZS_REPS=1 sh bench/zeroshot.sh  # smoke
#
#   ZS_MODEL=DIR     a Hugging Face OPT folder (default: an OPT of shape ZS_SHAPE, default
#                    opt-125m, with random weights from lm-init --seed 1: speed, not accuracy)
#   ZS_DATA=DIR      the tasks' files, lm-eval --data's layout (default: ZS_ITEMS items per
#                    task, default 20, that tests/data-zeroshot/make-data.py cuts from the
#                    novels; examples/fetch-tasks.sh gets the real ones)
#   ZS_TASKS=LIST    default boolq,rte,hellaswag,winogrande,arc_easy,arc_challenge,openbookqa,piqa
#   ZS_LIMIT=N       items per task (default all)
#   ZS_REPS=N        timed repetitions of each side, interleaved; the median is reported (default 5)
#   ZS_THREADS=N     threads of both sides (default all cores)
#   ZS_KEEP=1        keep the scratch folder; TMPDIR: where it goes; LM_BIN: other programs
#
# Needs bin/ built (make all), GNU time, and /usr/bin/python3 with python3-torch.
set -eu
cd "$(dirname "$0")/.."
PATH="${LM_BIN:-$PWD/bin}:$PATH"
MODEL=${ZS_MODEL:-}
SHAPE=${ZS_SHAPE:-opt-125m}
DATA=${ZS_DATA:-}
ITEMS=${ZS_ITEMS:-20}
TASKS=${ZS_TASKS:-boolq,rte,hellaswag,winogrande,arc_easy,arc_challenge,openbookqa,piqa}
LIMIT=${ZS_LIMIT:-}
REPS=${ZS_REPS:-${BENCH_REPS:-5}}
THREADS=${ZS_THREADS:-$(nproc)}
PY=/usr/bin/python3
T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf 'zeroshot: %s\n' "$*" >&2; }
command -v lm-eval >/dev/null || { say "lm-eval not found: run make all"; exit 1; }
[ -x /usr/bin/time ] || { say "GNU time (/usr/bin/time) missing: apt-get install -y time"; exit 1; }
$PY -c 'import torch' 2>/dev/null || { say "$PY cannot import torch: apt-get install -y python3-torch"; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/lmpipe-zeroshot.XXXXXX")
cleanup() { [ "${ZS_KEEP:-0}" = 1 ] && say "scratch kept in $W" || rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

peak() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }  # MiB

if [ -z "$MODEL" ]; then
	say "an $SHAPE-shaped model with random weights"
	lm-init --like "$SHAPE" --seed 1 | lm-export -o "$W/$SHAPE"
	MODEL=$W/$SHAPE
	WHAT="$SHAPE shape, random weights (lm-init --like $SHAPE --seed 1; accuracies meaningless)"
else
	WHAT=$(basename "$MODEL")
fi
if [ -z "$DATA" ]; then
	say "$ITEMS items per task from the novels (tests/data-zeroshot/make-data.py)"
	$PY tests/data-zeroshot/make-data.py "$W/tasks" "$ITEMS"
	DATA=$W/tasks
	DWHAT="$ITEMS items per task cut from data/novels-eval/novels-retrain.txt by \`tests/data-zeroshot/make-data.py OUT $ITEMS\` (the tasks' file formats and prompts, novel passages)"
else
	DWHAT="tasks from \`$DATA\`${LIMIT:+ (first $LIMIT items each)}"
fi
EVAL="lm-eval -q -j $THREADS --task $TASKS --data $DATA${LIMIT:+ --limit $LIMIT} --json"
# PyTorch at its best setting on this machine (docs/performance.md): huge pages for glibc's
# malloc, OpenMP threads that sleep rather than spin between parallel regions
TORCH="GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS $PY bench/torch_zeroshot.py $MODEL $W/samples.json --threads $THREADS --json"
say "importing $MODEL"
lm-import "$MODEL" > "$W/m.lms"
say "the requests' tokens (lm-eval --log-samples)"
$EVAL --log-samples "$W/m.lms" > "$W/samples.json"
for r in $(seq 1 "$REPS"); do
	say "repetition $r of $REPS: lm-eval, torch loop, torch per item"
	/usr/bin/time -v -o "$W/lm.$r.time" sh -c "$EVAL '$W/m.lms'" > "$W/lm.$r.json"
	/usr/bin/time -v -o "$W/tl.$r.time" sh -c "$TORCH --mode loop" > "$W/tl.$r.json"
	/usr/bin/time -v -o "$W/ti.$r.time" sh -c "$TORCH --mode item" > "$W/ti.$r.json"
done
say "lm-eval --ppl's peak memory, for comparison"
/usr/bin/time -v -o "$W/ppl.time" lm-eval -q -j "$THREADS" --ppl data/novels-eval/novels-test.txt \
	-w 4 -s 512 "$W/m.lms" > /dev/null

LMP=$(for r in $(seq 1 "$REPS"); do peak "$W/lm.$r.time"; echo; done | sort -n | tail -n 1)
TLP=$(for r in $(seq 1 "$REPS"); do peak "$W/tl.$r.time"; echo; done | sort -n | tail -n 1)
PPLP=$(peak "$W/ppl.time")

cat <<EOF
## Zero-shot tasks (lm-eval --task)

$WHAT; $DWHAT; threads: $THREADS on
both sides, median of $REPS interleaved runs. lm-eval scores an item's choices in one batch after
their shared token prefix ran once; the PyTorch loop (\`bench/torch_zeroshot.py\`) runs one
forward per choice over its whole sequence, as lm-evaluation-harness runs a request, on the very
same token ids (taken from lm-eval's \`--log-samples\`); "per item" batches an item's choices
without sharing. Seconds are scoring only (weights already read). The log-likelihood column is the
largest difference between the two sides' per-choice values.

| task | items | choices | tokens run / per choice alone | lm-eval s | torch loop s | speed-up | torch per item s | max \|Δ ll\| | acc | acc_norm |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
$PY - "$W" "$REPS" <<'PY'
import json, re, statistics, sys
w, reps = sys.argv[1], int(sys.argv[2])
load = lambda p: json.load(open(p))
lm = [load(f"{w}/lm.{r}.json") for r in range(1, reps + 1)]
tl = [load(f"{w}/tl.{r}.json") for r in range(1, reps + 1)]
ti = [load(f"{w}/ti.{r}.json") for r in range(1, reps + 1)]
smp = load(f"{w}/samples.json")
tot = {"lm": 0.0, "tl": 0.0, "ti": 0.0}
for task, res in lm[0]["results"].items():
    items = smp["samples"][task]
    nreq = sum(len(s["ll"]) for s in items)
    plain = sum(len(x) for s in items for x in s["ids"])
    # what lm-eval ran: the shared prefix once per item, the rest of every choice
    run = 0
    for s in items:
        ids = s["ids"]
        p = 0
        lim = min(len(x) - n for x, n in zip(ids, s["tokens"])) - 1
        while p < lim and all(len(x) > p and x[p] == ids[0][p] for x in ids):
            p += 1
        run += p + sum(len(x) - p for x in ids)
    a = statistics.median(r["config"]["seconds"][task] for r in lm)
    b = statistics.median(r["tasks"][task]["seconds"] for r in tl)
    c = statistics.median(r["tasks"][task]["seconds"] for r in ti)
    d = max(r["tasks"][task]["max_abs_ll_diff"] for r in tl)
    tot["lm"] += a; tot["tl"] += b; tot["ti"] += c
    norm = res.get("acc_norm")
    print(f"| {task} | {len(items)} | {nreq} | {run} / {plain} | {a:.3f} | {b:.3f} | {b / a:.2f}x | {c:.3f} | "
          f"{d:.1e} | {res['acc']:.4f} | {'-' if norm is None else f'{norm:.4f}'} |")
print(f"| **all** | | | | **{tot['lm']:.3f}** | **{tot['tl']:.3f}** | **{tot['tl'] / tot['lm']:.2f}x** | "
      f"{tot['ti']:.3f} | | | |")

# per repetition: the scoring seconds over all tasks (steady state: weights already read) and
# the whole process's wall seconds (GNU time: reading the model, Python's and torch's imports)
def wall(path):
    m = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", open(path).read())
    h, mi, se = m.groups()
    return int(h or 0) * 3600 + int(mi) * 60 + float(se)
def span(xs, f="{:.2f}"):
    return f"{f.format(statistics.median(xs))} ({f.format(min(xs))}–{f.format(max(xs))})"
sl = [sum(r["config"]["seconds"].values()) for r in lm]
st = [sum(t["seconds"] for t in r["tasks"].values()) for r in tl]
wl = [wall(f"{w}/lm.{r}.time") for r in range(1, reps + 1)]
wt = [wall(f"{w}/tl.{r}.time") for r in range(1, reps + 1)]
print()
print("| all tasks, per repetition: median (min–max) | lm-eval | torch loop | torch ÷ lm-eval |")
print("|---|---:|---:|---:|")
print(f"| scoring s (steady state) | {span(sl, '{:.3f}')} | {span(st, '{:.3f}')} | {span([b / a for a, b in zip(sl, st)])}x |")
print(f"| whole process wall s | {span(wl)} | {span(wt)} | {span([b / a for a, b in zip(wl, wt)])}x |")
PY
cat <<EOF

Peak RSS: \`lm-eval --task\` $LMP MiB (the whole model is held, as for \`--mc\`: an item's choices
need every layer while the shared prefix's keys and values are reused), the PyTorch loop $TLP MiB,
\`lm-eval --ppl\` (one layer at a time, 4 windows of 512) $PPLP MiB.

Commands: \`$(echo "$EVAL" | sed "s|$W/||g") m.lms\`; \`$(echo "$TORCH" | sed "s|$W/||g") --mode loop|item\`.
Machine: $(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores;
load $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(( $(date +%s) - T0 )) s in all.
EOF

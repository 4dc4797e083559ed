#!/bin/sh
# bench/quant.sh: the quantization section of bench/RESULTS.md (issue #6), on an
# OPT-125m-shaped model (random weights, lm-init --seed 1):
#   1. lm-eval --ppl (one layer in memory at a time) on f32, f16, q8g128 and q4g128 weights,
#      and q4g128 with the token embeddings packed too (q4e), at batch 1 and 4: tokens/s and
#      peak RSS, against the targets q4 RSS <= 35 % of f32's and q4 tokens/s >= f32's;
#   2. the same five with the whole model in memory (lm-eval --generate, 32 tokens);
#   3. lm-quant -m gptq -b 4 -g 128 against bench/torch_gptq.py (the GPTQ reference
#      algorithm in PyTorch) on the same model, calibration ids, windows and threads, with
#      how far their results agree.
# Prints a Markdown section on stdout, progress on stderr; runs alone:
#
#   sh bench/quant.sh > bench/quant.md
#
#   BENCH_REPS=N             repetitions of every measurement, interleaved (default 5; the
#                            tables give the median)
#   BENCH_QUANT_THREADS=L    thread counts (default "2")
#   BENCH_QUANT_WINDOWS=K    lm-eval --ppl windows of 512 tokens (default 8)
#   BENCH_QUANT_BATCHES=L    lm-eval --ppl batch sizes (default "1 4")
#   BENCH_QUANT_NSAMPLES=N   GPTQ calibration windows of 512 tokens (default 16)
#   BENCH_QUANT_TORCH=0      skip the PyTorch GPTQ run (about 5 of the 7 minutes)
#   BENCH_KEEP=1, TMPDIR, BENCH_QUIET_MAX, BENCH_QUIET_BUDGET: see bench/lib.sh
#
# About 7 minutes on 2 idle cores with the defaults.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

REPS=${BENCH_REPS:-5}
THREADS=${BENCH_QUANT_THREADS:-2}
WIN=${BENCH_QUANT_WINDOWS:-8}
NS=${BENCH_QUANT_NSAMPLES:-16}
TORCH=${BENCH_QUANT_TORCH:-1}
BATCHES=${BENCH_QUANT_BATCHES:-1 4}

bench_start quant
fact reps "$REPS"
fact threads "$THREADS"
fact windows "$WIN"
fact nsamples "$NS"
fact batches "$BATCHES"

say "quant: OPT-125m-shaped models (f32, f16 and f16 -> q8g128, q4g128 by RTN), ids"
bin/lm-init --like opt-125m --seed 1 -o "$B/f32.lms"
bin/lm-init --like opt-125m --seed 1 -t f16 -o "$B/f16.lms"
# from the f16 stream, as after lm-import: the embeddings stay f16, the six linears are packed
bin/lm-quant -q -b 8 -g 128 -o "$B/q8.lms" "$B/f16.lms"
bin/lm-quant -q -b 4 -g 128 -o "$B/q4.lms" "$B/f16.lms"
# and with embed_tokens (the tied head) packed too: most of what q4.lms holds is its f16
# embedding matrix
bin/lm-quant -q -b 4 -g 128 --include '*embed_tokens*' --include '*proj.weight' \
	--include '*fc?.weight' -o "$B/q4e.lms" "$B/f16.lms"
for m in f32 f16 q8 q4 q4e; do
	fact "size_$m" "$(wc -c < "$B/$m.lms")"
done
# the ids every run reads: the text tokenized once (BOS first), as lm-eval/lm-quant would
bin/lm-eval --ppl data/novels-eval/novels-test.txt --windows 1 --seqlen 512 -q --json \
	--save-ids "$B/test.lms" "$B/f16.lms" > /dev/null
bin/lm-eval --ppl data/novels-eval/novels-calib.txt --windows 1 --seqlen 512 -q --json \
	--save-ids "$B/calib.lms" "$B/f16.lms" > /dev/null

PPL='bin/lm-eval --ppl $B/test.lms --seqlen 512 --windows %s --batch %s -j %s --json -q $B/%s.lms'
GEN='bin/lm-eval --generate "The history of the" -n 32 -j %s --json -q $B/%s.lms'
LMQ='bin/lm-quant -b 4 -g 128 -m gptq -c $B/calib.lms --nsamples %s --seqlen 512 -j %s -q -o $B/gptq-j%s.lms $B/f16.lms'
TOR='GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s /usr/bin/python3 bench/torch_gptq.py $B/f16.lms -c $B/calib.lms --nsamples %s --seqlen 512 --wbits 4 --groupsize 128 --f16-scale --threads %s --json --save $B/torch-j%s.f32'
rep=1
while [ "$rep" -le "$REPS" ]; do
	for j in $THREADS; do
		say "  lm-eval --ppl and --generate, $j thread(s), repetition $rep/$REPS"
		for b in $BATCHES; do
			for m in f32 f16 q8 q4 q4e; do
				measure "ppl-$m-b$b-j$j.lmeval.r$rep" "$(printf "$PPL" "$WIN" "$b" "$j" "$m")"
			done
		done
		for m in f32 f16 q8 q4 q4e; do
			measure "gen-$m-j$j.lmeval.r$rep" "$(printf "$GEN" "$j" "$m")"
		done
		say "  GPTQ 4-bit g128, $NS windows of 512, $j thread(s), repetition $rep/$REPS"
		measure "gptq-j$j.lmquant.r$rep" "$(printf "$LMQ" "$NS" "$j" "$j")"
		if [ "$TORCH" = 1 ]; then
			measure "gptq-j$j.torch.r$rep" "$(printf "$TOR" "$j" "$j" "$NS" "$j" "$j")"
			# same work? the two results side by side (not timed)
			$PY bench/torch_gptq.py --json --compare "$B/gptq-j$j.lms" "$B/torch-j$j.f32" \
				> "$R/gptq-j$j.compare.r$rep.json"
			rm -f "$B/torch-j$j.f32"
		fi
		rm -f "$B/gptq-j$j.lms"
	done
	rep=$((rep + 1))
done

bench_end
$PY - "$B" <<'PY'
"""The Markdown section from the runs of bench/quant.sh (files in $B/runs, see bench/lib.sh)."""
import glob, json, os, re, statistics, sys

B = sys.argv[1]
R = os.path.join(B, "runs")
facts = dict(l.rstrip("\n").split(": ", 1) for l in open(os.path.join(B, "facts.txt")) if ": " in l)


def gnu_time(path):
    """wall seconds, peak RSS bytes, CPU seconds of a GNU time -v report"""
    t = open(path).read()
    el = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
    sec = 0.0
    for part in el.split(":"):
        sec = sec * 60 + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024
    cpu = sum(float(re.search(p + r": (\S+)", t).group(1))
              for p in (r"User time \(seconds\)", r"System time \(seconds\)"))
    return sec, rss, cpu


def others(rid, sec, cpu):
    """cores the rest of the machine kept busy during the run (/proc/stat before and after)"""
    def busy_total(f):
        v = [int(x) for x in open(f).read().split()[1:]]
        busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
        return busy, busy + v[3] + v[4]
    b0, t0 = busy_total(os.path.join(R, rid + ".stat0"))
    b1, t1 = busy_total(os.path.join(R, rid + ".stat1"))
    cores = int(facts.get("cores", "1"))
    if t1 <= t0 or sec <= 0:
        return 0.0
    return max(0.0, (b1 - b0) / (t1 - t0) * cores - cpu / sec)


def runs(group, variant):
    """[(wall s, rss, cpu s, others, stdout json or None, command)] of every repetition"""
    out = []
    for tf in sorted(glob.glob(os.path.join(R, f"{group}.{variant}.r*.time"))):
        rid = tf[len(R) + 1:-len(".time")]
        sec, rss, cpu = gnu_time(tf)
        txt = open(os.path.join(R, rid + ".out")).read().strip()
        js = json.loads(txt.splitlines()[-1]) if txt.startswith("{") else None
        cmd = open(os.path.join(R, rid + ".cmd")).read().strip()
        out.append((sec, rss, cpu, others(rid, sec, cpu), js, cmd))
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def mib(b):
    return f"{b / 1048576:.0f} MiB"


def cmdcell(c):
    return "`" + c.replace("|", "\\|").replace("$B/", "") + "`"


reps, threads = facts["reps"], facts["threads"].split()
W = facts["windows"]
names = {"f32": "f32", "f16": "f16", "q8": "q8g128 (RTN)", "q4": "q4g128 (RTN)",
         "q4e": "q4g128, embeddings too (RTN)"}
MODELS = ("f32", "f16", "q8", "q4", "q4e")
print("### Quantized weights: speed and memory (`bench/quant.sh`)\n")
print(f"OPT-125m-shaped model, random weights (`lm-init --like opt-125m --seed 1`, f32; `-t f16`; "
      f"q8g128 and q4g128 by `lm-quant -b 8|4 -g 128` from the f16 stream, so the embeddings stay "
      f"f16 as after `lm-import`; q4e adds `--include '*embed_tokens*' --include '*proj.weight' "
      f"--include '*fc?.weight'`, which packs the token embeddings, and so the tied head, as well). {facts['date']}, commit {facts['commit']}"
      f"{' (uncommitted changes)' if facts.get('dirty') == 'yes' else ''}, {facts['cpu']}, "
      f"{facts['cores']} cores, load {facts['load_start']} at the start and {facts['load_end']} at "
      f"the end; median of {reps} run(s). \"others\": cores the rest of the machine kept busy "
      f"meanwhile (timings are only comparable where it is near 0). Peak RSS by GNU `time -v`.\n")

def gen_rss(j, m):
    rr = runs(f"gen-{m}-j{j}", "lmeval")
    return med([r[1] for r in rr]) if rr else None


for j in threads:
    for bt in facts["batches"].split():
        print(f"**`lm-eval --ppl`**, {W} window(s) of 512 tokens of novels-test.txt, batch {bt}, {j} "
              f"thread(s) (the model is streamed: one decoder layer in memory at a time, next to the "
              f"embeddings and the batch's activations):\n")
        print("| weights | stream | tokens/s | peak RSS | RSS / f32 | others | command |")
        print("|---|---|---|---|---|---|---|")
        res = {}
        for m in MODELS:
            rr = runs(f"ppl-{m}-b{bt}-j{j}", "lmeval")
            if not rr:
                continue
            tps = med([r[4]["tokens_per_second"] for r in rr if r[4]])
            rss = med([r[1] for r in rr])
            res[m] = (tps, rss)
            ratio = rss / res["f32"][1] if "f32" in res else float("nan")
            print(f"| {names[m]} | {mib(int(facts['size_' + m]))} | {tps:.0f} | {mib(rss)} | {100 * ratio:.0f} % | "
                  f"{med([r[3] for r in rr]):.2f} | {cmdcell(rr[0][5])} |")
        print()
        for m in ("q4", "q4e"):
            if m in res and "f32" in res:
                rr, tr = res[m][1] / res["f32"][1], res[m][0] / res["f32"][0]
                print(f"- {names[m]}: peak RSS <= 35 % of f32's: **{'met' if rr <= 0.35 else 'not met'}** "
                      f"({100 * rr:.0f} %); tokens/s >= f32's: **{'met' if tr >= 1 else 'not met'}** "
                      f"({tr:.2f}x).")
        print()
    g32, g4 = gen_rss(j, "f32"), gen_rss(j, "q4e")
    print("`--ppl` streams the model, so its peak is the embedding matrix (f32; f16 next to packed "
          "layers in q4; packed in q4e) and the batch's activations, not the linear weights (one "
          "layer at a time): the larger the batch, the more of the peak is activations, the same in "
          "every row"
          + (f". With the whole model in memory (below) q4e takes {100 * g4 / g32:.0f} % of f32's "
             f"RSS." if g32 and g4 else ".") + "\n")
    print(f"**`lm-eval --generate`**, 32 new tokens after a 5-token prompt, {j} thread(s) (the whole model "
          f"in memory):\n")
    print("| weights | tokens/s | peak RSS | RSS / f32 | others | command |")
    print("|---|---|---|---|---|---|")
    base = None
    for m in MODELS:
        rr = runs(f"gen-{m}-j{j}", "lmeval")
        if not rr:
            continue
        rss = med([r[1] for r in rr])
        base = base or rss
        tps = med([r[4]["tokens_per_second"] for r in rr if r[4]])
        print(f"| {names[m]} | {tps:.1f} | {mib(rss)} | {100 * rss / base:.0f} % | "
              f"{med([r[3] for r in rr]):.2f} | {cmdcell(rr[0][5])} |")
    print()

for j in threads:
    lq, tq = runs(f"gptq-j{j}", "lmquant"), runs(f"gptq-j{j}", "torch")
    if not lq:
        continue
    print(f"**GPTQ 4-bit g128**, {facts['nsamples']} calibration windows of 512 tokens of "
          f"novels-calib.txt, {j} thread(s): `lm-quant` against `bench/torch_gptq.py` (the reference "
          f"algorithm, docs/methods.md §3.4, in PyTorch {facts.get('torch', '?')} on the CPU, with each "
          f"scale rounded to f16 as lm-quant stores it):\n")
    print("| program | seconds | peak RSS | others | command |")
    print("|---|---|---|---|---|")
    ls = med([r[0] for r in lq])
    print(f"| lm-quant | {ls:.1f} | {mib(med([r[1] for r in lq]))} | {med([r[3] for r in lq]):.2f} | "
          f"{cmdcell(lq[0][5])} |")
    if tq:
        ts = med([r[0] for r in tq])
        print(f"| torch_gptq.py | {ts:.1f} | {mib(med([r[1] for r in tq]))} | {med([r[3] for r in tq]):.2f} | "
              f"{cmdcell(tq[0][5])} |")
        print(f"\nlm-quant is **{ts / ls:.1f}x** faster here.", end=" ")
        cf = sorted(glob.glob(os.path.join(R, f"gptq-j{j}.compare.r*.json")))
        if cf:
            c = json.load(open(cf[0]))
            print(f"Same work: layer 0 (same inputs on both sides) has {100 * c['equal_values_layer0']:.2f} % "
                  f"equal values; the relative difference of the quantized weights, layer by layer, is "
                  + ", ".join(f"{x:.3f}" for x in c["relative_difference_by_layer"])
                  + " (each later layer is calibrated on the inputs the quantized layers before it give, "
                  "and a code rounded the other way moves the rest of its row through the error "
                  "feedback: the two drift apart with depth at equal quantization error).")
        print()
    print()
print(f"The section took {facts['total_time']}.")
PY

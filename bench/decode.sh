#!/bin/sh
# bench/decode.sh: the decode section of bench/RESULTS.md (issue #18): is greedy decoding bound
# by memory for every weight type? On an OPT-125m-shaped model (random weights, lm-init
# --seed 1) in f32, f16, bf16 and packed q8, q4, q3, q2 (g128, RTN from the f16 stream, the
# token embeddings and so the tied head packed too):
#   1. the machine's read bandwidth (bench/bandwidth.c, a STREAM-like sum over 1 GiB, the
#      best of 4 KiB or 2 MiB pages and 1 or 4 streams per thread);
#   2. lm-eval --generate "The history of the" -n 64: tokens/s at 1 and 2 threads, the weight
#      bytes one token reads (every matrix once, the head whole, one row of positions), the
#      GB/s that makes and its share of the measured bandwidth; and the same run on the tile
#      path of before nn/matvec (LM_NO_MATVEC=1), to show what the fused kernel changed;
#   3. bench/torch_decode.py, a PyTorch KV-cache greedy loop, on the f32 model;
#   4. the row kernels alone (bench/matvec.c): G weights/s of each storage on the head's
#      shape (50272 x 768, read from memory) and fc1's (3072 x 768, from cache), so a row
#      that is slow can be told apart as bound by memory or by its kernel.
# Prints a Markdown section on stdout, progress on stderr; runs alone, on a quiet machine:
#
#   sh bench/decode.sh > bench/decode.md
#
#   BENCH_REPS=N               repetitions of every measurement, interleaved (default 5; the
#                              tables give the median)
#   BENCH_DECODE_THREADS=L     thread counts (default "1 2")
#   BENCH_DECODE_MODELS=L      weight types (default "f32 f16 bf16 q8 q4 q4x8 q3 q2 s50 s24 s24e
#                              s24q4 s24eq4":
#                              q4x8 = the q4 stream decoded with lm-eval --act8 (4-bit weights
#                              on 8-bit activations, integer products);
#                              s50 = 50 % unstructured (bitmap), s24 = 2:4, both f16 by
#                              lm-prune's magnitude from the f16 stream (the six linear
#                              weights of each layer, lm-prune's default); s24e = 2:4 with the
#                              token embeddings, and so the tied head, pruned too (by
#                              magnitude: the calibrated methods prune only linears); s24q4 = s24 then
#                              lm-quant -b 4 -g 128, which keeps the 2:4 layout of the codes
#                              (the embeddings, dense, packed as q4's); s24eq4 = s24e so
#                              quantized, 2:4 of the codes everywhere, the smallest stream)
#   BENCH_DECODE_TOKENS=N      new tokens per run (default 64)
#   BENCH_DECODE_TILE=0        skip the LM_NO_MATVEC=1 runs
#   BENCH_DECODE_TORCH=0       skip PyTorch
#   BENCH_DECODE_BW_MIB=M      the bandwidth probe's buffer (default 1024)
#   BENCH_DECODE_KERNELS=0     skip the kernel probe (4.)
#   BENCH_KEEP=1, TMPDIR, BENCH_QUIET_MAX, BENCH_QUIET_BUDGET: see bench/lib.sh
#
# The sparse rows are kept sparse in memory by lm-eval (LM_NO_SPARSE=1 would expand them):
# their bytes/token are the stream's payloads, values and positions, which is what the
# decode product reads.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

REPS=${BENCH_REPS:-5}
THREADS=${BENCH_DECODE_THREADS:-1 2}
MODELS=${BENCH_DECODE_MODELS:-f32 f16 bf16 q8 q4 q4x8 q3 q2 s50 s24 s24e s24q4 s24eq4}
NTOK=${BENCH_DECODE_TOKENS:-64}
TILE=${BENCH_DECODE_TILE:-1}
TORCH=${BENCH_DECODE_TORCH:-1}
BW_MIB=${BENCH_DECODE_BW_MIB:-1024}
KERN=${BENCH_DECODE_KERNELS:-1}
# the probe's storage for each weight type of the table (the linears' storage)
KSTORE="f32=f32 f16=f16 bf16=bf16 q8=q8g128 q4=q4g128 q4x8=q4g128+x8 q3=q3g128 q2=q2g128 s50=f16/bitmap s24=f16/2:4 s24q4=q4g128/2:4"
PROMPT="The history of the"

bench_start decode
fact reps "$REPS"
fact threads "$THREADS"
fact models "$MODELS"
fact tokens "$NTOK"
fact prompt "$PROMPT"
fact bw_mib "$BW_MIB"
fact simd "$(grep -m 1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|f16c|avx512f|avx512bw|avx512vl)$' | tr '\n' ' ')"

# the models: f32/f16/bf16 as lm-init writes them; packed ones from the f16 stream with the
# embeddings packed too (the head is most of OPT-125m's bytes)
PACK="--include '*embed_tokens*' --include '*proj.weight' --include '*fc?.weight'"
make_model() {
	case $1 in
	f32) bin/lm-init --like opt-125m --seed 1 -o "$B/f32.lms" ;;
	f16 | bf16) bin/lm-init --like opt-125m --seed 1 -t "$1" -o "$B/$1.lms" ;;
	q4x8) # the same stream, read with --act8 (flags_of)
		[ -f "$B/q4.lms" ] || make_model q4
		ln -s q4.lms "$B/q4x8.lms" ;;
	q8 | q4 | q3 | q2) eval "bin/lm-quant -q -b ${1#q} -g 128 $PACK -o \"\$B/$1.lms\" \"\$B/f16.lms\"" ;;
	s50) bin/lm-prune -q -s 0.5 -o "$B/s50.lms" "$B/f16.lms" ;;
	s24) bin/lm-prune -q --nm 2:4 -o "$B/s24.lms" "$B/f16.lms" ;;
	s24e) eval "bin/lm-prune -q --nm 2:4 $PACK -o \"\$B/s24e.lms\" \"\$B/f16.lms\"" ;;
	s24q4)
		[ -f "$B/s24.lms" ] || make_model s24
		eval "bin/lm-quant -q -b 4 -g 128 $PACK -o \"\$B/s24q4.lms\" \"\$B/s24.lms\"" ;;
	s24eq4)
		[ -f "$B/s24e.lms" ] || make_model s24e
		eval "bin/lm-quant -q -b 4 -g 128 $PACK -o \"\$B/s24eq4.lms\" \"\$B/s24e.lms\"" ;;
	*) fail "make_model: no recipe for '$1'" ;;
	esac
}
# lm-eval's options for a weight type's row beyond its stream
flags_of() { [ "$1" = q4x8 ] && echo "--act8 " || true; }
say "decode: OPT-125m-shaped models ($MODELS)"
make_model f32
make_model f16
for m in $MODELS; do
	[ -f "$B/$m.lms" ] || make_model "$m"
	info=$(bin/lm-info --json "$B/$m.lms") # read once, for the facts below
	# weight bytes one token reads: every tensor once, but of the positions one row
	fact "bytes_$m" "$(printf '%s' "$info" | $PY -c '
import json, sys
t = json.load(sys.stdin)["tensors"]
print(sum(x["bytes"] // x["shape"][0] if "embed_positions" in x["name"] else x["bytes"] for x in t))')"
	fact "stream_$m" "$(wc -c < "$B/$m.lms")"
	fact "dtype_$m" "$(printf '%s' "$info" | $PY -c '
import json, sys
t = {x["name"]: x for x in json.load(sys.stdin)["tensors"]}
f, e = t["model.decoder.layers.0.fc1.weight"], t["model.decoder.embed_tokens.weight"]
lay = lambda x: x["dtype"] + ("" if x.get("layout", "dense") == "dense" else " " + x["layout"])
print(lay(f) + "," + lay(e))')"
	# the embeddings (tokens, positions), which lm-prune leaves dense by default: the floor
	# of the default 2:4 stream
	if [ "$m" = f16 ]; then
		fact embed_bytes_f16 "$(printf '%s' "$info" | $PY -c '
import json, sys
print(sum(x["bytes"] for x in json.load(sys.stdin)["tensors"] if "embed" in x["name"]))')"
	fi
done
# the prompt's ids, as lm-eval makes them (BOS first), for PyTorch; its weights as a HF folder
IDS=$(bin/lm-eval --generate "$PROMPT" -n 1 --json -q "$B/f32.lms" |
	$PY -c 'import json, sys; print(" ".join(map(str, json.load(sys.stdin)["ids"][:-1])))')
fact prompt_ids "$IDS"
if [ "$TORCH" = 1 ]; then bin/lm-export -o "$B/hf" "$B/f32.lms" > /dev/null; fi
cc -O3 -march=native -std=c11 -Wall -Wextra -pthread -o "$B/bandwidth" bench/bandwidth.c
KLIST=
if [ "$KERN" = 1 ]; then
	make -s build/bench/matvec >&2 || fail "cannot build build/bench/matvec"
	for m in $MODELS; do
		for kv in $KSTORE; do [ "${kv%%=*}" = "$m" ] && KLIST="$KLIST ${kv#*=}"; done
	done
	fact kernels "$KLIST"
fi

GEN='bin/lm-eval --generate "%s" -n %s -j %s --json -q %s$B/%s.lms'
TOR='GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s /usr/bin/python3 bench/torch_decode.py $B/hf --ids "%s" -n %s --threads %s --json'
TLIST=$(echo "$THREADS" | tr ' ' ',')
rep=1
while [ "$rep" -le "$REPS" ]; do
	say "  read bandwidth, repetition $rep/$REPS"
	measure "bw.probe.r$rep" "\$B/bandwidth -m $BW_MIB -r 5 -t $TLIST"
	for j in $THREADS; do
		say "  lm-eval --generate, $j thread(s), repetition $rep/$REPS"
		for m in $MODELS; do
			measure "gen-$m-j$j.lmeval.r$rep" "$(printf "$GEN" "$PROMPT" "$NTOK" "$j" "$(flags_of "$m")" "$m")"
			# (the tile path has no --act8: it converts tiles to f32 whatever the flag)
			if [ "$TILE" = 1 ] && [ -z "$(flags_of "$m")" ]; then
				measure "gen-$m-j$j.tile.r$rep" "LM_NO_MATVEC=1 $(printf "$GEN" "$PROMPT" "$NTOK" "$j" "" "$m")"
			fi
		done
		if [ "$TORCH" = 1 ]; then
			measure "gen-f32-j$j.torch.r$rep" "$(printf "$TOR" "$j" "$j" "$IDS" "$NTOK" "$j")"
		fi
	done
	if [ -n "$KLIST" ]; then
		say "  kernel probe, repetition $rep/$REPS"
		for j in $THREADS; do
			measure "kern-head-j$j.probe.r$rep" "build/bench/matvec -t $j -r 20 50272 768 $KLIST"
			measure "kern-fc1-j$j.probe.r$rep" "build/bench/matvec -t $j -r 200 3072 768 $KLIST"
		done
	fi
	rep=$((rep + 1))
done

bench_end
$PY - "$B" <<'PY'
"""The Markdown section from the runs of bench/decode.sh (files in $B/runs, see bench/lib.sh)."""
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
    """[(wall s, rss, cpu s, others, stdout text, command)] of every repetition"""
    out = []
    for tf in sorted(glob.glob(os.path.join(R, f"{group}.{variant}.r*.time"))):
        rid = tf[len(R) + 1:-len(".time")]
        sec, rss, cpu = gnu_time(tf)
        txt = open(os.path.join(R, rid + ".out")).read().strip()
        cmd = open(os.path.join(R, rid + ".cmd")).read().strip()
        out.append((sec, rss, cpu, others(rid, sec, cpu), txt, cmd))
    return out


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def js(r):
    """a run's JSON line, or None when the run printed none (it failed)"""
    lines = r[4].splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None


def tps(rr):
    return med([js(r)["tokens_per_second"] for r in rr if js(r)])


def ids(rr):
    got = [js(r) for r in rr if js(r)]
    return got[0]["ids"] if got else None


def mib(b):
    return f"{b / 1048576:.0f} MiB"


def cmdcell(c):
    return "`" + c.replace("|", "\\|").replace("$B/", "") + "`"


# bandwidth: per thread count, the median over repetitions of each probe's median
bw = {}
for r in runs("bw", "probe"):
    for line in r[4].splitlines():
        f = line.split()
        if f and f[0] == "bandwidth":
            bw.setdefault(f[1], []).append(float(f[2]))
bw = {t: med(v) for t, v in bw.items()}

reps, threads, models = facts["reps"], facts["threads"].split(), facts["models"].split()
print("### Decoding bound by memory (`bench/decode.sh`)\n")
print(f"OPT-125m-shaped model, random weights (`lm-init --like opt-125m --seed 1`; `-t f16`, "
      f"`-t bf16`; qB = `lm-quant -b B -g 128` by RTN from the f16 stream with `--include "
      f"'*embed_tokens*' --include '*proj.weight' --include '*fc?.weight'`, so the tied head is "
      f"packed too). `lm-eval --generate \"{facts['prompt']}\" -n {facts['tokens']}` (prompt ids "
      f"{facts['prompt_ids']}), tokens/s as lm-eval reports it (new tokens over the seconds of "
      f"prefill and decoding, weights already loaded). {facts['date']}, commit {facts['commit']}"
      f"{' (uncommitted changes)' if facts.get('dirty') == 'yes' else ''}, {facts['cpu']}, "
      f"{facts['cores']} cores ({facts['simd'].strip()}), load {facts['load_start']} at the start "
      f"and {facts['load_end']} at the end; median of {reps} run(s). \"others\": cores the rest "
      f"of the machine kept busy meanwhile (timings are only comparable where it is near 0).\n")
print("Read bandwidth (`bench/bandwidth.c`: the sum of a "
      f"{facts.get('bw_mib', '1024')} MiB buffer, the best of four ways to read it (4 KiB or "
      "2 MiB pages, 1 or 4 streams per thread), median of 5 passes per way and probe): "
      + ", ".join(f"**{bw[t]:.1f} GB/s** at {t} thread(s)" for t in sorted(bw)) + ".\n")
print("Bytes/token: the weights one token reads (every matrix once, the head whole, one row of "
      "positions); GB/s = bytes/token x tokens/s; \"tile path\": the same run with "
      "`LM_NO_MATVEC=1`, each tile of weights converted to f32 before sgemv, as before the fused "
      "kernel (common/nn/matvec.c).\n")
res = {}
for j in threads:
    print(f"**{j} thread(s)**:\n")
    print("| weights (linears, embeddings) | bytes/token | tokens/s | GB/s | % of bandwidth | vs f32 "
          "| tile path tokens/s | fused / tile | same ids as tile | peak RSS | others |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m in models:
        rr = runs(f"gen-{m}-j{j}", "lmeval")
        if not rr:
            continue
        t = tps(rr)
        by = int(facts[f"bytes_{m}"])
        gbs = by * t / 1e9
        res[(m, j)] = (t, gbs)
        f32 = res.get(("f32", j), (float("nan"),))[0]
        tr = runs(f"gen-{m}-j{j}", "tile")
        tt = tps(tr) if tr else float("nan")
        same = ("-" if ids(rr) is None else "yes" if ids(tr) == ids(rr) else "**no**") if tr else "-"
        pct = 100 * gbs / bw[j] if j in bw else float("nan")
        name = m + (" (--act8)" if m == "q4x8" else "")
        tile = f"{tt:.1f} | {t / tt:.2f}x" if tr else "- | -"
        print(f"| {name} ({facts['dtype_' + m].replace(',', ', ')}) | {by / 1e6:.0f} MB | {t:.1f} | "
              f"{gbs:.1f} | {pct:.0f} % | {t / f32:.2f}x | {tile} | {same} | "
              f"{mib(med([r[1] for r in rr]))} | {med([r[3] for r in rr]):.2f} |")
    tr = runs(f"gen-f32-j{j}", "torch")
    if tr:
        t = tps(tr)
        same = "yes" if ids(tr) == ids(runs(f"gen-f32-j{j}", "lmeval")) else "no"
        print(f"| PyTorch f32 (`bench/torch_decode.py`, KV cache) | {int(facts['bytes_f32']) / 1e6:.0f} MB "
              f"| {t:.1f} | {int(facts['bytes_f32']) * t / 1e9:.1f} | "
              f"{100 * int(facts['bytes_f32']) * t / 1e9 / bw[j] if j in bw else float('nan'):.0f} % | "
              f"{t / res.get(('f32', j), (float('nan'),))[0]:.2f}x | - | - | {same} (as lm-eval f32) | "
              f"{mib(med([r[1] for r in tr]))} | {med([r[3] for r in tr]):.2f} |")
    print()
j = max(threads, key=int)
if ("f32", j) in res:
    lines = []
    # issue #18's ratios: (what, numerator row, denominator row, target)
    for what, num, den, want in (("f16 >= 1.8x f32's tokens/s", "f16", "f32", 1.8),
                                 ("q4 with packed embeddings >= 4x f32", "q4", "f32", 4),
                                 ("the same on 8-bit activations (--act8)", "q4x8", "f32", 4),
                                 ("2:4 f16 >= 1.6x dense f16", "s24", "f16", 1.6),
                                 ("the same with the embeddings (and head) 2:4 too", "s24e", "f16", 1.6),
                                 ("50 % unstructured >= 1.3x dense f16", "s50", "f16", 1.3)):
        if (num, j) in res and (den, j) in res:
            r = res[(num, j)][0] / res[(den, j)][0]
            lines.append(f"{what}: **{'met' if r >= want else 'not met'}** ({r:.2f}x)")
    sq = [m for m in ("s24q4", "s24eq4") if (m, j) in res]
    if sq:
        best = max((v[0], m) for (m, jj), v in res.items() if jj == j)
        mine = max((res[(m, j)][0], m) for m in sq)
        lines.append(f"2:4 + q4 the fastest row: **{'met' if best[1] in sq else 'not met'}**"
                     + ("" if best[1] in sq else f" ({best[1]} is, {best[0]:.1f} against {mine[1]}'s {mine[0]:.1f} tokens/s)"))
    if "stream_s24" in facts and "stream_f16" in facts:
        f16b = int(facts["stream_f16"])
        r = int(facts["stream_s24"]) / f16b
        # the default's floor: the embeddings whole, the rest's values halved, no position bits
        e = int(facts.get("embed_bytes_f16", 0)) / f16b
        r_e = int(facts["stream_s24e"]) / f16b if "stream_s24e" in facts else None
        lines.append(f"a 2:4 f16 stream <= 60 % of the dense f16 stream's bytes: **"
                     + ("met" if min(r, r_e or r) <= 0.6 else "not met") + f"** (s24 {100 * r:.1f} %: "
                     f"lm-prune's default leaves the embeddings, {100 * e:.1f} % of the dense stream, "
                     f"dense, so no 2:4 layout of the rest gets under {100 * (e + (1 - e) / 2):.1f} %"
                     + (f"; s24e, the embeddings 2:4 too, {100 * r_e:.1f} %" if r_e else "") + ")")
    if j in bw:
        low = [m for m in models if (m, j) in res and res[(m, j)][1] < 0.75 * bw[j] and m[0] != "s"]
        lines.append("every dense type at >= 75 % of the bandwidth: **"
                     + ("met" if not low else "not met") + "**"
                     + (f" (below: {', '.join(low)})" if low else ""))
    print(f"Targets of issue #18 at {j} thread(s): " + "; ".join(lines) + ".\n")
kl = facts.get("kernels", "").split()
if kl:
    print("**The row kernels alone** (`build/bench/matvec -t T -r 20 50272 768 STORAGE...`, the "
          "head's shape, read from memory; `-r 200 3072 768`, fc1's, from cache after the first "
          "product): one row of x, G weights/s (dense weights of the matrix over the best of the "
          "repetitions' products), median over the section's repetitions (range); \"vs f16\": "
          "against dense f16 at the same threads and shape. A row whose decode is slow while its "
          "kernel is fast from memory lost its time elsewhere.\n")

    def probe(shape, j):
        """{storage: [(G weights/s, GB/s stored) per repetition]}"""
        got = {}
        for r in runs(f"kern-{shape}-j{j}", "probe"):
            for line in r[4].splitlines():
                mm = re.match(r"(\S+) \S+ N=1 T=\d+: [\d.]+ ms, ([\d.]+) GB/s stored, ([\d.]+) G weights/s", line)
                if mm:
                    got.setdefault(mm.group(1), []).append((float(mm.group(3)), float(mm.group(2))))
        return got

    cols = [(sh, j) for sh in ("head", "fc1") for j in threads]
    pr = {c: probe(*c) for c in cols}
    print("| storage | " + " | ".join(f"{'head 50272x768' if sh == 'head' else 'fc1 3072x768'}, {j} thread(s): G weights/s (GB/s stored) | vs f16"
                                  for sh, j in cols) + " |")
    print("|---|" + "---|---|" * len(cols))
    for k in kl:
        cells = []
        for c in cols:
            v = pr[c].get(k, [])
            f16 = med([x[0] for x in pr[c].get("f16", [])])
            if not v:
                cells += ["-", "-"]
                continue
            g = [x[0] for x in v]
            cells += [f"{med(g):.2f} ({min(g):.2f}-{max(g):.2f}) ({med([x[1] for x in v]):.1f})",
                      f"{med(g) / f16:.2f}x" if f16 == f16 else "-"]
        print(f"| {k} | " + " | ".join(cells) + " |")
    print()
print(f"The section took {facts['total_time']}.")
PY

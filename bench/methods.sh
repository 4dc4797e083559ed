#!/bin/sh
# bench/methods.sh: the quality figures of the compression methods (issue #17), bench/methods.md:
# perplexity after pruning (lm-prune), after retraining the pruned models (lm-retrain), after
# quantization (lm-quant: RTN, GPTQ, CPTQuant mixed precision), the bits per layer and stored
# bits per weight of each quantized model (lm-info), the layer sensitivities of --mixed (its
# report on standard error) and lm-retrain's peak RSS (GNU time) -- every figure from a command
# run here, on the bundled models/opt-micro, next to the numbers transformers gives in
# models/opt-micro/reference.json (read by key; no number is typed into this script). The
# closing sentences are printed only when the figures of this run bear them out. Prints a
# Markdown section on stdout, progress on stderr:
#
#   sh bench/methods.sh > bench/methods.md                     # the whole of it
#   BENCH_METHODS_QUICK=1 sh bench/methods.sh > /tmp/methods.md  # a smoke run, a few minutes
#
#   BENCH_METHODS_QUICK=1    few windows, steps and calibration windows (the header says so;
#                            the figures are then not comparable with the reference)
#   BENCH_METHODS_RETRAIN=0  skip the retraining table (most of the time)
#   BENCH_METHODS_125M=0|1   peak RSS of lm-retrain on an OPT-125m-shaped model (one step each of
#                            --perp and --full, about a minute a step on 2 cores; default 1, 0
#                            with QUICK)
#   LM_BIN=DIR               the programs (default bin/, as make bench builds them)
#   BENCH_KEEP=1, TMPDIR: see bench/lib.sh
#
# Every model is made once and reused: one import (also the teacher of --reconstruct), one
# pruned model per method (the retraining starts from those files), one quantized model per row.
# The runs go one after the other; times do not matter for these figures. About 45 minutes on
# 2 busy cores without the retraining, which adds 15 to 30 minutes per 200-step run (4 of them).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh

LMB=${LM_BIN:-bin}
case $LMB in /*) ;; *) LMB=$PWD/$LMB ;; esac
QUICK=${BENCH_METHODS_QUICK:-0}
RETRAIN=${BENCH_METHODS_RETRAIN:-1}
if [ "$QUICK" = 1 ]; then M125=${BENCH_METHODS_125M:-0}; else M125=${BENCH_METHODS_125M:-1}; fi
for p in lm-import lm-prune lm-quant lm-retrain lm-eval lm-info lm-init; do
	[ -x "$LMB/$p" ] || fail "$LMB/$p missing: run make first"
done

TEST=data/novels-eval/novels-test.txt
CALF=data/novels-eval/novels-calib.txt
DATA=data/novels-eval/novels-retrain.txt
if [ "$QUICK" = 1 ]; then
	WIN=8 NS=8 STEPS=4 RSTEPS=2 RNS=8
else
	WIN='' NS=32 STEPS=200 RSTEPS=100 RNS=56
fi
SEQ=512
CAL="-c $CALF --nsamples $NS --seqlen $SEQ"
EVAL="lm-eval --ppl $TEST --seqlen $SEQ${WIN:+ --windows $WIN} --json"
RTR="-d $DATA -n $STEPS -b 8 -s $SEQ --seed 0"

bench_start methods
export PATH="$LMB:$PATH"
ROWS=$B/rows.tsv
: > "$ROWS"

# show CMD: how a command is printed in the tables (the calibration options as "…", the
# scratch folder left out)
show() { printf '%s' "$1" | sed -e "s|$CAL|-c …|g" -e "s|$CALF|…|g" -e "s|$B/||g"; }
# run ID CMD: run CMD (sh syntax, stdout to $R/ID.out) under GNU time -v, stderr to $R/ID.err
run() {
	say "$1: $(show "$2")"
	printf '%s\n' "$2" > "$R/$1.cmd"
	if ! /usr/bin/time -v -o "$R/$1.time" sh -c "$2" > "$R/$1.out" 2> "$R/$1.err"; then
		tail -n 20 "$R/$1.err" >&2
		fail "$1 failed: $2"
	fi
}
# ppl ID STREAM: perplexity of STREAM into $R/ID.ppl; lm-info -j of it into $R/ID.info
ppl() {
	run "$1.eval" "$EVAL -q $2"
	cp "$R/$1.eval.out" "$R/$1.ppl"
	lm-info -j "$2" > "$R/$1.info"
}
# row SECTION ID LABEL SHOWN: one row of a table, for the report below
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$ROWS"; }

run dense "lm-import models/opt-micro > $B/dense.lms"
ppl dense "$B/dense.lms"

# pruning, 50 % of every selected matrix (the default selection: q/k/v/out_proj/fc1/fc2)
for m in magnitude wanda sparsegpt; do
	case $m in
	magnitude) a="-s 0.5" ;;
	*) a="-s 0.5 -m $m $CAL" ;;
	esac
	run "prune-$m" "lm-prune -q $a < $B/dense.lms > $B/$m.lms"
	ppl "prune-$m" "$B/$m.lms"
	row prune "prune-$m" "$m" "lm-import models/opt-micro | lm-prune $(show "$a") | lm-eval --ppl …"
done

# retraining, from the pruned models above
if [ "$RETRAIN" = 1 ]; then
	# ID START RECIPE
	retrain() {
		run "$1" "lm-retrain -q $3 $RTR < $B/$2.lms > $B/$1.lms"
		ppl "$1" "$B/$1.lms"
		row retrain "$1" "$2" "$(show "$3")"
	}
	retrain rt-mag-perp magnitude "--perp --lr 1e-3"
	retrain rt-mag-full magnitude "--full --lr 1e-4"
	retrain rt-wanda-perp wanda "--perp --lr 1e-3"
	retrain rt-mag-masklora magnitude "--perp --mask-lora 16 --lr 1e-3"
	run rt-mag-recon "lm-retrain -q --reconstruct --perp --mask-lora 16 --teacher $B/dense.lms -c $CALF --nsamples $RNS -n $RSTEPS -s $SEQ --seed 0 < $B/magnitude.lms > $B/rt-mag-recon.lms"
	ppl rt-mag-recon "$B/rt-mag-recon.lms"
	row retrain rt-mag-recon magnitude "--reconstruct --perp --mask-lora 16 --teacher dense.lms -c … --nsamples $RNS -n $RSTEPS"
	if [ "$M125" = 1 ]; then
		run m125 "lm-init --like opt-125m -t f16 --seed 1 | lm-prune -q -s 0.5 > $B/m125.lms"
		for mode in perp full; do
			run "m125-$mode" "lm-retrain -q --$mode -d $DATA -n 1 -b 8 -s $SEQ --seed 0 < $B/m125.lms > /dev/null"
		done
	fi
fi

# quantization: ID LABEL ARGS (RTN unless -m; groups of 128 unless "per row")
while IFS='|' read -r id label args; do
	[ -n "$id" ] || continue
	args=$(eval "printf '%s' \"$args\"")  # expands $CAL
	# not -q: --mixed reports its sensitivities only then
	run "$id" "lm-quant $args < $B/dense.lms > $B/$id.lms"
	ppl "$id" "$B/$id.lms"
	row quant "$id" "$label" "lm-quant $(show "$args")"
done <<'EOF'
rtn8|RTN 8-bit|-b 8 -g 128
rtn4|RTN 4-bit|-b 4 -g 128
rtn4emb|RTN 4-bit, token embeddings too|-b 4 -g 128 --include '*embed_tokens*' --include '*proj.weight' --include '*fc?.weight'
gptq4|GPTQ 4-bit|-b 4 -g 128 -m gptq $CAL
gptq4a|GPTQ 4-bit act-order|-b 4 -g 128 -m gptq --act-order $CAL
gptq3|GPTQ 3-bit|-b 3 -g 128 -m gptq $CAL
gptq3a|GPTQ 3-bit act-order|-b 3 -g 128 -m gptq --act-order $CAL
gptq3r|GPTQ 3-bit per row|-b 3 -m gptq $CAL
gptq3ra|GPTQ 3-bit per row, act-order|-b 3 -m gptq --act-order $CAL
gptq2|GPTQ 2-bit|-b 2 -g 128 -m gptq $CAL
rtn3|RTN 3-bit|-b 3 -g 128
rtn2|RTN 2-bit|-b 2 -g 128
pmpq-84|PMPQ 8,4|--mixed pmpq --bits 8,4 -g 128 $CAL
cmpq-84|CMPQ 8,4|--mixed cmpq --bits 8,4 -g 128 $CAL
tdmpq-84|TDMPQ 8,4|--mixed tdmpq --bits 8,4 -g 128 $CAL
pmpq-84t6|PMPQ 8,4, 6 bits|--mixed pmpq --bits 8,4 --target-bits 6 -g 128 $CAL
cmpq-84t6|CMPQ 8,4, 6 bits|--mixed cmpq --bits 8,4 --target-bits 6 -g 128 $CAL
tdmpq-84t6|TDMPQ 8,4, 6 bits|--mixed tdmpq --bits 8,4 --target-bits 6 -g 128 $CAL
pmpq-1684|PMPQ 16,8,4|--mixed pmpq --bits 16,8,4 -g 128 $CAL
cmpq-1684|CMPQ 16,8,4|--mixed cmpq --bits 16,8,4 -g 128 $CAL
tdmpq-1684|TDMPQ 16,8,4|--mixed tdmpq --bits 16,8,4 -g 128 $CAL
pmpq-842|PMPQ 8,4,2|--mixed pmpq --bits 8,4,2 -g 128 $CAL
cmpq-842|CMPQ 8,4,2|--mixed cmpq --bits 8,4,2 -g 128 $CAL
tdmpq-842|TDMPQ 8,4,2|--mixed tdmpq --bits 8,4,2 -g 128 $CAL
EOF

bench_end
say "writing the tables"
$PY - "$B" "$QUICK" "$(show "$CAL")" "$CAL" "$(show "$EVAL")" "$(show "$RTR")" "$M125" "$RETRAIN" <<'PY'
import json, re, sys
from pathlib import Path

b, quick, calshown, cal, evalcmd, rtr, m125, retrain = sys.argv[1:]
B, R = Path(b), Path(b) / "runs"
ref = json.load(open("models/opt-micro/reference.json"))
facts = dict(l.split(": ", 1) for l in (B / "facts.txt").read_text().splitlines() if ": " in l)
rows = [l.rstrip("\n").split("\t") for l in open(B / "rows.tsv", encoding="utf-8")]

def by_prefix(d, prefix):
    ks = [k for k in d if k.startswith(prefix)]
    if len(ks) != 1:
        sys.exit(f"methods: reference.json: {len(ks)} keys start with {prefix!r}")
    return d[ks[0]]

PPL = ref["ppl_novels_test"]
RETR = by_prefix(ref, "retraining_baseline")
def ppl(i): return json.load(open(R / f"{i}.ppl"))["perplexity"]
def info(i): return json.load(open(R / f"{i}.info"))
def peak(i):  # MiB
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", (R / f"{i}.time").read_text())
    return int(m.group(1)) / 1024
LIN = re.compile(r"model\.decoder\.layers\.(\d+)\.(self_attn\.(q|k|v|out)_proj|fc1|fc2)\.weight$")
def layers(i):
    """bits per layer (from the quant attr, 16 for f16) and stored bits per weight over the
    linear matrices of the layers (lm-info's bytes, scales and zero points included)"""
    bits, nb, nw = {}, 0, 0
    for t in info(i)["tensors"]:
        m = LIN.match(t["name"])
        if not m:
            continue
        q = t.get("attrs", {}).get("quant")
        bits.setdefault(int(m.group(1)), set()).add(q["bits"] if q else 16)
        nb += 8 * t["bytes"]
        nw += t["params"]
    return [sorted(bits[l]) for l in sorted(bits)], nb / nw
def bstr(bits): return " ".join("/".join(str(x) for x in s) for s in bits)
def f4(x): return f"{x:.4f}"
def pct(x): return f"{100 * x:+.1f} %".replace("-", "−")
def rel(a, r):
    e = abs(a - r) / r
    return f"{e:.0e}" if e < 1e-4 else f"{100 * e:.2f} %"
def tensor(i, name):
    return next(t for t in info(i)["tensors"] if t["name"] == name)
def sens(i):
    """the layer sensitivities lm-quant --mixed reports on standard error"""
    s = {}
    for l in (R / f"{i}.err").read_text().splitlines():
        m = re.search(r": layer (\d+): sensitivity (\S+), (\d+) bits$", l)
        if m:
            s[int(m.group(1))] = float(m.group(2))
    return [s[l] for l in sorted(s)]
def g4(xs): return ", ".join(f"{x:.4g}" for x in xs)

d = info("dense")
wins = json.load(open(R / "dense.ppl"))["windows"]
print("## Quality of the compression methods (opt-micro)\n")
if quick == "1":
    print("**Smoke run (BENCH_METHODS_QUICK=1): few windows, calibration windows and steps; "
          "the figures are not comparable with the reference.**\n")
print(f"Perplexity of `{json.load(open(R / 'dense.ppl'))['file']}`, {wins} windows of "
      f"{json.load(open(R / 'dense.ppl'))['seqlen']} tokens, as `{evalcmd}`, of each model "
      "below; next to the numbers transformers gives in `models/opt-micro/reference.json` "
      f"(the reference's own protocol: {ref['windows_novels_test']} windows). Calibration, where used: "
      f"`{cal}` (shown as `-c …`). Generated by `sh bench/methods.sh`, {facts['date']}, "
      f"commit {facts['commit']}{' (uncommitted changes)' if facts['dirty'] == 'yes' else ''}, "
      f"{facts['cpu']}, {facts['cores']} cores (load {facts['load_start']} at the start, "
      f"{facts['load_end']} at the end), {facts['total_time']} in all.\n")

# --- pruning
dense_ppl = ppl("dense")
print("### Pruning (`lm-prune`), 50 % of q/k/v/out_proj/fc1/fc2\n")
print("| method | command | lm-prune | reference | error |\n|---|---|---|---|---|")
pr = {}
for sec, i, label, shown in rows:
    if sec != "prune":
        continue
    p = ppl(i)
    pr[label] = p
    r = by_prefix(PPL, f"{label}_0.5")
    print(f"| {label} | `{shown.replace('|', chr(92) + '|')}` | {f4(p)} | {f4(r)} | {rel(p, r)} |")

# --- retraining
rt = {}
if any(r[0] == "retrain" for r in rows):
    print(f"\n### Retraining after pruning (`lm-retrain`), `{rtr}`\n")
    # trainable values, counted from the dense model as lm-retrain(1) defines its subsets
    perp_n = sum(t["params"] for t in d["tensors"]
                 if (".layers." in t["name"] and (t["name"].endswith(".bias") or "layer_norm" in t["name"]))
                 or "final_layer_norm" in t["name"])
    full_n = sum(t["params"] for t in d["tensors"]
                 if ".layers." in t["name"] or "final_layer_norm" in t["name"])
    base = {"rt-mag-perp": "magnitude_0.5, then biases+LayerNorm only",
            "rt-mag-full": "magnitude_0.5, then all decoder-layer parameters",
            "rt-wanda-perp": "wanda_0.5, then biases+LayerNorm only"}
    print("| start | recipe | lm-retrain | transformers baseline | difference |\n|---|---|---|---|---|")
    seen = set()
    for sec, i, start, recipe in rows:
        if sec != "retrain":
            continue
        p = ppl(i)
        rt[i] = p
        what = f"{start} 0.5" + ("" if start in seen else f" ({pr[start]:.2f})")
        seen.add(start)
        note = ""
        if i.endswith("perp") and "--mask-lora" not in recipe:
            note = f" (biases + LayerNorm, {perp_n:,} values)"
        elif i.endswith("full"):
            note = f" ({full_n:,} values, zeros kept)"
        if "--mask-lora" in recipe:
            sp = [t["sparsity"] for t in info(i)["tensors"] if LIN.match(t["name"])]
            sp0 = [t["sparsity"] for t in info(f"prune-{start}")["tensors"] if LIN.match(t["name"])]
            kept = "every matrix's sparsity as pruned" if sp == sp0 else "sparsity CHANGED"
            rng = (f"{100 * min(sp):.1f} %" if f"{min(sp):.3f}" == f"{max(sp):.3f}"
                   else f"{100 * min(sp):.1f}–{100 * max(sp):.1f} %")
            note = f" (MaskLoRA merged; {kept}: {rng})"
        if i in base:
            r = by_prefix(RETR, base[i])
            print(f"| {what} | `{recipe}`{note} | {p:.2f} | {r:.2f} | {pct(p / r - 1)} |")
        else:
            print(f"| {what} | `{recipe}`{note} | {p:.2f} | | |")
    rss = f"opt-micro `--perp` {peak('rt-mag-perp'):.0f} MiB, `--full` {peak('rt-mag-full'):.0f} MiB"
    if m125 == "1":
        rss += (f"; OPT-125m shape (`lm-init --like opt-125m -t f16 --seed 1 | lm-prune -s 0.5`, one step) "
                f"`--perp` {peak('m125-perp') / 1024:.2f} GiB, `--full` {peak('m125-full') / 1024:.2f} GiB")
    print(f"\nPeak RSS at 8×512 (`/usr/bin/time -v`): {rss}.")
elif retrain != "1":
    print("\n(Retraining after pruning: not run, BENCH_METHODS_RETRAIN=0.)")

# --- quantization
print("\n### Quantization (`lm-quant`), groups of 128 (`-g 128`) unless \"per row\"\n")
print("| config | command | bits per layer | stored bits/weight | perplexity | reference |\n|---|---|---|---|---|---|")
db, dsb = layers("dense")
print(f"| f16 (dense) | `lm-import models/opt-micro` | {bstr(db)} | {dsb:.3g} | {f4(dense_ppl)} | {f4(PPL['dense'])} |")
Q = {}
for sec, i, label, shown in rows:
    if sec != "quant":
        continue
    bits, sb = layers(i)
    p = ppl(i)
    Q[i] = (label, bits, sb, p)
    note = ""
    if i == "rtn4emb":
        e = "model.decoder.embed_tokens.weight"
        note = (f" (embed_tokens {tensor(i, e)['bytes'] / 1e6:.1f} MB instead of "
                f"{tensor('dense', e)['bytes'] / 1e6:.1f})")
    r = f4(by_prefix(PPL, "rtn_w4g128")) if i == "rtn4" else ""
    print(f"| {label} | `{shown}`{note} | {bstr(bits)} | {sb:.3g} | {f4(p)} | {r} |")

# --- sensitivities and what the figures say
out = []
ps, cs, t4, t2 = sens("pmpq-84"), sens("cmpq-84"), sens("tdmpq-84"), sens("tdmpq-842")
same4 = g4(t4) == g4(sens("tdmpq-1684"))
out.append(f"Layer sensitivities (layers 0–{len(ps) - 1}, as `lm-quant --mixed` reports them, from "
           f"`{calshown}`): PMPQ {g4(ps)} (perplexity increase when 30 % of the layer is "
           f"magnitude-pruned); CMPQ {g4(cs)} (1 − mean first canonical correlation); TDMPQ {g4(t4)} "
           f"with Q = RTN q4g128 (levels 8,4{' and 16,8,4' if same4 else ''}) and {g4(t2)} with q2g128 "
           "(levels 8,4,2) (sum over the layer's linear weights of |gradient × (Q(w) − w)|).")
def order(s): return sorted(range(len(s)), key=lambda l: -s[l])
op, ot = order(ps), order(t4)
ranks = f"TDMPQ ranks layer {ot[0]} first and layer {ot[-1]} last"
ranks += ", as PMPQ does" if (op[0], op[-1]) == (ot[0], ot[-1]) else f"; PMPQ ranks layer {op[0]} first and layer {op[-1]} last"
sets = {"84": "8,4", "84t6": "6 bits", "1684": "16,8,4", "842": "8,4,2"}
same = [v for k, v in sets.items() if Q[f"tdmpq-{k}"][1] == Q[f"pmpq-{k}"][1]]
ranks += (f", and makes the same choices as PMPQ at {' and at '.join(same)}" if same
          else ", and makes other choices than PMPQ at every setting") + "."
out.append(ranks)
pairs = [("gptq4", "gptq4a", "4 bits in groups of 128"), ("gptq3", "gptq3a", "3 bits in groups of 128"),
         ("gptq3r", "gptq3ra", "3 bits per row")]
gain = [(Q[a][3] - Q[b][3], a, b, w) for a, b, w in pairs]
def arrow(a, b): return f"{Q[a][3]:.2f} → {Q[b][3]:.2f}"
if all(g > 0 for g, *_ in gain):
    g, a, bb, w = max(gain)
    out.append(f"GPTQ `--act-order` (static groups) is better than plain GPTQ at every setting tried "
               f"({'; '.join(f'{w_}: {arrow(a_, b_)}' for _, a_, b_, w_ in gain)}), most at {w}.")
else:
    out.append("GPTQ `--act-order` against plain GPTQ: " +
               "; ".join(f"{w_}: {arrow(a_, b_)} ({'better' if g_ > 0 else 'not better'})" for g_, a_, b_, w_ in gain) + ".")
eq = [(v, Q[f"pmpq-{k}"], Q[f"cmpq-{k}"]) for k, v in sets.items()
      if f"{Q[f'pmpq-{k}'][2]:.3g}" == f"{Q[f'cmpq-{k}'][2]:.3g}"]
if eq:
    win = [v for v, p_, c_ in eq if p_[3] < c_[3]]
    s = (f"At equal stored size PMPQ beats CMPQ at every setting where the sizes are equal ({', '.join(v for v, *_ in eq)})"
         if len(win) == len(eq) else
         "At equal stored size: " + "; ".join(f"{v}: PMPQ {p_[3]:.2f}, CMPQ {c_[3]:.2f}" for v, p_, c_ in eq))
    out.append(s + ".")
lo, hi = Q["rtn8"][3], Q["rtn4"][3]
mixed = [v for k, v in Q.items() if k.split("-")[0] in ("pmpq", "cmpq", "tdmpq")]
no2 = [v for v in mixed if all(2 not in s for s in v[1])]
with2 = [v for v in mixed if any(2 in s for s in v[1])]
inside = [v for v in no2 if lo <= v[3] <= hi]
if no2:
    out.append(f"{'Every' if len(inside) == len(no2) else f'{len(inside)} of {len(no2)}'} mixed-precision "
               f"model without a 2-bit layer lands between uniform RTN 8-bit ({lo:.2f}) and 4-bit ({hi:.2f}).")
if with2:
    rb = Q["rtn4"][2]
    worse = [v for v in with2 if v[3] > hi and round(v[2], 3) >= round(rb, 3)]
    best = min(with2, key=lambda v: v[3])
    smallest = min(with2, key=lambda v: (v[2], v[3]))
    if len(worse) == len(with2):
        out.append(f"Any 2-bit layer costs more than mixed precision saves: uniform RTN 4-bit ({hi:.2f} at "
                   f"{rb:.3g} bits) beats every allocation with a 2-bit layer, at as many stored bits or more "
                   f"(the best, {best[0]}, {best[3]:.2f} at {best[2]:.3g} bits; {smallest[0]} {smallest[3]:.1f} at "
                   f"{smallest[2]:.3g} bits).")
    else:
        out.append("With a 2-bit layer: " + "; ".join(f"{v[0]} {v[3]:.2f} at {v[2]:.3g} bits" for v in with2) +
                   f" (uniform RTN 4-bit: {hi:.2f} at {rb:.3g} bits).")
print()
print(" ".join(out))
PY

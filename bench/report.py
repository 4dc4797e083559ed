#!/usr/bin/python3
"""bench/report.py: turn the raw files a benchmark script left in its scratch folder into Markdown.

    /usr/bin/python3 bench/report.py --forward SCRATCH > bench/forward.md   # run.sh: (a), (b)
    /usr/bin/python3 bench/report.py --big SCRATCH > bench/big.md           # big.sh: (c)
    /usr/bin/python3 bench/report.py --prune SCRATCH > bench/prune.md       # prune.sh
    /usr/bin/python3 bench/report.py --retrain SCRATCH > bench/retrain.md   # retrain.sh
    /usr/bin/python3 bench/report.py --results SCRATCH > bench/RESULTS.md   # run.sh: all parts

SCRATCH holds facts.txt (key: value lines) and runs/ with, per measured run ID (bench/lib.sh's
measure): ID.cmd (the command, run from the repository root with B=SCRATCH), ID.out (its
stdout, JSON from the programs' --json), ID.time (GNU time -v), ID.stat0 and ID.stat1
(/proc/stat before and after, to show how busy the rest of the machine was), and whatever the
section leaves beside them (lm-retrain's --log as ID.log, torch_prune.py --compare's JSON).
Run IDs are GROUP.VARIANT.rREP. --results reads the bench/*.md files of the working tree.
"""
import glob
import json
import os
import re
import statistics
import sys

S = sys.argv[-1]
R = os.path.join(S, "runs")


def facts():
    d = {}
    with open(os.path.join(S, "facts.txt")) as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k.strip()] = v.strip()
    return d


def gnu_time(path):
    t = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().rpartition(": ")
            t[k] = v
    wall = t.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "0:0")
    sec = 0.0
    for part in wall.split(":"):
        sec = sec * 60 + float(part)
    return {"rss": int(t.get("Maximum resident set size (kbytes)", 0)) * 1024, "wall": sec,
            "cpu": float(t.get("User time (seconds)", 0)) + float(t.get("System time (seconds)", 0)),
            "status": int(t.get("Exit status", 0))}


def busy(path):
    v = [int(x) for x in open(path).read().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def load_runs():
    runs = {}
    for cmdf in sorted(glob.glob(os.path.join(R, "*.cmd"))):
        rid = os.path.basename(cmdf)[:-4]
        group, variant, rep = rid.rsplit(".", 2)
        r = {"id": rid, "cmd": open(cmdf).read().strip(), "rep": int(rep[1:])}
        r.update(gnu_time(os.path.join(R, rid + ".time")))
        try:
            r["json"] = json.loads(open(os.path.join(R, rid + ".out")).read().strip().splitlines()[-1])
        except (ValueError, IndexError):
            r["json"] = {}
        try:
            others = busy(os.path.join(R, rid + ".stat1")) - busy(os.path.join(R, rid + ".stat0")) - r["cpu"]
            r["others"] = max(0.0, others / r["wall"]) if r["wall"] > 0 else 0.0
        except (OSError, ValueError, IndexError):
            r["others"] = float("nan")
        runs.setdefault((group, variant), []).append(r)
    return runs


def head(*cols):
    """a Markdown table's header row and its separator"""
    return "| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|"


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def mib(b):
    return f"{b / 2**20:,.0f} MiB"


def sgemm_passes(runs):
    """bench/sgemm's lines, per pass: {(shape, threads): row}"""
    passes = []
    for r in sorted(runs.get(("sgemm", "roof"), []), key=lambda r: r["rep"]):
        rows = {}
        for line in open(os.path.join(R, r["id"] + ".out")):
            if line.startswith("#") or not line.strip():
                continue
            name, i, o, t, m, lo, hi, n = line.split()
            rows[(name, int(t))] = {"shape": name, "in": int(i), "out": int(o), "threads": int(t),
                                    "median": float(m), "min": float(lo), "max": float(hi), "runs": int(n)}
        passes.append((r, rows))
    return passes


def sgemm_roof(passes):
    """the higher of the passes' medians, per shape and threads"""
    roof = {}
    for _, rows in passes:
        for k, row in rows.items():
            if k not in roof or row["median"] > roof[k]["median"]:
                roof[k] = row
    return list(roof.values())


# ---- OPT-125m FLOPs per token (stated in the report) ----
C125, F125, L125, V125 = 768, 3072, 12, 50272


def flops_per_token(T):
    """2 * (weights in matmuls) + causal attention: QK^T and AV cost 2*C*t each for a token at
    position t, averaged over t = 1..T that is 2*2*C*(T+1)/2 ~= 2*T*C per layer."""
    proj = 2 * (4 * C125 * C125) * L125
    ffn = 2 * (2 * C125 * F125) * L125
    head = 2 * V125 * C125
    attn = 2 * T * C125 * L125
    return {"proj": proj, "ffn": ffn, "head": head, "attn": attn, "total": proj + ffn + head + attn}


def roof_tok_s(T, threads, sg):
    """tokens/s if every matmul ran at bench/sgemm's median rate for its shape at N=2048 rows;
    attention's batched T x T products are given the 768x768 rate."""
    rate = {r["shape"]: r["median"] * 1e9 for r in sg if r["threads"] == threads}
    f = flops_per_token(T)
    fc = 2 * C125 * F125 * L125  # fc1 and fc2 each
    sec = (f["proj"] + f["attn"]) / rate["q/k/v/out_proj"] + fc / rate["fc1"] + fc / rate["fc2"] \
        + f["head"] / rate["lm_head"]
    return 1.0 / sec


def big_md():
    """Section (c) from SCRATCH/big (written by bench/big.sh)."""
    G = os.path.join(S, "big")
    rd = lambda n: open(os.path.join(G, n)).read().strip()
    keys13 = sorted(f[:-4] for f in os.listdir(G) if f.startswith("info13-") and f.endswith(".cmd"))
    t = {k: gnu_time(os.path.join(G, k + ".time")) for k in ("init27", "eval27")}
    for k in keys13:
        n = k.split("-")[1]
        t["import13-" + n] = gnu_time(os.path.join(G, f"import13-{n}.time"))
        t["info13-" + n] = gnu_time(os.path.join(G, f"info13-{n}.time"))
    out = []
    p = out.append
    m = re.search(r"total: (\d+) tensors, (\d+) parameters, (\d+) bytes", rd(keys13[0] + ".out"))
    ev = json.loads(rd("eval27.out").splitlines()[-1])
    GiB = 2**30
    p(f"Measured on {rd('date')} at commit `{rd('commit')}` by `BENCH_BIG=1 make bench` "
      f"(`bench/big.sh`); peak RSS of each program of a pipe from its own `/usr/bin/time -v`.\n")
    p(head('pipeline', 'program', 'peak RSS', 'wall', 'CPU s', 'for comparison'))
    ok = lambda b: "✓ < 1 GB" if b < 1e9 else "✗ ≥ 1 GB"
    # OPT-1.3b: C=2048, V=50272: the largest tensor is the token embedding
    emb13 = 50272 * 2048 * 4
    for k in keys13:
        n = k.split("-")[1]
        a, b = t["import13-" + n], t["info13-" + n]
        p(f"| OPT-1.3b f32 folder, {int(rd('make13.bytes')) / 1e9:.2f} GB "
          f"({int(m.group(2)) / 1e9:.2f} G parameters), run {n} | lm-import | **{mib(a['rss'])}** | "
          f"{a['wall']:.1f} s | {a['cpu']:.1f} | target {ok(a['rss'])}; one record is all a filter must "
          f"hold: the largest, embed_tokens f32, is {mib(emb13)} |")
        p(f"| ″ | lm-info | **{mib(b['rss'])}** | {b['wall']:.1f} s | {b['cpu']:.1f} | target {ok(b['rss'])} (″) |")
    # OPT-2.7b: C=2560, F=10240, L=32, V=50272, P=2048, f16 weights
    C, F, L, V, P, T = 2560, 10240, 32, 50272, 2048, int(ev["seqlen"])
    layer = (4 * C * C + 2 * C * F) * 2 + (4 * C + F + C + 4 * C) * 4
    emb = V * C * 2 + (P + 2) * C * 2
    model = L * layer + emb
    acts = T * C * 4 + (6 * T * C + T * F + T * C) * 4
    p(f"| OPT-2.7b f16 stream ({model / GiB:.1f} GiB of weights), never on disk | lm-init | "
      f"**{mib(t['init27']['rss'])}** | {t['init27']['wall']:.1f} s | {t['init27']['cpu']:.1f} | generator |")
    p(f"| ″ | lm-eval, {ev['windows']} window of {T} | **{mib(t['eval27']['rss'])}** | {t['eval27']['wall']:.1f} s | "
      f"{t['eval27']['cpu']:.1f} | embeddings {mib(emb)} + one layer {mib(layer)} + activations "
      f"≈ {mib(acts)} (X, T×C f32, and the forward arena: 6·T·C + T·F + T·C floats) "
      f"= {mib(emb + layer + acts)}, not the {model / 1e9:.1f} GB model |")
    p("")
    p(f"lm-eval's report for the 2.7b run: perplexity {ev['perplexity']:.1f} (random weights), "
      f"{ev['tokens_per_second']:.1f} tokens/s over {ev['seconds']:.0f} s, which includes tokenizing the "
      f"whole 300 kB text and sharing the 2 cores with lm-init generating the weights.\n")
    p("Commands (from the repository root, `$B` the scratch folder):\n")
    for k, what in [("make13", "make the 1.3b folder, " + f"{int(rd('make13.secs'))} s")] + \
            [(k, f"measure (run {k.split('-')[1]}), {int(rd(k + '.secs'))} s") for k in keys13] + \
            [("eval27", f"measure, {int(rd('eval27.secs'))} s")]:
        p(f"    # {what}\n    {rd(k + '.cmd')}")
    p("")
    if os.path.exists(os.path.join(G, "prune27.cmd")):
        p(prune27_md(int(rd("prune27.layers")), gnu_time(os.path.join(G, "p27-init.time")),
                     gnu_time(os.path.join(G, "p27-prune.time")), rd("prune27.cmd"),
                     f"{int(rd('prune27.secs'))} s", heading="####"))
    return "\n".join(out)



def caveat(runs, fa, what):
    """A paragraph when the rest of the machine kept more than a quarter of a core busy."""
    allo = [r["others"] for rs in runs.values() for r in rs]
    mo = med(allo)
    if not mo > 0.25:
        return ""
    return (f"**Caveat: these runs shared the machine.** Over the {len(allo)} measured runs the rest of the "
            f"machine kept a median of {mo:.2f} of the {fa.get('cores')} cores busy (column *others*), "
            f"so absolute figures are below what an idle machine gives. {what} were measured interleaved "
            "under the same load, so their ratios are the more trustworthy figures; rerun on an idle "
            "machine for absolute ones.\n")


def measured_on(fa, how):
    return (f"Measured on {fa.get('date')} at commit `{fa.get('commit')}`"
            f"{' with uncommitted changes' if fa.get('dirty') == 'yes' else ''} by {how}, "
            f"in {fa.get('total_time', '?')}; {fa.get('cores')} cores ({fa.get('cpu')}), torch "
            f"{fa.get('torch')}, load average {fa.get('load_start')} at the start and "
            f"{fa.get('load_end')} at the end; waited {fa.get('quiet_wait', '?')} for a quiet machine.")


def forward_md():
    """Sections (a) and (b): bench/run.sh's own measurements (kept as bench/forward.md)."""
    fa = facts()
    runs = load_runs()
    passes = sgemm_passes(runs)
    sg = sgemm_roof(passes)
    out = []
    p = out.append

    # ---- (a) roof ----
    p("## (a) The roof: OpenBLAS `cblas_sgemm`\n")
    p(measured_on(fa, f"`make bench` (`sh bench/run.sh`, `BENCH_REPS={fa.get('reps')}`): sections (a) and (b)") + "\n")
    p(caveat(runs, fa, "lm-eval and PyTorch, and the roof at the start and at the end of (b),"))
    p("`bench/sgemm.c`, built by run.sh as `cc -O2 -std=c11 -o $B/sgemm bench/sgemm.c -lopenblas`: "
      "Y[N×out] = X[N×in]·Wᵀ (an `nn.Linear` forward, row-major, W transposed), N = 2048 rows; "
      "per shape and thread count one warm-up call, then the median (and range) of the timed calls; "
      "threads set with `openblas_set_num_threads`. It runs twice, at the start and at the end "
      "of the run, so that a busy spell on a shared machine does not lower the roof: the **roof** "
      "is the higher of the two medians.\n")
    if passes:
        hdr = " | ".join(f"pass {r['rep']}: median (min–max) GFLOP/s" for r, _ in passes)
        p(f"| shape (in→out) | threads | {hdr} | **roof** GFLOP/s |")
        p("|---|---|" + "---|" * len(passes) + "---|")
        for row in sorted(sg, key=lambda r: (["q/k/v/out_proj", "fc1", "fc2", "lm_head"].index(r["shape"]), r["threads"])):
            k = (row["shape"], row["threads"])
            cells = " | ".join(f"{rows[k]['median']:.1f} ({rows[k]['min']:.1f}–{rows[k]['max']:.1f})" for _, rows in passes)
            p(f"| {row['shape']} ({row['in']}→{row['out']}) | {row['threads']} | {cells} | **{row['median']:.1f}** |")
        p("")
        p(head('pass', 'command', 'calls per median', 'others'))
        for r, rows in passes:
            p(f"| {r['rep']} | `{r['cmd']}` | {next(iter(rows.values()))['runs']} | {r['others']:.2f} |")
        p("")

    pk = [float(fa[k].split("gflops ")[1].split()[0]) for k in ("bf16_peak_1", "bf16_peak_2")
          if "gflops " in fa.get(k, "")]
    p32 = [float(fa[k].split("fp32_gflops ")[1].split()[0]) for k in ("bf16_peak_1", "bf16_peak_2")
           if "fp32_gflops " in fa.get(k, "")]
    if pk:
        p(f"bf16 peak (`bench/bf16peak.c`: `vdpbf16ps` on registers only, 1 thread, 64 flops an "
          f"instruction; the higher of the start and end of the run): **{max(pk):.1f} GFLOP/s**, "
          f"the roof of `--compute bf16`."
          + (f" The same loop of fp32 FMAs (`vfmadd231ps`, 32 flops an instruction): "
             f"**{max(p32):.1f} GFLOP/s**, so bf16 can gain at most {max(pk) / max(p32):.2f}× over "
             f"an fp32 kernel at the core's FMA peak on this CPU." if p32 else "") + "\n")

    # ---- (b) forward ----
    p("## (b) Perplexity forward: `lm-eval --ppl` against PyTorch\n")
    p("Both programs read the same token ids (`$B/ids.lms`, written once by "
      "`lm-eval --save-ids`) and follow the same protocol: floor(N/T) windows of T ids (bounded by "
      "`--windows`), per window the mean cross-entropy of the T−1 shifted predictions, "
      "perplexity = exp(mean of the window means); `--batch 4` windows per forward on both sides. "
      "*tokens/s* is windows×T over each program's own clock, which on both sides starts before "
      "the ids and the weights are read (lm-eval streams them from a file, torch_opt.py parses "
      "the safetensors file) and stops after the last loss; *wall* is the whole process "
      "(`/usr/bin/time -v`, so it includes Python's and torch's import for torch_opt.py); "
      "*CPU* is user+system seconds; *peak RSS* is GNU time's *Maximum resident set size*. "
      f"Each row is the median over its *runs* (OPT-125m: {fa.get('reps')} interleaved repetitions; "
      "opt-micro: one), with the range of tokens/s; *others* is the median.\n")
    p("Threads: `lm-eval -j N` (it calls `openblas_set_num_threads(N)` and sizes its own pool); "
      "torch_opt.py `--threads N` calls `torch.set_num_threads(N)` under "
      "`OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N` (torch 1.13 here calls the system OpenBLAS, "
      "which otherwise starts one thread per core whatever torch's setting). PyTorch runs at its "
      "best setting on this machine: `GLIBC_TUNABLES=glibc.malloc.hugetlb=1 OMP_WAIT_POLICY=PASSIVE` "
      "(docs/performance.md §4); compare its 1- and 2-thread rows for its best thread count.\n")

    order = {"micro": 0, "text": 1, "m125": 2}
    groups = sorted({g for g, _ in runs if g != "sgemm"}, key=lambda g: (order.get(g.split("-")[0], 3), g))
    summary = {}
    for g in groups:
        variants = [v for (gg, v) in runs if gg == g]
        first = runs[(g, variants[0])][0]["json"]
        title = {"micro": "opt-micro (models/opt-micro, f16 weights, 4 layers, C=256)",
                 "text": "opt-micro, text input (tokenizing included)"}.get(g.split("-")[0], "")
        if g.startswith("m125"):
            title = "OPT-125m-shaped random model (`lm-init --like opt-125m --seed 1`, f32)"
        nw, nt = int(first.get("windows", 0)), int(g.rsplit("-j", 1)[-1])
        p(f"### {title}: T={first.get('seqlen')}, {nw} window{'s' if nw != 1 else ''} "
          f"({nw * int(first.get('seqlen', 0))} tokens), {nt} thread{'s' if nt != 1 else ''}\n")
        p(head('program', 'setting', 'threads', 'runs', 'tokens/s (range)', 'wall s', 'CPU s', 'peak RSS', 'perplexity', 'others', 'command'))
        for v in sorted(variants, key=lambda v: (not v.startswith("lm"), v)):
            rs = runs[(g, v)]
            tps = [r["json"].get("tokens_per_second", float("nan")) for r in rs]
            prog, _, setting = v.partition("-")
            row = {"tps": med(tps), "lo": min(tps), "hi": max(tps), "rss": med([r["rss"] for r in rs]),
                   "wall": med([r["wall"] for r in rs]), "cpu": med([r["cpu"] for r in rs]),
                   "ppl": rs[0]["json"].get("perplexity", float("nan")),
                   "others": med([r["others"] for r in rs]), "cmd": rs[0]["cmd"], "n": len(rs)}
            summary[(g, v)] = row
            rng = f" ({row['lo']:.0f}–{row['hi']:.0f})" if len(rs) > 1 else ""
            p(f"| {'lm-eval' if prog == 'lmeval' else 'torch_opt.py'} | {setting or '-'} | "
              f"{g.rsplit('-j', 1)[-1]} | {row['n']} | **{row['tps']:.0f}**{rng} | {row['wall']:.1f} | {row['cpu']:.1f} | "
              f"{mib(row['rss'])} | {row['ppl']:.4f} | {row['others']:.2f} | `{row['cmd']}` |")
        p("")

    tx, ids2 = summary.get(("text-s512-j2", "lmeval")), summary.get(("micro-s512-j2", "lmeval"))
    if tx and ids2 and runs[("micro-s512-j2", "lmeval")][0]["json"].get("windows") == 138:
        p(f"Reading text instead of ids costs lm-eval {tx['wall'] - ids2['wall']:.1f} s more wall time "
          f"for the same 138 windows at 2 threads ({tx['wall']:.1f} s against {ids2['wall']:.1f} s): "
          "that is its tokenizer on the 300 kB of novels-test.txt.\n")

    # ---- correctness ----
    p("### Same numbers: perplexity agreement\n")
    p(head('model', 'T', 'threads', 'lm-eval', 'torch_opt.py', 'relative difference', 'reference (transformers)'))
    for g in groups:
        if g.startswith("text") or g.startswith("m125w"):
            continue
        a = summary.get((g, "lmeval"))
        b = summary.get((g, "torch"))
        if not a or not b:
            continue
        first = runs[(g, "lmeval")][0]["json"]
        ref = "70.2458 (reference.json, all 138 windows)" if g.startswith("micro") and first.get("windows") == 138 else "-"
        rel = abs(a["ppl"] - b["ppl"]) / b["ppl"]
        p(f"| {'opt-micro' if g.startswith('micro') else 'OPT-125m random'} | {first.get('seqlen')} | "
          f"{g.rsplit('-j', 1)[-1]} | {a['ppl']:.6f} | {b['ppl']:.6f} | {rel:.1e} {'✓' if rel < 1e-4 else '✗'} | {ref} |")
    p("")

    # ---- comparison and roof ----
    p("### Summary: lm-eval against PyTorch and against the roof (OPT-125m shape)\n")
    p("FLOPs per token of the OPT-125m forward (C=768, F=3072, L=12, V=50272, T = window length), "
      "counted from the shapes:\n")
    p("    FLOP/token = 2·L·(4C² + 2CF)  +  2·V·C  +  L·2·T·C")
    p("               = 2·(weights in the decoder's matmuls) + 2·(LM head weights)")
    p("                 + causal attention (QKᵀ and AV cost 2·C·t each for the token at position t;")
    p("                   averaged over t = 1..T that is 2·2·C·(T+1)/2 ≈ 2·T·C per layer)\n")
    for T in (512, 2048):
        f = flops_per_token(T)
        p(f"T={T}: {f['proj'] / 1e6:.1f} (attention projections) + {f['ffn'] / 1e6:.1f} (FFN) + "
          f"{f['head'] / 1e6:.1f} (LM head) + {f['attn'] / 1e6:.1f} (attention) = "
          f"**{f['total'] / 1e6:.1f} MFLOP/token**.  ")
    p("")
    p("*roof tokens/s* = 1 / Σ(FLOPs of each matmul shape / its sgemm median rate at the same "
      "threads), attention's products counted at the 768×768 rate: what the forward would reach "
      "if it did nothing but the matmuls at OpenBLAS speed. *% roof* = tokens/s ÷ roof tokens/s "
      "(equivalently, achieved GFLOP/s ÷ the FLOP-weighted sgemm rate). *vs torch* = lm-eval "
      "tokens/s ÷ PyTorch's at the same threads. *others*: lm-eval's / PyTorch's.\n")
    p(head('T × windows', 'threads', 'roof tok/s', 'lm-eval tok/s', '% roof', 'GFLOP/s', 'torch tok/s', 'torch % roof', 'lm-eval vs torch', 'lm-eval RSS', 'torch RSS', 'others'))
    for g in groups:
        if not g.startswith("m125"):
            continue
        a = summary.get((g, "lmeval"))
        tv = [(summary[(g, v)]["tps"], v) for (gg, v) in summary if gg == g and v.startswith("torch")]
        if not a or not tv:
            continue
        bt, bv = max(tv)
        b = summary[(g, bv)]
        first = runs[(g, "lmeval")][0]["json"]
        T, th = int(first["seqlen"]), int(g.rsplit("-j", 1)[-1])
        roof = roof_tok_s(T, th, sg)
        fl = flops_per_token(T)["total"]
        p(f"| {T} × {first['windows']} | {th} | {roof:.0f} | **{a['tps']:.0f}** | **{100 * a['tps'] / roof:.0f} %** | "
          f"{a['tps'] * fl / 1e9:.1f} | {bt:.0f} | {100 * bt / roof:.0f} % | "
          f"**{a['tps'] / bt:.2f}×** | {mib(a['rss'])} | {mib(b['rss'])} | {a['others']:.2f} / {b['others']:.2f} |")
    p("")

    # ---- steady state: the marginal rate between 4 and 12 windows ----
    p("### Steady state and whole process (OPT-125m shape, T=512)\n")
    p("*steady state* = the 8 windows (4,096 tokens) that 12 windows add over 4, divided by the "
      "extra whole-process wall time they cost (medians): reading the weights, Python's and torch's "
      "imports and the first calls' warm-up cancel out, on both sides alike. *whole process* = "
      "the 4-window run's tokens over its whole wall time (`/usr/bin/time`), and its peak RSS. "
      "Ranges: the steady-state rate of each repetition's pair (repetition r of 4 and of 12 windows).\n")
    p(head('threads', 'lm-eval steady tok/s', 'torch steady tok/s', 'lm-eval ÷ torch', 'lm-eval whole-process tok/s (wall s)', 'torch whole-process tok/s (wall s)', 'lm-eval ÷ torch', 'peak RSS lm-eval / torch', 'others'))
    for th in (1, 2):
        g4, g12 = f"m125-s0512-j{th}", f"m125w12-s0512-j{th}"
        cells, ok = [], True
        st = {}
        for v in ("lmeval", "torch"):
            r4, r12 = runs.get((g4, v)), runs.get((g12, v))
            if not r4 or not r12:
                ok = False
                break
            per = [8 * 512 / (b["wall"] - a["wall"]) for a, b in zip(r4, r12) if b["wall"] > a["wall"]]
            d = med([r["wall"] for r in r12]) - med([r["wall"] for r in r4])
            st[v] = (8 * 512 / d if d > 0 else float("nan"), min(per) if per else float("nan"),
                     max(per) if per else float("nan"), med([r["wall"] for r in r4]),
                     med([r["rss"] for r in r4]), med([r["others"] for r in r4 + r12]))
        if not ok:
            continue
        a, b = st["lmeval"], st["torch"]
        p(f"| {th} | **{a[0]:.0f}** ({a[1]:.0f}–{a[2]:.0f}) | {b[0]:.0f} ({b[1]:.0f}–{b[2]:.0f}) | **{a[0] / b[0]:.2f}×** | "
          f"{2048 / a[3]:.0f} ({a[3]:.2f}) | {2048 / b[3]:.0f} ({b[3]:.2f}) | **{b[3] / a[3]:.2f}×** | "
          f"{mib(a[4])} / {mib(b[4])} | {a[5]:.2f} / {b[5]:.2f} |")
    p("")

    # ---- bf16 compute against f32 (issue #19), when the CPU has AVX512_BF16 ----
    if any(v == "lmeval-bf16" for (_, v) in runs):
        p("### `lm-eval --compute bf16` against f32 (OPT-125m shape)\n")
        p("Same runs, interleaved: the linear layers and the LM head multiply bf16-rounded operands "
          "with fp32 sums (`common/nn/gemm_bf16.c`); steady state as above. *perplexity Δ* is the "
          "relative difference from f32's on the same windows (random weights: a harder case than "
          "a trained model's, whose logits are less flat).\n")
        p(head('rows', 'threads', 'f32 steady tok/s', 'bf16 steady tok/s', 'bf16 ÷ f32', 'f32 whole-process tok/s', 'bf16 whole-process tok/s', 'perplexity f32 / bf16 (Δ)'))
        for th in (1, 2):
            g4, g12 = f"m125-s0512-j{th}", f"m125w12-s0512-j{th}"
            rr = {v: (runs.get((g4, v)), runs.get((g12, v))) for v in ("lmeval", "lmeval-bf16")}
            if not all(x and y for x, y in rr.values()):
                continue
            sr = {}
            for v, (r4, r12) in rr.items():
                d = med([r["wall"] for r in r12]) - med([r["wall"] for r in r4])
                per = [8 * 512 / (y["wall"] - x["wall"]) for x, y in zip(r4, r12) if y["wall"] > x["wall"]]
                sr[v] = (8 * 512 / d if d > 0 else float("nan"), min(per, default=float("nan")),
                         max(per, default=float("nan")), 2048 / med([r["wall"] for r in r4]),
                         r12[0]["json"].get("perplexity", float("nan")))
            f, h = sr["lmeval"], sr["lmeval-bf16"]
            p(f"| 512 × 4 and × 12 | {th} | {f[0]:.0f} ({f[1]:.0f}–{f[2]:.0f}) | **{h[0]:.0f}** ({h[1]:.0f}–{h[2]:.0f}) | "
              f"**{h[0] / f[0]:.2f}×** | {f[3]:.0f} | {h[3]:.0f} | {f[4]:.4f} / {h[4]:.4f} ({abs(h[4] - f[4]) / f[4]:.1e}) |")
        p("")

    return "\n".join(out).rstrip() + "\n"


# ---- RESULTS.md: this run's facts, then every part, redone or repeated ----

# the section scripts, in the order of RESULTS.md (bench/NAME.sh prints bench/NAME.md)
SECTIONS = ["cores", "prune", "retrain", "quant", "decode", "embed", "contrastive", "unlearn", "earlyexit", "zeroshot", "methods"]


def with_note(md, note):
    """md with note as a paragraph under its first heading (or first, if it has none)."""
    lines = md.rstrip("\n").split("\n")
    if lines and lines[0].startswith("#"):
        return "\n".join([lines[0], "", note, ""] + lines[1:]) + "\n"
    return note + "\n\n" + md


def part(name, redone, failed):
    path = os.path.join("bench", name + ".md")
    if not os.path.exists(path):
        return ""
    md = open(path).read()
    if name in failed:
        return with_note(md, f"**Failed in this run** (see its stderr): the figures of `bench/{name}.md` "
                             "from its last successful run.")
    if name not in redone:
        return with_note(md, f"*Not redone in this run: repeated from `bench/{name}.md`, which "
                             "says when it was measured.*")
    return md


def results_md():
    fa = facts()
    redone = fa.get("sections", "").split()
    failed = fa.get("failed", "").split()
    out = []
    p = out.append
    p("# lmpipe benchmarks\n")
    p(f"Assembled by `make bench` (`sh bench/run.sh`) on {fa.get('date')}, at commit "
      f"`{fa.get('commit')}`{' with uncommitted changes' if fa.get('dirty') == 'yes' else ''}, in "
      f"**{fa.get('total_time', '?')}** (plus the build). This run redid: "
      f"{', '.join(f'`{s}`' for s in redone) or 'nothing'}"
      f"{' and the big models (c)' if fa.get('big') == '1' else ''} "
      f"(`BENCH_SECTIONS=\"{fa.get('requested', '')}\"`, `BENCH_BIG={fa.get('big')}`, "
      f"`BENCH_REPS={fa.get('reps_env')}`); every other part repeats its `bench/*.md` as it was. "
      "Each part says when, at which commit and under what load it was measured.\n")
    p("Parts: (a) the OpenBLAS sgemm roof and (b) the perplexity forward against PyTorch "
      "(`forward`, from run.sh itself, kept as `bench/forward.md`); (c) memory when streaming big "
      "models (`BENCH_BIG=1`, `bench/big.sh` → `bench/big.md`); then one part per section script `bench/NAME.sh` → `bench/NAME.md` "
      f"({', '.join(SECTIONS)}; a script that does not exist yet is skipped). Run one alone with "
      "`sh bench/NAME.sh > bench/NAME.md`, or a few with e.g. `BENCH_SECTIONS=\"prune retrain\" make bench`.\n")
    p("## Machine\n")
    p(head('fact', 'value', 'how'))
    for k, how in [("cpu", "`model name`, `cpu family`, `model` in /proc/cpuinfo"), ("cores", "`nproc`"),
                   ("simd", "flags in /proc/cpuinfo"), ("memory", "`MemTotal` in /proc/meminfo"),
                   ("kernel", "`uname -sr`"), ("glibc", "`ldd --version`"), ("cc", "`cc --version`"),
                   ("openblas", "`openblas_get_config()`"), ("openblas_core", "`openblas_get_corename()`"),
                   ("torch", "`/usr/bin/python3 -c 'import torch; print(torch.__version__)'`"),
                   ("torch_blas", "libblas.so.3 that torch loads (`update-alternatives`)"),
                   ("thp", "/sys/kernel/mm/transparent_hugepage/enabled"),
                   ("load_start", "/proc/loadavg when the run began"),
                   ("load_end", "/proc/loadavg when the run ended")] + \
            [(f"time_{s}", f"part `{s}` in this run") for s in ["forward", "big"] + SECTIONS]:
        if k not in fa:
            continue
        p(f"| {k} | {fa.get(k, '?')} | {how} |")
    p("")
    p("The machine may be shared: the column *others* in the tables below is the average number of "
      "cores the rest of the machine kept busy during that run (from /proc/stat before and after, "
      "minus the run's own CPU time). With 2 cores, anything well above 0 means the figure is "
      "pessimistic, the 2-thread figure most of all. Scratch files live in `$B` (a folder under "
      "TMPDIR, removed afterwards unless `BENCH_KEEP=1`); commands run from the repository root.\n")

    p(part("forward", redone, failed) or "## (a), (b) Forward speed\n\nNot run yet (`BENCH_SECTIONS=forward make bench`).\n")
    p("## (c) Memory when streaming big models\n")
    if os.path.exists("bench/big.md"):
        if fa.get("big") != "1":
            p("Not redone in this run (it takes hours: the full OPT-2.7b SparseGPT run, and 5.3 GB of "
              "disk): the figures of the last `BENCH_BIG=1 make bench`, kept in `bench/big.md`.\n")
        p(open("bench/big.md").read())
    else:
        p("Not run (set `BENCH_BIG=1`).\n")
    for s in SECTIONS:
        p(part(s, redone, failed))
    return "\n".join(out).rstrip() + "\n"


# ---- sections written by bench/prune.sh and bench/retrain.sh ----

def rows_of(runs, g):
    return {v: rs for (gg, v), rs in runs.items() if gg == g}


def summary_row(rs, tps=None):
    """medians over repetitions; tps(run) gives a run's tokens/s when there is one"""
    row = {"n": len(rs), "wall": med([r["wall"] for r in rs]), "lo": min(r["wall"] for r in rs),
           "hi": max(r["wall"] for r in rs), "cpu": med([r["cpu"] for r in rs]),
           "rss": med([r["rss"] for r in rs]), "others": med([r["others"] for r in rs]), "cmd": rs[0]["cmd"]}
    if tps:
        t = [tps(r) for r in rs]
        row.update(tps=med(t), tlo=min(t), thi=max(t))
    return row


def rng(lo, hi, n, fmt="{:.1f}"):
    return f" ({fmt.format(lo)}–{fmt.format(hi)})" if n > 1 else ""


PROG_PRUNE = {"lmprune": "lm-prune", "lmprune-bf16": "lm-prune --compute bf16",
              "torch": "torch_prune.py"}


def prune_md():
    fa = facts()
    runs = load_runs()
    out = []
    p = out.append
    ns = fa.get("nsamples")
    p("## Pruning: `lm-prune` against PyTorch (issue #4)\n")
    p(measured_on(fa, f"`sh bench/prune.sh` (`BENCH_REPS={fa.get('reps')}`)") + "\n")
    p(caveat({k: v for k, v in runs.items() if k[0].startswith("m125")}, fa, "lm-prune and PyTorch"))
    p("Model: `lm-init --like opt-125m --seed 1` (f32, 12 layers, C = 768, F = 3072), read from a file "
      "by both programs; 50 % unstructured of the six linears of every layer (`-s 0.5`). Calibration "
      f"for Wanda and SparseGPT: the first {ns} windows of 512 ids of `data/novels-eval/novels-calib.txt`, "
      "tokenized once into `$B/calib.lms` (`lm-eval --save-ids`) and read by both. "
      "**PyTorch**: `bench/torch_prune.py`, which follows the reference code on the CPU in float32 "
      "(locuslab/wanda `prune_opt.py` with its forward hooks, IST-DASLab/sparsegpt `fasterprune` with "
      "blocks of 128, 1 % dampening and the Cholesky factor of H⁻¹): the whole model in memory, the "
      "windows through each layer one at a time, statistics for all six linears from one dense pass "
      "(q/k/v each keep their own copy, as the reference does; lm-prune shares one), then a pass of the "
      "pruned layer for the next layer's inputs. Threads: `lm-prune -j N`; torch `--threads N` under "
      "`OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N OMP_WAIT_POLICY=PASSIVE` (libgomp's default spinning "
      "waits slow torch's many small operations badly when anything else runs on the cores). *wall* is the whole process from `/usr/bin/time -v` "
      "(reading the 500 MB stream included); *torch's clock* is torch_prune.py's own, from before "
      "it reads the model to the last matrix pruned (wall minus that is mostly Python importing torch); "
      "*peak RSS* is GNU time's maximum resident set size. Both write their result (lm-prune the "
      "stream, torch the pruned matrices with `--save`, after its clock stops).\n")
    groups = sorted({g for g, _ in runs if g.startswith("m125")},
                    key=lambda g: (["magnitude", "wanda", "sparsegpt"].index(g.split("-")[1]), g))
    p(head('method', 'threads', 'program', 'runs', 'wall s (range)', "torch's clock s", 'CPU s', 'peak RSS', 'others', 'command'))
    summ = {}
    for g in groups:
        _, m, j = g.split("-")
        for v, rs in sorted(rows_of(runs, g).items()):
            row = summary_row(rs)
            summ[(g, v)] = row
            own = med([r["json"].get("seconds", float("nan")) for r in rs])
            p(f"| {m} | {j[1:]} | {PROG_PRUNE.get(v, v)} | {row['n']} | "
              f"**{row['wall']:.1f}**{rng(row['lo'], row['hi'], row['n'])} | {'-' if v.startswith('lmprune') else f'{own:.1f}'} | "
              f"{row['cpu']:.1f} | {mib(row['rss'])} | {row['others']:.2f} | `{row['cmd']}` |")
    p("")
    p("### Same work: how far the two results agree\n")
    p("`torch_prune.py --compare $B/out-METHOD-jN.lms $B/torch-METHOD-jN.f32` (not timed), over the 72 "
      "pruned matrices in model order: *masks agree* = the fraction of positions where both or "
      "neither are zero, for the whole model (mean), the worst matrix, the first (layer 0 q_proj) and "
      "the last (layer 11 fc2); *first difference* = the first matrix whose masks differ at all; "
      "*values* = ‖W_lm-prune − W_torch‖ / ‖W_torch‖ of the worst matrix. Magnitude and Wanda change "
      "no weight, so their values differ only where the masks do (lm-prune's magnitude threshold is "
      "one rank lower than the reference's, see lm-prune(1)). Calibrated masks can agree exactly and "
      "then part: one near-tie decided the other way changes that layer's output a little, the next "
      "layer's statistics with it, and the difference grows layer by layer; on this random model "
      "(scores of similar size everywhere) it grows faster than on a trained one. SparseGPT's "
      "updates also round differently (lm-prune factorizes in double, shares q/k/v's H and sums it "
      "in batches of four windows).\n")
    p(head('method', 'threads', 'masks agree: mean (worst matrix)', 'first / last matrix', 'first difference', 'values: worst relative difference', 'sparsity lm-prune / torch'))
    for g in groups:
        _, m, j = g.split("-")
        for f in sorted(glob.glob(os.path.join(R, g + ".compare.r*.json")))[:1]:
            c = json.load(open(f))
            fd = c.get("first_difference")
            fd = f"`{fd.replace('model.decoder.', '')}`" if fd else "none"
            p(f"| {m} | {j[1:]} | {100 * c['mask_agreement_mean']:.4f} % ({100 * c['mask_agreement_min']:.4f} %) | "
              f"{100 * c['mask_agreement_first']:.4f} % / {100 * c['mask_agreement_last']:.4f} % | {fd} | "
              f"{c['relative_difference_max']:.2e} | {c['sparsity_lmprune']:.6f} / {c['sparsity_torch']:.6f} |")
    p("")
    # ---- --compute bf16 against f32 (issue #19), when the CPU has AVX512_BF16 ----
    bg = [g for g in groups if (g, "lmprune-bf16") in summ and (g, "lmprune") in summ]
    if bg:
        p("### `lm-prune --compute bf16` against f32\n")
        p("Same runs, interleaved: the calibration forward's products on bf16-rounded operands "
          "with fp32 sums (`common/nn/gemm_bf16.c`); the Hessians (XᵀX on the bf16 GEMM) and "
          "SparseGPT's update after each block too; the factorization in f32 (double where f32 "
          "finds no factor). Whole process (*wall*), the model read and written included.\n")
        p(head('method', 'threads', 'f32 wall s', 'bf16 wall s', 'f32 ÷ bf16'))
        for g in bg:
            _, m, j = g.split("-")
            a, b = summ[(g, "lmprune")], summ[(g, "lmprune-bf16")]
            p(f"| {m} | {j[1:]} | {a['wall']:.1f} | **{b['wall']:.1f}** | **{a['wall'] / b['wall']:.2f}×** |")
        p("")
    p("### Summary\n")
    p(head('method', 'threads', 'lm-prune wall s', 'torch wall s', 'lm-prune faster by', 'lm-prune peak RSS', 'torch peak RSS', 'others (lm-prune / torch)'))
    for g in groups:
        _, m, j = g.split("-")
        a, b = summ.get((g, "lmprune")), summ.get((g, "torch"))
        if a and b:
            p(f"| {m} | {j[1:]} | {a['wall']:.1f} | {b['wall']:.1f} | **{b['wall'] / a['wall']:.2f}×** | "
              f"**{mib(a['rss'])}** | {mib(b['rss'])} | {a['others']:.2f} / {b['others']:.2f} |")
    p("")
    big = [g for g, _ in runs if g.startswith("p27")]
    if big:
        run = runs[(big[0], "lmprune")][0]
        p(prune27_md(int(fa.get("layers27", 1)), gnu_time(os.path.join(R, "p27-init.time")),
                     gnu_time(os.path.join(R, "p27-prune.time")), run["cmd"], f"others: {run['others']:.2f}"))
    return "\n".join(out).rstrip() + "\n"


def prune27_md(L, ti, tp, cmd, note, heading="###"):
    """SparseGPT's peak RSS on an OPT-2.7b-wide model (bench/prune.sh, and bench/big.sh with all
    32 layers): the measured figures against the terms lm-prune(1)'s Memory section names."""
    C, F, V, P, W, T = 2560, 10240, 50272, 2048, 16, 2048
    emb = (V + P + 2) * C * 2                         # f16 token and position tables
    layer = (4 * C * C + 2 * C * F) * 2 + (4 * C + F + C + 4 * C) * 2
    acts = W * T * C * 4
    hess = (3 * C * C + F * F) * 4                    # q/k/v share one H; out_proj, fc1, fc2
    dbl = F * F * 8                                   # fc2's H in double while it is factorized
    model32 = 32 * layer + emb
    out = []
    p = out.append
    p(f"{heading} SparseGPT on an OPT-2.7b-wide model: peak RSS\n")
    whole = "the real OPT-2.7b" if L == 32 else f"{L} of the 32 layers"
    p(f"`lm-init --like opt-2.7b -t f16 --layers {L}` ({whole}: C = 2560, F = 10240, f16) piped straight "
      "into `lm-prune -m sparsegpt` with 16 windows of 2048 tokens of `novels-retrain.txt` "
      "(`novels-calib.txt` is shorter than 16 × 2048), 2 threads; each program under its own "
      "`/usr/bin/time -v`. lm-prune holds one decoder layer at a time, so its peak does not grow "
      "with the number of layers: what is measured here is the peak of the real 32-layer model"
      + ("" if L == 32 else f"; only the time grows, by about {tp['wall'] / L:.0f} s of wall time "
         f"({tp['cpu'] / L:.0f} s of CPU) a layer in this run, ≈ {32 * tp['wall'] / L / 60:.0f} min "
         "for all 32 at this pace (`BENCH_BIG=1 make bench` runs them)") + ".\n")
    p(head('program', 'peak RSS', 'wall', 'CPU s', 'for comparison'))
    p(f"| lm-init (generator) | {mib(ti['rss'])} | {ti['wall']:.1f} s | {ti['cpu']:.1f} | |")
    p(f"| lm-prune `-m sparsegpt --nsamples 16 --seqlen 2048` | **{mib(tp['rss'])}** | {tp['wall']:.1f} s | "
      f"{tp['cpu']:.1f} | terms of lm-prune(1) *Memory*: embeddings {mib(emb)} + one layer {mib(layer)} + "
      f"activations 16 × 2048 × C f32 {mib(acts)} + Hessians (3C² + F² f32) {mib(hess)} + fc2's H in "
      f"double {mib(dbl)} = {mib(emb + layer + acts + hess + dbl)}; the rest is the forward working "
      "area for four windows and SparseGPT's f32 factor U (F² floats, "
      f"{mib(F * F * 4)}). The 32-layer model is {model32 / 1e9:.1f} GB in f16; the reference code "
      f"loads it whole, {2 * model32 / 1e9:.1f} GB in f32 on a CPU, before any activation |")
    p("")
    p(f"Command ({note}):\n\n    {cmd}\n")
    return "\n".join(out)


def retrain_log(path):
    """lm-retrain --log: the trainable count, and per step loss, grad_norm, tokens_per_s"""
    steps, count = [], None
    for line in open(path):
        m = re.match(r"training (\d+) values", line)
        if m:
            count = int(m.group(1))
        m = re.match(r"step (\d+) loss (\S+) lr \S+ grad_norm (\S+) tokens_per_s (\S+)", line)
        if m:
            steps.append((float(m.group(2)), float(m.group(3)), float(m.group(4))))
    return count, steps


PROG_RETRAIN = {"lmretrain": "lm-retrain", "lmretrain-bf16": "lm-retrain --compute bf16",
                "torch": "torch_train.py"}


def first_rep(runs, g, v):
    """the first repetition of variant v of group g, if it logged its steps"""
    r = [r for r in runs.get((g, v), []) if r["rep"] == 1]
    return r[0] if r and r[0]["steps"] else None


def loss_drift(got, ref):
    """(steps compared, largest relative difference of got's losses from ref's)"""
    n = min(len(got), len(ref))
    return n, max(abs(got[k][0] - ref[k][0]) / abs(ref[k][0]) for k in range(n))


def retrain_md():
    fa = facts()
    runs = load_runs()
    for (g, v), rs in runs.items():
        for r in rs:
            if v.startswith("lmretrain"):
                r["count"], r["steps"] = retrain_log(os.path.join(R, r["id"] + ".log"))
                r["tps"] = r["steps"][-1][2]
            else:
                r["count"], r["tps"] = r["json"].get("trainable"), r["json"].get("tokens_per_second", float("nan"))
                r["steps"] = list(zip(r["json"].get("losses", []), r["json"].get("grad_norms", [])))
    out = []
    p = out.append
    p("## Retraining: `lm-retrain` against PyTorch (issue #5)\n")
    p(measured_on(fa, f"`sh bench/retrain.sh` (`BENCH_REPS={fa.get('reps')}`)") + "\n")
    p(caveat(runs, fa, "lm-retrain and PyTorch"))
    p("Models, both magnitude-pruned to 50 % first (`lm-prune -s 0.5`): *opt-micro* (`lm-import "
      "models/opt-micro`, f16, 4 layers, C = 256) and *OPT-125m shape* (`lm-init --like opt-125m -t f16 "
      "--seed 1`, 12 layers, C = 768). Data: `data/novels-eval/novels-retrain.txt`; lm-retrain "
      "tokenizes the text, torch_train.py reads the same ids (`$B/ids.lms`, `lm-eval --save-ids`). "
      "**PyTorch**: `bench/torch_train.py`, AdamW (torch.optim, weight decay 0) in float32 on the "
      "CPU, the loss on the full logits as transformers computes it, `--perp` = every bias and "
      "LayerNorm weight and bias, `--full` = every parameter of the decoder layers and the final "
      "LayerNorm with the pruned zeros kept by `torch.nn.utils.prune.custom_from_mask` (PERP's "
      "FullFT); no gradient checkpointing. Both sides: the same windows in the same order "
      "(torch_train.py replays lm-retrain's generator), linear warmup of 10 % then linear decay, "
      "gradient clipping at 1.0, `--dropout 0` (the two cannot draw the same dropout masks; without "
      "them the losses must agree step by step), default learning rates (1e-3 `--perp`, 1e-4 "
      "`--full`). Threads: `lm-retrain -j N`; torch `--threads N` under `OMP_NUM_THREADS=N "
      "OPENBLAS_NUM_THREADS=N OMP_WAIT_POLICY=PASSIVE` (as for pruning). *train tokens/s* = steps × batch × seqlen over each program's own "
      "clock of the training loop (lm-retrain's last `--log` line; reading and tokenizing excluded "
      "on both sides); *wall* is the whole process (`/usr/bin/time -v`), *peak RSS* its maximum "
      "resident set size.\n")
    order = {"micro": 0, "m125": 1}
    groups = sorted({g for g, _ in runs}, key=lambda g: (order.get(g.split("-")[0], 2), g.split("-")[2], g.split("-")[1]))
    name = {"micro": "opt-micro", "m125": "OPT-125m shape"}
    p(head('model', 'mode', 'batch × seqlen, steps', 'threads', 'program', 'runs', 'train tokens/s (range)', 'wall s', 'CPU s', 'peak RSS', 'others', 'command'))
    summ = {}
    for g in groups:
        m, mode, j = g.split("-")
        for v, rs in sorted(rows_of(runs, g).items()):
            row = summary_row(rs, lambda r: r["tps"])
            summ[(g, v)] = row
            js = next((r["json"] for (gg, vv), rr in runs.items() if gg == g and vv == "torch" for r in rr), {})
            shape = f"{js.get('batch', '?')} × {js.get('seqlen', '?')}, {js.get('steps', '?')}"
            p(f"| {name.get(m, m)} | --{mode} | {shape} | {j[1:]} | {PROG_RETRAIN.get(v, v)} | "
              f"{row['n']} | **{row['tps']:.0f}**{rng(row['tlo'], row['thi'], row['n'], '{:.0f}')} | {row['wall']:.1f} | "
              f"{row['cpu']:.1f} | {mib(row['rss'])} | {row['others']:.2f} | `{row['cmd']}` |")
    p("")
    p("### Same work: trainable values and losses step by step\n")
    p("Same windows, same starting weights and lr 0 at step 1 (the warmup starts at 0): the step-1 "
      "losses must agree to rounding, and later ones stay close while the two optimizers' "
      "arithmetic drifts apart only by rounding. First repetition of each.\n")
    p(head('model', 'mode', 'threads', 'trainable values lm-retrain / torch', 'loss step 1 lm-retrain / torch', 'loss last step lm-retrain / torch', 'largest relative loss difference', 'grad norm step 1 lm-retrain / torch'))
    for g in groups:
        m, mode, j = g.split("-")
        a, b = first_rep(runs, g, "lmretrain"), first_rep(runs, g, "torch")
        if not a or not b:
            continue
        n, d = loss_drift(a["steps"], b["steps"])
        p(f"| {name.get(m, m)} | --{mode} | {j[1:]} | {a['count']:,} / {b['count']:,} | "
          f"{a['steps'][0][0]:.6f} / {b['steps'][0][0]:.6f} | {a['steps'][n - 1][0]:.6f} / {b['steps'][n - 1][0]:.6f} | "
          f"{d:.1e} {'✓' if d < 1e-3 else '✗'} | {a['steps'][0][1]:.4f} / {b['steps'][0][1]:.4f} |")
    p("")
    # ---- --compute bf16 against f32 (issue #19), when the CPU has AVX512_BF16 ----
    if any(v == "lmretrain-bf16" for (_, v) in runs):
        p("### `lm-retrain --compute bf16` against f32\n")
        p("Same runs, interleaved: the forward's and the backward's products (linear layers, "
          "attention, LM head) on bf16-rounded operands with fp32 sums (`common/nn/gemm_bf16.c`); "
          "gradients, LayerNorm, softmax, the loss and AdamW in fp32. Losses: first repetition.\n")
        p(head('model', 'mode', 'threads', 'f32 tokens/s', 'bf16 tokens/s', 'bf16 ÷ f32', 'loss last step f32 / bf16', 'largest relative loss difference'))
        for g in groups:
            m, mode, j = g.split("-")
            a, b = summ.get((g, "lmretrain")), summ.get((g, "lmretrain-bf16"))
            ra, rb = first_rep(runs, g, "lmretrain"), first_rep(runs, g, "lmretrain-bf16")
            if not a or not b or not ra or not rb:
                continue
            sa, sb = ra["steps"], rb["steps"]
            n, d = loss_drift(sb, sa)
            p(f"| {name.get(m, m)} | --{mode} | {j[1:]} | {a['tps']:.0f} | **{b['tps']:.0f}** | "
              f"**{b['tps'] / a['tps']:.2f}×** | {sa[n - 1][0]:.6f} / {sb[n - 1][0]:.6f} | {d:.1e} |")
        p("")
    p("### Summary\n")
    p(head('model', 'mode', 'threads', 'lm-retrain tokens/s', 'torch tokens/s', 'lm-retrain faster by', 'lm-retrain peak RSS', 'torch peak RSS', 'others (lm-retrain / torch)'))
    for g in groups:
        m, mode, j = g.split("-")
        a, b = summ.get((g, "lmretrain")), summ.get((g, "torch"))
        if a and b:
            p(f"| {name.get(m, m)} | --{mode} | {j[1:]} | {a['tps']:.0f} | {b['tps']:.0f} | **{a['tps'] / b['tps']:.2f}×** | "
              f"**{mib(a['rss'])}** | {mib(b['rss'])} | {a['others']:.2f} / {b['others']:.2f} |")
    p("")
    return "\n".join(out).rstrip() + "\n"


def main():
    modes = {"--forward": forward_md, "--big": big_md, "--results": results_md,
             "--prune": prune_md, "--retrain": retrain_md}
    if len(sys.argv) != 3 or sys.argv[1] not in modes:
        sys.exit("usage: report.py --forward|--big|--prune|--retrain|--results SCRATCH")
    sys.stdout.write(modes[sys.argv[1]]())


if __name__ == "__main__":
    main()

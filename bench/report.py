#!/usr/bin/python3
"""bench/report.py: turn the raw files bench/run.sh left in its scratch folder into Markdown.

    /usr/bin/python3 bench/report.py SCRATCH > bench/RESULTS.md

SCRATCH holds facts.txt (key: value lines) and runs/ with, per
measured run ID: ID.cmd (the command, run from the repository root with B=SCRATCH), ID.out (its
stdout, JSON from lm-eval --json or torch_opt.py --json), ID.time (GNU time -v), ID.stat0 and
ID.stat1 (/proc/stat before and after, to show how busy the rest of the machine was).
Run IDs are GROUP.VARIANT.rREP; big.md (section c) is pasted in as it is.
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
    p("| pipeline | program | peak RSS | wall | CPU s | for comparison |\n|---|---|---|---|---|---|")
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
    return "\n".join(out)


def main():
    if sys.argv[1] == "--big":
        global S
        S = sys.argv[2]
        sys.stdout.write(big_md())
        return
    fa = facts()
    runs = load_runs()
    passes = sgemm_passes(runs)
    sg = sgemm_roof(passes)
    out = []
    p = out.append

    p("# lmpipe benchmarks\n")
    p(f"Generated by `make bench` (`sh bench/run.sh`) on {fa.get('date')}, at commit "
      f"`{fa.get('commit')}`{' with uncommitted changes' if fa.get('dirty') == 'yes' else ''}. "
      f"The whole `make bench` took **{fa.get('total_time', '?')}** (`BENCH_REPS={fa.get('reps')}`, "
      f"`BENCH_BIG={fa.get('big')}`). Every figure below is from this one run, except section (c) "
      f"when it says otherwise. Rerun with `make bench`; `BENCH_BIG=1 make bench` also redoes (c).\n")
    allo = [r["others"] for rs in runs.values() for r in rs]
    mo = med(allo)
    if mo > 0.25:
        p(f"**Caveat: this run shared the machine.** Over its {len(allo)} measured runs the rest of the "
          f"machine kept a median of {mo:.2f} of the {fa.get('cores')} cores busy (column *others*), "
          "so absolute figures, the sgemm roof included, are below what an idle machine gives. "
          "lm-eval and PyTorch were measured interleaved under the same load, the roof at the start and at the end, so the "
          "ratios (lm-eval against PyTorch, % of the roof) are the more trustworthy figures; "
          "rerun `make bench` on an idle machine for absolute ones.\n")
    p("## Machine\n")
    p("| fact | value | how |\n|---|---|---|")
    for k, how in [("cpu", "`grep 'model name' /proc/cpuinfo`"), ("cores", "`nproc`"),
                   ("simd", "flags in /proc/cpuinfo"), ("memory", "`MemTotal` in /proc/meminfo"),
                   ("kernel", "`uname -sr`"), ("glibc", "`ldd --version`"), ("cc", "`cc --version`"),
                   ("openblas", "`openblas_get_config()`"), ("openblas_core", "`openblas_get_corename()`"),
                   ("torch", "`/usr/bin/python3 -c 'import torch; print(torch.__version__)'`"),
                   ("torch_blas", "libblas.so.3 that torch loads (`update-alternatives`)"),
                   ("thp", "/sys/kernel/mm/transparent_hugepage/enabled"),
                   ("load_start", "/proc/loadavg when the run began"),
                   ("load_end", "/proc/loadavg when the run ended"),
                   ("quiet_wait", "time run.sh waited for the rest of the machine to go quiet"),
                   ("big_time", "section (c), when it ran")]:
        if k not in fa:
            continue
        p(f"| {k} | {fa.get(k, '?')} | {how} |")
    p("")
    p("The machine may be shared: the column *others* in the tables below is the average number of "
      "cores the rest of the machine kept busy during that run (from /proc/stat before and after, "
      "minus the run's own CPU time). With 2 cores, anything well above 0 means the figure is "
      "pessimistic, the 2-thread figure most of all. Scratch files live in `$B` "
      f"(this run: `{S}`, removed afterwards unless `BENCH_KEEP=1`); commands run from the repository root.\n")

    # ---- (a) roof ----
    p("## (a) The roof: OpenBLAS `cblas_sgemm`\n")
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
        p("| pass | command | calls per median | others |\n|---|---|---|---|")
        for r, rows in passes:
            p(f"| {r['rep']} | `{r['cmd']}` | {next(iter(rows.values()))['runs']} | {r['others']:.2f} |")
        p("")

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
      "which otherwise starts one thread per core whatever torch's setting). PyTorch settings: "
      "*default*, and *hugetlb* = `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (the best setting in "
      "shared/docs/performance.md); the comparison uses whichever was faster in this run.\n")

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
        p("| program | setting | threads | runs | tokens/s (range) | wall s | CPU s | peak RSS | perplexity | others | command |")
        p("|---|---|---|---|---|---|---|---|---|---|---|")
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
    p("| model | T | threads | lm-eval | torch_opt.py (hugetlb) | relative difference | reference (transformers) |")
    p("|---|---|---|---|---|---|---|")
    for g in groups:
        if g.startswith("text"):
            continue
        a = summary.get((g, "lmeval"))
        b = summary.get((g, "torch-hugetlb"))
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
      "tokens/s ÷ the faster PyTorch setting's. *others*: lm-eval's / PyTorch's.\n")
    p("| T × windows | threads | roof tok/s | lm-eval tok/s | % roof | GFLOP/s | torch best (setting) tok/s | torch % roof | lm-eval vs torch | lm-eval RSS | torch RSS | others |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|")
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
          f"{a['tps'] * fl / 1e9:.1f} | {bt:.0f} ({bv.partition('-')[2]}) | {100 * bt / roof:.0f} % | "
          f"**{a['tps'] / bt:.2f}×** | {mib(a['rss'])} | {mib(b['rss'])} | {a['others']:.2f} / {b['others']:.2f} |")
    p("")

    # ---- (c) ----
    p("## (c) Memory when streaming big models\n")
    big = os.path.join(S, "big.md")
    if os.path.exists(big):
        if fa.get("big") != "1":
            p("Not redone in this run (it takes ~5 minutes and 5.3 GB of disk): the figures of the last "
              "`BENCH_BIG=1 make bench`, kept in `bench/big.md`.\n")
        p(open(big).read())
    else:
        p("Not run (set `BENCH_BIG=1`).\n")

    # ---- (d) ----
    methods = os.path.join(S, "methods.md")
    if os.path.exists(methods):
        p("## (d) Quality of the compression methods (opt-micro)\n")
        p(open(methods).read())
    sys.stdout.write("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""bench/torch_zeroshot.py: the PyTorch peer of `lm-eval --task`, for bench/zeroshot.sh.

Scores the very requests lm-eval scored: their token ids (BOS, context, continuation) come
from its `--json --log-samples` report, each item's "ids" and "tokens" (the continuation's
length), so both sides see the same tokens. Then, as a plain loop would (and as
lm-evaluation-harness does per request): one forward per choice over its whole sequence,
log-softmax of the logits, the continuation tokens' log-probabilities summed. No prefix is
shared. --mode item batches an item's choices instead (right-padded, still no sharing).

    /usr/bin/python3 bench/torch_zeroshot.py MODEL_DIR SAMPLES.json [--threads N]
                                              [--mode loop|item] [--json]

The model is torch_opt.py's plain OPT forward on a Hugging Face folder. Seconds count the
scoring only (after the weights are read), as lm-eval's config.seconds do; the largest
difference from lm-eval's log-likelihoods is reported as a check that both scored the same.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

from torch_opt import OPT, read_safetensors


def score(m, seqs, ncont, pad):
    """log-likelihood of the last ncont[i] tokens of each sequence, one batch"""
    T = max(len(s) for s in seqs)
    x = torch.full((len(seqs), T), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = torch.tensor(s)
    logp = F.log_softmax(m.logits(x).float(), dim=-1)
    out = []
    for i, s in enumerate(seqs):
        n, L = ncont[i], len(s)
        tgt = x[i, L - n:L]
        out.append(logp[i, L - n - 1:L - 1].gather(1, tgt[:, None]).double().sum().item())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("samples")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mode", choices=("loop", "item"), default="loop")
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()

    torch.set_num_threads(o.threads)
    torch.set_num_interop_threads(1)
    with open(o.samples) as f:
        rep = json.load(f)
    if "samples" not in rep:
        raise SystemExit(f"torch_zeroshot: {o.samples}: no samples (run lm-eval with --log-samples)")
    with open(os.path.join(o.model, "config.json")) as f:
        cfg = json.load(f)
    m = OPT(cfg, read_safetensors(os.path.join(o.model, "model.safetensors")))
    pad = cfg.get("pad_token_id", 1)
    res = {}
    with torch.inference_mode():
        for task, items in rep["samples"].items():
            if items and "ids" not in items[0]:
                raise SystemExit(f"torch_zeroshot: {task}: no token ids in the samples")
            t0 = time.monotonic()
            diff, nreq, ntok = 0.0, 0, 0
            for it in items:
                if o.mode == "loop":
                    got = [score(m, [s], [n], pad)[0] for s, n in zip(it["ids"], it["tokens"])]
                else:
                    got = score(m, it["ids"], it["tokens"], pad)
                diff = max(diff, max(abs(a - b) for a, b in zip(got, it["ll"])))
                nreq += len(got)
                ntok += sum(len(s) for s in it["ids"])
            el = time.monotonic() - t0
            res[task] = {"items": len(items), "requests": nreq, "tokens": ntok, "seconds": el,
                         "max_abs_ll_diff": diff}
    r = {"program": "torch_zeroshot.py", "torch": torch.__version__, "mode": o.mode,
         "threads": torch.get_num_threads(), "tasks": res,
         "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if o.json:
        print(json.dumps(r))
    else:
        for t, v in res.items():
            print(t, " ".join(f"{k}={v[k]}" for k in v))


if __name__ == "__main__":
    sys.exit(main())

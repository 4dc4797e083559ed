#!/usr/bin/python3
"""bench/torch_contrastive.py: the PyTorch peer of `lm-embed --contrastive`, for
bench/contrastive.sh, and the generator of the unit test's reference numbers.

    /usr/bin/python3 bench/torch_contrastive.py fixture OUT
        A tiny InfoNCE case (4 queries, 6 candidates with 2 hard negatives, one masked
        candidate, temperature 0.05) computed with autograd in float64 from float32 inputs,
        both directions and the symmetric loss: tests/data-contrastive/infonce-torch.txt,
        which tests/unit/test_contrastive.c reads.

    /usr/bin/python3 bench/torch_contrastive.py MODEL.lms PAIRS.tsv IDS.txt [--lora R]
                     [--pairs P] [-n STEPS] [--lr X] [--temperature T] [--dropout P]
                     [--unsupervised] [--threads N] [--json]
        The same training as `lm-embed --contrastive PAIRS.tsv --lora R --pairs P --steps
        STEPS` (transformers' OPT arithmetic from torch_prune.Layer, no transformers): each
        step takes P examples in order, their PromptEOL prompts padded on the right with the
        pad id, the final hidden state at each prompt's last token, InfoNCE over cosines /
        temperature with in-batch and hard negatives, LoRA (A ~ U(+-1/sqrt(in)), B = 0,
        scale 2R/R) on q/k/v/out_proj/fc1/fc2, AdamW, linear warmup 10 % and decay, clipping
        at 1. IDS.txt holds the prompts' token ids, one prompt per line in the order
        sentence, positive[, hard negative] of each example (bench/contrastive.sh makes it
        with lm-info --tokenize); BOS is put in front here.

*pairs_per_second* is steps x P over the training loop's own clock, as lm-embed reports it.
"""
import argparse
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True


def infonce(q, k, pos, mask, tau, symmetric):
    """contrastive.h's loss: q [B,d], k [K,d], pos [B] long, mask [B,K] bool (True: counts)"""
    qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-8)
    kn = k / k.norm(dim=1, keepdim=True).clamp_min(1e-8)
    s = qn @ kn.T / tau
    B = q.shape[0]
    ok = mask.clone()
    ok[torch.arange(B), pos] = True
    loss = F.cross_entropy(s.masked_fill(~ok, float("-inf")), pos)
    if symmetric:
        cols = s[:, pos].T                  # row b: every query's score with b's positive
        okc = ok[:, pos].T
        loss = 0.5 * loss + 0.5 * F.cross_entropy(cols.masked_fill(~okc, float("-inf")),
                                                  torch.arange(B))
    return loss


def fixture(out):
    g = torch.Generator().manual_seed(20)
    B, K, d, tau = 4, 6, 5, 0.05
    q32 = torch.randn(B, d, generator=g)
    k32 = torch.randn(K, d, generator=g)
    k32[:B] = 0.3 * q32 + k32[:B]     # positives lean towards their queries
    pos = torch.arange(B)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[1, 3] = False                      # e.g. a copy of query 1's sentence
    with open(out, "w") as f:
        f.write("# bench/torch_contrastive.py fixture: B K d tau, then q, k (float32 values),\n"
                "# mask rows, and per case (symmetric 0/1): loss, dL/dq, dL/dk (float64 autograd)\n")
        f.write(f"{B} {K} {d} {tau!r}\n")
        for t in (q32, k32):
            for r in t:
                f.write(" ".join(f"{float(v):.9g}" for v in r) + "\n")
        for r in mask:
            f.write(" ".join(str(int(v)) for v in r) + "\n")
        for sym in (0, 1):
            q = q32.double().requires_grad_(True)
            k = k32.double().requires_grad_(True)
            L = infonce(q, k, pos, mask, tau, sym)
            L.backward()
            f.write(f"{sym} {float(L):.17g}\n")
            for t in (q.grad, k.grad):
                for r in t:
                    f.write(" ".join(f"{float(v):.17g}" for v in r) + "\n")


class LoRALinear(torch.nn.Module):
    def __init__(self, lin, r, alpha):
        super().__init__()
        self.lin, self.s = lin, alpha / r
        n_in, n_out = lin.weight.shape[1], lin.weight.shape[0]
        b = 1 / math.sqrt(n_in)
        self.A = torch.nn.Parameter(torch.empty(r, n_in).uniform_(-b, b))
        self.B = torch.nn.Parameter(torch.zeros(n_out, r))

    def forward(self, x):
        return self.lin(x) + self.s * F.linear(F.linear(x, self.A), self.B)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "fixture":
        return fixture(sys.argv[2])
    from torch_train import OPT          # the model of the retraining bench
    from torch_prune import causal_mask, embed, print_result, read_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("pairs")
    ap.add_argument("ids")
    ap.add_argument("--lora", type=int, default=16)
    ap.add_argument("--pairs", dest="P", type=int, default=32)
    ap.add_argument("-n", "--steps", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--unsupervised", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    t0 = time.monotonic()
    cfg, sd = read_model(o.model)
    rows = [l.rstrip("\n").split("\t") for l in open(o.pairs, encoding="utf-8") if l.strip()]
    if o.unsupervised:
        rows = [[r[0]] for r in rows]
    prompts = [[int(t) for t in l.split()] for l in open(o.ids)]
    if len(prompts) != sum(len(r) for r in rows):
        raise SystemExit(f"torch_contrastive.py: {o.ids}: {len(prompts)} prompts for "
                         f"{sum(len(r) for r in rows)} fields")
    ex, at = [], 0
    for r in rows:
        ex.append([[cfg["bos_token_id"]] + prompts[at + i] for i in range(len(r))])
        at += len(r)
    m = OPT(cfg, sd, o.dropout)
    for p in m.parameters():
        p.requires_grad_(False)
    ps = []
    for lay in m.layers:
        for name in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"):
            w = LoRALinear(getattr(lay, name), o.lora, 2.0 * o.lora)
            setattr(lay, name, w)
            ps += [w.A, w.B]
    opt = torch.optim.AdamW(ps, lr=o.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    m.train()
    warm = math.ceil(0.1 * o.steps)

    def lr_at(s):
        if s < warm:
            return o.lr * s / max(warm, 1)
        return o.lr * (1 - min(1.0, (s - warm) / max(o.steps - warm, 1)))

    def embed_last(seqs):
        T = max(len(s) for s in seqs)
        ids = torch.tensor([s + [cfg["pad_token_id"]] * (T - len(s)) for s in seqs])
        x = embed(cfg, m.sd, ids)
        mask = causal_mask(T)
        for lay in m.layers:
            x = lay(x, mask)
        x = x[torch.arange(len(seqs)), torch.tensor([len(s) - 1 for s in seqs])]
        if m.final is not None:
            x = m.final(x)
        if "model.decoder.project_out.weight" in m.sd:
            x = F.linear(x, m.sd["model.decoder.project_out.weight"])
        return x

    losses = []
    t1 = time.monotonic()
    for s in range(o.steps):
        b = [ex[(s * o.P + i) % len(ex)] for i in range(o.P)]
        seqs = [e[0] for e in b] + [e[1 if len(e) > 1 else 0] for e in b] + [e[2] for e in b if len(e) > 2]
        for g in opt.param_groups:
            g["lr"] = lr_at(s)
        opt.zero_grad(set_to_none=True)
        z = embed_last(seqs)
        n = len(b)
        loss = infonce(z[:n], z[n:], torch.arange(n), torch.ones(n, len(seqs) - n, dtype=torch.bool),
                       o.temperature, False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        opt.step()
        losses.append(loss.item())
    t2 = time.monotonic()
    r = {"program": "torch_contrastive.py", "torch": torch.__version__,
         "threads": torch.get_num_threads(), "lora": o.lora, "steps": o.steps, "pairs": o.P,
         "seconds": t2 - t0, "train_seconds": t2 - t1, "pairs_per_second": o.steps * o.P / (t2 - t1),
         "losses": losses, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    print_result(r, o.json)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""bench/torch_train.py: the PyTorch peer of `lm-retrain --perp` and `--full`, for bench/retrain.sh.

AdamW training of an OPT (transformers' OPTForCausalLM arithmetic, no transformers) on the CPU
in float32, the way PERP's code sets it up (docs/methods.md section 4):

- --perp trains every bias and LayerNorm weight and bias (the final LayerNorm included), the
  rest frozen; --full trains every parameter of the decoder layers and the final LayerNorm, and
  keeps the pruned zeros with torch.nn.utils.prune.custom_from_mask (weight = weight_orig * mask,
  as PERP's FullFT does);
- the loss is the mean cross-entropy of the T-1 shifted predictions over the batch, computed on
  the full logits as transformers does;
- lr: linear warmup over ceil(warmup * steps) steps from 0, then linear decay to 0
  (get_linear_schedule_with_warmup); gradients clipped to a global norm (clip_grad_norm_);
  torch.optim.AdamW, weight decay 0;
- the windows are lm-retrain's: -b windows of -s ids per step at starts drawn by the same
  generator (xoshiro256** seeded by splitmix64 with --seed, rejection sampling, as
  common/base/rng.c), so with the same ids both programs see the same batches and their losses at
  step k can be compared.

The model and the ids are read from lm-streams (the model as lm-prune writes it, the ids as
`lm-eval --save-ids` writes them from the text lm-retrain is given); frozen weights are
float32 here (lm-retrain keeps them in the stream's type).

    /usr/bin/python3 bench/torch_train.py MODEL.lms IDS.lms (--perp | --full) [-s T] [-b B]
                     [-n STEPS] [--lr X] [--warmup F] [--clip X] [--dropout P] [--seed N]
                     [--threads N] [--json]

*tokens_per_second* is steps x B x T over the training loop's own clock (first batch drawn to
last update), as lm-retrain's log counts it; *seconds* runs from before the model is read.
Peak RSS is getrusage(RUSAGE_SELF).ru_maxrss.
"""
import argparse
import math
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.utils import prune as tprune

sys.dont_write_bytecode = True  # no bench/__pycache__ from the import below
from torch_prune import Layer, causal_mask, embed, module, param, print_result, read_ids, read_model

M64 = (1 << 64) - 1


class Rng:
    """common/base/rng.c: xoshiro256** seeded by splitmix64; below(n) drops the top partial range."""

    def __init__(self, seed):
        self.s, x = [], seed & M64
        for _ in range(4):
            x = (x + 0x9e3779b97f4a7c15) & M64
            z = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M64
            z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    def u64(self):
        s = self.s
        res = (self.rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return res

    def below(self, n):
        lim = M64 - M64 % n
        while True:
            x = self.u64()
            if x < lim:
                return x % n


class OPT(torch.nn.Module):
    def __init__(self, cfg, sd, dropout):
        super().__init__()
        self.cfg, self.sd = cfg, sd
        self.layers = torch.nn.ModuleList(
            Layer(cfg, sd, f"model.decoder.layers.{i}.", dropout) for i in range(cfg["num_layers"]))
        self.names = {}
        for lay in self.layers:
            self.names.update(lay.names)
        self.final = None
        if "model.decoder.final_layer_norm.weight" in sd:
            self.final = module(torch.nn.LayerNorm, cfg["hidden_size"], eps=cfg.get("layer_norm_eps", 1e-5))
            for k in ("weight", "bias"):
                setattr(self.final, k, param(sd.pop(f"model.decoder.final_layer_norm.{k}")))
                self.names[f"model.decoder.final_layer_norm.{k}"] = (self.final, k)
        self.head = sd.get("lm_head.weight", sd["model.decoder.embed_tokens.weight"])

    def forward(self, ids):
        x = embed(self.cfg, self.sd, ids)
        mask = causal_mask(ids.shape[1])
        for lay in self.layers:
            x = lay(x, mask)
        if self.final is not None:
            x = self.final(x)
        if "model.decoder.project_out.weight" in self.sd:
            x = F.linear(x, self.sd["model.decoder.project_out.weight"])
        return F.linear(x, self.head)


def trainable(m, o):
    """The parameters that train, by stream name; with --full every linear weight gets its
    mask of nonzeros first, so that its trainable tensor is weight_orig."""
    out = []
    for name, (mod, attr) in m.names.items():
        ln = "layer_norm." in name
        if o.perp and (name.endswith(".bias") or ln):
            out.append((mod, attr))
        elif o.full:
            if attr == "weight" and isinstance(mod, torch.nn.Linear):
                tprune.custom_from_mask(mod, "weight", mod.weight.detach() != 0)
                attr = "weight_orig"
            out.append((mod, attr))
    ps = []
    for mod, attr in out:
        p = getattr(mod, attr)
        p.requires_grad_(True)
        ps.append(p)
    return ps


def lr_at(step, total, warm, peak):
    if step < warm:
        return peak * step / max(warm, 1)
    if total <= warm:
        return peak
    return peak * (1 - min(1.0, (step - warm) / (total - warm)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("ids")
    ap.add_argument("--perp", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("-s", "--seqlen", type=int, default=512)
    ap.add_argument("-b", "--batch", type=int, default=8)
    ap.add_argument("-n", "--steps", type=int, default=200)
    ap.add_argument("-l", "--lr", type=float, default=0, help="default 1e-3, 1e-4 with --full")
    ap.add_argument("--warmup", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()
    if not (o.perp or o.full):
        ap.error("choose --perp and/or --full")
    lr = o.lr or (1e-4 if o.full else 1e-3)
    torch.set_num_threads(o.threads)
    torch.set_num_interop_threads(1)

    t0 = time.monotonic()
    cfg, sd = read_model(o.model)
    ids = read_ids(o.ids)
    T, B = o.seqlen, o.batch
    if len(ids) < T:
        raise SystemExit(f"torch_train.py: {o.ids}: {len(ids)} ids, fewer than one window of {T}")
    m = OPT(cfg, sd, o.dropout)
    for p in m.parameters():
        p.requires_grad_(False)
    ps = trainable(m, o)
    opt = torch.optim.AdamW(ps, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    m.train()
    rng = Rng(o.seed)
    warm = math.ceil(o.warmup * o.steps)
    losses, norms = [], []
    t1 = time.monotonic()
    for s in range(o.steps):
        x = torch.stack([ids[a:a + T] for a in (rng.below(len(ids) - T + 1) for _ in range(B))])
        for g in opt.param_groups:
            g["lr"] = lr_at(s, o.steps, warm, lr)
        opt.zero_grad(set_to_none=True)
        lg = m(x)
        loss = F.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1))
        loss.backward()
        del lg
        gn = torch.nn.utils.clip_grad_norm_(ps, o.clip) if o.clip > 0 else \
            torch.norm(torch.stack([p.grad.norm() for p in ps]))
        opt.step()
        losses.append(loss.item())
        norms.append(float(gn))
    t2 = time.monotonic()
    r = {"program": "torch_train.py", "torch": torch.__version__, "threads": torch.get_num_threads(),
         "mode": "+".join(k for k in ("perp", "full") if getattr(o, k)), "trainable": sum(p.numel() for p in ps),
         "steps": o.steps, "batch": B, "seqlen": T, "lr": lr, "seconds": t2 - t0, "train_seconds": t2 - t1,
         "tokens_per_second": o.steps * B * T / (t2 - t1), "losses": losses, "grad_norms": norms,
         "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    print_result(r, o.json)


if __name__ == "__main__":
    sys.exit(main())

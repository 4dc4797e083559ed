#!/usr/bin/python3
"""bench/torch_prune.py: the PyTorch peer of `lm-prune`, for bench/prune.sh.

Magnitude, Wanda and SparseGPT in plain PyTorch (Debian python3-torch 1.13, no transformers) on
the CPU in float32, following the reference code as docs/methods.md section 3 describes
it (locuslab/wanda lib/prune_opt.py and layerwrapper.py, IST-DASLab/sparsegpt opt.py and
sparsegpt.py):

- the whole model is read into memory first (the reference loads it with from_pretrained);
- magnitude: per matrix, prune |w| <= the element at sorted index int(numel * s);
- wanda and sparsegpt calibrate layer by layer: the inputs of layer 0 for every window, then
  per layer forward hooks on its six nn.Linear modules gather statistics while the dense layer
  runs over the windows one at a time, the six are pruned, and the pruned layer runs over the
  same inputs to give the next layer's (q/k/v keep three copies of the same statistics, as the
  reference's one wrapper per linear does);
- wanda: running mean of x_j^2 per input, score |w| * sqrt(mean), per row the int(cols * s)
  smallest scores pruned (stable sort);
- sparsegpt: H = (2/n) sum x x^T accumulated window by window, dead inputs, 1 % dampening,
  upper Cholesky factor of H^-1, blocks of 128 columns with the adaptive mask and the
  error feedback, as fasterprune().

Model and calibration ids are read from lm-streams (lm-stream(5)): the model as lm-init or
lm-import writes it, the ids as `lm-eval --save-ids` writes them; the windows are the first
--nsamples non-overlapping windows of --seqlen ids, as lm-prune takes them.

    /usr/bin/python3 bench/torch_prune.py MODEL.lms -m METHOD -s S [-c IDS.lms] [--nsamples N]
                     [--seqlen T] [--blocksize 128] [--damp 0.01] [--threads N] [--save FILE] [--json]
    /usr/bin/python3 bench/torch_prune.py --compare PRUNED.lms FILE [--json]

--save writes the pruned matrices, f32 in model order, after the clock stops; --compare reads
lm-prune's output next to such a file and reports how far the two agree (masks and values).
The clock runs from before the model is read to after the last matrix is pruned. Peak RSS is
getrusage(RUSAGE_SELF).ru_maxrss. torch_train.py imports the stream reader and the layer.
"""
import argparse
import math
import resource
import sys
import time

import msgpack
import numpy as np
import torch
import torch.nn.functional as F

from torch_opt import print_result  # noqa: E402  (bench/ is on sys.path: the script's folder)

LINEARS = {"q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
           "out_proj": "self_attn.out_proj", "fc1": "fc1", "fc2": "fc2"}
DTYPES = {"f32": "<f4", "f16": "<f2", "bf16": "<u2", "f64": "<f8", "i64": "<i8", "i32": "<i4",
          "i16": "<i2", "i8": "i1"}


def die(msg):
    raise SystemExit(f"{sys.argv[0].rsplit('/', 1)[-1]}: {msg}")


def records(path):
    """(header, iterator of (record map, payload bytes or None)) of an lm-stream; the payload
    is read only when the caller's want(rec) says so, otherwise it is skipped chunk by chunk."""
    f = open(path, "rb")
    u = msgpack.Unpacker(f, raw=False, max_buffer_size=0)
    header = next(u, None)
    if not isinstance(header, dict) or header.get("format") != "lm-stream":
        die(f"{path}: not an lm-stream")

    def it(want):
        for rec in u:
            if rec.get("kind") == "end":
                return
            keep = want(rec)
            chunks, got = [], 0
            while got < rec["nbytes"]:
                c = next(u)
                got += len(c)
                if keep:
                    chunks.append(c)
            yield rec, (chunks[0] if len(chunks) == 1 else b"".join(chunks)) if keep else None
        die(f"{path}: truncated (no end record)")
    return header, it


def tensor_of(rec, data, path):
    """A float32 (or int64, for ids) torch tensor of a tensor record's payload."""
    dt = rec["dtype"]
    if rec.get("layout"):  # lm-stream(5) sparse layouts: the bench writes dense streams for torch
        die(f"{path}: {rec['name']}: sparse layout {rec['layout']} (write it with lm-prune --store dense)")
    if dt not in DTYPES:
        die(f"{path}: {rec['name']}: dtype {dt} not supported")
    a = np.frombuffer(data, dtype=DTYPES[dt])
    if dt == "bf16":
        a = (a.astype(np.uint32) << 16).view(np.float32)
    elif dt in ("i64", "i32", "i16", "i8"):
        a = a.astype(np.int64)
    else:
        a = a.astype(np.float32)  # a copy for f32 too: frombuffer's array is read-only
    return torch.from_numpy(a).reshape(rec["shape"])


def read_model(path):
    """(model config map, {name: float32 tensor}) of the whole model, in stream order."""
    header, it = records(path)
    sd = {}
    for rec, data in it(lambda r: r.get("kind") == "tensor"):
        if data is not None:
            sd[rec["name"]] = tensor_of(rec, data, path)
    return header["model"], sd


def read_ids(path):
    """The first tensor 'ids' of an lm-stream, flattened to int64."""
    _, it = records(path)
    ids = None
    for rec, data in it(lambda r: ids is None and r.get("kind") == "tensor" and r["name"] == "ids"):
        if data is not None:
            ids = tensor_of(rec, data, path).reshape(-1)
    if ids is None:
        die(f"{path}: no tensor 'ids'")
    return ids


def module(cls, *args, **kw):
    """An nn.Module without its random initialisation (its weights are set from the stream)."""
    return torch.nn.utils.skip_init(cls, *args, **kw)


def param(t, grad=False):
    return torch.nn.Parameter(t, requires_grad=grad)


class Layer(torch.nn.Module):
    """One OPT decoder layer (transformers' OPTDecoderLayer, same arithmetic as torch_opt.py)
    with nn.Linear and nn.LayerNorm submodules, so that hooks, masks and optimizers see them as
    they see the reference's. names maps each stream name to its parameter."""

    def __init__(self, cfg, sd, prefix, dropout=0.0):
        super().__init__()
        C, F_, eps = cfg["hidden_size"], cfg["ffn_dim"], cfg.get("layer_norm_eps", 1e-5)
        self.NH, self.pre, self.p = cfg["num_heads"], cfg.get("do_layer_norm_before", True), dropout
        self.names = {}
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            m = module(torch.nn.LayerNorm, C, eps=eps)
            for k in ("weight", "bias"):
                setattr(m, k, param(sd.pop(f"{prefix}{ln}.{k}")))
                self.names[f"{prefix}{ln}.{k}"] = (m, k)
            setattr(self, ln, m)
        for short, long in LINEARS.items():
            w = sd.pop(f"{prefix}{long}.weight")
            b = sd.pop(f"{prefix}{long}.bias", None)
            m = module(torch.nn.Linear, w.shape[1], w.shape[0], bias=b is not None)
            m.weight = param(w)
            self.names[f"{prefix}{long}.weight"] = (m, "weight")
            if b is not None:
                m.bias = param(b)
                self.names[f"{prefix}{long}.bias"] = (m, "bias")
            setattr(self, short, m)
        assert F_ == self.fc1.weight.shape[0]

    def forward(self, x, mask):
        B, T, C = x.shape
        hd = C // self.NH
        r = x
        h = self.self_attn_layer_norm(x) if self.pre else x
        q = self.q_proj(h) * hd ** -0.5                       # scaled after the bias
        k, v = self.k_proj(h), self.v_proj(h)
        q, k, v = (t.view(B, T, self.NH, hd).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v
        a = self.out_proj(a.transpose(1, 2).reshape(B, T, C))
        x = r + F.dropout(a, self.p, self.training)
        if not self.pre:
            x = self.self_attn_layer_norm(x)
        r = x
        h = self.final_layer_norm(x) if self.pre else x
        h = self.fc2(torch.relu(self.fc1(h)))
        x = r + F.dropout(h, self.p, self.training)
        if not self.pre:
            x = self.final_layer_norm(x)
        return x


def causal_mask(T):
    return torch.full((T, T), float("-inf")).triu_(1)


def embed(cfg, sd, ids):
    """The input of layer 0 for ids [B, T]: token embedding, project_in, learned positions."""
    x = F.embedding(ids, sd["model.decoder.embed_tokens.weight"])
    if "model.decoder.project_in.weight" in sd:
        x = F.linear(x, sd["model.decoder.project_in.weight"])
    off = cfg.get("pos_offset", 2)
    return x + sd["model.decoder.embed_positions.weight"][off:off + ids.shape[1]]


# ---- the methods ----

def magnitude(W, s):
    """wanda's prune_magnitude / sparsegpt --gmp: |w| <= the element at sorted index int(n*s)"""
    m = W.abs()
    thresh = torch.sort(m.flatten())[0][int(W.numel() * s)]
    W[m <= thresh] = 0


class WandaStats:
    """wanda's WrappedGPT: a running mean over windows of the squared norm of each input"""

    def __init__(self, lin):
        self.lin, self.n = lin, 0
        self.scaler = torch.zeros(lin.weight.shape[1])

    def add(self, x):
        nb = x.shape[0] if x.dim() == 3 else 1
        x = x.reshape(-1, x.shape[-1]).t().float()
        self.scaler *= self.n / (self.n + nb)
        self.n += nb
        self.scaler += torch.norm(x, p=2, dim=1) ** 2 / self.n

    def prune(self, s, **_):
        W = self.lin.weight.data
        score = W.abs() * torch.sqrt(self.scaler.reshape(1, -1))
        idx = torch.sort(score, dim=-1, stable=True)[1][:, :int(W.shape[1] * s)]
        mask = torch.zeros_like(W, dtype=torch.bool).scatter_(1, idx, True)
        W[mask] = 0


class SparseGPTStats:
    """sparsegpt's SparseGPT: H = (2/n) sum x x^T, then fasterprune()"""

    def __init__(self, lin):
        self.lin, self.n = lin, 0
        c = lin.weight.shape[1]
        self.H = torch.zeros(c, c)

    def add(self, x):
        nb = x.shape[0] if x.dim() == 3 else 1
        x = x.reshape(-1, x.shape[-1]).t().float()
        self.H *= self.n / (self.n + nb)
        self.n += nb
        x = math.sqrt(2 / self.n) * x
        self.H += x @ x.t()

    def prune(self, s, blocksize=128, damp=0.01):
        W = self.lin.weight.data.clone().float()
        H, self.H = self.H, None
        cols = W.shape[1]
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        d = torch.arange(cols)
        H[d, d] += damp * torch.mean(torch.diag(H))
        H = torch.linalg.cholesky(H)
        H = torch.cholesky_inverse(H)
        U = torch.linalg.cholesky(H, upper=True)       # H^-1 = U^T U
        del H
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            W1 = W[:, i1:i2].clone()
            Q1, E1 = torch.zeros_like(W1), torch.zeros_like(W1)
            U1 = U[i1:i2, i1:i2]
            score = W1 ** 2 / torch.diag(U1).reshape(1, -1) ** 2
            mask = score <= torch.sort(score.flatten())[0][int(score.numel() * s)]
            for i in range(i2 - i1):
                w = W1[:, i]
                q = w.clone()
                q[mask[:, i]] = 0
                Q1[:, i] = q
                err = (w - q) / U1[i, i]
                W1[:, i:] -= err.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
                E1[:, i] = err
            W[:, i1:i2] = Q1
            W[:, i2:] -= E1 @ U[i1:i2, i2:]
        self.lin.weight.data = W.to(self.lin.weight.dtype)


def prune_model(cfg, sd, o, ids):
    """Prune every layer's six linears in place; returns the Layer modules in order."""
    L = cfg["num_layers"]
    layers = [Layer(cfg, sd, f"model.decoder.layers.{i}.") for i in range(L)]
    if o.method == "magnitude":
        for lay in layers:
            for short in LINEARS:
                magnitude(getattr(lay, short).weight.data, o.sparsity)
        return layers
    T, N = o.seqlen, o.nsamples
    if len(ids) < N * T:
        die(f"{o.calib}: {len(ids)} ids, fewer than {N} windows of {T}")
    mask = causal_mask(T)
    Stats = WandaStats if o.method == "wanda" else SparseGPTStats
    with torch.no_grad():
        inps = torch.stack([embed(cfg, sd, ids[j * T:(j + 1) * T].view(1, T))[0] for j in range(N)])
        outs = torch.zeros_like(inps)
        for lay in layers:
            stats = {short: Stats(getattr(lay, short)) for short in LINEARS}
            hooks = [getattr(lay, short).register_forward_hook(
                lambda m, inp, out, st=st: st.add(inp[0].data)) for short, st in stats.items()]
            for j in range(N):                         # the dense layer: statistics
                outs[j] = lay(inps[j].unsqueeze(0), mask)[0]
            for h in hooks:
                h.remove()
            for st in stats.values():
                st.prune(o.sparsity, blocksize=o.blocksize, damp=o.damp)
            del stats
            for j in range(N):                         # the pruned layer: next layer's inputs
                outs[j] = lay(inps[j].unsqueeze(0), mask)[0]
            inps, outs = outs, inps
    return layers


# ---- --save and --compare ----

def save(layers, path):
    with open(path, "wb") as f:
        for lay in layers:
            for short in LINEARS:
                getattr(lay, short).weight.data.numpy().tofile(f)


def compare(pruned, saved):
    """Per pruned matrix of lm-prune's stream: the fraction of positions where both or neither
    are zero, and ||a - b|| / ||b|| with b torch's."""
    _, it = records(pruned)
    agree, rel, zs_a, zs_b, n, first = [], [], [], [], 0, None
    suffixes = tuple(f".{long}.weight" for long in LINEARS.values())
    with open(saved, "rb") as f:
        for rec, data in it(lambda r: r.get("kind") == "tensor" and r["name"].endswith(suffixes)
                            and ".layers." in r["name"]):
            if data is None:
                continue
            a = tensor_of(rec, data, pruned).reshape(-1).double()
            b = torch.from_numpy(np.fromfile(f, dtype="<f4", count=a.numel())).double()
            if b.numel() != a.numel():
                die(f"{saved}: shorter than {pruned}")
            agree.append(((a == 0) == (b == 0)).double().mean().item())
            if first is None and agree[-1] < 1:
                first = rec["name"]
            rel.append(((a - b).norm() / b.norm()).item())
            zs_a.append((a == 0).double().mean().item())
            zs_b.append((b == 0).double().mean().item())
            n += 1
        if f.read(1):
            die(f"{saved}: longer than {pruned}")
    # masks can agree exactly and then part: a near-tie decided the other way changes that
    # layer's output a little, and so the next layers' statistics
    return {"matrices": n, "mask_agreement_min": min(agree), "mask_agreement_mean": sum(agree) / n,
            "mask_agreement_first": agree[0], "mask_agreement_last": agree[-1], "first_difference": first,
            "relative_difference_max": max(rel), "sparsity_lmprune": sum(zs_a) / n,
            "sparsity_torch": sum(zs_b) / n}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("-m", "--method", choices=("magnitude", "wanda", "sparsegpt"), default="magnitude")
    ap.add_argument("-s", "--sparsity", type=float, default=0.5)
    ap.add_argument("-c", "--calib", help="lm-stream with a tensor 'ids'")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=0, help="default: the model's max positions")
    ap.add_argument("--blocksize", type=int, default=128)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", help="write the pruned matrices here, f32 in model order")
    ap.add_argument("--compare", nargs=2, metavar=("PRUNED", "FILE"))
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    torch.set_num_interop_threads(1)

    if o.compare:
        r = compare(*o.compare)
    else:
        if not o.model:
            ap.error("the model stream is required")
        if o.method != "magnitude" and not o.calib:
            ap.error(f"{o.method} needs -c IDS.lms")
        if not 0 <= o.sparsity < 1:
            ap.error("-s must be in [0, 1)")
        t0 = time.monotonic()
        cfg, sd = read_model(o.model)
        ids = read_ids(o.calib) if o.method != "magnitude" else None
        o.seqlen = o.seqlen or cfg["max_positions"]
        t1 = time.monotonic()
        layers = prune_model(cfg, sd, o, ids)
        t2 = time.monotonic()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if o.save:
            save(layers, o.save)
        r = {"program": "torch_prune.py", "torch": torch.__version__, "threads": torch.get_num_threads(),
             "method": o.method, "sparsity": o.sparsity, "layers": len(layers),
             "nsamples": o.nsamples if ids is not None else 0, "seqlen": o.seqlen if ids is not None else 0,
             "seconds": t2 - t0, "load_seconds": t1 - t0, "prune_seconds": t2 - t1, "peak_rss_bytes": rss}
    print_result(r, o.json)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""bench/torch_gptq.py: the PyTorch peer of `lm-quant -m gptq`, for bench/quant.sh.

GPTQ in plain PyTorch (Debian python3-torch 1.13, no transformers) on the CPU in float32,
following the reference code as docs/methods.md section 3.4 describes it
(IST-DASLab/gptq opt.py opt_sequential, gptq.py fasterquant, quant.py Quantizer):

- the whole model is read into memory first (the reference loads it with from_pretrained);
- layer-sequential calibration: the inputs of layer 0 for every window, then per layer forward
  hooks on its six nn.Linear modules accumulate H = (2/n) sum x x^T (running rescale per
  window, as add_batch) while the dense layer runs over the windows one at a time; the six are
  quantized; the quantized layer runs over the same inputs to give the next layer's;
- the quantizer: per output channel, asymmetric min-max with the range forced to include 0
  (or --sym), scale = (max - min) / maxq in float32 (the reference keeps it so; lm-quant
  rounds it to f16, the precision it stores: --f16-scale does that too, for --compare),
  zero = round(-min / scale);
- fasterquant: dead inputs, 1 % dampening, the upper Cholesky factor of H^-1, blocks of 128
  columns quantized one column at a time with the error fed back, a group's grid fitted on
  the current W when its first column is reached (--groupsize).

Model and calibration ids are read from lm-streams by bench/torch_prune.py's reader (the model
as lm-init or lm-import writes it, the ids as `lm-eval --save-ids` writes them); the windows
are the first --nsamples non-overlapping windows of --seqlen ids, as lm-quant takes them.

    /usr/bin/python3 bench/torch_gptq.py MODEL.lms -c IDS.lms [--wbits 4] [--groupsize 128]
                     [--sym] [--f16-scale] [--nsamples N] [--seqlen T] [--blocksize 128] [--damp 0.01]
                     [--threads N] [--save FILE] [--json]
    /usr/bin/python3 bench/torch_gptq.py --compare QUANT.lms FILE [--json]

--save writes the quantized matrices (dequantized, f32, model order) after the clock stops;
--compare reads lm-quant's packed output next to such a file and reports how far the two
agree, layer by layer. The clock runs from before the model is read to after the last matrix is quantized.
Peak RSS is getrusage(RUSAGE_SELF).ru_maxrss.
"""
import argparse
import math
import resource
import sys
import time

import numpy as np
import torch

from torch_prune import (LINEARS, Layer, SparseGPTStats, causal_mask, die, embed, print_result,
                         read_ids, read_model, records, save)


class Quantizer:
    """quant.py's Quantizer with perchannel=True, weight=True, mse off"""

    def __init__(self, bits, sym, f16_scale=False):
        self.maxq, self.sym, self.f16 = 2 ** bits - 1, sym, f16_scale

    def find_params(self, W):
        zero = torch.zeros(W.shape[0])
        xmin = torch.minimum(W.min(1)[0], zero)
        xmax = torch.maximum(W.max(1)[0], zero)
        if self.sym:
            xmax = torch.maximum(torch.abs(xmin), xmax)
            neg = xmin < 0
            xmin[neg] = -xmax[neg]
        both = (xmin == 0) & (xmax == 0)
        xmin[both], xmax[both] = -1, 1
        self.scale = ((xmax - xmin) / self.maxq).unsqueeze(1)
        if self.f16:                                   # --f16-scale: as lm-quant stores it
            self.scale = self.scale.half().float()
        if self.sym:
            self.zero = torch.full_like(self.scale, (self.maxq + 1) / 2)
        else:
            self.zero = torch.round(-xmin / self.scale.squeeze(1)).unsqueeze(1)

    def quantize(self, x):
        q = torch.clamp(torch.round(x / self.scale) + self.zero, 0, self.maxq)
        return self.scale * (q - self.zero)


class GPTQ(SparseGPTStats):
    """gptq.py's GPTQ: add_batch, then fasterquant (no act-order, no static groups); the
    Hessian H = (2/n) sum x x^T is accumulated as SparseGPT's, which GPTQ's code shares"""

    def quantize(self, quantizer, groupsize, blocksize=128, damp=0.01):
        W = self.lin.weight.data.clone().float()
        cols = W.shape[1]
        quantizer.find_params(W)
        H, self.H = self.H, None
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        Q = torch.zeros_like(W)
        d = torch.arange(cols)
        H[d, d] += damp * torch.mean(torch.diag(H))
        H = torch.linalg.cholesky(H)
        H = torch.cholesky_inverse(H)
        U = torch.linalg.cholesky(H, upper=True)        # H^-1 = U^T U
        del H
        Losses = torch.zeros_like(W)
        for i1 in range(0, cols, blocksize):
            i2 = min(i1 + blocksize, cols)
            W1 = W[:, i1:i2].clone()
            Q1, E1, Losses1 = torch.zeros_like(W1), torch.zeros_like(W1), torch.zeros_like(W1)
            U1 = U[i1:i2, i1:i2]
            for i in range(i2 - i1):
                w, u = W1[:, i], U1[i, i]
                if groupsize > 0 and (i1 + i) % groupsize == 0:
                    quantizer.find_params(W[:, i1 + i:i1 + i + groupsize])
                q = quantizer.quantize(w.unsqueeze(1)).flatten()
                Q1[:, i] = q
                Losses1[:, i] = (w - q) ** 2 / u ** 2
                err = (w - q) / u
                W1[:, i:] -= err.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
                E1[:, i] = err
            Q[:, i1:i2] = Q1
            Losses[:, i1:i2] = Losses1 / 2
            W[:, i2:] -= E1 @ U[i1:i2, i2:]
        self.lin.weight.data = Q.to(self.lin.weight.dtype)
        return torch.sum(Losses).item()


def quantize_model(cfg, sd, o, ids):
    """GPTQ on every layer's six linears in place; returns the Layer modules in order."""
    L, T, N = cfg["num_layers"], o.seqlen, o.nsamples
    if len(ids) < N * T:
        die(f"{o.calib}: {len(ids)} ids, fewer than {N} windows of {T}")
    layers = [Layer(cfg, sd, f"model.decoder.layers.{i}.") for i in range(L)]
    mask = causal_mask(T)
    quantizer = Quantizer(o.wbits, o.sym, o.f16_scale)
    with torch.no_grad():
        inps = torch.stack([embed(cfg, sd, ids[j * T:(j + 1) * T].view(1, T))[0] for j in range(N)])
        outs = torch.zeros_like(inps)
        for lay in layers:
            stats = {short: GPTQ(getattr(lay, short)) for short in LINEARS}
            hooks = [getattr(lay, short).register_forward_hook(
                lambda m, inp, out, st=st: st.add(inp[0].data)) for short, st in stats.items()]
            for j in range(N):                         # the dense layer: Hessians
                outs[j] = lay(inps[j].unsqueeze(0), mask)[0]
            for h in hooks:
                h.remove()
            for st in stats.values():
                st.quantize(quantizer, o.groupsize, blocksize=o.blocksize, damp=o.damp)
            del stats
            for j in range(N):                         # the quantized layer: next layer's inputs
                outs[j] = lay(inps[j].unsqueeze(0), mask)[0]
            inps, outs = outs, inps
    return layers


# ---- --save and --compare ----

def dequant(rec, data):
    """A packed lm-stream record (lm-stream(5): q<b>c / q<b>g<G>) as float64 numpy [rows*cols]."""
    m = rec["dtype"]
    if not m.startswith("q"):
        die(f"{rec['name']}: {m} is not a packed type")
    bits = int(m[1])
    rows, cols = rec["shape"]
    G = cols if m[2] == "c" else int(m[3:])
    gb = 4 + (G * bits + 7) // 8
    ng = rows * cols // G
    buf = np.frombuffer(data, dtype=np.uint8).reshape(ng, gb)
    scale = buf[:, 0:2].copy().view("<f2").astype(np.float64).reshape(ng, 1)
    zero = buf[:, 2].astype(np.float64).reshape(ng, 1)
    # code j at bits j*b .. j*b+b-1 from the least significant bit of the group's first byte
    bitsarr = np.unpackbits(buf[:, 4:], axis=1, bitorder="little")[:, :G * bits]
    codes = (bitsarr.reshape(ng, G, bits) * (1 << np.arange(bits))).sum(axis=2)
    return (scale * (codes - zero)).reshape(-1)


def compare(quant, saved):
    """Per decoder layer of lm-quant's stream, ||a - b|| / ||b|| over its quantized matrices
    (b torch's), and the fraction of equal values in layer 0. Layer 0 sees the same inputs on
    both sides, so it should agree but for float rounding; each later layer's inputs come
    from the quantized layers before it, and GPTQ's error feedback carries a code that
    rounds the other way along the row, so the two drift apart with depth (at equal error)."""
    _, it = records(quant)
    num, den, eq, n = {}, {}, [], 0
    suffixes = tuple(f".{long}.weight" for long in LINEARS.values())
    with open(saved, "rb") as f:
        for rec, data in it(lambda r: r.get("kind") == "tensor" and r["name"].endswith(suffixes)
                            and ".layers." in r["name"]):
            if data is None:
                continue
            a = dequant(rec, data)
            b = np.fromfile(f, dtype="<f4", count=a.size).astype(np.float64)
            if b.size != a.size:
                die(f"{saved}: shorter than {quant}")
            layer = int(rec["name"].split(".layers.")[1].split(".")[0])
            num[layer] = num.get(layer, 0.0) + float(np.sum((a - b) ** 2))
            den[layer] = den.get(layer, 0.0) + float(np.sum(b ** 2))
            if layer == 0:
                eq.append(np.abs(a - b) <= 1e-6 * np.abs(b).max())
            n += 1
        if f.read(1):
            die(f"{saved}: longer than {quant}")
    rel = [math.sqrt(num[k] / den[k]) for k in sorted(num)]
    return {"matrices": n, "relative_difference_by_layer": rel,
            "equal_values_layer0": float(np.concatenate(eq).mean()) if eq else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("-c", "--calib", help="lm-stream with a tensor 'ids'")
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--groupsize", type=int, default=-1, help="-1 or 0: one grid per row")
    ap.add_argument("--sym", action="store_true")
    ap.add_argument("--f16-scale", action="store_true",
                    help="round each scale to f16 before the zero point, as lm-quant stores it")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=0, help="default: the model's max positions")
    ap.add_argument("--blocksize", type=int, default=128)
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", help="write the quantized matrices here, f32 in model order")
    ap.add_argument("--compare", nargs=2, metavar=("QUANT", "FILE"))
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    torch.set_num_interop_threads(1)

    if o.compare:
        r = compare(*o.compare)
    else:
        if not o.model or not o.calib:
            ap.error("the model stream and -c IDS.lms are required")
        if o.wbits not in (2, 3, 4, 8):
            ap.error("--wbits must be 2, 3, 4 or 8")
        t0 = time.monotonic()
        cfg, sd = read_model(o.model)
        ids = read_ids(o.calib)
        o.seqlen = o.seqlen or cfg["max_positions"]
        t1 = time.monotonic()
        layers = quantize_model(cfg, sd, o, ids)
        t2 = time.monotonic()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if o.save:
            save(layers, o.save)
        r = {"program": "torch_gptq.py", "torch": torch.__version__, "threads": torch.get_num_threads(),
             "wbits": o.wbits, "groupsize": o.groupsize, "sym": o.sym, "layers": len(layers),
             "nsamples": o.nsamples, "seqlen": o.seqlen, "seconds": t2 - t0, "load_seconds": t1 - t0,
             "quant_seconds": t2 - t1, "peak_rss_bytes": rss}
    print_result(r, o.json)


if __name__ == "__main__":
    sys.exit(main())

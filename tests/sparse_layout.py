"""sparse_layout.py: a second, independent reader of lm-stream(5)'s sparse layouts, for
the bats tests' Python checks: dense(rec, body) is the payload of a tensor record as the
dense matrix of its dtype, whatever its "layout" (absent: dense already). numpy does the
bit unpacking: the same reader as plain Python loops took seconds per stream, a few
minutes of every CI run."""

import re

import numpy as np

SIZE = {"f32": 4, "f16": 2, "bf16": 2}


def fields(buf, count, width):
    # count little-endian fields of width bits each, least significant bit first
    bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")[:count * width]
    assert bits.size == count * width, "positions cut short"
    return bits.reshape(count, width).astype(np.int64) @ (1 << np.arange(width, dtype=np.int64))


def packed_nm(rec, body, b, G):
    # N:M of packed codes: per quant group of G inputs its 4-byte header and its kept codes
    # (b bits each), then the positions as for floats; a dropped code is the zero point
    rows, cols = rec["shape"]
    n, m = map(int, rec["layout"].split(":"))
    pb = max(1, (m - 1).bit_length())
    kept = G // m * n
    kb = (kept * b + 7) // 8
    ngroups = rows * cols // G
    grp = np.frombuffer(body[:ngroups * (4 + kb)], np.uint8).reshape(ngroups, 4 + kb)
    codes = np.repeat(grp[:, 2:3].astype(np.int64), G, axis=1)  # the zero point everywhere
    kbits = np.unpackbits(grp[:, 4:], axis=1, bitorder="little")[:, :kept * b]
    kc = kbits.reshape(ngroups, kept, b).astype(np.int64) @ (1 << np.arange(b, dtype=np.int64))
    p = fields(body[ngroups * (4 + kb):], ngroups * kept, pb).reshape(ngroups, kept)
    assert (p < m).all(), rec["name"]
    col = np.arange(kept) // n * m + p
    np.put_along_axis(codes, col, kc, axis=1)
    bits = ((codes[:, :, None] >> np.arange(b)) & 1).astype(np.uint8).reshape(ngroups, G * b)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return np.concatenate([grp[:, :4], packed], axis=1).tobytes()


def dense(rec, body):
    lay = rec.get("layout", "dense")
    if lay == "dense":
        return body
    rows, cols = rec["shape"]
    q = re.fullmatch(r"q(\d)(?:c|g(\d+))", rec["dtype"])
    if q:
        return packed_nm(rec, body, int(q.group(1)), int(q.group(2) or cols))
    s = SIZE[rec["dtype"]]
    numel = rows * cols
    out = np.zeros(numel, np.dtype("u%d" % s))
    if ":" in lay:
        # values of n kept per group of m, then each kept one's position in its group,
        # pos_bits(m) bits each, least significant bit first
        n, m = map(int, lay.split(":"))
        b = max(1, (m - 1).bit_length())
        kept = numel // m * n
        p = fields(body[kept * s:], kept, b)
        assert (p < m).all(), rec["name"]
        out[np.arange(kept) // n * m + p] = np.frombuffer(body[:kept * s], out.dtype)
    elif lay == "bitmap":
        # the kept values, then a bit per weight in row-major order
        nnz = (len(body) - (numel + 7) // 8) // s
        mask = np.unpackbits(np.frombuffer(body[nnz * s:], np.uint8), bitorder="little")[:numel]
        assert int(mask.sum()) == nnz, (rec["name"], int(mask.sum()), nnz)
        out[mask.astype(bool)] = np.frombuffer(body[:nnz * s], out.dtype)
    elif lay == "index":
        # the kept values, their columns (u16, or u32 past 65536 columns), a u32 count per row
        w = 2 if cols <= 65536 else 4
        nnz = (len(body) - rows * 4) // (s + w)
        idx = np.frombuffer(body[nnz * s:nnz * (s + w)], "<u%d" % w).astype(np.int64)
        cnt = np.frombuffer(body[nnz * (s + w):], "<u4").astype(np.int64)
        out[np.repeat(np.arange(rows), cnt) * cols + idx] = np.frombuffer(body[:nnz * s], out.dtype)
    else:
        raise ValueError("%s: unknown layout %r" % (rec["name"], lay))
    return out.tobytes()

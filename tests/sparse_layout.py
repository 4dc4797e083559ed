"""sparse_layout.py: a second, independent reader of lm-stream(5)'s sparse layouts, for
the bats tests' Python checks: dense(rec, body) is the payload of a tensor record as the
dense matrix of its dtype, whatever its "layout" (absent: dense already)."""

import re

SIZE = {"f32": 4, "f16": 2, "bf16": 2}


def packed_nm(rec, body, b, G):
    # N:M of packed codes: per quant group of G inputs its 4-byte header and its kept codes
    # (b bits each), then the positions as for floats; a dropped code is the zero point
    rows, cols = rec["shape"]
    n, m = map(int, rec["layout"].split(":"))
    pb = max(1, (m - 1).bit_length())
    kb = (G // m * n * b + 7) // 8
    ngroups = rows * cols // G
    pos = body[ngroups * (4 + kb):] + b"\0\0"
    out, v = bytearray(), 0
    for g in range(ngroups):
        grp = body[g * (4 + kb):(g + 1) * (4 + kb)]
        codes, kept = [grp[2]] * G, int.from_bytes(grp[4:], "little")
        for k in range(G // m * n):
            bit = v * pb
            p = ((pos[bit >> 3] | pos[(bit >> 3) + 1] << 8) >> (bit & 7)) & ((1 << pb) - 1)
            codes[k // n * m + p] = (kept >> (k * b)) & ((1 << b) - 1)
            v += 1
        out += grp[:4] + sum(c << (j * b) for j, c in enumerate(codes)).to_bytes(G * b // 8, "little")
    return bytes(out)


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
    out = bytearray(numel * s)
    if ":" in lay:
        # values of n kept per group of m, then each kept one's position in its group,
        # pos_bits(m) bits each, least significant bit first
        n, m = map(int, lay.split(":"))
        b = max(1, (m - 1).bit_length())
        kept = numel // m * n
        pos = body[kept * s:] + b"\0\0"
        for v in range(kept):
            bit = v * b
            p = ((pos[bit >> 3] | pos[(bit >> 3) + 1] << 8) >> (bit & 7)) & ((1 << b) - 1)
            assert p < m, (rec["name"], v, p)
            i = v // n * m + p
            out[i * s:(i + 1) * s] = body[v * s:(v + 1) * s]
    elif lay == "bitmap":
        # the kept values, then a bit per weight in row-major order
        nnz = (len(body) - (numel + 7) // 8) // s
        bits, v = body[nnz * s:], 0
        for byte_i, byte in enumerate(bits):
            for k in range(8):
                if byte >> k & 1:
                    i = byte_i * 8 + k
                    out[i * s:(i + 1) * s] = body[v * s:(v + 1) * s]
                    v += 1
        assert v == nnz, (rec["name"], v, nnz)
    elif lay == "index":
        # the kept values, their columns (u16, or u32 past 65536 columns), a u32 count per row
        w = 2 if cols <= 65536 else 4
        nnz = (len(body) - rows * 4) // (s + w)
        idx, cnt = body[nnz * s:nnz * (s + w)], body[nnz * (s + w):]
        v = 0
        for r in range(rows):
            for _ in range(int.from_bytes(cnt[r * 4:r * 4 + 4], "little")):
                j = int.from_bytes(idx[v * w:(v + 1) * w], "little")
                i = r * cols + j
                out[i * s:(i + 1) * s] = body[v * s:(v + 1) * s]
                v += 1
    else:
        raise ValueError("%s: unknown layout %r" % (rec["name"], lay))
    return bytes(out)

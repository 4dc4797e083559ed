#!/usr/bin/env python3
"""docs/deps.py: the include graph of common/, checked against docs/design.md's rule.

A module is NAME.c with NAME.h; it depends on the modules whose headers its two files
include. Prints, one a line, every include circle between modules ("circle: a b a") and
every dependency that runs against the folder order base, io, nn, methods, eval, prog
("a (io) -> b (nn)"), sorted. tests/docs.bats compares the second list with the one in
docs/design.md and wants no circle. Usage: python3 docs/deps.py [TOP]"""
import glob
import os
import re
import sys

ORDER = ["base", "io", "nn", "methods", "eval", "prog"]


def graph(top):
    folder, deps = {}, {}
    for f in glob.glob(os.path.join(top, "common", "*", "*.[ch]")):
        m = os.path.basename(f)[:-2]
        folder[m] = os.path.basename(os.path.dirname(f))
        with open(f, encoding="utf-8") as fh:
            inc = set(re.findall(r'#include "([^"/]+)\.h"', fh.read()))
        deps.setdefault(m, set()).update(inc - {m})
    return folder, {m: {d for d in ds if d in folder} for m, ds in deps.items()}


def circles(deps):
    state, out = {}, []

    def walk(u, stack):
        state[u] = 1
        stack.append(u)
        for v in sorted(deps[u]):
            if state.get(v) == 1:
                out.append(stack[stack.index(v):] + [v])
            elif v not in state:
                walk(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(deps):
        if m not in state:
            walk(m, [])
    return out


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    folder, deps = graph(top)
    for c in circles(deps):
        print("circle: " + " ".join(c))
    against = [f"{a} ({folder[a]}) -> {b} ({folder[b]})" for a in deps for b in deps[a]
               if ORDER.index(folder[b]) > ORDER.index(folder[a])]
    for line in sorted(against):
        print(line)


if __name__ == "__main__":
    main()

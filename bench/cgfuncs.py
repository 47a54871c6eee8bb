#!/usr/bin/env python3
"""Per-function instruction counts from a callgrind file (as `bench/callgrind.py` writes).

    python3 bench/cgfuncs.py FILE                    # exclusive counts, top 40
    python3 bench/cgfuncs.py FILE --diff OTHER       # exclusive counts of two runs, by change
    python3 bench/cgfuncs.py FILE --inclusive REGEX  # inclusive counts of matching functions
    python3 bench/cgfuncs.py FILE --callers REGEX    # who calls matching functions, how often
    [--top N] [--requests N]   # rows to print; divide by the run's requests (per-request figures)

`callgrind_annotate` shows nothing useful for the bridge's profiles on some machines (all of
the cost under `clone`), so this reads the file format directly: `fn=`/`cfn=` with name
compression, cost lines, and `calls=` lines whose next cost line is the call's inclusive cost.
Note that callgrind counts a `rep movsb` copy (glibc's `memcpy` above a few KB) per byte.
"""

import argparse
import collections
import re

NAME = re.compile(r"^(fn|cfn)=\((\d+)\)(?: (.*))?$")


def read(path):
    """Returns (exclusive, inclusive, calls): exclusive and inclusive cost per function, and
    per (caller, callee) the number of calls and their inclusive cost."""
    names, exclusive, inclusive = {}, collections.Counter(), collections.Counter()
    calls = collections.defaultdict(lambda: [0, 0])
    fn = callee = None
    # The next cost line is a call's: `calls=0` happens too (a call already running when
    # the counters were zeroed), so the count alone cannot say.
    in_call, pending = False, 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            m = NAME.match(line)
            if m:
                kind, idx, name = m.groups()
                if name is not None:
                    names[idx] = name
                if kind == "fn":
                    fn = names.get(idx, idx)
                else:
                    callee = names.get(idx, idx)
                continue
            if line.startswith("fn="):
                fn = line[3:]
                continue
            if line.startswith("calls="):
                in_call, pending = True, int(line.split()[0][6:])
                continue
            if fn is None or not (line[0].isdigit() or line[0] in "+-*"):
                continue
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                cost = int(parts[1])
            except ValueError:
                continue
            inclusive[fn] += cost
            if in_call:
                calls[(fn, callee)][0] += pending
                calls[(fn, callee)][1] += cost
                in_call = False
            else:
                exclusive[fn] += cost
    return exclusive, inclusive, calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--diff")
    ap.add_argument("--inclusive")
    ap.add_argument("--callers")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--requests", type=int, default=1)
    args = ap.parse_args()
    per = max(args.requests, 1)
    exclusive, inclusive, calls = read(args.file)
    if args.diff:
        other = read(args.diff)[0]
        keys = sorted(set(exclusive) | set(other), key=lambda k: -abs(other[k] - exclusive[k]))
        for k in keys[: args.top]:
            a, b = exclusive[k] / per, other[k] / per
            print(f"{a:>14,.0f} {b:>14,.0f} {b - a:>+14,.0f}  {k[:140]}")
    elif args.inclusive:
        pat = re.compile(args.inclusive)
        rows = [(v, k) for k, v in inclusive.items() if pat.search(k)]
        for v, k in sorted(rows, reverse=True)[: args.top]:
            print(f"{v / per:>14,.0f}  {k[:150]}")
    elif args.callers:
        pat = re.compile(args.callers)
        rows = [(c, n, caller, e) for (caller, e), (n, c) in calls.items() if e and pat.search(e)]
        for c, n, caller, e in sorted(rows, reverse=True)[: args.top]:
            print(f"{c / per:>12,.0f} {n / per:>9,.2f} calls  {caller[:100]} -> {e[:40]}")
    else:
        total = sum(exclusive.values()) or 1
        for k, v in exclusive.most_common(args.top):
            print(f"{v / per:>14,.0f} {100 * v / total:5.1f}%  {k[:150]}")


if __name__ == "__main__":
    main()

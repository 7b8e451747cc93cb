"""One call of each whole-scan analysis benchmark case, on the full-size scan.

``torchlite bench --only analysis`` times 27 calls per case (the better part
of an hour on 2 cores); this runs each case once, in turn, after one warm-up
call of the torchlite default, and prints seconds, the ratio to the book's
shape and the torchlite stage times. Rough by construction: check the load
average it prints, and repeat.

    .venv/bin/python tools/analysis_once.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import time

from torchlite.bench.cases import analysis
from torchlite.bench.registry import all_cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1, help="calls per case (round-robin)")
    args = p.parse_args()
    cases = [c for c in all_cases() if c.group == analysis.GROUP]
    fns = [c.make(False, "cpu") for c in cases]
    fns[1]()  # warm-up: page cache, allocator, oneDNN primitives
    times: dict[str, list[float]] = {c.name: [] for c in cases}
    stages: dict[str, dict] = {}
    for _ in range(args.rounds):
        for c, fn in zip(cases, fns):
            t0 = time.perf_counter()
            result = fn()
            times[c.name].append(time.perf_counter() - t0)
            if hasattr(result, "seconds"):
                stages[c.name] = result.seconds
    book = min(times[analysis.BOOK])
    print(f"load average {os.getloadavg()}")
    for c in cases:
        best = min(times[c.name])
        s = stages.get(c.name, {})
        detail = ", ".join(f"{k} {v:.1f}" for k, v in s.items() if k != "total")
        print(f"{c.name[:70]:<70} {best:7.1f} s  {book / best:5.2f}x  {detail}")


if __name__ == "__main__":
    main()

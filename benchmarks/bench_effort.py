"""Error and time of the search presets against the plain greedy, at equal bits.

The plain greedy is the paper's: every cut from random signs (the engine with warm starts,
restarts and refinement off). Presets (signcut.decompose's ``effort``): "fast", "default"
(starts each cut from the previous cut's t), "best" (best of 3 starts per cut and one
backfitting pass). Float32 Gaussian matrices at 8 bits per entry, seed 0, one thread (CPU
time of the engine, so other load on the machine matters less). Goal: "best" at
least 10% lower error than the plain greedy on 512 x 512, in at most 3x its time.

Run from the repository root:
    python benchmarks/bench_effort.py            # 128 x 128 and 512 x 512
    python benchmarks/bench_effort.py --quick    # 128 x 128 and 256 x 256
"""
import argparse
import json
import time

import numpy as np

from _common import gaussian, header, print_table, verdict
from signcut import _api, _core

GOAL_ERROR, GOAL_TIME = 0.90, 3.0


def run(A, width, warm_start, restarts, refine, growth_tol, repeat):
    """(relative error, best CPU seconds) of one engine configuration."""
    state = np.random.SeedSequence(0).generate_state(4, np.uint64)
    best = float("inf")
    for _ in range(repeat):
        R = A.copy()
        t0 = time.process_time()
        out = _core.decompose(R, width, 0.0, 0.0, 64, _api.MAX_SWEEPS, 1, state, None,
                              warm_start=warm_start, restarts=restarts, refine=refine,
                              growth_tol=growth_tol)
        best = min(best, time.process_time() - t0)
    return float(out[2][-1]), best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--repeat", type=int, default=2, help="runs per configuration (min time)")
    ap.add_argument("--quick", action="store_true", help="128 and 256")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    sizes = [128, 256] if args.quick else args.sizes

    header("Search effort: error and time against the plain greedy (8 bits/entry, 1 thread)")
    rows, records = [], []
    for n in sizes:
        A = gaussian(n, seed=0)
        width = int(8 * n * n // (2 * n + 32))
        base_err, base_t = run(A, width, False, 1, 0, 0.0, args.repeat)
        rows.append([f"{n} x {n}", "plain greedy (random starts)", width, f"{100 * base_err:.3f}",
                     "1.000", f"{base_t:.2f}", "1.00", "-"])
        for name, opts in _api.EFFORTS.items():
            err, t = run(A, width, repeat=args.repeat, **opts)
            goal = name == "best" and n == max(sizes)
            ok = err / base_err <= GOAL_ERROR and t / base_t <= GOAL_TIME if goal else None
            rows.append([f"{n} x {n}", f"effort={name!r}", width, f"{100 * err:.3f}",
                         f"{err / base_err:.3f}", f"{t:.2f}", f"{t / base_t:.2f}",
                         verdict(ok) if goal else "-"])
            goal_text = f"error ratio <= {GOAL_ERROR:g} at time ratio <= {GOAL_TIME:g}" if goal else ""
            records.append(dict(figure=f"effort={name} error, {n}x{n} 8 bpe", value=100 * err,
                                unit="%", baseline="plain greedy error", baseline_value=100 * base_err,
                                ratio=err / base_err, goal=goal_text, ok=ok))
            records.append(dict(figure=f"effort={name} time, {n}x{n} 8 bpe", value=t, unit="s",
                                baseline="plain greedy time", baseline_value=base_t,
                                ratio=t / base_t, goal="", ok=None))
    print_table(["Size", "Search", "Width", "Error (%)", "Error ratio", "CPU time (s)",
                 "Time ratio", "Goal"], rows)
    print(f"Goal: effort='best' error ratio <= {GOAL_ERROR:g} at time ratio <= {GOAL_TIME:g} "
          f"on the largest size.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


if __name__ == "__main__":
    main()

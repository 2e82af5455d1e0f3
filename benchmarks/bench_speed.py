"""Time per cut of signcut.decompose against one NumPy matrix-vector product.

For each size (default 1024 and 4096, float32 Gaussian, seed 0) this times
decompose(A, bits_per_entry=8, seed=0) and divides by the width: the time per cut. The
baseline is the minimum time of one NumPy ``A @ x`` (float32 x) on the same matrix, measured
in the same run before and after the decompositions (the minimum of both is used), with
NumPy's BLAS at its default thread count whatever ``--threads`` says.
Goal: time per cut <= 4 x the matvec. Prints a Markdown table; exits 0 whatever the figures.

Against the NumPy reference greedy of the tests (tests/reference.py, float64, recomputing both
products every sweep) on a small case (256 x 256 Gaussian, its first 300 cuts at 8 bits per
entry, ``--quick``: 100 cuts): the engine's time per cut over the same cuts divided by the
reference's. Goal ("30x faster or more"): ratio <= 1/30.

A full 4096 x 4096 run at 8 bits/entry has ~16,000 cuts and takes minutes; ``--width W``
caps the width to measure the steady-state time per cut over the first W cuts instead.

Run from the repository root:
    python benchmarks/bench_speed.py                   # 1024 and 4096, full width (minutes)
    python benchmarks/bench_speed.py --width 2000      # steady state over 2000 cuts
    python benchmarks/bench_speed.py --quick           # 512 and 1024 capped at 1000 cuts, seconds
    python benchmarks/bench_speed.py --sizes 2048 --threads 1 --repeat 3
"""
import argparse
import os
import sys
import time

import signcut
from _common import (add_protocol_args, best_time, gaussian, header, matvec_time, print_table,
                     record, settle, verdict, write_json)

GOAL = 4.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="matrix sides")
    ap.add_argument("--width", type=int, default=None, help="cap the width (steady-state mode; 0: no cap)")
    ap.add_argument("--repeat", type=int, default=2, help="decompositions per size (min taken)")
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all)")
    add_protocol_args(ap, "sizes 512 and 1024, width capped at 1000, one run each")
    args = ap.parse_args(argv)
    sizes = [512, 1024] if args.quick else args.sizes
    if args.quick:
        args.width, args.repeat = args.width or 1000, 1

    args.width = args.width or None
    cap = "full width" if args.width is None else f"width capped at {args.width}"
    header(f"Speed: time per cut vs one NumPy matvec (8 bits/entry, {cap})")
    rows, records = [], []
    for n in sizes:
        A = gaussian(n, seed=0)
        mv = matvec_time(A)
        best = float("inf")
        for _ in range(args.repeat):
            settle()
            t0 = time.perf_counter()
            r = signcut.decompose(A, bits_per_entry=8, width=args.width, seed=0,
                                  n_threads=args.threads)
            best = min(best, time.perf_counter() - t0)
        mv = min(mv, matvec_time(A))
        per_cut = best / r.width
        ratio = per_cut / mv
        rows.append([f"{n} x {n}", r.width, f"{best:.2f}", f"{1e3 * per_cut:.3f}",
                     f"{1e3 * mv:.3f}", f"{ratio:.2f}", f"<= {GOAL:g}", verdict(ratio <= GOAL)])
        what = "full 8 bits/entry" if args.width is None else f"first {r.width} cuts"
        records.append(record(f"time per cut, {n}x{n} ({what})", 1e3 * per_cut, "ms",
                              "NumPy float32 A @ x", 1e3 * mv, f"ratio <= {GOAL:g}",
                              ratio <= GOAL))
    print_table(["Size", "Width", "Decompose (s)", "Per cut (ms)", "Matvec (ms)", "Ratio",
                 "Goal", "Result"], rows)
    records.append(reference_figure(100 if args.quick else 300, args.threads))
    write_json(args.json, records)


def reference_figure(width, threads, n=256):
    """Engine vs the tests' NumPy reference greedy: time per cut over the same first cuts."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "tests"))
    from reference import greedy
    A = gaussian(n, seed=0)
    t0 = time.perf_counter()
    greedy(A, width, seed=0)
    ref = (time.perf_counter() - t0) / width
    settle()
    ours = best_time(lambda: signcut.decompose(A, width=width, seed=0, n_threads=threads),
                     repeat=5) / width
    print(f"First {width} cuts of {n} x {n}: NumPy reference greedy {1e3 * ref:.3f} ms/cut, "
          f"signcut {1e3 * ours:.3f} ms/cut ({ref / ours:.0f}x faster).\n")
    return record(f"time per cut, {n}x{n} (first {width} cuts)", 1e3 * ours, "ms",
                  "NumPy reference greedy (tests/reference.py)", 1e3 * ref, "ratio <= 1/30",
                  ours * 30 <= ref)


if __name__ == "__main__":
    main()

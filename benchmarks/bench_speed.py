"""Time per cut of signcut.decompose against one NumPy matrix-vector product.

For each size (default 1024 and 4096, float32 Gaussian, seed 0) this times
decompose(A, bits_per_entry=8, seed=0) and divides by the width: the time per cut. The
baseline is the minimum time of one NumPy ``A @ x`` (float32 x) on the same matrix, measured
in the same run before and after the decompositions (the minimum of both is used), with
NumPy's BLAS at its default thread count whatever ``--threads`` says.
Goal: time per cut <= 4 x the matvec. Prints a Markdown table; exits 0 whatever the figures.

A full 4096 x 4096 run at 8 bits/entry has ~16,000 cuts and takes minutes; ``--width W``
caps the width to measure the steady-state time per cut over the first W cuts instead.

Run from the repository root:
    python benchmarks/bench_speed.py                   # 1024 and 4096, full width (minutes)
    python benchmarks/bench_speed.py --width 2000      # steady state over 2000 cuts
    python benchmarks/bench_speed.py --quick           # 512 and 1024, full width, seconds
    python benchmarks/bench_speed.py --sizes 2048 --threads 1 --repeat 3
"""
import argparse
import time

import signcut
from _common import gaussian, header, matvec_time, print_table, verdict

GOAL = 4.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="matrix sides")
    ap.add_argument("--width", type=int, default=None, help="cap the width (steady-state mode; 0: no cap)")
    ap.add_argument("--repeat", type=int, default=2, help="decompositions per size (min taken)")
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all)")
    ap.add_argument("--quick", action="store_true", help="sizes 512 and 1024")
    args = ap.parse_args(argv)
    sizes = [512, 1024] if args.quick else args.sizes

    args.width = args.width or None
    cap = "full width" if args.width is None else f"width capped at {args.width}"
    header(f"Speed: time per cut vs one NumPy matvec (8 bits/entry, {cap})")
    rows = []
    for n in sizes:
        A = gaussian(n, seed=0)
        mv = matvec_time(A)
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = signcut.decompose(A, bits_per_entry=8, width=args.width, seed=0,
                                  n_threads=args.threads)
            best = min(best, time.perf_counter() - t0)
        mv = min(mv, matvec_time(A))
        per_cut = best / r.width
        ratio = per_cut / mv
        rows.append([f"{n} x {n}", r.width, f"{best:.2f}", f"{1e3 * per_cut:.3f}",
                     f"{1e3 * mv:.3f}", f"{ratio:.2f}", f"<= {GOAL:g}", verdict(ratio <= GOAL)])
    print_table(["Size", "Width", "Decompose (s)", "Per cut (ms)", "Matvec (ms)", "Ratio",
                 "Goal", "Result"], rows)


if __name__ == "__main__":
    main()

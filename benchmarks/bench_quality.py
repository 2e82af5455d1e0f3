"""Approximation quality of signcut.decompose against quantizers and a truncated SVD at equal bits.

On a seeded float32 Gaussian matrix (default 1024 x 1024, ``--quick``: 256 x 256) at 16, 8, 4
and 2 bits per entry, the relative Frobenius error of signcut against, at the same bits:
  * round-to-nearest: bf16 at 16 bits; symmetric int8 / int4 / int2 with one float32 absmax
    scale per row (levels -q..q, q = 2**(b-1) - 1), which costs b + 32/n bits per entry;
  * a truncated SVD with float32 factors: rank r costs 32 r (m + n) bits, so r is the largest
    rank within the budget (its error follows from the singular values).
signcut gets b bits against round-to-nearest (a little less than the baseline, whose scales
count) and exactly the SVD's bits against the SVD: greedy cuts are a prefix of
one another, so one decomposition at 16 bits per entry (seed 0) gives every budget as the
error after the largest width within it. Goals: at 16 bits the error is at most
bf16 rounding's; at 8 bits at most 3.0 %.
Also the engine against the NumPy reference greedy of the tests (float64) on a small
Gaussian matrix (128 x 128 at 8 bits per entry, ``--quick``: 96 x 96): error after the same
number of cuts, goal within 3 %.
Prints a Markdown table; exits 0 whatever the figures.

Run from the repository root:
    python benchmarks/bench_quality.py            # 1024 x 1024, tens of seconds
    python benchmarks/bench_quality.py --quick    # 256 x 256, a few seconds
    python benchmarks/bench_quality.py --size 2048 --threads 1 --json quality.json
"""
import argparse
import math
import os
import sys
import time

import numpy as np

import signcut
from _common import (add_protocol_args, bf16_round, gaussian, header, print_table, record,
                     rel_error, rtn_rows, write_json)

BITS = (16, 8, 4, 2)


def width_for(bits, m, n):
    """The largest width whose bits per entry, width (m + n + 32) / (m n), is within `bits`."""
    return int(math.floor(bits * m * n / (m + n + 32) + 1e-9))


def reference_figure(n, seed):
    """Engine vs the tests' NumPy reference greedy (float64) on an n x n Gaussian matrix."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "tests"))
    from reference import greedy
    A = gaussian(n, seed=seed)
    w = width_for(8, n, n)
    ref = greedy(A, w, seed=seed)[-1]
    ours = signcut.decompose(A, width=w, seed=seed).rel_error
    return record(f"error, {n}x{n} Gaussian, {w} cuts (8 bits/entry)", 100 * ours, "%",
                  "NumPy reference greedy (float64, tests/reference.py)", 100 * ref,
                  "ratio <= 1.03", ours <= 1.03 * ref)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="matrix side (default 1024)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the matrix and of the cuts")
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all)")
    add_protocol_args(ap, "256 x 256 (and 96 x 96 against the reference greedy)")
    args = ap.parse_args(argv)
    n = 256 if args.quick else args.size

    header(f"Quality: {n} x {n} float32 Gaussian, seed {args.seed}, equal bits")
    A = gaussian(n, seed=args.seed)
    t0 = time.perf_counter()
    r = signcut.decompose(A, bits_per_entry=max(BITS), seed=args.seed, n_threads=args.threads)
    seconds = time.perf_counter() - t0
    errors = r.errors

    def ours(bits):
        """signcut's error within `bits` bits per entry (a prefix of the one decomposition)."""
        w = min(width_for(bits, n, n), r.width)
        return float(errors[w - 1]), w

    sv = np.linalg.svd(A.astype(np.float64), compute_uv=False)
    tail = np.concatenate([np.sqrt(np.cumsum((sv ** 2)[::-1])[::-1]), [0.0]]) / np.linalg.norm(sv)

    records, rows = [], []
    for bits in BITS:
        if bits == 16:
            name, base_bits, base = "bf16 rounding (16 bits)", 16, rel_error(A, bf16_round(A))
        else:
            base_bits = bits + 32 / n
            name = f"int{bits} RTN, f32 absmax per row ({base_bits:.4g} bits)"
            base = rel_error(A, rtn_rows(A, bits))
        # signcut at the nominal bits: the baseline's scales make it slightly larger.
        err, w = ours(bits)
        goal, ok = {16: ("ratio <= 1", err <= base), 8: ("value <= 3 %", err <= 0.03)}.get(
            bits, ("", None))
        records.append(record(f"error at {bits} bits/entry, {n}x{n} Gaussian",
                              100 * err, "%", name, 100 * base, goal, ok))
        rows.append([bits, name, f"{100 * base:.3f}", w, f"{100 * err:.3f}", f"{err / base:.3f}"])
        rank = int(bits * n * n // (32 * 2 * n))
        svd_bits = 32 * rank * 2 * n / (n * n)
        svd_err = float(tail[rank])
        err, w = ours(svd_bits)
        records.append(record(f"error at {svd_bits:.4g} bits/entry, {n}x{n} Gaussian", 100 * err,
                              "%", f"truncated SVD rank {rank}, float32 factors", 100 * svd_err))
        rows.append([f"{svd_bits:.4g}", f"truncated SVD rank {rank}", f"{100 * svd_err:.3f}", w,
                     f"{100 * err:.3f}", f"{err / svd_err:.3f}"])
    records.append(reference_figure(96 if args.quick else 128, args.seed))

    print_table(["Bits/entry", "Baseline", "Baseline error (%)", "signcut width",
                 "signcut error (%)", "Ratio"], rows)
    print(f"One decomposition at {max(BITS)} bits/entry: width {r.width}, {seconds:.2f} s; "
          f"smaller budgets are its prefixes.\n")
    write_json(args.json, records)


if __name__ == "__main__":
    main()

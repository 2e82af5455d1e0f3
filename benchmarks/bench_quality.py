"""Approximation quality of signcut.decompose against bfloat16 rounding.

On a seeded float32 Gaussian matrix (default 1024 x 1024) this measures
  * the relative Frobenius error at 16 bits per entry divided by the error of rounding the
    matrix to bfloat16 (also 16 bits per entry); goal: ratio <= 1.0;
  * the relative Frobenius error at 8 bits per entry; goal: <= 3.0 %.
The baseline (bfloat16 rounding) is computed in the same run. Prints a Markdown table,
including the time each decomposition took; exits 0 whatever the figures.

Run from the repository root:
    python benchmarks/bench_quality.py            # 1024 x 1024, tens of seconds
    python benchmarks/bench_quality.py --quick    # 512 x 512
    python benchmarks/bench_quality.py --size 2048 --threads 1
"""
import argparse
import time

import signcut
from _common import bf16_round, gaussian, header, print_table, rel_error, verdict


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="matrix side (default 1024)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the matrix and of the cuts")
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all)")
    ap.add_argument("--quick", action="store_true", help="512 x 512")
    args = ap.parse_args(argv)
    n = 512 if args.quick else args.size

    header(f"Quality: {n} x {n} float32 Gaussian, seed {args.seed}")
    A = gaussian(n, seed=args.seed)
    bf16_err = rel_error(A, bf16_round(A))
    runs = {}
    for bits in (16, 8):
        t0 = time.perf_counter()
        r = signcut.decompose(A, bits_per_entry=bits, seed=args.seed, n_threads=args.threads)
        runs[bits] = (r, time.perf_counter() - t0)

    r16, t16 = runs[16]
    r8, t8 = runs[8]
    ratio = r16.rel_error / bf16_err
    print_table(
        ["Figure", "Measured", "Goal", "Result", "Width", "Time (s)"],
        [["error at 16 bits/entry / bf16 error", f"{ratio:.3f}", "<= 1.0", verdict(ratio <= 1.0),
          r16.width, f"{t16:.2f}"],
         ["error at 8 bits/entry", f"{100 * r8.rel_error:.2f} %", "<= 3.0 %",
          verdict(r8.rel_error <= 0.03), r8.width, f"{t8:.2f}"]])
    print(f"Errors: 16 bits/entry {r16.rel_error:.4e}, bfloat16 rounding {bf16_err:.4e}, "
          f"8 bits/entry {r8.rel_error:.4e} (relative Frobenius).\n")


if __name__ == "__main__":
    main()

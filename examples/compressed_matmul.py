"""Multiply by a compressed matrix without expanding it: W @ x from the signs.

    python examples/compressed_matmul.py [--size 2048] [--bits 2 4 8] [--seed 0]

Decomposes a float32 matrix (a rank-32 signal plus 10% noise, the shape of many weight and
covariance matrices) at a few budgets and, for each, compares ``W @ x`` computed from the
packed signs (lookup tables over groups of sign bits, never the dense matrix) with NumPy's
``A @ x`` on the original: relative difference, time, and the bytes each reads. Every prefix
of the cuts is a coarser matrix: the last column multiplies by the first half of them.
"""
import argparse
import time

import numpy as np

import signcut


def best_time(fn, repeat=5):
    """Shortest of `repeat` calls of fn, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def test_matrix(n, seed):
    """A rank-32 signal plus Gaussian noise with 10% of its norm, float32."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, 32), dtype=np.float32)
    v = rng.standard_normal((32, n), dtype=np.float32)
    signal = u @ v
    noise = rng.standard_normal((n, n), dtype=np.float32)
    noise *= 0.1 * np.linalg.norm(signal) / np.linalg.norm(noise)
    return signal + noise


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="matrix side (default: %(default)s)")
    ap.add_argument("--bits", type=float, nargs="+", default=[2.0, 4.0, 8.0],
                    help="bits per entry (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    A = test_matrix(args.size, args.seed)
    x = np.random.default_rng(args.seed + 1).standard_normal(args.size, dtype=np.float32)
    dense = A @ x
    t_dense = best_time(lambda: A @ x)
    print(f"A: {args.size} x {args.size} float32, {A.nbytes / 2**20:.1f} MiB; "
          f"NumPy A @ x {t_dense:.3f} ms\n")
    print("| bits/entry | cuts | MiB | error of W | W @ x vs A @ x | W @ x (ms) | time vs A @ x "
          "| first half of the cuts @ x vs A @ x |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for bits in args.bits:
        W = signcut.decompose(A, bits_per_entry=bits, seed=args.seed)
        y = W @ x                      # the first product also lays out the signs it reads
        t_w = best_time(lambda: W @ x)
        half = W.truncate(W.width // 2) @ x
        print(f"| {bits:g} | {W.width} | {W.nbytes / 2**20:.2f} | {W.rel_error:.2%} "
              f"| {rel(y, dense):.2%} | {t_w:.3f} | {t_w / t_dense:.2f}x "
              f"| {rel(half, dense):.2%} |")


if __name__ == "__main__":
    main()

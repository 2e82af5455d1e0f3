"""Products in the compressed domain: SignCut @ x against NumPy float32 A @ x on the dense matrix.

W is an order-2 SignCut of an m x n matrix (default 4096 x 4096) built from random signs and
coefficients at the width of a given budget, width = floor(bpe * m * n / (m + n + 32)): the
speed of the product does not depend on the values, and decomposing 4096 x 4096 at 8 bits
per entry takes minutes. The baseline is NumPy float32 ``A @ x`` (and ``A @ X``, ``x @ A``) on
a dense Gaussian matrix of the same shape, timed in the same process, interleaved with the
lookup-table product, minimum over rounds. Each thread count runs in its own process with
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set to it, so NumPy's BLAS gets the same threads.

Goals: ``W @ x`` at 8 bits/entry at least as fast as ``A @ x``; at 2 bits/entry at
least 3x faster; ``W @ X`` with 64 columns at 8 bits/entry at least as fast as ``A @ X``.
Also printed: ``x @ W``, the one-time cost and memory of the cached sign layouts, and the
relative difference between the lookup-table product and ``expand() @ x`` (NumPy float32),
both measured against the float64 product. Exits 0 whatever the figures.

Run from the repository root:
    python benchmarks/bench_matmul.py                    # 4096 x 4096, 1 and 2 threads
    python benchmarks/bench_matmul.py --quick            # 1024 x 1024, seconds
    python benchmarks/bench_matmul.py --size 2048 --threads 1 2 4 --json out.json
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

# Run from a checkout with an in-place build even when signcut is not installed.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COLUMNS = 64


def best_time(fns, repeat, number, pause=0.0):
    """Minimum over `repeat` rounds of the mean time of `number` calls of each fn, interleaved,
    with `pause` seconds before each fn's calls (see _common.settle)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / number)
    return best


def random_signcut(m, n, width, seed):
    from signcut import SignCut
    rng = np.random.default_rng(seed)
    signs = []
    for d in (m, n):
        bits = rng.integers(0, 2**64, size=(width, (d + 63) // 64), dtype=np.uint64)
        if d % 64:
            bits[:, -1] &= np.uint64((1 << (d % 64)) - 1)
        signs.append(bits)
    return SignCut((m, n), signs, rng.standard_normal(width).astype(np.float32))


def record(figure, value, unit, baseline, baseline_value, goal="", ok=None):
    return {"figure": figure, "value": float(value), "unit": unit, "baseline": baseline,
            "baseline_value": float(baseline_value), "ratio": float(value) / float(baseline_value),
            "goal": goal, "ok": ok}


def worker(size, nt, quick, accuracy):
    """Figures for one thread count (run in a process whose BLAS has nt threads)."""
    from signcut._array import matmul, product_lanes, rmatmul
    from _common import SETTLE_SECONDS
    m = n = size
    rng = np.random.default_rng(1)
    A = rng.standard_normal((m, n), dtype=np.float32)
    x = rng.standard_normal(n, dtype=np.float32)
    xl = rng.standard_normal(m, dtype=np.float32)
    X = rng.standard_normal((n, COLUMNS), dtype=np.float32)
    repeat = 3 if quick else 5
    # with several threads, each library's timing waits for the other's idle threads to sleep
    pause = SETTLE_SECONDS if nt > 1 else 0.0
    out = []
    for bpe in (8, 2):
        width = int(bpe * m * n / (m + n + 32))
        W = random_signcut(m, n, width, seed=bpe)
        t0 = time.perf_counter()
        product_lanes(W, "right")
        build = time.perf_counter() - t0
        lanes_bytes = sum(a.nbytes for a in product_lanes(W, "right"))
        one = best_time([lambda: A @ x], 1, 3)[0]
        number = int(min(50, max(3, 0.05 / max(one, 1e-9))))
        t_mv, t_lut = best_time([lambda: A @ x, lambda: matmul(W, x, nt)], repeat, number, pause)
        goal, ok = ("ratio <= 1", t_lut <= t_mv) if bpe == 8 else ("ratio <= 0.333", t_lut <= t_mv / 3)
        tag = f"{bpe} bits/entry, width {width}, {nt} thread{'s' if nt > 1 else ''}"
        out.append(record(f"W @ x, {tag}", 1e3 * t_lut, "ms", "NumPy float32 A @ x (dense)",
                          1e3 * t_mv, goal, bool(ok)))
        product_lanes(W, "left")
        t_dense, t_lut = best_time([lambda: xl @ A, lambda: rmatmul(W, xl, nt)], repeat, number,
                                   pause)
        out.append(record(f"x @ W, {tag}", 1e3 * t_lut, "ms", "NumPy float32 x @ A (dense)",
                          1e3 * t_dense))
        t_dense, t_lut = best_time([lambda: A @ X, lambda: matmul(W, X, nt)], repeat, 1, pause)
        out.append(record(f"W @ X ({COLUMNS} columns), {tag}", 1e3 * t_lut, "ms",
                          f"NumPy float32 A @ X ({COLUMNS} columns)", 1e3 * t_dense,
                          "ratio <= 1" if bpe == 8 else "", bool(t_lut <= t_dense) if bpe == 8 else None))
        if nt == 1:
            out.append(record(f"sign layouts for W @ x (first product), {bpe} bits/entry",
                              1e3 * build, "ms", "NumPy float32 A @ x (dense)", 1e3 * t_mv))
            out.append(record(f"memory of the cached layouts for W @ x, {bpe} bits/entry",
                              lanes_bytes / 2**20, "MiB", "signs (W.nbytes)", W.nbytes / 2**20))
        if accuracy:
            exact = W.expand(n_threads=nt).astype(np.float64) @ x.astype(np.float64)
            dense = W.expand(n_threads=nt) @ x
            norm = np.linalg.norm(exact)
            e_lut = np.linalg.norm(matmul(W, x, nt) - exact) / norm
            e_dense = np.linalg.norm(dense - exact) / norm
            out.append(record(f"relative difference of W @ x from float64, {bpe} bits/entry",
                              e_lut, "", "NumPy float32 expand() @ x", e_dense,
                              "value <= 1e-5", bool(e_lut <= 1e-5)))
            out.append(record(f"relative difference W @ x vs expand() @ x, {bpe} bits/entry",
                              np.linalg.norm(matmul(W, x, nt) - dense) / np.linalg.norm(dense), "",
                              "NumPy float32 expand() @ x vs float64", e_dense))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="matrix side (default 4096)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    ap.add_argument("--quick", action="store_true", help="1024 x 1024")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON records")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--accuracy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    size = 1024 if args.quick else args.size
    if args.worker:
        print(json.dumps(worker(size, args.worker, args.quick, args.accuracy)))
        return 0

    from _common import header, print_table, verdict
    header(f"Products: SignCut @ x against NumPy float32 on the dense {size} x {size} matrix")
    records = []
    here = os.path.abspath(__file__)
    for i, nt in enumerate(args.threads):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(nt), OMP_NUM_THREADS=str(nt),
                   MKL_NUM_THREADS=str(nt))
        cmd = [sys.executable, here, "--worker", str(nt), "--size", str(size)]
        cmd += ["--quick"] * args.quick + ["--accuracy"] * (i == len(args.threads) - 1)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            return done.returncode
        records += json.loads(done.stdout.strip().splitlines()[-1])
    if (os.cpu_count() or 1) < max(args.threads):
        print(f"Note: only {os.cpu_count()} CPUs for {max(args.threads)} threads.\n")
    rows = []
    for r in records:
        small = r["unit"] == ""
        fmt = (lambda v: f"{v:.2e}") if small else (lambda v: f"{v:.3g}")
        rows.append([r["figure"], f"{fmt(r['value'])} {r['unit']}".strip(), r["baseline"],
                     f"{fmt(r['baseline_value'])} {r['unit']}".strip(), f"{r['ratio']:.2f}",
                     r["goal"] or "-", "-" if r["ok"] is None else verdict(r["ok"])])
    print_table(["Figure", "Value", "Baseline", "Baseline value", "Ratio", "Goal", "Result"], rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

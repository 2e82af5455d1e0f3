"""Thread scaling of signcut.decompose: 1 thread against 2 threads, same seed.

Decomposes a seeded float32 Gaussian matrix (default 4096 x 4096) at 8 bits/entry with the
width capped (default 1500 cuts) with n_threads=1 and n_threads=2 (``--threads``), the runs
interleaved and repeated (minimum taken). Figure: speedup t1 / t2; goal >= 1.6. Also checks
that both runs give identical bits: np.array_equal on signs[0], signs[1] and coef.
Prints a Markdown table; exits 0 whatever the figures.

For context, the same table gives the speedup of NumPy's own ``A @ x`` (BLAS, memory-bound
like the engine's sign search) with the same thread counts on the same matrix size, each count
in a subprocess with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS set, measured
before and after the decompositions (minimum): what this machine's memory gives two threads
on one long stream. And that of the engine's own reads alone: its float16 row kernel
(accum_rows_h) adding 64 random rows at a time of a 2n x n float16 array (the size of the two
copies the search reads) into one image per thread, the threads' calls running concurrently
(the kernel releases the GIL): what the memory gives threads on the search's access pattern.

Run from the repository root:
    python benchmarks/bench_threads.py                 # 4096 x 4096, 1500 cuts (a few minutes)
    python benchmarks/bench_threads.py --quick         # 1024 x 1024, 600 cuts, seconds
    python benchmarks/bench_threads.py --size 2048 --width 3000 --threads 4 --repeat 3
"""
import argparse
import os
import subprocess
import sys
import threading
import time

import numpy as np

import signcut
from _common import add_protocol_args, gaussian, header, print_table, record, verdict, write_json

GOAL = 1.6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="matrix side (default 4096)")
    ap.add_argument("--width", type=int, default=1500, help="cap on the width (default 1500)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2],
                    help="thread counts compared with 1 (default 2)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per thread count (min taken)")
    add_protocol_args(ap, "1024 x 1024, width 600")
    args = ap.parse_args(argv)
    n, width = (1024, 600) if args.quick else (args.size, args.width)

    header(f"Threads: {n} x {n} float32 Gaussian, 8 bits/entry, width capped at {width}")
    if (os.cpu_count() or 1) < max(args.threads):
        print(f"Note: only {os.cpu_count()} CPUs for {max(args.threads)} threads.\n")
    A = gaussian(n, seed=0)
    counts = [1] + [t for t in args.threads if t != 1]
    blas = {nt: blas_matvec_time(n, nt) for nt in counts}
    best, result = {}, {}
    for _ in range(args.repeat):
        for nt in counts:
            t0 = time.perf_counter()
            result[nt] = signcut.decompose(A, bits_per_entry=8, width=width, seed=0, n_threads=nt)
            best[nt] = min(best.get(nt, float("inf")), time.perf_counter() - t0)

    blas = {nt: min(blas[nt], blas_matvec_time(n, nt)) for nt in counts}
    reads = row_reads(n, counts)
    r1, rows, records = result[1], [], []
    for nt in counts[1:]:
        rt = result[nt]
        same = all(np.array_equal(a, b) for a, b in
                   [(r1.signs[0], rt.signs[0]), (r1.signs[1], rt.signs[1]), (r1.coef, rt.coef)])
        speedup = best[1] / best[nt]
        goal = nt == 2
        rows.append([f"{n} x {n}", r1.width, f"{best[1]:.2f}", nt, f"{best[nt]:.2f}",
                     f"{speedup:.2f}", f">= {GOAL:g}" if goal else "-",
                     verdict(speedup >= GOAL) if goal else "-", "yes" if same else "NO"])
        records.append(record(f"time, {nt} threads, {n}x{n}, {r1.width} cuts", best[nt], "s",
                              "same, 1 thread", best[1],
                              f"ratio <= {1 / GOAL:.3g} ({GOAL:g}x faster)" if goal else "",
                              speedup >= GOAL if goal else None))
        records.append(record(f"bits identical, {nt} threads vs 1", float(same), "bool",
                              "required", 1.0, "value == 1", same))
        records.append(record(f"NumPy A @ x (BLAS), {nt} threads, {n}x{n}", 1e3 * blas[nt], "ms",
                              "same, 1 thread", 1e3 * blas[1]))
        records.append(record(f"row kernel reads, {nt} threads, 2*{n}x{n} float16", reads[nt],
                              "GB/s", "same, 1 thread", reads[1]))
    print_table(["Size", "Width", "1 thread (s)", "Threads", "Time (s)", "Speedup",
                 "Goal", "Result", "Identical bits"], rows)
    print("For context, NumPy's A @ x on this machine (BLAS, same size): "
          + ", ".join(f"{nt} thread{'s' if nt > 1 else ''} {1e3 * blas[nt]:.3f} ms "
                      f"({blas[1] / blas[nt]:.2f}x)" for nt in counts) + ".")
    print("The engine's row reads alone (float16 row kernel, lists of 64 random rows of a "
          f"{2 * n} x {n} array): "
          + ", ".join(f"{nt} thread{'s' if nt > 1 else ''} {reads[nt]:.1f} GB/s "
                      f"({reads[nt] / reads[1]:.2f}x)" for nt in counts) + ".")
    write_json(args.json, records)


def row_reads(n, counts, calls=48, blocks=32, repeat=3):
    """GB/s of the active float16 row kernel over `calls` calls, each adding `blocks` lists of
    64 random rows (each list sorted, as the engine lists its flips) of a (2n, n) array, the
    calls split over t threads for each t in counts (best of `repeat`)."""
    from signcut import _core
    isa = _core.active_kernels()
    rng = np.random.default_rng(3)
    H = np.empty((2 * n, n), np.uint16)
    for i in range(0, 2 * n, 256):       # float16 Gaussian bits, a slab at a time
        H[i:i + 256] = rng.standard_normal((min(256, 2 * n - i), n), np.float32) \
            .astype(np.float16).view(np.uint16)
    idx = [np.sort(rng.integers(0, 2 * n, (blocks, 64)), axis=1).ravel() for _ in range(calls)]
    w = np.full(64 * blocks, 2.0, np.float32)
    out = {}
    for nt in counts:
        ys = [np.zeros(n, np.float32) for _ in range(nt)]

        errors = []

        def work(me, nt=nt, ys=ys):
            try:
                for q in range(me, calls, nt):
                    _core.kernel_accum_rows_h(isa, ys[me], H, idx[q], w)
            except Exception as e:        # reported by the caller, not lost in the thread
                errors.append(e)

        best = float("inf")
        for _ in range(repeat):
            threads = [threading.Thread(target=work, args=(me,)) for me in range(nt)]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            best = min(best, time.perf_counter() - t0)
            if errors:
                raise errors[0]
        out[nt] = calls * blocks * 64 * n * 2 / best / 1e9
    return out


def blas_matvec_time(n, threads):
    """Minimum time of NumPy float32 A @ x (n x n) with BLAS at `threads`, in a subprocess."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from _common import gaussian, matvec_time;"
            f"print(matvec_time(gaussian({n}, seed=0)))")
    env = dict(os.environ, **{k: str(threads) for k in
                              ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", code, here], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.split()[-1])


if __name__ == "__main__":
    main()

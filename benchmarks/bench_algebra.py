"""Computing on the compressed form against expand-then-NumPy, as ratios in one run.

SignCuts are built from random signs and coefficients at the width of a budget
(``width = bpe * size / (sum(shape) + 32)``): the cost of these operations does not depend on
the values. Timings interleave the two sides and take medians of several repeats; peak extra
memory is the growth of the process's peak RSS during one call (Linux resets the peak by
``/proc/self/clear_refs``), so the C engine's buffers count too.

Figures (goals from the issue that asked for them):
- contracting a mode of a 128 x 128 x 128 SignCut at 2 bits per entry (about 10,000 cuts)
  with a vector, and slicing it (``sc[8:120:3, :, 64]``): at least 100x faster than expanding
  (``SignCut.expand``) and doing the same with NumPy;
- the Frobenius norm and the inner product of 4096 x 4096 SignCuts at 2 and 8 bits per entry:
  no slower than expanding (both, for the inner product) and ``np.linalg.norm`` / ``np.vdot``,
  with peak extra memory under 64 MB (one expansion takes 64 MB);
- ``svds(k=10)`` of a 20000 x 20000 SignCut of width 2000 through ``aslinearoperator()``: the
  same singular values (1e-4 relative) as ``svds`` of the expanded matrix (float32, 1.6 GB),
  and the peak extra memory of the compressed run;
- ``W @ x`` at 2 bits per entry on 4096 x 4096 at least 2x faster than NumPy's ``A @ x``
  (float32, the same shape), on a quiet machine and with a busy process beside it (a child
  ``python -c "while True: pass"``).

Run from the repository root:
    python benchmarks/bench_algebra.py              # the sizes above (the svds case: minutes)
    python benchmarks/bench_algebra.py --quick      # 64^3, 1024^2, svds of 4000^2: seconds
    python benchmarks/bench_algebra.py --only products norms --json out.json
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from _common import (SETTLE_SECONDS, add_protocol_args, header, print_table, record, verdict,
                     write_json)

from signcut import SignCut  # noqa: E402  (_common put the checkout on sys.path)


PARTS = ("contraction", "norms", "svds", "products")


def random_signcut(shape, width, seed):
    rng = np.random.default_rng(seed)
    signs = []
    for d in shape:
        bits = rng.integers(0, 2**64, size=(width, (d + 63) // 64), dtype=np.uint64)
        if d % 64:
            bits[:, -1] &= np.uint64((1 << (d % 64)) - 1)
        signs.append(bits)
    return SignCut(shape, signs, rng.standard_normal(width).astype(np.float32), copy=False)


def width_at(bpe, shape):
    return int(bpe * np.prod(shape, dtype=np.float64) / (sum(shape) + 32))


def medians(fns, repeat, calls=1, pause=0.0):
    """Median seconds of a call of each fn: ``repeat`` rounds, each running every fn in turn
    ``calls`` times (each call timed), ``pause`` seconds before each fn's calls (another
    library's idle threads go to sleep, see _common.settle)."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for t, fn in zip(times, fns):
            time.sleep(pause)
            for _ in range(calls):
                t0 = time.perf_counter()
                fn()
                t.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def _status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def peak_extra(fn):
    """(fn's result, bytes the peak RSS grew by while it ran), or None for the bytes where
    the peak cannot be reset (not Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status("VmRSS:")
    except OSError:
        return fn(), None
    out = fn()
    return out, _status("VmHWM:") - before


def mb(nbytes):
    return float("nan") if nbytes is None else nbytes / 2**20


# ------------------------------------------------------------------ the figures
def contraction(side, repeat):
    shape = (side,) * 3
    sc = random_signcut(shape, width_at(2, shape), 1)
    v = np.random.default_rng(2).standard_normal(side).astype(np.float32)
    key = (slice(8, side - 8, 3), slice(None), side // 2)
    ours = medians([lambda: sc.contract(1, v), lambda: sc[key]], repeat)
    dense = medians([lambda: np.tensordot(sc.expand(), v, axes=([1], [0])),
                     lambda: sc.expand()[key].copy()], max(1, repeat // 5))
    tag = f"{side}^3 SignCut, 2 bits/entry, width {sc.width}"
    return [record(f"contract a mode with a vector, {tag}", 1e3 * ours[0], "ms",
                   "expand + np.tensordot", 1e3 * dense[0], "ratio <= 0.01",
                   ours[0] <= dense[0] / 100),
            record(f"slice sc[8:-8:3, :, {side // 2}], {tag}", 1e3 * ours[1], "ms",
                   "expand + slice", 1e3 * dense[1], "ratio <= 0.01", ours[1] <= dense[1] / 100)]


def norms(n, repeat):
    out = []
    for bpe in (2, 8):
        w = width_at(bpe, (n, n))
        x, y = random_signcut((n, n), w, 3), random_signcut((n, n), w, 4)
        expanded = 4 * n * n
        norm, norm_mem = peak_extra(lambda: np.linalg.norm(x))
        inner, inner_mem = peak_extra(lambda: np.vdot(x, y))
        ours = medians([lambda: np.linalg.norm(x), lambda: np.vdot(x, y)], repeat)
        dense = medians([lambda: np.linalg.norm(x.expand()),
                         lambda: np.vdot(x.expand(), y.expand())], repeat)
        check = abs(float(norm) - float(np.linalg.norm(x.expand().astype(np.float64)))) / float(norm)
        tag = f"{n}^2, {bpe} bits/entry, width {w}"
        out += [record(f"norm, {tag}", ours[0], "s", "expand + np.linalg.norm", dense[0],
                       "ratio <= 1", ours[0] <= dense[0]),
                record(f"peak extra memory of the norm, {tag}", mb(norm_mem), "MiB",
                       "one expansion", mb(expanded), "value < 64 MiB",
                       norm_mem is not None and norm_mem < 64 << 20),
                record(f"inner product of two SignCuts, {tag}", ours[1], "s",
                       "expand both + np.vdot", dense[1], "ratio <= 1", ours[1] <= dense[1]),
                record(f"peak extra memory of the inner product, {tag}", mb(inner_mem), "MiB",
                       "one expansion", mb(expanded), "value < 64 MiB",
                       inner_mem is not None and inner_mem < 64 << 20),
                record(f"norm's relative difference from float64 on the expansion, {tag}",
                       check, "", "float32 rounding", 2**-24)]
    return out


def singular_values(n, width, k):
    import scipy.sparse.linalg as sla
    sc = random_signcut((n, n), width, 5)
    op = sc.aslinearoperator()
    t0 = time.perf_counter()
    got, mem = peak_extra(lambda: sla.svds(op, k=k, return_singular_vectors=False,
                                           random_state=0))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense = sc.expand()
    want = sla.svds(dense, k=k, return_singular_vectors=False, random_state=0)
    t_dense = time.perf_counter() - t0
    diff = float(np.max(np.abs(np.sort(got) - np.sort(want)) / np.sort(want)))
    tag = f"{n}^2, width {width}, k={k}"
    return [record(f"svds through aslinearoperator(), largest relative difference, {tag}",
                   diff, "", "svds of the expanded matrix (float32)", 1e-4, "value <= 1e-4",
                   diff <= 1e-4),
            record(f"svds through aslinearoperator(), time, {tag}", t_ours, "s",
                   "expand + svds of the expanded matrix", t_dense),
            record(f"svds through aslinearoperator(), peak extra memory, {tag}", mb(mem), "MiB",
                   "the expanded matrix", mb(dense.nbytes), "ratio <= 0.05",
                   mem is not None and mem <= 0.05 * dense.nbytes)]


def products(n, repeat):
    w = width_at(2, (n, n))
    W = random_signcut((n, n), w, 6)
    A = np.random.default_rng(7).standard_normal((n, n), dtype=np.float32)
    x = np.random.default_rng(8).standard_normal(n, dtype=np.float32)
    out = []
    for busy in (False, True):
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for _ in range(40):                      # let the thread choice settle
                W @ x
            t_dense, t_ours = medians([lambda: A @ x, lambda: W @ x], 5, repeat,
                                      pause=SETTLE_SECONDS)
        finally:
            if child is not None:
                child.kill()
                child.wait()
        tag = f"{n}^2, 2 bits/entry, width {w}, " + ("one busy process beside"
                                                     if busy else "quiet")
        out.append(record(f"W @ x, {tag}", 1e3 * t_ours, "ms", "NumPy float32 A @ x",
                          1e3 * t_dense, "ratio <= 0.5", t_ours <= t_dense / 2))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_protocol_args(ap, quick_help="64^3, 1024^2 (2048^2 for W @ x) and an svds of "
                                     "4000^2: seconds")
    ap.add_argument("--only", nargs="+", choices=PARTS, metavar="PART",
                    help=f"run only these parts ({', '.join(PARTS)})")
    args = ap.parse_args(argv)
    q = args.quick
    header("Computing on the compressed form against expand-then-NumPy"
           + (" (--quick)" if q else ""))
    parts = {"contraction": lambda: contraction(64 if q else 128, 5 if q else 11),
             "norms": lambda: norms(1024 if q else 4096, 3),
             "svds": lambda: singular_values(4000 if q else 20000, 400 if q else 2000, 10),
             "products": lambda: products(2048 if q else 4096, 15 if q else 31)}
    records = []
    for name in args.only or PARTS:
        records += parts[name]()
    rows = []
    for r in records:
        small = r["unit"] == ""
        fmt = (lambda v: f"{v:.2e}") if small else (lambda v: f"{v:.4g}")
        rows.append([r["figure"], f"{fmt(r['value'])} {r['unit']}".strip(), r["baseline"],
                     f"{fmt(r['baseline_value'])} {r['unit']}".strip(), f"{r['ratio']:.3g}",
                     r["goal"] or "-", "-" if r["ok"] is None else verdict(r["ok"])])
    print_table(["Figure", "Value", "Baseline (same run)", "Baseline value", "Ratio", "Goal",
                 "Result"], rows)
    if os.cpu_count() and os.cpu_count() < 2:
        print("Note: one CPU: the busy process and the products share it.\n")
    write_json(args.json, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())

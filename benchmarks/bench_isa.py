"""Across instruction sets: how far the best kernels' results are from the scalar kernels'.

Same seed and same kernels give the same bits for every n_threads; different kernels sum in
different orders (vector lanes, FMA), so float32 roundings differ, a sign near zero can flip,
and from that cut on the greedy takes another path. This decomposes the same arrays (seed 0,
8 bits per entry) once per instruction set the CPU supports, each in a fresh process with
``SIGNCUT_CPU`` set, and reports against the scalar kernels (the reference):
  * the cut at which the signs first differ (1-based; "none" when all are equal), and the
    largest relative difference of a coefficient before it;
  * the relative difference of the final relative error, |e_isa / e_scalar - 1|, and the
    largest such difference over the whole error history;
  * the time of each decomposition (ratio against scalar).
Arrays: float32 Gaussian 256 x 300 and 1024 x 1024, a rank-20 + 5 % noise 500 x 400 matrix,
a Gaussian 16 x 24 x 32 tensor (``--quick``: the first and the last, 1024 x 1024 left out).
Prints a Markdown table; exits 0 whatever the figures.

Run from the repository root:
    python benchmarks/bench_isa.py
    python benchmarks/bench_isa.py --quick --json isa.json
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCE = 0.02      # relative difference of the final error documented in the README


def arrays(quick):
    """name -> array (seeded)."""
    rng = np.random.default_rng(0)
    out = {"Gaussian 256x300": rng.standard_normal((256, 300), dtype=np.float32)}
    if not quick:
        out["Gaussian 1024x1024"] = np.random.default_rng(1).standard_normal(
            (1024, 1024), dtype=np.float32)
        a, b = rng.standard_normal((500, 20)), rng.standard_normal((20, 400))
        low = a @ b
        noise = rng.standard_normal(low.shape)
        out["rank 20 + 5 % noise 500x400"] = (
            low + 0.05 * np.linalg.norm(low) / np.linalg.norm(noise) * noise).astype(np.float32)
    out["Gaussian 16x24x32 tensor"] = np.random.default_rng(2).standard_normal(
        (16, 24, 32), dtype=np.float32)
    return out


def child(quick, out):
    """In a fresh process with SIGNCUT_CPU set: decompose every array, save the results."""
    sys.path.append(os.path.dirname(HERE))
    import signcut
    saved = {"isa": signcut.cpu_info()["active"]}
    for i, (name, A) in enumerate(arrays(quick).items()):
        t0 = time.perf_counter()
        r = signcut.decompose(A, bits_per_entry=8, seed=0)
        saved[f"{i}/seconds"] = time.perf_counter() - t0
        saved[f"{i}/errors"] = r.errors
        saved[f"{i}/coef"] = r.coef
        for a, bits in enumerate(r.signs):
            saved[f"{i}/signs{a}"] = bits
    np.savez(out, **saved)


def first_difference(a, b, i):
    """1-based index of the first cut whose signs differ in any mode, or None."""
    modes = [k for k in a.files if k.startswith(f"{i}/signs")]
    width = min(a[modes[0]].shape[0], b[modes[0]].shape[0])
    first = None
    for k in modes:
        diff = np.flatnonzero((a[k][:width] != b[k][:width]).any(axis=1))
        if diff.size and (first is None or diff[0] < first):
            first = int(diff[0])
    return None if first is None else first + 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small arrays")
    ap.add_argument("--json", metavar="PATH", default=None,
                    help="also write the figures as a JSON list of records to PATH")
    ap.add_argument("--child", metavar="OUT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.quick, args.child)

    from _common import header, print_table, record, write_json
    import signcut
    header("Across instruction sets: results of each kernel set against the scalar kernels")
    isas = signcut.cpu_info()["supported"]
    names = list(arrays(args.quick))
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for isa in isas:
            out = os.path.join(tmp, f"{isa}.npz")
            cmd = [sys.executable, os.path.abspath(__file__), "--child", out]
            cmd += ["--quick"] if args.quick else []
            subprocess.run(cmd, check=True, env=dict(os.environ, SIGNCUT_CPU=isa))
            runs[isa] = np.load(out)
            assert str(runs[isa]["isa"]) == isa
        ref = runs["scalar"]
        rows, records = [], []
        for isa in isas[1:]:
            run = runs[isa]
            for i, name in enumerate(names):
                e0, e1 = ref[f"{i}/errors"], run[f"{i}/errors"]
                w = min(len(e0), len(e1))
                final = abs(e1[-1] / e0[-1] - 1)
                history = float(np.max(np.abs(e1[:w] / e0[:w] - 1)))
                first = first_difference(ref, run, i)
                k = (first - 1) if first else w
                c0, c1 = ref[f"{i}/coef"][:k].astype(np.float64), run[f"{i}/coef"][:k]
                coef = float(np.max(np.abs(c1 / c0 - 1))) if k else 0.0
                t0, t1 = float(ref[f"{i}/seconds"]), float(run[f"{i}/seconds"])
                rows.append([name, isa, len(e0), len(e1), first or "none", f"{coef:.2e}",
                             f"{final:.2e}", f"{history:.2e}", f"{t0:.2f}", f"{t1:.2f}",
                             f"{t0 / t1:.1f}"])
                records.append(record(f"final error, {name}, {isa}", 100 * e1[-1], "%",
                                      "same, scalar kernels", 100 * e0[-1],
                                      f"abs(ratio - 1) <= {TOLERANCE:g}", final <= TOLERANCE))
                records.append(record(f"time, {name} at 8 bits/entry, {isa}", t1, "s",
                                      "same, scalar kernels", t0))
    print_table(["Array", "Kernels", "Width scalar", "Width", "Signs first differ at cut",
                 "Max coef rel. diff.", "Final error rel. diff.", "Max rel. diff. over history", "Scalar (s)",
                 "Time (s)", "Speedup"], rows)
    write_json(args.json, records)


if __name__ == "__main__":
    main()

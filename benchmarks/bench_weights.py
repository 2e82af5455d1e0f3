"""signcut.weights on a synthetic checkpoint: errors, --jobs speedup, peak memory, quantizers.

1. A checkpoint of 24 float32 1024 x 1024 Gaussian matrices (``--heavy``: every other one
   Student-t with 3 degrees of freedom instead, i.e. heavy tailed; seeded) plus 24 1-D
   tensors, compressed at 8 bits/entry with ``jobs=1`` and ``jobs=2``, each in a fresh child
   Python. Goal: max relative error <= 3.5%. Reports the wall time of each, the speedup,
   whether both outputs hold the same bits, and the peak RSS of the child (and of its
   largest worker process for jobs=2).
2. Quality at the same storage: signcut at 16/8/4/2 bits per entry against bf16 rounding
   (16 bits), round-to-nearest int8 with one float32 scale per row (8 + 32/n bits), and
   asymmetric int4 / int2 in groups of 128 with an fp16 scale and zero per group (4.25 and
   2.25 bits); signcut gets exactly the baseline's bits. On one Gaussian and one heavy-tailed
   matrix.

Prints Markdown tables; exits 0 whatever the figures (1 with --check if a goal is missed).

    python benchmarks/bench_weights.py            # 24 x 1024 x 1024
    python benchmarks/bench_weights.py --quick    # 4 x 256 x 256, quality on 128 x 128
    python benchmarks/bench_weights.py --json weights.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from _common import (add_protocol_args, bf16_round, record, rel_error, rtn_groups, rtn_rows,
                     write_json)

import signcut

GOAL_MAX_ERROR = 0.035
GOAL_SPEEDUP = 1.7
RECORDS = []  # figures for --json


def make_checkpoint(path, count, n, heavy=False):
    import safetensors.numpy as stnp
    rng = np.random.default_rng(0)
    tensors = {}
    for i in range(count):
        if i % 2 == 0 or not heavy:
            w = rng.standard_normal((n, n), dtype=np.float32)
        else:
            w = rng.standard_t(3, (n, n)).astype(np.float32)
        tensors[f"layers.{i}.weight"] = w / np.sqrt(n)
        tensors[f"layers.{i}.bias"] = rng.standard_normal(n).astype(np.float32)
    stnp.save_file(tensors, path)
    return tensors


def run_compress(src, out, jobs):
    """compress in a fresh child Python: (summary, seconds, peak RSS, largest worker RSS)."""
    code = ("import json, resource, sys, time; sys.path.insert(0, %r); "
            "from signcut import weights; t0 = time.perf_counter(); "
            # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork + exec, so the child
            # would inherit this (larger) process's peak.
            "peak = lambda: next((int(l.split()[1]) * 1024 for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024"
            "); "
            "r = weights.compress(%r, %r, bits_per_entry=8, jobs=%d, progress=False); "
            "t = time.perf_counter() - t0; "
            "print(json.dumps([r['summary'], t, "
            "peak(), "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]))"
            % (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), src, out, jobs))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def same_bits(a, b):
    da, db = signcut.load(a), signcut.load(b)
    return list(da) == list(db) and all(
        np.array_equal(da[k].coef, db[k].coef)
        and all(np.array_equal(x, y) for x, y in zip(da[k].signs, db[k].signs)) for k in da)


def quality(w, label, threads):
    n = w.shape[1]
    rows = []
    for name, bits, approx in (
            ("bf16", 16.0, bf16_round(w)),
            ("int8 RTN, f32 scale per row", 8 + 32 / n, rtn_rows(w)),
            ("int4 asym., groups of 128", 4.25, rtn_groups(w, 4)),
            ("int2 asym., groups of 128", 2.25, rtn_groups(w, 2))):
        sc = signcut.decompose(w, bits_per_entry=bits, seed=0, n_threads=threads)
        base = rel_error(w, approx)
        rows.append((label, name, f"{bits:.3f}", f"{base:.4%}",
                     f"{sc.rel_error:.4%}", f"{sc.bits_per_entry:.3f}"))
        RECORDS.append(record(f"error at {bits:.4g} bits/entry, {label} {w.shape[0]}x{n}",
                              100 * sc.rel_error, "%", name, 100 * base))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_protocol_args(ap, "4 matrices of 256 x 256, quality table on 128 x 128")
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--heavy", action="store_true",
                    help="every other matrix Student-t(3) (heavy tailed)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = ap.parse_args(argv)
    count = args.count or (4 if args.quick else 24)
    n = args.size or (256 if args.quick else 1024)
    threads = os.cpu_count()
    print(f"# signcut.weights: {count} float32 {n} x {n} matrices at 8 bits/entry "
          f"({os.cpu_count()} CPUs)\n")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "model.safetensors")
        tensors = make_checkpoint(src, count, n, args.heavy)
        int8_max = max(rel_error(w, rtn_rows(w)) for k, w in tensors.items() if w.ndim == 2)
        one_matrix = 4 * n * n
        s1, t1, rss1, _ = run_compress(src, os.path.join(tmp, "one.sct"), 1)
        s2, t2, rss2, worker = run_compress(src, os.path.join(tmp, "two.sct"), 2)
        identical = same_bits(os.path.join(tmp, "one.sct"), os.path.join(tmp, "two.sct"))
        print("| jobs | seconds | speedup | max error | median error | bits/entry | outliers "
              "| peak RSS (MiB) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for jobs, t, q, rss in ((1, t1, s1, rss1), (2, t2, s2, rss2)):
            print(f"| {jobs} | {t:.2f} | {t1 / t:.2f} | {q['max_error']:.4%} | "
                  f"{q['median_error']:.4%} | {q['bits_per_entry']:.3f} | {len(q['outliers'])} "
                  f"| {rss / 2**20:.0f} |")
        s = s1
        print(f"\njobs=2 output identical to jobs=1: {identical}")
        print(f"max error {s['max_error']:.4%} (goal <= {GOAL_MAX_ERROR:.1%}): "
              f"{'ok' if s['max_error'] <= GOAL_MAX_ERROR else 'MISSED'}")
        print(f"one matrix is {one_matrix / 2**20:.0f} MiB; largest jobs=2 worker peak RSS "
              f"{worker / 2**20:.0f} MiB\n")
        what = f"{count} x {n}x{n}"
        RECORDS.append(record(f"max error, checkpoint {what} at 8 bits/entry",
                              100 * s["max_error"], "%", "int8 RTN per row, max over the same",
                              100 * int8_max, f"value <= {100 * GOAL_MAX_ERROR:g} %",
                              s["max_error"] <= GOAL_MAX_ERROR))
        RECORDS.append(record(f"time, checkpoint {what}, --jobs 2", t2, "s", "same, --jobs 1",
                              t1, f"ratio <= {1 / GOAL_SPEEDUP:.3g} ({GOAL_SPEEDUP:g}x faster)",
                              t1 / t2 >= GOAL_SPEEDUP))
        RECORDS.append(record(f"bits identical, checkpoint {what}, --jobs 2 vs 1",
                              float(identical), "bool", "required", 1.0, "value == 1", identical))
        RECORDS.append(record(f"peak RSS, checkpoint {what}, --jobs 1", rss1 / 2 ** 20, "MiB",
                              "one float32 matrix", one_matrix / 2 ** 20))

    rng = np.random.default_rng(1)
    q = 128 if args.quick else n  # the quality table's matrices
    gauss = rng.standard_normal((q, q), dtype=np.float32)
    heavy = rng.standard_t(3, (q, q)).astype(np.float32)
    print("| matrix | baseline | bits/entry | baseline error | signcut error | signcut bits |")
    print("|---|---|---:|---:|---:|---:|")
    for label, w in (("Gaussian", gauss), ("Student-t(3)", heavy)):
        for row in quality(w, label, threads):
            print("| " + " | ".join(row) + " |")
    write_json(args.json, RECORDS)
    ok = s["max_error"] <= GOAL_MAX_ERROR and identical
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())

"""Tensors of any order: tensor-engine speed, and error at equal storage against TensorLy.

Speed. On a seeded float32 Gaussian tensor (default 64 x 128 x 256, seed 0) this times
decompose(X, bits_per_entry=8, seed=0) (order 3: the tensor engine) and divides by the width:
the time per cut. The baseline is the minimum time of one NumPy contraction
``np.einsum('ijk,j,k->i', X, b, c)`` (float32 b, c) on the same tensor, measured in the same
run before and after the decompositions (the minimum of both is used).
Goal: time per cut <= 5 x that contraction. Extra rows divide the same time per cut by the
two other contractions ('ijk,i,k->j' and 'ijk,i,j->k': the engine contracts along every mode)
and by the first one with optimize=True. np.einsum's default (optimize=False) is NumPy's
single-threaded C loop; optimize=True goes through tensordot and the BLAS, about 10 x faster
on the default tensor. Two more extra rows time the first 2000 cuts (``--serial-width``) with
n_threads=1, next to the time the all-threads run took for its first 2000 cuts (from its
callback; same cuts, same seed).

Error at equal storage (needs TensorLy, an optional benchmark dependency: skipped with a
note when it is not importable). For the speed tensor, a low-rank-plus-noise tensor (64^3:
a sum of 10 random rank-one float32 terms plus Gaussian noise of 10 % of its Frobenius norm)
and a Gaussian 64^3 (seed 1), at 1, 2 and 4 bits per entry, it prints side by side the
relative error and time of
  * signcut (its nbytes is the budget in bytes of the two others);
  * CP (tensorly.decomposition.parafac, init='random'), rank = floor(budget / (4 sum(dims)))
    so that the float32 factors fit the budget;
  * Tucker (tensorly.decomposition.tucker, init='svd'), ranks min(r, dim) per mode with the
    largest r whose float32 core and factors fit the budget.
TensorLy runs on its NumPy backend in float32 with n_iter_max=100 (--quick: 25) and
random_state=0.
signcut is greedy: the first W cuts of a wider decomposition are the decomposition of width W
(same seed). So each tensor is decomposed once, at the largest budget (for the speed tensor:
the 8 bits/entry run of the speed table when it is not capped), and the smaller budgets are
read off its prefixes: error of ``truncate(W).expand()``, time from the callback's
timestamps. In this table every decomposition and fit runs once (no repeats).
Prints Markdown tables; exits 0 whatever the figures.

A full run of the speed tensor at 8 bits/entry has ~35,000 cuts and takes minutes (the whole
script: several minutes); ``--width W`` caps the speed runs to measure the steady-state time
per cut over the first W cuts instead (the error table then decomposes the speed tensor
separately at its largest budget).

Run from the repository root:
    python benchmarks/bench_tensor.py                  # the issue's sizes (several minutes)
    python benchmarks/bench_tensor.py --width 4000     # steady-state speed over 4000 cuts
    python benchmarks/bench_tensor.py --quick          # 32 x 64 x 128 and 32^3, 1 and 2 bits/entry,
                                                       # n_iter_max=25: about 15 seconds
    python benchmarks/bench_tensor.py --dims 64 64 64 --threads 2 --no-tensorly
    python benchmarks/bench_tensor.py --quick --json out.json   # also writes the figures

With ``--json PATH`` it also writes a JSON list of records, one per figure: time per cut
against each contraction (ms), the speed run's error against the zero approximation (error
1), and per tensor and budget signcut's error against CP's and Tucker's at equal storage.
"""
import argparse
import math
import time

import numpy as np

import signcut
from _common import (add_protocol_args, best_time, header, print_table, record, rel_error,
                     verdict, write_json)

GOAL = 5.0
# (einsum spec, optimize): the goal's baseline first; np.einsum's default optimize=False runs
# NumPy's single-threaded C loop, optimize=True goes through tensordot (BLAS).
CONTRACTIONS = [("ijk,j,k->i", False), ("ijk,i,k->j", False), ("ijk,i,j->k", False),
                ("ijk,j,k->i", True)]


def label(contraction):
    spec, optimize = contraction
    return f"`{spec}`" + (", optimize=True" if optimize else "")


def gaussian_tensor(dims, seed=0):
    """A seeded float32 Gaussian tensor of shape dims, drawn without a float64 copy."""
    return np.random.default_rng(seed).standard_normal(tuple(dims), dtype=np.float32)


def low_rank_plus_noise(n, rank=10, noise=0.1, seed=0):
    """n^3 float32: sum of `rank` random Gaussian rank-one terms plus Gaussian noise scaled
    to `noise` times the Frobenius norm of the low-rank part."""
    rng = np.random.default_rng(seed)
    a, b, c = (rng.standard_normal((n, rank), dtype=np.float32) for _ in range(3))
    L = np.einsum("ir,jr,kr->ijk", a, b, c)
    N = rng.standard_normal(L.shape, dtype=np.float32)
    N *= noise * np.linalg.norm(L) / np.linalg.norm(N)
    return (L + N).astype(np.float32)


def contraction_time(X, contraction, repeat=7):
    """Minimum time of one NumPy ``np.einsum(spec, X, u, v, optimize=optimize)`` (float32 u, v),
    in seconds, for contraction = (spec, optimize)."""
    spec, optimize = contraction
    ins = spec.split("->")[0].split(",")[1:]
    rng = np.random.default_rng(1)
    u, v = (rng.standard_normal(X.shape["ijk".index(s)], dtype=np.float32) for s in ins)
    fn = lambda: np.einsum(spec, X, u, v, optimize=optimize)  # noqa: E731
    one = best_time(fn, repeat=3)
    number = int(min(200, max(5, 0.05 / max(one, 1e-9))))
    return best_time(fn, repeat=repeat, number=number)


def timed_decompose(X, **kw):
    """decompose(X, **kw) with a callback recording the time since the start after each cut.

    Returns (result, total seconds, array of seconds at the end of cut k+1)."""
    stamps = []
    t0 = time.perf_counter()
    r = signcut.decompose(X, callback=lambda k, e: stamps.append(time.perf_counter() - t0), **kw)
    return r, time.perf_counter() - t0, np.array(stamps)


def budget_width(dims, bits):
    """Width that decompose(bits_per_entry=bits) stops at: width * (sum + 32) / size <= bits."""
    return int(math.floor(bits * math.prod(dims) / (sum(dims) + 32) + 1e-9))


def tucker_ranks(dims, floats):
    """Ranks min(r, d) per mode for the largest r whose core + factors take <= floats floats."""
    def cost(r):
        rk = [min(r, d) for d in dims]
        return math.prod(rk) + sum(k * d for k, d in zip(rk, dims))
    r = 0
    while r < max(dims) and cost(r + 1) <= floats:
        r += 1
    return [min(r, d) for d in dims]


def best_run(X, repeat, **kw):
    """The fastest of `repeat` timed_decompose(X, seed=0, **kw) runs."""
    runs = [timed_decompose(X, seed=0, **kw) for _ in range(repeat)]
    return min(runs, key=lambda run: run[1])


def speed_table(X, args, records):
    dims = X.shape
    base = {s: contraction_time(X, s) for s in CONTRACTIONS}
    run = best_run(X, args.repeat, bits_per_entry=8, width=args.width, n_threads=args.threads)
    serial = None
    if args.threads != 1 and not args.quick:
        w = args.serial_width or args.width
        w = min(w, args.width) if w and args.width else w
        serial = best_run(X, args.repeat, bits_per_entry=8, width=w, n_threads=1)
    base = {s: min(t, contraction_time(X, s)) for s, t in base.items()}

    shape = "x".join(map(str, dims))

    def row(threads, width, t, spec, err, main=False):
        ratio = t / width / base[spec]
        records.append(record(f"tensor {shape} time per cut / {label(spec)}, threads {threads}, "
                              f"width {width}",
                              1e3 * t / width, "ms", f"one np.einsum {label(spec)}",
                              1e3 * base[spec], f"ratio <= {GOAL:g}" if main else "",
                              bool(ratio <= GOAL) if main else None))
        return [threads, width, f"{t:.2f}", f"{1e3 * t / width:.3f}", label(spec),
                f"{1e3 * base[spec]:.3f}", f"{ratio:.2f}", f"<= {GOAL:g}" if main else "(extra)",
                verdict(ratio <= GOAL) if main else "-", f"{err:.4f}"]

    r, t, stamps = run
    nt = "all" if args.threads in (None, -1) else args.threads
    rows = [row(nt, r.width, t, spec, r.rel_error, main=spec == CONTRACTIONS[0])
            for spec in CONTRACTIONS]
    if serial is not None:
        w = serial[0].width
        if w < r.width:
            rows.append(row(f"{nt}, first {w} cuts", w, stamps[w - 1], CONTRACTIONS[0],
                            r.errors[w - 1]))
        rows.append(row(1, w, serial[1], CONTRACTIONS[0], serial[0].rel_error))
    print_table(["Threads", "Width", "Decompose (s)", "Per cut (ms)", "Baseline", "Baseline (ms)",
                 "Ratio", "Goal", "Result", "Rel. error"], rows)
    records.append(record(f"tensor {shape} rel. error after {r.width} cuts", r.rel_error, "",
                          "zero approximation", 1.0))
    print(f"Tensor {' x '.join(map(str, dims))} float32 Gaussian, seed 0, 8 bits/entry budget: "
          f"width {r.width}, {r.bits_per_entry:.3f} bits/entry, {r.nbytes} bytes. Time per cut = "
          f"decompose time / width ({'full width' if args.width is None else 'width capped'}; "
          f"a 'first W cuts' row is the callback time after W cuts of the same run), min of "
          f"{args.repeat} decomposition(s); baselines: min of one NumPy contraction before and "
          f"after.\n")
    return run


def error_rows(name, X, budgets, tl, args, records, run=None):
    """Rows of the equal-storage table for one tensor. `run` = (result, time, stamps) of a
    decomposition of X at >= max(budgets) bits/entry (seed 0), reused when wide enough."""
    from tensorly.decomposition import parafac, tucker

    dims = X.shape
    top = budget_width(dims, max(budgets))
    if run is None or run[0].width < top:
        run = timed_decompose(X, bits_per_entry=max(budgets), seed=0, n_threads=args.threads)
    full, _, stamps = run
    T = tl.tensor(X)
    rows = []
    for bits in budgets:
        w = min(budget_width(dims, bits), full.width)
        r = full.truncate(w)
        sc_err, sc_t = rel_error(X, r.expand()), stamps[w - 1]
        budget = r.nbytes

        rank = budget // (4 * sum(dims))
        if rank >= 1:
            t0 = time.perf_counter()
            cp = parafac(T, rank, n_iter_max=args.n_iter, init="random", random_state=0)
            cp_t = time.perf_counter() - t0
            cp_err = rel_error(X, tl.cp_to_tensor(cp))
            cp_cells = [rank, f"{cp_err:.4f}", f"{cp_t:.2f}"]
            records.append(record(f"{name} {bits:g} bits/entry: signcut error / CP error",
                                  sc_err, "", f"CP rank {rank} error (same bytes)", cp_err))
        else:
            cp_cells = [0, "-", "-"]

        ranks = tucker_ranks(dims, budget // 4)
        if min(ranks) >= 1:
            t0 = time.perf_counter()
            tk = tucker(T, ranks, n_iter_max=args.n_iter, init="svd", random_state=0)
            tk_t = time.perf_counter() - t0
            tk_err = rel_error(X, tl.tucker_to_tensor(tk))
            tk_cells = ["x".join(map(str, ranks)), f"{tk_err:.4f}", f"{tk_t:.2f}"]
            records.append(record(f"{name} {bits:g} bits/entry: signcut error / Tucker error",
                                  sc_err, "", f"Tucker {'x'.join(map(str, ranks))} error "
                                  "(same bytes)", tk_err))
        else:
            tk_cells = ["-", "-", "-"]
        rows.append([name, f"{bits:g}", budget, w, f"{sc_err:.4f}", f"{sc_t:.2f}"]
                    + cp_cells + tk_cells)
    return rows


def error_table(X, run, args, records):
    try:
        import tensorly as tl
    except ImportError:
        print("TensorLy is not importable: equal-storage comparison skipped "
              "(pip install tensorly to run it).\n")
        return
    tl.set_backend("numpy")
    n = 32 if args.quick else 64
    tensors = [(f"rank 10 + 10 % noise {n}^3", low_rank_plus_noise(n, seed=0), None),
               (f"Gaussian {n}^3", gaussian_tensor((n, n, n), seed=1), None)]
    if not args.quick:
        tensors.insert(0, (f"Gaussian {' x '.join(map(str, X.shape))}", X, run))
    rows = []
    for name, T, r in tensors:
        rows += error_rows(name, T, args.budgets, tl, args, records, r)
    print(f"### Error at equal storage vs TensorLy {tl.__version__} "
          f"(backend {tl.get_backend()}, float32, n_iter_max={args.n_iter})\n")
    print_table(["Tensor", "Bits/entry", "Budget (bytes)", "signcut width", "signcut error",
                 "signcut (s)", "CP rank", "CP error", "CP (s)", "Tucker ranks", "Tucker error",
                 "Tucker (s)"], rows)
    print("Errors are relative Frobenius errors in float64. signcut times at the smaller "
          "budgets are the prefix times of one decomposition (greedy: same cuts); CP and "
          "Tucker each run once at each budget.\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs=3, default=[64, 128, 256],
                    help="speed tensor shape (default 64 128 256)")
    ap.add_argument("--width", type=int, default=None,
                    help="cap the width of the speed runs (steady-state mode; 0: no cap)")
    ap.add_argument("--serial-width", type=int, default=2000,
                    help="width of the n_threads=1 run (default 2000; 0: same as --width)")
    ap.add_argument("--repeat", type=int, default=1, help="decompositions per thread count (min)")
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all)")
    ap.add_argument("--budgets", type=float, nargs="+", default=None,
                    help="bits per entry of the equal-storage table (default 1 2 4; quick: 1 2)")
    ap.add_argument("--n-iter", type=int, default=None,
                    help="TensorLy n_iter_max (default 100; quick: 25)")
    ap.add_argument("--no-tensorly", action="store_true", help="skip the TensorLy table")
    add_protocol_args(ap, "speed tensor 32 x 64 x 128, small tensors 32^3, budgets 1 2, "
                          "n_iter_max 25")
    args = ap.parse_args(argv)
    if args.quick:
        args.dims = [32, 64, 128]
    if args.budgets is None:
        args.budgets = [1, 2] if args.quick else [1, 2, 4]
    if args.n_iter is None:
        args.n_iter = 25 if args.quick else 100
    args.width = args.width or None

    cap = "full width" if args.width is None else f"width capped at {args.width}"
    header(f"Tensors: time per cut vs one NumPy contraction (order 3, 8 bits/entry, {cap})")
    X = gaussian_tensor(args.dims, seed=0)
    records = []
    run = speed_table(X, args, records)
    if not args.no_tensorly:
        error_table(X, run, args, records)
    write_json(args.json, records)


if __name__ == "__main__":
    main()

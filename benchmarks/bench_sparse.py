"""Sparse input: the implicit-remainder engine on a planted-community graph and a sparse matrix.

1. A stochastic block model graph, n x n (default 200,000; average degree 10, about 1.9
   million stored entries; 8 planted communities of equal size, 7 of the 10 neighbours inside
   the community), as scipy CSR with float64 values and int32 indices (23 MB):
   * time per cut over the first 64 cuts and the last 64 of a 256-cut run, against one
     scipy ``A @ x`` (float64, single-threaded, timed in the same run before and after the
     decompositions, the lesser; the engine runs ``--threads`` threads, default 1): goal
     <= 20; the time per cut added per 64 cuts is reported too (the dots' popcounts and the
     group tables read every cut so far: the cuts' own share grows with the width); the same run
     at effort "fast" (alternations end at 1e-3 relative growth) for its time and error;
   * peak resident memory of the decomposition in a fresh process, input included, less the
     256 cuts' signs, against the CSR input's bytes: goal <= 3;
   * communities read off the first 16 cuts: k-means (scipy.cluster.vq.kmeans2, k = 8, best
     of 5 starts by inertia) on the s signs of cuts 2..16 times |c| (cut 1 is the all-plus
     cut of the graph's density), adjusted Rand index against the planted communities, next
     to ``scipy.sparse.linalg.svds(A, k=8)`` + the same k-means on the left singular vectors
     (no goal; time and accuracy both reported).
2. 4096 x 4096 at 1% density (Gaussian values): the sparse engine against the dense engine
   on ``A.toarray()``, 500 cuts, same seed: time per cut (no goal) and error after 500 cuts
   (goal: within 3%, as the tests ask).

Run from the repository root:
    python benchmarks/bench_sparse.py                # the sizes above, a few minutes
    python benchmarks/bench_sparse.py --quick        # 20,000 nodes, 64 cuts; 1024^2, 100 cuts
    python benchmarks/bench_sparse.py --json out.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp
from scipy.cluster.vq import kmeans2
from scipy.sparse.linalg import svds

from _common import add_protocol_args, header, print_table, record, settle, verdict, write_json

import signcut  # noqa: E402  (_common put the checkout on sys.path)

COMMUNITIES = 8
DEGREE_IN, DEGREE_OUT = 7, 3
WINDOW = 64                 # cuts per timing window
EFFORTS = ("default", "fast")


def sbm(n, seed=0):
    """An undirected stochastic block model graph: (CSR adjacency, float64 0/1, int32
    indices; planted labels). Edges are drawn uniformly inside and across communities (about
    n * DEGREE_IN / 2 and n * DEGREE_OUT / 2), duplicates merged."""
    rng = np.random.default_rng(seed)
    size = n // COMMUNITIES
    labels = np.arange(n) // size
    m_in, m_out = n * DEGREE_IN // 2, n * DEGREE_OUT // 2
    a = rng.integers(0, n, m_in)
    b = labels[a] * size + rng.integers(0, size, m_in)
    c, d = rng.integers(0, n, m_out), rng.integers(0, n, m_out)
    keep = labels[c] != labels[d]
    rows = np.concatenate([a, b, c[keep], d[keep]])
    cols = np.concatenate([b, a, d[keep], c[keep]])
    A = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    A.sum_duplicates()
    A.data[:] = 1.0
    return A, labels


def adjusted_rand(a, b):
    """Adjusted Rand index of two labelings (Hubert and Arabie)."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)

    def pairs(x):
        return float((x * (x - 1) / 2).sum())

    both, rows, cols = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / pairs(np.array([len(a)], float))
    return (both - expected) / ((rows + cols) / 2 - expected)


def kmeans(X, k, starts=5):
    """Labels of the best of `starts` k-means++ runs (kmeans2) by inertia."""
    best = None
    for seed in range(starts):
        centers, labels = kmeans2(X, k, minit="++", seed=seed)
        inertia = float(((X - centers[labels]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, labels)
    return best[1]


def spmv_time(A, repeat=7):
    """Median time of one scipy ``A @ x`` over `repeat` rounds of 10."""
    x = np.random.default_rng(1).standard_normal(A.shape[1])
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(10):
            A @ x
        rounds.append((time.perf_counter() - t0) / 10)
    return float(np.median(rounds))


def memory_child(path, width, threads):
    """In a fresh process: resident memory before loading the CSR, and the peak of the run."""
    def status(key):
        # VmRSS now, VmHWM the peak of this program (ru_maxrss would keep the parent's from
        # before the fork)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    signcut.decompose(sp.random(64, 64, density=0.1, format="csr", random_state=0), width=2)
    base = status("VmRSS:")
    with np.load(path) as z:
        A = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    r = signcut.decompose(A, width=width, seed=0, n_threads=threads)
    peak = status("VmHWM:")
    print(json.dumps({"base": base, "peak": peak, "signs": r.nbytes, "width": r.width}))


def graph_figures(n, width, threads, records):
    A, labels = sbm(n)
    csr_bytes = A.data.nbytes + A.indices.nbytes + A.indptr.nbytes
    print(f"Graph: {n} nodes, {A.nnz} stored entries, CSR {csr_bytes / 2**20:.1f} MiB\n")
    spmv = [spmv_time(A)]
    runs = {}
    for effort in EFFORTS:
        stamps = []
        t0 = time.perf_counter()
        r = signcut.decompose(A, width=width, seed=0, n_threads=threads, effort=effort,
                              callback=lambda k, e: stamps.append(time.perf_counter()))
        per_cut = np.diff([t0] + stamps)
        runs[effort] = (r, [per_cut[j:j + WINDOW].mean() for j in range(0, r.width, WINDOW)],
                        time.perf_counter() - t0)
    spmv.append(spmv_time(A))
    product = min(spmv)       # noise only adds time
    print(f"`A @ x` (scipy, float64): {1e3 * product:.2f} ms (least of the medians before, "
          f"{1e3 * spmv[0]:.2f}, and after, {1e3 * spmv[1]:.2f}); "
          + ", ".join(f"{r.width} cuts in {total:.1f} s at effort {effort!r}"
                      for effort, (r, _, total) in runs.items())
          + f", {threads} thread(s)\n")
    for effort, (r, windows, _) in runs.items():
        if effort != "default":
            records.append(record(f"time per cut, last {WINDOW} of {r.width}, SBM {n}, effort "
                                  f"{effort!r}", 1e3 * windows[-1], "ms",
                                  "scipy A @ x (float64 CSR)", 1e3 * product))
            records.append(record(f"error after {r.width} cuts, SBM {n}, effort {effort!r}",
                                  r.rel_error, "", "effort 'default'",
                                  runs["default"][0].rel_error))
    rows = [[f"{j * WINDOW + 1}-{min((j + 1) * WINDOW, width)}"]
            + [f"{1e3 * windows[j]:.1f} ms, {windows[j] / product:.1f}x, "
               f"{r.errors[min((j + 1) * WINDOW, r.width) - 1]:.6f}"
               for r, windows, _ in runs.values()]
            for j in range(len(runs["default"][1]))]
    print_table(["Cuts"] + [f"effort {e!r}: per cut, / A @ x, error after" for e in runs], rows)
    r, windows, _ = runs["default"]
    for j, label in ((0, "first"), (len(windows) - 1, "last")):
        ratio = windows[j] / product
        records.append(record(f"time per cut, {label} {WINDOW} of {r.width}, SBM {n} "
                              f"({A.nnz} nonzeros, {threads} thread)", 1e3 * windows[j], "ms",
                              "scipy A @ x (float64 CSR)", 1e3 * product, "ratio <= 20",
                              ratio <= 20))
    if len(windows) > 1:
        slope = (windows[-1] - windows[0]) / (len(windows) - 1)
        records.append(record(f"time per cut added per {WINDOW} cuts, SBM {n}", 1e3 * slope, "ms",
                              "scipy A @ x (float64 CSR)", 1e3 * product))

    # peak memory, fresh process
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "graph.npz")
        np.savez(path, data=A.data, indices=A.indices, indptr=A.indptr, shape=A.shape)
        out = subprocess.run([sys.executable, __file__, "--memory-child", path, str(width),
                              str(threads)], capture_output=True, text=True, check=True)
    mem = json.loads(out.stdout.strip().splitlines()[-1])
    used = mem["peak"] - mem["base"] - mem["signs"]
    print_table(["Peak RSS - start (MiB)", "Signs (MiB)", "CSR input (MiB)",
                 "(peak - signs) / CSR", "Goal", "Result"],
                [[f"{(mem['peak'] - mem['base']) / 2**20:.1f}", f"{mem['signs'] / 2**20:.1f}",
                  f"{csr_bytes / 2**20:.1f}", f"{used / csr_bytes:.2f}", "<= 3",
                  verdict(used <= 3 * csr_bytes)]])
    records.append(record(f"peak RSS less the signs, SBM {n}, {mem['width']} cuts (input "
                          "included)", used / 2**20, "MiB", "CSR input bytes", csr_bytes / 2**20,
                          "ratio <= 3", used <= 3 * csr_bytes))

    # communities from the first 2k cuts, against svds + k-means
    from signcut._result import unpack_signs
    k = 2 * COMMUNITIES
    t0 = time.perf_counter()
    first = signcut.decompose(A, width=k, seed=0, n_threads=threads)
    S = unpack_signs(first.signs[0][1:], n) * np.abs(first.coef[1:, None])
    ours = adjusted_rand(kmeans(S.T.astype(np.float64), COMMUNITIES), labels)
    t_ours = time.perf_counter() - t0
    settle()
    t0 = time.perf_counter()
    U, _, _ = svds(A, k=COMMUNITIES, random_state=0)
    theirs = adjusted_rand(kmeans(U, COMMUNITIES), labels)
    t_theirs = time.perf_counter() - t0
    print_table(["Method", "Adjusted Rand index", "Seconds"],
                [[f"signcut, {k} cuts + k-means on their signs", f"{ours:.3f}", f"{t_ours:.1f}"],
                 [f"svds(k={COMMUNITIES}) + k-means", f"{theirs:.3f}", f"{t_theirs:.1f}"]])
    records.append(record(f"communities: adjusted Rand index, {k} cuts + k-means, SBM {n}",
                          ours, "", f"svds(k={COMMUNITIES}) + k-means", theirs))
    records.append(record(f"communities: seconds, {k} cuts + k-means, SBM {n}", t_ours, "s",
                          f"svds(k={COMMUNITIES}) + k-means", t_theirs))


def matrix_figures(n, width, threads, records):
    rng = np.random.default_rng(2)
    A = sp.random(n, n, density=0.01, format="csr", random_state=rng, dtype=np.float32,
                  data_rvs=lambda k: rng.standard_normal(k))
    D = A.toarray()
    times, errors = {}, {}
    for name, X in (("sparse", A), ("dense", D), ("sparse", A), ("dense", D)):   # interleaved
        t0 = time.perf_counter()
        r = signcut.decompose(X, width=width, seed=0, n_threads=threads)
        times.setdefault(name, []).append((time.perf_counter() - t0) / r.width)
        errors[name] = r.rel_error
    t = {name: min(v) for name, v in times.items()}
    print_table(["Engine", "ms per cut", f"Error after {width} cuts"],
                [[name, f"{1e3 * t[name]:.2f}", f"{errors[name]:.5f}"] for name in t])
    records.append(record(f"time per cut, {n}^2 at 1% density, sparse engine", 1e3 * t["sparse"],
                          "ms", "dense engine on the densified matrix", 1e3 * t["dense"]))
    ratio = errors["sparse"] / errors["dense"]
    records.append(record(f"error after {width} cuts, {n}^2 at 1% density, sparse engine",
                          errors["sparse"], "", "dense engine on the densified matrix",
                          errors["dense"], "ratio <= 1.03", ratio <= 1.03))
    print(f"error ratio sparse / dense {ratio:.4f} (goal <= 1.03: {verdict(ratio <= 1.03)})\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200_000, help="graph nodes (default 200,000)")
    ap.add_argument("--width", type=int, default=256, help="cuts of the timed graph run")
    ap.add_argument("--size", type=int, default=4096, help="side of the 1%% dense-vs-sparse case")
    ap.add_argument("--cuts", type=int, default=500, help="cuts of the dense-vs-sparse case")
    ap.add_argument("--threads", type=int, default=1, help="engine threads (default 1)")
    ap.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    add_protocol_args(ap, "20,000 nodes and 64 cuts; 1024^2 and 100 cuts")
    args = ap.parse_args(argv)
    if args.memory_child:
        path, width, threads = args.memory_child
        return memory_child(path, int(width), int(threads))
    if args.quick:
        args.nodes, args.width, args.size, args.cuts = 20_000, 64, 1024, 100
    header(f"Sparse input: SBM graph of {args.nodes} nodes, {args.width} cuts; "
           f"{args.size}^2 at 1% density, {args.cuts} cuts")
    records = []
    graph_figures(args.nodes, args.width, args.threads, records)
    matrix_figures(args.size, args.cuts, args.threads, records)
    write_json(args.json, records)


if __name__ == "__main__":
    main()

"""Peak resident memory of signcut.decompose, as a multiple of the float32 input size.

A fresh child Python (so the parent's memory does not count) imports signcut, warms up with
a 64 x 64 decomposition (lazy imports, thread start), records its peak RSS (ru_maxrss),
creates a seeded float32 Gaussian matrix A (default 4096 x 4096), records it again,
decomposes A at 8 bits/entry, and records the peak once more.
Figure: (peak - RSS before creating A) / A.nbytes, which counts A itself; goal <= 3.5.
The column "decompose only" leaves A out: (peak - RSS after creating A) / A.nbytes.

The width is capped (default 300 cuts, ``--width 0`` for none): the working memory does not
grow with the width, but the output does: (m + n) / 8 + 12 bytes per cut (signs, coef,
error), up to 8/32 = 0.25 x A.nbytes at a full 8 bits/entry, which the capped figure leaves
out. Prints a Markdown table; exits 0 whatever the figures.

Run from the repository root:
    python benchmarks/bench_memory.py                  # 4096 x 4096, 300 cuts
    python benchmarks/bench_memory.py --quick          # 1024 x 1024, 300 cuts
    python benchmarks/bench_memory.py --size 2048 --width 0 --threads 1
"""
import argparse
import json
import subprocess
import sys

GOAL = 3.5


def child(n, width, threads):
    """Runs in the fresh interpreter: prints the RSS figures as JSON."""
    import signcut
    from _common import gaussian, peak_rss_bytes
    signcut.decompose(gaussian(64), width=1, n_threads=threads)  # load lazy modules, start threads
    before = peak_rss_bytes()
    A = gaussian(n, seed=0)
    after_a = peak_rss_bytes()
    r = signcut.decompose(A, bits_per_entry=8, width=width or None, seed=0, n_threads=threads)
    print(json.dumps({"before": before, "after_a": after_a, "peak": peak_rss_bytes(),
                      "nbytes": A.nbytes, "width": r.width}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="matrix side (default 4096)")
    ap.add_argument("--width", type=int, default=300, help="cap on the width, 0 = none")
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all)")
    ap.add_argument("--quick", action="store_true", help="1024 x 1024")
    ap.add_argument("--json", metavar="PATH", default=None,
                    help="also write the figures as a JSON list of records to PATH")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n = 1024 if args.quick else args.size
    if args.child:
        return child(n, args.width, args.threads)

    from _common import header, print_table, record, verdict, write_json
    header(f"Memory: peak RSS of decomposing {n} x {n} float32 at 8 bits/entry (fresh process)")
    cmd = [sys.executable, __file__, "--child", "--size", str(n), "--width", str(args.width)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    m = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    mib = 2.0 ** 20
    ratio = (m["peak"] - m["before"]) / m["nbytes"]
    print_table(["Size", "Width", "Input (MiB)", "Peak - start (MiB)", "Peak / input", "Goal",
                 "Result", "Decompose only / input"],
                [[f"{n} x {n}", m["width"], f"{m['nbytes'] / mib:.1f}",
                  f"{(m['peak'] - m['before']) / mib:.1f}", f"{ratio:.2f}", f"<= {GOAL:g}",
                  verdict(ratio <= GOAL), f"{(m['peak'] - m['after_a']) / m['nbytes']:.2f}"]])
    write_json(args.json, [record(
        f"peak RSS - start, decompose {n}x{n} ({m['width']} cuts)",
        (m["peak"] - m["before"]) / mib, "MiB", "float32 input A.nbytes", m["nbytes"] / mib,
        f"ratio <= {GOAL:g}", ratio <= GOAL)])


if __name__ == "__main__":
    main()

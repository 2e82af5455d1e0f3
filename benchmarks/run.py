"""Run all signcut benchmarks in sequence and print their Markdown tables.

Runs bench_quality, bench_speed, bench_matmul, bench_threads, bench_memory, bench_tensor and
bench_image, each in its own process, passing ``--quick`` through. Every figure is a ratio
against a baseline measured in the same run; no figure makes the run fail (the exit status is
non-zero only if a script crashes).

Run from the repository root:
    python benchmarks/run.py            # the issue's sizes (4096 x 4096 runs: many minutes)
    python benchmarks/run.py --quick    # smaller sizes, about a minute
"""
import argparse
import os
import subprocess
import sys

SCRIPTS = ["bench_quality.py", "bench_speed.py", "bench_matmul.py", "bench_threads.py",
           "bench_memory.py", "bench_tensor.py", "bench_image.py"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, about a minute")
    args = ap.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    failed = []
    for name in SCRIPTS:
        cmd = [sys.executable, os.path.join(here, name)] + (["--quick"] if args.quick else [])
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
        sys.stdout.flush()
    if failed:
        print(f"Failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

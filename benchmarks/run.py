"""Run every signcut benchmark and print one Markdown table of all their figures.

Each ``benchmarks/bench_*.py`` script runs in its own process with ``--json TMPFILE`` (and
``--quick`` when given); every script writes one record per figure (value, baseline measured
in the same run, ratio, goal, pass/miss). This collects them and prints, after a header with
the machine, the CPU features and the kernels in use, one table: script, figure, value,
baseline, baseline value, ratio, goal and result ("pass", "miss", or "-" without a goal).
Scripts that do not exist yet are skipped with a note; a script that fails is reported (its
stderr tail is printed) and the others still run. ``--details`` also prints each script's own
tables. No figure makes the run fail: the exit status is 1 only if a script crashed.

Run from the repository root:
    python benchmarks/run.py                  # the issues' sizes (4096 x 4096 runs: long)
    python benchmarks/run.py --quick          # a subset, under a minute
    python benchmarks/run.py --quick --only quality speed --details
    python benchmarks/run.py --json all.json  # also every record, with its script, as JSON
"""
import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Order of the table (a script that does not exist is skipped with a note).
SCRIPTS = ["bench_quality.py", "bench_speed.py", "bench_threads.py", "bench_memory.py",
           "bench_tensor.py", "bench_image.py", "bench_weights.py", "bench_isa.py",
           "bench_matmul.py",
           "bench_outliers.py", "bench_effort.py", "bench_sparse.py", "bench_algebra.py",
           "bench_model.py"]


def fmt(x, unit=""):
    """A number in 4 significant digits (plain notation when reasonable), with its unit."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    x = float(x)
    text = f"{x:.4g}" if x == 0 or 1e-3 <= abs(x) < 1e6 else f"{x:.3e}"
    return f"{text} {unit}".strip()


def result_cell(ok):
    return "-" if ok is None else ("pass" if ok else "miss")


def run_script(name, quick, details, timeout):
    """Run one script: (records or None, seconds, note)."""
    path = os.path.join(HERE, name)
    fd, out = tempfile.mkstemp(prefix="signcut-bench-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, path, "--json", out] + (["--quick"] if quick else [])
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
        seconds = time.perf_counter() - t0
        if details:
            print(done.stdout)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-10:])
            print(f"{name} failed (exit status {done.returncode}):\n{tail}\n", file=sys.stderr)
            return None, seconds, f"failed (exit status {done.returncode})"
        with open(out) as f:
            records = json.load(f)
        return records, seconds, f"{len(records)} figures"
    except subprocess.TimeoutExpired:
        return None, time.perf_counter() - t0, f"timed out after {timeout} s"
    except (OSError, ValueError) as exc:
        return None, time.perf_counter() - t0, f"no figures ({exc})"
    finally:
        os.unlink(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a subset of every script, under a minute")
    ap.add_argument("--details", action="store_true", help="also print each script's own tables")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="run only these scripts (e.g. quality speed, or bench_speed.py)")
    ap.add_argument("--json", metavar="PATH", help="also write every record, with its script")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds allowed per script (default: none; 300 with --quick)")
    args = ap.parse_args(argv)
    timeout = args.timeout or (300 if args.quick else None)

    scripts = SCRIPTS
    if args.only:
        wanted = {n if n.endswith(".py") else f"bench_{n.removeprefix('bench_')}.py"
                  for n in args.only}
        unknown = wanted - set(SCRIPTS)
        if unknown:
            ap.error(f"unknown script(s): {', '.join(sorted(unknown))}")
        scripts = [s for s in SCRIPTS if s in wanted]

    sys.path.insert(0, HERE)
    from _common import machine_line, print_table
    import numpy as np

    import signcut
    print(f"## signcut benchmarks{' (--quick)' if args.quick else ''}, "
          f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")
    print(f"signcut {signcut.__version__}, Python {sys.version.split()[0]}, NumPy "
          f"{np.__version__}, load average {os.getloadavg()[0]:.2f}\n")
    print(machine_line() + "\n")
    sys.stdout.flush()

    rows, notes, everything, crashed = [], [], [], []
    start = time.perf_counter()
    for name in scripts:
        if not os.path.exists(os.path.join(HERE, name)):
            notes.append(f"{name}: not there yet, skipped")
            continue
        records, seconds, note = run_script(name, args.quick, args.details, timeout)
        notes.append(f"{name}: {note}, {seconds:.1f} s")
        if records is None:
            crashed.append(name)
            continue
        short = name.removeprefix("bench_").removesuffix(".py")
        for r in records:
            everything.append({"script": name, **r})
            unit = r.get("unit", "")
            ratio_unit = "" if unit == "x" else "x"
            cells = [short, r["figure"], fmt(r["value"], unit), r["baseline"],
                     fmt(r["baseline_value"], unit), fmt(r["ratio"], ratio_unit),
                     r.get("goal") or "-", result_cell(r.get("ok"))]
            rows.append([str(c).replace("|", "\\|") for c in cells])   # Markdown cells

    print_table(["Script", "Figure", "Value", "Baseline (same run)", "Baseline value", "Ratio",
                 "Goal", "Result"], rows)
    passed = sum(r[-1] == "pass" for r in rows)
    missed = sum(r[-1] == "miss" for r in rows)
    print(f"{len(rows)} figures: {passed} pass, {missed} miss, {len(rows) - passed - missed} "
          f"without a goal; {time.perf_counter() - start:.0f} s in all.\n")
    if args.quick:
        print("--quick runs smaller sizes than the issues' goals name (see each figure): its "
              "pass/miss is indicative only; run without --quick for the goals' cases.\n")
    for note in notes:
        print(f"- {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())

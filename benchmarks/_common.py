"""Helpers shared by the benchmark scripts (not a benchmark itself).

Timing takes the minimum over repeats: the machine may be shared, and noise only ever adds
time. Every figure is a ratio against a baseline measured in the same run.
"""
import json
import math
import os
import platform
import resource
import sys
import time

import numpy as np

# Let the scripts run from a checkout with an in-place build even when signcut is not installed.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import signcut  # noqa: E402


def gaussian(n, m=None, seed=0):
    """A seeded float32 Gaussian n x m matrix (m defaults to n), drawn without a float64 copy."""
    return np.random.default_rng(seed).standard_normal((n, n if m is None else m), dtype=np.float32)


def best_time(fn, repeat=5, number=1):
    """Minimum over `repeat` rounds of the mean time of `number` calls of fn(), in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


# OpenBLAS's worker threads keep spinning for a while after a BLAS call and take cores from
# the OpenMP threads that run next (measured here, 2 cores: W @ x on 2 threads took 2-10 ms in
# the half second after an A @ x, 1.9-2.3 ms after a pause). A timing of one library right
# after the other's first waits this long.
SETTLE_SECONDS = 0.5


def settle():
    """Let the previous library's idle threads go to sleep before timing the next one."""
    time.sleep(SETTLE_SECONDS)


def matvec_time(A, repeat=7):
    """Minimum time of one NumPy ``A @ x`` (float32 x), in seconds: 20..200 calls per round."""
    x = np.random.default_rng(1).standard_normal(A.shape[1], dtype=np.float32)
    one = best_time(lambda: A @ x, repeat=3)
    number = int(min(200, max(20, 0.05 / max(one, 1e-9))))
    return best_time(lambda: A @ x, repeat=repeat, number=number)


def bf16_round(A):
    """float32 A rounded to bfloat16 (round to nearest even on the bits), returned as float32."""
    u = np.ascontiguousarray(A, dtype=np.float32).view(np.uint32)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.view(np.float32)


def rtn_rows(w, bits=8):
    """Symmetric round-to-nearest to ``bits`` bits with a float32 absmax scale per row."""
    qmax = 2 ** (bits - 1) - 1
    scale = (np.abs(w).max(axis=1, keepdims=True) / qmax).astype(np.float32)
    scale[scale == 0] = 1
    return (np.clip(np.rint(w / scale), -qmax, qmax) * scale).astype(np.float32)


def rtn_groups(w, bits, group=128):
    """Asymmetric round-to-nearest in groups of ``group`` (float16 scale and zero)."""
    g = w.reshape(-1, group).astype(np.float32)
    lo, hi = g.min(axis=1, keepdims=True), g.max(axis=1, keepdims=True)
    scale = ((hi - lo) / (2 ** bits - 1)).astype(np.float16).astype(np.float32)
    scale[scale == 0] = 1
    zero = lo.astype(np.float16).astype(np.float32)
    q = np.clip(np.rint((g - zero) / scale), 0, 2 ** bits - 1)
    return (q * scale + zero).reshape(w.shape)


def rel_error(A, B):
    """||A - B||_F / ||A||_F, computed in float64."""
    A = np.asarray(A, dtype=np.float64)
    return float(np.linalg.norm(A - np.asarray(B, dtype=np.float64)) / np.linalg.norm(A))


def peak_rss_bytes():
    """Peak resident set size of this process so far, in bytes (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def verdict(ok):
    return "pass" if ok else "miss"


def print_table(headers, rows):
    """Print a Markdown table; cells are printed with str()."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print()


def blas_name():
    """The BLAS NumPy was built with: NumPy >= 1.26 (Meson builds) describe their build as a
    dict; 1.25 (the oldest NumPy signcut supports, a distutils build) as the libraries found."""
    try:
        config = np.show_config(mode="dicts")
    except TypeError:
        info = getattr(np.__config__, "blas_ilp64_opt_info", None) \
            or getattr(np.__config__, "blas_opt_info", None) or {}
        return ",".join(dict.fromkeys(info.get("libraries", []))) or "?"
    return config.get("Build Dependencies", {}).get("blas", {}).get("name", "?")


def header(title):
    """Print the title and one line describing the machine and the build."""
    info = signcut.cpu_info()
    blas = blas_name()
    print(f"## {title}\n")
    print(f"signcut {signcut.__version__}, kernel {info['active']} (best {info['best']}, "
          f"supported {', '.join(info['supported'])}), OpenMP {'on' if info['openmp'] else 'off'}, "
          f"default threads {info['default_threads']}, {os.cpu_count()} CPUs, "
          f"{platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__} "
          f"(BLAS {blas}), load average {os.getloadavg()[0]:.2f}\n")


def add_protocol_args(ap, quick_help="a subset, a few seconds"):
    """Add the options every benchmark script takes: ``--quick`` and ``--json PATH``."""
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--json", metavar="PATH", default=None,
                    help="also write the figures as a JSON list of records to PATH")


def record(figure, value, unit, baseline, baseline_value, goal="", ok=None):
    """One figure for ``benchmarks/run.py``: value against a baseline measured in the same run.

    ``ratio`` is value / baseline_value; ``goal`` is a short text ("ratio <= 1", or "" when
    the issues set none) and ``ok`` says whether it is met (None without a goal).
    """
    value, baseline_value = float(value), float(baseline_value)
    ratio = value / baseline_value if baseline_value != 0 else float("nan")
    return {"figure": figure, "value": value, "unit": unit, "baseline": baseline,
            "baseline_value": baseline_value, "ratio": ratio, "goal": goal,
            "ok": None if ok is None else bool(ok)}


def write_json(path, records):
    """Write the records as a JSON list (non-finite numbers become null); no-op if path is None."""
    if path is None:
        return

    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    with open(path, "w") as f:
        json.dump([{k: clean(v) for k, v in r.items()} for r in records], f, indent=1)
        f.write("\n")


def machine_line():
    """One line: CPU model, cores, memory, instruction sets found and kernels used."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), model)
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
        mem = f", {kib / 2 ** 20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    info = signcut.cpu_info()
    return (f"{model}, {os.cpu_count()} CPUs{mem}, {platform.system()} {platform.machine()}; "
            f"CPU features {', '.join(info['features']) or 'none'}; kernels supported "
            f"{', '.join(info['supported'])}, best {info['best']}, active {info['active']}"
            f"{' (SIGNCUT_CPU=' + info['override'] + ')' if info['override'] else ''}; "
            f"OpenMP {'on' if info['openmp'] else 'off'}, default threads "
            f"{info['default_threads']}")

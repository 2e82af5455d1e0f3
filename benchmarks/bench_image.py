"""Pictures: PSNR of signcut.image on the bundled cat against JPEG and a truncated SVD.

    python benchmarks/bench_image.py            # the table (2 to 3 minutes on 2 cores,
                                                # mostly the plain (H, W, 3) tensor)
    python benchmarks/bench_image.py --sweep    # also the tile/colour sweep at 5%
    python benchmarks/bench_image.py --quick    # the 5% column only, no timings
    python benchmarks/bench_image.py --json image.json

Budgets are fractions of the raw 8-bit size (451 x 300 x 3 = 405,900 bytes). At each budget:

* plain greedy: signcut.image.compress(tile=None, color="rgb"), the centred (H, W, 3) tensor;
* signcut.image.compress with its defaults (and the same in RGB, to show what YCbCr adds);
* JPEG (Pillow, default settings: 4:2:0 chroma subsampling, no optimisation), the quality
  whose file is the largest one not exceeding the budget (every quality 1..100 is tried);
* truncated SVD of each centred colour channel with float16 factors (singular values folded
  into one factor, 2 * (H + W) bytes per rank, the ranks shared between the channels
  greedily by singular value, the 3 means as float32) at the same bytes.

Bytes are what each method stores: signcut's nbytes (signs, coefficients and means), the
whole JPEG file, the SVD factors and means. Then the time to compress the cat at 10% with
the defaults and with the plain layout on 2 threads (best of 3).
"""
import argparse
import io
import os
import sys
import time
from importlib import resources

import numpy as np
from PIL import Image

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import add_protocol_args, header, print_table, record, write_json  # noqa: E402

from signcut import image  # noqa: E402

RATIOS = (0.02, 0.05, 0.10, 0.25)
SEED = 0
GOAL_DB = 1.5          # the defaults over the plain greedy at 5%


def load_cat():
    with resources.as_file(resources.files("signcut") / "data" / "chelsea.png") as path:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def jpeg(cat, budget):
    """(PSNR, bytes, quality) of the largest JPEG file of at most ``budget`` bytes."""
    best = None
    pil = Image.fromarray(cat)
    for quality in range(1, 101):
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        size = buf.tell()
        if size <= budget and (best is None or size > best[1]):
            buf.seek(0)
            best = (psnr(cat, np.asarray(Image.open(buf).convert("RGB"))), size, quality)
    return best if best is not None else (float("nan"), 0, None)


def svd_f16(cat, budget):
    """(PSNR, bytes, ranks) of per-channel truncated SVDs with float16 factors."""
    h, w, c = cat.shape
    x = cat.astype(np.float64)
    means = x.mean(axis=(0, 1))
    parts = [np.linalg.svd(x[..., k] - means[k], full_matrices=False) for k in range(c)]
    per_rank = 2 * (h + w)
    n = int((budget - 4 * c) // per_rank)
    values = sorted(((s, k) for k, (_, sv, _) in enumerate(parts) for s in sv), reverse=True)
    ranks = [0] * c
    for _, k in values[:max(n, 0)]:
        ranks[k] += 1
    out = np.empty_like(x)
    for k, (u, sv, vt) in enumerate(parts):
        r = ranks[k]
        uf = u[:, :r].astype(np.float16).astype(np.float64)
        vf = (sv[:r, None] * vt[:r]).astype(np.float16).astype(np.float64)
        out[..., k] = uf @ vf + np.float32(means[k])
    approx = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return psnr(cat, approx), sum(ranks) * per_rank + 4 * c, ranks


def best_time(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def sweep(cat, ratio=0.05):
    print(f"### Layout sweep at {ratio:.0%} (seed {SEED}, 2 threads)\n")
    rows = []
    for tile in (None, 4, 8, 12, 16, 24):
        for color in ("rgb", "ycbcr"):
            t0 = time.perf_counter()
            res = image.compress(cat, ratio=ratio, tile=tile, color=color, seed=SEED, n_threads=2)
            seconds = time.perf_counter() - t0
            rows.append((tile, color, res.cuts, res.nbytes, f"{res.psnr:.2f}", f"{seconds:.2f}"))
    print_table(["tile", "colour", "cuts", "bytes", "PSNR (dB)", "seconds"], rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="also sweep tiles and colours at 5%%")
    add_protocol_args(ap, "only the 5%% budget, no timings")
    args = ap.parse_args(argv)
    ratios = (0.05,) if args.quick else RATIOS
    cat = load_cat()
    raw = cat.nbytes
    header("Pictures: the bundled cat (451 x 300 RGB)")
    print(f"Defaults: tile {image.DEFAULT_TILE}, colour {image.DEFAULT_COLOR}, luma share "
          f"{image.LUMA_SHARE}; seed {SEED}.\n")
    if args.sweep:
        sweep(cat)

    results = {}
    for r in ratios:
        budget = r * raw
        plain = image.compress(cat, ratio=r, tile=None, color="rgb", seed=SEED)
        best = image.compress(cat, ratio=r, seed=SEED)
        rgb = image.compress(cat, ratio=r, color="rgb", seed=SEED)
        results[r] = {"plain": (plain.psnr, plain.nbytes), "best": (best.psnr, best.nbytes),
                      "rgb": (rgb.psnr, rgb.nbytes), "jpeg": jpeg(cat, budget),
                      "svd": svd_f16(cat, budget)}

    def cell(key, r):
        p, nbytes = results[r][key][:2]
        return f"{p:.2f} ({nbytes})"

    rows = [
        ("signcut, plain greedy on (H, W, 3)", *[cell("plain", r) for r in ratios]),
        (f"signcut, tile {image.DEFAULT_TILE}, rgb", *[cell("rgb", r) for r in ratios]),
        (f"**signcut, tile {image.DEFAULT_TILE}, ycbcr (defaults)**",
         *[cell("best", r) for r in ratios]),
        ("JPEG (Pillow), largest file within budget", *[
            f"{results[r]['jpeg'][0]:.2f} ({results[r]['jpeg'][1]}, q={results[r]['jpeg'][2]})"
            for r in ratios]),
        ("per-channel truncated SVD, float16", *[cell("svd", r) for r in ratios]),
        ("defaults minus plain (dB)", *[
            f"{results[r]['best'][0] - results[r]['plain'][0]:+.2f}" for r in ratios]),
        ("defaults minus JPEG (dB)", *[
            f"{results[r]['best'][0] - results[r]['jpeg'][0]:+.2f}" for r in ratios]),
    ]
    print("### PSNR in dB (bytes stored) at a fraction of the raw 8-bit size\n")
    print_table(["method", *[f"{r:.0%} ({int(r * raw)} B)" for r in ratios]], rows)

    records = []
    for r in ratios:
        best = results[r]["best"][0]
        for key, name in (("jpeg", f"JPEG (Pillow, q={results[r]['jpeg'][2]}, largest within "
                                   f"budget)"),
                          ("plain", "signcut plain greedy on (H, W, 3)"),
                          ("svd", "per-channel truncated SVD, float16 factors")):
            base = results[r][key][0]
            goal, ok = ((f"value - baseline >= {GOAL_DB} dB", best - base >= GOAL_DB)
                        if key == "plain" and r == 0.05 else ("", None))
            records.append(record(f"PSNR of the cat at {r:.0%}, defaults", best, "dB", name,
                                  base, goal, ok))

    if not args.quick:
        t_best = best_time(lambda: image.compress(cat, ratio=0.10, seed=SEED, n_threads=2))
        t_plain = best_time(lambda: image.compress(cat, ratio=0.10, tile=None, color="rgb",
                                                   seed=SEED, n_threads=2), repeat=1)
        print_table(["compress the cat at 10%, 2 threads", "seconds"],
                    [("defaults", f"{t_best:.2f}"),
                     ("plain greedy on (H, W, 3)", f"{t_plain:.2f}")])
        records.append(record("time to compress the cat at 10%, defaults", t_best, "s",
                              "plain greedy on (H, W, 3)", t_plain))
    write_json(args.json, records)

    gain = results[0.05]["best"][0] - results[0.05]["plain"][0]
    gap = results[0.05]["best"][0] - results[0.05]["jpeg"][0]
    print(f"At 5%: the defaults are {gain:+.2f} dB over the plain greedy (goal +{GOAL_DB} dB: "
          f"{'pass' if gain >= GOAL_DB else 'miss'}) and {gap:+.2f} dB against JPEG.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

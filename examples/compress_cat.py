"""Compress the bundled picture of a cat with signed cuts, one matrix per colour channel.

    python examples/compress_cat.py [--out DIR] [--bits 0.5 1 2 4]

Writes one PNG per budget (bits per pixel per channel) into DIR (default ./signcut-demo)
and prints a table of size, ratio against the raw 8-bit pixels, PSNR and time.
"""
import argparse
import os
import tempfile
import time
from importlib import resources

import numpy as np
from PIL import Image

import signcut


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def save_png(array, path):
    """Write atomically: a temporary file in the same folder, then a rename."""
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(path) or ".")
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="signcut-demo", help="output folder (default: %(default)s)")
    ap.add_argument("--bits", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
                    help="bits per pixel per channel (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with resources.as_file(resources.files("signcut") / "data" / "chelsea.png") as path:
        image = np.asarray(Image.open(path).convert("RGB"))
    os.makedirs(args.out, exist_ok=True)
    h, w, _ = image.shape
    print(f"chelsea.png: {w} x {h} RGB, {image.nbytes} bytes raw\n")
    print("| bits/pixel/channel | bytes | ratio | PSNR (dB) | seconds | file |")
    print("|---:|---:|---:|---:|---:|---|")
    for bits in args.bits:
        start = time.perf_counter()
        channels, nbytes = [], 0
        for c in range(3):
            result = signcut.decompose(image[:, :, c].astype(np.float32) - 128.0,
                                       bits_per_entry=bits, seed=args.seed)
            channels.append(result.expand() + 128.0)
            nbytes += result.nbytes
        seconds = time.perf_counter() - start
        approx = np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)
        name = os.path.join(args.out, f"chelsea-{bits:g}bpp.png")
        save_png(approx, name)
        print(f"| {bits:g} | {nbytes} | {nbytes / image.nbytes:.3f} | {psnr(image, approx):.2f} "
              f"| {seconds:.2f} | {name} |")


if __name__ == "__main__":
    main()

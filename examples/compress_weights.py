"""Compress a safetensors checkpoint, expand it back, and compare every tensor.

    python examples/compress_weights.py [--out DIR] [--size 1024] [--layers 2] [--bits 8]

Writes a small made-up checkpoint (per layer: a Gaussian attention matrix, a heavy-tailed
Student-t(3) MLP matrix with a few large outliers, as real weights have, a norm vector and a
bias) to DIR/model.safetensors, compresses it with ``signcut.weights.compress`` (the
``signcut weights`` command), expands it with ``signcut.weights.expand`` to float32, and
prints each tensor's relative error against its original, next to per-row int8
round-to-nearest at the same bits for comparison. The compressed file is then used without
expanding: one matrix is read with ``signcut.load`` and multiplied by a vector.
"""
import argparse
import os
import tempfile

import numpy as np
from safetensors.numpy import save_file

import signcut
from signcut import weights


def make_checkpoint(path, size, layers, seed):
    """A float32 checkpoint of `layers` layers of `size`-wide matrices, vectors and biases."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(layers):
        tensors[f"layers.{i}.attn.weight"] = (
            rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32)
        mlp = rng.standard_t(3, size=(2 * size, size)) / np.sqrt(size)
        spikes = rng.choice(mlp.size, size=mlp.size // 5000, replace=False)
        mlp.flat[spikes] *= 30.0            # a few entries far out, as in trained models
        tensors[f"layers.{i}.mlp.weight"] = mlp.astype(np.float32)
        tensors[f"layers.{i}.norm.weight"] = np.ones(size, np.float32)
        tensors[f"layers.{i}.mlp.bias"] = (0.01 * rng.standard_normal(2 * size)).astype(np.float32)
    save_file(tensors, path)
    return tensors


def int8_rows_error(a):
    """Relative error of symmetric int8 round-to-nearest with a float32 scale per row."""
    scale = np.abs(a).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(a / scale), -127, 127) * scale
    return float(np.linalg.norm(q - a) / np.linalg.norm(a))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the files (default: a temporary one)")
    ap.add_argument("--size", type=int, default=1024,
                    help="width of the layers (default: %(default)s)")
    ap.add_argument("--layers", type=int, default=2, help="(default: %(default)s)")
    ap.add_argument("--bits", type=float, default=8.0, help="bits per entry (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or tmp
        os.makedirs(folder, exist_ok=True)
        src = os.path.join(folder, "model.safetensors")
        original = make_checkpoint(src, args.size, args.layers, args.seed)

        out = os.path.join(folder, "model.sct")
        weights.compress(src, out, bits_per_entry=args.bits, seed=args.seed, progress=False)
        restored = os.path.join(folder, "restored.safetensors")
        weights.expand(out, restored, dtype="f32")

        side = out + ".passthrough.safetensors"
        stored = os.path.getsize(out) + (os.path.getsize(side) if os.path.exists(side) else 0)
        print(f"{src}: {os.path.getsize(src) / 2**20:.1f} MiB; {out} and its side file: "
              f"{stored / 2**20:.2f} MiB\n")
        print(f"| tensor | shape | kind | signcut error ({args.bits:g} bits) "
              "| int8 per row error (8 bits + a scale) |")
        print("|---|---|---|---:|---:|")
        records = {t["name"]: t for t in weights.info(out)["tensors"]}
        for name, a in original.items():
            back = weights.read_tensor(restored, name)
            err = float(np.linalg.norm(back - a) / np.linalg.norm(a))
            kind = records[name]["kind"]
            int8 = f"{int8_rows_error(a):.2%}" if a.ndim == 2 else "-"
            print(f"| {name} | {'x'.join(map(str, a.shape))} | {kind} | {err:.2%} | {int8} |")

        # The compressed matrices are SignCut objects: use them without expanding.
        name = "layers.0.mlp.weight"
        W = signcut.load(out)[records[name]["key"]]
        x = np.random.default_rng(args.seed).standard_normal(W.shape[1], dtype=np.float32)
        dense = original[name] @ x
        print(f"\n{name}: {W}\nW @ x from the signs differs from the original's product by "
              f"{np.linalg.norm(W @ x - dense) / np.linalg.norm(dense):.2%}")


if __name__ == "__main__":
    main()

"""Coverage-guided fuzzing of ``signcut.load`` with atheris (libFuzzer for Python).

Every input is written to a file and loaded. A ``signcut.FormatError`` is the expected answer
to a bad file; any other exception, a crash, or a load that allocates more than the bound of
tests/test_format.py (64 KiB + 40x the file size; checked with tracemalloc when
``SIGNCUT_FUZZ_TRACE=1``, which is slower) is reported by libFuzzer with the input that caused
it. A file that loads must be a consistent decomposition.

atheris is not a dependency of signcut (``pip install atheris``; it has wheels for Linux
x86-64 and CPython up to 3.11/3.12). Run from the repository root, after an in-place build or
an install:

    python fuzz/fuzz_load.py --seeds fuzz/corpus            # write valid seed files, once
    python fuzz/fuzz_load.py fuzz/corpus -runs=100000       # fuzz from them
    python fuzz/fuzz_load.py fuzz/corpus -max_total_time=600 -max_len=4096
    python fuzz/fuzz_load.py crash-<hash>                   # replay one input

Arguments after the script name are libFuzzer's (``-help=1`` lists them).
"""
import os
import sys
import tempfile
import tracemalloc

import atheris
import numpy as np  # noqa: F401 - imported first so that only signcut is instrumented

# A checkout with an in-place build works too; an installed signcut comes first.
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
with atheris.instrument_imports():
    import signcut
    from signcut import FormatError, SignCut

TRACE = os.environ.get("SIGNCUT_FUZZ_TRACE") == "1"
PATH = os.path.join(tempfile.mkdtemp(prefix="signcut-fuzz-"), "input.safetensors")


def load_bound(size):
    """Most bytes a load may allocate for a file of ``size`` bytes (see tests/test_format.py)."""
    return 64 * 1024 + 40 * size


def check(out):
    """A successful load is a SignCut, or a dict of them, consistent with its shape."""
    items = out.values() if isinstance(out, dict) else [out]
    for item in items:
        if not isinstance(item, SignCut):
            raise AssertionError(f"load returned {type(item).__name__}")
        w = item.width
        if item.coef.shape != (w,) or item.errors.shape != (w,):
            raise AssertionError("coef/errors do not match the width")
        for bits, d in zip(item.signs, item.tensor_shape, strict=True):
            if bits.shape != (w, -(-d // 64)):
                raise AssertionError(f"signs of shape {bits.shape} for a mode of size {d}")
        repr(item)


def test_one_input(data):
    with open(PATH, "wb") as f:
        f.write(data)
    if TRACE:
        tracemalloc.start()
    try:
        out = signcut.load(PATH)
    except FormatError:
        return
    finally:
        if TRACE:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if peak > load_bound(len(data)):
                raise AssertionError(f"load allocated {peak} bytes for {len(data)} bytes")
    check(out)


def write_seeds(folder):
    """Write a few small valid files (orders 1 to 4, a mapping, history, tensorized)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)

    def gauss(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    seeds = {
        "matrix": (signcut.decompose(gauss(7, 9), width=5, seed=0), False),
        "mapping": ({"m": signcut.decompose(gauss(5, 3), width=3, seed=0),
                     "t": signcut.decompose(gauss(9, 2, 7), width=2, seed=0)}, True),
        "order4": (signcut.decompose(gauss(2, 3, 4, 5), width=3, seed=0), False),
        "vector": (signcut.decompose(gauss(70), width=2, seed=0), True),
        "tensorized": (signcut.decompose(gauss(8, 16), width=4, seed=0, shape=(4, 2, 4, 4),
                                         axes=(0, 2, 1, 3)), False),
        "empty": (signcut.decompose(np.zeros((3, 4)), width=1), False),
    }
    for name, (obj, history) in seeds.items():
        signcut.save(os.path.join(folder, f"{name}.safetensors"), obj, history=history)
    print(f"wrote {len(seeds)} seed files to {folder}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--seeds":
        return write_seeds(sys.argv[2])
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""signcut: signed cut decompositions of matrices and tensors into 1-bit pieces.

    >>> import numpy as np, signcut
    >>> A = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)
    >>> result = signcut.decompose(A, bits_per_entry=8, seed=0)
    >>> approx = np.asarray(result)          # float32, same shape as A
"""
import os

# libgomp threads spin between parallel regions before they sleep. The engine runs many short
# regions, so a short spin keeps them cheap; the default (about a millisecond) makes every
# region crawl when the cores are shared with other busy processes or threads. Read once, when
# the extension loads libgomp; a value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from signcut import _core  # noqa: E402
from signcut._api import auto_outlier_fraction, decompose  # noqa: E402
from signcut._result import Outliers, SignCut  # noqa: E402
from signcut._format import FormatError, load, read_metadata, save  # noqa: E402
from signcut._dispatch import (ExpansionError, ExpansionWarning, get_options,  # noqa: E402
                               options, set_options)

__version__ = "0.1.0"
__all__ = ["decompose", "auto_outlier_fraction", "SignCut", "Outliers", "save", "load", "read_metadata", "FormatError", "cpu_info",
           "set_options", "get_options", "options", "ExpansionWarning", "ExpansionError"]


def __getattr__(name):
    # signcut.image (pictures: compress, decode) is imported on first use: it needs Pillow.
    if name == "image":
        import importlib
        return importlib.import_module("signcut.image")
    raise AttributeError(f"module 'signcut' has no attribute {name!r}")


def cpu_info():
    """What the CPU offers and which kernels signcut uses.

    Returns a dict: ``features`` (instruction-set extensions found), ``supported`` (kernel
    tables this CPU can run), ``best`` (the one picked by default), ``active`` (the one in
    use; ``SIGNCUT_CPU=scalar|avx2|avx512`` overrides it at import), ``openmp`` and
    ``default_threads``.
    """
    return _core.cpu_info()

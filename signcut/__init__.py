"""signcut: signed cut decompositions of matrices and tensors into 1-bit pieces.

    >>> import numpy as np, signcut
    >>> A = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)
    >>> result = signcut.decompose(A, bits_per_entry=8, seed=0)
    >>> approx = np.asarray(result)          # float32, same shape as A
"""
import os

# libgomp threads spin between parallel regions before they sleep. The engine runs many short
# regions, so a short spin keeps them cheap; the default (about a millisecond) makes every
# region crawl when the cores are shared with other busy processes or threads. libgomp reads
# it once, when the extension loads it: it is set for that moment only (the process's other
# code and its children do not see it), and a value set by the user wins.
_SPIN = "GOMP_SPINCOUNT" not in os.environ
if _SPIN:
    os.environ["GOMP_SPINCOUNT"] = "10000"
try:
    from signcut import _core  # noqa: E402
except ImportError as exc:
    import importlib.machinery
    _here = os.path.dirname(os.path.abspath(__file__))
    if any(os.path.exists(os.path.join(_here, "_core" + suffix))
           for suffix in importlib.machinery.EXTENSION_SUFFIXES):
        raise                       # built, but broken: the original error says why
    raise ImportError(
        f"signcut is imported from {_here}, a source folder whose compiled core "
        "(signcut/_core) is not built: run Python from another folder so that the installed "
        "signcut is imported (`pytest` rather than `python -m pytest`), or build the "
        "checkout in place with `python setup.py build_ext --inplace`") from exc
finally:
    if _SPIN:
        del os.environ["GOMP_SPINCOUNT"]
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

"""Input validation shared by the public entry points: one place, clear messages."""
import numbers
import operator
import os

import numpy as np

from signcut import _core

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT32_TINY = float(np.finfo(np.float32).tiny)
_LARGEST = 2.0 ** 126           # a quarter of float32's range: cut sums must not overflow


def as_real_array(A, name="A"):
    """A as a NumPy array of a real numeric dtype, with finite values that fit float32.

    Raises TypeError for complex, object, string and other non-numeric dtypes and
    ValueError for empty arrays, NaN, Inf, values above 2**126 (a quarter of float32's range,
    so that sums of cuts cannot overflow) and arrays whose largest value is below float32's
    normal range (their coefficients would underflow)."""
    if isinstance(A, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got {type(A).__name__}")
    if isinstance(A, np.ma.MaskedArray) and np.ma.getmaskarray(A).any():
        raise TypeError(f"{name} is a masked array with {int(np.ma.getmaskarray(A).sum())} masked "
                        "entries; signcut has no missing values: fill them first "
                        "(A.filled(value)) or decompose A.data")
    if type(A).__module__.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a {type(A).__name__} (scipy.sparse); this takes dense "
                        "arrays: signcut.decompose takes sparse matrices and LinearOperators "
                        "as they are, or densify it first (.toarray())")
    try:
        arr = np.asarray(A)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} cannot be converted to a numeric array: {exc}") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {arr.dtype}; signcut decomposes real arrays "
                        "(decompose the real and imaginary parts separately)")
    if kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected a real numeric dtype "
                        "(bool, integer or floating)")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); nothing to decompose")
    if kind == "f":
        # NaN and Inf show in the min and max: no temporary the size of arr (which would come
        # before the memory check), except on the error path, to name the first bad entry.
        big = max_abs(arr)
        if not np.isfinite(big):
            bad = np.argwhere(~np.isfinite(arr))
            first = tuple(int(i) for i in bad[0])
            value = arr[first]
            raise ValueError(f"{name} contains {len(bad)} non-finite value(s) (NaN or Inf); "
                             f"the first is {value!r} at index {first}")
        if big > _LARGEST:
            raise ValueError(f"{name} has values up to {_sci(big)}, beyond what signcut takes "
                             f"({_LARGEST:.3g}: float32's range with room for the sums of cuts, "
                             "which compute in float32): rescale first")
        if 0 < big < _FLOAT32_TINY:
            raise ValueError(f"{name} has values of at most {_sci(big)}, below float32's normal "
                             f"range (from {_FLOAT32_TINY:.3g}): the coefficients of its cuts "
                             "could not be stored in float32; rescale first")
    return arr


def _sci(x):
    """A float scalar of any precision in scientific notation, 3 digits."""
    return np.format_float_scientific(x, precision=2, trim="-")


def max_abs(arr):
    """max |arr| without a temporary copy of the array: a float, or for floating arrays wider
    than float64 a scalar of their own dtype (a longdouble keeps values beyond float64's
    range)."""
    hi, lo = arr.max(), arr.min()
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        return max(abs(hi), abs(lo))
    return float(max(abs(float(hi)), abs(float(lo))))


def optional_int(value, name, minimum=0):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got a bool")
    if not isinstance(value, numbers.Integral):
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


MAX_THREADS = 4096     # a thread request above this is a mistake, not a machine


def thread_count(n_threads, name="n_threads"):
    """A thread count for the engine: None or -1 mean all the default threads (OpenMP's,
    ``OMP_NUM_THREADS`` where set); otherwise an integer in [1, MAX_THREADS]. The engine
    runs at most as many threads as the process has cores (``sc_clamp_threads``), so a
    larger request is not an error up to MAX_THREADS; under an address-space limit it runs
    no more than the thread stacks that fit."""
    if n_threads is None or (not isinstance(n_threads, (bool, np.bool_))
                             and isinstance(n_threads, numbers.Integral) and int(n_threads) == -1):
        return _stacks_fit(_core.default_threads())
    value = optional_int(n_threads, name, minimum=1)
    if value > MAX_THREADS:
        raise ValueError(f"{name}={value} is more threads than signcut runs (at most "
                         f"{MAX_THREADS}; the engine uses at most one per core, "
                         f"{_core.default_threads()} by default here)")
    return _stacks_fit(value)


def _stacks_fit(n_threads):
    """n_threads, or fewer when their stacks would not fit in the address space left: the
    OpenMP runtime ends the process when it cannot start a thread (results do not depend on
    the thread count)."""
    space = address_space_left()
    if space is None or n_threads <= 1:
        return n_threads
    import resource
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if stack == resource.RLIM_INFINITY or stack <= 0:
        stack = 8 << 20
    stack = max(stack, _omp_stacksize() or 0) + (1 << 20)       # and a guard, some slack
    room = (space - (64 << 20)) // stack        # leave the engine's own buffers some room
    return int(max(1, min(n_threads, 1 + room)))


def _omp_stacksize():
    """OMP_STACKSIZE (or GOMP_STACKSIZE) in bytes, None if unset or unreadable."""
    text = os.environ.get("OMP_STACKSIZE") or os.environ.get("GOMP_STACKSIZE")
    if not text:
        return None
    text = text.strip().upper()
    unit = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], None)
    try:
        return int(text[:-1]) * unit if unit else int(text) << 10
    except ValueError:
        return None


def optional_float(value, name, *, positive=True, allow_zero=False):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and (value < 0 or (value == 0 and not allow_zero)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def _proc_kib(path, key):
    """A "Key: N kB" line of a /proc file, in bytes (None if absent)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def address_space_left():
    """Bytes of address space this process may still map under its RLIMIT_AS (ulimit -v,
    prlimit --as), or None without such a limit."""
    try:
        import resource
        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError):
        return None
    if limit == resource.RLIM_INFINITY:
        return None
    used = _proc_kib("/proc/self/status", "VmSize")
    return None if used is None else max(0, limit - used)


def available_memory():
    """Bytes of memory this process can still get: the system's (MemAvailable on Linux), and
    no more than the address space its limit leaves; None if unknown."""
    avail = _proc_kib("/proc/meminfo", "MemAvailable")
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            avail = None
    space = address_space_left()
    if space is not None:
        avail = space if avail is None else min(avail, space)
    return avail


def check_memory(need, what):
    """Refuse, before allocating, work that cannot fit in the memory left."""
    avail = available_memory()
    if avail is not None and need > avail:
        raise MemoryError(f"{what} needs about {need / 2**30:.2f} GiB of working memory but only "
                          f"{avail / 2**30:.2f} GiB are available")

"""A SignCut under NumPy's protocols: which operation stays compressed, which is computed
from the signs, and which goes through the dense array (guarded by the expansion setting).

``UFUNCS`` decides for ufuncs (``__array_ufunc__``, which the Python operators go through).
An entry returns ``DENSE`` for the operands it does not handle; those, and every ufunc not in
the table, run on the dense arrays: implicit expansions above ``expand_threshold`` bytes warn
(``ExpansionWarning``) or raise (``ExpansionError``), as :func:`set_options` says.
"""
import contextlib
import contextvars
import warnings

import numpy as np

from signcut._result import SignCut


# ------------------------------------------------------------------ the expansion setting
class ExpansionWarning(RuntimeWarning):
    """A SignCut was expanded to a dense array implicitly (a NumPy function or ufunc that has
    no compressed form, ``np.asarray``), and the dense array is larger than
    ``signcut.get_options()["expand_threshold"]`` bytes."""


class ExpansionError(RuntimeError):
    """An implicit expansion above the threshold while ``expand="error"`` is set."""


_DEFAULTS = {"expand": "warn", "expand_threshold": 1 << 27}
_MODES = ("allow", "warn", "error")
_context = contextvars.ContextVar("signcut_options", default=None)


def get_options():
    """The current settings: ``{"expand": "allow" | "warn" | "error", "expand_threshold":
    bytes}`` (see :func:`set_options`)."""
    return dict(_context.get() or _DEFAULTS)


def _checked(expand=None, expand_threshold=None):
    out = get_options()
    if expand is not None:
        if expand not in _MODES:
            raise ValueError(f"expand must be one of {', '.join(map(repr, _MODES))}, "
                             f"got {expand!r}")
        out["expand"] = expand
    if expand_threshold is not None:
        if isinstance(expand_threshold, bool) or not isinstance(expand_threshold, (int, np.integer)) \
                or expand_threshold < 0:
            raise ValueError(f"expand_threshold must be a number of bytes >= 0, got "
                             f"{expand_threshold!r}")
        out["expand_threshold"] = int(expand_threshold)
    return out


def set_options(*, expand=None, expand_threshold=None):
    """Set how implicit expansions of a SignCut behave; returns the previous settings.

    An implicit expansion is one a NumPy function or ufunc without a compressed form makes
    (``np.exp(sc)``, ``np.asarray(sc)``, ``sc + ndarray``, indexing a tensorized SignCut;
    the README lists what stays compressed). ``SignCut.expand()`` is explicit: never guarded.

    expand : {"warn", "error", "allow"}
        "warn" (the default): an ``ExpansionWarning`` naming the bytes when the dense array is
        larger than ``expand_threshold``; "error": ``ExpansionError`` instead (set
        ``expand_threshold=0`` for code that must never expand); "allow": silent.
    expand_threshold : int
        Bytes of the dense array (4 per entry) above which the setting applies; default
        2**27 (128 MiB).

    The settings hold for this thread or task; :func:`options` sets them for a ``with``
    block.
    """
    previous = get_options()
    new = _checked(expand, expand_threshold)
    if _context.get() is None:
        _DEFAULTS.update(new)
    else:
        _context.set(new)
    return previous


@contextlib.contextmanager
def options(*, expand=None, expand_threshold=None):
    """``with signcut.options(expand="error"): ...``: :func:`set_options` for a block."""
    token = _context.set(_checked(expand, expand_threshold))
    try:
        yield
    finally:
        _context.reset(token)


def dense(sc, what=None):
    """``sc`` expanded for an operation without a compressed form, under the setting."""
    nbytes = 4 * sc.size
    opts = get_options()
    if opts["expand"] != "allow" and nbytes > opts["expand_threshold"]:
        message = (f"{what or 'this operation'} expands a SignCut of shape {sc.shape} to a "
                   f"dense array of {nbytes} bytes ({nbytes / 2**20:.1f} MiB); see "
                   f"signcut.set_options")
        if opts["expand"] == "error":
            raise ExpansionError(message)
        warnings.warn(message, ExpansionWarning, stacklevel=4)
    return sc.expand()


def densify(x, what):
    """``x`` with every SignCut in it (also in lists and tuples) expanded under the setting."""
    if isinstance(x, SignCut):
        return dense(x, what)
    if isinstance(x, (list, tuple)):
        return type(x)(densify(y, what) for y in x)
    return x


# ------------------------------------------------------------------ ufuncs
DENSE = object()     # an entry's answer for operands it does not handle


def _scalar(x):
    from signcut._algebra import real_scalar
    return None if isinstance(x, SignCut) else real_scalar(x, "operating on")


def _multiply(x, y):
    from signcut import _algebra
    if isinstance(x, SignCut) and isinstance(y, SignCut):
        return _algebra.multiply(x, y)
    sc, other = (x, y) if isinstance(x, SignCut) else (y, x)
    a = _scalar(other)
    return DENSE if a is None else _algebra.scale(sc, a)


def _divide(x, y):
    from signcut import _algebra
    a = _scalar(y)
    return _algebra.scale(x, a, divide=True) if isinstance(x, SignCut) and a is not None \
        else DENSE


def _add(x, y, subtract=False):
    from signcut import _algebra
    if isinstance(x, SignCut) and isinstance(y, SignCut):
        return _algebra.add(x, y, subtract)
    if isinstance(x, SignCut):
        a = _scalar(y)
        return DENSE if a is None else _algebra.add_scalar(x, -a if subtract else a)
    a = _scalar(x)
    if a is None:
        return DENSE
    return _algebra.add_scalar(_algebra.negate(y) if subtract else y, a)


def _power(x, p):
    from signcut import _algebra
    q = _scalar(p)
    if isinstance(x, SignCut) and q in (1.0, 2.0):
        return _algebra.multiply(x, x) if q == 2.0 else _algebra.derive(x, x.signs, x.coef,
                                                                         errors=x.errors,
                                                                         norm=x.norm)
    return DENSE


def _matmul(x, y):
    """Matrices: the C products. Other orders with a vector: a contraction (a SignCut, or a
    scalar for two vectors). The rest, SignCut @ SignCut included: dense."""
    from signcut import _algebra, _array
    if isinstance(x, SignCut) == isinstance(y, SignCut):
        return DENSE
    sc, other, left = (x, y, False) if isinstance(x, SignCut) else (y, x, True)
    if sc.tensorize:
        return DENSE
    if sc.ndim == 2:
        return _array.rmatmul(sc, other) if left else _array.matmul(sc, other)
    v = np.asarray(other)
    if v.ndim != 1 or v.dtype.kind not in "biuf":
        return DENSE
    return _algebra.contract(sc, (-2 if sc.ndim > 1 else 0) if left else -1, v)


def _negative(x):
    from signcut import _algebra
    return _algebra.negate(x)


def _positive(x):
    from signcut import _algebra
    return _algebra.derive(x, x.signs, x.coef, errors=x.errors, norm=x.norm)


UFUNCS = {
    np.multiply: _multiply,
    np.divide: _divide,
    np.add: _add,
    np.subtract: lambda x, y: _add(x, y, subtract=True),
    np.negative: _negative,
    np.positive: _positive,
    np.square: lambda x: _multiply(x, x),
    np.power: _power,
    np.matmul: _matmul,
}


def array_ufunc(ufunc, method, inputs, kwargs):
    """``SignCut.__array_ufunc__``: the table's answer, else the ufunc on dense arrays."""
    out = kwargs.get("out")
    if out is not None and any(isinstance(o, SignCut) for o in out):
        return NotImplemented                     # a SignCut cannot be written to
    if method == "__call__" and ufunc in UFUNCS and not set(kwargs) - {"out"}:
        result = UFUNCS[ufunc](*inputs)
        if result is not DENSE:
            if out is None:
                return result
            target = out[0]
            target[...] = result.expand() if isinstance(result, SignCut) else result
            return target
    dense_inputs = densify(inputs, f"np.{ufunc.__name__}")
    return getattr(ufunc, method)(*dense_inputs, **kwargs)

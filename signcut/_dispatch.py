"""A SignCut under NumPy's protocols: the one table that decides, for each NumPy function and
ufunc, whether it returns a SignCut, a dense result computed from the signs, or goes through
the dense array; the setting that guards implicit expansions.

``TABLE`` maps NumPy callables (``__array_function__`` for functions, ``__array_ufunc__`` for
ufuncs and the Python operators) to an :class:`Entry`: its implementation and the cases the
README lists (``operations_table`` writes that table; a test checks that the README has it).
An implementation returns ``DENSE`` for operands it has no compressed form for; those, and
every callable not in the table, run on the dense arrays: implicit expansions above
``expand_threshold`` bytes warn (``ExpansionWarning``) or raise (``ExpansionError``), as
:func:`set_options` says. A few methods without a NumPy function (indexing, ``contract``,
``recompress``...) have rows too, for the README; their code lives on :class:`SignCut`.
"""
import contextlib
import contextvars
import operator
import os
import sys
import warnings

import numpy as np

from signcut import _algebra, _array
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
        if isinstance(expand_threshold, (bool, np.bool_)) \
                or not isinstance(expand_threshold, (int, np.integer)) or expand_threshold < 0:
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

    Inside a :func:`options` block the change lasts until the block ends.
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
    """``with signcut.options(expand="error"): ...``: :func:`set_options` for a block (of
    this thread or task)."""
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
        warnings.warn(message, ExpansionWarning, stacklevel=_caller_level())
    return sc.expand()


_INSIDE = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(np.__file__))


def _caller_level():
    """The ``stacklevel`` of the first frame outside signcut and NumPy (the code that asked:
    the operators come through NumPy's mixin)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INSIDE):
        frame, level = frame.f_back, level + 1
    return level


def densify(x, what):
    """``x`` with every SignCut in it (also in lists and tuples) expanded under the setting."""
    if isinstance(x, SignCut):
        return dense(x, what)
    if isinstance(x, (list, tuple)):
        return type(x)(densify(y, what) for y in x)
    return x


# ------------------------------------------------------------------ the table
SIGNCUT = "SignCut"
SIGNS = "dense, from the signs"
META = "no computation"
EXPANDS = "expands"
DENSE = object()     # an implementation's answer for operands it does not handle
_NV = np._NoValue


class Entry:
    """One row of the table: the implementation (None for methods documented only) and the
    cases ``(operands, result kind, cost)`` the README lists."""

    def __init__(self, name, impl, cases):
        self.name, self.impl, self.cases = name, impl, cases


TABLE = {}
ROWS = []           # the entries in the README's order


def rule(*keys, name, cases):
    """Register the decorated implementation for the NumPy callables ``keys``."""
    def register(impl):
        entry = Entry(name, impl, cases)
        ROWS.append(entry)
        for key in keys:
            TABLE[key] = entry
        return impl
    return register


def also(key, like, impl):
    """``key`` handled by ``impl`` under the row of ``like`` (one README row for both); a
    ``key`` given by name (``"linalg.matmul"``) is skipped where this NumPy lacks it."""
    if isinstance(key, str):
        key = _numpy_function(key)
        if key is None:
            return
    TABLE[key] = Entry(TABLE[like].name, impl, TABLE[like].cases)


def _numpy_function(name):
    """``np.<name>`` (a dotted name), or None: the array API aliases (``np.linalg.matmul``,
    ``np.astype``, ``np.matrix_transpose``...) came with NumPy 2.0, and the floor is 1.25."""
    obj = np
    for part in name.split("."):
        obj = getattr(obj, part, None)
    return obj


def method(name, cases):
    """A row for a method without a NumPy function (its code is on SignCut)."""
    ROWS.append(Entry(name, None, cases))


def _scalar(x):
    return None if isinstance(x, SignCut) else _algebra.real_scalar(x)


def _plain(sc):
    return isinstance(sc, SignCut) and not sc.tensorize


def _vector(v):
    """``v`` as a real 1-D array, or None."""
    if isinstance(v, SignCut):
        return None
    v = np.asarray(v)
    return v if v.ndim == 1 and v.dtype.kind in "biuf" else None


W = "`width`"
BITS = "the stored bits"

# ---- elementwise arithmetic (ufuncs; the operators call them)


@rule(np.multiply, name="`sc * x`, `x * sc`, `np.multiply`", cases=[
    ("x a real scalar", SIGNCUT, f"O({W}): coefficients scaled"),
    ("x a SignCut (broadcasting)", SIGNCUT,
     "`width * x.width` cuts, their signs XORed, their scales multiplied; refused before "
     "allocating if they do not fit"),
    ("x an array", EXPANDS, "")])
def _multiply(x, y):
    if isinstance(x, SignCut) and isinstance(y, SignCut):
        return _algebra.multiply(x, y)
    sc, other = (x, y) if isinstance(x, SignCut) else (y, x)
    a = _scalar(other)
    return DENSE if a is None else _algebra.scale(sc, a)


@rule(np.divide, name="`sc / x`, `np.divide`", cases=[
    ("x a real scalar", SIGNCUT, f"O({W})"), ("otherwise", EXPANDS, "")])
def _divide(x, y):
    a = _scalar(y)
    return _algebra.scale(x, a, divide=True) if isinstance(x, SignCut) and a is not None \
        else DENSE


@rule(np.add, name="`sc + x`, `sc - x`, `x - sc`, `np.add`, `np.subtract`", cases=[
    ("x a SignCut (broadcasting; one tensorization; equal scales)", SIGNCUT,
     "the cuts of both, concatenated; sparse parts merged"),
    ("x a real scalar, sc without scales", SIGNCUT,
     "one more cut, all signs +1: O(sum of dims / 64)"),
    ("x an array; x a SignCut with other scales; a scalar and scales", EXPANDS, "")])
def _add(x, y, subtract=False):
    try:
        if isinstance(x, SignCut) and isinstance(y, SignCut):
            return _algebra.add(x, y, subtract)
        if isinstance(x, SignCut):
            a = _scalar(y)
            return DENSE if a is None else _algebra.add_scalar(x, -a if subtract else a)
        a = _scalar(x)
        if a is None:
            return DENSE
        return _algebra.add_scalar(_algebra.negate(y) if subtract else y, a)
    except _algebra.NotClosed:
        return DENSE


also(np.subtract, np.add, lambda x, y: _add(x, y, subtract=True))


@rule(np.negative, name="`-sc`, `+sc`", cases=[("", SIGNCUT, f"O({W})")])
def _sign(x):
    return _algebra.negate(x)


also(np.positive, np.negative, lambda x: x.copy())


@rule(np.square, name="`sc ** 2`, `np.square`", cases=[
    ("exponent 1 or 2", SIGNCUT, "`sc * sc`: `width**2` cuts"), ("other exponents", EXPANDS, "")])
def _power(x, p=2):
    q = _scalar(p)
    if isinstance(x, SignCut) and q in (1.0, 2.0):
        return _algebra.multiply(x, x) if q == 2.0 else x.copy()
    return DENSE


also(np.power, np.square, _power)

# ---- products


@rule(np.matmul, name="`sc @ x`, `x @ sc`, `np.matmul`", cases=[
    ("sc a matrix, x an array", SIGNS,
     "C lookup-table products: about `width * (m + n) * columns / 4` table reads"),
    ("sc of another order, x a vector", SIGNCUT, f"a contraction: {W} x len(x)"),
    ("x a SignCut, or sc tensorized", EXPANDS, "")])
def _matmul(x, y):
    if isinstance(x, SignCut) == isinstance(y, SignCut):
        return DENSE
    sc, other, left = (x, y, False) if isinstance(x, SignCut) else (y, x, True)
    if sc.tensorize:
        return DENSE
    if sc.ndim == 2:
        return _array.rmatmul(sc, other) if left else _array.matmul(sc, other)
    v = _vector(other)
    if v is None:
        return DENSE
    return _algebra.contract(sc, (-2 if sc.ndim > 1 else 0) if left else -1, v)


also("linalg.matmul", np.matmul, _matmul)


@rule(np.dot, name="`np.dot`", cases=[
    ("a matrix with a vector or matrix", SIGNS, "as `@`"),
    ("another order with a vector", SIGNCUT, "a contraction"),
    ("two vectors (SignCuts or not)", SIGNS, "as `np.vdot`"), ("otherwise", EXPANDS, "")])
def _dot(a, b, out=None):
    if out is not None:
        return DENSE
    if isinstance(a, SignCut) and isinstance(b, SignCut):
        return _vdot(a, b) if a.ndim == b.ndim == 1 else DENSE
    sc, other = (a, b) if isinstance(a, SignCut) else (b, a)
    if np.ndim(other) == 0 or (sc is a and sc.ndim == 2 and np.ndim(other) > 2):
        return DENSE            # (np.dot and np.matmul differ there)
    if sc.ndim == 2 or np.ndim(other) == 1:
        return _matmul(a, b)
    return DENSE


@rule(np.vdot, name="`np.vdot`, `sc.vdot(x)`", cases=[
    ("x a SignCut of the same shape and tensorization", SIGNS,
     "popcounts: `width * x.width * sum(dims) / 64` word operations, tiles of 128 x 128 cuts; "
     "modes with scales: float64 matrix products, `2 width * x.width * d` flops each"),
    ("x an array of the same size", SIGNS, "`2 width size` flops, a block of cuts at a time"),
    ("otherwise", EXPANDS, "")])
def _vdot(a, b):
    if isinstance(a, SignCut) and isinstance(b, SignCut):
        if a.shape != b.shape or a.tensorize != b.tensorize or a.tensor_shape != b.tensor_shape:
            return DENSE
        return np.float32(_algebra.inner(a, b))
    sc, other = (a, b) if isinstance(a, SignCut) else (b, a)
    other = np.asarray(other)
    if other.size != sc.size or other.dtype.kind not in "biuf":
        return DENSE
    return np.result_type(np.float32, other.dtype).type(_algebra.inner_dense(sc, other))


@rule(np.inner, name="`np.inner`", cases=[
    ("two vectors", SIGNS, "as `np.vdot`"),
    ("a vector with another order", SIGNCUT, "a contraction of the last axis"),
    ("otherwise", EXPANDS, "")])
def _inner(a, b):
    if np.ndim(a) == 1 and np.ndim(b) == 1:
        return _vdot(a, b)
    sc, other = (a, b) if isinstance(a, SignCut) else (b, a)
    v = _vector(other)
    if not _plain(sc) or v is None:
        return DENSE
    return _algebra.contract(sc, -1, v)


def _tensordot_axes(axes, ndim_a, ndim_b):
    """NumPy's ``axes`` argument -> (axes of a, axes of b)."""
    try:
        n = operator.index(axes)
        return list(range(ndim_a - n, ndim_a)), list(range(n))
    except TypeError:
        a_axes, b_axes = axes
        a_axes = [a_axes] if np.ndim(a_axes) == 0 else list(a_axes)
        b_axes = [b_axes] if np.ndim(b_axes) == 0 else list(b_axes)
        return [operator.index(x) % max(ndim_a, 1) for x in a_axes], \
            [operator.index(x) % max(ndim_b, 1) for x in b_axes]


@rule(np.tensordot, name="`np.tensordot`, `sc.contract(axis, v)`", cases=[
    ("one axis with a vector", SIGNCUT, f"coefficients times `<s_j, v>`: {W} x len(v)"),
    ("two SignCuts over all their axes", SIGNS, "as `np.vdot`"), ("otherwise", EXPANDS, "")])
def _tensordot(a, b, axes=2):
    ndim_a, ndim_b = np.ndim(a), np.ndim(b)
    try:
        a_axes, b_axes = _tensordot_axes(axes, ndim_a, ndim_b)
    except (TypeError, ValueError):
        return DENSE
    if isinstance(a, SignCut) and isinstance(b, SignCut):
        if a_axes == list(range(ndim_a)) and b_axes == list(range(ndim_b)):
            out = _vdot(a, b)
            return out if out is DENSE else np.asarray(out)
        return DENSE
    sc, other, mine, theirs = (a, b, a_axes, b_axes) if isinstance(a, SignCut) \
        else (b, a, b_axes, a_axes)
    v = _vector(other)
    if v is None or len(mine) != 1 or theirs != [0] or not _plain(sc):
        return DENSE
    out = _algebra.contract(sc, mine[0], v)       # the vector has no free axis: sc's in order
    return out if isinstance(out, SignCut) else np.asarray(out)


also("linalg.tensordot", np.tensordot, lambda x1, x2, *, axes=2: _tensordot(x1, x2, axes))


# ---- reductions and numbers


def _reduce(a, axis, dtype, out, keepdims, where, mean):
    if out is not None or where is not _NV or not isinstance(a, SignCut):
        return DENSE
    res = _array.reduce_sum(a, axis, False if keepdims is _NV else keepdims, mean=mean)
    return res if dtype is None else np.asarray(res).astype(dtype)[()]


@rule(np.sum, name="`np.sum`, `sc.sum`", cases=[
    ("over all axes", SIGNS, f"popcounts: {W} x sum(dims) / 64"),
    ("over some axes", SIGNS, f"{W} x (size of the answer + dims)"),
    ("tensorized, over some axes", EXPANDS, "")])
def _sum(a, axis=None, dtype=None, out=None, keepdims=_NV, initial=_NV, where=_NV):
    if initial is not _NV:
        return DENSE
    return _reduce(a, axis, dtype, out, keepdims, where, mean=False)


@rule(np.mean, name="`np.mean`, `sc.mean`", cases=[("as `np.sum`", SIGNS, "as `np.sum`")])
def _mean(a, axis=None, dtype=None, out=None, keepdims=_NV, *, where=_NV):
    return _reduce(a, axis, dtype, out, keepdims, where, mean=True)


def _moments(a, axis, dtype, out, ddof, keepdims, where, mean, correction, root):
    if not isinstance(a, SignCut) or axis is not None or out is not None or where is not _NV \
            or mean is not _NV or dtype is not None or (keepdims is not _NV and keepdims):
        return DENSE
    if correction is not _NV:
        ddof = correction
    n = a.size
    mu = _array.total(a) / n
    var = max(_algebra.inner(a, a) / n - mu * mu, 0.0) * n / (n - ddof) if n > ddof else np.nan
    return np.float32(np.sqrt(var) if root else var)


@rule(np.var, np.std, name="`np.var`, `np.std`", cases=[
    ("over all axes", SIGNS, "`(vdot(sc, sc) - size mean^2) / (size - ddof)`: as `np.vdot`"),
    ("over some axes", EXPANDS, "")])
def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NV, *, where=_NV, mean=_NV,
         correction=_NV):
    return _moments(a, axis, dtype, out, ddof, keepdims, where, mean, correction, root=False)


also(np.std, np.var, lambda a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NV, *,
     where=_NV, mean=_NV, correction=_NV:
     _moments(a, axis, dtype, out, ddof, keepdims, where, mean, correction, root=True))


@rule(np.linalg.norm, name="`np.linalg.norm`, `sc.frobenius_norm()`", cases=[
          ("Frobenius (the default; `vector_norm` with ord 2 over all axes)", SIGNS,
           "popcounts: `width**2 * sum(dims) / 128` word operations (with scales: as "
           "`np.vdot`)"),
          ("other orders or axes", EXPANDS, "")])
def _norm(x, ord=None, axis=None, keepdims=False):
    if not isinstance(x, SignCut) or axis not in (None, tuple(range(x.ndim))):
        return DENSE
    if not (ord is None or (ord == "fro" and x.ndim == 2) or (ord == 2 and x.ndim == 1)):
        return DENSE
    value = np.float32(_algebra.frobenius_norm(x))
    return np.full((1,) * x.ndim, value) if keepdims else value


def _vector_norm(x, axis=None, keepdims=False, ord=2):
    if not isinstance(x, SignCut) or ord != 2:
        return DENSE
    if axis is not None and sorted(int(a) % x.ndim for a in np.atleast_1d(axis)) \
            != list(range(x.ndim)):
        return DENSE
    return _norm(x, None, None, keepdims)


def _matrix_norm(x, keepdims=False, ord="fro"):
    if not isinstance(x, SignCut) or ord != "fro" or x.ndim != 2:
        return DENSE
    return _norm(x, None, None, keepdims)


also("linalg.vector_norm", np.linalg.norm, _vector_norm)
also("linalg.matrix_norm", np.linalg.norm, _matrix_norm)


@rule(np.trace, name="`np.trace`, `sc.trace()`", cases=[
    ("a matrix", SIGNS, f"the diagonal's XORed signs summed: {W} x d"),
    ("order k > 2", SIGNCUT, "order k - 2"), ("tensorized", EXPANDS, "")])
def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    if not _plain(a) or out is not None:
        return DENSE
    res = a.trace(offset, axis1, axis2)
    if dtype is not None:
        return np.asarray(res).astype(dtype)[()] if not isinstance(res, SignCut) else DENSE
    return res


def _linalg_trace(x, *, offset=0, dtype=None):
    return _trace(x, offset, -2, -1, dtype)


also("linalg.trace", np.trace, _linalg_trace)


@rule(np.diagonal, name="`np.diagonal`, `sc.diagonal()`", cases=[
    ("", SIGNCUT, f"the two axes' signs XORed on the diagonal: {W} x d / 64"),
    ("tensorized", EXPANDS, "")])
def _diagonal(a, offset=0, axis1=0, axis2=1):
    return a.diagonal(offset, axis1, axis2) if _plain(a) else DENSE


also("linalg.diagonal", np.diagonal, lambda x, *, offset=0: _diagonal(x, offset, -2, -1))

# ---- axes and shapes


@rule(np.transpose, name="`np.transpose` (`.T`, `.mT`), `np.swapaxes`, `np.moveaxis`", cases=[
          ("", SIGNCUT, "the modes permuted: O(number of modes)"), ("tensorized", EXPANDS, "")])
def _transpose(a, axes=None):
    if not _plain(a):
        return DENSE
    return a.transpose() if axes is None else a.transpose(axes)


def _swapaxes(a, axis1, axis2):
    if not _plain(a):
        return DENSE
    order = list(range(a.ndim))
    i, j = _algebra.axis_index(axis1, a.ndim), _algebra.axis_index(axis2, a.ndim)
    order[i], order[j] = order[j], order[i]
    return a.transpose(order)


def _moveaxis(a, source, destination):
    if not _plain(a):
        return DENSE
    src = [_algebra.axis_index(s, a.ndim) for s in np.atleast_1d(source)]
    dst = [_algebra.axis_index(d, a.ndim) for d in np.atleast_1d(destination)]
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number "
                         "of elements")
    order = [n for n in range(a.ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return a.transpose(order)


also(np.swapaxes, np.transpose, _swapaxes)
also(np.moveaxis, np.transpose, _moveaxis)
also("matrix_transpose", np.transpose, lambda x: x.mT if _plain(x) else DENSE)


@rule(np.reshape, name="`np.reshape` (`sc.reshape`), `np.ravel`, `np.squeeze`, `np.expand_dims`", cases=[
          ("C order", SIGNCUT, "a new tensorization record (axes of size 1: new or dropped "
                               "modes): O(1)"), ("`order='F'`", EXPANDS, "")])
def _reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if not isinstance(a, SignCut) or order not in ("C", "A") or copy is False:
        return DENSE
    return a.reshape(newshape if shape is None else shape)


def _ravel(a, order="C"):
    return _reshape(a, -1, order)


def _squeeze(a, axis=None):
    if not isinstance(a, SignCut):
        return DENSE
    axes = range(a.ndim) if axis is None else \
        [_algebra.axis_index(x, a.ndim) for x in np.atleast_1d(axis)]
    if axis is not None and any(a.shape[x] != 1 for x in axes):
        raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
    return a.reshape([d for i, d in enumerate(a.shape) if not (i in axes and d == 1)])


def _expand_dims(a, axis):
    if not isinstance(a, SignCut):
        return DENSE
    axes = np.atleast_1d(axis)
    ndim = a.ndim + len(axes)
    where = sorted(_algebra.axis_index(x, ndim) for x in axes)
    if len(set(where)) != len(where):
        raise ValueError("repeated axis")
    shape = list(a.shape)
    for w in where:
        shape.insert(w, 1)
    return a.reshape(shape)


also(np.ravel, np.reshape, _ravel)
also(np.squeeze, np.reshape, _squeeze)
also(np.expand_dims, np.reshape, _expand_dims)


@rule(np.broadcast_to, name="`np.broadcast_to`", cases=[
    ("", SIGNCUT, "a stretched mode is its one sign repeated: `width * d / 64` words")])
def _broadcast_to(array, shape, subok=False):
    return _algebra.broadcast(array, shape) if isinstance(array, SignCut) else DENSE


@rule(np.copy, name="`np.copy` (`sc.copy()`), `np.astype` (`sc.astype`)", cases=[
    ("copy, or astype float32", SIGNCUT, BITS), ("astype another dtype", EXPANDS, "")])
def _copy(a, order="K", subok=False):
    return a.copy() if isinstance(a, SignCut) else DENSE


also("astype", np.copy, lambda x, dtype, *, copy=True, device=None: x.astype(dtype, copy=copy))

# ---- what needs no computation


@rule(np.shape, name="`np.shape`, `np.ndim`, `np.size`, `np.result_type`, `np.iscomplexobj`, "
           "`np.isrealobj`", cases=[("", META, "")])
def _shape(a):
    return a.shape


also(np.ndim, np.shape, lambda a: a.ndim)
also(np.size, np.shape, lambda a, axis=None: a.size if axis is None else a.shape[axis])
also(np.result_type, np.shape,
     lambda *xs: np.result_type(*[x.dtype if isinstance(x, SignCut) else x for x in xs]))
also(np.iscomplexobj, np.shape, lambda x: False)
also(np.isrealobj, np.shape, lambda x: True)


@rule(np.may_share_memory, name="`np.may_share_memory`, `np.shares_memory`",
      cases=[("", META, "compares the stored arrays")])
def _share(a, b, max_work=None):
    return any(np.may_share_memory(p, q) for p in _stored(a) for q in _stored(b))


def _stored(x):
    """The arrays a SignCut holds (an array: itself)."""
    if not isinstance(x, SignCut):
        return [np.asarray(x)]
    out = list(x.signs) + [x.coef, x.errors] + [v for v in x.scales if v is not None]
    if x.outliers is not None:
        out += [x.outliers.index, x.outliers.values]
    return out


also(np.shares_memory, np.may_share_memory,
     lambda a, b, max_work=None: any(np.shares_memory(p, q) for p in _stored(a)
                                     for q in _stored(b)))


@rule(np.zeros_like, name="`np.zeros_like`, `np.ones_like`, `np.empty_like`, `np.full_like`", cases=[
          ("", META, "a new array of the shape; the SignCut is not read")])
def _like(a, dtype=None, order="K", subok=True, shape=None, *, device=None, fill=0.0):
    return np.full(a.shape if shape is None else shape, fill, dtype or a.dtype)


also(np.ones_like, np.zeros_like, lambda a, dtype=None, order="K", subok=True, shape=None, *,
     device=None: _like(a, dtype, shape=shape, fill=1.0))
also(np.empty_like, np.zeros_like, lambda a, dtype=None, order="K", subok=True, shape=None, *,
     device=None: _like(a, dtype, shape=shape))
also(np.full_like, np.zeros_like, lambda a, fill_value, dtype=None, order="K", subok=True,
     shape=None, *, device=None: _like(a, dtype, shape=shape, fill=fill_value))

# ---- methods (rows for the README; the code is on SignCut)

method("`sc[key]`: integers, slices with steps, `...`, `None`", [
    ("", SIGNCUT, f"the selected entries of each mode's signs: {W} x (selected entries) bits; "
                  "one entry: a scalar")])
method("`sc[key]`: integer arrays, boolean arrays, boolean scalars", [
    ("", SIGNS, f"{W} x (answer size + selected entries), a block of cuts at a time"),
    ("tensorized (any key)", EXPANDS, "")])
method("`sc.recompress(width=, bits_per_entry=, rtol=, ...)`", [
    ("when the expansion fits", EXPANDS, "decomposes the expansion again (after the memory "
                                         "check decompose applies)"),
    ("matrices that do not fit", SIGNS, "decomposes `aslinearoperator()`: a product per half "
                                        "step, nothing expanded")])
method("`sc.aslinearoperator()`, `scipy.sparse.linalg.aslinearoperator(sc)`", [
    ("matrices", SIGNS, "a LinearOperator whose matvec, rmatvec, matmat, rmatmat are the C "
                        "products")])
method("`sc.to_cp()`", [("", SIGNS, "TensorLy's CP `(weights, factors)`: factors of +-1, "
                                    "`width * sum(dims)` floats")])
method("`sc.outliers.to_sparse()`", [("", SIGNS, "a `scipy.sparse.coo_array` of the sparse "
                                                 "part")])
method("`np.asarray(sc)`, `sc.expand()`, any other NumPy function or ufunc", [
    ("", EXPANDS, "`4 size` bytes: warns (or raises) above the threshold, except `expand()`")])


def operations_table():
    """The README's table of operations, in Markdown."""
    lines = ["| operation | operands | result | cost |", "|---|---|---|---|"]
    for entry in ROWS:
        for i, (operands, kind, cost) in enumerate(entry.cases):
            name = entry.name if i == 0 else ""
            lines.append(f"| {name} | {operands or '-'} | {kind} | {cost or '-'} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the protocols
def array_function(func, types, args, kwargs):
    """``SignCut.__array_function__``: the table's answer, else ``func`` on dense arrays."""
    if not all(issubclass(t, (SignCut, np.ndarray)) for t in types):
        return NotImplemented
    entry = TABLE.get(func)
    if entry is not None and entry.impl is not None:
        result = entry.impl(*args, **kwargs)
        if result is not DENSE:
            return result
    name = f"np.{getattr(func, '__name__', func)}"
    return func(*densify(args, name), **{k: densify(v, name) for k, v in kwargs.items()})


def array_ufunc(ufunc, method_name, inputs, kwargs):
    """``SignCut.__array_ufunc__``: the table's answer, else the ufunc on dense arrays."""
    out = kwargs.get("out")
    if out is not None and any(isinstance(o, SignCut) for o in out):
        return NotImplemented                     # a SignCut cannot be written to
    entry = TABLE.get(ufunc)
    if method_name == "reduce" and ufunc is np.add and len(inputs) == 1 \
            and not set(kwargs) - {"axis", "dtype", "keepdims"}:
        entry, kwargs = TABLE[np.sum], dict(kwargs, axis=kwargs.get("axis", 0))
        result = entry.impl(*inputs, **kwargs)
        if result is not DENSE:
            return result
    elif method_name == "__call__" and entry is not None and not set(kwargs) - {"out"}:
        result = entry.impl(*inputs)
        if result is not DENSE:
            if out is None:
                return result
            out[0][...] = result.expand() if isinstance(result, SignCut) else result
            return out[0]
    dense_inputs = densify(inputs, f"np.{ufunc.__name__}")
    return getattr(ufunc, method_name)(*dense_inputs, **kwargs)

"""Array behaviour of a SignCut without expanding it: axes, sums and products.

The functions read the packed signs directly (``signs[a]`` of shape ``(width, ceil(d / 64))``,
bit ``i`` of word ``q`` is entry ``64 q + i``, a set bit means -1) and unpack only the entries
they need, a block of cuts at a time, so memory stays near the size of the answer.
"""
import operator
import time
from math import prod

import numpy as np

from signcut import _core
from signcut._indexing import BLOCK_ELEMENTS, contract_rows, entries
from signcut._validate import thread_count

AxisError = np.exceptions.AxisError


def sign_lanes(bits, d):
    """Packed rows ``(rows, ceil(d / 64))`` uint64 -> the lane layout the C products read:
    ``(ceil(rows / 8), ceil(d / 32), 8)`` uint32, where ``[b, k, i]`` is 32-bit word ``k`` of row
    ``8 b + i`` (rows past the end zero). Same size as the packed rows, up to padding."""
    return _core.bits_lanes(np.ascontiguousarray(bits, dtype=np.uint64), d)


def popcounts(bits):
    """Number of set bits (entries -1) in each packed row, as int64."""
    if hasattr(np, "bitwise_count"):                      # NumPy >= 2.0
        return np.bitwise_count(bits).sum(axis=1, dtype=np.int64)
    rows, nwords = bits.shape         # (explicit: reshape cannot infer a length for 0 rows)
    as_bytes = np.ascontiguousarray(bits, dtype="<u8").view(np.uint8).reshape(rows, 8 * nwords)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1, dtype=np.int64)


# ------------------------------------------------------------------ axes
def normalize_axes(axis, ndim, what="axis"):
    """``axis`` (None, an int or a tuple of ints, negatives allowed) -> tuple of axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = []
    for a in (axis if isinstance(axis, tuple) else (axis,)):
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise AxisError(a, ndim)
        axes.append(a % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError("repeated axis in transpose" if what == "transpose"
                         else "duplicate value in 'axis'")
    return tuple(axes)


def transpose_axes(axes, ndim):
    """The permutation for ``transpose(*axes)``: no argument, None, one sequence or ints."""
    if not axes or (len(axes) == 1 and axes[0] is None):
        return tuple(range(ndim))[::-1]
    if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
        axes = axes[0]
    axes = tuple(axes)
    if len(axes) != ndim:
        raise ValueError("axes don't match array")
    return normalize_axes(axes, ndim, "transpose")


def mode_sums(sc, a):
    """The sum of each cut's signs of mode ``a`` (float64): ``d - 2 popcount``, or with
    scales ``<s_j, scales>`` (by the kernels, rounded to float32)."""
    if sc.scales[a] is None:
        return (sc.tensor_shape[a] - 2 * popcounts(sc.signs[a])).astype(np.float64)
    return _core.sign_rows_dot(sc.signs[a], sc.scales[a].astype(np.float32)).astype(np.float64)


def _mode_sums(sc, modes):
    """Each cut's coefficient times the sums of its signs over ``modes`` (float64)."""
    weights = sc.coef.astype(np.float64)
    for a in modes:
        weights = weights * mode_sums(sc, a)
    return weights


def total(sc):
    """The sum of every entry, in float64, from popcounts (any tensorization)."""
    extra = sc.outliers.dense_values(np.float64).sum() if sc.outliers is not None else 0.0
    return float(_mode_sums(sc, range(len(sc.tensor_shape))).sum() + extra)


def reduce_sum(sc, axis=None, keepdims=False, mean=False):
    """Sum (or mean) over ``axis`` from the signs: a sign vector sums to ``d - 2 popcount``,
    so the reduced modes only scale each cut's coefficient; the kept modes are contracted.
    A tensorized SignCut sums over every axis the same way (its modes are not the user's
    axes); over some of them it goes through the dense array."""
    axes = normalize_axes(axis, sc.ndim)
    if sc.tensorize and len(axes) < sc.ndim:
        from signcut._dispatch import dense
        out = dense(sc, "summing a tensorized SignCut over some axes").astype(np.float64)
        out = out.mean(axis=axes, keepdims=keepdims) if mean else out.sum(axis=axes,
                                                                          keepdims=keepdims)
        return out.astype(np.float32)
    if len(axes) == sc.ndim:
        value = np.float32(total(sc) / (sc.size if mean else 1))
        return np.full((1,) * sc.ndim, value) if keepdims else value
    weights = _mode_sums(sc, axes)
    if mean:
        weights = weights / prod(sc.shape[a] for a in axes)
    keep = [a for a in range(sc.ndim) if a not in axes]
    sparse = sc.outliers is not None and len(sc.outliers)
    if sparse:
        values = sc.outliers.dense_values(np.float64)
        if mean:
            values = values / prod(sc.shape[a] for a in axes)
    out = contract_rows(sc.width, weights,
                        lambda i, blk: entries(sc, keep[i], blk, np.arange(sc.shape[keep[i]]),
                                               np.float64),
                        [sc.shape[a] for a in keep], np.float64)
    if sparse:          # each outlier adds to the entry of its kept coordinates
        multi = np.unravel_index(sc.outliers.index, sc.shape)
        kept = np.ravel_multi_index([multi[a] for a in keep], out.shape)
        out += np.bincount(kept, weights=values, minlength=out.size).reshape(out.shape)
    out = out.astype(np.float32)
    if keepdims:
        out = out.reshape([1 if a in axes else d for a, d in enumerate(sc.shape)])
    return out


# ------------------------------------------------------------------ products (order 2)
def _operand(x):
    """``x`` as a float32 array of at least one dimension, and the dtype of the product as
    NumPy promotes it (``np.result_type(float32, x.dtype)``: float64 for float64 and int64)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"unsupported operand dtype {x.dtype} for @ with a SignCut")
    if x.ndim == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions "
                         "(has 0, gufunc core with signature (n?,k),(k,m?)->(n?,m?) requires 1)")
    return x.astype(np.float32, copy=False), np.result_type(x.dtype, np.float32)


def _mismatch(size, expected):
    return ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0, with "
                      f"gufunc signature (n?,k),(k,m?)->(n?,m?) (size {size} is different "
                      f"from {expected})")


def product_lanes(sc, side):
    """The sign rows one product reads, in lane layout (see ``sign_lanes``), cached on ``sc``.

    ``side`` "right" (``W @ x``) gives T (``width`` rows of ``n`` signs) and S transposed (``m``
    rows of ``width`` signs); "left" (``x @ W``) gives S and T transposed. The first product
    on a side computes them once: they take about the memory of the signs themselves (both
    sides together, twice). The cache assumes the signs are not modified in place.
    """
    cache = sc.__dict__.setdefault("_product_lanes", {})
    if side not in cache:
        m, n = sc.shape
        a, b = (1, 0) if side == "right" else (0, 1)
        d_a, d_b = (n, m) if side == "right" else (m, n)
        cache[side] = (sign_lanes(sc.signs[a], d_a),
                       sign_lanes(_core.bits_transpose(sc.signs[b], d_b), sc.width))
    return cache[side]


class ThreadChoice:
    """The thread count for one kind of product of one SignCut (a side and a number of
    columns): all threads or one, whichever was faster when last measured.

    A product is one call, so this is the engine's probe (include/signcut/driver.h) over
    calls. A count's time is the least of its last ``WINDOW`` calls (one call can be unlucky:
    another library's threads still spinning, a page fault). The first calls measure all
    threads, then one; then the faster count is used, one thread only when clearly faster
    (``MARGIN``). The slower count is measured again (``WINDOW`` calls) after ``EVERY``
    calls, after twice as many each time it loses again (up to ``MAX_GAP``), and at once when
    the count in use becomes ``SLOWDOWN`` times slower than when it was chosen (another
    process took the cores). Results do not depend on it: the products give the same bits
    for any thread count."""

    WINDOW, EVERY, MAX_GAP, MARGIN, SLOWDOWN = 3, 32, 1024, 0.8, 2.0

    def __init__(self, nt_max):
        self.nt_max = nt_max
        self.recent = {nt_max: [], 1: []}     # the last WINDOW times of each count
        self.calls = 0
        self.gap = self.EVERY
        self.next_probe = 0                   # measure the slower count from this call on
        self.probing = None                   # the count being measured, calls left
        self.chosen_at = None                 # the time of the count in use when chosen

    def seconds(self, nt):
        return min(self.recent[nt]) if self.recent[nt] else None

    def best(self):
        one, full = self.seconds(1), self.seconds(self.nt_max)
        return 1 if one is not None and full is not None and one < self.MARGIN * full \
            else self.nt_max

    def pick(self):
        if self.nt_max <= 1:
            return 1
        for nt in (self.nt_max, 1):
            if len(self.recent[nt]) < self.WINDOW:
                return nt
        if self.probing is None and self.calls >= self.next_probe:
            self.probing = [1 if self.best() == self.nt_max else self.nt_max, self.WINDOW]
            self.recent[self.probing[0]].clear()
        return self.probing[0] if self.probing else self.best()

    def record(self, nt, seconds):
        self.calls += 1
        if self.nt_max <= 1:
            return
        before = self.best()
        times = self.recent[nt]
        times.append(seconds)
        del times[:-self.WINDOW]
        if self.probing is not None:
            self.probing[1] -= 1
            if self.probing[1]:
                return
            lost = self.best() != nt
            self.probing = None
            self.gap = min(2 * self.gap, self.MAX_GAP) if lost else self.EVERY
            self.next_probe = self.calls + self.gap
            self.chosen_at = self.seconds(self.best())
        elif self.chosen_at is None:
            if all(len(t) == self.WINDOW for t in self.recent.values()):    # first measurements
                self.next_probe = self.calls + self.gap
                self.chosen_at = self.seconds(self.best())
        elif self.best() != before:               # slowed down below the other count: switch
            self.gap = self.EVERY
            self.next_probe = self.calls + self.gap
            self.chosen_at = self.seconds(self.best())
        elif self.seconds(nt) > self.SLOWDOWN * self.chosen_at:
            self.next_probe = self.calls          # slowed down: measure the other count now


def _threads(sc, side, columns):
    """The ThreadChoice of this SignCut's products on ``side`` with ``columns`` columns (1 to
    6 each on their own, as the engine runs them one at a time; more by blocks of 64)."""
    key = (side, columns) if columns <= 6 else (side, "blocks of 64", -(-columns // 64))
    cache = sc.__dict__.setdefault("_product_threads", {})
    if key not in cache:
        cache[key] = ThreadChoice(_core.default_threads())
    return cache[key]


def _lut_product(sc, side, X, n_threads):
    """``W @ X`` (side "right") or ``W^T @ X`` (side "left") for a float32 C-contiguous 2-D X,
    on ``n_threads`` threads, or (None) on the count its ThreadChoice picks."""
    rows = sc.shape[0] if side == "right" else sc.shape[1]
    out = np.empty((rows, X.shape[1]), np.float32)
    lanes, lanes_t = product_lanes(sc, side)
    coef = np.ascontiguousarray(sc.coef, np.float32)
    if n_threads is not None:
        return _core.matrix_matmul(out, X, lanes, lanes_t, coef, thread_count(n_threads))
    choice = _threads(sc, side, X.shape[1])
    nt = choice.pick()
    t0 = time.perf_counter()
    _core.matrix_matmul(out, X, lanes, lanes_t, coef, nt)
    choice.record(nt, time.perf_counter() - t0)
    return out


def _scaled(X, scale):
    """``X`` (rows along its first axis) times ``scale`` per row, as a new C-contiguous
    float32 array (``X`` itself without scales)."""
    if scale is None:
        return X
    return np.ascontiguousarray(X * scale.astype(np.float32)[:, None], dtype=np.float32)


def matmul(sc, x, n_threads=None):
    """``W @ x`` for an order-2 SignCut ``W = S diag(coef) T^T``: ``S (coef * (T^T x))``
    (with scales ``diag(r) W diag(k)``: ``x`` times ``k`` before, the answer times ``r``
    after).

    Computed by the C engine through lookup tables over groups of sign bits, in float32:
    float64 (and integer) operands are rounded to float32 first. The answer has NumPy's
    promoted dtype (float64 for a float64 ``x``), its values those of the float32 product.
    """
    m, n = sc.shape
    x, dtype = _operand(x)
    x2 = x[:, None] if x.ndim == 1 else x              # (..., n, p)
    if x2.shape[-2] != n:
        raise _mismatch(x2.shape[-2], n)
    batch, p = x2.shape[:-2], x2.shape[-1]
    X = np.ascontiguousarray(np.moveaxis(x2, -2, 0).reshape(n, -1), dtype=np.float32)
    out = _lut_product(sc, "right", _scaled(X, sc.scales[1]), n_threads)   # (m, batch * p)
    if sc.scales[0] is not None:
        out *= sc.scales[0].astype(np.float32)[:, None]
    out = np.moveaxis(out.reshape((m,) + batch + (p,)), 0, -2)
    _sparse_product(sc, out, x2, left=False)
    return np.ascontiguousarray(out[..., 0] if x.ndim == 1 else out, dtype=dtype)


def rmatmul(sc, x, n_threads=None):
    """``x @ W`` for an order-2 SignCut ``W = S diag(coef) T^T``: ``(W^T x^T)^T`` with
    ``W^T = T diag(coef) S^T``, computed as ``matmul``."""
    m, n = sc.shape
    x, dtype = _operand(x)
    x2 = x[None, :] if x.ndim == 1 else x              # (..., p, m)
    if x2.shape[-1] != m:
        raise _mismatch(m, x2.shape[-1])
    X = np.ascontiguousarray(x2.reshape(-1, m).T, dtype=np.float32)
    out = _lut_product(sc, "left", _scaled(X, sc.scales[0]), n_threads)    # (n, batch * p)
    if sc.scales[1] is not None:
        out *= sc.scales[1].astype(np.float32)[:, None]
    out = out.T.reshape(x2.shape[:-1] + (n,))
    _sparse_product(sc, out, x2, left=True)
    return np.ascontiguousarray(out[..., 0, :] if x.ndim == 1 else out, dtype=dtype)


def _sparse_product(sc, out, x2, left):
    """Add the sparse part's product: ``out[.., i, :] += v x2[.., j, :]`` for ``W @ x``, or
    ``out[.., :, j] += v x2[.., :, i]`` for ``x @ W``, a chunk of outliers at a time."""
    if sc.outliers is None or not len(sc.outliers):
        return
    i, j = np.unravel_index(sc.outliers.index, sc.shape)
    values = sc.outliers.dense_values(out.dtype)
    axis = -1 if left else -2
    dst, src = np.moveaxis(out, axis, 0), np.moveaxis(x2, axis, 0)    # views
    to, frm = (j, i) if left else (i, j)
    extra = (1,) * (src.ndim - 1)
    step = max(1, BLOCK_ELEMENTS // max(1, src[0].size))
    for k in range(0, len(values), step):
        chunk = slice(k, k + step)
        np.add.at(dst, to[chunk], values[chunk].reshape(-1, *extra) * src[frm[chunk]])

"""Computing on the compressed form: the algebra of sign cuts.

Write a SignCut as ``X = sum_j c_j s1_j ⊗ ... ⊗ sk_j + P`` (P the sparse part). These stay
SignCuts, exactly (up to the float32 rounding of the new coefficients), at a cost that grows
with the stored bits, not with the array's size:

- ``a X``, ``X / a``, ``-X``: the coefficients (and the sparse values) change;
- ``X + Y``, ``X - Y``: the cuts of both, concatenated; the sparse parts merged;
- ``X + a``: one more cut, of coefficient ``a`` and all signs +1 (a constant array);
- ``X ⊙ Y``: ``s ⊙ u`` is a sign vector whose bits are ``s XOR u``, so the product has
  ``width(X) * width(Y)`` cuts; ``(X + P) ⊙ (Y + Q) = X ⊙ Y + (P ⊙ (Y + Q) + X ⊙ Q)``, the
  second term sparse on the entries of P and Q, with X and Y read from their signs there;
- operands of different shapes broadcast as in NumPy: a mode of size 1 stretched to size d
  is the sign repeated (all bits equal), a missing leading mode is all +1;
- contraction of mode a with a vector v: mode a goes, ``c_j <- c_j <sa_j, v>``;
- transpose, ``reshape`` (a change of the tensorization record), diagonal (``s ⊙ t`` on the
  diagonal's entries) and trace (its sum).

Scale vectors (``decompose(..., scales=)``: ``X = sum_j c_j (r1 ⊙ s1_j) ⊗ ... ⊗ (rk ⊙
sk_j)``) follow their modes: indexing selects them, transposes permute them, ``X ⊙ Y``
multiplies them (``(r ⊙ s) ⊙ (q ⊙ u) = (r ⊙ q) ⊙ (s ⊙ u)``), a contraction with ``v``
contracts ``s ⊙ r`` with ``v``, a diagonal multiplies the two modes' scales on it. A sum
``X + Y`` concatenates the cuts only when both have the same scales (a constant scale vector
is folded into the coefficients first); otherwise, and for ``X + a`` with scales, the sum
is no SignCut (:class:`NotClosed`: the operators expand). Inner products and norms weight
each mode's sign dot products by the product of the two scale vectors (float64 BLAS
instead of popcounts for those modes).

Everything builds its answer through :func:`derive`, the one place that makes a SignCut from
another one's parts. Derived SignCuts do not know the error history or the norm of the array
they came from (``errors`` NaN, ``norm`` None), except where the operation keeps them exactly
(negation, scaling, transposition, reshaping).
"""
import numbers
import operator

import numpy as np

from signcut import _core, _indexing, _validate
from signcut._result import Outliers, SignCut, index_dtype, unpack_signs, words

KEEP = object()


class NotClosed(ValueError):
    """The answer is not a SignCut (sums of SignCuts with different scales; a scalar added
    to a SignCut with scales)."""


def derive(sc, signs, coef, *, tensor_shape=None, tensorize=KEEP, outliers=KEEP, scales=KEEP,
           errors=None, norm=None, orig_dtype=None):
    """A SignCut made from new parts and whatever of ``sc`` is not given (``tensorize``,
    ``outliers``, ``scales``, ``orig_dtype`` and ``input_nbytes``, the references of
    ``ratio``; the error history, its norm (``error_norm``) and ``norm`` only when given).
    The arrays are taken over, not copied: pass new arrays, or ``sc``'s own (read-only) ones."""
    return SignCut(sc.tensor_shape if tensor_shape is None else tensor_shape, signs, coef,
                   errors, norm=norm, orig_dtype=sc.orig_dtype if orig_dtype is None else orig_dtype,
                   tensorize=sc.tensorize if tensorize is KEEP else tensorize,
                   outliers=sc.outliers if outliers is KEEP else outliers, copy=False,
                   input_nbytes=sc.input_nbytes, scales=sc.scales if scales is KEEP else scales,
                   error_norm=sc.error_norm if errors is not None else "frobenius")


def has_sparse(sc):
    return sc.outliers is not None and len(sc.outliers) > 0


def sparse_part(index, values, size):
    """A sparse part from flat indices (repeats allowed: summed) and float64 values, with
    float32 values (None when empty)."""
    index = np.asarray(index, np.int64)
    if not len(index):
        return None
    index, inverse = np.unique(index, return_inverse=True)
    values = np.bincount(inverse.ravel(), weights=values, minlength=len(index))
    if not np.isfinite(values.astype(np.float32)).all():
        raise OverflowError("the sparse part of the result has entries beyond float32's range")
    return Outliers(index.astype(index_dtype(size)), values.astype(np.float32), 0, size,
                    copy=False)


def real_scalar(a):
    """``a`` (a Python or NumPy real number, or a 0-d array of one) as a float, else None;
    ValueError for NaN and infinities (a SignCut's coefficients are finite)."""
    if isinstance(a, np.ndarray):
        if a.ndim or a.dtype.kind not in "biuf":
            return None
        a = a[()]
    if isinstance(a, (numbers.Real, np.bool_)) and not isinstance(a, (str, bytes)):
        value = float(a)
        if not np.isfinite(value):
            raise ValueError(f"cannot combine a SignCut with the scalar {value}: its "
                             "coefficients would not be finite")
        return value
    return None


def check_float32(coef, what):
    """float64 coefficients -> float32, refusing ones beyond float32's range."""
    with np.errstate(over="ignore"):
        out = coef.astype(np.float32)
    if not np.isfinite(out).all():
        raise OverflowError(f"{what}: coefficients not finite (beyond float32's range, or "
                            "from non-finite operands)")
    return out


def check_layout(a, b, what):
    """Tensorized operands must agree on their modes and tensorization."""
    if (a.tensorize or b.tensorize) and (a.tensorize != b.tensorize
                                         or a.tensor_shape != b.tensor_shape):
        raise ValueError(f"{what}: the SignCuts are tensorized differently (modes "
                         f"{a.tensor_shape}, {a.tensorize}; modes {b.tensor_shape}, "
                         f"{b.tensorize}); recompress one in the other's tensorization first")


# ------------------------------------------------------------------ coefficients only
def scale(sc, a, divide=False):
    """``sc * a`` (or ``sc / a``) for a real scalar ``a``: coefficients and sparse values
    times ``a``. The error history is kept (relative errors do not change) and the norm
    scales, except for ``a = 0``, whose exact answer is zero (errors 0, norm 0)."""
    if divide and a == 0:
        raise ZeroDivisionError("division of a SignCut by zero")
    coef = sc.coef.astype(np.float64)
    coef = coef / a if divide else coef * a
    factor = 1.0 / a if divide else a
    coef = check_float32(coef, f"{'dividing' if divide else 'multiplying'} by {a}")
    outliers = sc.outliers
    if outliers is not None:
        mant, exp = np.frexp(abs(factor))
        shift = outliers.exponent + int(exp) - 1
        if outliers.values.dtype == np.float16 and mant == 0.5 and -200 <= shift <= 200:
            sign = np.float16(-1.0 if factor < 0 else 1.0)     # a power of two: exact in float16
            outliers = (outliers.index, outliers.values * sign, shift)
        else:
            values = outliers.dense_values(np.float64)
            values = values / a if divide else values * a
            outliers = sparse_part(outliers.index, values, sc.size) or \
                (np.zeros(0, np.int64), np.zeros(0, np.float32), 0)
    if factor == 0:
        return derive(sc, sc.signs, coef, outliers=outliers, errors=np.zeros(sc.width),
                      norm=0.0)
    return derive(sc, sc.signs, coef, outliers=outliers, errors=sc.errors,
                  norm=None if sc.norm is None else sc.norm * abs(factor))


def negate(sc):
    """``-sc``: exact, keeps the error history and the norm."""
    return scale(sc, -1.0)


def add_scalar(sc, a):
    """``sc + a``: one more cut, of coefficient ``a`` with every sign +1 (a constant array is
    one cut). ``a = 0`` gives the same cuts. With scales (other than constant ones) the sum
    is no SignCut: :class:`NotClosed`."""
    if a == 0:
        return derive(sc, sc.signs, sc.coef, errors=sc.errors, norm=sc.norm)
    sc = fold_constant_scales(sc)
    if sc.has_scales:
        raise NotClosed("a scalar added to a SignCut with scales is no SignCut (the constant "
                        "would be multiplied by the scales)")
    signs = [np.concatenate([b, np.zeros((1, b.shape[1]), np.uint64)]) for b in sc.signs]
    coef = check_float32(np.append(sc.coef.astype(np.float64), a), f"adding {a}")
    return derive(sc, signs, coef)


# ------------------------------------------------------------------ broadcasting
def broadcast(sc, shape):
    """``np.broadcast_to(sc, shape)`` as a SignCut: a mode of size 1 stretched to size d is
    its sign repeated, a new leading mode is all +1; the sparse part is repeated along the
    stretched modes. Tensorized SignCuts broadcast only to their own shape."""
    shape = tuple(int(d) for d in shape)
    if shape == sc.shape:
        return sc
    np.broadcast_shapes(sc.shape, shape)           # NumPy's error when they do not match
    if len(shape) < sc.ndim or any(d != s and d != 1 for d, s in
                                   zip(sc.shape, shape[len(shape) - sc.ndim:])):
        raise ValueError(f"cannot broadcast a SignCut of shape {sc.shape} to {shape}")
    if sc.tensorize:
        raise ValueError(f"a tensorized SignCut (shape {sc.shape}) cannot broadcast to {shape}")
    lead = len(shape) - sc.ndim
    signs, scales = [], []
    for a, d in enumerate(shape):
        if a < lead:
            signs.append(np.zeros((sc.width, words(d)), np.uint64))
            scales.append(None)
            continue
        bits = sc.signs[a - lead]
        scale = sc.scales[a - lead]
        if sc.shape[a - lead] == d:
            signs.append(bits)
            scales.append(scale)
            continue
        scales.append(None if scale is None else np.full(d, scale[0], scale.dtype))
        full = np.zeros((sc.width, words(d)), np.uint64)      # every entry the one sign
        full[bits[:, 0] & np.uint64(1) == 1] = ~np.uint64(0)
        if d % 64:
            full[:, -1] &= np.uint64((1 << (d % 64)) - 1)
        signs.append(full)
    outliers = None
    if has_sparse(sc):      # each entry repeated at every position of the stretched modes
        multi = np.unravel_index(sc.outliers.index, sc.shape)
        stretched = [a for a, d in enumerate(shape) if a < lead or sc.shape[a - lead] != d]
        copies = int(np.prod([shape[a] for a in stretched], dtype=np.int64))
        count = len(sc.outliers)
        _validate.check_memory(count * copies * 8 * (len(shape) + 2),
                               f"broadcasting the sparse part of shape {sc.shape} to {shape}")
        reps = iter(np.unravel_index(np.arange(copies), [shape[a] for a in stretched]))
        coords = [np.broadcast_to(next(reps)[None, :] if a in stretched
                                  else multi[a - lead][:, None], (count, copies)).ravel()
                  for a in range(len(shape))]
        index = np.ravel_multi_index(coords, shape)
        order = np.argsort(index, kind="stable")
        outliers = (index[order], np.repeat(sc.outliers.values, copies)[order],
                    sc.outliers.exponent)
    return derive(sc, signs, sc.coef, tensor_shape=shape, tensorize=None, outliers=outliers,
                  scales=scales)


def fold_constant_scales(sc):
    """``sc`` with every constant scale vector (all entries equal: always so on a mode of
    size 1) folded into the coefficients."""
    factor, scales = 1.0, list(sc.scales)
    for a, v in enumerate(scales):
        if v is not None and (v == v[0]).all():
            factor *= float(v[0])
            scales[a] = None
    if factor == 1.0 and scales == list(sc.scales):
        return sc
    coef = check_float32(sc.coef.astype(np.float64) * factor, "folding constant scales")
    return derive(sc, sc.signs, coef, scales=scales)


def same_scales(a, b):
    """Whether two SignCuts of one mode layout have equal scale vectors (values)."""
    return all((x is None) == (y is None) and (x is None or np.array_equal(x, y))
               for x, y in zip(a.scales, b.scales))


def common_shape(a, b, what):
    """The shape both operands broadcast to (NumPy's rules)."""
    check_layout(a, b, what)
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"operands could not be broadcast together with shapes {a.shape} "
                         f"{b.shape}") from None


# ------------------------------------------------------------------ sums and products
def add(a, b, subtract=False):
    """``a + b`` (or ``a - b``) of two SignCuts: the cuts of both, concatenated (``b``'s
    coefficients negated for a difference), and the sparse parts merged. Both must have the
    same scales (after constant ones are folded into the coefficients), else
    :class:`NotClosed`."""
    shape = common_shape(a, b, "adding SignCuts")
    a, b = broadcast(a, shape), broadcast(b, shape)
    if not same_scales(a, b):
        a, b = fold_constant_scales(a), fold_constant_scales(b)
        if not same_scales(a, b):
            raise NotClosed("the sum of SignCuts with different scales is no SignCut")
    signs = [np.concatenate([x, y]) for x, y in zip(a.signs, b.signs)]
    coef = np.concatenate([a.coef, -b.coef if subtract else b.coef])
    parts = [(o.index.astype(np.int64), o.dense_values(np.float64) * sign)
             for o, sign in ((a.outliers, 1.0), (b.outliers, -1.0 if subtract else 1.0))
             if o is not None and len(o)]
    outliers = None
    if parts:
        outliers = sparse_part(np.concatenate([p[0] for p in parts]),
                               np.concatenate([p[1] for p in parts]), a.size)
    return derive(a, signs, coef, outliers=outliers,
                  orig_dtype=np.promote_types(a.orig_dtype, b.orig_dtype))


def cut_values(sc, flat):
    """The cuts' part of ``sc`` at the flat indices ``flat`` of its shape, in float64 (from
    the signs of those entries, a block of cuts at a time)."""
    flat = np.asarray(flat, np.int64)
    if not len(flat) or not sc.width:
        return np.zeros(len(flat))
    if sc.tensorize:
        from signcut._api import _tensor_positions
        flat = _tensor_positions(flat, sc.tensorize, sc.tensor_shape)
    coords = np.unravel_index(flat, sc.tensor_shape)
    out = np.zeros(len(flat))
    k = len(sc.tensor_shape)
    for blk in _indexing.cut_blocks(sc.width, len(flat) * (k + 1)):
        rows = sc.coef[blk].astype(np.float64)[:, None]
        for a, c in enumerate(coords):
            rows = rows * _indexing.entries(sc, a, blk, c, np.float64)
        out += rows.sum(axis=0)
    return out


def multiply(a, b):
    """``a * b`` (elementwise) of two SignCuts: ``width(a) * width(b)`` cuts, the signs of
    each pair XORed, the coefficients multiplied; refused with MemoryError before anything
    is allocated when that does not fit. Sparse parts: see the module's docstring."""
    shape = common_shape(a, b, "multiplying SignCuts")
    tensor_shape = a.tensor_shape if a.tensorize else shape
    width = a.width * b.width
    per_cut = 8 * sum(words(d) for d in tensor_shape) + 4 + 8
    need = width * per_cut
    _validate.check_memory(need, f"the elementwise product of SignCuts of widths {a.width} and "
                                 f"{b.width} ({width} cuts, {need / 2**30:.3g} GiB)")
    a, b = broadcast(a, shape), broadcast(b, shape)
    signs = [(x[:, None, :] ^ y[None, :, :]).reshape(width, x.shape[1])
             for x, y in zip(a.signs, b.signs)]
    coef = check_float32(np.multiply.outer(a.coef.astype(np.float64), b.coef).ravel(),
                         "multiplying SignCuts")
    scales = [x if y is None else y if x is None else x.astype(np.float32) * y
              for x, y in zip(a.scales, b.scales)]
    outliers = None
    if has_sparse(a) or has_sparse(b):
        index = np.unique(np.concatenate([x.outliers.index.astype(np.int64)
                                          for x in (a, b) if has_sparse(x)]))
        p, q = sparse_at(a, index), sparse_at(b, index)
        values = p * (cut_values(b, index) + q) + cut_values(a, index) * q
        outliers = sparse_part(index, values, a.size)
    return derive(a, signs, coef, outliers=outliers, scales=scales,
                  orig_dtype=np.promote_types(a.orig_dtype, b.orig_dtype))


def sparse_at(sc, flat):
    """The sparse part of ``sc`` at the sorted flat indices ``flat`` (0 where it has none)."""
    out = np.zeros(len(flat))
    if has_sparse(sc):
        pos = np.searchsorted(flat, sc.outliers.index.astype(np.int64))
        out[pos] = sc.outliers.dense_values(np.float64)
    return out


# ------------------------------------------------------------------ modes
def axis_index(axis, ndim):
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim


def contract(sc, axis, v):
    """Contract mode ``axis`` with the vector ``v``: a SignCut of one order less whose
    coefficients absorb ``<s_j, v>`` (the sparse part contracted likewise); for an order-1
    SignCut, the scalar ``<X, v>`` (NumPy's promoted dtype)."""
    axis = axis_index(axis, sc.ndim)
    v = np.asarray(v)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"cannot contract a SignCut with an array of dtype {v.dtype}")
    if v.ndim != 1 or len(v) != sc.shape[axis]:
        raise ValueError(f"contracting axis {axis} of shape {sc.shape} needs a vector of "
                         f"{sc.shape[axis]} entries, got shape {v.shape}")
    dtype = np.result_type(np.float32, v.dtype)
    weights = v if sc.scales[axis] is None else v * sc.scales[axis].astype(np.float64)
    z = _core.sign_rows_dot(sc.signs[axis], np.ascontiguousarray(weights, np.float32))
    coef = sc.coef.astype(np.float64) * z
    if has_sparse(sc):
        multi = list(np.unravel_index(sc.outliers.index, sc.shape))
        values = sc.outliers.dense_values(np.float64) * v[multi.pop(axis)].astype(np.float64)
    if sc.ndim == 1:
        total = coef.sum() + (values.sum() if has_sparse(sc) else 0.0)
        return dtype.type(total)
    shape = sc.shape[:axis] + sc.shape[axis + 1:]
    outliers = None
    if has_sparse(sc):
        outliers = sparse_part(np.ravel_multi_index(multi, shape), values, int(np.prod(shape)))
    return derive(sc, sc.signs[:axis] + sc.signs[axis + 1:], check_float32(coef, "contracting"),
                  tensor_shape=shape, tensorize=None, outliers=outliers,
                  scales=sc.scales[:axis] + sc.scales[axis + 1:])


def permute_sparse(sc, order, shape):
    """The sparse part of ``sc`` with its axes in ``order`` (an array of ``shape``)."""
    if sc.outliers is None:
        return None
    multi = np.unravel_index(sc.outliers.index, sc.shape)
    index = np.ravel_multi_index([multi[a] for a in order], shape)
    perm = np.argsort(index, kind="stable")
    return index[perm], sc.outliers.values[perm], sc.outliers.exponent


def transpose(sc, order):
    """The SignCut of the array with its axes in ``order``: the modes (and scales) permuted
    (exact). The error history stays, unless it is in a column-weighted norm and the
    columns move."""
    shape = tuple(sc.shape[a] for a in order)
    keep = sc.error_norm == "frobenius" or order[-1] == len(order) - 1
    return derive(sc, [sc.signs[a] for a in order], sc.coef, tensor_shape=shape,
                  outliers=permute_sparse(sc, order, shape), scales=[sc.scales[a] for a in order],
                  errors=sc.errors if keep else None, norm=sc.norm if keep else None)


def diagonal(sc, offset=0, axis1=0, axis2=1):
    """``np.diagonal``: the modes ``axis1`` and ``axis2`` give way to a last mode, the
    diagonal's entries, whose signs are ``s1[i] XOR s2[i + offset]``. A SignCut, or an empty
    array when the diagonal is empty."""
    if sc.ndim < 2:
        raise ValueError("diag requires an array of at least two dimensions")
    a1, a2 = axis_index(axis1, sc.ndim), axis_index(axis2, sc.ndim)
    if a1 == a2:
        raise ValueError("axis1 and axis2 cannot be the same")
    offset = operator.index(offset)
    d1, d2 = sc.shape[a1], sc.shape[a2]
    first = max(0, -offset)
    length = max(0, min(d1 - first, d2 - first - offset))
    rows = np.arange(first, first + length)
    rest = [a for a in range(sc.ndim) if a not in (a1, a2)]
    shape = tuple(sc.shape[a] for a in rest) + (length,)
    if not length:
        return np.zeros(shape, np.float32)
    diag = _indexing.select_bits(sc.signs[a1], rows, d1) ^ \
        _indexing.select_bits(sc.signs[a2], rows + offset, d2)
    s1, s2 = sc.scales[a1], sc.scales[a2]
    diag_scale = None if s1 is None and s2 is None else \
        (np.ones(length, np.float32) if s1 is None else s1[rows].astype(np.float32)) * \
        (1.0 if s2 is None else s2[rows + offset].astype(np.float32))
    outliers = None
    if has_sparse(sc):
        multi = np.unravel_index(sc.outliers.index, sc.shape)
        on = (multi[a2] - multi[a1] == offset) & (multi[a1] >= first) & \
            (multi[a1] < first + length)
        coords = [multi[a][on] for a in rest] + [multi[a1][on] - first]
        index = np.ravel_multi_index(coords, shape)   # increasing: the old order kept
        order = np.argsort(index, kind="stable")
        outliers = (index[order], sc.outliers.values[on][order], sc.outliers.exponent)
    return derive(sc, [sc.signs[a] for a in rest] + [diag], sc.coef, tensor_shape=shape,
                  tensorize=None, outliers=outliers,
                  scales=[sc.scales[a] for a in rest] + [diag_scale])


def trace(sc, offset=0, axis1=0, axis2=1):
    """``np.trace``: the diagonal summed, ``c_j <- c_j <s1, s2>`` over the diagonal's
    entries: a scalar for a matrix, a SignCut of order k - 2 for order k."""
    diag = diagonal(sc, offset, axis1, axis2)
    if not isinstance(diag, SignCut):
        return diag.sum(axis=-1)
    return contract(diag, -1, np.ones(diag.shape[-1], np.float32))


# ------------------------------------------------------------------ exact numbers
def inner(a, b, n_threads=None):
    """``<a, b>`` (the sum of the elementwise product) of two SignCuts of one shape and
    tensorization, in float64: ``sum_{i,j} c_i d_j prod_a <sa_i, ua_j>`` from popcounts of
    the packed signs (``_core.cuts_inner``: tiles of cuts, never a width x width matrix;
    with scales :func:`weighted_inner`), plus the sparse parts ``<X, Q> + <P, Y> + <P, Q>``
    read at their entries."""
    if a.shape != b.shape:
        raise ValueError(f"the inner product needs SignCuts of one shape, got {a.shape} and "
                         f"{b.shape}")
    check_layout(a, b, "the inner product of SignCuts")
    if a.has_scales or b.has_scales:
        total = weighted_inner(a, b)
    else:
        total = _core.cuts_inner(a.signs, a.coef, b.signs, b.coef, a.tensor_shape,
                                 _validate.thread_count(n_threads))
    if has_sparse(b):
        total += float(cut_values(a, b.outliers.index) @ b.outliers.dense_values(np.float64))
    if has_sparse(a):
        total += float(cut_values(b, a.outliers.index) @ a.outliers.dense_values(np.float64))
    if has_sparse(a) and has_sparse(b):
        both, ia, ib = np.intersect1d(a.outliers.index, b.outliers.index, assume_unique=True,
                                      return_indices=True)
        total += float(a.outliers.dense_values(np.float64)[ia]
                       @ b.outliers.dense_values(np.float64)[ib])
    return total


def weighted_inner(a, b):
    """The cuts' part of ``<a, b>`` for SignCuts with scales: ``sum_{i,j} c_i d_j prod_m
    <r_m ⊙ s_i, q_m ⊙ u_j>``. Per tile of cuts, the modes with scales (on either side) give
    Gram matrices of the signs weighted by ``r_m ⊙ q_m`` (float64 matrix products: about
    ``2 * width * b.width * d_m`` flops), the others popcounts (the kernels' gram_mul)."""
    dims = a.tensor_shape
    weights = [None if x is None and y is None else
               (1.0 if x is None else x.astype(np.float64)) * (1.0 if y is None else y)
               for x, y in zip(a.scales, b.scales)]
    isa = _core.active_kernels()
    step = max(1, min(1024, _indexing.BLOCK_ELEMENTS // max(dims)))
    total = 0.0
    for j0 in range(0, b.width, step):
        bj = slice(j0, min(j0 + step, b.width))
        theirs = {m: unpack_signs(b.signs[m][bj], d).astype(np.float64)
                  for m, d in enumerate(dims) if weights[m] is not None}
        for i0 in range(0, a.width, step):
            ai = slice(i0, min(i0 + step, a.width))
            tile = np.multiply.outer(a.coef[ai].astype(np.float64), b.coef[bj].astype(np.float64))
            for m, d in enumerate(dims):
                if weights[m] is None:
                    _core.kernel_gram_mul(isa, tile, a.signs[m][ai], b.signs[m][bj], d)
                else:
                    tile *= (unpack_signs(a.signs[m][ai], d) * weights[m]) @ theirs[m].T
            total += float(tile.sum())
    return total


def frobenius_norm(sc, n_threads=None):
    """``||sc||_F`` from the signs: ``sqrt(<sc, sc>)`` (half the pairs of cuts)."""
    return float(np.sqrt(max(inner(sc, sc, n_threads), 0.0)))


def tensor_view(sc, A):
    """The array ``A`` of ``sc``'s shape laid out as ``sc``'s modes (a view where possible)."""
    A = np.asarray(A).reshape(sc.shape)
    if not sc.tensorize:
        return A
    axes = sc.tensorize["axes"]
    reshaped = [0] * len(axes)
    for i, a in enumerate(axes):
        reshaped[a] = sc.tensor_shape[i]
    return A.reshape(reshaped).transpose(axes)


def inner_dense(sc, A):
    """``<sc, A>`` for an array ``A`` of ``sc``'s size (read in C order), in float64:
    ``sum_j c_j <A, s1_j ⊗ ... ⊗ sk_j>``, contracting ``A`` with a block of cuts' signs
    mode after mode (a matrix product with the first mode's signs, then elementwise), plus
    the sparse part ``<P, A>``. About ``2 width size`` flops; memory stays near a block."""
    A = np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise TypeError(f"the inner product of a SignCut with an array of dtype {A.dtype}")
    if A.size != sc.size:
        raise ValueError(f"the inner product needs {sc.size} entries, got an array of "
                         f"shape {A.shape}")
    dtype = np.float64 if A.dtype == np.float64 else np.float32
    T = tensor_view(sc, A.astype(dtype, copy=False))
    d0 = sc.tensor_shape[0]
    flat = np.ascontiguousarray(T).reshape(d0, -1)
    total = 0.0
    rest = flat.shape[1]
    for blk in _indexing.cut_blocks(sc.width, rest + d0):
        S0 = _indexing.entries(sc, 0, blk, np.arange(d0), dtype)
        M = S0 @ flat                                   # (cuts, the other modes' entries)
        for a in range(1, len(sc.tensor_shape)):
            d = sc.tensor_shape[a]
            Sa = _indexing.entries(sc, a, blk, np.arange(d), dtype)
            M = np.einsum("bi,bij->bj", Sa, M.reshape(len(M), d, -1))
        total += float(sc.coef[blk].astype(np.float64) @ M[:, 0].astype(np.float64))
    if has_sparse(sc):
        total += float(sc.outliers.dense_values(np.float64)
                       @ A.reshape(-1)[sc.outliers.index].astype(np.float64))
    return total


# ------------------------------------------------------------------ shapes
def reshape_target(shape, size):
    """``shape`` (an int or a sequence, one -1 allowed) for ``size`` entries, or ValueError."""
    if isinstance(shape, (numbers.Integral, np.integer)):
        shape = (shape,)
    try:
        shape = [operator.index(d) for d in shape]
    except TypeError:
        raise TypeError(f"shape must be a sequence of integers, got {shape!r}") from None
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if any(d < -1 for d in shape):
        raise ValueError("negative dimensions not allowed")
    asked = tuple(shape)
    known = int(np.prod([d for d in shape if d != -1], dtype=object))
    if -1 in shape and known and size % known == 0:
        shape[shape.index(-1)] = size // known
    if -1 in shape or int(np.prod(shape, dtype=object)) != size:
        raise ValueError(f"cannot reshape array of size {size} into shape {asked}")
    return tuple(shape)


def _unit_axes_key(old, new):
    """An index that turns ``old`` into ``new`` by adding or dropping axes of size 1 only, or
    None."""
    key, i, j = [], 0, 0
    while i < len(new) or j < len(old):
        if i < len(new) and j < len(old) and new[i] == old[j]:
            key.append(slice(None))
            i, j = i + 1, j + 1
        elif i < len(new) and new[i] == 1:
            key.append(None)
            i += 1
        elif j < len(old) and old[j] == 1:
            key.append(0)
            j += 1
        else:
            return None
    return tuple(key)


def reshape(sc, shape):
    """``sc.reshape(shape)`` (C order): the same cuts under another tensorization record, so
    no entry moves (adding or dropping axes of size 1 keeps a plain SignCut plain). The
    sparse part's flat indices stay as they are."""
    shape = reshape_target(shape, sc.size)
    if shape == sc.shape:
        return derive(sc, sc.signs, sc.coef, errors=sc.errors, norm=sc.norm)
    if not sc.tensorize:
        key = _unit_axes_key(sc.shape, shape)
        if key is not None:
            out = _indexing.getitem(sc, key)
            return derive(out, out.signs, out.coef, errors=sc.errors, norm=sc.norm)
    axes = sc.tensorize["axes"] if sc.tensorize else list(range(len(sc.tensor_shape)))
    record = None if (list(shape) == list(sc.tensor_shape) and axes == sorted(axes)) \
        else {"shape": list(shape), "axes": list(axes)}
    return derive(sc, sc.signs, sc.coef, tensorize=record, errors=sc.errors, norm=sc.norm)


# ------------------------------------------------------------------ recompress
def source(sc):
    """What :func:`recompress` decomposes: the array ``sc`` represents, expanded (float32),
    when it and decompose's two working copies fit in the memory available; else, for a
    matrix, ``sc`` as a LinearOperator (decomposed through its products: slower, nothing
    expanded); else MemoryError, before anything is allocated."""
    need = 3 * 4 * sc.size
    try:
        _validate.check_memory(need, f"recompressing a SignCut of shape {sc.shape} (its "
                                     "expansion and two working copies)")
    except MemoryError:
        if sc.ndim == 2 and not sc.tensorize:
            return sc.aslinearoperator()
        raise
    return sc.expand()


def recompress(sc, **budgets):
    """Decompose again what ``sc`` represents, at new budgets (see ``SignCut.recompress``)."""
    from signcut._api import decompose
    A = source(sc)
    ratio = budgets.pop("ratio", None)
    if ratio is not None and isinstance(A, np.ndarray):  # in bytes of orig_dtype, not float32
        budgets["ratio"] = _validate.optional_float(ratio, "ratio") * sc.orig_dtype.itemsize / 4
    elif ratio is not None:         # an operator has no bytes: the same storage in bits
        budgets["bits_per_entry"] = min(
            b for b in (budgets.get("bits_per_entry"),
                        8 * _validate.optional_float(ratio, "ratio") * sc.orig_dtype.itemsize)
            if b is not None)
    if sc.tensorize:
        axes = sc.tensorize["axes"]
        shape = [0] * len(axes)
        for i, a in enumerate(axes):
            shape[a] = sc.tensor_shape[i]
        budgets.setdefault("shape", shape)
        budgets.setdefault("axes", axes)
    out = decompose(A, **budgets)
    out.orig_dtype = sc.orig_dtype
    return out

"""Indexing a SignCut by NumPy's rules, from its signs.

Basic indexing (integers, slices with any step, ``...``, ``None``) selects entries of each
mode's sign vectors: the answer is again a SignCut (signs repacked, tail bits zero; an
integer drops its mode and multiplies each coefficient by the selected sign; ``None`` adds a
mode of size 1 whose signs are all +1). Advanced indexing (integer arrays, boolean arrays,
boolean scalars, and integers beside them) gives a dense array computed from the signs of
the selected entries only, a block of cuts at a time, never through a full expansion. The
sparse part follows: its entries inside the selection are kept (basic) or added (advanced).
"""
import operator
from math import prod

import numpy as np

BLOCK_ELEMENTS = 1 << 22        # about how many numbers one block of cuts may unpack at once
INDEX_TYPES = ("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and "
               "integer or boolean arrays are valid indices")


def words(d):
    """uint64 words per packed sign vector of length d."""
    return (int(d) + 63) // 64


def cut_blocks(width, per_cut):
    """Slices of consecutive cuts, each holding about ``BLOCK_ELEMENTS / per_cut`` cuts."""
    step = max(1, BLOCK_ELEMENTS // max(1, per_cut))
    return [slice(j, min(j + step, width)) for j in range(0, width, step)]


def unpack_entries(bits, idx, dtype=np.float32):
    """Entries ``idx`` (in range) of packed rows -> ``(rows, len(idx))`` array of +1/-1."""
    idx = np.asarray(idx, dtype=np.intp)
    flags = (bits[:, idx >> 6] >> (idx & 63).astype(np.uint64)) & np.uint64(1)
    return 1 - 2 * flags.astype(dtype)


def entries(sc, axis, blk, idx, dtype=np.float32):
    """Entries ``idx`` (in range) of mode ``axis`` of the cuts ``blk`` of ``sc``: ``(cuts,
    len(idx))`` signs (+1/-1) times the mode's scales there, when it has them."""
    rows = unpack_entries(sc.signs[axis][blk], idx, dtype)
    scale = sc.scales[axis]
    if scale is not None:
        rows = rows * scale[np.asarray(idx, dtype=np.intp)].astype(dtype)
    return rows


def select_bits(bits, idx, d):
    """Entries ``idx`` (in range) of packed rows of ``d`` entries, packed again: ``(rows,
    ceil(len(idx)/64))`` uint64, tail bits zero. Rows selected whole are returned as they are."""
    idx = np.asarray(idx, dtype=np.intp)
    rows, n = bits.shape[0], len(idx)
    if n == d and (idx == np.arange(d)).all():
        return bits
    out = np.zeros((rows, words(n)), np.uint64)
    if not n or not rows:
        return out
    as_bytes = out.view(np.uint8).reshape(rows, -1)
    for blk in cut_blocks(rows, 9 * n):
        flags = ((bits[blk][:, idx >> 6] >> (idx & 63).astype(np.uint64)) & np.uint64(1))
        packed = np.packbits(flags.astype(np.uint8), axis=1, bitorder="little")
        as_bytes[blk, :packed.shape[1]] = packed
    return out


# ------------------------------------------------------------------ parsing
class Plan:
    """An index applied to an array of ``shape``, by NumPy's rules.

    ``out``: the answer's axes in order, each ``("mode", axis, picks)`` (entries ``picks`` of
    a mode: a slice, or every entry under ``...``), ``("new",)`` (``None``) or ``("group",)``
    (where the broadcast advanced indices go, ``group_shape``); ``drops``: ``(axis, i)`` for
    the integers of a basic index; ``group``: ``(axis, index)`` pairs of the advanced indices
    (index broadcast to ``group_shape`` and raveled; axis None for a boolean scalar, which
    indexes a new axis of size 1); ``scalar``: a 0-d answer is a scalar (no ``...``).
    """

    def __init__(self, out, drops, group, group_shape, scalar):
        self.out, self.drops, self.group = out, drops, group
        self.group_shape, self.scalar = group_shape, scalar

    @property
    def advanced(self):
        return bool(self.group)

    @property
    def shape(self):
        """Shape of the answer."""
        dims = []
        for f in self.out:
            if f[0] == "group":
                dims.extend(self.group_shape)
            else:
                dims.append(len(f[2]) if f[0] == "mode" else 1)
        return tuple(dims)


def _parse_item(item):
    """One entry of an index -> (kind, value): new, ellipsis, slice, int, array, bool."""
    if item is None:
        return "new", None
    if item is Ellipsis:
        return "ellipsis", None
    if isinstance(item, slice):
        return "slice", item
    if isinstance(item, (bool, np.bool_)):
        return "bool", np.asarray(item)
    try:
        return "int", operator.index(item)
    except TypeError:
        pass
    if isinstance(item, (str, bytes)):
        raise IndexError(INDEX_TYPES)
    try:
        arr = np.asarray(item)
    except (TypeError, ValueError):
        raise IndexError(INDEX_TYPES) from None
    if arr.dtype == np.bool_:
        return "bool", arr
    if arr.dtype.kind in "iu" or (arr.size == 0 and not isinstance(item, np.ndarray)):
        return "array", arr.astype(np.intp)
    raise IndexError(INDEX_TYPES)


def _check_range(value, d, axis):
    bad = (value < -d) | (value >= d)
    if np.any(bad):
        raise IndexError(f"index {np.asarray(value)[bad].flat[0] if np.ndim(value) else value} "
                         f"is out of bounds for axis {axis} with size {d}")
    return value % d if d else value


def parse_index(key, shape):
    """The :class:`Plan` of ``key`` on an array of ``shape``, with NumPy's errors."""
    items = [_parse_item(item) for item in (key if isinstance(key, tuple) else (key,))]
    kinds = [kind for kind, _ in items]
    if kinds.count("ellipsis") > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    ndim = len(shape)
    used = sum(1 if k in ("slice", "int", "array") else v.ndim if k == "bool" else 0
               for k, v in items)
    if used > ndim:
        raise IndexError(f"too many indices for array: array is {ndim}-dimensional, "
                         f"but {used} were indexed")
    scalar = "ellipsis" not in kinds
    if scalar:
        items.append(("ellipsis", None))
    advanced = any(k in ("array", "bool") for k in kinds)

    out, drops, group, positions, axis = [], [], [], [], 0
    for pos, (kind, value) in enumerate(items):
        if kind == "new":
            out.append(("new",))
        elif kind == "ellipsis":
            for _ in range(ndim - used):
                out.append(("mode", axis, np.arange(shape[axis])))
                axis += 1
        elif kind == "slice":
            out.append(("mode", axis, np.arange(*value.indices(shape[axis]))))
            axis += 1
        elif kind == "int" and not advanced:
            drops.append((axis, int(_check_range(value, shape[axis], axis))))
            axis += 1
        elif kind == "bool" and value.ndim == 0:     # a new axis of size 1, indexed by [0] or []
            positions.append(pos)
            group.append((None, np.zeros(int(value), np.intp)))
        elif kind == "bool":
            dims = shape[axis:axis + value.ndim]
            if value.shape != tuple(dims):
                for a, (got, want) in enumerate(zip(value.shape, dims)):
                    if got != want:
                        raise IndexError(
                            f"boolean index did not match indexed array along axis {axis + a}; "
                            f"size of axis is {want} but size of corresponding boolean axis "
                            f"is {got}")
            positions.append(pos)
            for a, nz in enumerate(np.nonzero(value)):
                group.append((axis + a, nz.astype(np.intp)))
            axis += value.ndim
        else:                                          # an integer array, or an int beside one
            positions.append(pos)
            group.append((axis, _check_range(np.asarray(value, np.intp), shape[axis], axis)))
            axis += 1

    group_shape = ()
    if group:
        try:
            arrays = np.broadcast_arrays(*[g for _, g in group])
        except ValueError:
            shapes = " ".join(str(g.shape) for _, g in group)
            raise IndexError(f"shape mismatch: indexing arrays could not be broadcast together "
                             f"with shapes {shapes}") from None
        group_shape = arrays[0].shape
        group = [(a, g.ravel()) for (a, _), g in zip(group, arrays)]
        # NumPy: advanced indices next to each other in the key take their place; apart, first
        adjacent = positions[-1] - positions[0] == len(positions) - 1
        out.insert(_axes_before(items, positions[0], ndim - used) if adjacent else 0, ("group",))
    return Plan(out, drops, group, group_shape, scalar)


def _axes_before(items, stop, ellipsis_axes):
    """How many answer axes the items before position ``stop`` make (basic mode only)."""
    count = 0
    for kind, value in items[:stop]:
        if kind in ("new", "slice"):
            count += 1
        elif kind == "ellipsis":
            count += ellipsis_axes
    return count


# ------------------------------------------------------------------ dense answers
def factor_rows(sc, factor, blk, dtype, plan):
    """The rows of one answer axis for the cuts ``blk``: ``(cuts, length)`` of +-1 (times
    the scales)."""
    kind = factor[0]
    n = blk.stop - blk.start
    if kind == "mode":
        return entries(sc, factor[1], blk, factor[2], dtype)
    if kind == "new":
        return np.ones((n, 1), dtype)
    rows = np.ones((n, len(plan.group[0][1])), dtype)
    for axis, idx in plan.group:
        if axis is not None:
            rows *= entries(sc, axis, blk, idx, dtype)
    return rows


def contract_rows(width, weights, rows_of, sizes, dtype=np.float32):
    """``sum_j weights[j] * r1_j ⊗ ... ⊗ rk_j`` as a dense array of shape ``sizes``, where
    ``rows_of(a, blk)`` gives the rows ``(cuts in blk, sizes[a])`` of factor ``a``.

    The longest factor is contracted by a matrix product against the outer product of the
    others, a block of cuts at a time: besides the answer, memory holds at most about
    ``BLOCK_ELEMENTS`` numbers, or one cut's outer product of the other factors."""
    sizes = list(sizes)
    if not sizes:
        return np.asarray(np.sum(weights, dtype=np.float64), dtype)
    big = int(np.argmax(sizes))
    rest = [a for a in range(len(sizes)) if a != big]
    acc = np.zeros((prod(sizes[a] for a in rest), sizes[big]), dtype)
    if acc.size and width:
        weights = np.asarray(weights, dtype=dtype)
        for blk in cut_blocks(width, acc.shape[0] + sum(sizes)):
            outer = weights[blk, None]
            for a in rest:
                rows = rows_of(a, blk)
                outer = (outer[:, :, None] * rows[:, None, :]).reshape(len(rows), -1)
            acc += outer.T @ rows_of(big, blk)
    return np.moveaxis(acc.reshape([sizes[a] for a in rest] + [sizes[big]]), -1, big)


def drop_weights(sc, drops, dtype=np.float64):
    """Each cut's coefficient times its signs (and scales) at the integers of a basic index."""
    weights = sc.coef.astype(dtype)
    for axis, i in drops:
        weights = weights * entries(sc, axis, slice(None), [i], dtype)[:, 0]
    return weights


def _matches(keys, wanted):
    """For each wanted key, every position of ``keys`` holding it: (wanted row, position)."""
    order = np.argsort(keys, kind="stable")
    lo = np.searchsorted(keys[order], wanted, "left")
    count = np.searchsorted(keys[order], wanted, "right") - lo
    rows = np.repeat(np.arange(len(wanted)), count)
    offset = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    return rows, order[lo[rows] + offset]


def add_sparse(block, sc, plan, factors):
    """Add the sparse part's entries that the selection holds (repeats included) to
    ``block``, whose axes are ``factors`` (the plan's answer axes, group as one axis)."""
    outliers = sc.outliers
    if outliers is None or not len(outliers) or not block.size:
        return block
    multi = np.unravel_index(outliers.index, sc.shape)
    rows = np.arange(len(outliers))
    for axis, i in plan.drops:
        rows = rows[multi[axis][rows] == i]
    flat = np.zeros(len(rows), np.intp)
    for f, n in zip(factors, block.shape):
        if f[0] == "new":
            flat = flat * n
            continue
        if f[0] == "mode":
            keys, wanted = f[2], multi[f[1]][rows]
        else:   # the group: all its axes at once, as one flat index over them
            axes = [a for a, _ in plan.group if a is not None]
            dims = [sc.shape[a] for a in axes]
            keys = np.ravel_multi_index([g for a, g in plan.group if a is not None], dims) \
                if axes else np.zeros(n, np.intp)
            wanted = np.ravel_multi_index([multi[a][rows] for a in axes], dims) \
                if axes else np.zeros(len(rows), np.intp)
        which, where = _matches(np.asarray(keys, np.intp), np.asarray(wanted, np.intp))
        flat = flat[which] * n + where
        rows = rows[which]
    np.add.at(block.reshape(-1), flat, outliers.dense_values(block.dtype)[rows])
    return block


def dense(sc, plan):
    """The answer of an advanced index (or of a basic one with no axis left, or an empty
    one), computed from the signs of the selected entries (float32)."""
    factors = list(plan.out)
    sizes = [len(f[2]) if f[0] == "mode" else 1 if f[0] == "new" else prod(plan.group_shape)
             for f in factors]
    weights = drop_weights(sc, plan.drops, np.float32)
    block = contract_rows(sc.width, weights,
                          lambda a, blk: factor_rows(sc, factors[a], blk, np.float32, plan),
                          sizes)
    block = add_sparse(np.ascontiguousarray(block, np.float32), sc, plan, factors)
    out = block.reshape(plan.shape)
    if out.ndim == 0:
        return out[()] if plan.scalar else out.copy()
    return out


# ------------------------------------------------------------------ compressed answers
def sparse_subset(sc, plan):
    """The sparse part inside a basic selection, indexed in the answer's shape."""
    outliers = sc.outliers
    if outliers is None:
        return None
    multi = np.unravel_index(outliers.index, sc.shape)
    keep = np.ones(len(outliers), bool)
    for axis, i in plan.drops:
        keep &= multi[axis] == i
    coords = []
    for f in plan.out:
        if f[0] == "new":
            coords.append(None)
            continue
        picks = f[2]
        if len(picks) == 1:
            step, start = 1, int(picks[0])
        else:
            start, step = int(picks[0]), int(picks[1] - picks[0])
        k = (multi[f[1]] - start) // step
        keep &= (k * step == multi[f[1]] - start) & (k >= 0) & (k < len(picks))
        coords.append(k)
    rows = np.flatnonzero(keep)
    shape = plan.shape
    new = [np.zeros(len(rows), np.intp) if c is None else c[rows] for c in coords]
    index = np.ravel_multi_index(new, shape) if new else np.zeros(len(rows), np.intp)
    order = np.argsort(index, kind="stable")
    return index[order], outliers.values[rows[order]], outliers.exponent


def compressed(sc, plan):
    """The answer of a basic index with at least one axis and no empty one: a SignCut over
    the selected entries of each mode's signs."""
    from signcut import _algebra
    signs, scales = [], []
    for f in plan.out:
        if f[0] == "new":
            signs.append(np.zeros((sc.width, 1), np.uint64))
            scales.append(None)
        else:
            signs.append(select_bits(sc.signs[f[1]], f[2], sc.shape[f[1]]))
            scale = sc.scales[f[1]]
            scales.append(None if scale is None else scale[f[2]])
    coef = _algebra.check_float32(drop_weights(sc, plan.drops), "indexing") if plan.drops \
        else sc.coef
    return _algebra.derive(sc, signs, coef, tensor_shape=plan.shape, tensorize=None,
                           outliers=sparse_subset(sc, plan), scales=scales)


def getitem(sc, key):
    """``sc[key]`` by NumPy's rules (for a SignCut that is not tensorized)."""
    plan = parse_index(key, sc.shape)
    if plan.advanced or not plan.out or 0 in plan.shape:
        return dense(sc, plan)
    return compressed(sc, plan)

"""Scale vectors and weighted fits: ``decompose(A, scales=..., col_weights=d)``.

The result represents ``diag(r) (sum_j c_j s_j t_j^T) diag(k)`` (for an order-k tensor, a
vector per mode that multiplies that mode's signs), plus the sparse part. Sign cuts spread
``|c_j|`` evenly over the entries they touch, so rows and columns of very different sizes
share each cut badly; scales take the sizes out first.

How a decomposition with scales or column weights runs (DESIGN.md, "Scales and weighted
fits"):

1. The target is ``T = (A - P) diag(d)``: the array less its sparse part, the columns (the
   last axis) times the column weights ``d`` (all 1 without them). Its Frobenius norm is the
   norm of the errors: ``||(A - approx) diag(d)||_F``, relative to ``||A diag(d)||_F``.
2. Balancing: the root mean square of each slice of each chosen mode is equalised by a few
   alternating normalisations of ``T`` (Sinkhorn's iteration on the squares), giving a
   vector per mode. The stored scales are those divided by ``d`` on the last mode (the
   column weights come out again), normalised to a largest entry of 1 and rounded to
   float16 (a vector that comes out constant is not stored).
3. The cuts fit ``B = (A - P) / (r ⊗ k)`` with the matrix or tensor engine (with the stored,
   rounded scales: the representation is exact whatever the rounding). The engine minimises
   the error of ``B``, a norm that weights entry ``(i, j)`` of ``A`` by ``1 / (r_i k_j)``.
4. The error history is computed afterwards in the norm of step 1, exactly: the cuts are
   subtracted from ``T`` a block at a time (``subtract_cuts``), recomputing ``||T||`` after
   each block; ``rtol`` is met in that norm (the engine's own stop is a first guess that
   later rounds correct).

Measured (``benchmarks/bench_model.py``, the 36 encoder matrices of all-MiniLM-L6-v2):
refitting the scales after the cuts (alternating least squares on ``r`` and ``k``) lowered
the median error by 0.3% at 4 and 2 bits per entry and did not change the embeddings'
fidelity, so the scales are not refitted; 1 to 16 balancing rounds gave the same errors
within 0.3% (8 are run).
"""
import math
import operator
import time

import numpy as np

from signcut import _core
from signcut._indexing import BLOCK_ELEMENTS, words
from signcut._result import unpack_signs

SCALES = ("rows", "cols", "both", "auto")
BALANCE_ROUNDS = 8       # alternating normalisations (1 to 16 measured alike)
AUTO_SPREAD = 0.05       # "auto": modes whose slices' RMS vary by this much (beyond noise)
AUTO_SAMPLE = 1 << 14    # ... are tried on a sub-array of about this many entries
AUTO_MARGIN = 0.01       # ... and scaled when that lowers its error by this much
MAX_ROUNDS = 16          # engine runs to meet rtol in the weighted norm


# ------------------------------------------------------------------ arguments
def check_scales(scales, ndim):
    """``scales=`` -> None, ``"auto"`` or the sorted tuple of modes that get a scale vector:
    "rows" the first mode, "cols" the last, "both" every mode (for a matrix, rows and
    columns), or a sequence of mode indices (negative ones count from the end)."""
    if scales is None:
        return None
    if isinstance(scales, str):
        if scales not in SCALES:
            raise ValueError(f"scales must be None, 'rows', 'cols', 'both', 'auto' or a sequence "
                             f"of modes, got {scales!r}")
        if scales == "auto":
            return "auto" if ndim >= 2 else None
        modes = {"rows": (0,), "cols": (ndim - 1,), "both": tuple(range(ndim))}[scales]
    else:
        try:
            modes = [operator.index(a) for a in scales]
        except TypeError:
            raise TypeError(f"scales must be None, 'rows', 'cols', 'both', 'auto' or a sequence "
                            f"of modes, got {scales!r}") from None
        if any(not -ndim <= a < ndim for a in modes):
            raise ValueError(f"scales={list(modes)} names a mode outside the {ndim} modes")
        modes = tuple(sorted({a % ndim for a in modes}))
    if ndim < 2 and modes:
        raise ValueError(f"scales apply to arrays of 2 or more dimensions; this one has "
                         f"{ndim} (a scale per entry would store the array itself)")
    return modes


def check_col_weights(col_weights, shape, tensorize):
    """``col_weights=`` -> None or a float64 vector of ``shape[-1]`` non-negative finite
    weights, not all zero."""
    if col_weights is None:
        return None
    if len(shape) < 2:
        raise ValueError(f"col_weights apply to arrays of 2 or more dimensions (weights of the "
                         f"last axis); this one has shape {tuple(shape)}")
    if tensorize:
        raise ValueError("col_weights weight the last axis of A as it is: they cannot be "
                         "combined with shape= or axes=")
    if isinstance(col_weights, (str, bytes)):
        raise TypeError(f"col_weights must be an array of numbers, got {type(col_weights).__name__}")
    d = np.asarray(col_weights)
    if d.dtype.kind not in "biuf":
        raise TypeError(f"col_weights must be real numbers, got dtype {d.dtype}")
    if d.shape != (shape[-1],):
        raise ValueError(f"col_weights must have one weight per column: shape ({shape[-1]},) "
                         f"for A of shape {tuple(shape)}, got {d.shape}")
    d = d.astype(np.float64)
    if not np.isfinite(d).all():
        raise ValueError(f"col_weights must be finite: {int((~np.isfinite(d)).sum())} NaN or "
                         "infinite weight(s)")
    if (d < 0).any():
        raise ValueError(f"col_weights must be >= 0: {int((d < 0).sum())} negative weight(s), "
                         f"the first {d[d < 0][0]} at column {int(np.flatnonzero(d < 0)[0])}")
    if not d.any():
        raise ValueError("col_weights are all zero: no column would count")
    return d


def _along(v, axis, ndim):
    """``v`` shaped to broadcast along ``axis`` of an ``ndim``-dimensional array."""
    shape = [1] * ndim
    shape[axis] = -1
    return np.reshape(v, shape)


# ------------------------------------------------------------------ "auto"
def spreads(arr, weights=None, sparse_at=None):
    """Per mode of ``arr``: how much the root mean squares of its slices vary beyond what
    sampling alone gives, ``sqrt(max(cv^2 - noise^2, 0))`` with ``cv`` their coefficient of
    variation and ``noise^2 = (kurtosis - 1) / (4 * entries per slice)`` (the spread of
    the RMS of that many independent entries). The columns times ``weights``; ``sparse_at``:
    ``(flat positions, values)`` to subtract first (the sparse part). Read in chunks of the
    first mode, in float64: no copy of ``arr``."""
    k = arr.ndim
    sums = [np.zeros(d) for d in arr.shape]
    fourth = 0.0
    rest = arr.size // arr.shape[0]
    step = max(1, BLOCK_ELEMENTS // max(1, rest))
    for i0 in range(0, arr.shape[0], step):
        x = np.array(arr[i0:i0 + step], dtype=np.float64)
        if sparse_at is not None:
            pos, values = sparse_at
            inside = (pos >= i0 * rest) & (pos < (i0 + len(x)) * rest)
            x.reshape(-1)[pos[inside] - i0 * rest] -= values[inside]
        if weights is not None:
            x *= _along(weights, k - 1, k)
        x *= x
        fourth += float(np.sum(x * x))
        for a in range(k):
            part = x.sum(axis=tuple(b for b in range(k) if b != a))
            if a == 0:
                sums[0][i0:i0 + len(x)] += part
            else:
                sums[a] += part
    size = arr.size
    second = float(sums[0].sum())
    if second == 0.0:
        return [0.0] * k
    kurtosis = fourth * size / second ** 2
    out = []
    for a, total in enumerate(sums):
        count = size // arr.shape[a]
        rms = np.sqrt(total / count)
        mean = rms.mean()
        cv2 = float((rms.std() / mean) ** 2) if mean > 0 else 0.0
        out.append(math.sqrt(max(cv2 - max(kurtosis - 1.0, 0.0) / (4.0 * count), 0.0)))
    return out


def sample(arr, weights=None, sparse_at=None, size=AUTO_SAMPLE):
    """A float32 sub-array of at most about ``size`` entries: the same random entries of each
    mode (fixed seed), the sparse part subtracted, the columns times ``weights``."""
    k = arr.ndim
    per_mode = max(2, int(size ** (1.0 / k)))
    rng = np.random.default_rng(0)
    picks = [np.sort(rng.choice(d, per_mode, replace=False)) if d > per_mode else np.arange(d)
             for d in arr.shape]
    out = np.array(arr[np.ix_(*picks)], dtype=np.float64)
    if sparse_at is not None and len(sparse_at[0]):
        multi = np.unravel_index(sparse_at[0], arr.shape)
        inside = np.ones(len(sparse_at[0]), bool)
        coords = []
        for a, p in enumerate(picks):
            j = np.clip(np.searchsorted(p, multi[a]), 0, len(p) - 1)
            inside &= p[j] == multi[a]
            coords.append(j)
        out[tuple(c[inside] for c in coords)] -= sparse_at[1][inside]
    if weights is not None:
        out *= _along(weights[picks[-1]], k - 1, k)
    return out.astype(np.float32), picks


def auto_modes(arr, cut_bits, weights=None, sparse_at=None):
    """The modes ``scales="auto"`` gives a scale vector.

    Candidates are the modes whose slices' RMS vary by at least ``AUTO_SPREAD`` (5%) beyond
    sampling noise (:func:`spreads`; none for a Gaussian or Student-t array: the plain run,
    bit for bit, at the cost of one pass over the array). Then a trial: a random sub-array
    (:func:`sample`, about 2**14 entries) is decomposed without scales and with the
    candidates scaled (``effort="fast"``, seed 0), each at the bits per entry the full
    array leaves its cuts (``cut_bits(modes)``: the scales' storage paid), and the scales
    are kept when they lower the error by ``AUTO_MARGIN`` (1%) or more."""
    from signcut._api import decompose
    from signcut._budget import width_for_bits
    spread = spreads(arr, weights, sparse_at)
    varied = tuple(a for a in range(arr.ndim) if spread[a] >= AUTO_SPREAD)
    if not varied:
        return ()
    part, _ = sample(arr, weights, sparse_at)
    if not part.any():
        return ()
    errors = []
    for modes in ((), varied):
        bits = cut_bits(modes)
        width = width_for_bits(bits * part.size, part.shape) if bits > 0 else 0
        errors.append(decompose(part, width=width, seed=0, scales=modes or None,
                                effort="fast" if part.ndim == 2 else "default").rel_error
                      if width else np.inf)
    return varied if errors[1] < (1 - AUTO_MARGIN) * errors[0] else ()


# ------------------------------------------------------------------ balancing
def _slice_sumsq(T2, axis, inverse):
    """Sum over the slices of ``axis`` of ``T2`` times the other modes' ``inverse`` weights
    (None: 1)."""
    k = T2.ndim
    operands = [T2, list(range(k))]
    for b, w in enumerate(inverse):
        if b != axis and w is not None:
            operands += [w, [b]]
    return np.einsum(*operands, [axis]).astype(np.float64)


def balance(T, modes):
    """Vectors per mode of ``modes`` (float64, None elsewhere) that equalise the root mean
    square of every slice of ``T`` along those modes: ``BALANCE_ROUNDS`` alternating
    normalisations. A slice of zeros gets 0."""
    T2 = np.square(T, dtype=np.float32)
    k, size = T.ndim, T.size
    scale = [None] * k
    inverse = [None] * k               # 1 / scale**2 (0 where the scale is 0)
    for _ in range(BALANCE_ROUNDS if len(modes) > 1 else 1):
        for a in modes:
            s = np.sqrt(_slice_sumsq(T2, a, inverse) / (size // T.shape[a]))
            scale[a] = s
            with np.errstate(divide="ignore"):
                inverse[a] = np.where(s > 0, 1.0 / np.square(s), 0.0).astype(np.float32)
    return scale


def to_float16(v):
    """A vector of scales normalised to a largest entry of 1 and rounded to float16 (a
    positive entry never rounds to 0), or None when it is constant (nothing to store) or
    all zero."""
    top = float(v.max()) if len(v) else 0.0
    if top <= 0:
        return None
    v = v / top
    if (v == 1.0).all():
        return None
    h = v.astype(np.float16)
    h[(h == 0) & (v > 0)] = np.float16(2.0 ** -24)      # the smallest float16
    return h


def choose(T, modes, weights):
    """The stored scales (a tuple, per mode None or float16) for the weighted target ``T``:
    ``modes`` balanced, the column weights divided out of the last mode."""
    k = T.ndim
    balanced = balance(T, modes) if modes else [None] * k
    if weights is not None:
        last = balanced[k - 1] if balanced[k - 1] is not None else np.ones(T.shape[-1])
        with np.errstate(divide="ignore", invalid="ignore"):
            balanced[k - 1] = np.where(weights > 0, last / weights, 0.0)
    return tuple(None if v is None else to_float16(v) for v in balanced)


def fit_scales(stored, weights):
    """The scales in the weighted target's space (float32): the stored ones, the last mode's
    times the column weights (None where neither)."""
    out = [None if v is None else v.astype(np.float64) for v in stored]
    if weights is not None:
        k = len(out)
        out[k - 1] = weights * (1.0 if out[k - 1] is None else out[k - 1])
    return [None if v is None else v.astype(np.float32) for v in out]


def divide(T, scales):
    """``T`` divided by the outer product of ``scales`` (0 where a scale is 0), float32."""
    B = np.array(T, dtype=np.float32, copy=True)
    for a, v in enumerate(scales):
        if v is not None:
            with np.errstate(divide="ignore"):
                inv = np.where(v != 0, 1.0 / v.astype(np.float64), 0.0).astype(np.float32)
            B *= _along(inv, a, B.ndim)
    return B


# ------------------------------------------------------------------ the fit
def factors(signs, dims, scales, blk):
    """The cuts ``blk`` of each mode as float32 rows of +-1 times the mode's scales."""
    out = []
    for bits, d, v in zip(signs, dims, scales):
        f = unpack_signs(bits[blk], d)
        out.append(f if v is None else f * v[None, :])
    return out


def subtract_cuts(T, signs, coef, scales, norm):
    """Subtract the cuts ``sum_j coef[j] ⊗_a (scales[a] ⊙ signs[a][j])`` from the float32
    C-contiguous tensor ``T`` in place, and give the error ``||T|| / norm`` after each cut.

    A block of cuts at a time (at most 64): their inner products with ``T`` from one matrix
    product with the first mode's factors and contractions with the others, their effect on
    each other from their Gram matrix, then one rank update of ``T`` and its exact norm
    (float64 sums), so the history never drifts. About four times the flops of a
    matrix-vector product per cut."""
    dims, k = T.shape, T.ndim
    w = len(coef)
    errors = np.empty(w)
    if not w:
        return errors
    flat = T.reshape(dims[0], -1)
    rest = flat.shape[1]
    step = max(1, min(64, BLOCK_ELEMENTS // max(1, rest)))
    e2 = _core.sumsq(T.reshape(-1))
    for j0 in range(0, w, step):
        blk = slice(j0, min(j0 + step, w))
        F = factors(signs, dims, scales, blk)
        c = np.asarray(coef[blk], np.float64)
        M = F[0] @ flat
        for a in range(1, k):
            M = np.einsum("bi,bij->bj", F[a], M.reshape(len(M), dims[a], -1))
        gram = np.ones((len(c), len(c)))
        for f in F:
            f = f.astype(np.float64)
            gram *= f @ f.T
        inner = M[:, 0].astype(np.float64) - np.tril(gram, -1) @ c   # <T before cut j, cut j>
        steps = e2 + np.cumsum(c * c * np.diagonal(gram) - 2.0 * c * inner)
        K = F[1] if k > 1 else np.ones((len(c), 1), np.float32)
        for a in range(2, k):
            K = (K[:, :, None] * F[a][:, None, :]).reshape(len(c), -1)
        flat -= (F[0].T * c.astype(np.float32)) @ K
        e2 = _core.sumsq(T.reshape(-1))
        steps[-1] = e2
        errors[blk] = np.sqrt(np.maximum(steps, 0.0)) / norm if norm > 0 else 0.0
    return errors


def fit(T, scales, norm, engine, *, more, rtol=None, max_seconds=None, callback=None,
        first_cut=0, last_signs=None):
    """Cuts of the weighted target ``T`` (float32, C-contiguous, overwritten by the
    remainder) with the scale vectors ``scales`` (its space: see :func:`fit_scales`).

    ``engine(B, count, rtol, max_seconds, callback, first_cut, last_signs)`` runs the
    matrix or tensor engine on ``B`` (overwritten; its callback counts cuts from
    ``first_cut``) and returns ``(signs, coef, errors, norm, stopped_by)``. Errors are
    ``||T - approx|| / norm`` after each cut; ``rtol`` is met in that norm: the engine first stops at ``rtol`` in its own (balanced) norm, and
    when that falls short, runs again on what is left with its stop moved by the ratio of
    the two norms' errors (at most ``MAX_ROUNDS`` runs); cuts past the first one that meets
    ``rtol`` are dropped. Returns ``(signs, coef, errors, stopped_by)``, ``coef`` float64 in
    ``T``'s units (the engine's times its power of two)."""
    t0 = time.perf_counter()
    parts, stopped_by = [], "width"
    left = math.sqrt(_core.sumsq(T.reshape(-1))) / norm if norm > 0 else 0.0
    ratio = 1.0           # the engine's relative error over the weighted one, last run
    for _ in range(MAX_ROUNDS):
        if more <= 0:
            stopped_by = "width"
            break
        if rtol is not None and left <= rtol:
            stopped_by = "rtol"
            break
        seconds = None
        if max_seconds is not None:
            seconds = max_seconds - (time.perf_counter() - t0)
            if seconds <= 0:
                stopped_by = "max_seconds"
                break
        B = divide(T, scales)
        top = float(np.abs(B).max())
        if top == 0.0:
            stopped_by = "exhausted"
            break
        shift = int(np.frexp(top)[1])
        B *= np.float32(np.ldexp(1.0, -shift))
        engine_rtol = None if rtol is None else min(1.0, rtol / left * ratio)
        run_callback = None if callback is None else \
            (lambda j, rel_error, scale=left: callback(j, rel_error * scale))  # j: whole run
        signs, coef, engine_errors, _, stopped_by = engine(
            B, more, engine_rtol, seconds, run_callback, first_cut, last_signs)
        del B
        coef = np.ldexp(np.asarray(coef, np.float64), shift)
        errors = subtract_cuts(T, signs, coef, scales, norm)
        count = len(coef)
        if rtol is not None and count:
            met = np.flatnonzero(errors <= rtol)
            if len(met):
                keep = int(met[0]) + 1
                parts.append(([b[:keep] for b in signs], coef[:keep], errors[:keep]))
                stopped_by = "rtol"
                break
        parts.append((signs, coef, errors))
        if not count or stopped_by != "rtol" or rtol is None:
            break
        # the engine met rtol in its norm but not in this one: run again on what is left
        now = errors[-1] / left
        ratio = min(1.0, float(engine_errors[-1]) / now) if now > 0 else 1.0
        left = errors[-1]
        first_cut += count
        more -= count
        last_signs = [b[-1] for b in signs]
    if not parts:
        return ([np.empty((0, words(d)), np.uint64) for d in T.shape], np.empty(0),
                np.empty(0), stopped_by)
    signs = [np.concatenate([p[0][a] for p in parts]) for a in range(T.ndim)]
    return (signs, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
            stopped_by)

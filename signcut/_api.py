"""signcut.decompose: budgets, seeds and threads in, a SignCut out."""
import operator
from dataclasses import dataclass

import numpy as np

from signcut import _budget as budget, _core, _scales
from signcut._result import Outliers, SignCut, index_dtype
from signcut import _validate
from signcut._validate import as_real_array, optional_float, optional_int

DEFAULT_BLOCK_SIZE = _core.MAX_BLOCK
MAX_NDIM = _core.MAX_NDIM
MAX_SWEEPS = 1000

# Search presets of the matrix engine (benchmarks/bench_effort.py measures them):
# warm_start: start each cut from the previous cut's signs on the longer side (same or lower
# error than random starts, fewer flips); restarts: starts per cut, each after the first a
# kick of the best signs so far; refine: backfitting passes after the greedy; growth_tol:
# relative growth that keeps a search going.
EFFORTS = {
    "fast": dict(warm_start=True, restarts=1, refine=0, growth_tol=1e-3),
    "default": dict(warm_start=True, restarts=1, refine=0, growth_tol=1e-6),
    "best": dict(warm_start=True, restarts=8, refine=0, growth_tol=1e-6),
}


def _width_from_budgets(shape, itemsize, width, bits_per_entry, ratio, sparse_bytes=0,
                        input_bytes=None, scale_bytes=0):
    """The largest width allowed by every budget given (None if none is given); the storage
    budgets also pay for ``sparse_bytes`` of outliers and ``scale_bytes`` of scale vectors,
    ``width`` counts cuts only. ``ratio`` counts against ``input_bytes`` (default: the dense
    input's, size * itemsize)."""
    size = int(np.prod(shape, dtype=np.int64))
    if input_bytes is None:
        input_bytes = size * itemsize
    sparse = " and ".join(f"the {n} bytes of {what}" for n, what in
                          ((sparse_bytes, "outliers"), (scale_bytes, "scales")) if n)
    sparse = f" besides {sparse}" if sparse else ""
    sparse_bytes += scale_bytes
    caps = []
    if width is not None:
        caps.append(min(width, budget.MAX_WIDTH))
    if bits_per_entry is not None:
        w = budget.width_for_bits(bits_per_entry * size - 8 * sparse_bytes, shape)
        if w < 1:
            raise ValueError(f"bits_per_entry={bits_per_entry} affords no cut{sparse} for shape "
                             f"{shape}: one cut costs {budget.cut_bits(shape) / size:.4g} bits "
                             "per entry")
        caps.append(w)
    if ratio is not None:
        w = budget.width_for_bytes(ratio * input_bytes - sparse_bytes, shape)
        if w < 1:
            raise ValueError(f"ratio={ratio} affords no cut{sparse} for shape {shape}: one cut takes "
                             f"{budget.signs_nbytes(1, shape)} bytes of {input_bytes}")
        caps.append(w)
    return min(caps) if caps else None


def _seed_state(seed):
    if isinstance(seed, np.random.Generator):
        return seed.integers(0, 2**64, size=4, dtype=np.uint64, endpoint=False)
    if isinstance(seed, np.random.SeedSequence):
        return seed.generate_state(4, np.uint64)
    if seed is not None:
        seed = optional_int(seed, "seed")
    return np.random.SeedSequence(seed).generate_state(4, np.uint64)


def _tensorize(arr, shape, axes):
    """arr reshaped to ``shape`` then permuted by ``axes``, and the record that undoes it."""
    if shape is None and axes is None:
        return arr, None
    if shape is None:
        shape = arr.shape
    try:
        shape = tuple(operator.index(d) for d in shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of integers, got {shape!r}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must have positive dimensions, got {shape}")
    if int(np.prod(shape, dtype=object)) != arr.size:
        raise ValueError(f"cannot tensorize an array of shape {arr.shape} ({arr.size} entries) into "
                         f"{shape} ({int(np.prod(shape, dtype=object))} entries): the sizes must "
                         "match; crop or pad the array first")
    if axes is None:
        axes = tuple(range(len(shape)))
    try:
        axes = tuple(operator.index(a) for a in axes)
    except TypeError:
        raise TypeError(f"axes must be a sequence of integers, got {axes!r}") from None
    if sorted(axes) != list(range(len(shape))):
        raise ValueError(f"axes {axes} is not a permutation of the {len(shape)} axes of {shape}")
    tensor = arr.reshape(shape).transpose(axes)
    return tensor, {"shape": list(arr.shape), "axes": list(axes)}


def _search_options(effort, restarts, refine, ndim):
    """The matrix engine's search options for an effort preset and explicit overrides."""
    if effort not in EFFORTS:
        raise ValueError(f"effort must be one of {', '.join(map(repr, EFFORTS))}, got {effort!r}")
    opts = dict(EFFORTS[effort])
    if restarts is not None:
        opts["restarts"] = optional_int(restarts, "restarts", minimum=1)
    if refine is not None:
        opts["refine"] = optional_int(refine, "refine", minimum=0)
    if ndim != 2 and (effort != "default" or restarts is not None or refine is not None):
        raise ValueError(f"effort, restarts and refine apply to matrices; the tensor engine "
                         f"(this array has {ndim} dimensions) runs the plain greedy")
    return opts


AUTO_SCALES_BITS = 4.0     # scales="auto" without a storage budget: tried at this many bits

# ------------------------------------------------------------------ outliers
AUTO_SIGMAS = 8.0          # "auto": entries beyond this many robust standard deviations ...
AUTO_MAX_FRACTION = 0.02   # ... but at most this fraction of the entries
AUTO_MAX_SHARE = 0.25      # ... and at most this share of a storage budget
AUTO_SAMPLE = 1 << 20      # entries sampled to estimate the spread


def _outlier_fraction(outliers):
    """Validate ``outliers=``: None, "auto" or a fraction in [0, 1)."""
    if outliers is None or (isinstance(outliers, str) and outliers == "auto"):
        return outliers
    if isinstance(outliers, str):
        raise ValueError(f"outliers must be a fraction in [0, 1) or 'auto', got {outliers!r}")
    q = optional_float(outliers, "outliers", allow_zero=True)
    if not q < 1:
        raise ValueError(f"outliers must be a fraction in [0, 1) or 'auto', got {q}")
    return q


def _abs_chunks(arr, weights=None):
    """|arr| (times ``weights`` along the last axis) as float32 chunks of about a million
    entries (any layout, no full copy)."""
    step = max(1, AUTO_SAMPLE // max(1, arr.size // max(1, arr.shape[0])))
    for i in range(0, arr.shape[0], step):
        chunk = np.abs(arr[i:i + step].astype(np.float32, copy=False))
        if weights is not None:
            chunk = chunk * weights.astype(np.float32)
        yield chunk.reshape(-1)


def auto_outlier_fraction(A, bits_per_entry=None, ratio=None, col_weights=None):
    """The fraction of entries ``decompose(A, outliers="auto")`` keeps apart from the cuts.

    Counts the entries beyond ``AUTO_SIGMAS`` (8) robust standard deviations, the spread being
    estimated as ``median(|A|) / 0.6745`` (on a fixed sample of at most 2**20 entries), and
    keeps at most ``AUTO_MAX_FRACTION`` (2%) of the entries and at most a quarter of a
    storage budget. A Gaussian array has no entry that far out (probability 1e-15), so it
    gets 0; heavy tails and planted spikes get the entries that stand out. With
    ``col_weights`` (see ``decompose``) the entries are measured times their column's weight.
    """
    arr = as_real_array(A)
    weights = _scales.check_col_weights(col_weights, arr.shape, None)
    size = arr.size
    if size > AUTO_SAMPLE:
        flat = np.random.default_rng(0).integers(0, size, AUTO_SAMPLE)
        where = np.unravel_index(flat, arr.shape)
        sample = np.abs(arr[where].astype(np.float64))
        if weights is not None:
            sample *= weights[where[-1]]
    else:
        sample = np.abs(arr.astype(np.float64))
        if weights is not None:
            sample *= weights
        sample = sample.reshape(-1)
    spread = float(np.median(sample)) / 0.6745
    if spread == 0.0:           # mostly zeros: the spread of the nonzero entries
        nonzero = sample[sample > 0]
        spread = float(np.median(nonzero)) / 0.6745 if len(nonzero) else 0.0
    if spread == 0.0:
        return 0.0
    threshold = np.float32(AUTO_SIGMAS * spread)
    count = sum(int(np.count_nonzero(c > threshold)) for c in _abs_chunks(arr, weights))
    count = min(count, int(AUTO_MAX_FRACTION * size))
    per_outlier = index_dtype(size).itemsize + 2
    if bits_per_entry is not None:
        count = min(count, int(AUTO_MAX_SHARE * bits_per_entry * size / (8 * per_outlier)))
    if ratio is not None:
        itemsize = arr.dtype.itemsize
        count = min(count, int(AUTO_MAX_SHARE * ratio * size * itemsize / per_outlier))
    return count / size


def _outlier_count(q, size):
    return int(np.floor(q * size + 0.5))


def select_outliers(A, count, weights=None):
    """The ``count`` largest-magnitude entries of ``A`` (times ``weights`` along the last
    axis, when given) as an :class:`Outliers` of ``A``'s values (flat indices into
    ``A.shape``; ties go to the lower index)."""
    size = A.size
    count = min(int(count), size)
    mag = np.empty(size, np.float32)
    np.abs(A, out=mag.reshape(A.shape), casting="unsafe")
    if weights is not None:
        mag.reshape(A.shape)[...] *= weights.astype(np.float32)
    if count == 0:
        index = np.empty(0, np.int64)
    else:
        threshold = np.partition(mag, size - count)[size - count]
        above = np.flatnonzero(mag > threshold)
        ties = np.flatnonzero(mag == threshold)[:count - len(above)]
        index = np.sort(np.concatenate([above, ties]))
    del mag
    values = A[np.unravel_index(index, A.shape)].astype(np.float64)
    top = float(np.abs(values).max()) if len(values) else 0.0
    exponent = int(np.frexp(top)[1]) - 15 if top > 0 else 0   # the largest in [2**14, 2**15)
    values = np.ldexp(values, -exponent).astype(np.float16)
    return Outliers(index.astype(index_dtype(size)), values, exponent, size, copy=False)


def _tensor_positions(index, tensorize, tensor_shape):
    """Flat indices in the user's layout -> flat indices in the decomposed tensor."""
    if not tensorize:
        return index.astype(np.intp)
    axes = tensorize["axes"]
    reshaped = [0] * len(axes)
    for i, a in enumerate(axes):
        reshaped[a] = tensor_shape[i]
    multi = np.unravel_index(index, reshaped)
    return np.ravel_multi_index([multi[a] for a in axes], tensor_shape)


# ------------------------------------------------------------------ continuing
def _init_tensorize(init, arr, shape, axes):
    """Check ``init`` against ``A``; the shape= and axes= of its tensorization if not given."""
    if not isinstance(init, SignCut):
        raise TypeError(f"init must be a SignCut, got {type(init).__name__}")
    if tuple(init.shape) != tuple(arr.shape):
        raise ValueError(f"init approximates an array of shape {init.shape}, but A has shape "
                         f"{arr.shape}")
    if shape is None and axes is None and init.tensorize:
        axes = init.tensorize["axes"]
        shape = [0] * len(axes)
        for i, a in enumerate(axes):
            shape[a] = init.tensor_shape[i]
    return shape, axes


def _init_scales(init, scales, weights):
    """A continuation keeps init's scales (``scales=`` must be left out) and the norm of its
    errors (``col_weights=`` given exactly when init had them): the modes of init's scales."""
    if scales is not None:
        raise ValueError(("init has its own scales" if init.has_scales else "init has no scales")
                         + f": leave scales out to continue it (scales={scales!r} asked)")
    if (weights is not None) != (init.error_norm == "col_weights"):
        raise ValueError("init was fitted with col_weights: pass the same col_weights"
                         if weights is None else "init was fitted without col_weights: "
                         "leave col_weights out")
    return tuple(a for a, v in enumerate(init.scales) if v is not None)


def _check_init(init, tensor, tensorize, norm):
    if init.tensorize != tensorize:
        raise ValueError(f"init was tensorized as {init.tensorize}, but this call asks for "
                         f"{tensorize} (leave shape= and axes= out to keep init's)")
    if tuple(init.tensor_shape) != tuple(tensor.shape):
        raise ValueError(f"init has modes {init.tensor_shape}, the tensor has {tensor.shape}")
    if init.norm is not None and not np.isclose(init.norm, norm, rtol=1e-5, atol=0.0):
        raise ValueError(f"init was computed from another array: its norm is {init.norm:.6g}, "
                         f"the norm of A is {norm:.6g}")


def _check_done(done, max_width):
    """init's cuts must fit in the budgets, which count them."""
    if max_width < done:
        raise ValueError(f"init already has {done} cuts, more than the budgets allow "
                         f"({max_width}); use init.truncate({max_width})")


def _scaled_float32(arr, exponent):
    """``arr / 2**exponent`` as a new float32 array, rounded once. Computed in float32 for
    float32 input and in float64 slices of about a million entries otherwise: NumPy's own
    casting loop allocates its buffer without holding the GIL, and under an address-space
    limit its MemoryError crashed the process instead of raising."""
    R = np.empty(arr.shape, dtype=np.float32)
    if arr.dtype == np.float32:
        np.multiply(arr, np.float32(np.ldexp(1.0, -exponent)), out=R)
        return R
    scale = np.ldexp(1.0, -exponent)
    flat = arr.reshape(-1) if arr.flags.c_contiguous else None
    if flat is not None:
        out, step = R.reshape(-1), 1 << 20
        for i in range(0, flat.size, step):
            out[i:i + step] = flat[i:i + step] * scale
    else:
        step = max(1, (1 << 20) // max(1, arr[0].size))
        for i in range(0, arr.shape[0], step):
            R[i:i + step] = arr[i:i + step] * scale
    return R


def _sumsq(R):
    """Sum of squares of a contiguous float32 array, accumulated in float64 (in C, without
    the float64 copies of chunks a NumPy dot needs)."""
    return _core.sumsq(R.reshape(-1))


def _subtract(R, scale_exponent, init, sparse, tensorize, n_threads, weights=None):
    """R (the scaled float32 tensor, times ``weights`` along its last axis when given) minus
    the sparse part and init's cuts (with their scales), weighted alike, in place."""
    if sparse is not None and len(sparse):
        pos = _tensor_positions(sparse.index, tensorize, R.shape)
        values = np.ldexp(sparse.dense_values(np.float64), -scale_exponent)
        if weights is not None:
            values *= weights[pos % R.shape[-1]]
        R.reshape(-1)[pos] -= values.astype(np.float32)
    if init is not None and init.width:
        coef = np.ldexp(init.coef.astype(np.float64), -scale_exponent).astype(np.float32)
        if weights is None and not init.has_scales:
            _core.expand(R, init.signs, coef, -1.0, n_threads)
        else:
            cuts = SignCut(R.shape, init.signs, coef, scales=init.scales)._expand_modes(n_threads)
            if weights is not None:
                cuts *= weights.astype(np.float32)
            R -= cuts


def decompose(A, *, width=None, bits_per_entry=None, ratio=None, rtol=None, max_seconds=None,
              seed=None, block_size=None, n_threads=None, callback=None, shape=None, axes=None,
              outliers=None, init=None, effort="default", restarts=None, refine=None,
              scales=None, col_weights=None):
    """Greedy signed cut decomposition of a matrix or a tensor of any order.

    Approximates a matrix ``A`` (m x n) by ``sum_j coef[j] * s_j t_j^T`` with sign vectors
    ``s_j`` and ``t_j``, and a tensor of order k by ``sum_j coef[j] * s1_j ⊗ ... ⊗ sk_j``.
    Each cut starts from signs (random for tensors; for matrices the previous cut's, see
    ``effort``) and sets each mode's signs to the sign of the remainder ``R`` contracted with
    the other modes' signs (for a matrix: ``s = sign(R t)``, ``t = sign(R^T s)``) while
    ``|<R, s1 ⊗ ... ⊗ sk>|`` grows, then subtracts the cut with
    ``c = <R, s1 ⊗ ... ⊗ sk> / R.size``. Matrices go through the matrix engine (incremental
    products through float16 copies of the remainder, cuts subtracted a block at a time);
    other orders through the tensor engine (float32). Both are incremental and lazy.

    Parameters
    ----------
    A : array_like, 1 to 32 dimensions, real
        Any real dtype and memory layout. The engine computes in float32.
    width : int, optional
        Stop after this many cuts (cuts only: a sparse part is not counted).
    bits_per_entry : float, optional
        Stop when ``width * (sum(shape) + 32) / size`` (plus the sparse part's bits per entry,
        with ``outliers=``) would exceed this.
    ratio : float, optional
        Stop when the compressed bytes (``nbytes``, the sparse part included) over the bytes
        of ``A`` in its own dtype would exceed this.
    rtol : float, optional
        Stop once the relative Frobenius error is at most ``rtol``.
    max_seconds : float, optional
        Stop after this much wall time.
    seed : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Seed of the random starts; the same seed gives the same bits for any ``n_threads``.
    block_size : int, optional
        Cuts kept pending before they are subtracted from the remainder at once (1..64,
        default 64).
    n_threads : int, optional
        OpenMP threads at most (default: all available; -1 means the same). More than the
        process has cores are not started (each core runs one); above 4096 is refused
        with ValueError. The engine times
        its cuts with one thread and with all now and then, and uses one where that is clearly
        faster (small matrices, many or busy cores). The result does not depend on it.
    callback : callable, optional
        ``callback(k, rel_error)`` after each cut; returning True stops and keeps the cuts.
    shape, axes : sequence of int, optional
        Tensorize first: decompose ``A.reshape(shape).transpose(axes)`` (sizes must match
        exactly; crop or pad the array first otherwise). An image (H, W, 3) with
        ``shape=(H//8, 8, W//8, 8, 3), axes=(0, 2, 1, 3, 4)`` becomes a tensor of 8 x 8 blocks.
        Smaller modes mean more cuts for the same storage. ``expand()`` undoes it.
    effort : {"fast", "default", "best"}
        Matrices only: how hard each cut is searched. "default" starts each cut from the
        previous cut's signs on the longer side (the paper starts from random signs: the same
        error on square matrices, lower on tall or wide ones); "fast" also ends a search once
        it grows by less than 0.1% (less time, about 10% more error at 8 bits per entry);
        "best" keeps the best of 8 starts per cut (``restarts=8``: about 16% less error at
        about 3x the time). Figures: ``benchmarks/bench_effort.py``.
    restarts : int, optional
        Matrices only: starts per cut (overrides the preset). Each start after the first is a
        kick of the best signs found so far (1 in 16 entries of ``t`` flipped at random, then
        the search again): an iterated local search, which measured far better per second
        than fully random restarts.
    refine : int, optional
        Matrices only: backfitting passes after the greedy (overrides the preset). Each pass
        adds every cut back to the remainder in turn and searches it again from its own
        signs; the error history is then recomputed exactly, and prefixes of the result
        remain valid (coarser) approximations. Measured: 2% less error per pass for about
        the time of the greedy; not in a preset.
    outliers : float in [0, 1) or "auto", optional
        Keep this fraction of the entries, the largest in magnitude, apart from the cuts as a
        sparse part (flat index as uint32, or uint64 from 2**32 entries, and a float16 value
        scaled by one power of two): the cuts approximate ``A`` minus the rounded outliers.
        The sparse part is taken in ``A``'s own layout (before ``shape=``/``axes=``). It
        counts in ``bits_per_entry`` and ``ratio`` (the cuts get what it leaves), not in
        ``width``, which counts cuts only. ``"auto"`` takes the entries beyond 8 robust
        standard deviations (see :func:`auto_outlier_fraction`): none on Gaussian data.
        Default None (or 0): no sparse part.
    init : SignCut, optional
        Continue this decomposition of ``A``: its cuts (and sparse part) are kept and new
        cuts approximate what they leave. Budgets count the total (``width=10`` adds cuts
        until there are 10 in all). Shape, tensorization and sparse part must agree with
        this call (shape=, axes= and outliers= may be left out to keep init's). The random
        starts of cut k depend only on the seed and k, so with the seed init was made with
        ``decompose(A, init=r.truncate(k), width=w, seed=s)`` retraces ``r = decompose(A,
        width=w, seed=s)`` up to float32 rounding (see the README). init's scales are kept
        (leave ``scales`` out) and ``col_weights`` must be given exactly when init had them
        (the same ones: the norm of ``A`` in them is checked).
    scales : {None, "rows", "cols", "both", "auto"} or sequence of int
        Scale vectors (arrays of 2 or more dimensions): the result represents ``diag(r)
        (sum_j c_j s_j t_j^T) diag(k)`` ("rows": ``r`` only, "cols": ``k`` only, "both":
        both; for a tensor, "rows" is the first mode, "cols" the last, "both" every mode,
        and a sequence names the modes, each scale vector multiplying that mode's signs).
        The array is balanced first (after the sparse part is taken out): the root mean
        square of every row and column (every slice of a scaled mode) is equalised by a few
        alternating normalisations; the cuts fit the balanced array and the result
        multiplies the scales back. They are stored as float16 (largest entry 1) and count
        in ``nbytes``, ``bits_per_entry``, ``ratio`` and every storage budget (not in
        ``width``). Errors stay in the norm of ``A`` (see ``col_weights``), computed after
        the run. ``"auto"`` tries the modes whose slices' root mean squares vary by 5% or
        more beyond what independent entries give on a random sub-array of 2**14 entries
        (with and without their scales, at the bits per entry the full array leaves the
        cuts) and keeps scales that lower its error by 1% or more; an array without such
        modes (Gaussian, Student-t...) gets none: the plain run, bit for bit. Default None.
        Figures: ``benchmarks/bench_model.py`` (model weights: "both" gave the most
        faithful outputs).
    col_weights : array_like of shape (A.shape[-1],), optional
        Non-negative weights of the columns (the last axis): the cuts minimise
        ``||(A - approx) diag(col_weights)||_F``, for model weights the root mean square of
        each input feature over calibration data (``signcut.weights.calibration_stats``).
        The columns are fitted times their weights and divided by them after, which stores
        a column scale vector (float16, counted like ``scales``); a column of weight 0 is
        approximated by zeros. ``errors``, ``rel_error``, ``norm`` and ``rtol`` are then in
        that weighted norm (``error_norm`` is ``"col_weights"``), and ``outliers`` are the
        entries largest times their column's weight. Not with ``shape=``/``axes=``.

    The decomposition stops at whichever budget is reached first; at least one of width,
    bits_per_entry, ratio, rtol and max_seconds must be given. Without a storage budget the
    width is capped where the cuts would take 32 bits per entry (at least one cut). It also
    stops, whatever the budget (``stopped_by`` "exhausted"), once the approximation is exact
    to float32: a relative error of at most 2**-23, or a remainder of exactly zero. Ctrl-C
    interrupts it (KeyboardInterrupt) within a fraction of a second.

    Sparse matrices and operators: a ``scipy.sparse`` matrix or array (any format and real
    dtype; duplicates summed as scipy does) or a ``scipy.sparse.linalg.LinearOperator`` is
    decomposed without ever forming it densely (``signcut._sparse``): the remainder stays
    implicit, memory is the input, the signs and O(m + n). Budgets, seeds, callback, threads
    and ``effort``/``restarts`` work as for matrices; ``ratio`` counts against the sparse
    input's own bytes (data, indices, pointers), and without a storage budget the width stops
    where the cuts would take those bytes. ``init`` continues a decomposition of the same
    matrix (made from it with either kind of input: sparse, operator or dense) as for
    matrices, and with the seed it was made with gives the same cuts as one long run.
    ``shape``, ``axes``, ``outliers`` and ``refine`` are refused. An operator is read through
    ``matvec``/``rmatvec`` only, one full product per half step (slower: many products per cut); its Frobenius norm is exact
    when the smaller side is at most 4096 (that many products) or it wraps a matrix, else
    estimated from random probes (Hutchinson, to 1% standard error), and errors and ``rtol``
    are relative to that estimate; ``ratio`` is refused.

    Returns
    -------
    SignCut
        ``stopped_by`` says which rule ended the run ("width", "rtol", "max_seconds",
        "callback", "exhausted"). With scales or col_weights, the engine fits the balanced
        array, so ``callback``'s errors are estimates (those of the balanced array, in
        proportion); the result's errors are exact.
    """
    from signcut import _sparse
    if _sparse.implicit_kind(A) is not None:
        if scales is not None or col_weights is not None:
            raise ValueError("scales= and col_weights= apply to dense arrays, not to sparse "
                             "matrices or operators")
        return _sparse.decompose_implicit(
            A, width=width, bits_per_entry=bits_per_entry, ratio=ratio, rtol=rtol,
            max_seconds=max_seconds, seed=seed, block_size=block_size, n_threads=n_threads,
            callback=callback, shape=shape, axes=axes, outliers=outliers, init=init,
            effort=effort, restarts=restarts, refine=refine)
    return _run(_plan(A, width=width, bits_per_entry=bits_per_entry, ratio=ratio, rtol=rtol,
                      max_seconds=max_seconds, seed=seed, block_size=block_size,
                      n_threads=n_threads, callback=callback, shape=shape, axes=axes,
                      outliers=outliers, init=init, effort=effort, restarts=restarts,
                      refine=refine, scales=scales, col_weights=col_weights))


@dataclass
class _Plan:
    """A dense decomposition with every argument checked and its budget known, before any
    work on the array (:func:`_plan`); :func:`_run` carries it out."""
    arr: np.ndarray             # the array as decomposed (after shape= / axes=)
    tensorize: object
    init: object                # the SignCut continued, or None
    sparse: object              # the Outliers kept apart (init's, or selected), or None
    weights: object             # col_weights (float64, along the last axis), or None
    modes: tuple                # the modes given scale vectors (new runs; init keeps its own)
    budgets: tuple              # (width, bits_per_entry, ratio, bytes of the sparse part)
    max_width: int              # cuts in all, init's included
    rtol: object
    max_seconds: object
    block_size: int
    n_threads: int
    state: np.ndarray
    search: dict
    callback: object

    @property
    def done(self):
        """Cuts init already has."""
        return 0 if self.init is None else self.init.width

    @property
    def fitting(self):
        """Whether the cuts fit a scaled or weighted target (signcut._scales)."""
        return bool(self.modes) or self.weights is not None or \
            (self.init is not None and self.init.has_scales)

    def width_cap(self, scale_bytes):
        """The most cuts the budgets allow beside ``scale_bytes`` of scale vectors."""
        width, bits_per_entry, ratio, sparse_bytes = self.budgets
        cap = _width_from_budgets(self.arr.shape, self.arr.dtype.itemsize, width,
                                  bits_per_entry, ratio, sparse_bytes, scale_bytes=scale_bytes)
        return budget.width_32(self.arr.shape) if cap is None else cap

    def scale_bytes(self, modes):
        """Bytes of the scale vectors stored for ``modes`` (and for col_weights)."""
        last = {self.arr.ndim - 1} if self.weights is not None else set()
        return budget.scales_nbytes([self.arr.shape[a] for a in set(modes) | last])

    def engine(self, R, count, rtol, max_seconds, callback, first_cut, last=None,
               ref_norm2=0.0):
        """``count`` cuts of R (overwritten) by the engine, a matrix's search starting next
        to the signs ``last`` of the cut before (warm starts): ``_core.decompose``'s tuple."""
        warm = None
        if last is not None and R.ndim == 2 and self.search["warm_start"]:
            warm = tuple(last)
        return _core.decompose(R, count, rtol or 0.0, max_seconds or 0.0, self.block_size,
                               MAX_SWEEPS, self.n_threads, self.state, callback,
                               warm_signs=warm, first_cut=first_cut, ref_norm2=ref_norm2,
                               **self.search)


def _plan(A, *, width, bits_per_entry, ratio, rtol, max_seconds, seed, block_size, n_threads,
          callback, shape, axes, outliers, init, effort, restarts, refine, scales,
          col_weights):
    """Check every argument of :func:`decompose` for a dense array and work out what it
    will do: the sparse part, the scaled modes ("auto" tried on a sample), the width."""
    orig = as_real_array(A)
    if init is not None:
        shape, axes = _init_tensorize(init, orig, shape, axes)
    outliers = _outlier_fraction(outliers)
    arr, tensorize = _tensorize(orig, shape, axes)
    if not 1 <= arr.ndim <= MAX_NDIM:
        raise ValueError(f"decompose takes arrays of 1 to {MAX_NDIM} dimensions, got {arr.ndim}-D "
                         f"with shape {arr.shape}")
    width = optional_int(width, "width")
    bits_per_entry = optional_float(bits_per_entry, "bits_per_entry")
    ratio = optional_float(ratio, "ratio")
    rtol = optional_float(rtol, "rtol", allow_zero=True)
    max_seconds = optional_float(max_seconds, "max_seconds")
    block_size = optional_int(block_size, "block_size", minimum=1)
    if block_size is None:
        block_size = DEFAULT_BLOCK_SIZE
    if block_size > _core.MAX_BLOCK:
        raise ValueError(f"block_size must be at most {_core.MAX_BLOCK}, got {block_size}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    if all(b is None for b in (width, bits_per_entry, ratio, rtol, max_seconds)):
        raise ValueError("give at least one stopping rule: width, bits_per_entry, ratio, rtol "
                         "or max_seconds")
    modes = _scales.check_scales(scales, arr.ndim)
    weights = _scales.check_col_weights(col_weights, orig.shape, tensorize)
    if init is not None:
        modes = _init_scales(init, scales, weights)
    if outliers == "auto":
        outliers = auto_outlier_fraction(orig, bits_per_entry, ratio, weights)
    sparse = None
    if init is not None:
        sparse = init.outliers
        have = 0 if sparse is None else len(sparse)
        if outliers is not None and _outlier_count(outliers, orig.size) != have:
            raise ValueError(f"init keeps {have} outliers but outliers={outliers} asks for "
                             f"{_outlier_count(outliers, orig.size)}: leave outliers out to "
                             "keep init's")
    elif outliers and _outlier_count(outliers, orig.size):     # none kept: the plain run
        # |A| and a partitioned copy of it (float32) to find the largest entries
        _validate.check_memory(8 * orig.size, f"selecting the outliers of shape {orig.shape}")
        sparse = select_outliers(orig, _outlier_count(outliers, orig.size), weights)
    plan = _Plan(arr, tensorize, init, sparse, weights, (),
                 (width, bits_per_entry, ratio, 0 if sparse is None else sparse.nbytes), 0,
                 rtol, max_seconds, block_size, _validate.thread_count(n_threads),
                 _seed_state(seed), _search_options(effort, restarts, refine, arr.ndim),
                 callback)
    if modes == "auto":
        def cut_bits(modes_):            # bits per entry the cuts get beside those scales
            if width is None and bits_per_entry is None and ratio is None:
                return AUTO_SCALES_BITS
            try:
                return plan.width_cap(plan.scale_bytes(modes_)) * budget.cut_bits(arr.shape) \
                    / arr.size
            except ValueError:           # the scales leave no cut
                return 0.0
        sparse_at = None
        if sparse is not None and len(sparse):
            sparse_at = (_tensor_positions(sparse.index, tensorize, arr.shape),
                         sparse.dense_values(np.float64))
        modes = _scales.auto_modes(arr, cut_bits, weights, sparse_at)
    plan.modes = tuple(modes or ())
    plan.max_width = plan.width_cap(init.scales_nbytes if init is not None else
                                    plan.scale_bytes(plan.modes))
    _check_done(plan.done, plan.max_width)
    # Working memory: a float32 copy (and, but for order 1, its transposed unfolding), plus
    # the signs of up to 32 bits per entry (a run that is exact to float32 stops; the engine
    # grows its arrays as it goes and reports MemoryError itself beyond that).
    copies = (1 if arr.ndim == 1 else 2) + plan.fitting    # fitting keeps the weighted target
    likely = min(plan.max_width, budget.width_32(arr.shape))
    _validate.check_memory(4 * arr.size * copies + likely * (sum(arr.shape) // 8 + 16),
                           f"decomposing an array of shape {arr.shape}")
    return plan


def _run(p):
    """Carry out a plan: the engine on a float32 copy of the array, a SignCut out."""
    # The engine works on A / 2**e with max|A| / 2**e in [0.5, 1): exact for normal numbers
    # (the same bits as without it), and no float32 sum can overflow or lose tiny inputs.
    exponent = np.frexp(_validate.max_abs(p.arr))[1]
    R = _scaled_float32(p.arr, exponent)
    last = None if not p.done else [b[p.done - 1] for b in p.init.signs]
    if p.fitting:
        return _run_fitted(p, R, exponent, last)
    shift, ref_norm2, norm_a = 0, 0.0, None
    if p.sparse is not None or p.init is not None:
        # The cuts fit what the sparse part and init's cuts leave, scaled again so that its
        # largest entry is in [0.5, 1); the engine's errors stay relative to A (ref_norm2).
        norm_a = np.sqrt(_sumsq(R))
        if p.init is not None:
            _check_init(p.init, p.arr, p.tensorize, float(np.ldexp(norm_a, exponent)))
        _subtract(R, exponent, p.init, p.sparse, p.tensorize, p.n_threads)
        shift = int(np.frexp(_validate.max_abs(R))[1])
        R *= np.float32(np.ldexp(1.0, -shift))
        ref_norm2 = float(np.ldexp(norm_a * norm_a, -2 * shift))
    signs, coef, errors, norm, stopped_by = p.engine(
        R, p.max_width - p.done, p.rtol, p.max_seconds, p.callback, p.done, last, ref_norm2)
    del R
    coef = np.ldexp(coef, exponent + shift).astype(np.float32)
    norm = float(np.ldexp(norm, exponent + shift))          # what the engine was given
    left = None
    if norm_a is not None:
        norm_a = float(np.ldexp(norm_a, exponent))
        norm, left = norm_a, (norm / norm_a if norm_a > 0 else 0.0)
    return _assemble(p, signs, coef, errors, norm, left, stopped_by)


def _run_fitted(p, R, exponent, last):
    """The run with scale vectors or column weights: A (times col_weights) less the sparse part
    and init's cuts is the target; its cuts fit it divided by the scales, and its errors are
    computed in its own norm (signcut._scales)."""
    if p.weights is not None:
        R *= p.weights.astype(np.float32)
    norm_a = np.sqrt(_sumsq(R))
    if p.init is not None:
        _check_init(p.init, p.arr, p.tensorize, float(np.ldexp(norm_a, exponent)))
    _subtract(R, exponent, p.init, p.sparse, p.tensorize, p.n_threads, p.weights)
    left = np.sqrt(_sumsq(R)) / norm_a if norm_a > 0 else 0.0
    max_width = p.max_width
    if p.init is None:
        stored = _scales.choose(R, p.modes, p.weights)
        max_width = p.width_cap(sum(int(v.nbytes) for v in stored if v is not None))
    else:
        stored = p.init.scales
    signs, coef, errors, stopped_by = _scales.fit(
        R, _scales.fit_scales(stored, p.weights), norm_a, p.engine, more=max_width - p.done,
        rtol=p.rtol, max_seconds=p.max_seconds, callback=p.callback, first_cut=p.done,
        last_signs=last)
    del R
    coef = np.ldexp(coef, exponent).astype(np.float32)
    return _assemble(p, signs, coef, errors, float(np.ldexp(norm_a, exponent)), left,
                     stopped_by, stored)


def _assemble(p, signs, coef, errors, norm, sparse_error, stopped_by, scales=None):
    """The result of a plan's run: init's cuts first; a new sparse part records its own error
    (of the array less the sparse part, relative to the array's norm)."""
    init, sparse = p.init, p.sparse
    if init is not None:
        signs = [np.concatenate([a, b]) for a, b in zip(init.signs, signs)]
        coef = np.concatenate([init.coef, coef])
        errors = np.concatenate([init.errors, errors])
    if sparse is not None:
        sparse = sparse.copy()
        if init is None:
            sparse.error = float(sparse_error)
    result = SignCut(p.arr.shape, signs, coef, errors, norm=norm, orig_dtype=p.arr.dtype,
                     tensorize=p.tensorize, outliers=sparse, copy=False, scales=scales,
                     error_norm="frobenius" if p.weights is None else "col_weights")
    result.stopped_by = stopped_by
    return result

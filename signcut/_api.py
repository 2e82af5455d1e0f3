"""signcut.decompose: budgets, seeds and threads in, a SignCut out."""
import operator

import numpy as np

from signcut import _budget as budget, _core
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
                        input_bytes=None):
    """The largest width allowed by every budget given (None if none is given); the storage
    budgets also pay for ``sparse_bytes`` of outliers, ``width`` counts cuts only. ``ratio``
    counts against ``input_bytes`` (default: the dense input's, size * itemsize)."""
    size = int(np.prod(shape, dtype=np.int64))
    if input_bytes is None:
        input_bytes = size * itemsize
    sparse = f" besides the {sparse_bytes} bytes of outliers" if sparse_bytes else ""
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


def _abs_chunks(arr):
    """|arr| as float32 chunks of about a million entries (any layout, no full copy)."""
    step = max(1, AUTO_SAMPLE // max(1, arr.size // max(1, arr.shape[0])))
    for i in range(0, arr.shape[0], step):
        yield np.abs(arr[i:i + step].astype(np.float32, copy=False)).reshape(-1)


def auto_outlier_fraction(A, bits_per_entry=None, ratio=None):
    """The fraction of entries ``decompose(A, outliers="auto")`` keeps apart from the cuts.

    Counts the entries beyond ``AUTO_SIGMAS`` (8) robust standard deviations, the spread being
    estimated as ``median(|A|) / 0.6745`` (on a fixed sample of at most 2**20 entries), and
    keeps at most ``AUTO_MAX_FRACTION`` (2%) of the entries and at most a quarter of a
    storage budget. A Gaussian array has no entry that far out (probability 1e-15), so it
    gets 0; heavy tails and planted spikes get the entries that stand out.
    """
    arr = as_real_array(A)
    size = arr.size
    if size > AUTO_SAMPLE:
        flat = np.random.default_rng(0).integers(0, size, AUTO_SAMPLE)
        sample = np.abs(arr[np.unravel_index(flat, arr.shape)].astype(np.float64))
    else:
        sample = np.abs(arr.astype(np.float64).reshape(-1))
    spread = float(np.median(sample)) / 0.6745
    if spread == 0.0:           # mostly zeros: the spread of the nonzero entries
        nonzero = sample[sample > 0]
        spread = float(np.median(nonzero)) / 0.6745 if len(nonzero) else 0.0
    if spread == 0.0:
        return 0.0
    threshold = np.float32(AUTO_SIGMAS * spread)
    count = sum(int(np.count_nonzero(c > threshold)) for c in _abs_chunks(arr))
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


def select_outliers(A, count):
    """The ``count`` largest-magnitude entries of ``A`` as an :class:`Outliers` (flat
    indices into ``A.shape``; ties go to the lower index)."""
    size = A.size
    count = min(int(count), size)
    mag = np.empty(size, np.float32)
    np.abs(A, out=mag.reshape(A.shape), casting="unsafe")
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


def _subtract(R, scale_exponent, init, sparse, tensorize, n_threads):
    """R (the scaled float32 tensor) minus the sparse part and init's cuts, in place."""
    if sparse is not None and len(sparse):
        pos = _tensor_positions(sparse.index, tensorize, R.shape)
        R.reshape(-1)[pos] -= np.ldexp(sparse.dense_values(np.float64),
                                       -scale_exponent).astype(np.float32)
    if init is not None and init.width:
        coef = np.ldexp(init.coef.astype(np.float64), -scale_exponent).astype(np.float32)
        _core.expand(R, init.signs, coef, -1.0, n_threads)


def decompose(A, *, width=None, bits_per_entry=None, ratio=None, rtol=None, max_seconds=None,
              seed=None, block_size=None, n_threads=None, callback=None, shape=None, axes=None,
              outliers=None, init=None, effort="default", restarts=None, refine=None):
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
        width=w, seed=s)`` up to float32 rounding (see the README).

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
    """
    from signcut import _sparse
    if _sparse.implicit_kind(A) is not None:
        return _sparse.decompose_implicit(
            A, width=width, bits_per_entry=bits_per_entry, ratio=ratio, rtol=rtol,
            max_seconds=max_seconds, seed=seed, block_size=block_size, n_threads=n_threads,
            callback=callback, shape=shape, axes=axes, outliers=outliers, init=init,
            effort=effort, restarts=restarts, refine=refine)
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
    if outliers == "auto":
        outliers = auto_outlier_fraction(orig, bits_per_entry, ratio)
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
        sparse = select_outliers(orig, _outlier_count(outliers, orig.size))
    sparse_bytes = 0 if sparse is None else sparse.nbytes
    max_width = _width_from_budgets(arr.shape, arr.dtype.itemsize, width, bits_per_entry, ratio,
                                    sparse_bytes)
    if max_width is None:
        max_width = budget.width_32(arr.shape)
    done = 0 if init is None else init.width
    _check_done(done, max_width)
    n_threads = _validate.thread_count(n_threads)
    state = _seed_state(seed)
    search = _search_options(effort, restarts, refine, arr.ndim)
    warm = None
    if done and arr.ndim == 2 and search["warm_start"]:
        warm = (init.signs[0][done - 1], init.signs[1][done - 1])

    # Working memory: a float32 copy (and, but for order 1, its transposed unfolding), plus
    # the signs of up to 32 bits per entry (a run that is exact to float32 stops; the engine
    # grows its arrays as it goes and reports MemoryError itself beyond that).
    copies = 1 if arr.ndim == 1 else 2
    likely = min(max_width, budget.width_32(arr.shape))
    _validate.check_memory(4 * arr.size * copies + likely * (sum(arr.shape) // 8 + 16),
                           f"decomposing an array of shape {arr.shape}")
    # The engine works on A / 2**e with max|A| / 2**e in [0.5, 1): exact for normal numbers
    # (the same bits as without it), and no float32 sum can overflow or lose tiny inputs.
    exponent = np.frexp(_validate.max_abs(arr))[1]
    R = _scaled_float32(arr, exponent)
    shift, ref_norm2, norm_a = 0, 0.0, None
    if sparse is not None or init is not None:
        # The cuts fit what the sparse part and init's cuts leave, scaled again so that its
        # largest entry is in [0.5, 1); the engine's errors stay relative to A (ref_norm2).
        norm_a = np.sqrt(_sumsq(R))
        if init is not None:
            _check_init(init, arr, tensorize, float(np.ldexp(norm_a, exponent)))
        _subtract(R, exponent, init, sparse, tensorize, n_threads)
        shift = int(np.frexp(_validate.max_abs(R))[1])
        R *= np.float32(np.ldexp(1.0, -shift))
        ref_norm2 = float(np.ldexp(norm_a * norm_a, -2 * shift))
    signs, coef, errors, norm, stopped_by = _core.decompose(
        R, max_width - done, rtol or 0.0, max_seconds or 0.0, block_size, MAX_SWEEPS,
        n_threads, state, callback, warm_signs=warm, first_cut=done, ref_norm2=ref_norm2,
        **search)
    del R
    coef = np.ldexp(coef, exponent + shift).astype(np.float32)
    norm = float(np.ldexp(norm, exponent + shift))          # what the engine was given
    if norm_a is not None:
        norm_a, left = float(np.ldexp(norm_a, exponent)), norm
        norm = norm_a
    if init is not None:
        signs = [np.concatenate([a, b]) for a, b in zip(init.signs, signs)]
        coef = np.concatenate([init.coef, coef])
        errors = np.concatenate([init.errors, errors])
    if sparse is not None:
        sparse = sparse.copy()
        if init is None:
            sparse.error = left / norm_a if norm_a > 0 else 0.0
    result = SignCut(arr.shape, signs, coef, errors, norm=norm, orig_dtype=arr.dtype,
                     tensorize=tensorize, outliers=sparse, copy=False)
    result.stopped_by = stopped_by
    return result

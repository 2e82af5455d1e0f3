"""signcut.decompose: budgets, seeds and threads in, a SignCut out."""
import operator

import numpy as np

from signcut import _core
from signcut._result import SignCut, signs_nbytes
from signcut import _validate
from signcut._validate import as_real_array, optional_float, optional_int

DEFAULT_BLOCK_SIZE = 64
MAX_NDIM = 32
MAX_SWEEPS = 1000


def _width_from_budgets(shape, itemsize, width, bits_per_entry, ratio):
    """The largest width allowed by every budget given (None if none is given)."""
    size = int(np.prod(shape, dtype=np.int64))
    per_cut_bits = sum(shape) + 32
    caps = []
    if width is not None:
        caps.append(width)
    if bits_per_entry is not None:
        w = int(np.floor(bits_per_entry * size / per_cut_bits * (1 + 1e-12)))
        if w < 1:
            raise ValueError(f"bits_per_entry={bits_per_entry} affords no cut for shape {shape}: "
                             f"one cut costs {per_cut_bits / size:.4g} bits per entry")
        caps.append(w)
    if ratio is not None:
        budget = ratio * size * itemsize
        w = int(8 * budget // per_cut_bits)
        while w > 0 and signs_nbytes(w, shape) > budget:
            w -= 1
        while signs_nbytes(w + 1, shape) <= budget:
            w += 1
        if w < 1:
            raise ValueError(f"ratio={ratio} affords no cut for shape {shape}: one cut takes "
                             f"{signs_nbytes(1, shape)} bytes of {size * itemsize}")
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


def _threads(n_threads):
    if n_threads is None or n_threads == -1:
        return _core.default_threads()
    return optional_int(n_threads, "n_threads", minimum=1)


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


def decompose(A, *, width=None, bits_per_entry=None, ratio=None, rtol=None, max_seconds=None,
              seed=None, block_size=None, n_threads=None, callback=None, shape=None, axes=None):
    """Greedy signed cut decomposition of a matrix or a tensor of any order.

    Approximates a matrix ``A`` (m x n) by ``sum_j coef[j] * s_j t_j^T`` with sign vectors
    ``s_j`` and ``t_j``, and a tensor of order k by ``sum_j coef[j] * s1_j ⊗ ... ⊗ sk_j``.
    Each cut starts from random signs and sets each mode's signs to the sign of the remainder
    ``R`` contracted with the other modes' signs (for a matrix: ``s = sign(R t)``,
    ``t = sign(R^T s)``) while ``|<R, s1 ⊗ ... ⊗ sk>|`` grows, then subtracts the cut with
    ``c = <R, s1 ⊗ ... ⊗ sk> / R.size``. Matrices go through the matrix engine (incremental
    products, cuts subtracted a block at a time); other orders through the tensor engine.

    Parameters
    ----------
    A : array_like, 1 to 32 dimensions, real
        Any real dtype and memory layout. The engine computes in float32.
    width : int, optional
        Stop after this many cuts.
    bits_per_entry : float, optional
        Stop when ``width * (sum(shape) + 32) / size`` would exceed this.
    ratio : float, optional
        Stop when the compressed bytes over the bytes of ``A`` in its own dtype would exceed this.
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
        OpenMP threads (default: all available; -1 means the same).
    callback : callable, optional
        ``callback(k, rel_error)`` after each cut; returning True stops and keeps the cuts.
    shape, axes : sequence of int, optional
        Tensorize first: decompose ``A.reshape(shape).transpose(axes)`` (sizes must match
        exactly; crop or pad the array first otherwise). An image (H, W, 3) with
        ``shape=(H//8, 8, W//8, 8, 3), axes=(0, 2, 1, 3, 4)`` becomes a tensor of 8 x 8 blocks.
        Smaller modes mean more cuts for the same storage. ``expand()`` undoes it.

    The decomposition stops at whichever budget is reached first; at least one of width,
    bits_per_entry, ratio, rtol and max_seconds must be given. Without a storage budget the
    width is capped where the cuts would take 32 bits per entry. It also stops if the
    remainder becomes exactly zero. Ctrl-C interrupts it (KeyboardInterrupt) within a
    fraction of a second.

    Returns
    -------
    SignCut
    """
    arr, tensorize = _tensorize(as_real_array(A), shape, axes)
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
    if block_size > 64:
        raise ValueError(f"block_size must be at most 64, got {block_size}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    if all(b is None for b in (width, bits_per_entry, ratio, rtol, max_seconds)):
        raise ValueError("give at least one stopping rule: width, bits_per_entry, ratio, rtol "
                         "or max_seconds")
    max_width = _width_from_budgets(arr.shape, arr.dtype.itemsize, width, bits_per_entry, ratio)
    if max_width is None:
        max_width = _width_from_budgets(arr.shape, 4, None, 32.0, None)
    n_threads = _threads(n_threads)
    state = _seed_state(seed)

    # Working memory: a float32 copy (and, but for order 1, its transposed unfolding), plus
    # the signs.
    copies = 1 if arr.ndim == 1 else 2
    _validate.check_memory(4 * arr.size * copies + max_width * (sum(arr.shape) // 8 + 16),
                           f"decomposing an array of shape {arr.shape}")
    # The engine works on A / 2**e with max|A| / 2**e in [0.5, 1): exact for normal numbers
    # (the same bits as without it), and no float32 sum can overflow or lose tiny inputs.
    exponent = np.frexp(_validate.max_abs(arr))[1]
    R = np.empty(arr.shape, dtype=np.float32)
    np.multiply(arr, np.ldexp(1.0, -exponent), out=R, casting="unsafe")
    if arr.ndim == 2:
        s_bits, t_bits, coef, errors, norm, stopped_by = _core.matrix_decompose(
            R, max_width, rtol or 0.0, max_seconds or 0.0, block_size, MAX_SWEEPS, n_threads,
            state, callback)
        signs = (s_bits, t_bits)
    else:
        signs, coef, errors, norm, stopped_by = _core.tensor_decompose(
            R, max_width, rtol or 0.0, max_seconds or 0.0, MAX_SWEEPS, n_threads, state, callback,
            block_size=block_size)
    del R
    coef = np.ldexp(coef, exponent).astype(np.float32)
    norm = float(np.ldexp(norm, exponent))
    result = SignCut(arr.shape, signs, coef, errors, norm=norm, orig_dtype=arr.dtype,
                     tensorize=tensorize)
    result.stopped_by = stopped_by
    return result

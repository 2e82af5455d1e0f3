"""Sparse matrices and linear operators for signcut.decompose: the remainder stays implicit.

``decompose`` sends a ``scipy.sparse`` matrix or array, or a
``scipy.sparse.linalg.LinearOperator``, here. Neither is ever densified: the C engine
(src/sparse.c) keeps ``R = A - sum_j c_j s_j t_j^T`` implicit, reading A's rows and columns
(sparse) or one product per half step (operator), and the cuts from their packed signs.
"""
import logging
import sys
import warnings

import numpy as np

from signcut import _core, _validate
from signcut._result import SignCut

log = logging.getLogger("signcut")

MAX_INDEX = 2**31 - 1        # the engine's indices are int32
EXACT_NORM_SIDE = 4096       # an operator's norm is exact from this many products or fewer
PROBE_BLOCK = 32             # Hutchinson probes per matmat
MAX_PROBES = 512
NORM_RSE = 0.01              # ... until the estimate's relative standard error is below this
WARN_RSE = 0.02


def implicit_kind(A):
    """"sparse" for a scipy.sparse matrix or array, "operator" for a LinearOperator, else None
    (scipy is not imported for other inputs)."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(A):
        return "sparse"
    linalg = sys.modules.get("scipy.sparse.linalg")
    if linalg is not None and isinstance(A, linalg.LinearOperator):
        return "operator"
    return None


def _describe(A, kind):
    what = "scipy.sparse" if kind == "sparse" else "LinearOperator"
    return f"A ({type(A).__name__}, {what}, shape {getattr(A, 'shape', '?')})"


def _check_shape(A, name):
    shape = tuple(int(d) for d in A.shape)
    if len(shape) != 2:
        raise ValueError(f"{name} has {len(shape)} dimension(s); sparse matrices and operators "
                         "are decomposed as matrices (2 dimensions): densify a small one "
                         "(A.toarray()) or reshape it to 2 dimensions first")
    if min(shape) < 1:
        raise ValueError(f"{name} is empty; nothing to decompose")
    if max(shape) > MAX_INDEX:
        raise ValueError(f"{name} has a side longer than {MAX_INDEX}, more than the sparse "
                         "engine indexes (int32)")
    return shape


def _check_dtype(dtype, name):
    kind = np.dtype(dtype).kind
    if kind == "c":
        raise TypeError(f"{name} has complex dtype {dtype}; signcut decomposes real matrices "
                        "(decompose the real and imaginary parts separately)")
    if kind not in "biuf":
        raise TypeError(f"{name} has dtype {dtype}; expected a real numeric dtype (bool, "
                        "integer or floating)")


# ------------------------------------------------------------------ sparse input
def _input_nbytes(A):
    """The sparse input's own bytes: data, indices and pointers (None for formats without
    plain arrays: LIL, DOK)."""
    fmt = A.format
    if fmt == "coo":
        coords = A.coords if hasattr(A, "coords") else (A.row, A.col)
        return int(A.data.nbytes + sum(c.nbytes for c in coords))
    if fmt in ("csr", "csc", "bsr"):
        return int(A.data.nbytes + A.indices.nbytes + A.indptr.nbytes)
    if fmt == "dia":
        return int(A.data.nbytes + A.offsets.nbytes)
    return None


def _check_values(B, name):
    """Largest |value| of the canonical CSR or CSC matrix B, with the dense path's rules:
    finite, at most 2**126, not only float32 subnormals."""
    if B.nnz == 0:
        return 0.0
    data = B.data
    big = _validate.max_abs(data)
    if not np.isfinite(big):
        bad = np.flatnonzero(~np.isfinite(data))
        line = int(np.searchsorted(B.indptr, bad[0], side="right")) - 1
        where = (line, int(B.indices[bad[0]]))
        if B.format == "csc":
            where = where[::-1]
        raise ValueError(f"{name} contains {len(bad)} non-finite value(s) (NaN or Inf); the "
                         f"first is {data[bad[0]]!r} at (row, column) {where}")
    if big > _validate._LARGEST:
        raise ValueError(f"{name} has values up to {big:.3g}, beyond what signcut takes "
                         f"({_validate._LARGEST:.3g}: float32's range with room for the sums of "
                         "cuts): rescale first")
    if 0 < big < _validate._FLOAT32_TINY:
        raise ValueError(f"{name} has values of at most {big:.3g}, below float32's normal range "
                         f"(from {_validate._FLOAT32_TINY:.3g}): rescale first")
    return big


def prepare_sparse(A, name):
    """The engine's arrays for the sparse matrix A: CSR and CSC with float32 values scaled by
    2**-exponent (exact for normal numbers) and int32 indices, strictly increasing in each
    line (duplicates summed, as scipy does). Returns (arrays, exponent, input_nbytes, dtype).

    A canonical CSR or CSC input is read in place (its indices too when int32); other formats
    are converted to CSR once. Besides A, this holds 12 bytes per stored entry (the float32
    values twice and the other layout's indices) and the pointers as int64."""
    shape = _check_shape(A, name)
    _check_dtype(A.dtype, name)
    nbytes = _input_nbytes(A)
    B = A if A.format in ("csr", "csc") else A.tocsr()
    if not B.has_canonical_format:
        B = B.copy()
        B.sum_duplicates()
    if nbytes is None:
        nbytes = _input_nbytes(B)
    big = _check_values(B, name)
    exponent = int(np.frexp(big)[1]) if big > 0 else 0
    nnz, (m, n) = B.nnz, shape
    _validate.check_memory(12 * nnz + 16 * (m + n), f"the sparse engine's copy of {name}")
    val = np.empty(nnz, np.float32)
    np.multiply(B.data, np.ldexp(1.0, -exponent), out=val, casting="unsafe")
    scaled = type(B)((val, B.indices, B.indptr), shape=shape, copy=False)
    other = scaled.tocsc() if B.format == "csr" else scaled.tocsr()

    def lines(M):
        return (np.asarray(M.indptr, np.int64), np.asarray(M.indices, np.int32),
                np.asarray(M.data, np.float32))

    rows, cols = (scaled, other) if B.format == "csr" else (other, scaled)
    return lines(rows) + lines(cols), exponent, nbytes, np.dtype(A.dtype)


# ------------------------------------------------------------------ operators
def _apply(op, name, x, transposed):
    """A @ x (A.T @ x with transposed) for a vector or a block of columns x, as a real
    finite array of the image's length (times the columns); errors name A."""
    call = "rmatvec" if transposed else "matvec"
    if x.ndim == 2:
        call = "rmatmat" if transposed else "matmat"
    try:
        y = np.asarray(getattr(op, call)(x))
    except NotImplementedError as exc:
        raise TypeError(f"{name} cannot compute {'A.T @ y' if transposed else 'A @ x'} "
                        f"({call}): signcut needs both products") from exc
    except ValueError as exc:
        raise ValueError(f"{name}.{call} failed: {exc}") from exc
    if y.dtype.kind == "c":
        raise TypeError(f"{name}.{call} returned complex values; signcut decomposes real "
                        "operators")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name}.{call} returned dtype {y.dtype}, not real numbers")
    length = op.shape[1] if transposed else op.shape[0]
    if y.size != length * (x.shape[1] if x.ndim == 2 else 1):
        raise ValueError(f"{name}.{call} returned {y.size} values, expected "
                         f"{length * (x.shape[1] if x.ndim == 2 else 1)}")
    if not np.isfinite(y).all():
        raise ValueError(f"{name}.{call} returned non-finite values (NaN or Inf)")
    return y.reshape((length, x.shape[1]) if x.ndim == 2 else length)


def operator_norm2(op, name):
    """(||op||_F^2, relative standard error): exact for a MatrixLinearOperator (from its
    matrix) and when the smaller side is at most EXACT_NORM_SIDE (that many products, in
    blocks); otherwise Hutchinson's estimate E ||A z||^2 over Rademacher z, PROBE_BLOCK probes
    at a time until the standard error is below NORM_RSE of it (or MAX_PROBES probes)."""
    m, n = op.shape
    sc = getattr(op, "signcut", None)          # a SignCut's operator: exact from its signs
    if sc is not None and tuple(sc.shape) == (m, n):
        return float(sc.frobenius_norm()) ** 2, 0.0
    inner = getattr(op, "A", None)
    if inner is not None and tuple(getattr(inner, "shape", ())) == (m, n):
        if implicit_kind(inner) == "sparse":
            inner = inner.tocsr()
            inner.sum_duplicates()
            return float(np.sum(np.square(inner.data, dtype=np.float64))), 0.0
        return float(np.sum(np.square(np.asarray(inner, np.float64)))), 0.0
    transposed = m < n
    side = m if transposed else n

    def images(block):
        return np.sum(np.square(_apply(op, name, block, transposed), dtype=np.float64), axis=0)

    if side <= EXACT_NORM_SIDE:
        total = 0.0
        for j0 in range(0, side, 256):
            eye = np.zeros((side, min(256, side - j0)))
            eye[np.arange(j0, j0 + eye.shape[1]), np.arange(eye.shape[1])] = 1.0
            total += float(images(eye).sum())
        return total, 0.0
    rng = np.random.default_rng(0)
    samples = np.empty(0)
    while len(samples) < MAX_PROBES:
        z = rng.choice(np.array([-1.0, 1.0]), size=(side, PROBE_BLOCK))
        samples = np.concatenate([samples, images(z)])
        mean = samples.mean()
        rse = samples.std(ddof=1) / np.sqrt(len(samples)) / mean if mean > 0 else 0.0
        if rse < NORM_RSE:
            break
    log.debug("%s: ||A||_F^2 estimated from %d probes, relative standard error %.3g", name,
              len(samples), rse)
    if rse > WARN_RSE:
        warnings.warn(f"the Frobenius norm of {name} is estimated from {len(samples)} random "
                      f"probes with a relative standard error of {rse:.1%} (of its square): "
                      "errors and rtol are relative to that estimate", RuntimeWarning,
                      stacklevel=4)
    return float(mean), float(rse)


def _product(op, name, scale):
    """The engine's products: A @ signs or A.T @ signs, times scale, as float32."""
    def product(transposed, signs):
        out = np.multiply(_apply(op, name, signs, transposed), scale, dtype=np.float32)
        if not np.isfinite(out).all():
            raise ValueError(f"{name}'s products go beyond float32's range")
        return out
    return product


# ------------------------------------------------------------------ decompose
def _refuse(name, kind, shape, axes, outliers, search):
    what = "a sparse matrix" if kind == "sparse" else "an operator"
    if shape is not None or axes is not None:
        raise ValueError(f"shape= and axes= tensorize a dense array; {name} is decomposed as "
                         "a matrix: leave them out (or densify it first)")
    if outliers is not None and not (isinstance(outliers, (int, float)) and outliers == 0):
        raise ValueError(f"outliers= keeps the largest entries apart from the cuts as a sparse "
                         f"part; {name} is {what} and is decomposed as it is: leave outliers "
                         "out (or densify it to keep a sparse part)")
    if search["refine"]:
        raise ValueError(f"refine= backfits cuts against the dense remainder; {name} is {what}: "
                         "leave refine out (or use effort='best')")


def decompose_implicit(A, *, width, bits_per_entry, ratio, rtol, max_seconds, seed, block_size,
                       n_threads, callback, shape, axes, outliers, init, effort, restarts,
                       refine):
    """signcut.decompose for a scipy.sparse matrix or a LinearOperator (see its docstring)."""
    from signcut import _api     # _api dispatches here

    kind = implicit_kind(A)
    name = _describe(A, kind)
    search = _api._search_options(effort, restarts, refine, 2)
    _refuse(name, kind, shape, axes, outliers, search)
    if init is not None:
        _api._init_tensorize(init, A, None, None)      # a SignCut of A's shape
        if (init.tensorize or init.outliers is not None or init.has_scales
                or init.error_norm != "frobenius"):
            raise ValueError(f"init was made with shape=/axes=, outliers=, scales= or "
                             f"col_weights=, which {name} cannot continue: give a plain matrix "
                             "decomposition")
    width = _validate.optional_int(width, "width")
    bits_per_entry = _validate.optional_float(bits_per_entry, "bits_per_entry")
    ratio = _validate.optional_float(ratio, "ratio")
    rtol = _validate.optional_float(rtol, "rtol", allow_zero=True)
    max_seconds = _validate.optional_float(max_seconds, "max_seconds")
    block_size = _validate.optional_int(block_size, "block_size", minimum=1)
    block_size = _api.DEFAULT_BLOCK_SIZE if block_size is None else block_size
    if block_size > 64:
        raise ValueError(f"block_size must be at most 64, got {block_size}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    if all(b is None for b in (width, bits_per_entry, ratio, rtol, max_seconds)):
        raise ValueError("give at least one stopping rule: width, bits_per_entry, ratio, rtol "
                         "or max_seconds")
    if kind == "operator":
        if ratio is not None:
            raise ValueError(f"ratio= counts against the input's bytes, and {name} has none: "
                             "give width= or bits_per_entry=")
        m, n = _check_shape(A, name)
        _check_dtype(A.dtype, name)
        dtype, nbytes = np.dtype(A.dtype), None
    else:
        arrays, exponent, nbytes, dtype = prepare_sparse(A, name)
        m, n = A.shape
    shape2 = (m, n)
    max_width = _api._width_from_budgets(shape2, dtype.itemsize, width, bits_per_entry, ratio,
                                         input_bytes=nbytes)
    if max_width is None:
        # Without a storage budget: up to 32 bits per entry, and for a sparse input up to its
        # own bytes (beyond them the cuts no longer compress it).
        max_width = _api._width_from_budgets(shape2, 4, None, 32.0, None)
        if nbytes is not None:
            max_width = max(1, min(max_width, nbytes * 8 // (m + n + 32)))
    done = 0 if init is None else init.width
    _api._check_done(done, max_width)
    n_threads = _validate.thread_count(n_threads)
    state = _api._seed_state(seed)
    # the signs in two layouts (the result's, and chunks for the group tables); an operator
    # without a storage budget grows them as the cuts come
    counted = max_width if kind == "sparse" or width or bits_per_entry else 0
    _validate.check_memory(16 * (m + n) + counted * ((m + n) // 4 + 16), f"decomposing {name}")
    if kind == "operator":
        norm2, _ = operator_norm2(A, name)
        rms = np.sqrt(norm2 / (m * n))
        exponent = int(np.frexp(rms)[1]) if rms > 0 else 0
    else:
        norm2 = float(np.ldexp(np.sum(np.square(arrays[2], dtype=np.float64)), 2 * exponent))
    cuts = None
    if init is not None:
        _api._check_init(init, A, None, float(np.sqrt(norm2)))
        if init.width and not norm2 > 0:
            raise ValueError(f"{name} is all zeros and init has {init.width} cuts: init was "
                             "not made from it")
        cuts = (init.signs[0], init.signs[1], np.ldexp(init.coef, -exponent).astype(np.float32))
    met = rtol is not None and rtol >= 1.0    # met by no cut at all
    args = (done if met else max_width, rtol or 0.0, max_seconds or 0.0, block_size,
            _api.MAX_SWEEPS, n_threads, state, callback)
    search = dict(restarts=search["restarts"], growth_tol=search["growth_tol"],
                  warm_start=search["warm_start"], init=cuts)
    if kind == "operator":
        signs, coef, errors, norm, stopped_by = _core.operator_decompose(
            m, n, float(np.ldexp(norm2, -2 * exponent)),
            _product(A, name, np.ldexp(1.0, -exponent)), *args, **search)
    else:
        signs, coef, errors, norm, stopped_by = _core.sparse_decompose(
            m, n, *arrays, *args, **search)
    result = SignCut(shape2, signs, np.ldexp(coef, exponent).astype(np.float32),
                     errors, norm=float(np.ldexp(norm, exponent)), orig_dtype=dtype,
                     input_nbytes=nbytes)
    result.stopped_by = "rtol" if met else stopped_by
    return result

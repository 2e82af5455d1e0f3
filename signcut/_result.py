"""SignCut: the result of a signed cut decomposition."""
import operator

import numpy as np

from signcut import _array, _core
from signcut._budget import cut_bits, signs_nbytes
from signcut._indexing import words  # noqa: F401  (uint64 words per packed sign vector)
from signcut._validate import thread_count


def unpack_signs(bits, d):
    """(width, words) packed signs -> (width, d) float32 array of +1/-1."""
    rows, nwords = bits.shape         # (explicit: reshape cannot infer a length for 0 rows)
    as_bytes = np.ascontiguousarray(bits, dtype="<u8").view(np.uint8).reshape(rows, 8 * nwords)
    flags = np.unpackbits(as_bytes, axis=1, count=d, bitorder="little")
    return (1.0 - 2.0 * flags).astype(np.float32)


def owned(a, dtype, copy=True):
    """``a`` as a C-contiguous array of ``dtype`` that a SignCut (or Outliers) holds: read-only,
    and no one can set it writeable again (``_core.frozen``). Copied unless ``copy`` is False
    and ``a`` already has that dtype and layout; then the caller must not write to ``a``."""
    a = np.array(a, dtype=dtype, order="C", copy=True) if copy \
        else np.ascontiguousarray(a, dtype=dtype)
    return _core.frozen(a)


def index_dtype(size):
    """dtype of the flat indices of a sparse part: uint32 below 2**32 entries, else uint64."""
    return np.dtype(np.uint32) if int(size) < 2**32 else np.dtype(np.uint64)


class Outliers:
    """The sparse part of a decomposition: entries of the array kept apart from the cuts.

    Attributes
    ----------
    index : ndarray of uint32 (uint64 for arrays of 2**32 entries or more), shape (count,)
        Flat C-order indices into the array's ``shape`` (the user's layout, before any
        tensorization), strictly increasing.
    values : ndarray of float16 or float32, shape (count,)
        The entries divided by ``2**exponent``: rounded to float16 by ``decompose``; float32
        in a SignCut derived by arithmetic (sums, products, contractions), where float16
        would round the results.
    exponent : int
        Power of two that scales every value, so that large entries fit float16's range.
    error : float or None
        Relative Frobenius error of the sparse part alone (before any cut), when known.
    shape : tuple of int or None
        Shape of the array the indices are into: set for the sparse part of a SignCut.

    The arrays are read-only and cannot be made writeable: they are copies of the arrays given
    (``copy=False`` takes them over without a copy when they already have the right dtype; the
    caller must then leave them alone).
    """

    def __init__(self, index, values, exponent, size, error=None, *, copy=True):
        index = np.asarray(index)
        values = np.asarray(values)
        if index.ndim != 1 or values.ndim != 1 or len(index) != len(values):
            raise ValueError(f"outlier index and values must be 1-D of one length, got shapes "
                             f"{index.shape} and {values.shape}")
        if index.dtype.kind not in "iu":
            raise TypeError(f"outlier index must hold integers, got {index.dtype}")
        if values.dtype not in (np.float16, np.float32):
            raise TypeError(f"outlier values must be float16 or float32, got {values.dtype}")
        if len(index):
            if int(index.min()) < 0 or int(index.max()) >= size:
                raise ValueError(f"outlier index out of range for an array of {size} entries")
            if len(index) > 1 and not (np.diff(index.astype(np.int64)) > 0).all():
                raise ValueError("outlier index must be strictly increasing")
        if not np.isfinite(values).all():
            raise ValueError("outlier values must be finite")
        if isinstance(exponent, (bool, np.bool_)) or not isinstance(exponent, (int, np.integer)) \
                or not -200 <= int(exponent) <= 200:
            raise ValueError(f"outlier exponent must be an integer in [-200, 200], got {exponent!r}")
        self.index = owned(index, index_dtype(size), copy)
        self.values = owned(values, values.dtype, copy)
        self.exponent = int(exponent)
        self.error = None if error is None else float(error)
        self.shape = None

    def __len__(self):
        return len(self.index)

    @property
    def nbytes(self):
        """Bytes of the indices and float16 values."""
        return int(self.index.nbytes + self.values.nbytes)

    def dense_values(self, dtype=np.float32):
        """The stored entries, ``values * 2**exponent`` (exact in float32 and float64)."""
        return np.ldexp(self.values.astype(dtype), self.exponent).astype(dtype, copy=False)

    def copy(self):
        out = self.of_shape(self.shape)
        out.index, out.values = owned(self.index, self.index.dtype), owned(self.values, self.values.dtype)
        return out

    def of_shape(self, shape):
        """The same entries (the same read-only arrays) as the sparse part of an array of
        ``shape``."""
        out = Outliers.__new__(Outliers)
        out.__dict__.update(self.__dict__)
        out.shape = None if shape is None else tuple(int(d) for d in shape)
        return out

    def to_sparse(self, shape=None):
        """The entries as a ``scipy.sparse.coo_array`` (float32, canonical: sorted, no
        duplicates) of ``shape`` (default: the SignCut's shape; any number of dimensions)."""
        import scipy.sparse
        shape = self.shape if shape is None else tuple(int(d) for d in shape)
        if shape is None:
            raise ValueError("to_sparse needs the shape of the array (this sparse part "
                             "belongs to no SignCut)")
        size = int(np.prod(shape, dtype=np.int64))
        if len(self) and int(self.index[-1]) >= size:
            raise ValueError(f"outlier index out of range for shape {shape}")
        coords = np.unravel_index(self.index.astype(np.int64), shape)
        out = scipy.sparse.coo_array((self.dense_values(np.float32), coords), shape=shape)
        out.has_canonical_format = True          # indices strictly increasing in C order
        return out

    def __setstate__(self, state):
        """Unpickled and deep-copied arrays come back writeable: held read-only again."""
        self.__dict__.update(state)
        self.__dict__.setdefault("shape", None)
        self.index = owned(self.index, self.index.dtype, copy=False)
        self.values = owned(self.values, self.values.dtype, copy=False)

    def equals(self, other):
        return (other is not None and self.exponent == other.exponent
                and np.array_equal(self.index, other.index)
                and np.array_equal(self.values.view(np.uint16), other.values.view(np.uint16)))


def _dispatch():
    from signcut import _dispatch
    return _dispatch


ERROR_NORMS = ("frobenius", "col_weights")


def _check_scales(scales, tensor_shape, copy):
    """Validate scale vectors: None, or one entry per mode, None or a 1-D array of that
    mode's length (float16 kept, other real dtypes as float32), finite. A tuple of read-only
    arrays and Nones."""
    if scales is None:
        return (None,) * len(tensor_shape)
    scales = tuple(scales)
    if len(scales) != len(tensor_shape):
        raise ValueError(f"{len(scales)} scale vectors for {len(tensor_shape)} modes (give one per "
                         "mode, None for a mode without)")
    out = []
    for axis, (v, d) in enumerate(zip(scales, tensor_shape)):
        if v is None:
            out.append(None)
            continue
        v = np.asarray(v)
        if v.dtype.kind not in "biuf":
            raise TypeError(f"the scales of mode {axis} must be real numbers, got {v.dtype}")
        if v.shape != (d,):
            raise ValueError(f"the scales of mode {axis} have shape {v.shape}, expected ({d},)")
        v = owned(v, np.float16 if v.dtype == np.float16 else np.float32, copy)
        if not np.isfinite(v).all():
            raise ValueError(f"the scales of mode {axis} must be finite")
        out.append(v)
    return tuple(out)


def _check_tensorize(tensorize, tensor_shape):
    """Validate a tensorization record: {"shape": original shape, "axes": permutation}. The
    decomposed tensor is ``X.reshape(r).transpose(axes)`` with ``r[axes[i]] = tensor_shape[i]``."""
    if tensorize is None:
        return None
    try:
        shape = [int(d) for d in tensorize["shape"]]
        axes = [int(a) for a in tensorize["axes"]]
    except (TypeError, KeyError, ValueError, OverflowError):
        raise ValueError(f"invalid tensorize record {tensorize!r}") from None
    if sorted(axes) != list(range(len(tensor_shape))):
        raise ValueError(f"tensorize axes {axes} are not a permutation of {len(tensor_shape)} modes")
    if not shape or min(shape) < 1 or int(np.prod(shape)) != int(np.prod(tensor_shape)):
        raise ValueError(f"tensorize shape {shape} does not match the tensor shape {tensor_shape}")
    return {"shape": shape, "axes": axes}


class SignCut(np.lib.mixins.NDArrayOperatorsMixin):
    """A signed cut decomposition ``sum_j coef[j] * s1_j ⊗ s2_j ⊗ ... ⊗ sk_j``.

    Attributes
    ----------
    shape : tuple of int
        Shape of the approximated array.
    signs : tuple of ndarray
        One packed array per mode, of shape ``(width, ceil(d / 64))`` and dtype uint64:
        bit ``i`` of word ``k`` is entry ``64 k + i``, a set bit means -1, tail bits are zero.
    coef : ndarray of float32, shape (width,)
        The coefficient of each cut.
    errors : ndarray of float64, shape (width,)
        Relative Frobenius error ``||A - A_k|| / ||A||`` after each cut ``k = 1..width``.
    norm : float
        Frobenius norm of the decomposed array.
    orig_dtype : numpy.dtype
        dtype of the decomposed array (the reference of ``ratio``).
    input_nbytes : int or None
        Bytes of a sparse input (data, indices and pointers), the reference of ``ratio``
        instead of ``size * orig_dtype.itemsize``; None for a dense one. Not kept in files.
    tensor_shape : tuple of int
        Dimensions of the modes (equal to ``shape`` unless the array was tensorized).
    tensorize : dict or None
        ``{"shape": original shape, "axes": permutation}`` when ``decompose(..., shape=,
        axes=)`` reshaped and permuted the input, or ``reshape`` changed the shape;
        ``expand`` undoes it. What works on the cuts alone (scaling, sums, products of
        SignCuts tensorized alike, norms, inner products) stays compressed; indexing,
        transposes and contractions along the user's axes go through the dense array.
    outliers : Outliers or None
        The sparse part (``decompose(..., outliers=q)``): entries kept apart from the cuts,
        indexed in ``shape`` (the user's layout, also for a tensorized result). The
        approximation is the cuts plus this part; it counts in ``nbytes`` and
        ``bits_per_entry``, and ``errors`` are those of the whole.
    scales : tuple
        One entry per mode: None, or a vector of that mode's length (float16 from
        ``decompose(..., scales=)``, float32 when derived by arithmetic) that multiplies the
        mode's signs: the cuts represent ``sum_j coef[j] (r1 ⊙ s1_j) ⊗ ... ⊗ (rk ⊙ sk_j)``,
        for a matrix ``diag(r) (sum_j coef[j] s_j t_j^T) diag(k)`` (the sparse part is added
        after the scales). Counted in ``nbytes``, ``bits_per_entry`` and ``ratio``.
    error_norm : {"frobenius", "col_weights"}
        The norm of ``errors``, ``rel_error`` and ``norm``: the Frobenius norm, or, for
        ``decompose(..., col_weights=d)``, ``||X diag(d)||_F`` (the columns, the last axis,
        weighted by ``d``).

    The approximation is float32. ``np.asarray(result)`` and ``result.expand()`` give it as a
    dense array; ``result.truncate(k)`` keeps the first ``k`` cuts, a coarser approximation.

    It computes as an array without expanding where the algebra of sign vectors allows:
    ``2 * sc``, ``-sc``, ``sc + other``, ``sc * other`` (SignCuts), ``sc + 1``, basic indexing
    (``sc[1:, ::2, 0, None]``), ``sc.contract(axis, v)``, ``transpose``, ``reshape``,
    ``diagonal`` and ``trace`` give SignCuts; advanced indexing, sums, ``@`` with arrays,
    norms and inner products are computed from the signs; NumPy functions and ufuncs without
    such a form expand (``signcut.set_options`` says whether that warns or raises). The
    README has the table.

    A SignCut is immutable: its arrays are read-only and cannot be made writeable, also after
    pickling or copying. The constructor copies the arrays it is given; ``copy=False`` takes
    them over without a copy where their dtype and layout allow (the caller must then not
    write to them any more).
    """

    def __init__(self, shape, signs, coef, errors=None, *, norm=None, orig_dtype=np.float32,
                 tensorize=None, outliers=None, copy=True, input_nbytes=None, scales=None,
                 error_norm="frobenius"):
        self.tensor_shape = tuple(int(d) for d in shape)
        if not self.tensor_shape or min(self.tensor_shape) < 1:
            raise ValueError(f"invalid shape {shape}")
        coef = owned(coef, np.float32, copy)
        if coef.ndim != 1:
            raise ValueError("coef must be 1-D")
        if not np.isfinite(coef).all():
            raise ValueError("coef must be finite (NaN or Inf found)")
        width = coef.shape[0]
        if len(signs) != len(self.tensor_shape):
            raise ValueError(f"{len(signs)} sign arrays for a {len(self.tensor_shape)}-D shape")
        packed = []
        for axis, (bits, d) in enumerate(zip(signs, self.tensor_shape)):
            bits = owned(bits, np.uint64, copy)
            if bits.shape != (width, words(d)):
                raise ValueError(f"signs of mode {axis} have shape {bits.shape}, "
                                 f"expected {(width, words(d))}")
            if d % 64 and width and (bits[:, -1] >> np.uint64(d % 64)).any():
                raise ValueError(f"signs of mode {axis} have bits set beyond entry {d}")
            packed.append(bits)
        # A SignCut is immutable (its products cache layouts of the signs): it holds its own
        # arrays, read-only for good (see `owned`), and the caller's arrays keep their flags.
        self.signs = tuple(packed)
        self.coef = coef
        if errors is None:
            errors = np.full(width, np.nan)
            copy = False
        self.errors = owned(errors, np.float64, copy)
        if self.errors.shape != (width,):
            raise ValueError("errors must have one entry per cut")
        if (np.isinf(self.errors) | (self.errors < 0)).any():
            raise ValueError("errors must be non-negative relative errors (NaN where unknown), "
                             "not infinite")
        self.norm = None if norm is None else float(norm)
        if self.norm is not None and not (np.isfinite(self.norm) and self.norm >= 0):
            raise ValueError(f"norm must be a finite non-negative number, got {self.norm}")
        self.orig_dtype = np.dtype(orig_dtype)
        self.tensorize = _check_tensorize(tensorize, self.tensor_shape)
        if outliers is not None and not isinstance(outliers, Outliers):
            try:
                index, values, exponent = outliers
            except (TypeError, ValueError):
                raise TypeError("outliers must be an Outliers or a tuple (index, values, "
                                "exponent)") from None
            outliers = Outliers(index, values, exponent, self.size, copy=copy)
        elif outliers is not None and copy:
            outliers = outliers.copy()
        if outliers is not None and len(outliers) and int(outliers.index[-1]) >= self.size:
            raise ValueError(f"outlier index out of range for an array of {self.size} entries")
        self.outliers = None if outliers is None else outliers.of_shape(self.shape)
        self.input_nbytes = None if input_nbytes is None else int(input_nbytes)
        self.scales = _check_scales(scales, self.tensor_shape, copy)
        if error_norm not in ERROR_NORMS:
            raise ValueError(f"error_norm must be one of {ERROR_NORMS}, got {error_norm!r}")
        self.error_norm = error_norm
        self.stopped_by = None

    # ------------------------------------------------------------ sizes
    @property
    def width(self):
        """Number of cuts."""
        return int(self.coef.shape[0])

    @property
    def shape(self):
        """Shape of the approximated array (before tensorization, if any)."""
        return tuple(self.tensorize["shape"]) if self.tensorize else self.tensor_shape

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def __len__(self):
        return self.shape[0]

    @property
    def nbytes(self):
        """Bytes of the signs stored densely plus one float32 per cut, plus the sparse part
        (index and float16 value of each outlier) and the scale vectors."""
        return signs_nbytes(self.width, self.tensor_shape) + self.outliers_nbytes \
            + self.scales_nbytes

    @property
    def scales_nbytes(self):
        """Bytes of the scale vectors (0 without them)."""
        return sum(int(v.nbytes) for v in self.scales if v is not None)

    @property
    def has_scales(self):
        """Whether some mode has a scale vector."""
        return any(v is not None for v in self.scales)

    @property
    def outliers_nbytes(self):
        """Bytes of the sparse part (0 without one)."""
        return self.outliers.nbytes if self.outliers is not None else 0

    @property
    def bits_per_entry(self):
        """``(width * (sum(tensor_shape) + 32) + 8 * (outliers_nbytes + scales_nbytes)) /
        size``."""
        return (self.width * cut_bits(self.tensor_shape)
                + 8 * (self.outliers_nbytes + self.scales_nbytes)) / self.size

    @property
    def ratio(self):
        """Compressed bytes over the bytes of the input in its own dtype (a sparse input's
        own bytes, ``input_nbytes``, when it was one)."""
        if self.input_nbytes is not None:
            return self.nbytes / self.input_nbytes
        return self.nbytes / (self.size * self.orig_dtype.itemsize)

    @property
    def rel_error(self):
        """Relative Frobenius error of the whole decomposition (0 for an all-zero input; for a
        sparse part without cuts its own error; NaN if unknown, as for most SignCuts derived
        by arithmetic, which do not know the array they approximate)."""
        if self.width:
            return float(self.errors[-1])
        if self.norm is None:
            return float("nan")
        if self.outliers is not None and len(self.outliers) and self.norm != 0.0:
            return float("nan") if self.outliers.error is None else self.outliers.error
        return 0.0 if self.norm == 0.0 else 1.0

    # ------------------------------------------------------------ views
    def truncate(self, k):
        """The first ``k`` cuts (and the whole sparse part and the scales): a coarser
        approximation sharing no memory with this one."""
        k = operator.index(k)
        if not 0 <= k <= self.width:
            raise ValueError(f"k must be in [0, {self.width}], got {k}")
        return SignCut(self.tensor_shape, [b[:k] for b in self.signs], self.coef[:k],
                       self.errors[:k], norm=self.norm, orig_dtype=self.orig_dtype,
                       tensorize=self.tensorize, outliers=self.outliers,
                       input_nbytes=self.input_nbytes, scales=self.scales,
                       error_norm=self.error_norm)

    def expand(self, n_threads=None):
        """The approximation as a dense float32 array of ``shape`` (a tensorization is undone:
        the inverse permutation, then the original shape), the scales and the sparse part
        included."""
        out = self._expand_modes(n_threads)
        if self.tensorize:
            out = np.ascontiguousarray(out.transpose(np.argsort(self.tensorize["axes"])))
            out = out.reshape(self.tensorize["shape"])
        if self.outliers is not None and len(self.outliers):
            out.reshape(-1)[self.outliers.index] += self.outliers.dense_values()
        if self._may_overflow() and out.size and not (np.isfinite(out.max())
                                                      and np.isfinite(out.min())):
            raise OverflowError("the approximation does not fit float32: its coefficients "
                                "add up beyond float32's range")
        return out

    def _may_overflow(self):
        """Whether an entry could leave float32's range: |entry| <= sum |coef| * prod of the
        largest |scale| of each mode + max |outlier|."""
        bound = float(np.abs(self.coef).sum(dtype=np.float64))
        for v in self.scales:
            if v is not None:
                bound *= float(np.abs(v).max(initial=0.0))
        if self.outliers is not None and len(self.outliers):
            bound += float(np.abs(self.outliers.dense_values(np.float64)).max())
        return not bound < 0.5 * float(np.finfo(np.float32).max)

    def _expand_modes(self, n_threads=None):
        """The cuts times their scales, dense in the modes' layout (no sparse part, the
        tensorization not undone)."""
        out = self._expand_tensor(n_threads)
        for a, v in enumerate(self.scales):
            if v is not None:
                view = [1] * out.ndim
                view[a] = -1
                out *= v.astype(np.float32).reshape(view)
        return out

    def _expand_tensor(self, n_threads=None):
        """The cuts alone (no scales, no sparse part), dense in the modes' layout."""
        return _core.expand(np.zeros(self.tensor_shape, np.float32), self.signs, self.coef,
                            1.0, thread_count(n_threads))

    # ------------------------------------------------------------ array behaviour
    def __getitem__(self, key):
        """``sc[key]`` by NumPy's rules, without expanding.

        Basic indexing (integers, slices with any step, ``...``, ``None``) gives a SignCut
        over the selected entries of each mode's signs (an integer drops its mode; one entry
        gives a float32 scalar). Integer and boolean arrays give a float32 array computed from
        the signs of the selected entries. A tensorized SignCut goes through the dense array.
        """
        if self.tensorize:
            return _dispatch().dense(self, "indexing a tensorized SignCut")[key]
        from signcut import _indexing
        return _indexing.getitem(self, key)

    def transpose(self, *axes):
        """The decomposition of the transposed array (axes as for ``ndarray.transpose``):
        the modes are permuted, exactly. A tensorized SignCut goes through the dense array."""
        order = _array.transpose_axes(axes, self.ndim)
        if self.tensorize:
            return _dispatch().dense(self, "transposing a tensorized SignCut").transpose(order)
        from signcut import _algebra
        return _algebra.transpose(self, order)

    @property
    def T(self):
        """The decomposition with its axes reversed (``transpose()``)."""
        return self.transpose()

    @property
    def mT(self):
        """The decomposition with its last two axes swapped (``ndarray.mT``)."""
        if self.ndim < 2:
            raise ValueError("matrix transpose with ndim < 2 is undefined")
        return self.transpose(*range(self.ndim - 2), self.ndim - 1, self.ndim - 2)

    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (None, an int or a tuple) as ``ndarray.sum``, from the signs:
        a float32 array, or a float32 scalar when every axis is summed without keepdims."""
        return _array.reduce_sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis`` (None, an int or a tuple) as ``ndarray.mean``, from the signs."""
        return _array.reduce_sum(self, axis, keepdims, mean=True)

    def contract(self, axis, v):
        """Contract axis ``axis`` with the vector ``v`` (``np.tensordot(sc, v, ([axis], [0]))``):
        a SignCut of one order less whose coefficients absorb ``<s_j, v>`` (for an order-1
        SignCut, the scalar ``<sc, v>``). Costs ``width * len(v)`` sign entries. A tensorized
        SignCut goes through the dense array."""
        if self.tensorize:
            return np.tensordot(_dispatch().dense(self, "contracting a tensorized SignCut"),
                                v, axes=([axis], [0]))
        from signcut import _algebra
        return _algebra.contract(self, axis, v)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        """``np.diagonal`` as a SignCut: the two axes give way to a last axis, the diagonal,
        whose signs are those of the two axes XORed (an empty diagonal: an empty array)."""
        if self.tensorize:
            return _dispatch().dense(self, "the diagonal of a tensorized SignCut").diagonal(
                offset, axis1, axis2)
        from signcut import _algebra
        return _algebra.diagonal(self, offset, axis1, axis2)

    def trace(self, offset=0, axis1=0, axis2=1):
        """``np.trace`` from the signs: ``sum_j c_j <s1_j, s2_j>`` over the diagonal's
        entries (plus the sparse part there); for order k > 2 a SignCut of order k - 2."""
        if self.tensorize:
            return _dispatch().dense(self, "the trace of a tensorized SignCut").trace(
                offset, axis1, axis2)
        from signcut import _algebra
        return _algebra.trace(self, offset, axis1, axis2)

    def vdot(self, other, n_threads=None):
        """``<self, other>``, the sum of the elementwise product, in float64, without
        expanding: for a SignCut of the same shape and tensorization, exactly from popcounts
        of the packed signs (``sum_{i,j} c_i d_j prod_a <sa_i, ua_j>``, in tiles of cuts:
        ``width * other.width * sum(dims) / 64`` word operations); for an array of the same
        size (read in C order), by contracting it with the signs (``2 width size`` flops)."""
        from signcut import _algebra
        if isinstance(other, SignCut):
            return _algebra.inner(self, other, n_threads)
        return _algebra.inner_dense(self, other)

    def frobenius_norm(self, n_threads=None):
        """``||self||_F`` of the approximation (not ``norm``, the decomposed array's), exactly
        from popcounts of the packed signs (``vdot(self)``: half the pairs of cuts)."""
        from signcut import _algebra
        return _algebra.frobenius_norm(self, n_threads)

    # ------------------------------------------------------------ SciPy and TensorLy
    def aslinearoperator(self, dtype=None):
        """This matrix as a ``scipy.sparse.linalg.LinearOperator`` whose ``matvec``,
        ``rmatvec``, ``matmat`` and ``rmatmat`` are the C products of the signs (float32
        arithmetic; answers in ``dtype``, default float32; complex operands go through their
        real and imaginary parts): for ``svds``, ``lsqr``, ``cg``... without expanding.
        ``scipy.sparse.linalg.aslinearoperator(sc)`` works too (through ``matvec``,
        ``rmatvec``, ``rmatmat``; its ``matmat`` is column by column)."""
        from signcut._interop import SignCutOperator
        return SignCutOperator(self, dtype)

    def matvec(self, x):
        """``self @ x`` for a vector (or one column) ``x``: the LinearOperator protocol."""
        return self.aslinearoperator().matvec(x)

    def rmatvec(self, x):
        """``self.T @ x`` for a vector (or one column) ``x``."""
        return self.aslinearoperator().rmatvec(x)

    def matmat(self, X):
        """``self @ X`` for a 2-D ``X``."""
        return self.aslinearoperator().matmat(X)

    def rmatmat(self, X):
        """``self.T @ X`` for a 2-D ``X``."""
        return self.aslinearoperator().rmatmat(X)

    def to_cp(self, dtype=np.float32, ignore_sparse=False):
        """The cuts as ``(weights, factors)`` in TensorLy's CP layout: ``weights`` the
        coefficients, ``factors[a]`` of shape ``(tensor_shape[a], width)`` holding the signs
        of mode ``a`` as +1/-1 floats (times the mode's scales, if any), so ``tensorly.cp_to_tensor((weights, factors))`` is
        the expansion in the modes' layout (for a tensorized SignCut, before ``expand``
        undoes the tensorization). A sparse part has no CP form: ValueError, unless
        ``ignore_sparse`` (then the cuts alone; ``outliers.to_sparse()`` has the rest)."""
        from signcut._interop import to_cp
        return to_cp(self, dtype, ignore_sparse)

    def reshape(self, *shape, order="C"):
        """The same cuts with another shape (C order): only the tensorization record
        changes, so nothing is expanded. ``order="F"`` goes through the dense array."""
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = shape[0]
        if order not in ("C", "A"):
            return np.reshape(_dispatch().dense(self, f"reshape(order={order!r})"), shape,
                              order=order)
        from signcut import _algebra
        return _algebra.reshape(self, shape)

    def astype(self, dtype, copy=True):
        """float32 (the SignCut's dtype): the SignCut itself, or a copy (``copy=True``); any
        other dtype: the dense array in that dtype (an expansion)."""
        if np.dtype(dtype) == np.float32:
            return self.copy() if copy else self
        return _dispatch().dense(self, f"astype({np.dtype(dtype)})").astype(dtype)

    def copy(self):
        """A SignCut equal to this one sharing no memory with it."""
        return SignCut(self.tensor_shape, self.signs, self.coef, self.errors, norm=self.norm,
                       orig_dtype=self.orig_dtype, tensorize=self.tensorize,
                       outliers=self.outliers, scales=self.scales, error_norm=self.error_norm)

    def recompress(self, *, width=None, bits_per_entry=None, ratio=None, rtol=None,
                   max_seconds=None, seed=None, n_threads=None, outliers=None, **options):
        """Decompose again what this SignCut represents, at new budgets (as ``decompose``:
        ``width``, ``bits_per_entry``, ``ratio`` in bytes of ``orig_dtype``, ``rtol``,
        ``max_seconds``, ``seed``, ``n_threads``, ``outliers``, ``effort``, ``callback``...)
        in the same tensorization. Sums and products grow the width; this brings it down.

        It expands the SignCut (float32) and decomposes that when the expansion and
        decompose's two working copies (12 bytes per entry) fit in the memory available; a
        matrix that does not fit is decomposed through its products instead
        (``aslinearoperator()``: a product per half step, slower, nothing expanded; its
        Frobenius norm exact from the signs), and another SignCut that does not fit raises
        ``MemoryError`` before anything is allocated. The answer's ``errors`` and ``norm`` are
        relative to what this SignCut represents."""
        from signcut import _algebra
        return _algebra.recompress(self, width=width, bits_per_entry=bits_per_entry,
                                   ratio=ratio, rtol=rtol, max_seconds=max_seconds, seed=seed,
                                   n_threads=n_threads, outliers=outliers, **options)

    def __getstate__(self):
        """Pickles without the sign layouts cached by the products (rebuilt on first use)."""
        state = self.__dict__.copy()
        state.pop("_product_lanes", None)
        state.pop("_product_threads", None)
        return state

    def __setstate__(self, state):
        """Unpickled and deep-copied arrays come back writeable: held read-only again."""
        self.__dict__.update(state)
        self.__dict__.setdefault("scales", (None,) * len(self.tensor_shape))
        self.__dict__.setdefault("error_norm", "frobenius")
        self.scales = tuple(None if v is None else owned(v, v.dtype, copy=False)
                            for v in self.scales)
        self.signs = tuple(owned(b, np.uint64, copy=False) for b in self.signs)
        self.coef = owned(self.coef, np.float32, copy=False)
        self.errors = owned(self.errors, np.float64, copy=False)

    def _scalar(self, kind):
        if self.size != 1:
            if kind is bool:
                raise ValueError("The truth value of an array with more than one element is "
                                 "ambiguous. Use a.any() or a.all()")
            raise TypeError("only arrays of one element can be converted to Python scalars")
        return kind(self[(0,) * self.ndim])

    def __bool__(self):
        """As ``ndarray``: the truth of the one entry; ValueError for more than one."""
        return self._scalar(bool)

    def __float__(self):
        return self._scalar(float)

    def __int__(self):
        return self._scalar(int)

    def __complex__(self):
        return self._scalar(complex)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy ufuncs (and the operators, which call them): compressed where the algebra
        allows (``*``, ``/`` by scalars; ``+``, ``-``, ``*`` of SignCuts; ``+`` of a scalar;
        negation), ``@`` from the signs, otherwise on the dense arrays (see
        ``signcut.set_options``).

        ``W @ x`` and ``x @ W`` for a matrix: the C engine multiplies through lookup tables
        over groups of sign bits, in float32 (the answer in NumPy's promoted dtype). The
        first product on a side caches the signs in the layout it reads (about the memory of
        the signs again), and the products pick all threads or one by measuring them."""
        return _dispatch().array_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        """NumPy functions (NEP 18): one table (signcut/_dispatch.py, the README's table)
        decides whether each returns a SignCut, a dense result computed from the signs, or
        goes through the dense array (see ``signcut.set_options``)."""
        return _dispatch().array_function(func, types, args, kwargs)

    # A SignCut is immutable: `a += b` rebinds `a` to `a + b`.
    def __iadd__(self, other):
        return NotImplemented

    __isub__ = __imul__ = __itruediv__ = __ifloordiv__ = __imod__ = __ipow__ = __imatmul__ = \
        __iand__ = __ior__ = __ixor__ = __ilshift__ = __irshift__ = __iadd__

    def __array__(self, dtype=None, copy=None):
        """The dense array (``np.asarray(sc)``): an implicit expansion, which warns or raises
        above the threshold of ``signcut.set_options``. NumPy 2's ``copy=False`` (never
        copy) raises ``ValueError``; NumPy 1.x does not pass ``copy`` here, and its
        ``np.array(sc, copy=False)`` means "copy if needed": the expansion."""
        if copy is False:
            raise ValueError("a SignCut cannot be viewed as an array without expanding it (copy=False)")
        out = _dispatch().dense(self, "np.asarray")
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self):
        sparse = f", outliers={len(self.outliers)}" if self.outliers is not None else ""
        if self.has_scales:
            sparse += f", scales on modes {[a for a, v in enumerate(self.scales) if v is not None]}"
        return (f"SignCut(shape={self.shape}, width={self.width}{sparse}, "
                f"bits_per_entry={self.bits_per_entry:.3g}, rel_error={self.rel_error:.4g})")

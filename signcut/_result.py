"""SignCut: the result of a signed cut decomposition."""
import numpy as np

from signcut import _array, _core
from signcut._validate import thread_count


def words(d):
    """uint64 words per packed sign vector of length d."""
    return (int(d) + 63) // 64


def unpack_signs(bits, d):
    """(width, words) packed signs -> (width, d) float32 array of +1/-1."""
    as_bytes = np.ascontiguousarray(bits, dtype="<u8").view(np.uint8).reshape(len(bits), -1)
    flags = np.unpackbits(as_bytes, axis=1, count=d, bitorder="little")
    return (1.0 - 2.0 * flags).astype(np.float32)


def owned(a, dtype, copy=True):
    """``a`` as a C-contiguous array of ``dtype`` that a SignCut (or Outliers) holds: read-only,
    and no one can set it writeable again (``_core.frozen``). Copied unless ``copy`` is False
    and ``a`` already has that dtype and layout; then the caller must not write to ``a``."""
    a = np.array(a, dtype=dtype, order="C", copy=True) if copy \
        else np.ascontiguousarray(a, dtype=dtype)
    return _core.frozen(a)


def signs_nbytes(width, shape):
    """Bytes of a decomposition stored densely: ceil(width * sum(dims) / 8) + 4 * width."""
    return -(-width * sum(shape) // 8) + 4 * width


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
    values : ndarray of float16, shape (count,)
        The entries divided by ``2**exponent``, rounded to float16.
    exponent : int
        Power of two that scales every value, so that large entries fit float16's range.
    error : float or None
        Relative Frobenius error of the sparse part alone (before any cut), when known.

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
        if values.dtype != np.float16:
            raise TypeError(f"outlier values must be float16, got {values.dtype}")
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
        out = Outliers.__new__(Outliers)
        out.index, out.values = owned(self.index, self.index.dtype), owned(self.values, self.values.dtype)
        out.exponent, out.error = self.exponent, self.error
        return out

    def __setstate__(self, state):
        """Unpickled and deep-copied arrays come back writeable: held read-only again."""
        self.__dict__.update(state)
        self.index = owned(self.index, self.index.dtype, copy=False)
        self.values = owned(self.values, self.values.dtype, copy=False)

    def equals(self, other):
        return (other is not None and self.exponent == other.exponent
                and np.array_equal(self.index, other.index)
                and np.array_equal(self.values.view(np.uint16), other.values.view(np.uint16)))


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


class SignCut:
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
    tensor_shape : tuple of int
        Dimensions of the modes (equal to ``shape`` unless the array was tensorized).
    tensorize : dict or None
        ``{"shape": original shape, "axes": permutation}`` when ``decompose(..., shape=,
        axes=)`` reshaped and permuted the input; ``expand`` undoes it. Indexing, sums and
        products of a tensorized result go through the expanded array.
    outliers : Outliers or None
        The sparse part (``decompose(..., outliers=q)``): entries kept apart from the cuts,
        indexed in ``shape`` (the user's layout, also for a tensorized result). The
        approximation is the cuts plus this part; it counts in ``nbytes`` and
        ``bits_per_entry``, and ``errors`` are those of the whole.

    The approximation is float32. ``np.asarray(result)`` and ``result.expand()`` give it as a
    dense array; ``result.truncate(k)`` keeps the first ``k`` cuts, a coarser approximation.

    A SignCut is immutable: its arrays are read-only and cannot be made writeable, also after
    pickling or copying. The constructor copies the arrays it is given; ``copy=False`` takes
    them over without a copy where their dtype and layout allow (the caller must then not
    write to them any more).
    """

    def __init__(self, shape, signs, coef, errors=None, *, norm=None, orig_dtype=np.float32,
                 tensorize=None, outliers=None, copy=True):
        self.tensor_shape = tuple(int(d) for d in shape)
        if not self.tensor_shape or min(self.tensor_shape) < 1:
            raise ValueError(f"invalid shape {shape}")
        coef = owned(coef, np.float32, copy)
        if coef.ndim != 1:
            raise ValueError("coef must be 1-D")
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
        self.norm = None if norm is None else float(norm)
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
        self.outliers = outliers
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
        (index and float16 value of each outlier)."""
        return signs_nbytes(self.width, self.tensor_shape) + self.outliers_nbytes

    @property
    def outliers_nbytes(self):
        """Bytes of the sparse part (0 without one)."""
        return self.outliers.nbytes if self.outliers is not None else 0

    @property
    def bits_per_entry(self):
        """``(width * (sum(tensor_shape) + 32) + 8 * outliers_nbytes) / size``."""
        return (self.width * (sum(self.tensor_shape) + 32) + 8 * self.outliers_nbytes) / self.size

    @property
    def ratio(self):
        """Compressed bytes over the bytes of the input in its own dtype."""
        return self.nbytes / (self.size * self.orig_dtype.itemsize)

    @property
    def rel_error(self):
        """Relative Frobenius error of the whole decomposition (0 for an all-zero input; for a
        sparse part without cuts its own error, NaN if unknown)."""
        if self.width:
            return float(self.errors[-1])
        if self.outliers is not None and len(self.outliers) and self.norm != 0.0:
            return float("nan") if self.outliers.error is None else self.outliers.error
        return 0.0 if self.norm == 0.0 else 1.0

    # ------------------------------------------------------------ views
    def truncate(self, k):
        """The first ``k`` cuts (and the whole sparse part): a coarser approximation sharing
        no memory with this one."""
        k = int(k)
        if not 0 <= k <= self.width:
            raise ValueError(f"k must be in [0, {self.width}], got {k}")
        return SignCut(self.tensor_shape, [b[:k] for b in self.signs], self.coef[:k],
                       self.errors[:k], norm=self.norm, orig_dtype=self.orig_dtype,
                       tensorize=self.tensorize, outliers=self.outliers)

    def expand(self, n_threads=None):
        """The approximation as a dense float32 array of ``shape`` (a tensorization is undone:
        the inverse permutation, then the original shape), the sparse part included."""
        out = self._expand_tensor(n_threads)
        if self.tensorize:
            out = np.ascontiguousarray(out.transpose(np.argsort(self.tensorize["axes"])))
            out = out.reshape(self.tensorize["shape"])
        if self.outliers is not None and len(self.outliers):
            out.reshape(-1)[self.outliers.index] += self.outliers.dense_values()
        return out

    def _expand_tensor(self, n_threads=None):
        if len(self.tensor_shape) == 2:
            m, n = self.tensor_shape
            out = np.zeros((m, n), np.float32)
            return _core.matrix_expand(out, self.signs[0], self.signs[1], self.coef, 1.0,
                                       thread_count(n_threads))
        out = np.zeros(self.tensor_shape, np.float32)
        k = len(self.tensor_shape)     # einsum's sublist form: axes 0..k-1, cuts k (k <= 32)
        for j0 in range(0, self.width, 64):
            factors = [unpack_signs(b[j0:j0 + 64], d) for b, d in zip(self.signs, self.tensor_shape)]
            factors[0] = factors[0] * self.coef[j0:j0 + 64, None]
            operands = [x for a, f in enumerate(factors) for x in (f, [k, a])]
            out += np.einsum(*operands, list(range(k)), optimize=True).astype(np.float32)
        return out

    # ------------------------------------------------------------ array behaviour
    def __getitem__(self, key):
        """Entries of the approximation, computed from the signs without expanding.

        Follows NumPy's indexing: integers, slices, ``...``, ``None`` and at most one integer
        array or 1-D boolean array. Gives a float32 array, or a float32 scalar for one entry.
        """
        if self.tensorize:
            return self.expand()[key]
        return _array.getitem(self, key)

    def transpose(self, *axes):
        """The decomposition of the transposed array (axes as for ``ndarray.transpose``);
        the signs are permuted, not expanded. Shares no memory with this one."""
        if self.tensorize:
            raise ValueError("transpose of a tensorized decomposition: expand it first")
        order = _array.transpose_axes(axes, self.ndim)
        outliers = None
        if self.outliers is not None:
            outliers = self.outliers.copy()
            multi = np.unravel_index(outliers.index, self.shape)
            index = np.ravel_multi_index([multi[a] for a in order], [self.shape[a] for a in order])
            perm = np.argsort(index, kind="stable")
            outliers.index = index[perm].astype(outliers.index.dtype)
            outliers.values = outliers.values[perm]
        out = SignCut([self.shape[a] for a in order], [self.signs[a].copy() for a in order],
                      self.coef.copy(), self.errors.copy(), norm=self.norm,
                      orig_dtype=self.orig_dtype, outliers=outliers)
        out.stopped_by = self.stopped_by
        return out

    @property
    def T(self):
        """The decomposition with its axes reversed (``transpose()``)."""
        return self.transpose()

    def sum(self, axis=None, keepdims=False):
        """Sum over ``axis`` (None, an int or a tuple) as ``ndarray.sum``, from the signs:
        a float32 array, or a float32 scalar when every axis is summed without keepdims."""
        if self.tensorize:
            return np.float32(self.expand().sum(axis=axis, keepdims=keepdims)) \
                if axis is None and not keepdims else self.expand().sum(axis=axis, keepdims=keepdims)
        return _array.reduce_sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        """Mean over ``axis`` (None, an int or a tuple) as ``ndarray.mean``, from the signs."""
        if self.tensorize:
            out = self.expand().mean(axis=axis, keepdims=keepdims, dtype=np.float64)
            return np.float32(out) if np.ndim(out) == 0 else out.astype(np.float32)
        return _array.reduce_sum(self, axis, keepdims, mean=True)

    def __matmul__(self, x):
        """``result @ x`` for an order-2 result and an array ``x`` (float32 answer), computed
        from the signs without expanding. Other orders go through the dense array.

        The C engine multiplies through lookup tables over groups of sign bits, in float32
        (float64 operands are rounded to float32 first), on all default threads. The first
        product caches the signs in the layout it reads: about the memory of the signs again
        (``x @ result`` keeps its own copy)."""
        return _array.matmul(self, x) if self._signs_are_matrix() else NotImplemented

    def __rmatmul__(self, x):
        """``x @ result`` for an order-2 result, computed from the signs without expanding."""
        return _array.rmatmul(self, x) if self._signs_are_matrix() else NotImplemented

    def __getstate__(self):
        """Pickles without the sign layouts cached by the products (rebuilt on first use)."""
        state = self.__dict__.copy()
        state.pop("_product_lanes", None)
        return state

    def __setstate__(self, state):
        """Unpickled and deep-copied arrays come back writeable: held read-only again."""
        self.__dict__.update(state)
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

    def _signs_are_matrix(self):
        return self.ndim == 2 and not self.tensorize

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy ufuncs see the expanded array, except ``np.matmul`` on an order-2 result,
        which is what ``x @ result`` calls for an ndarray ``x``: that one is computed from
        the signs."""
        if ufunc is np.matmul and method == "__call__" and not kwargs and self._signs_are_matrix():
            if inputs[0] is self:
                return _array.matmul(self, inputs[1])
            return _array.rmatmul(self, inputs[0])
        if any(isinstance(x, SignCut) for x in kwargs.get("out", ())):
            return NotImplemented
        inputs = tuple(np.asarray(x) if isinstance(x, SignCut) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a SignCut cannot be viewed as an array without expanding it (copy=False)")
        out = self.expand()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self):
        sparse = f", outliers={len(self.outliers)}" if self.outliers is not None else ""
        return (f"SignCut(shape={self.shape}, width={self.width}{sparse}, "
                f"bits_per_entry={self.bits_per_entry:.3g}, rel_error={self.rel_error:.4g})")

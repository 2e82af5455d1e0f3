# Wrappers for computing on the compressed form (signcut/_algebra.py): read-only arrays that
# stay read-only, and the products of cuts from their packed signs. Included by _core.pyx.

cdef class _Owner:
    """Keeps the memory of frozen arrays alive; it shows Python neither the memory nor a buffer."""
    cdef object array


def frozen(cnp.ndarray a not None):
    """A read-only array over the memory of the C-contiguous array ``a`` (no copy) that nobody
    can make writeable again: its base is an object without a buffer, so NumPy refuses
    ``setflags(write=True)`` on it, on its views and on its base. Whoever still holds ``a``
    can write through it: pass arrays no one else holds."""
    if not a.flags.c_contiguous:
        raise ValueError("frozen: the array must be C-contiguous")
    if not a.dtype.isnative:
        raise ValueError("frozen: the array must be in the machine's byte order")
    cdef _Owner owner = _Owner.__new__(_Owner)
    owner.array = a
    cdef cnp.ndarray out = cnp.PyArray_SimpleNewFromData(a.ndim, a.shape, a.dtype.num,
                                                         cnp.PyArray_DATA(a))
    cnp.set_array_base(out, owner)
    cnp.PyArray_CLEARFLAGS(out, cnp.NPY_ARRAY_WRITEABLE)
    return out


def sign_rows_dot(const uint64_t[:, ::1] bits, const float[::1] x):
    """z[j] = <sign row j, x> for packed sign rows of len(x) entries, by the active kernels
    (each summed in double, then rounded to float32)."""
    _check_bits(bits, x.shape[0])
    cdef int64_t k = bits.shape[0], n = x.shape[0]
    z = np.zeros(k, np.float32)
    cdef float[::1] zv = z
    if k and n:
        with nogil:
            _active.signs_rmatvec(&zv[0], &x[0], n, &bits[0, 0], bits.shape[1], k)
    return z

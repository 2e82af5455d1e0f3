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


def kernel_gram_mul(str isa, double[:, ::1] p, const uint64_t[:, ::1] a,
                    const uint64_t[:, ::1] b, int64_t length):
    """p[i, j] *= <a_i, b_j> for packed sign rows a (p.shape[0] rows) and b (p.shape[1])."""
    cdef const sc_kernels *K = _get(isa)
    _check_bits(a, length)
    _check_bits(b, length)
    if p.shape[0] != a.shape[0] or p.shape[1] != b.shape[0]:
        raise ValueError("shape mismatch")
    if p.shape[0] and p.shape[1]:
        K.gram_mul(&p[0, 0], p.shape[1], &a[0, 0], a.shape[1], a.shape[0], &b[0, 0],
                   b.shape[1], b.shape[0], a.shape[1], length)


cdef int _mode_pointers(signs, const uint64_t **ptrs, int ndim, const int64_t *dims,
                        int64_t width, list keep) except -1:
    """Pointers to the packed signs of each mode, checked against the width and the modes."""
    cdef const uint64_t[:, ::1] bits
    cdef int a
    for a in range(ndim):
        bits = signs[a]
        keep.append(bits)
        if bits.shape[0] != width or bits.shape[1] != (dims[a] + 63) // 64:
            raise ValueError("cuts_inner: signs do not match the widths and modes")
        ptrs[a] = &bits[0, 0] if bits.shape[0] else NULL
    return 0


def cuts_inner(xsigns, xcoef, ysigns, ycoef, dims, int n_threads=1, str isa=None):
    """<X, Y> = sum_{i,j} xcoef[i] ycoef[j] prod_a <xsigns[a][i], ysigns[a][j]> in double
    (sc_cuts_inner) for packed signs of modes with ``dims`` entries. The same arrays for x
    and y (a norm) compute half the pairs. isa None: the active kernels."""
    cdef const sc_kernels *K = _active if isa is None else _get(isa)
    cdef int ndim = len(dims), a, status
    if not 1 <= ndim <= SC_MAX_NDIM or len(xsigns) != ndim or len(ysigns) != ndim:
        raise ValueError("cuts_inner: one sign array per mode, 1 to 32 modes")
    cdef int64_t cdims[32]
    cdef const uint64_t *xp[32]
    cdef const uint64_t *yp[32]
    cdef const float[::1] xc = np.ascontiguousarray(xcoef, np.float32)
    cdef const float[::1] yc = np.ascontiguousarray(ycoef, np.float32)
    cdef double out = 0.0
    for a in range(ndim):
        cdims[a] = dims[a]
        if cdims[a] < 1:
            raise ValueError("cuts_inner: modes must have at least one entry")
    keep = []
    _mode_pointers(xsigns, xp, ndim, cdims, xc.shape[0], keep)
    _mode_pointers(ysigns, yp, ndim, cdims, yc.shape[0], keep)
    if xc.shape[0] == 0 or yc.shape[0] == 0:
        return 0.0
    with nogil:
        status = sc_cuts_inner(K, ndim, cdims, xp, &xc[0], xc.shape[0], yp, &yc[0], yc.shape[0],
                               n_threads, &out)
    _check(status)
    return out

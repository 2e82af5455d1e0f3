# Test-only wrappers of single kernels (tests/test_kernels.py and friends check every kernel
# set against the scalar one and against NumPy): each takes the name of a kernel set first.
# Included from _core.pyx.


def kernel_accum_rows(str isa, float[::1] y, cnp.ndarray rows, const int64_t[::1] idx, const float[::1] w):
    """y += sum_q w[q] * rows[idx[q], :len(y)]."""
    cdef const sc_kernels *K = _get(isa)
    cdef int64_t ld = _ld(rows)
    if idx.shape[0] != w.shape[0] or y.shape[0] > rows.shape[1]:
        raise ValueError("shape mismatch")
    if idx.shape[0] and (np.min(idx) < 0 or np.max(idx) >= rows.shape[0]):
        raise IndexError("row index out of range")
    cdef const float *base = <const float *>cnp.PyArray_DATA(rows)
    K.accum_rows(&y[0] if y.shape[0] else NULL, y.shape[0], base, ld,
                 &idx[0] if idx.shape[0] else NULL, &w[0] if w.shape[0] else NULL, idx.shape[0])


def kernel_signs_matvec(str isa, float[::1] y, const uint64_t[:, ::1] bits, const float[::1] w):
    """y += sum_j w[j] * sign_j."""
    cdef const sc_kernels *K = _get(isa)
    _check_bits(bits, y.shape[0])
    if w.shape[0] != bits.shape[0]:
        raise ValueError("shape mismatch")
    if y.shape[0] and w.shape[0]:
        K.signs_matvec(&y[0], y.shape[0], &bits[0, 0], bits.shape[1], &w[0], w.shape[0])


def kernel_signs_rmatvec(str isa, const float[::1] x, const uint64_t[:, ::1] bits):
    """z[j] = <sign_j, x>."""
    cdef const sc_kernels *K = _get(isa)
    _check_bits(bits, x.shape[0])
    cdef float[::1] z = np.zeros(bits.shape[0], np.float32)
    if x.shape[0] and bits.shape[0]:
        K.signs_rmatvec(&z[0], &x[0], x.shape[0], &bits[0, 0], bits.shape[1], bits.shape[0])
    return np.asarray(z)


def kernel_rank_update(str isa, cnp.ndarray out, const float[:, ::1] a, const float[:, ::1] panel):
    """out += a @ panel."""
    cdef const sc_kernels *K = _get(isa)
    cdef int64_t ld = _ld(out)
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if a.shape[0] != out.shape[0] or panel.shape[1] != out.shape[1] or a.shape[1] != panel.shape[0]:
        raise ValueError("shape mismatch")
    if out.shape[0] and out.shape[1] and a.shape[1]:
        K.rank_update(<float *>cnp.PyArray_DATA(out), out.shape[0], out.shape[1], ld,
                      &a[0, 0], a.shape[1], &panel[0, 0], a.shape[1])


def kernel_pack_signs(str isa, const float[::1] x):
    """(bits, sum |x|)."""
    cdef const sc_kernels *K = _get(isa)
    cdef uint64_t[::1] bits = np.full((x.shape[0] + 63) // 64, 0xFFFFFFFFFFFFFFFF, np.uint64)
    cdef double s = 0.0
    if x.shape[0]:
        s = K.pack_signs(&bits[0], &x[0], x.shape[0])
    return np.asarray(bits), s


def kernel_diff_signs(str isa, const float[::1] a, const float[::1] b):
    """(bits of a - b, sum |a - b|)."""
    cdef const sc_kernels *K = _get(isa)
    if a.shape[0] != b.shape[0]:
        raise ValueError("a and b differ in length")
    cdef uint64_t[::1] bits = np.full((a.shape[0] + 63) // 64, 0xFFFFFFFFFFFFFFFF, np.uint64)
    cdef double s = 0.0
    if a.shape[0]:
        s = K.diff_signs(&bits[0], &a[0], &b[0], a.shape[0])
    return np.asarray(bits), s


def kernel_unpack_signs(str isa, const uint64_t[::1] bits, int64_t length, float scale):
    cdef const sc_kernels *K = _get(isa)
    if bits.shape[0] != (length + 63) // 64:
        raise ValueError("packed signs have the wrong number of words")
    cdef float[::1] out = np.zeros(length, np.float32)
    if length:
        K.unpack_signs(&out[0], &bits[0], length, scale)
    return np.asarray(out)


def kernel_sign_dots(str isa, const uint64_t[:, ::1] bits, const uint64_t[::1] x, int64_t length):
    cdef const sc_kernels *K = _get(isa)
    _check_bits(bits, length)
    if x.shape[0] != bits.shape[1]:
        raise ValueError("shape mismatch")
    cdef int64_t[::1] dots = np.zeros(bits.shape[0], np.int64)
    if bits.shape[0] and x.shape[0]:
        K.sign_dots(&dots[0], &bits[0, 0], bits.shape[1], &x[0], x.shape[0], length, bits.shape[0])
    return np.asarray(dots)


def kernel_group_apply(str isa, float[::1] y, const uint64_t[::1] pend, const float[::1] w):
    """y[i] += sum_j w[j] * (-1 if bit j of pend[i] else 1), for up to 64 weights, through the
    engine's 4-bit tables in 16-bit fixed point (pend stored as nibbles first)."""
    cdef const sc_kernels *K = _get(isa)
    cdef uint8_t tlo[16 * SC_NIB_GROUPS]
    cdef uint8_t thi[16 * SC_NIB_GROUPS]
    cdef float wbuf[64]
    cdef float scale = 0
    cdef int64_t k = w.shape[0], n = y.shape[0], j, i, ng
    if k > 64 or pend.shape[0] != n:
        raise ValueError("shape mismatch")
    cdef uint8_t[::1] nib = np.zeros(SC_NIB_GROUPS * n, np.uint8)
    for i in range(n):
        for j in range(SC_NIB_GROUPS):
            nib[j * n + i] = (pend[i] >> (4 * j)) & 15
    for j in range(k):
        wbuf[j] = w[j]
    ng = K.nib_tables(tlo, thi, &scale, wbuf, k)
    if n and ng:
        K.group_apply(&y[0], n, &nib[0], n, tlo, thi, ng, scale)


def kernel_nib_tables(str isa, const float[::1] w):
    """The group tables of weights w (up to 64): (int16 entries (groups, 16), unit)."""
    cdef const sc_kernels *K = _get(isa)
    cdef uint8_t tlo[16 * SC_NIB_GROUPS]
    cdef uint8_t thi[16 * SC_NIB_GROUPS]
    cdef float scale = 0
    cdef int64_t k = w.shape[0], ng, i
    if k > 64:
        raise ValueError("shape mismatch")
    ng = K.nib_tables(tlo, thi, &scale, &w[0] if k else NULL, k)
    cdef uint16_t[::1] out = np.zeros(16 * ng, np.uint16)
    for i in range(16 * ng):
        out[i] = tlo[i] | (thi[i] << 8)
    return np.asarray(out).view(np.int16).reshape(ng, 16), scale


def kernel_transpose(str isa, cnp.ndarray src):
    """src.T as a new C-contiguous array."""
    cdef const sc_kernels *K = _get(isa)
    cdef int64_t lds = _ld(src)
    cdef int64_t rows = src.shape[0], cols = src.shape[1]
    out = np.empty((cols, rows), np.float32)
    if rows and cols:
        K.transpose(<float *>cnp.PyArray_DATA(out), rows, <const float *>cnp.PyArray_DATA(src),
                    lds, rows, cols)
    return out


def kernel_accum_rows_h(str isa, float[::1] y, const uint16_t[:, ::1] rows, const int64_t[::1] idx,
                        const float[::1] w):
    """y += sum_q w[q] * float32(rows[idx[q], :len(y)]) for float16 rows (given as their uint16 bits).
    Releases the GIL while it works (benchmarks/bench_threads.py runs it on several threads)."""
    cdef const sc_kernels *K = _get(isa)
    if idx.shape[0] != w.shape[0] or y.shape[0] > rows.shape[1]:
        raise ValueError("shape mismatch")
    if idx.shape[0] and (np.min(idx) < 0 or np.max(idx) >= rows.shape[0]):
        raise IndexError("row index out of range")
    if y.shape[0] == 0 or idx.shape[0] == 0:
        return
    with nogil:
        K.accum_rows_h(&y[0], y.shape[0], &rows[0, 0], rows.shape[1], &idx[0], &w[0], idx.shape[0])


def kernel_to_half(str isa, const float[::1] x, float scale):
    """float16(scale * x) as uint16 bits, rounded to nearest even."""
    cdef const sc_kernels *K = _get(isa)
    cdef uint16_t[::1] out = np.zeros(x.shape[0], np.uint16)
    if x.shape[0]:
        K.to_half(&out[0], &x[0], x.shape[0], scale)
    return np.asarray(out)


def kernel_transpose16(str isa, const uint16_t[:, :] src):
    """src.T (16-bit entries, rows of src contiguous) as a C-contiguous array."""
    cdef const sc_kernels *K = _get(isa)
    cdef int64_t rows = src.shape[0], cols = src.shape[1]
    if cols > 1 and src.strides[1] != 2 or src.strides[0] % 2 or src.strides[0] < 0:
        raise ValueError("expected a 2-D uint16 array with contiguous rows")
    out = np.zeros((cols, rows), np.uint16)
    cdef uint16_t[:, ::1] o = out
    if rows and cols:
        K.transpose16(&o[0, 0], rows, &src[0, 0], src.strides[0] // 2, rows, cols)
    return out


def kernel_absmax(str isa, const float[::1] x):
    cdef const sc_kernels *K = _get(isa)
    return K.absmax(&x[0], x.shape[0]) if x.shape[0] else 0.0


def kernel_lut3_rows(str isa, float[::1] out, const uint32_t[:, :, ::1] lanes, const float[::1] x):
    """out[r] += <sign row r, x>, sign rows in lane layout (len(out) a multiple of 8), through
    3-bit group tables of x."""
    cdef const sc_kernels *K = _get(isa)
    cdef int64_t nwords = _lane_words(lanes, out.shape[0], x.shape[0])
    tab = np.zeros(max(1, nwords) * 8 * SC_LUT3_GROUPS, np.float32)
    cdef float[::1] t = tab
    if x.shape[0]:
        sc_lut3_tables(&t[0], &x[0], x.shape[0])
    if out.shape[0] and nwords:
        K.lut3_rows(&out[0], out.shape[0], &lanes[0, 0, 0], 8 * nwords, &t[0], nwords)


def kernel_lut_rows(str isa, float[:, ::1] out, const uint32_t[:, :, ::1] lanes, const float[:, ::1] tab):
    """out[r] += sum over 4-bit groups g of sign row r (lane layout) of tab[16 g + group], table
    rows a multiple of 8 floats wide."""
    cdef const sc_kernels *K = _get(isa)
    cdef int64_t pb = tab.shape[1], nwords = lanes.shape[1]
    _lane_words(lanes, out.shape[0], 32 * nwords)
    if out.shape[1] != pb or tab.shape[0] != 128 * nwords or pb % 8:
        raise ValueError("shape mismatch")
    if out.shape[0] and nwords and pb:
        K.lut_rows(&out[0, 0], out.shape[0], &lanes[0, 0, 0], 8 * nwords, &tab[0, 0], nwords, pb)


def kernel_sumsq(str isa, const float[::1] x):
    cdef const sc_kernels *K = _get(isa)
    return K.sumsq(&x[0], x.shape[0]) if x.shape[0] else 0.0

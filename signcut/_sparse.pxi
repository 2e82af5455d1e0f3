# Wrappers of the sparse and operator engine (src/sparse.c) and its kernels; included from
# _core.pyx. Arguments are validated by signcut/_sparse.py; these check what would be unsafe
# for the C code (lengths, pointer ranges, index ranges).
from libc.stdint cimport int32_t
from libc.string cimport memcpy


def kernel_sparse_accum(str isa, float[::1] y, int64_t lo, const int64_t[::1] ptr,
                        const int32_t[::1] idx, const float[::1] val, const int64_t[::1] lines,
                        const float[::1] w):
    """y[i - lo] += w[q] * val[e] over the entries e of line lines[q] with index i in
    [lo, lo + len(y))."""
    cdef const sc_kernels *K = _get(isa)
    _check_lines(ptr, idx, val, None)
    if lines.shape[0] != w.shape[0]:
        raise ValueError("shape mismatch")
    if lines.shape[0] and (np.min(lines) < 0 or np.max(lines) >= ptr.shape[0] - 1):
        raise IndexError("line out of range")
    cdef float dummy = 0
    if lines.shape[0]:
        K.sparse_accum(&y[0] if y.shape[0] else &dummy, lo, lo + y.shape[0], &ptr[0],
                       &idx[0] if idx.shape[0] else NULL, &val[0] if val.shape[0] else NULL,
                       &lines[0], &w[0], lines.shape[0])


def kernel_sparse_sign_rows(str isa, const int64_t[::1] ptr, const int32_t[::1] idx,
                            const float[::1] val, const uint64_t[::1] bits, int64_t length):
    """y[r] = sum of val[e] * sign(bits, idx[e]) over line r."""
    cdef const sc_kernels *K = _get(isa)
    if bits.shape[0] != (length + 63) // 64:
        raise ValueError("packed signs have the wrong number of words")
    _check_lines(ptr, idx, val, length)
    cdef int64_t rows = ptr.shape[0] - 1
    out = np.zeros(rows, np.float32)
    cdef float[::1] y = out
    if rows:
        K.sparse_sign_rows(&y[0], &ptr[0], &idx[0] if idx.shape[0] else NULL,
                           &val[0] if val.shape[0] else NULL, rows,
                           &bits[0] if bits.shape[0] else NULL)
    return out


def kernel_flip_dots(str isa, const uint64_t[:, ::1] bits, const uint64_t[::1] old,
                     const uint64_t[::1] cur, const int64_t[::1] qs):
    """cnt[j] = sum over q in qs of popcount((old[q] ^ cur[q]) & (bits[j, q] ^ cur[q]))."""
    cdef const sc_kernels *K = _get(isa)
    cdef int64_t k = bits.shape[0], words = bits.shape[1]
    if old.shape[0] != words or cur.shape[0] != words:
        raise ValueError("shape mismatch")
    if qs.shape[0] and (np.min(qs) < 0 or np.max(qs) >= words):
        raise IndexError("word out of range")
    cnt = np.zeros(k, np.int64)
    cdef int64_t[::1] c = cnt
    if k and qs.shape[0]:
        K.flip_dots(&c[0], &bits[0, 0], words, &old[0], &cur[0], &qs[0], qs.shape[0], k)
    return cnt


def kernel_chunk_apply(str isa, float[::1] y, const uint64_t[::1] signs, const float[::1] w,
                       int64_t planes):
    """y[i] += sum_j w[j] * (-1 if bit j of signs[i] else 1) for up to 8 * planes weights,
    through the nibble tables in 16-bit fixed point, the signs in chunk layout of `planes`
    planes (common.h)."""
    cdef const sc_kernels *K = _get(isa)
    cdef uint8_t tlo[16 * SC_NIB_GROUPS]
    cdef uint8_t thi[16 * SC_NIB_GROUPS]
    cdef uint8_t tab[512]
    cdef float scale = 0
    cdef int64_t k = w.shape[0], n = y.shape[0], ng
    if planes not in (2, 4, 8) or k > 8 * planes or signs.shape[0] != n:
        raise ValueError("shape mismatch")
    # byte p of entry i's word (little-endian) at plane p of its chunk
    nchunks = (n + 15) // 16
    padded = np.zeros(16 * nchunks, "<u8")
    padded[:n] = signs
    cdef uint8_t[::1] chunks = np.ascontiguousarray(
        padded.view(np.uint8).reshape(nchunks, 16, 8)[:, :, :planes].transpose(0, 2, 1)).ravel()
    ng = K.nib_tables(tlo, thi, &scale, &w[0] if k else NULL, k)
    sc_chunk_tables(tab, tlo, thi, ng)
    if n and ng:
        K.chunk_apply(&y[0], n, &chunks[0], planes, tab, scale)


cdef _check_lines(const int64_t[::1] ptr, const int32_t[::1] idx, const float[::1] val, length):
    """Line pointers that stay inside idx/val and never decrease; indices in [0, length)."""
    p = np.asarray(ptr)
    if p.shape[0] < 1 or p[0] != 0 or p[len(p) - 1] != idx.shape[0] or idx.shape[0] != val.shape[0]:
        raise ValueError("line pointers do not match the indices and values")
    if p.shape[0] > 1 and np.any(np.diff(p) < 0):
        raise ValueError("line pointers must not decrease")
    if length is not None and idx.shape[0]:
        i = np.asarray(idx)
        if i.min() < 0 or i.max() >= length:
            raise ValueError("sparse index out of range")


cdef tuple _init_cuts(sc_cuts *c, init, int64_t m, int64_t n):
    """Fill c from init = (s_bits, t_bits, coef) in the engine's scale (None: no cuts);
    returns the arrays it points into, which the caller keeps alive."""
    c.width = 0
    c.bits[0] = c.bits[1] = NULL
    c.coef = NULL
    if init is None:
        return ()
    cdef const uint64_t[:, ::1] s = np.ascontiguousarray(init[0], np.uint64)
    cdef const uint64_t[:, ::1] t = np.ascontiguousarray(init[1], np.uint64)
    cdef const float[::1] coef = np.ascontiguousarray(init[2], np.float32)
    cdef int64_t w = coef.shape[0]
    if s.shape[0] != w or t.shape[0] != w or s.shape[1] != (m + 63) // 64 \
            or t.shape[1] != (n + 63) // 64:
        raise ValueError("init's signs and coefficients do not describe cuts of an m x n matrix")
    if w:
        c.width = w
        c.bits[0], c.bits[1], c.coef = &s[0, 0], &t[0, 0], &coef[0]
    return (s, t, coef)


cdef void _search_params(sc_params *prm, int restarts, double growth_tol,
                         bint warm_start) except *:
    prm.warm_start = warm_start
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    prm.restarts = restarts
    prm.growth_tol = growth_tol


def sparse_decompose(int64_t m, int64_t n, const int64_t[::1] row_ptr,
                     const int32_t[::1] col_idx, const float[::1] row_val,
                     const int64_t[::1] col_ptr, const int32_t[::1] row_idx,
                     const float[::1] col_val, int64_t max_width, double rtol,
                     double max_seconds, int64_t block_size, int64_t max_sweeps, int n_threads,
                     seed_state, callback=None, int restarts=1, bint warm_start=False,
                     double growth_tol=0.0, init=None):
    """Greedy signed cut decomposition of the m x n sparse matrix given as CSR (row_ptr,
    col_idx, row_val) and CSC (col_ptr, row_idx, col_val), float32 values, indices strictly
    increasing within each line; the remainder stays implicit. init: (s_bits, t_bits, coef)
    of cuts made before, the first cuts of the result (max_width counts them).

    Returns ([s_bits, t_bits], coef, errors, norm, stopped_by)."""
    if m < 1 or n < 1 or row_ptr.shape[0] != m + 1 or col_ptr.shape[0] != n + 1 \
            or col_idx.shape[0] != row_idx.shape[0]:
        raise ValueError("the CSR and CSC arrays do not describe one m x n matrix")
    _check_lines(row_ptr, col_idx, row_val, n)
    _check_lines(col_ptr, row_idx, col_val, m)
    cdef sc_sparse A
    A.m, A.n = m, n
    A.row_ptr, A.col_ptr = &row_ptr[0], &col_ptr[0]
    A.col_idx = &col_idx[0] if col_idx.shape[0] else NULL
    A.row_idx = &row_idx[0] if row_idx.shape[0] else NULL
    A.row_val = &row_val[0] if row_val.shape[0] else NULL
    A.col_val = &col_val[0] if col_val.shape[0] else NULL
    cdef sc_params prm
    cdef progress_ctx pctx
    cdef sc_result res
    cdef sc_cuts cuts
    cdef int status
    cdef int64_t dims[2]
    dims[0], dims[1] = m, n
    keep = _init_cuts(&cuts, init, m, n)
    cdef _Progress prog = _Progress(callback)
    _fill_params(&prm, &pctx, prog, max_width, rtol, max_seconds, block_size, max_sweeps,
                 n_threads, seed_state, 0)
    _search_params(&prm, restarts, growth_tol, warm_start)
    memset(&res, 0, sizeof(res))
    cdef const sc_kernels *K = _active
    try:
        with nogil:
            status = sc_sparse_decompose(K, &A, &cuts, &prm, &res)
        out = _take_result(&res, dims)
    finally:
        sc_result_free(&res)
    prog.check(status)
    return out


cdef struct product_ctx:
    void *product         # borrowed reference to a Python callable (transposed, signs) -> array
    void *prog            # borrowed reference to the _Progress that keeps its exception
    int64_t m, n


cdef int _product_hook(void *ctx, int transposed, const uint64_t *bits,
                       float *out) noexcept with gil:
    cdef product_ctx *c = <product_ctx *>ctx
    cdef _Progress prog = <_Progress>c.prog
    cdef int64_t d = c.m if transposed else c.n, length = c.n if transposed else c.m
    cdef float[::1] r
    try:
        PyErr_CheckSignals()
        words = (d + 63) // 64
        packed = np.asarray(<const uint64_t[:words]>bits).astype("<u8").view(np.uint8)
        signs = 1.0 - 2.0 * np.unpackbits(packed, count=d, bitorder="little")
        r = (<object>c.product)(bool(transposed), signs)
        if r.shape[0] != length:
            raise ValueError(f"the product returned {r.shape[0]} values, expected {length}")
        if length:
            memcpy(out, &r[0], length * sizeof(float))
    except BaseException as e:
        prog.error = e
        return 1
    return 0


def operator_decompose(int64_t m, int64_t n, double norm2, product, int64_t max_width,
                       double rtol, double max_seconds, int64_t block_size, int64_t max_sweeps,
                       int n_threads, seed_state, callback=None,
                       int restarts=1, bint warm_start=False, double growth_tol=0.0,
                       init=None):
    """Greedy signed cut decomposition of an m x n operator with squared Frobenius norm norm2,
    known through ``product(transposed, signs)``: A @ signs (n signs as float64 +-1) or, with
    transposed, A.T @ signs (m signs), returned as a float32 array of m (n) values. init as
    for sparse_decompose.

    Returns ([s_bits, t_bits], coef, errors, norm, stopped_by)."""
    if m < 1 or n < 1 or not norm2 >= 0:
        raise ValueError("invalid operator shape or norm")
    cdef sc_params prm
    cdef progress_ctx pctx
    cdef product_ctx cctx
    cdef sc_result res
    cdef sc_cuts cuts
    cdef int status
    cdef int64_t dims[2]
    dims[0], dims[1] = m, n
    keep = _init_cuts(&cuts, init, m, n)
    cdef _Progress prog = _Progress(callback)
    _fill_params(&prm, &pctx, prog, max_width, rtol, max_seconds, block_size, max_sweeps,
                 n_threads, seed_state, 0)
    _search_params(&prm, restarts, growth_tol, warm_start)
    cctx.product = <void *>product
    cctx.prog = <void *>prog
    cctx.m, cctx.n = m, n
    memset(&res, 0, sizeof(res))
    cdef const sc_kernels *K = _active
    try:
        with nogil:
            status = sc_operator_decompose(K, m, n, norm2, _product_hook, &cctx, &cuts, &prm,
                                           &res)
        out = _take_result(&res, dims)
    finally:
        sc_result_free(&res)
    prog.check(status)
    return out

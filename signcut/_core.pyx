# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrappers around the signcut C engine (include/signcut/signcut.h).

Arguments are validated by the Python layer (signcut/_api.py); these wrappers only check
what would be unsafe for the C code (shapes, contiguity), and map status codes to exceptions.
"""
import os
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset
from cpython.exc cimport PyErr_CheckSignals
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

from signcut._core cimport *

cnp.import_array()

ISA_NAMES = ("scalar", "avx2", "avx512")
MAX_NDIM = SC_MAX_NDIM       # orders the engines take
MAX_BLOCK = SC_MAX_BLOCK     # cuts kept pending at most (decompose's block_size)

cdef const sc_kernels *_active = NULL


def supported_kernels():
    """Names of the kernel tables this CPU can run, best last."""
    cdef int mask = sc_cpu_supported()
    return [name for bit, name in enumerate(ISA_NAMES) if mask & (1 << bit)
            and sc_kernels_get(name.encode()) != NULL]


cdef const sc_kernels *_get(str name) except NULL:
    if name not in ISA_NAMES:
        raise ValueError(f"unknown instruction set {name!r}; expected one of {', '.join(ISA_NAMES)}")
    cdef const sc_kernels *k = sc_kernels_get(name.encode())
    if k == NULL:
        raise RuntimeError(
            f"instruction set {name!r} is not available on this CPU (it supports: "
            f"{', '.join(supported_kernels())}; features found: {sc_cpu_features().decode() or 'none'})")
    return k


def missing_kernel(str name):
    """The first kernel the table compiled for instruction set `name` leaves unset (whether or
    not this CPU can run it), or None."""
    cdef const char *missing = sc_kernels_missing(name.encode())
    return None if missing == NULL else (<bytes>missing).decode()


def use_kernels(name=None):
    """Select the kernel table by name ("scalar", "avx2", "avx512"); None picks the best.
    Returns the name of the previous selection."""
    global _active
    prev = active_kernels()
    _active = sc_kernels_best() if name is None else _get(name)
    return prev


def active_kernels():
    return None if _active == NULL else (<bytes>_active.name).decode()


def cpu_info():
    """What the CPU offers and what signcut uses."""
    return {
        "features": [f for f in sc_cpu_features().decode().split(",") if f],
        "supported": supported_kernels(),
        "best": (<bytes>sc_kernels_best().name).decode(),
        "active": active_kernels(),
        "override": os.environ.get("SIGNCUT_CPU") or None,
        "openmp": bool(sc_openmp_enabled()),
        "default_threads": sc_default_threads(),
    }


def default_threads():
    return sc_default_threads()


cdef _check(int status):
    if status == SC_OK:
        return
    if status == SC_ERR_NOMEM:
        raise MemoryError("signcut: out of memory in the C engine")
    if status == SC_ERR_ARG:
        raise ValueError("signcut: invalid argument passed to the C engine")
    if status == SC_ERR_CPU:
        raise RuntimeError("signcut: instruction set not available")
    raise RuntimeError(f"signcut: C engine failed with status {status}")


# ---------------------------------------------------------------- helpers of the wrappers

cdef int64_t _ld(cnp.ndarray a) except -1:
    if a.ndim == 2 and a.dtype == np.float32 and a.size == 0:
        return max(1, a.shape[1])
    if a.ndim != 2 or a.dtype != np.float32 or a.strides[1] != 4 or a.strides[0] % 4 or a.strides[0] < 0:
        raise ValueError("expected a 2-D float32 array with contiguous rows")
    return a.strides[0] // 4


cdef void _check_bits(const uint64_t[:, ::1] bits, int64_t length) except *:
    if bits.shape[1] != (length + 63) // 64:
        raise ValueError("packed signs have the wrong number of words")


cdef int64_t _lane_words(const uint32_t[:, :, ::1] lanes, int64_t rows, int64_t length) except -1:
    """Checks a lane layout (rows/8, words, 8) for `rows` sign rows of `length` entries."""
    if rows % 8 or lanes.shape[0] != rows // 8 or lanes.shape[2] != 8 \
            or lanes.shape[1] != (length + 31) // 32:
        raise ValueError("sign rows in lane layout have the wrong shape")
    return lanes.shape[1]


def bits_transpose(const uint64_t[:, ::1] bits, int64_t length):
    """(rows, ceil(length/64)) packed sign rows -> (length, ceil(rows/64)): bit j of row i of
    the answer is entry i of row j."""
    _check_bits(bits, length)
    cdef int64_t rows = bits.shape[0]
    out = np.zeros((length, (rows + 63) // 64), np.uint64)
    cdef uint64_t[:, ::1] o = out
    if rows and length:
        with nogil:
            sc_bits_transpose(&o[0, 0], &bits[0, 0], rows, bits.shape[1], length)
    return out


def bits_lanes(const uint64_t[:, ::1] bits, int64_t length):
    """(rows, ceil(length/64)) packed sign rows -> their lane layout (ceil(rows/8),
    ceil(length/32), 8) uint32 (see signcut.h)."""
    _check_bits(bits, length)
    cdef int64_t rows = bits.shape[0]
    out = np.empty(((rows + 7) // 8, (length + 31) // 32, 8), np.uint32)
    cdef uint32_t[:, :, ::1] o = out
    if out.size:
        with nogil:
            sc_bits_lanes(&o[0, 0, 0], &bits[0, 0], rows, bits.shape[1], length)
    return out


def matrix_matmul(float[:, ::1] y, const float[:, ::1] x, const uint32_t[:, :, ::1] t_lanes,
                  const uint32_t[:, :, ::1] st_lanes, const float[::1] coef, int n_threads=1,
                  str isa=None):
    """y (m x p) = S diag(coef) T^T x for x (n x p), from T (width rows of n signs) and S
    transposed (m rows of width signs) in lane layout (see signcut.h); isa None: the active
    kernels."""
    cdef const sc_kernels *K = _active if isa is None else _get(isa)
    cdef int64_t m = y.shape[0], p = y.shape[1], n = x.shape[0], w = coef.shape[0]
    if x.shape[1] != p:
        raise ValueError("shape mismatch")
    _lane_words(t_lanes, (w + 7) // 8 * 8, n)
    _lane_words(st_lanes, (m + 7) // 8 * 8, w)
    if m == 0 or p == 0:
        return np.asarray(y)
    cdef float zero = 0.0
    cdef const float *xp = &x[0, 0] if n else &zero
    cdef const uint32_t *tp = &t_lanes[0, 0, 0] if t_lanes.size else NULL
    cdef const uint32_t *sp = &st_lanes[0, 0, 0] if st_lanes.size else NULL
    cdef const float *cp = &coef[0] if w else NULL
    cdef int status
    with nogil:
        status = sc_matrix_matmul(K, &y[0, 0], p, xp, p, p, m, n, tp, sp, cp, w, n_threads)
    _check(status)
    return np.asarray(y)


def sumsq(const float[::1] x):
    """Sum of squares of x, accumulated in float64 by the active kernels."""
    return _active.sumsq(&x[0], x.shape[0]) if x.shape[0] else 0.0


include "_kernels.pxi"


# ---------------------------------------------------------------- decomposition

cdef class _Progress:
    """The user's callback and any exception raised while the engine ran."""
    cdef object callback
    cdef object error

    def __init__(self, callback):
        self.callback = callback
        self.error = None

    cdef check(self, int status):
        """Raise what ended an engine run with ``status``: the callback's own exception, or
        the status's."""
        if status == SC_ERR_CALLBACK and self.error is not None:
            raise self.error
        _check(status)


cdef struct progress_ctx:
    void *prog            # borrowed reference to a _Progress
    int has_callback
    double last_check


cdef double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef int _progress_call(progress_ctx *c, int64_t cuts, double rel_error) noexcept with gil:
    cdef _Progress prog = <_Progress>c.prog
    try:
        PyErr_CheckSignals()
        if cuts >= 0 and prog.callback is not None and prog.callback(int(cuts), float(rel_error)):
            return SC_PROGRESS_STOP
    except BaseException as e:
        prog.error = e
        return SC_PROGRESS_FAILED
    return SC_PROGRESS_GO_ON


cdef int _progress_hook(void *ctx, int64_t cuts, double rel_error) noexcept nogil:
    # Takes the GIL after every cut only when there is a user callback; otherwise every
    # 0.2 s, to notice Ctrl-C. cuts < 0 (refinement passes) only looks for Ctrl-C.
    cdef progress_ctx *c = <progress_ctx *>ctx
    cdef double t = _now()
    if (not c.has_callback or cuts < 0) and t - c.last_check < 0.2:
        return SC_PROGRESS_GO_ON
    c.last_check = t
    return _progress_call(c, cuts, rel_error)


STOP_REASONS = {SC_STOP_WIDTH: "width", SC_STOP_RTOL: "rtol", SC_STOP_TIME: "max_seconds",
                SC_STOP_CALLBACK: "callback", SC_STOP_EXHAUSTED: "exhausted"}


cdef void _fill_params(sc_params *prm, progress_ctx *pctx, _Progress prog, int64_t max_width,
                       double rtol, double max_seconds, int64_t block_size, int64_t max_sweeps,
                       int n_threads, seed_state, int64_t first_cut) except *:
    state = np.asarray(seed_state, dtype=np.uint64).ravel()
    if state.shape[0] != 4:
        raise ValueError("seed_state must hold 4 uint64 words")
    prm.max_width = max_width
    prm.rtol = rtol
    prm.max_seconds = max_seconds
    prm.block_size = block_size
    prm.max_sweeps = max_sweeps
    prm.n_threads = n_threads
    for i in range(4):
        prm.seed[i] = <uint64_t>state[i]
    if first_cut < 0:
        raise ValueError(f"first_cut must be >= 0, got {first_cut}")
    prm.first_cut = first_cut
    pctx.prog = <void *>prog
    pctx.has_callback = prog.callback is not None
    pctx.last_check = _now()
    prm.progress = _progress_hook
    prm.progress_ctx = <void *>pctx
    prm.warm_start = 0
    prm.restarts = 1
    prm.refine = 0
    prm.growth_tol = 0.0
    prm.warm_s = NULL
    prm.warm_t = NULL
    prm.ref_norm2 = 0.0


cdef tuple _take_result(sc_result *res, const int64_t *dims):
    """(signs per mode, coef, errors, norm, stopped_by) copied out of an engine's result."""
    w = res.width
    signs = []
    for a in range(res.ndim):
        words = (dims[a] + 63) // 64
        arr = np.empty((w, words), np.uint64)
        if w:
            arr.ravel()[:] = <uint64_t[:w * words]>res.bits[a]
        signs.append(arr)
    coef = np.empty(w, np.float32)
    errors = np.empty(w, np.float64)
    if w:
        coef[:] = <float[:w]>res.coef
        errors[:] = <double[:w]>res.errors
    return signs, coef, errors, res.norm, STOP_REASONS[res.stopped_by]


def decompose(cnp.ndarray R, int64_t max_width, double rtol, double max_seconds,
              int64_t block_size, int64_t max_sweeps, int n_threads, seed_state,
              callback=None, bint warm_start=False, int restarts=1, int refine=0,
              double growth_tol=0.0, warm_signs=None, int64_t first_cut=0,
              double ref_norm2=0.0):
    """Greedy signed cut decomposition of the C-contiguous float32 tensor R (overwritten with
    the remainder; matrices through the matrix engine, whose search options warm_start,
    restarts, refine, growth_tol and warm_signs the tensor engine does not have). The random
    starts are those of cuts first_cut, first_cut + 1, ... of a run with this seed; errors,
    rtol and the callback's errors are relative to sqrt(ref_norm2) when it is > 0 (else to
    R's norm), and the callback counts first_cut + the cuts made here.

    Returns (signs per mode, coef, errors, norm of R, stopped_by)."""
    if R.ndim < 1 or R.ndim > SC_MAX_NDIM or R.dtype != np.float32 or not R.flags.c_contiguous \
            or not R.flags.writeable:
        raise ValueError("R must be a writable C-contiguous float32 array of 1 to 32 dimensions")
    if restarts < 1:
        raise ValueError(f"restarts must be at least 1, got {restarts}")
    if refine < 0:
        raise ValueError(f"refine must be at least 0, got {refine}")
    if not ref_norm2 >= 0:
        raise ValueError(f"ref_norm2 must be >= 0, got {ref_norm2}")
    cdef sc_params prm
    cdef progress_ctx pctx
    cdef sc_result res
    cdef int ndim = R.ndim, a, status
    cdef int64_t dims[SC_MAX_NDIM]
    for a in range(ndim):
        dims[a] = R.shape[a]
    cdef _Progress prog = _Progress(callback)
    _fill_params(&prm, &pctx, prog, max_width, rtol, max_seconds, block_size, max_sweeps,
                 n_threads, seed_state, first_cut)
    prm.warm_start = warm_start
    prm.restarts = restarts
    prm.refine = refine
    prm.growth_tol = growth_tol
    prm.ref_norm2 = ref_norm2
    cdef const uint64_t[::1] warm_s, warm_t
    if warm_signs is not None:
        if ndim != 2:
            raise ValueError("warm_signs apply to matrices")
        warm_s = np.ascontiguousarray(warm_signs[0], np.uint64)
        warm_t = np.ascontiguousarray(warm_signs[1], np.uint64)
        if warm_s.shape[0] != (dims[0] + 63) // 64 or warm_t.shape[0] != (dims[1] + 63) // 64:
            raise ValueError("warm_signs do not match the matrix's shape")
        prm.warm_s = &warm_s[0]
        prm.warm_t = &warm_t[0]
    memset(&res, 0, sizeof(res))
    cdef const sc_kernels *K = _active
    cdef float *data = <float *>cnp.PyArray_DATA(R)
    try:
        with nogil:
            status = sc_decompose(K, data, ndim, dims, &prm, &res)
        out = _take_result(&res, dims)
    finally:
        sc_result_free(&res)
    prog.check(status)
    return out


def expand(cnp.ndarray out, signs, const float[::1] coef, float sign=1.0, int n_threads=1):
    """out (a C-contiguous float32 tensor, one mode per sign array) += sign * sum_j coef[j]
    s1_j x ... x sk_j, for signs[a] of shape (width, ceil(out.shape[a] / 64))."""
    if out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writable C-contiguous float32 array")
    cdef int ndim = out.ndim, a
    cdef int64_t w = coef.shape[0]
    if ndim < 1 or ndim > SC_MAX_NDIM or len(signs) != ndim:
        raise ValueError("one sign array per mode of out (1 to 32 modes)")
    cdef int64_t dims[SC_MAX_NDIM]
    cdef const uint64_t *bits[SC_MAX_NDIM]
    held = []
    for a in range(ndim):
        dims[a] = out.shape[a]
        b = np.ascontiguousarray(signs[a], dtype=np.uint64)
        if b.ndim != 2 or b.shape[0] != w or b.shape[1] != (dims[a] + 63) // 64:
            raise ValueError(f"signs of mode {a} do not match the width and the mode's size")
        held.append(b)
        bits[a] = <const uint64_t *>cnp.PyArray_DATA(b)
    if w == 0 or out.size == 0:
        return out
    cdef const sc_kernels *K = _active
    cdef float *data = <float *>cnp.PyArray_DATA(out)
    cdef const float *c = &coef[0]
    cdef int status
    with nogil:
        status = sc_tensor_expand(K, data, ndim, dims, bits, c, w, sign, n_threads)
    _check(status)
    return out


def _init():
    # An override that cannot be honoured warns and falls back to the best kernels: an
    # environment variable must not make `import signcut` fail.
    name = os.environ.get("SIGNCUT_CPU", "").strip().lower() or None
    try:
        use_kernels(name)
    except (ValueError, RuntimeError) as exc:
        import warnings
        warnings.warn(f"SIGNCUT_CPU={name!r} ignored: {exc}; using "
                      f"{(<bytes>sc_kernels_best().name).decode()}", RuntimeWarning, stacklevel=2)
        use_kernels(None)

_init()

include "_sparse.pxi"

include "_algebra.pxi"

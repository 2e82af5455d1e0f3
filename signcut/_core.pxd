# Declarations of the C API (include/signcut/signcut.h); nothing else lives here.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "signcut/signcut.h" nogil:
    enum:
        SC_OK
        SC_ERR_NOMEM
        SC_ERR_ARG
        SC_ERR_CALLBACK
        SC_ERR_CPU

    ctypedef struct sc_kernels:
        const char *name
        void (*accum_rows)(float *y, int64_t len, const float *rows, int64_t ld,
                           const int64_t *idx, const float *w, int64_t k)
        void (*signs_matvec)(float *y, int64_t len, const uint64_t *bits, int64_t wpr,
                             const float *w, int64_t k)
        void (*signs_rmatvec)(float *z, const float *x, int64_t len, const uint64_t *bits,
                              int64_t wpr, int64_t k) noexcept nogil
        void (*rank_update)(float *out, int64_t rows, int64_t cols, int64_t ld,
                            const float *a, int64_t lda, const float *panel, int64_t k)
        double (*pack_signs)(uint64_t *bits, const float *x, int64_t len)
        double (*diff_signs)(uint64_t *bits, const float *a, const float *b, int64_t len)
        void (*unpack_signs)(float *out, const uint64_t *bits, int64_t len, float scale)
        void (*sign_dots)(int64_t *dots, const uint64_t *bits, int64_t wpr, const uint64_t *x,
                          int64_t words, int64_t len, int64_t k)
        double (*sumsq)(const float *x, int64_t len)
        void (*group_apply)(float *y, int64_t len, const uint8_t *nib, int64_t ldn,
                            const uint8_t *tlo, const uint8_t *thi, int64_t ngroups, float scale)
        int64_t (*nib_tables)(uint8_t *tlo, uint8_t *thi, float *scale, const float *w, int64_t k)
        void (*transpose)(float *dst, int64_t ldd, const float *src, int64_t lds,
                          int64_t rows, int64_t cols)
        void (*accum_rows_h)(float *y, int64_t len, const uint16_t *rows, int64_t ld,
                             const int64_t *idx, const float *w, int64_t k) noexcept nogil
        void (*to_half)(uint16_t *dst, const float *src, int64_t len, float scale)
        void (*transpose16)(uint16_t *dst, int64_t ldd, const uint16_t *src, int64_t lds,
                            int64_t rows, int64_t cols)
        float (*absmax)(const float *x, int64_t len)
        void (*lut3_rows)(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                          const float *tab, int64_t nwords)
        void (*lut_rows)(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                         const float *tab, int64_t nwords, int64_t pb)
        void (*sparse_accum)(float *y, int64_t lo, int64_t hi, const int64_t *ptr,
                             const int32_t *idx, const float *val, const int64_t *lines,
                             const float *w, int64_t k)
        void (*sparse_sign_rows)(float *y, const int64_t *ptr, const int32_t *idx,
                                 const float *val, int64_t rows, const uint64_t *bits)
        void (*flip_dots)(int64_t *cnt, const uint64_t *bits, int64_t wpr, const uint64_t *old,
                          const uint64_t *cur, const int64_t *qs, int64_t nq, int64_t k)
        void (*gram_mul)(double *p, int64_t ldp, const uint64_t *a, int64_t lda, int64_t na,
                         const uint64_t *b, int64_t ldb, int64_t nb, int64_t words,
                         int64_t len) noexcept nogil
        void (*chunk_apply)(float *y, int64_t len, const uint8_t *chunks, int64_t planes,
                            const uint8_t *tab, float scale)

    const char *sc_kernels_missing(const char *name)
    int sc_cpu_supported()
    const char *sc_cpu_features()
    const sc_kernels *sc_kernels_get(const char *name)
    const sc_kernels *sc_kernels_best()
    int sc_openmp_enabled()
    int sc_default_threads()

    ctypedef int (*sc_progress_fn)(void *ctx, int64_t cuts, double rel_error) noexcept

    ctypedef struct sc_params:
        int64_t max_width
        double rtol
        double max_seconds
        int64_t block_size
        int64_t max_sweeps
        int n_threads
        uint64_t seed[4]
        int64_t first_cut
        sc_progress_fn progress
        void *progress_ctx
        int warm_start
        int restarts
        int refine
        double growth_tol
        const uint64_t *warm_s
        const uint64_t *warm_t
        double ref_norm2

    enum:
        SC_MAX_NDIM
        SC_MAX_BLOCK
        SC_STOP_WIDTH
        SC_STOP_RTOL
        SC_STOP_TIME
        SC_STOP_CALLBACK
        SC_STOP_EXHAUSTED
        SC_PROGRESS_GO_ON
        SC_PROGRESS_STOP
        SC_PROGRESS_FAILED

    ctypedef struct sc_result:
        int64_t width
        int64_t capacity
        int ndim
        uint64_t *bits[32]
        float *coef
        double *errors
        double norm
        int stopped_by

    int sc_decompose(const sc_kernels *K, float *R, int ndim, const int64_t *dims,
                     const sc_params *p, sc_result *res)
    void sc_result_free(sc_result *res)

    int sc_tensor_expand(const sc_kernels *K, float *out, int ndim, const int64_t *dims,
                         const uint64_t *const *bits, const float *coef, int64_t width,
                         float sign, int n_threads)
    int sc_matrix_expand(const sc_kernels *K, float *out, int64_t m, int64_t n, int64_t ld,
                         const uint64_t *s_bits, const uint64_t *t_bits, const float *coef,
                         int64_t width, float sign, int n_threads)

    void sc_bits_transpose(uint64_t *out, const uint64_t *bits, int64_t rows, int64_t wpr,
                           int64_t len)
    void sc_bits_lanes(uint32_t *out, const uint64_t *bits, int64_t rows, int64_t wpr, int64_t len)
    int sc_matrix_matmul(const sc_kernels *K, float *y, int64_t ldy, const float *x, int64_t ldx,
                         int64_t p, int64_t m, int64_t n, const uint32_t *t_lanes,
                         const uint32_t *st_lanes, const float *coef, int64_t width,
                         int n_threads)

    ctypedef struct sc_sparse:
        int64_t m
        int64_t n
        const int64_t *row_ptr
        const int32_t *col_idx
        const float *row_val
        const int64_t *col_ptr
        const int32_t *row_idx
        const float *col_val

    ctypedef struct sc_cuts:
        int64_t width
        const uint64_t *bits[2]
        const float *coef
    int sc_sparse_decompose(const sc_kernels *K, const sc_sparse *A, const sc_cuts *init,
                            const sc_params *p, sc_result *res)
    ctypedef int (*sc_product_fn)(void *ctx, int transposed, const uint64_t *bits,
                                  float *out) noexcept
    int sc_operator_decompose(const sc_kernels *K, int64_t m, int64_t n, double norm2,
                              sc_product_fn product, void *ctx, const sc_cuts *init,
                              const sc_params *p, sc_result *res)
cdef extern from "signcut/signcut.h" nogil:
    enum:
        SC_GRAM_TILE
    int sc_cuts_inner(const sc_kernels *K, int ndim, const int64_t *dims,
                      const uint64_t *const *xbits, const float *xcoef, int64_t wx,
                      const uint64_t *const *ybits, const float *ycoef, int64_t wy,
                      int n_threads, double *out)

cdef extern from "signcut/common.h" nogil:
    enum:
        SC_NIB_GROUPS
    enum:
        SC_LUT3_GROUPS
    void sc_lut3_tables(float *tab, const float *x, int64_t len)
    void sc_chunk_tables(uint8_t *tab, const uint8_t *tlo, const uint8_t *thi, int64_t ngroups)

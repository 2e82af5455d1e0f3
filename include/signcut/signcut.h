/* signcut: signed cut decomposition, C API.
 *
 * Packed sign layout (everywhere): a sign vector of length d is ceil(d/64) uint64 words,
 * bit i of word k is entry 64k+i, a set bit means -1, unused tail bits are zero.
 * A block of `width` sign vectors is `width` such rows, `wpr` words apart.
 */
#ifndef SIGNCUT_SIGNCUT_H
#define SIGNCUT_SIGNCUT_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes returned by the C API. */
enum {
    SC_OK = 0,
    SC_ERR_NOMEM = 1,      /* an allocation failed */
    SC_ERR_ARG = 2,        /* an argument is out of range */
    SC_ERR_CALLBACK = 3,   /* the progress callback raised (a Python exception is set) */
    SC_ERR_CPU = 4         /* the requested instruction set is not available */
};

/* One implementation of every hot kernel; one table per instruction set. */
typedef struct sc_kernels {
    const char *name;
    /* y[0:len] += sum_q w[q] * rows[idx[q]*ld + 0:len], in order q = 0..k-1, one FMA chain per entry. */
    void (*accum_rows)(float *y, int64_t len, const float *rows, int64_t ld,
                       const int64_t *idx, const float *w, int64_t k);
    /* y[0:len] += sum_j w[j] * sign_j[0:len] for the k sign vectors bits + j*wpr. */
    void (*signs_matvec)(float *y, int64_t len, const uint64_t *bits, int64_t wpr,
                         const float *w, int64_t k);
    /* z[j] = sum_i sign_j[i] * x[i] for the k sign vectors bits + j*wpr (summed in double). */
    void (*signs_rmatvec)(float *z, const float *x, int64_t len, const uint64_t *bits,
                          int64_t wpr, int64_t k);
    /* out[r*ld + c] += sum_q a[r*lda + q] * panel[q*cols + c] for r < rows, c < cols. */
    void (*rank_update)(float *out, int64_t rows, int64_t cols, int64_t ld,
                        const float *a, int64_t lda, const float *panel, int64_t k);
    /* bits <- signs of x[0:len] (bit set where x < 0, tail zeroed); returns sum |x| in double. */
    double (*pack_signs)(uint64_t *bits, const float *x, int64_t len);
    /* pack_signs of the float differences a[i] - b[i], without storing them. */
    double (*diff_signs)(uint64_t *bits, const float *a, const float *b, int64_t len);
    /* out[0:len] = scale * sign, from packed bits. */
    void (*unpack_signs)(float *out, const uint64_t *bits, int64_t len, float scale);
    /* dots[j] = <sign_j, x> for the k sign vectors bits + j*wpr, all of `words` words. */
    void (*sign_dots)(int64_t *dots, const uint64_t *bits, int64_t wpr, const uint64_t *x,
                      int64_t words, int64_t len, int64_t k);
    /* sum of x[0:len]^2 in double. */
    double (*sumsq)(const float *x, int64_t len);
    /* y[i] = fma(scale, sum_g table_g[nib[g*ldn + i]], y[i]) over groups g < ngroups, the
     * tables' 16-bit entries in tlo/thi[16g + x]: the pending cuts' contribution through 4-bit
     * group tables in fixed point (see common.h). Same bits on every instruction set. */
    void (*group_apply)(float *y, int64_t len, const uint8_t *nib, int64_t ldn,
                        const uint8_t *tlo, const uint8_t *thi, int64_t ngroups, float scale);
    /* The tables of group_apply for weights w[0..k-1] (k <= 64): sc_nib_tables (common.h),
     * byte for byte. Returns the number of groups (0 when every weight is 0). */
    int64_t (*nib_tables)(uint8_t *tlo, uint8_t *thi, float *scale, const float *w, int64_t k);
    /* dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols. */
    void (*transpose)(float *dst, int64_t ldd, const float *src, int64_t lds,
                      int64_t rows, int64_t cols);
    /* accum_rows over float16 rows: y[0:len] += sum_q w[q] * float(rows[idx[q]*ld + 0:len]). */
    void (*accum_rows_h)(float *y, int64_t len, const uint16_t *rows, int64_t ld,
                         const int64_t *idx, const float *w, int64_t k);
    /* dst[0:len] = half(scale * src[0:len]), rounded to nearest even. */
    void (*to_half)(uint16_t *dst, const float *src, int64_t len, float scale);
    /* dst[c*ldd + r] = src[r*lds + c] for r < rows, c < cols (16-bit entries: float16 bits). */
    void (*transpose16)(uint16_t *dst, int64_t ldd, const uint16_t *src, int64_t lds,
                        int64_t rows, int64_t cols);
    /* max |x[i]| over [0, len) (0 for len 0). */
    float (*absmax)(const float *x, int64_t len);
    /* out[r] += tab[88k + 8q + ((word k of row r >> 3q) & 7)] summed over words k < nwords and
     * groups q < 11 in that order, for r < rows (a multiple of 8) of sign rows in lane layout
     * (below): a sign row times a vector through 3-bit group tables (sc_lut3_tables). */
    void (*lut3_rows)(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                      const float *tab, int64_t nwords);
    /* out[r*pb + 0:pb] += tab[(16 (8k + i) + bits 4i..4i+3 of word k of row r) * pb + 0:pb]
     * summed over k < nwords and i < 8 in that order, for r < rows (a multiple of 8) in lane
     * layout, pb a multiple of 8: sign rows times pb columns through 4-bit group tables. */
    void (*lut_rows)(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                     const float *tab, int64_t nwords, int64_t pb);
    /* Sparse lines (rows of a CSR or columns of a CSC matrix): line r holds the entries
     * ptr[r] .. ptr[r+1]-1, with indices idx[] strictly increasing within the line.
     * y[i - lo] += w[q] * val[e] for the entries e of line lines[q] with index i = idx[e] in
     * [lo, hi), for q = 0..k-1 in order (one product and one add per entry, no FMA). */
    void (*sparse_accum)(float *y, int64_t lo, int64_t hi, const int64_t *ptr, const int32_t *idx,
                         const float *val, const int64_t *lines, const float *w, int64_t k);
    /* y[r] = sum over the entries e of line r of val[e] * sign(bits, idx[e]), summed in double
     * (the entries at even and at odd positions apart, then together), for r < rows (ptr
     * points at line 0's pointer). */
    void (*sparse_sign_rows)(float *y, const int64_t *ptr, const int32_t *idx, const float *val,
                             int64_t rows, const uint64_t *bits);
    /* cnt[j] = sum over the nq words q = qs[i] of popcount((old[q] ^ cur[q]) & (sign_j[q] ^ cur[q]))
     * for the k sign vectors bits + j*wpr: of the entries that changed from old to cur, how
     * many sign j has opposite to cur. */
    void (*flip_dots)(int64_t *cnt, const uint64_t *bits, int64_t wpr, const uint64_t *old,
                      const uint64_t *cur, const int64_t *qs, int64_t nq, int64_t k);
    /* p[i*ldp + j] *= <a_i, b_j> = len - 2 popcount(a_i XOR b_j) for i < na, j < nb: one
     * mode's factor of the products of two blocks of cuts, a_i = a + i*lda and b_j = b + j*ldb
     * packed sign rows of `words` words and len entries (tail bits zero). The factors are
     * exact integers, so every instruction set gives the same bits. */
    void (*gram_mul)(double *p, int64_t ldp, const uint64_t *a, int64_t lda, int64_t na,
                     const uint64_t *b, int64_t ldb, int64_t nb, int64_t words, int64_t len);
    /* y[i] = fma(scale, sum of the table entries of entry i's nibbles, y[i]) for the signs in
     * chunk layout of `planes` planes (2, 4 or 8) and the tables of sc_chunk_tables (common.h,
     * zero for groups without cuts): the group_apply of signs stored 1 bit per cut and entry.
     * Same bits on every instruction set (sc_chunk_apply). */
    void (*chunk_apply)(float *y, int64_t len, const uint8_t *chunks, int64_t planes,
                        const uint8_t *tab, float scale);
} sc_kernels;

/* The kernel tables; NULL when not compiled in. */
extern const sc_kernels sc_kernels_scalar;
extern const sc_kernels sc_kernels_avx2;
#ifdef SIGNCUT_HAVE_AVX512
extern const sc_kernels sc_kernels_avx512;
#endif

/* AVX2 kernels shared with the AVX-512 table (memory-bound: wider registers gain nothing). */
void sc_avx2_transpose(float *dst, int64_t ldd, const float *src, int64_t lds,
                       int64_t rows, int64_t cols);
void sc_avx2_to_half(uint16_t *dst, const float *src, int64_t len, float scale);
void sc_avx2_transpose16(uint16_t *dst, int64_t ldd, const uint16_t *src, int64_t lds,
                         int64_t rows, int64_t cols);
float sc_avx2_absmax(const float *x, int64_t len);
double sc_avx2_diff_signs(uint64_t *bits, const float *a, const float *b, int64_t len);
int64_t sc_avx2_nib_tables(uint8_t *tlo, uint8_t *thi, float *scale, const float *w, int64_t k);
/* The AVX2 chunk_apply, which the AVX-512 table uses for chunks of 2 planes. */
void sc_avx2_chunk_apply(float *y, int64_t len, const uint8_t *chunks, int64_t planes,
                         const uint8_t *tab, float scale);
/* The AVX2 lut3_rows and lut_rows, which the AVX-512 kernels use for a last odd block of 8
 * rows and for rows of tables not a multiple of 16 floats wide. */
void sc_avx2_lut3_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                       const float *tab, int64_t nwords);
void sc_avx2_lut_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                      const float *tab, int64_t nwords, int64_t pb);

/* Instruction sets this CPU (and OS) supports: bit 0 scalar, bit 1 avx2+fma+f16c, bit 2 avx512 (F/BW/VL/VPOPCNTDQ). */
int sc_cpu_supported(void);
/* Feature flags found by cpuid, as a comma-separated string (static storage). */
const char *sc_cpu_features(void);
/* The kernel table for "scalar", "avx2" or "avx512"; NULL if unknown or unsupported. */
const sc_kernels *sc_kernels_get(const char *name);
/* The first kernel the table compiled for `name` leaves NULL (NULL when it has them all, "the
 * whole table" when it is not compiled in), whether or not this CPU can run it: the tables are
 * filled by field name, so a new kernel missed in one file would be NULL (a test checks). */
const char *sc_kernels_missing(const char *name);
/* The best kernel table this CPU supports. */
const sc_kernels *sc_kernels_best(void);
/* Whether the library was built with OpenMP, and its default thread count (1 without). */
int sc_openmp_enabled(void);
int sc_default_threads(void);
/* n_threads clamped to [1, the processors this process may run on]: more threads than
 * cores only wait on each other (every entry point of the engine clamps through this). */
int sc_clamp_threads(int n_threads);

/* What a progress callback returns. */
enum {
    SC_PROGRESS_GO_ON = 0,
    SC_PROGRESS_STOP = 1,      /* stop and keep the cuts */
    SC_PROGRESS_FAILED = 2     /* an error is pending in the caller */
};

/* Why a decomposition stopped (sc_result.stopped_by). */
enum {
    SC_STOP_WIDTH = 0,         /* max_width cuts */
    SC_STOP_RTOL = 1,          /* relative error at most rtol */
    SC_STOP_TIME = 2,          /* max_seconds */
    SC_STOP_CALLBACK = 3,      /* the progress callback asked */
    SC_STOP_EXHAUSTED = 4      /* exact to float32: nothing left to fit */
};

/* Called after each cut with the number of cuts (first_cut + those made so far) and the
 * relative error; returns one of SC_PROGRESS_*. During refinement passes it is called with cuts = -1 only to notice an
 * interruption. */
typedef int (*sc_progress_fn)(void *ctx, int64_t cuts, double rel_error);

/* The most cuts kept pending between subtractions (sc_params.block_size): their int16 group
 * tables hold the sums of at most this many weights. */
#define SC_MAX_BLOCK 64

/* Parameters of one greedy decomposition. */
typedef struct sc_params {
    int64_t max_width;      /* stop after this many cuts */
    double rtol;            /* stop once the relative error is <= rtol (0: never) */
    double max_seconds;     /* stop after this much wall time (<= 0: never) */
    int64_t block_size;     /* cuts kept pending before they are subtracted (1..SC_MAX_BLOCK) */
    int64_t max_sweeps;     /* cap on half-sweeps of the alternation per cut */
    int n_threads;          /* OpenMP threads (ignored without OpenMP) */
    uint64_t seed[4];       /* seed of the random starts: cut k draws from xoshiro256** seeded
                               with splitmix64 of these words and first_cut + k */
    int64_t first_cut;      /* index of the first cut made here (cuts already made before a
                               continuation), so that a continuation draws as one long run */
    sc_progress_fn progress;
    void *progress_ctx;
    int warm_start;         /* start each cut from the previous cut's signs (0: random; the sparse
                               engine adds a random start where that falls short) */
    int restarts;           /* matrices: keep the best of this many starts per cut (>= 1) */
    int refine;             /* matrices: backfitting passes over all cuts after the greedy */
    double growth_tol;      /* matrices: relative growth of |s^T R t| that continues a search
                               (<= 0: the default, 1e-6) */
    const uint64_t *warm_s; /* matrices: signs of a previous cut (s: ceil(m/64) words, t:      */
    const uint64_t *warm_t; /* ceil(n/64)) the first cut starts from with warm_start, or NULL */
    double ref_norm2;       /* errors (and rtol) are relative to sqrt(ref_norm2) when > 0, else
                               to the input's norm: a continuation, whose input is what earlier
                               cuts left, passes the squared norm of the whole array */
} sc_params;

#define SC_MAX_NDIM 32

/* Output of a decomposition: arrays grown by the engine, freed with sc_result_free. */
typedef struct sc_result {
    int64_t width;          /* cuts found */
    int64_t capacity;
    int ndim;
    uint64_t *bits[SC_MAX_NDIM];  /* mode a: (width, ceil(dims[a]/64)) packed signs */
    float *coef;            /* (width,) */
    double *errors;         /* (width,) relative Frobenius error after each cut: tracked in O(1)
                               per cut, exact at each block flush and for the last cut */
    double norm;            /* Frobenius norm of the input */
    int stopped_by;         /* SC_STOP_* */
} sc_result;

/* Greedy signed cut decomposition of the C-ordered tensor R of ndim (1..SC_MAX_NDIM) modes,
 * overwritten with the final remainder. Each cut sweeps the modes, setting each mode's signs to
 * the sign of R contracted with all the other modes' signs while |<R, s_1 x ... x s_k>| grows;
 * p->block_size cuts are kept pending between subtractions. Matrices go through the matrix
 * engine (src/matrix.c: float16 copies of R, the search options of sc_params), other orders
 * through the tensor engine (src/tensor.c: a transposed float32 copy of R for orders >= 2).
 * Fills res (zero it before); returns a status code. Stops before any cut when p->rtol is
 * already met. */
int sc_decompose(const sc_kernels *K, float *R, int ndim, const int64_t *dims,
                 const sc_params *p, sc_result *res);
/* Frees the arrays of a result. */
void sc_result_free(sc_result *res);

/* out (the C-ordered tensor of dims, ndim >= 1) += sign * sum_j coef[j] s1_j x ... x sk_j over
 * `width` cuts, bits[a] holding mode a's (width, ceil(dims[a]/64)) signs: through the unfolding
 * nearest a square and sc_matrix_expand (a vector: signs_matvec). */
int sc_tensor_expand(const sc_kernels *K, float *out, int ndim, const int64_t *dims,
                     const uint64_t *const *bits, const float *coef, int64_t width, float sign,
                     int n_threads);

/* out (m x n, leading dimension ld) += sign * sum_j coef[j] s_j t_j^T over `width` cuts. */
int sc_matrix_expand(const sc_kernels *K, float *out, int64_t m, int64_t n, int64_t ld,
                     const uint64_t *s_bits, const uint64_t *t_bits, const float *coef,
                     int64_t width, float sign, int n_threads);

/* out (len, ceil(rows/64)) = the bit transpose of the first len entries of `rows` packed sign
 * rows (wpr words apart): bit j of out row i is entry i of row j; tail bits zero. */
void sc_bits_transpose(uint64_t *out, const uint64_t *bits, int64_t rows, int64_t wpr,
                       int64_t len);

/* Lane layout of packed sign rows, read by the products: rows in blocks of 8, block b holding
 * the 32-bit words of its 8 rows side by side, so lanes[b*ldl + 8k + (r % 8)] is word k
 * (entries 32k..32k+31, bit set = -1) of row r = 8b + r % 8; ldl = 8 * words per row, rows
 * past the end are zero. */

/* out (ceil(rows/8), ceil(len/32), 8) = the lane layout of `rows` packed sign rows (wpr
 * words apart) of len entries. */
void sc_bits_lanes(uint32_t *out, const uint64_t *bits, int64_t rows, int64_t wpr, int64_t len);

/* y (m x p, leading dimension ldy) = S diag(coef) T^T x for x (n x p, leading dimension ldx),
 * never expanding S or T: t_lanes is T (width rows of n signs) and st_lanes S transposed
 * (m rows of width signs), both in lane layout. Up to 6 columns go one at a time through
 * 3-bit tables and lane permutes, more through 4-bit tables of rows of up to 64 columns
 * (src/matmul.c); n_threads cannot change a bit. Little-endian hosts only. */
int sc_matrix_matmul(const sc_kernels *K, float *y, int64_t ldy, const float *x, int64_t ldx,
                     int64_t p, int64_t m, int64_t n, const uint32_t *t_lanes,
                     const uint32_t *st_lanes, const float *coef, int64_t width, int n_threads);

/* A sparse matrix in both layouts the sparse engine reads: CSR (rows, m + 1 pointers) and CSC
 * (columns, n + 1 pointers), indices strictly increasing within each line, the same entries. */
typedef struct sc_sparse {
    int64_t m, n;
    const int64_t *row_ptr;
    const int32_t *col_idx;
    const float *row_val;
    const int64_t *col_ptr;
    const int32_t *row_idx;
    const float *col_val;
} sc_sparse;

/* Greedy signed cut decomposition of the sparse matrix A with the remainder kept implicit,
 * R = A - sum_j c_j s_j t_j^T (src/sparse.c): the search updates A t and A^T s from the
 * lines of A whose sign flipped and the cuts' part from their packed signs; memory is A, the
 * signs and O(m + n). Same search, seeds and budgets as sc_decompose on matrices (not refine);
 * p->block_size is the thread-count probe's window. init (NULL: none) holds cuts of A made
 * before, in the engine's scale: they become the result's first cuts (p->max_width counts
 * them; cut k's random draws are those of cut p->first_cut + k), and the run goes on as one
 * run that had made them would. */
typedef struct sc_cuts {
    int64_t width;
    const uint64_t *bits[2];  /* s (width rows of ceil(m/64) words), t (ceil(n/64) words) */
    const float *coef;
} sc_cuts;
int sc_sparse_decompose(const sc_kernels *K, const sc_sparse *A, const sc_cuts *init,
                        const sc_params *p, sc_result *res);

/* out = A y (transposed = 0: y has n signs, out m floats) or A^T y (transposed = 1) for the
 * packed signs y; nonzero stops the decomposition (an error is pending in the caller). */
typedef int (*sc_product_fn)(void *ctx, int transposed, const uint64_t *bits, float *out);

/* The same for an m x n operator known by its products (one full product per half step) and
 * its squared Frobenius norm norm2 (res->norm = sqrt(norm2); errors are relative to it). */
int sc_operator_decompose(const sc_kernels *K, int64_t m, int64_t n, double norm2,
                          sc_product_fn product, void *ctx, const sc_cuts *init,
                          const sc_params *p, sc_result *res);
/* *out = <X, Y> = sum_{i,j} xcoef[i] ycoef[j] prod_a <x_a_i, y_a_j> for two decompositions
 * with the same ndim modes of dims[a] entries: xbits[a] (wx rows) and ybits[a] (wy rows) the
 * packed signs of mode a. Tiles of SC_GRAM_TILE x SC_GRAM_TILE cuts (no wx x wy matrix is
 * held), accumulated in double in a fixed order: n_threads cannot change a bit. When x and y
 * are the same arrays (a norm), only the tiles on and above the diagonal are computed. */
#define SC_GRAM_TILE 128
int sc_cuts_inner(const sc_kernels *K, int ndim, const int64_t *dims,
                  const uint64_t *const *xbits, const float *xcoef, int64_t wx,
                  const uint64_t *const *ybits, const float *ycoef, int64_t wy,
                  int n_threads, double *out);

#ifdef __cplusplus
}
#endif
#endif

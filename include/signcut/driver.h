/* signcut: helpers shared by the matrix and tensor drivers (not part of the public C API). */
#ifndef SIGNCUT_DRIVER_H
#define SIGNCUT_DRIVER_H

#include <math.h>
#include <time.h>
#include "signcut/signcut.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* An OpenMP pragma, nothing in a build without OpenMP: SC_OMP(parallel for num_threads(nt))
 * is `#pragma omp parallel for num_threads(nt)`. Conditions go inside the pragma, so that a
 * build without OpenMP has no variable left unused. */
#define SC_PRAGMA_STR(...) #__VA_ARGS__
#ifdef _OPENMP
#define SC_OMP(...) _Pragma(SC_PRAGMA_STR(omp __VA_ARGS__))
#else
#define SC_OMP(...)
#endif

/* What the engines share. */
#define SC_TILE 256              /* entries per parallel tile, a multiple of 64 */
#define SC_GROWTH_TOL 1e-6       /* default relative growth of the value that counts as growth */
#define SC_START_ATTEMPTS 8      /* starts of value 0 drawn again before the remainder counts as
                                    exhausted */

/* Parallel tiles of SC_TILE entries over len entries. */
static inline int64_t sc_ntiles(int64_t len) { return (len + SC_TILE - 1) / SC_TILE; }

/* How many of the len entries of two packed sign vectors differ (tail bits zero): <a, b> =
 * len - 2 * that, through the kernel's sign_dots (a portable build has no popcount insn). */
static inline int64_t sc_sign_diff(const sc_kernels *K, const uint64_t *a, const uint64_t *b,
                                   int64_t words, int64_t len) {
    int64_t dot;
    K->sign_dots(&dot, a, words, b, words, len, 1);
    return (len - dot) / 2;
}

/* Inside a parallel region: this thread's number, and the team's size in *nth unless nth is
 * NULL (0 and 1 in a build without OpenMP). */
static inline int sc_thread(int *nth) {
#ifdef _OPENMP
    if (nth) *nth = omp_get_num_threads();
    return omp_get_thread_num();
#else
    if (nth) *nth = 1;
    return 0;
#endif
}

/* Monotonic wall time in seconds. */
static inline double sc_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A relative error at which the float32 remainder is rounding noise: the approximation is
 * exact to float32, and further cuts would fit the noise (a run of any budget stops here, as
 * "exhausted"). */
#define SC_EXACT_ERROR 0x1p-23

/* The rule of a matrix search (matrix.c and sparse.c): an alternation goes on while
 * |s^T R t| grows by more than a relative tolerance (p->growth_tol, SC_GROWTH_TOL when <= 0)
 * and for at most p->max_sweeps half steps; growth below it is rounding noise in the images,
 * not progress, and counting it could cycle through flips without end. Whether half step h
 * (value val, the previous one's cur) ends the alternation. */
static inline int sc_alternation_ends(const sc_params *p, int64_t h, double val, double cur) {
    double tol = p->growth_tol > 0.0 ? p->growth_tol : SC_GROWTH_TOL;
    return (h > 0 && !(val > cur * (1.0 + tol))) || h + 1 >= p->max_sweeps;
}

/* The engines behind sc_decompose (its contract, for their orders). */
int sc_matrix_decompose(const sc_kernels *K, float *R, int64_t m, int64_t n,
                        const sc_params *p, sc_result *res);
int sc_tensor_decompose(const sc_kernels *K, float *R, int ndim, const int64_t *dims,
                        const sc_params *p, sc_result *res);

/* Room for `need` cuts in res, whose res->ndim modes have dims[a] entries (src/engine.c). */
int sc_result_grow(sc_result *res, int64_t need, const int64_t *dims);

/* The start of a run on an input of squared norm nrm2: res gets the input's norm and no cuts,
 * *ref2 the squared norm errors are relative to (sc_params.ref_norm2). Returns 1 when no cut
 * is to be made, res->stopped_by saying why: rtol already met (an error of 1 for a zero input),
 * max_width 0, or nothing to fit. */
static inline int sc_run_start(const sc_params *p, double nrm2, double *ref2, sc_result *res) {
    *ref2 = p->ref_norm2 > 0.0 ? p->ref_norm2 : nrm2;
    res->norm = sqrt(nrm2);
    res->width = 0;
    double err = *ref2 > 0.0 ? sqrt(nrm2 / *ref2) : 1.0;
    res->stopped_by = SC_STOP_EXHAUSTED;     /* also what a run stops by unless a rule does */
    if (p->rtol > 0.0 && err <= p->rtol) res->stopped_by = SC_STOP_RTOL;
    else if (p->max_width == 0) res->stopped_by = SC_STOP_WIDTH;
    else if (nrm2 > 0.0) return 0;
    return 1;
}

/* After `width` cuts with relative error `err`: report progress, then check the budgets.
 * Returns 1 to stop (with *stopped_by set, and *status = SC_ERR_CALLBACK if the callback
 * failed), 0 to go on. */
static inline int sc_after_cut(const sc_params *p, int64_t width, double err, double t0,
                               int *stopped_by, int *status) {
    if (p->progress) {
        int r = p->progress(p->progress_ctx, p->first_cut + width, err);
        if (r == SC_PROGRESS_STOP) { *stopped_by = SC_STOP_CALLBACK; return 1; }
        if (r) { *status = SC_ERR_CALLBACK; return 1; }
    }
    if (width >= p->max_width) { *stopped_by = SC_STOP_WIDTH; return 1; }
    if (p->rtol > 0.0 && err <= p->rtol) { *stopped_by = SC_STOP_RTOL; return 1; }
    if (p->max_seconds > 0.0 && sc_now_seconds() - t0 >= p->max_seconds) {
        *stopped_by = SC_STOP_TIME;
        return 1;
    }
    if (err <= SC_EXACT_ERROR) { *stopped_by = SC_STOP_EXHAUSTED; return 1; }
    return 0;
}

/* Threads of a driver's sweeps. The sweeps run many short parallel steps: on cores shared
 * with other busy work, or on many cores for a small matrix, waiting for the threads can make
 * them many times slower than one thread. So the time per cut is measured with one thread
 * and with all (a block each) and the faster is used, one thread only when
 * clearly faster (SC_PROBE_MARGIN: blocks differ in cost and a probe can be unlucky). The
 * slower count is measured again after SC_PROBE_EVERY blocks, after twice as many each time
 * it loses again (up to SC_MAX_PROBE_GAP). A measurement that cannot win stops after
 * SC_PROBE_CUTS cuts: one thread already slower than all (it needs to be clearly faster), all
 * threads already 1.5x slower than one. (Two probe blocks of 64 cuts at one thread's speed in
 * a 1500-cut run at 4096^2, where 2 threads are 1.5-1.7x faster, add 4-5% to its time.)
 * The windows time the cuts, not the flushes (a flush timed with 8 cuts made one thread look
 * 2x slower). Results do not depend on it. */
#define SC_PROBE_EVERY 16
#define SC_PROBE_CUTS 8
#define SC_MAX_PROBE_GAP 1024
#define SC_PROBE_MARGIN 0.8

typedef struct {
    int nt, nt_max;           /* threads now (1 or nt_max) and the most allowed */
    int probing;              /* this round measures the slower thread count */
    int64_t rounds;           /* measurements so far */
    int64_t gap, next_probe;  /* rounds between measurements of the slower count */
    int64_t win_cuts;         /* cuts timed since win_t0 */
    double win_t0, per_cut[2];     /* time per cut with nt_max / 1 thread (-1: not yet) */
} sc_probe;

/* The first block is timed on all threads (the thread pool starts in the set-up before it),
 * the second on one. */
static inline void sc_probe_init(sc_probe *P, int nt_max) {
    P->nt_max = nt_max > 1 ? nt_max : 1;
    P->nt = P->nt_max;
    P->probing = 0;
    P->rounds = P->win_cuts = 0;
    P->gap = SC_PROBE_EVERY / 2;       /* a first loss keeps SC_PROBE_EVERY */
    P->next_probe = 2 + SC_PROBE_EVERY;
    P->per_cut[0] = P->per_cut[1] = -1.0;
    P->win_t0 = sc_now_seconds();
}

/* Called after each cut; block_end: a flush follows (then call sc_probe_flushed). Updates
 * P->nt for the next cuts. */
static inline void sc_probe_cut(sc_probe *P, int block_end) {
    if (P->nt_max <= 1) return;
    P->win_cuts++;
    int early = P->probing && P->win_cuts == SC_PROBE_CUTS;
    if (!(block_end || early) || P->win_cuts < SC_PROBE_CUTS) return;
    int one = (P->nt == 1);
    double now = sc_now_seconds(), t = (now - P->win_t0) / (double)P->win_cuts;
    if (early && !(P->per_cut[!one] >= 0.0 && t > (one ? 1.0 : 1.5) * P->per_cut[!one])) return;
    P->per_cut[one] = t;
    P->win_t0 = now;
    P->win_cuts = 0;
    P->rounds++;
    if (P->per_cut[1] < 0.0) { P->nt = 1; P->probing = 1; return; }
    int best = (P->per_cut[1] < SC_PROBE_MARGIN * P->per_cut[0]) ? 1 : P->nt_max;
    if (P->probing) {
        P->gap = (best == P->nt) ? SC_PROBE_EVERY : (P->gap < SC_MAX_PROBE_GAP ? 2 * P->gap : P->gap);
        P->next_probe = P->rounds + P->gap;
        P->probing = 0;
    }
    if (P->rounds >= P->next_probe) {
        P->nt = (best == 1) ? P->nt_max : 1;
        P->probing = 1;
    } else {
        P->nt = best;
    }
}

/* After a flush: a window that starts now does not count it. */
static inline void sc_probe_flushed(sc_probe *P) {
    if (P->win_cuts == 0) P->win_t0 = sc_now_seconds();
}

#endif

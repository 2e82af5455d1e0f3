/* signcut: the greedy driver for tensors of any order (the tensor plugin of the engine).
 *
 * R is viewed, for each mode a, as (L, d_a, Rr) with L the product of the dimensions before a
 * and Rr the product after. The image of mode a, u_a[i] = sum_{l,r} xl[l] R[l,i,r] xr[r], uses
 * the Kronecker products xl and xr of the other modes' signs, packed as bits. Long rows
 * (Rr >= 64) are contracted with xr by sign dot products, one row per task; short rows are
 * first accumulated over l into (d_a * Rr) slabs, in fixed chunks of rows summed in order.
 * Each output is written by one thread with a fixed order of operations, so n_threads cannot
 * change a bit.
 * Cuts are subtracted at once (one pass over R); the norm is recomputed exactly every
 * EXACT_EVERY cuts and at the end. */
#define _POSIX_C_SOURCE 200809L  /* clock_gettime under -std=c11 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "signcut/signcut.h"
#include "signcut/common.h"
#include "signcut/driver.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define TILE 256
#define PAR_MIN_WORK 16384
#define EXACT_EVERY 64
#define CHUNK 256               /* rows per partial slab in the short-row contraction */
#define GROWTH_TOL 1e-6
#define START_ATTEMPTS 8


typedef struct {
    const sc_kernels *K;
    int nt, ndim;
    const int64_t *dims;
    int64_t N;
    float *R;
    uint64_t *bits[SC_MAX_NDIM];   /* current signs per mode */
    uint64_t *cand;                /* candidate signs of the mode being updated */
    float *img;                    /* image of the mode being updated (max dim) */
    uint64_t *xl, *xr;             /* Kronecker products of the signs before / after a mode */
    uint64_t *tmp;                 /* scratch for building Kronecker products */
    float *z;                      /* row dot products (long rows) or partial slabs (short rows) */
    float *wl;                     /* +-1 weights of xl, as floats */
    int64_t *idx;                  /* 0..CHUNK-1 */
    double *partial;
    float *ones;                   /* last-mode signs as floats, for the subtraction */
    float *rowscale;               /* per-row scale of the subtraction */
} tengine_t;

static int64_t prod(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= d[i];
    return p;
}

/* bits of the Kronecker product of the sign vectors of modes [from, to) (in order, the last
 * mode varying fastest) into out; length prod(dims[from:to]). */
static void kron_bits(tengine_t *E, uint64_t *out, int from, int to) {
    int64_t len = 1;
    memset(out, 0, (size_t)sc_words(prod(E->dims, from, to)) * sizeof(uint64_t));
    for (int b = from; b < to; b++) {
        int64_t d = E->dims[b];
        /* new[i*d + j] = old[i] ^ s_b[j], from a copy of old */
        memcpy(E->tmp, out, (size_t)sc_words(len) * sizeof(uint64_t));
        memset(out, 0, (size_t)sc_words(len * d) * sizeof(uint64_t));
        for (int64_t i = 0; i < len; i++) {
            uint64_t xi = (E->tmp[i >> 6] >> (i & 63)) & 1;
            for (int64_t j = 0; j < d; j++) {
                uint64_t bit = xi ^ ((E->bits[b][j >> 6] >> (j & 63)) & 1);
                int64_t k = i * d + j;
                out[k >> 6] |= bit << (k & 63);
            }
        }
        len *= d;
    }
}

/* img[0:d_a] = contraction of R with the signs of every mode but a; returns |img|_1 and
 * packs the signs of img into E->cand. */
static double mode_image(tengine_t *E, int a) {
    const sc_kernels *K = E->K;
    int64_t d = E->dims[a], L = prod(E->dims, 0, a), Rr = prod(E->dims, a + 1, E->ndim);
    kron_bits(E, E->xl, 0, a);
    kron_bits(E, E->xr, a + 1, E->ndim);
    K->unpack_signs(E->wl, E->xl, L, 1.0f);
    if (Rr >= 64) {
        /* Long rows: z[l*d + i] = <R[l, i, :], xr>, one row per task, then a fixed-order sum. */
        int64_t nrows = L * d;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(E->nt) if (E->nt > 1 && E->N >= PAR_MIN_WORK)
#endif
        for (int64_t r = 0; r < nrows; r++) K->signs_rmatvec(E->z + r, E->R + r * Rr, Rr, E->xr, 0, 1);
        for (int64_t i = 0; i < d; i++) E->img[i] = 0.0f;
        for (int64_t l = 0; l < L; l++)
            for (int64_t i = 0; i < d; i++) E->img[i] += E->wl[l] * E->z[l * d + i];
    } else {
        /* Short rows: partial slabs over fixed chunks of CHUNK rows l, summed in chunk order. */
        int64_t len = d * Rr, nch = (L + CHUNK - 1) / CHUNK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(E->nt) if (E->nt > 1 && E->N >= PAR_MIN_WORK)
#endif
        for (int64_t ch = 0; ch < nch; ch++) {
            int64_t l0 = ch * CHUNK, nl = (L - l0 < CHUNK) ? L - l0 : CHUNK;
            float *P = E->z + ch * len;
            memset(P, 0, (size_t)len * sizeof(float));
            K->accum_rows(P, len, E->R + l0 * len, len, E->idx, E->wl + l0, nl);
        }
        for (int64_t ch = 1; ch < nch; ch++)
            for (int64_t c = 0; c < len; c++) E->z[c] += E->z[ch * len + c];
        for (int64_t i = 0; i < d; i++) K->signs_rmatvec(E->img + i, E->z + i * Rr, Rr, E->xr, 0, 1);
    }
    return K->pack_signs(E->cand, E->img, d);
}

/* R -= c * s_0 x ... x s_{k-1}: rows of the last mode scaled by the Kronecker signs of the
 * others. Returns the exact squared norm of the new R when `exact` is set (else 0). */
static double subtract_cut(tengine_t *E, float c, int exact) {
    const sc_kernels *K = E->K;
    int k = E->ndim;
    int64_t dl = E->dims[k - 1], rows = E->N / dl;
    kron_bits(E, E->xl, 0, k - 1);
    K->unpack_signs(E->rowscale, E->xl, rows, -c);
    K->unpack_signs(E->ones, E->bits[k - 1], dl, 1.0f);
    int64_t tiles = (rows + TILE - 1) / TILE;
    (void)tiles;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(E->nt) if (E->nt > 1 && E->N >= PAR_MIN_WORK)
#endif
    for (int64_t t = 0; t < tiles; t++) {
        int64_t r0 = t * TILE, nr = (rows - r0 < TILE) ? rows - r0 : TILE;
        K->rank_update(E->R + r0 * dl, nr, dl, dl, E->rowscale + r0, 1, E->ones, 1);
        double acc = 0.0;
        if (exact)
            for (int64_t r = r0; r < r0 + nr; r++) acc += K->sumsq(E->R + r * dl, dl);
        E->partial[t] = acc;
    }
    double nrm2 = 0.0;
    for (int64_t t = 0; t < tiles; t++) nrm2 += E->partial[t];
    return nrm2;
}

static int tgrow(sc_tensor_result *res, int64_t need, const int64_t *dims) {
    if (need <= res->capacity) return SC_OK;
    int64_t cap = res->capacity ? res->capacity : 64;
    while (cap < need) cap *= 2;
    int ok = 1;
    for (int a = 0; a < res->ndim; a++) {
        uint64_t *b = realloc(res->bits[a], (size_t)(cap * sc_words(dims[a])) * sizeof(uint64_t));
        if (b) res->bits[a] = b; else ok = 0;
    }
    float *c = realloc(res->coef, (size_t)cap * sizeof(float));
    if (c) res->coef = c; else ok = 0;
    double *e = realloc(res->errors, (size_t)cap * sizeof(double));
    if (e) res->errors = e; else ok = 0;
    if (!ok) return SC_ERR_NOMEM;
    res->capacity = cap;
    return SC_OK;
}

void sc_tensor_result_free(sc_tensor_result *res) {
    for (int a = 0; a < SC_MAX_NDIM; a++) { free(res->bits[a]); res->bits[a] = NULL; }
    free(res->coef); free(res->errors);
    res->coef = NULL; res->errors = NULL;
    res->width = res->capacity = 0;
}

static void tengine_free(tengine_t *E) {
    for (int a = 0; a < SC_MAX_NDIM; a++) free(E->bits[a]);
    free(E->cand); free(E->img); free(E->xl); free(E->xr); free(E->tmp); free(E->z);
    free(E->wl); free(E->idx); free(E->partial); free(E->ones); free(E->rowscale);
}

int sc_tensor_decompose(const sc_kernels *K, float *R, int ndim, const int64_t *dims,
                        const sc_params *prm, sc_tensor_result *res) {
    if (!K || ndim < 1 || ndim > SC_MAX_NDIM || prm->max_width < 0 || prm->max_sweeps < 1)
        return SC_ERR_ARG;
    int64_t N = 1, dmax = 1;
    for (int a = 0; a < ndim; a++) {
        if (dims[a] <= 0) return SC_ERR_ARG;
        N *= dims[a];
        if (dims[a] > dmax) dmax = dims[a];
    }
    double t0 = sc_now_seconds();
    tengine_t E;
    memset(&E, 0, sizeof E);
    E.K = K; E.ndim = ndim; E.dims = dims; E.N = N; E.R = R;
    E.nt = prm->n_threads > 0 ? prm->n_threads : 1;
    res->ndim = ndim;
    int64_t maxL = 1, zlen = 1;   /* largest L, and scratch for row dots or partial slabs */
    for (int a = 0; a < ndim; a++) {
        int64_t L = prod(dims, 0, a), Rr = prod(dims, a + 1, ndim);
        int64_t need = (Rr >= 64) ? L * dims[a] : ((L + CHUNK - 1) / CHUNK) * dims[a] * Rr;
        if (L > maxL) maxL = L;
        if (need > zlen) zlen = need;
    }
    int64_t rows_last = N / dims[ndim - 1], kron_max = N;   /* Kronecker vectors are < N long */
    int st = SC_OK;
    for (int a = 0; a < ndim; a++)
        if (!(E.bits[a] = calloc((size_t)sc_words(dims[a]), sizeof(uint64_t)))) st = SC_ERR_NOMEM;
    E.cand = calloc((size_t)sc_words(dmax), sizeof(uint64_t));
    E.img = malloc((size_t)dmax * sizeof(float));
    E.xl = malloc((size_t)sc_words(kron_max) * sizeof(uint64_t));
    E.xr = malloc((size_t)sc_words(kron_max) * sizeof(uint64_t));
    E.tmp = malloc((size_t)sc_words(kron_max) * sizeof(uint64_t));
    E.z = malloc((size_t)zlen * sizeof(float));
    E.wl = malloc((size_t)(maxL > rows_last ? maxL : rows_last) * sizeof(float));
    E.idx = malloc(CHUNK * sizeof(int64_t));
    E.partial = calloc((size_t)((rows_last > dmax ? rows_last : dmax) / TILE + 2), sizeof(double));
    E.ones = malloc((size_t)dims[ndim - 1] * sizeof(float));
    E.rowscale = malloc((size_t)rows_last * sizeof(float));
    if (!E.cand || !E.img || !E.xl || !E.xr || !E.tmp || !E.z || !E.wl || !E.idx ||
        !E.partial || !E.ones || !E.rowscale)
        st = SC_ERR_NOMEM;
    if (st) { tengine_free(&E); return st; }
    for (int64_t l = 0; l < CHUNK; l++) E.idx[l] = l;
    sc_rng rng;
    memcpy(rng.s, prm->seed, sizeof rng.s);
    if (!(rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3])) rng.s[0] = 1;

    double nrm2 = 0.0;
    {
        int64_t dl = dims[ndim - 1];
        for (int64_t r = 0; r < rows_last; r++) nrm2 += K->sumsq(R + r * dl, dl);
    }
    double nrmA2 = nrm2;
    res->norm = sqrt(nrm2);
    res->width = 0;
    res->stopped_by = (prm->max_width == 0) ? 0 : 4;
    if (nrm2 == 0.0 || prm->max_width == 0) { tengine_free(&E); return SC_OK; }

    for (int64_t k = 0;; k++) {
        if ((st = tgrow(res, k + 1, dims))) break;
        /* Sweep the modes from random signs; converged once ndim - 1 updates in a row bring no
         * growth (the last improved mode is optimal for the others by construction). A start
         * orthogonal to what is left (value exactly 0) is drawn again. */
        double cur = 0.0;
        for (int attempt = 0; attempt < START_ATTEMPTS && !(cur > 0.0); attempt++) {
            for (int a = 0; a < ndim; a++) sc_rng_signs(&rng, E.bits[a], dims[a]);
            cur = -1.0;
            int64_t quiet = 0, updates = 0, limit = prm->max_sweeps * (int64_t)ndim;
            for (int a = 0; updates < limit; a = (a + 1) % ndim, updates++) {
                double val = mode_image(&E, a);
                if (val > cur * (1.0 + GROWTH_TOL) || cur < 0.0) {
                    memcpy(E.bits[a], E.cand, (size_t)sc_words(dims[a]) * sizeof(uint64_t));
                    cur = val;
                    quiet = 0;
                } else if (++quiet >= ndim - 1) {
                    break;
                }
                if (ndim == 1) break;
            }
        }
        if (!(cur > 0.0)) { res->stopped_by = 4; break; }   /* nothing left to fit */
        float c = (float)(cur / (double)N);
        for (int a = 0; a < ndim; a++)
            memcpy(res->bits[a] + k * sc_words(dims[a]), E.bits[a], (size_t)sc_words(dims[a]) * sizeof(uint64_t));
        res->coef[k] = c;
        int exact = ((k + 1) % EXACT_EVERY) == 0;
        double ex = subtract_cut(&E, c, exact);
        nrm2 = exact ? ex : nrm2 - cur * cur / (double)N;
        double err = sqrt((nrm2 > 0.0 ? nrm2 : 0.0) / nrmA2);
        res->errors[k] = err;
        res->width = k + 1;
        if (sc_after_cut(prm, res->width, err, t0, &res->stopped_by, &st)) break;
    }
    /* The tracked norm loses digits when the remainder is tiny: make the last error exact. */
    if (st == SC_OK && res->width > 0 && res->width % EXACT_EVERY) {
        int64_t dl = dims[ndim - 1];
        nrm2 = 0.0;
        for (int64_t r = 0; r < rows_last; r++) nrm2 += K->sumsq(R + r * dl, dl);
        res->errors[res->width - 1] = sqrt(nrm2 / nrmA2);
    }
    tengine_free(&E);
    return st;
}

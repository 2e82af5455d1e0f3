/* signcut: the greedy driver for tensors of any order (the tensor plugin of the engine).
 *
 * Order k >= 2: the modes are split into a prefix [0, p) and a suffix [p, k) chosen so that
 * the unfolding R (P x D, P = prod of the prefix dims, D of the suffix dims) is as square as
 * possible. A cut's prefix signs make one Kronecker sign vector sigma of length P, its suffix
 * signs one tau of length D; on the unfolding the tensor engine is the matrix engine with
 * structured sign vectors:
 *  - the images z = R0 tau (length P) and y = R0^T sigma (length D) of the remainder without
 *    the pending cuts, R0, live across sweeps and cuts and are brought up to date from the
 *    entries of tau and sigma that flipped since they were last used: rows of RT (a transposed
 *    copy of R0) and rows of R0, as in the matrix engine. A flip of mode b on a set F costs
 *    |F| N / d_b (a new random start, about half the entries of each side, N / 2 each);
 *  - the image of a prefix mode a is z contracted with the other prefix modes' signs
 *    (O(P) work, no pass over R0), likewise for the suffix modes from y;
 *  - pending cuts (up to block_size) correct an image of mode a by
 *    -c_j * prod_{b != a} <s_b^j, s_b> * s_a^j, with popcount dot products;
 *  - every block_size cuts, R0 -= sum_j c_j sigma_j tau_j^T as one rank update of the
 *    unfolding (chunked over columns to bound memory), RT is rebuilt, the squared norm and
 *    the images are recomputed exactly.
 * Order 1 takes a direct path (each cut is the sign of what is left).
 *
 * Every output entry is written by one thread with a fixed order of operations, and partial
 * sums are added in a fixed tile order: n_threads cannot change a bit. */
#define _POSIX_C_SOURCE 200809L  /* clock_gettime under -std=c11 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "signcut/signcut.h"
#include "signcut/common.h"
#include "signcut/driver.h"

#define PAR_MIN_WORK 262144     /* below this many float ops a step runs on one thread */
#define FLUSH_COLS 4096         /* columns per chunk of a flush, a multiple of 64 */


/* One side of the unfolding: the modes [m0, m1) and their Kronecker signs. */
typedef struct {
    int m0, m1;
    int64_t len, words;       /* prod(dims[m0:m1]) and its packed words */
    const float *own;         /* R0 (prefix) or RT (suffix): len rows of the other side's len */
    float *img;               /* R0 contracted with the other side's Kronecker signs `applied` */
    int valid;                /* img is up to date with the other side's `applied` */
    uint64_t *kron;           /* Kronecker product of this side's current signs */
    int kron_dirty;
    uint64_t *applied;        /* the Kronecker signs the other side's img was computed with */
    float *sgn;               /* kron as +-1 floats */
    uint64_t *pend;           /* Kronecker signs of the pending cuts, SC_MAX_BLOCK rows */
} tside_t;

typedef struct {
    const sc_kernels *K;
    sc_probe pr;              /* threads of the sweeps (pr.nt) */
    int ndim;
    const int64_t *dims;
    int64_t N, p, block;      /* p = pending cuts */
    float *R, *RT;
    tside_t S, T;             /* prefix and suffix sides */
    sc_result *res;
    int64_t block_start;      /* first pending cut */
    uint64_t *bits[SC_MAX_NDIM];   /* current signs per mode */
    uint64_t *cand;           /* candidate signs of the mode being updated */
    float *img;               /* image of the mode being updated (max dim) */
    double *acc;              /* its double accumulators */
    int64_t *dots;            /* dots[b * SC_MAX_BLOCK + j] = <pending sign j of mode b, s_b> */
    int dots_dirty[SC_MAX_NDIM];
    uint64_t *tmp;            /* scratch for Kronecker products */
    int64_t *idx;             /* flipped positions */
    float *w;                 /* flip weights */
    float *pw;                /* weights of the pending cuts in a correction */
    double *partial;          /* per-tile partial sums */
    float *panel, *amat;      /* flush buffers (amat: one SC_TILE x SC_MAX_BLOCK block per thread) */
} tengine_t;

static int64_t prod(const int64_t *d, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= d[i];
    return p;
}

/* ORs the n bits of src (each inverted when inv is all ones) into out from bit `off` on. */
static void put_bits(uint64_t *out, int64_t off, const uint64_t *src, int64_t n, uint64_t inv) {
    int64_t nw = sc_words(n);
    int sh = (int)(off & 63);
    uint64_t *o = out + (off >> 6);
    for (int64_t q = 0; q < nw; q++) {
        uint64_t v = src[q] ^ inv;
        if (q == nw - 1) v &= sc_tail_mask(n);
        o[q] |= v << sh;
        if (sh && (v >> (64 - sh))) o[q + 1] |= v >> (64 - sh);   /* only bits inside out */
    }
}

/* out = bits of the Kronecker product of the sign vectors bits[m0..m1-1] (of dims[m0..m1-1]
 * entries), the last mode varying fastest; tmp holds the product's words but the last mode's. */
static void kron_bits(uint64_t *out, uint64_t *tmp, const uint64_t *const *bits,
                      const int64_t *dims, int m0, int m1) {
    int64_t len = 1;
    out[0] = 0;
    for (int b = m0; b < m1; b++) {
        int64_t d = dims[b];
        memcpy(tmp, out, (size_t)sc_words(len) * sizeof(uint64_t));
        memset(out, 0, (size_t)sc_words(len * d) * sizeof(uint64_t));
        for (int64_t i = 0; i < len; i++)
            put_bits(out, i * d, bits[b], d, ((tmp[i >> 6] >> (i & 63)) & 1) ? ~UINT64_C(0) : 0);
        len *= d;
    }
}

/* out = bits of the Kronecker product of the current signs of modes [m0, m1). */
static void kron_into(tengine_t *E, uint64_t *out, int m0, int m1) {
    kron_bits(out, E->tmp, (const uint64_t *const *)E->bits, E->dims, m0, m1);
}

/* The split [0, p) x [p, ndim) whose unfolding is closest to square (ndim >= 2). */
static int square_split(int ndim, const int64_t *dims) {
    int split = 1;
    double best = INFINITY;
    for (int q = 1; q < ndim; q++) {
        double lp = log((double)prod(dims, 0, q)), ld = log((double)prod(dims, q, ndim));
        if (fabs(lp - ld) < best) { best = fabs(lp - ld); split = q; }
    }
    return split;
}

static void side_kron(tengine_t *E, tside_t *X) {
    if (!X->kron_dirty) return;
    kron_into(E, X->kron, X->m0, X->m1);
    E->K->unpack_signs(X->sgn, X->kron, X->len, 1.0f);
    X->kron_dirty = 0;
}

/* Thread me of nth's part of side_sync: a contiguous run of X's entries (a multiple of 16),
 * over which it streams every flipped row: each entry's FMA chain is the same for any split. */
static void sync_rows(tengine_t *E, tside_t *X, const tside_t *Y, int64_t nf, int complement,
                      int me, int nth) {
    int64_t chunks = (X->len + 15) / 16, c0 = chunks * me / nth, c1 = chunks * (me + 1) / nth;
    int64_t a = 16 * c0, end = (16 * c1 < X->len) ? 16 * c1 : X->len;
    if (complement)
        for (int64_t i = a; i < end; i++) X->img[i] = -X->img[i];
    if (end > a && nf) E->K->accum_rows(X->img + a, end - a, Y->own + a, X->len, E->idx, E->w, nf);
}

/* Brings X->img (R0 contracted with the other side's Kronecker signs) up to date from the
 * entries of Y's signs that flipped since: each adds 2 * (new sign) * its row of Y->own. When
 * more than half flipped (a new random start), the image is negated and the entries that did
 * not flip are added instead (the same weights): at most half the rows are read. After a flush
 * the image is recomputed in one exact pass (sums in double). */
static void side_sync(tengine_t *E, tside_t *X, tside_t *Y) {
    const sc_kernels *K = E->K;
    side_kron(E, Y);
    if (!X->valid) {
        int64_t nt_tiles = sc_ntiles(X->len);
        SC_OMP(parallel for schedule(static) num_threads(E->pr.nt) if (E->pr.nt > 1 && E->N >= PAR_MIN_WORK))
        for (int64_t t = 0; t < nt_tiles; t++) {
            int64_t a = t * SC_TILE, end = (X->len - a < SC_TILE) ? X->len : a + SC_TILE;
            for (int64_t i = a; i < end; i++)
                K->signs_rmatvec(X->img + i, X->own + i * Y->len, Y->len, Y->kron, 0, 1);
        }
        memcpy(Y->applied, Y->kron, (size_t)Y->words * sizeof(uint64_t));
        X->valid = 1;
        return;
    }
    int64_t nf = sc_sign_diff(K, Y->kron, Y->applied, Y->words, Y->len);
    if (nf == 0) return;
    int complement = nf > Y->len / 2;
    uint64_t inv = complement ? ~UINT64_C(0) : 0;
    nf = 0;
    for (int64_t q = 0; q < Y->words; q++) {
        uint64_t x = Y->kron[q] ^ Y->applied[q] ^ inv;
        if (q == Y->words - 1) x &= sc_tail_mask(Y->len);
        while (x) {
            int b = sc_ctz64(x);
            E->idx[nf] = 64 * q + b;
            E->w[nf] = ((Y->kron[q] >> b) & 1) ? -2.0f : 2.0f;
            nf++;
            x &= x - 1;
        }
    }
    if (E->pr.nt <= 1 || nf * X->len < PAR_MIN_WORK) {
        /* not through a one-thread parallel region (libgomp sets up a team even then) */
        sync_rows(E, X, Y, nf, complement, 0, 1);
    } else {
        SC_OMP(parallel num_threads(E->pr.nt))
        {
            int nth, me = sc_thread(&nth);
            sync_rows(E, X, Y, nf, complement, me, nth);
        }
    }
    memcpy(Y->applied, Y->kron, (size_t)Y->words * sizeof(uint64_t));
}

/* E->img[0:d_a] = R contracted with the signs of every mode but a (pending cuts included);
 * packs its signs into E->cand and returns |img|_1. */
static double mode_image(tengine_t *E, int a) {
    const sc_kernels *K = E->K;
    tside_t *X = (a < E->S.m1) ? &E->S : &E->T, *Y = (X == &E->S) ? &E->T : &E->S;
    side_kron(E, X);
    side_sync(E, X, Y);
    /* img[i] = s_a[i] * sum over the side's other indices of kron * X->img (kron holds s_a). */
    int64_t d = E->dims[a], L = prod(E->dims, X->m0, a), Rr = prod(E->dims, a + 1, X->m1);
    double *acc = E->acc;
    for (int64_t i = 0; i < d; i++) acc[i] = 0.0;
    for (int64_t l = 0; l < L; l++) {
        const float *g = X->img + l * d * Rr, *s = X->sgn + l * d * Rr;
        if (Rr == 1) {
            for (int64_t i = 0; i < d; i++) acc[i] += (double)(s[i] * g[i]);
            continue;
        }
        for (int64_t i = 0; i < d; i++) {
            const float *gi = g + i * Rr, *si = s + i * Rr;
            double c0 = 0.0, c1 = 0.0, c2 = 0.0, c3 = 0.0;   /* four chains hide the latency */
            int64_t r = 0;
            for (; r + 4 <= Rr; r += 4) {
                c0 += (double)(si[r] * gi[r]);
                c1 += (double)(si[r + 1] * gi[r + 1]);
                c2 += (double)(si[r + 2] * gi[r + 2]);
                c3 += (double)(si[r + 3] * gi[r + 3]);
            }
            for (; r < Rr; r++) c0 += (double)(si[r] * gi[r]);
            acc[i] += (c0 + c1) + (c2 + c3);
        }
    }
    for (int64_t i = 0; i < d; i++) E->img[i] = (float)acc[i] * sc_sign_at(E->bits[a], i);
    if (E->p > 0) {
        /* Pending cut j adds -c_j * prod_{b != a} <s_b^j, s_b> * s_a^j. */
        for (int b = 0; b < E->ndim; b++) {
            if (b == a || !E->dots_dirty[b]) continue;
            int64_t wb = sc_words(E->dims[b]);
            K->sign_dots(E->dots + b * SC_MAX_BLOCK, E->res->bits[b] + E->block_start * wb, wb,
                         E->bits[b], wb, E->dims[b], E->p);
            E->dots_dirty[b] = 0;
        }
        for (int64_t j = 0; j < E->p; j++) {
            double f = -(double)E->res->coef[E->block_start + j];
            for (int b = 0; b < E->ndim; b++)
                if (b != a) f *= (double)E->dots[b * SC_MAX_BLOCK + j];
            E->pw[j] = (float)f;
        }
        int64_t wa = sc_words(d);
        K->signs_matvec(E->img, d, E->res->bits[a] + E->block_start * wa, wa, E->pw, E->p);
    }
    return K->pack_signs(E->cand, E->img, d);
}

/* dst (n x m) = src (m x n)^T, in column strips of SC_TILE. */
static void transpose(const sc_kernels *K, const float *src, float *dst, int64_t m, int64_t n, int nt) {
    int64_t strips = sc_ntiles(n);
    SC_OMP(parallel for schedule(static) num_threads(nt) if (nt > 1 && m * n >= PAR_MIN_WORK))
    for (int64_t t = 0; t < strips; t++) {
        int64_t c0 = t * SC_TILE, cols = (n - c0 < SC_TILE) ? n - c0 : SC_TILE;
        K->transpose(dst + c0 * m, m, src + c0, n, m, cols);
    }
}

/* R0 -= sum_j c_j sigma_j tau_j^T over the pending cuts (one rank update of the unfolding, in
 * chunks of FLUSH_COLS columns); returns the exact squared norm of the new R0. */
static double subtract_pending(tengine_t *E) {
    const sc_kernels *K = E->K;
    int64_t P = E->S.len, D = E->T.len, k = E->p;
    const float *coef = E->res->coef + E->block_start;
    int64_t nt_tiles = sc_ntiles(P);
    for (int64_t c0 = 0; c0 < D; c0 += FLUSH_COLS) {
        int64_t cw = (D - c0 < FLUSH_COLS) ? D - c0 : FLUSH_COLS;
        for (int64_t j = 0; j < k; j++)
            K->unpack_signs(E->panel + j * cw, E->T.pend + j * E->T.words + c0 / 64, cw, 1.0f);
        SC_OMP(parallel for schedule(static) num_threads(E->pr.nt) if (E->pr.nt > 1 && P * cw * k >= PAR_MIN_WORK))
        for (int64_t t = 0; t < nt_tiles; t++) {
            int me = sc_thread(NULL);
            float *am = E->amat + (int64_t)me * SC_TILE * SC_MAX_BLOCK;
            int64_t r0 = t * SC_TILE, nr = (P - r0 < SC_TILE) ? P - r0 : SC_TILE;
            for (int64_t r = 0; r < nr; r++)
                for (int64_t j = 0; j < k; j++)
                    am[r * k + j] = -coef[j] * sc_sign_at(E->S.pend + j * E->S.words, r0 + r);
            K->rank_update(E->R + r0 * D + c0, nr, cw, D, am, k, E->panel, k);
        }
    }
    SC_OMP(parallel for schedule(static) num_threads(E->pr.nt) if (E->pr.nt > 1 && E->N >= PAR_MIN_WORK))
    for (int64_t t = 0; t < nt_tiles; t++) {
        int64_t r0 = t * SC_TILE, r1 = (P - r0 < SC_TILE) ? P : r0 + SC_TILE;
        double acc = 0.0;
        for (int64_t r = r0; r < r1; r++) acc += K->sumsq(E->R + r * D, D);
        E->partial[t] = acc;
    }
    double nrm2 = 0.0;
    for (int64_t t = 0; t < nt_tiles; t++) nrm2 += E->partial[t];
    return nrm2;
}

/* Subtracts the pending cuts from R0, rebuilds RT; returns the exact squared norm. The images
 * are recomputed exactly when next needed. */
static double flush(tengine_t *E) {
    double nrm2 = subtract_pending(E);
    transpose(E->K, E->R, E->RT, E->S.len, E->T.len, E->pr.nt);
    E->p = 0;
    E->S.valid = E->T.valid = 0;
    return nrm2;
}

/* Order 1: the best cut is the sign of the remainder, c = |R|_1 / d. */
static int vector_decompose(const sc_kernels *K, float *R, int64_t d, const sc_params *prm,
                            sc_result *res, double t0) {
    int64_t wd = sc_words(d);
    double nrm2 = K->sumsq(R, d), ref2;
    if (sc_run_start(prm, nrm2, &ref2, res)) return SC_OK;
    int st = SC_OK;
    for (int64_t k = 0;; k++) {
        if ((st = sc_result_grow(res, k + 1, &d))) break;
        uint64_t *s = res->bits[0] + k * wd;
        double cur = K->pack_signs(s, R, d);
        if (!(cur > 0.0)) { res->stopped_by = SC_STOP_EXHAUSTED; break; }
        float mc = -(float)(cur / (double)d);
        res->coef[k] = -mc;
        K->signs_matvec(R, d, s, wd, &mc, 1);
        nrm2 = K->sumsq(R, d);
        res->errors[k] = sqrt(nrm2 / ref2);
        res->width = k + 1;
        if (sc_after_cut(prm, res->width, res->errors[k], t0, &res->stopped_by, &st)) break;
    }
    return st;
}

static void side_free(tside_t *X) {
    free(X->img); free(X->kron); free(X->applied); free(X->sgn); free(X->pend);
}

static void tengine_free(tengine_t *E) {
    for (int a = 0; a < SC_MAX_NDIM; a++) free(E->bits[a]);
    side_free(&E->S); side_free(&E->T);
    free(E->RT); free(E->cand); free(E->img); free(E->acc); free(E->dots); free(E->tmp);
    free(E->idx); free(E->w); free(E->pw); free(E->partial); free(E->panel); free(E->amat);
}

static int side_alloc(tside_t *X, int m0, int m1, const int64_t *dims) {
    X->m0 = m0; X->m1 = m1;
    X->len = prod(dims, m0, m1);
    X->words = sc_words(X->len);
    X->img = malloc((size_t)X->len * sizeof(float));
    X->kron = calloc((size_t)X->words, sizeof(uint64_t));
    X->applied = calloc((size_t)X->words, sizeof(uint64_t));
    X->sgn = malloc((size_t)X->len * sizeof(float));
    X->pend = calloc((size_t)(SC_MAX_BLOCK * X->words), sizeof(uint64_t));
    X->kron_dirty = 1;
    return (X->img && X->kron && X->applied && X->sgn && X->pend) ? SC_OK : SC_ERR_NOMEM;
}

int sc_tensor_decompose(const sc_kernels *K, float *R, int ndim, const int64_t *dims,
                        const sc_params *prm, sc_result *res) {
    if (!K || ndim < 1 || ndim > SC_MAX_NDIM || prm->max_width < 0 || prm->max_sweeps < 1 ||
        prm->block_size < 1 || prm->block_size > SC_MAX_BLOCK)
        return SC_ERR_ARG;
    int64_t N = 1, dmax = 1;
    for (int a = 0; a < ndim; a++) {
        if (dims[a] <= 0) return SC_ERR_ARG;
        N *= dims[a];
        if (dims[a] > dmax) dmax = dims[a];
    }
    double t0 = sc_now_seconds();
    if (ndim == 1) return vector_decompose(K, R, dims[0], prm, res, t0);

    int split = square_split(ndim, dims);
    tengine_t E;
    memset(&E, 0, sizeof E);
    E.K = K; E.ndim = ndim; E.dims = dims; E.N = N; E.R = R; E.res = res;
    /* Capped: each thread has its own flush buffer (any count gives the same bits). */
    sc_probe_init(&E.pr, sc_clamp_threads(prm->n_threads));
    E.block = prm->block_size;
    int st = SC_OK;
    if (side_alloc(&E.S, 0, split, dims) || side_alloc(&E.T, split, ndim, dims)) st = SC_ERR_NOMEM;
    int64_t P = E.S.len, D = E.T.len, mx = P > D ? P : D;
    for (int a = 0; a < ndim; a++)
        if (!(E.bits[a] = calloc((size_t)sc_words(dims[a]), sizeof(uint64_t)))) st = SC_ERR_NOMEM;
    E.RT = malloc((size_t)N * sizeof(float));
    E.cand = calloc((size_t)sc_words(dmax), sizeof(uint64_t));
    E.img = malloc((size_t)dmax * sizeof(float));
    E.acc = malloc((size_t)dmax * sizeof(double));
    E.dots = calloc((size_t)ndim * SC_MAX_BLOCK, sizeof(int64_t));
    E.tmp = malloc((size_t)sc_words(mx) * sizeof(uint64_t));
    E.idx = malloc((size_t)mx * sizeof(int64_t));
    E.w = malloc((size_t)mx * sizeof(float));
    E.pw = calloc(SC_MAX_BLOCK, sizeof(float));
    E.partial = calloc((size_t)sc_ntiles(mx) + 1, sizeof(double));
    E.panel = malloc((size_t)SC_MAX_BLOCK * (size_t)(D < FLUSH_COLS ? D : FLUSH_COLS) * sizeof(float));
    E.amat = malloc((size_t)E.pr.nt_max * SC_TILE * SC_MAX_BLOCK * sizeof(float));
    if (!E.RT || !E.cand || !E.img || !E.acc || !E.dots || !E.tmp || !E.idx || !E.w || !E.pw ||
        !E.partial || !E.panel || !E.amat)
        st = SC_ERR_NOMEM;
    if (st) { tengine_free(&E); return st; }
    E.S.own = R;
    E.T.own = E.RT;
    sc_rng rng;

    double nrm2 = 0.0;
    for (int64_t t = 0; t < sc_ntiles(P); t++) {
        int64_t r1 = (P - t * SC_TILE < SC_TILE) ? P : (t + 1) * SC_TILE;
        double acc = 0.0;
        for (int64_t r = t * SC_TILE; r < r1; r++) acc += K->sumsq(R + r * D, D);
        nrm2 += acc;
    }
    double ref2;
    if (sc_run_start(prm, nrm2, &ref2, res)) { tengine_free(&E); return SC_OK; }
    transpose(K, R, E.RT, P, D, E.pr.nt);

    E.pr.win_t0 = sc_now_seconds();
    for (int64_t k = 0;; k++) {
        if ((st = sc_result_grow(res, k + 1, dims))) break;
        /* Sweep the modes from random signs; converged once ndim - 1 updates in a row bring no
         * growth (the last improved mode is optimal for the others by construction). A start
         * orthogonal to what is left (value exactly 0) is drawn again. */
        double cur = 0.0;
        sc_rng_for_cut(&rng, prm->seed, prm->first_cut + k);
        for (int attempt = 0; attempt < SC_START_ATTEMPTS && !(cur > 0.0); attempt++) {
            for (int a = 0; a < ndim; a++) {
                sc_rng_signs(&rng, E.bits[a], dims[a]);
                E.dots_dirty[a] = 1;
            }
            E.S.kron_dirty = E.T.kron_dirty = 1;
            cur = -1.0;
            int64_t quiet = 0, updates = 0, limit = prm->max_sweeps * (int64_t)ndim;
            for (int a = 0; updates < limit; a = (a + 1) % ndim, updates++) {
                double val = mode_image(&E, a);
                if (val > cur * (1.0 + SC_GROWTH_TOL) || cur < 0.0) {
                    memcpy(E.bits[a], E.cand, (size_t)sc_words(dims[a]) * sizeof(uint64_t));
                    if (a < split) E.S.kron_dirty = 1; else E.T.kron_dirty = 1;
                    E.dots_dirty[a] = 1;
                    cur = val;
                    quiet = 0;
                } else if (++quiet >= ndim - 1) {
                    break;
                }
            }
        }
        if (!(cur > 0.0)) { res->stopped_by = SC_STOP_EXHAUSTED; break; }   /* nothing left to fit */
        float c = (float)(cur / (double)N);
        for (int a = 0; a < ndim; a++)
            memcpy(res->bits[a] + k * sc_words(dims[a]), E.bits[a], (size_t)sc_words(dims[a]) * sizeof(uint64_t));
        res->coef[k] = c;
        side_kron(&E, &E.S);
        side_kron(&E, &E.T);
        memcpy(E.S.pend + E.p * E.S.words, E.S.kron, (size_t)E.S.words * sizeof(uint64_t));
        memcpy(E.T.pend + E.p * E.T.words, E.T.kron, (size_t)E.T.words * sizeof(uint64_t));
        E.p++;
        /* A cut that takes most of what is left makes the tracked norm (and the corrected
         * images) a difference of nearly equal numbers: flush at once. */
        double taken = cur * cur / (double)N;
        int cancels = taken > 0.5 * nrm2;
        nrm2 -= taken;
        int block_end = E.p == E.block || cancels;
        sc_probe_cut(&E.pr, block_end);
        if (block_end) {
            nrm2 = flush(&E);
            sc_probe_flushed(&E.pr);
            E.block_start = k + 1;
        }
        double err = sqrt((nrm2 > 0.0 ? nrm2 : 0.0) / ref2);
        res->errors[k] = err;
        res->width = k + 1;
        if (sc_after_cut(prm, res->width, err, t0, &res->stopped_by, &st)) break;
    }
    /* R is left as the remainder, and the last error is exact. */
    if (st == SC_OK && res->width > 0 && E.p > 0)
        res->errors[res->width - 1] = sqrt(subtract_pending(&E) / ref2);
    tengine_free(&E);
    return st;
}

int sc_tensor_expand(const sc_kernels *K, float *out, int ndim, const int64_t *dims,
                     const uint64_t *const *bits, const float *coef, int64_t width, float sign,
                     int n_threads) {
    if (ndim < 1 || ndim > SC_MAX_NDIM) return SC_ERR_ARG;
    for (int a = 0; a < ndim; a++)
        if (dims[a] < 1) return SC_ERR_ARG;
    if (width <= 0) return SC_OK;
    if (ndim == 1) {                 /* a vector: sum_j (sign c_j) s_j, in cut order */
        float *w = malloc((size_t)width * sizeof(float));
        if (!w) return SC_ERR_NOMEM;
        for (int64_t j = 0; j < width; j++) w[j] = sign * coef[j];
        K->signs_matvec(out, dims[0], bits[0], sc_words(dims[0]), w, width);
        free(w);
        return SC_OK;
    }
    /* The unfolding P x D nearest a square, its cuts' Kronecker signs a block at a time. */
    int split = square_split(ndim, dims);
    int64_t P = prod(dims, 0, split), D = prod(dims, split, ndim);
    int64_t wp = sc_words(P), wd = sc_words(D), wmax = wp > wd ? wp : wd;
    uint64_t *sb = malloc((size_t)(SC_MAX_BLOCK * wp) * sizeof(uint64_t));
    uint64_t *tb = malloc((size_t)(SC_MAX_BLOCK * wd) * sizeof(uint64_t));
    uint64_t *tmp = malloc((size_t)wmax * sizeof(uint64_t));
    int st = (sb && tb && tmp) ? SC_OK : SC_ERR_NOMEM;
    const uint64_t *cut[SC_MAX_NDIM];
    for (int64_t j0 = 0; st == SC_OK && j0 < width; j0 += SC_MAX_BLOCK) {
        int64_t k = (width - j0 < SC_MAX_BLOCK) ? width - j0 : SC_MAX_BLOCK;
        for (int64_t j = 0; j < k; j++) {
            for (int a = 0; a < ndim; a++) cut[a] = bits[a] + (j0 + j) * sc_words(dims[a]);
            kron_bits(sb + j * wp, tmp, cut, dims, 0, split);
            kron_bits(tb + j * wd, tmp, cut, dims, split, ndim);
        }
        st = sc_matrix_expand(K, out, P, D, D, sb, tb, coef + j0, k, sign, n_threads);
    }
    free(sb); free(tb); free(tmp);
    return st;
}

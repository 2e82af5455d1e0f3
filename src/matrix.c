/* signcut: the greedy driver for matrices, written once against the kernel table.
 *
 * R (m x n, row-major, float32) holds the remainder without the pending cuts. The images
 * u = R t (length m) and v = R^T s (length n) of the full remainder (pending cuts included)
 * live across sweeps and cuts and are updated from sign flips only: a flipped t_f adds
 * 2 t_f R[:, f] (a row of R^T) to u, and the pending cuts add sum_j -c_j d<t_j, t> s_j,
 * applied through 4-bit group lookup tables in 16-bit fixed point over the pending signs
 * stored transposed as nibbles (common.h; the rounding is ~2e-4 of the correction, of the
 * size of the float16 copies' effect).
 * The flips read float16 copies of R and R^T (scaled by a power of two so that the largest
 * entry is just below 2^15): the search streams half the bytes, and rounding only perturbs
 * the images between flushes (measured: +0.3% relative error at 8 bits per entry).
 * Every block_size cuts the pending cuts are subtracted from R (float32) in one rank update,
 * the float16 copies are rebuilt, and the norm and images are recomputed exactly.
 *
 * Parallel work is split into fixed tiles of SC_TILE entries, each written by one thread, and
 * per-tile partial sums are added in tile order: n_threads cannot change a bit. */
#define _POSIX_C_SOURCE 200809L  /* clock_gettime, posix_memalign under -std=c11 */
#define _DEFAULT_SOURCE          /* madvise, MADV_HUGEPAGE (Linux) */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "signcut/signcut.h"
#include "signcut/common.h"
#include "signcut/driver.h"

#define PAR_MIN_WORK 4096       /* below this many float ops a step runs on one thread */

/* Where a cut's search starts. A warm start (the previous cut's signs on the longer side) costs
 * fewer flips than random signs and finds as good cuts on dense square-ish matrices, but on
 * structured ones (identity, permutations, one-hot rows, diagonals) it falls back into the
 * family of the previous cut and the error stalls (eye(64), 1000 cuts: 97.7% against 1e-6
 * from random starts), and on elongated ones (a side ELONGATED times the other or more) it is
 * up to twice as bad (16 x 4000, 60 cuts: 0.36 against 0.22). So elongated matrices and
 * matrices that are mostly zeros start every cut from random signs. Otherwise the first
 * START_WINDOW cuts also try a random start, then one cut after gaps doubling up to
 * START_PROBE_MAX: the better of the two is kept, and a random start better by
 * START_PROBE_MARGIN (or all of the window's better by START_WINDOW_MARGIN) makes every
 * later start random. Measured (errors relative to the NumPy plain greedy of the tests,
 * tests/test_effort.py): identity, permutation, diagonal, one-hot rows within 2% over seeds;
 * Gaussian matrices from 128^2 to 1024^2 and low-rank ones do not switch (random / warm at
 * most 1.09 at a probe) and pay 16 + log2(width / 16) extra searches. */
#define ELONGATED 8
#define START_WINDOW 16
#define START_WINDOW_MARGIN 0.05
#define START_PROBE_MAX 256
#define START_PROBE_MARGIN 0.15


/* One side of the alternation: the sign vector of one mode and its image. */
typedef struct {
    int64_t len, words;
    float *img;          /* image of the other side's signs: u = R t or v = R^T s */
    uint64_t *bits;      /* current signs */
    uint64_t *cand;      /* candidate signs (sign of img) */
    uint8_t *nib;        /* pending signs transposed, (SC_NIB_GROUPS, len): bit j % 4 of
                          * nib[(j / 4) * len + i] set if cut j has -1 at i (sc_nib_tables) */
    int64_t *dots;       /* <pending sign j, bits> */
    const uint16_t *rows;  /* float16 rows to add to the OTHER image when this side flips */
    int64_t ld;
    uint64_t *store;     /* signs of the pending cuts, (SC_MAX_BLOCK, words) */
} side_t;

/* What one half step's flips do to the pending cuts' correction, as one thread works it out
 * (see step_flips). */
typedef struct {
    int64_t nf, ngroups;      /* flips (or, negated, entries that did not flip); tables */
    int new_dots_set;         /* new_dots holds the candidate's dots with the pending cuts */
    int negate;
    int64_t new_dots[SC_MAX_BLOCK];   /* <pending sign j, new signs> */
    float pw[SC_MAX_BLOCK];           /* weights of the pending cuts in the correction */
    float scale;                   /* their group tables, low and high bytes, and unit */
    uint8_t tlo[16 * SC_NIB_GROUPS], thi[16 * SC_NIB_GROUPS];
} flips_t;

typedef struct {
    const sc_kernels *K;
    sc_probe pr;              /* threads of the sweeps (pr.nt, see sc_probe_cut) */
    int64_t m, n, p, block;   /* p = pending cuts */
    side_t S, T;
    float *R;
    uint16_t *Rh, *RTh;       /* float16 copies of R and R^T, scaled by 1 / hinv */
    float hinv;
    int64_t *idx;             /* rows of R for v in a rebuild */
    float *w;                 /* and their weights */
    flips_t *fl;              /* per thread */
    float *pcoef;             /* coefficients of pending cuts */
    double *partial;          /* per-tile partial sums, two sets (see alternate) */
    float *tmax;              /* per-tile largest magnitudes */
    float *vpart;             /* per-tile partials of v = R^T s, (sc_ntiles(m), n) if > 1 tile */
    float *panel, *amat;      /* flush buffers */
    uint64_t *best_s, *best_t;    /* best signs among restarts */
    double *xpart;            /* per-tile partial sums of a block's s_j^T R t_j */
    int have_prev;            /* S.bits / T.bits hold a previous cut (warm starts may use it) */
    int random_starts;        /* every cut starts from random signs (see ELONGATED) */
    int64_t probe_gap, next_probe;    /* when a warm start is next checked against a random one */
    double probe_warm, probe_random;  /* sums of the values of both starts in the first probes */
} engine_t;

#define HUGE_MIN (8 << 20)        /* float16 copies from this many bytes go on 2 MiB pages */

/* Memory for a float16 copy. The flips read its rows in random order: a large copy is placed
 * on 2 MiB pages (2 MiB-aligned, MADV_HUGEPAGE where the system has it), so that the rows do not
 * miss the TLB. Measured on the 16-core Xeon, 4096^2, 1000 cuts: 2 threads 3.1-3.2 ms per cut
 * against 4.1-4.3 on 4 KiB pages. Freed with free(). */
static void *copy_alloc(size_t bytes) {
    if (bytes < HUGE_MIN) return malloc(bytes);
    size_t page = (size_t)1 << 21, whole = (bytes + page - 1) / page * page;
    void *p = NULL;
    if (posix_memalign(&p, page, whole)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, whole, MADV_HUGEPAGE);   /* advice only: ignored where not supported */
#endif
    return p;
}

#define FLIP_CHUNK 256           /* flipped rows listed at a time */

/* The mask of Y's flipped entries in word q (with negate, of those that did not flip). */
static inline uint64_t flip_word(const side_t *Y, int64_t q, int negate) {
    uint64_t x = Y->cand[q] ^ Y->bits[q];
    return negate ? ~x & (q + 1 < Y->words ? ~UINT64_C(0) : sc_tail_mask(Y->len)) : x;
}

/* How many entries of Y flip (candidate against current signs), and what that does to the
 * pending cuts' correction of the other image, into *F. Every thread of a sweep can work it
 * out alike: reads Y, writes only *F. */
static void step_flips(const engine_t *E, const side_t *Y, flips_t *F) {
    int64_t nf = sc_sign_diff(E->K, Y->cand, Y->bits, Y->words, Y->len), p = E->p;
    /* More than half of Y flips (a new start): negate X's image, the image of -y, and add the
     * entries that did not flip instead (y_new = -y_old + 2 y_new[f] e_f over those). */
    int negate = 2 * nf > Y->len;
    F->negate = negate;
    F->nf = negate ? Y->len - nf : nf;
    F->ngroups = 0;
    F->new_dots_set = 0;
    if (p == 0 || (nf == 0 && !negate)) return;
    /* Change of <pending sign j of Y, signs of Y>, weighted by -c_j, drives X's correction. */
    const int64_t *dots = Y->dots;
    int64_t *new_dots = F->new_dots;    /* locals: the build has -fno-strict-aliasing */
    if (nf < Y->words && nf <= SC_MAX_BLOCK && !negate) {
        /* Few flips: d<sign_j, y> = sum over flips of (+-2) * sign_j[f], read from the
         * transposed pending signs (integers: the same result as the popcounts). */
        uint64_t pf[SC_MAX_BLOCK];
        int64_t d2[SC_MAX_BLOCK], all = 0, k = 0, groups = (p + 3) / 4;
        for (int64_t q = 0; q < Y->words; q++)
            for (uint64_t x = flip_word(Y, q, 0); x; x &= x - 1) {
                int b = sc_ctz64(x);
                const uint8_t *nb = Y->nib + 64 * q + b;
                pf[k] = 0;
                for (int64_t g = 0; g < groups; g++) pf[k] |= (uint64_t)nb[g * Y->len] << (4 * g);
                d2[k] = ((Y->cand[q] >> b) & 1) ? -2 : 2;
                all += d2[k++];
            }
        for (int64_t j = 0; j < p; j++) {
            int64_t neg = 0;      /* the flips where sign j is -1 */
            for (int64_t i = 0; i < nf; i++) neg += d2[i] & -(int64_t)((pf[i] >> j) & 1);
            new_dots[j] = dots[j] + all - 2 * neg;
        }
    } else {
        E->K->sign_dots(new_dots, Y->store, Y->words, Y->cand, Y->words, Y->len, p);
    }
    const float *pcoef = E->pcoef;
    float *pw = F->pw;
    for (int64_t j = 0; j < p; j++) {
        /* in double: a dot above 2^24 (a side of 16.7M entries) stays exact; the negated
         * image holds +c_j <pending j, y_old>: take it out with the new dot */
        int64_t d = negate ? new_dots[j] + dots[j] : new_dots[j] - dots[j];
        pw[j] = (float)(-(double)pcoef[j] * (double)d);
    }
    F->new_dots_set = 1;
    /* no groups where every weight is 0 (the dots changed, the correction did not) */
    F->ngroups = E->K->nib_tables(F->tlo, F->thi, &F->scale, pw, p);
}

/* Y's dots with the pending cuts become those of its candidate (computed by step_flips). */
static void step_commit_dots(const engine_t *E, side_t *Y, const flips_t *F) {
    if (F->new_dots_set) memcpy(Y->dots, F->new_dots, (size_t)E->p * sizeof(int64_t));
}

/* One thread's tiles [t0, t1) of X: apply Y's flips (listed FLIP_CHUNK at a time, in order:
 * each entry's FMA chain is the same for any split) and F's corrections to X's image, take its
 * signs as X's candidate and |img| per tile into part. With lag_bits, X's candidate was applied
 * by the step before: each tile first makes it X's current signs (nobody else reads them now). */
static void step_tiles(const engine_t *E, const side_t *Y, side_t *X, const flips_t *F,
                       int64_t t0, int64_t t1, double *part, int lag_bits) {
    const sc_kernels *K = E->K;
    if (t1 <= t0) return;
    int64_t a = t0 * SC_TILE, end = (t1 * SC_TILE < X->len) ? t1 * SC_TILE : X->len;
    if (F->negate)
        for (int64_t i = a; i < end; i++) X->img[i] = -X->img[i];
    /* The thread streams the flipped rows over its whole run at once (long streams prefetch
     * well); group lookups and signs go tile by tile. */
    int64_t idx[FLIP_CHUNK], k = 0;
    float w[FLIP_CHUNK], two = 2.0f * E->hinv;
    for (int64_t q = 0; q < Y->words && F->nf; q++)
        for (uint64_t x = flip_word(Y, q, F->negate); x; x &= x - 1) {
            int b = sc_ctz64(x);
            idx[k] = 64 * q + b;
            w[k] = ((Y->cand[q] >> b) & 1) ? -two : two;
            if (++k == FLIP_CHUNK) {
                K->accum_rows_h(X->img + a, end - a, Y->rows + a, Y->ld, idx, w, k);
                k = 0;
            }
        }
    if (k) K->accum_rows_h(X->img + a, end - a, Y->rows + a, Y->ld, idx, w, k);
    for (int64_t t = t0; t < t1; t++) {
        int64_t c = t * SC_TILE, len = (X->len - c < SC_TILE) ? X->len - c : SC_TILE;
        if (lag_bits)
            memcpy(X->bits + c / 64, X->cand + c / 64, (size_t)sc_words(len) * sizeof(uint64_t));
        if (F->ngroups)
            K->group_apply(X->img + c, len, X->nib + c, X->len, F->tlo, F->thi, F->ngroups, F->scale);
        part[t] = K->pack_signs(X->cand + c / 64, X->img + c, len);
    }
}

/* Apply the flips of side Y (candidate -> current) to the image of side X, then take the
 * signs of X's image as X's candidate. Returns |img_X|_1, the value of (cand_X, bits_Y). */
static double half_step(engine_t *E, side_t *Y, side_t *X) {
    flips_t *F = &E->fl[0];
    step_flips(E, Y, F);
    int64_t nt_tiles = sc_ntiles(X->len);
    int64_t work = (F->nf + F->ngroups + 4) * X->len;
    if (E->pr.nt <= 1 || work < PAR_MIN_WORK) {
        /* not through a one-thread parallel region: libgomp sets up a team even then (~0.4 us,
         * a sixth of a small step at 1024^2) */
        step_tiles(E, Y, X, F, 0, nt_tiles, E->partial, 0);
    } else {
        SC_OMP(parallel num_threads(E->pr.nt))
        {
            int nth, me = sc_thread(&nth);
            step_tiles(E, Y, X, F, nt_tiles * me / nth, nt_tiles * (me + 1) / nth, E->partial, 0);
        }
    }
    step_commit_dots(E, Y, F);
    memcpy(Y->bits, Y->cand, (size_t)Y->words * sizeof(uint64_t));
    double val = 0.0;
    for (int64_t t = 0; t < nt_tiles; t++) val += E->partial[t];
    return val;
}

/* a[i*lda + j] = scale_j * sign_j[i] for the k sign vectors bits + j*wpr (transposed view). */
static void signs_to_columns(float *a, int64_t lda, int64_t len, const uint64_t *bits, int64_t wpr,
                             const float *scale, int64_t k) {
    for (int64_t i = 0; i < len; i++)
        for (int64_t j = 0; j < k; j++) a[i * lda + j] = sc_sign_at(bits + j * wpr, i) * scale[j];
}

/* The operands of a rank update by k <= SC_MAX_BLOCK cuts: panel (k x n) the signs t_j, amat
 * (m x k) the signs s_j times sign * coef_j. */
static void block_operands(const sc_kernels *K, const uint64_t *s_bits, const uint64_t *t_bits,
                           const float *coef, int64_t k, float sign, int64_t m, int64_t n,
                           float *panel, float *amat) {
    int64_t ws = sc_words(m), wt = sc_words(n);
    float scale[SC_MAX_BLOCK];
    for (int64_t j = 0; j < k; j++) {
        K->unpack_signs(panel + j * n, t_bits + j * wt, n, 1.0f);
        scale[j] = sign * coef[j];
    }
    signs_to_columns(amat, k, m, s_bits, ws, scale, k);
}

/* out (m x n, ld) += sum_j coef_j * sign * s_j t_j^T for k <= SC_MAX_BLOCK cuts, tiled over rows.
 * With norms != NULL also stores per-tile sums of squares of the updated rows. */
static void rank_block(const sc_kernels *K, int nt, float *out, int64_t m, int64_t n, int64_t ld,
                       const uint64_t *s_bits, const uint64_t *t_bits, const float *coef, int64_t k,
                       float sign, float *panel, float *amat, double *norms) {
    block_operands(K, s_bits, t_bits, coef, k, sign, m, n, panel, amat);
    int64_t nt_tiles = sc_ntiles(m);
    SC_OMP(parallel for schedule(static) num_threads(nt) if (nt > 1 && m * n * k >= PAR_MIN_WORK))
    for (int64_t t = 0; t < nt_tiles; t++) {
        int64_t a = t * SC_TILE, rows = (m - a < SC_TILE) ? m - a : SC_TILE;
        K->rank_update(out + a * ld, rows, n, ld, amat + a * k, k, panel, k);
        if (norms) {
            double acc = 0.0;
            for (int64_t i = a; i < a + rows; i++) acc += K->sumsq(out + i * ld, n);
            norms[t] = acc;
        }
    }
}

/* Subtract the k pending cuts from R (k may be 0) and rebuild from R the exact squared norm
 * (returned), both images and the float16 copies, in two passes over R. Pass 1, per tile of SC_TILE
 * rows in strips of SC_RU_ROWS: the rank update of the strip, then while it is in cache its
 * squares, its largest magnitude, u = R t on its rows and the tile's partial of v = R^T s. Pass 2
 * converts R to its float16 copy, scaled by the power of two that puts the largest entry just
 * below 2^15, and transposes that into the copy of R^T. Per-tile partial sums are added in
 * tile order (the same bits for any thread count). */
static double rebuild(engine_t *E, int64_t k) {
    const sc_kernels *K = E->K;
    int64_t m = E->m, n = E->n, rt = sc_ntiles(m);
    if (k > 0) block_operands(K, E->S.store, E->T.store, E->pcoef, k, -1.0f, m, n, E->panel, E->amat);
    for (int64_t i = 0; i < m; i++) { E->idx[i] = i; E->w[i] = sc_sign_at(E->S.bits, i); }
    SC_OMP(parallel num_threads(E->pr.nt) if (E->pr.nt > 1 && m * n >= PAR_MIN_WORK))
    {
        SC_OMP(for schedule(static))
        for (int64_t t = 0; t < rt; t++) {
            int64_t a = t * SC_TILE, end = (m - a < SC_TILE) ? m : a + SC_TILE;
            float *vp = (rt > 1) ? E->vpart + t * n : E->T.img, mx = 0.0f;
            double acc = 0.0;
            memset(vp, 0, (size_t)n * sizeof(float));
            for (int64_t r0 = a; r0 < end; r0 += SC_RU_ROWS) {
                int64_t rows = (end - r0 < SC_RU_ROWS) ? end - r0 : SC_RU_ROWS;
                float *Rs = E->R + r0 * n;
                if (k > 0) K->rank_update(Rs, rows, n, n, E->amat + r0 * k, k, E->panel, k);
                for (int64_t i = 0; i < rows; i++) {
                    acc += K->sumsq(Rs + i * n, n);
                    float v = K->absmax(Rs + i * n, n);
                    mx = v > mx ? v : mx;
                    K->signs_rmatvec(E->S.img + r0 + i, Rs + i * n, n, E->T.bits, 0, 1);
                }
                K->accum_rows(vp, n, Rs, n, E->idx, E->w + r0, rows);
            }
            E->partial[t] = acc;
            E->tmax[t] = mx;
        }
        /* v = the tiles' partials in tile order, by column chunks (one tile wrote v itself) */
        SC_OMP(for schedule(static))
        for (int64_t c0 = 0; c0 < (rt > 1 ? n : 0); c0 += SC_TILE) {
            int64_t c1 = (n - c0 < SC_TILE) ? n : c0 + SC_TILE;
            memcpy(E->T.img + c0, E->vpart + c0, (size_t)(c1 - c0) * sizeof(float));
            for (int64_t t = 1; t < rt; t++)
                for (int64_t c = c0; c < c1; c++) E->T.img[c] += E->vpart[t * n + c];
        }
        SC_OMP(single)
        {
            float mx = 0.0f;
            for (int64_t t = 0; t < rt; t++) mx = E->tmax[t] > mx ? E->tmax[t] : mx;
            int e = 0;
            if (mx > 0.0f) frexpf(mx, &e);       /* mx < 2^e */
            if (e < -100) e = -100;               /* keeps the scale finite; such remainders are ~0 */
            E->hinv = ldexpf(1.0f, e - 15);
        }
        float scale = 1.0f / E->hinv;
        SC_OMP(for schedule(static))
        for (int64_t t = 0; t < rt; t++) {
            /* R read once; R^T's copy transposed from R's, a tile at a time (whole cache lines
             * written: 13 ms against 16 ms for strips of SC_RU_ROWS rows at 4096^2, one thread) */
            int64_t a = t * SC_TILE, rows = (m - a < SC_TILE) ? m - a : SC_TILE;
            K->to_half(E->Rh + a * n, E->R + a * n, rows * n, scale);
            K->transpose16(E->RTh + a, m, E->Rh + a * n, n, rows, n);
        }
    }
    double nrm2 = 0.0;
    for (int64_t t = 0; t < rt; t++) nrm2 += E->partial[t];
    return nrm2;
}

/* Subtract the pending cuts from R, rebuild the copies and images, return the exact squared
 * norm. */
static double flush(engine_t *E) {
    double nrm2 = rebuild(E, E->p);
    size_t groups = (size_t)(E->p + 3) / 4;
    memset(E->S.nib, 0, (size_t)E->m * groups);
    memset(E->T.nib, 0, (size_t)E->n * groups);
    E->p = 0;
    return nrm2;
}

static void engine_free(engine_t *E) {
    side_t *sides[2] = {&E->S, &E->T};
    for (int i = 0; i < 2; i++) {
        side_t *X = sides[i];
        free(X->img); free(X->bits); free(X->cand); free(X->nib); free(X->dots);
        free(X->store);
    }
    free(E->Rh); free(E->RTh); free(E->idx); free(E->w); free(E->fl); free(E->pcoef);
    free(E->partial); free(E->panel); free(E->amat); free(E->best_s); free(E->best_t);
    free(E->xpart); free(E->tmax); free(E->vpart);
}

static int side_alloc(side_t *X, int64_t len) {
    X->len = len;
    X->words = sc_words(len);
    X->img = calloc((size_t)len, sizeof(float));
    X->bits = calloc((size_t)X->words, sizeof(uint64_t));
    X->cand = calloc((size_t)X->words, sizeof(uint64_t));
    X->nib = calloc((size_t)(SC_NIB_GROUPS * len), 1);
    X->dots = calloc(SC_MAX_BLOCK, sizeof(int64_t));
    X->store = calloc((size_t)(SC_MAX_BLOCK * X->words), sizeof(uint64_t));
    return (X->img && X->bits && X->cand && X->nib && X->dots && X->store)
               ? SC_OK : SC_ERR_NOMEM;
}

/* Add the cut coef * sb tb^T to the pending block (R_eff = R - sum_j pcoef_j s_j t_j^T): store
 * its signs (also transposed), its dots with the current signs, and update both images:
 * u = R t loses coef <tb, t> sb, v = R^T s loses coef <sb, s> tb. */
static void add_pending(engine_t *E, const uint64_t *sb, const uint64_t *tb, float coef) {
    int64_t j = E->p;
    side_t *sides[2] = {&E->S, &E->T};
    const uint64_t *b[2] = {sb, tb};
    for (int a = 0; a < 2; a++) {
        side_t *X = sides[a];
        memcpy(X->store + j * X->words, b[a], (size_t)X->words * sizeof(uint64_t));
        for (int64_t q = 0; q < X->words; q++) {
            uint64_t x = b[a][q];
            while (x) {
                int64_t i = 64 * q + sc_ctz64(x);
                X->nib[(j / 4) * X->len + i] |= (uint8_t)(1u << (j % 4));
                x &= x - 1;
            }
        }
        E->K->sign_dots(&X->dots[j], b[a], X->words, X->bits, X->words, X->len, 1);
    }
    float ws = (float)(-(double)coef * (double)E->T.dots[j]);
    float wt = (float)(-(double)coef * (double)E->S.dots[j]);
    E->K->signs_matvec(E->S.img, E->m, sb, E->S.words, &ws, 1);
    E->K->signs_matvec(E->T.img, E->n, tb, E->T.words, &wt, 1);
    E->pcoef[j] = coef;
    E->p++;
}

/* x[j] = s_j^T R t_j for k <= SC_MAX_BLOCK pairs of signs (sb + j*ws, tb + j*wt) from R in
 * float32: per tile of rows, z = R[i, :] . t_j summed with s_j[i] in double, then the tiles in
 * order (the same bits for any thread count). */
static void block_values(engine_t *E, const uint64_t *sb, int64_t ws, const uint64_t *tb,
                         int64_t wt, int64_t k, double *x) {
    const sc_kernels *K = E->K;
    int64_t m = E->m, n = E->n, nt_tiles = sc_ntiles(m);
    SC_OMP(parallel for schedule(static) num_threads(E->pr.nt) if (E->pr.nt > 1 && m * n >= PAR_MIN_WORK))
    for (int64_t t = 0; t < nt_tiles; t++) {
        double *acc = E->xpart + t * SC_MAX_BLOCK;
        float z[SC_MAX_BLOCK];
        for (int64_t j = 0; j < k; j++) acc[j] = 0.0;
        int64_t end = ((t + 1) * SC_TILE < m) ? (t + 1) * SC_TILE : m;
        for (int64_t i = t * SC_TILE; i < end; i++) {
            K->signs_rmatvec(z, E->R + i * n, n, tb, wt, k);
            for (int64_t j = 0; j < k; j++) acc[j] += sc_sign_at(sb + j * ws, i) * (double)z[j];
        }
    }
    for (int64_t j = 0; j < k; j++) {
        x[j] = 0.0;
        for (int64_t t = 0; t < nt_tiles; t++) x[j] += E->xpart[t * SC_MAX_BLOCK + j];
    }
}

/* s^T R_eff t for the current signs: block_values on R and the pending cuts' dots with the
 * current signs. */
static double exact_value(engine_t *E) {
    double x;
    block_values(E, E->S.bits, E->S.words, E->T.bits, E->T.words, 1, &x);
    for (int64_t j = 0; j < E->p; j++)
        x -= (double)E->pcoef[j] * (double)E->S.dots[j] * (double)E->T.dots[j];
    return x;
}

/* Alternate from the candidate signs of side Y (Y->cand) while the value |s^T R t| grows
 * (sc_alternation_ends, driver.h). Returns the value of the signs left in S.bits and T.bits
 * (the images match them).
 *
 * With several threads and both sides of two tiles or more, the whole alternation is one
 * parallel region with one barrier per half step (a region per half step costs a fork and a
 * join). Each thread works out the flips itself (step_flips, step_tiles), applies them to its
 * own tiles, and after the barrier adds the same partial sums in the same order: every thread
 * takes the same decisions, and the bits are those of one thread. What the step after next
 * reads is written between two barriers: a side's dots by thread 0 after the barrier, its bits
 * by each tile's owner before the tile's candidate is overwritten (step_tiles' lag_bits). The
 * partial sums alternate between two sets, so that a thread already in the next step does not
 * overwrite a sum another still adds. */
static double alternate(engine_t *E, const sc_params *prm, side_t *Y0) {
    side_t *X0 = (Y0 == &E->T) ? &E->S : &E->T;
    int64_t shortest = E->m < E->n ? E->m : E->n, stride = sc_ntiles(E->m > E->n ? E->m : E->n);
    if (E->pr.nt <= 1 || shortest < 2 * SC_TILE) {
        side_t *Y = Y0, *X = X0;
        double cur = 0.0;
        for (int64_t h = 0;; h++) {
            double val = half_step(E, Y, X);
            if (sc_alternation_ends(prm, h, val, cur)) break;
            cur = val;
            side_t *tmp = X; X = Y; Y = tmp;
        }
        return cur;
    }
    double result = 0.0;
    side_t *last = Y0;        /* the side whose candidate the last step applied */
    SC_OMP(parallel num_threads(E->pr.nt))
    {
        int nth, me = sc_thread(&nth);
        flips_t *F = &E->fl[me];
        side_t *Y = Y0, *X = X0;
        double cur = 0.0;
        for (int64_t h = 0;; h++) {
            step_flips(E, Y, F);
            int64_t nt_tiles = sc_ntiles(X->len);
            double *part = E->partial + (h & 1) * stride;
            step_tiles(E, Y, X, F, nt_tiles * me / nth, nt_tiles * (me + 1) / nth, part, h > 0);
            SC_OMP(barrier)
            double val = 0.0;
            for (int64_t t = 0; t < nt_tiles; t++) val += part[t];
            if (me == 0) step_commit_dots(E, Y, F);
            if (sc_alternation_ends(prm, h, val, cur)) {
                if (me == 0) {
                    result = cur;
                    last = Y;
                }
                break;
            }
            cur = val;
            side_t *tmp = X; X = Y; Y = tmp;
        }
    }
    memcpy(last->bits, last->cand, (size_t)last->words * sizeof(uint64_t));
    return result;
}

/* Search cut k: the best of prm->restarts starts, the first from the previous cut's signs on
 * the longer side with warm_start (else from a random t; see ELONGATED for when), the others
 * kicks of the best so far (iterated local search); a probe adds a random start after the
 * warm one. A start orthogonal to what is left (value exactly 0, easy on small exact data)
 * does not count and is drawn again, up to SC_START_ATTEMPTS times. Leaves the best signs in
 * S.bits / T.bits with matching images; returns their value (0: none). */
static double best_cut(engine_t *E, const sc_params *prm, sc_rng *rng, int64_t k) {
    int restarts = prm->restarts > 1 ? prm->restarts : 1;
    int warm = prm->warm_start && E->have_prev && !E->random_starts;
    int probe = warm && k >= E->next_probe;
    int starts = restarts + probe, need_random = probe;
    double best = 0.0, warm_val = 0.0, random_val = 0.0;
    int found = 0, last_is_best = 0;
    for (int attempt = 0; attempt < SC_START_ATTEMPTS + starts && found < starts; attempt++) {
        side_t *Y = &E->T;
        int kind = (attempt == 0 && warm) ? 0 : (found == 0 || need_random) ? 1 : 2;
        if (kind == 0) {
            /* From the longer side: from the short side of a tall or wide matrix the search
             * falls back near the previous cut (measured: 1000 x 50, 300 cuts, 55% more
             * error; from the long side 4% less than random starts). */
            Y = E->m >= E->n ? &E->S : &E->T;
            memcpy(Y->cand, Y->bits, (size_t)Y->words * sizeof(uint64_t));
        } else if (kind == 2) {
            /* A kick: the best t so far with 1 in 2^SC_KICK_SHIFT entries flipped at random.
             * Measured (512 x 512, 8 bits per entry): 8 starts give 16% less error than one,
             * where 4 fully random starts give 6%. */
            sc_kick_signs(rng, E->T.cand, E->best_t, E->n);
        } else {
            sc_rng_signs(rng, E->T.cand, E->n);
        }
        double val = alternate(E, prm, Y);
        if (!(val > 0.0)) {          /* does not count; the signs now are not the best */
            last_is_best = 0;
            continue;
        }
        if (kind == 0) warm_val = val;
        if (kind == 1 && need_random) {
            random_val = val;
            need_random = 0;
        }
        found++;
        last_is_best = val > best;
        if (last_is_best) {
            best = val;
            if (starts > 1) {
                memcpy(E->best_s, E->S.bits, (size_t)E->S.words * sizeof(uint64_t));
                memcpy(E->best_t, E->T.bits, (size_t)E->T.words * sizeof(uint64_t));
            }
        }
    }
    if (found && !last_is_best) {
        /* Go back to the best signs: flip t (s follows as a candidate), then s. */
        memcpy(E->T.cand, E->best_t, (size_t)E->T.words * sizeof(uint64_t));
        half_step(E, &E->T, &E->S);
        memcpy(E->S.cand, E->best_s, (size_t)E->S.words * sizeof(uint64_t));
        half_step(E, &E->S, &E->T);
    }
    if (probe) {
        E->probe_warm += warm_val;
        E->probe_random += random_val;
        if (random_val > warm_val * (1.0 + START_PROBE_MARGIN) ||
            (k == START_WINDOW && E->probe_random > E->probe_warm * (1.0 + START_WINDOW_MARGIN)))
            E->random_starts = 1;
        if (k >= START_WINDOW) {
            E->probe_gap = E->probe_gap < START_PROBE_MAX / 2 ? 2 * E->probe_gap : START_PROBE_MAX;
            E->next_probe = k + E->probe_gap;
        } else {
            E->next_probe = k + 1;
        }
    }
    return best;
}

/* One backfitting pass: each cut in turn is added back to the remainder and searched again
 * from its own t, then replaced by what the search finds (never worse: the search starts from
 * it). Stops early at the time budget or an interruption. */
static int refine_pass(engine_t *E, const sc_params *prm, sc_result *res, double t0) {
    int64_t ws = E->S.words, wt = E->T.words, room = E->block > 2 ? E->block : 2;
    const double mn = (double)E->m * (double)E->n;
    for (int64_t j = 0; j < res->width; j++) {
        if (E->p + 2 > room) flush(E);
        uint64_t *sj = res->bits[0] + j * ws, *tj = res->bits[1] + j * wt;
        add_pending(E, sj, tj, -res->coef[j]);
        memcpy(E->T.cand, tj, (size_t)wt * sizeof(uint64_t));
        double val = alternate(E, prm, &E->T);
        float c = (float)(val / mn);
        memcpy(sj, E->S.bits, (size_t)ws * sizeof(uint64_t));
        memcpy(tj, E->T.bits, (size_t)wt * sizeof(uint64_t));
        res->coef[j] = c;
        add_pending(E, E->S.bits, E->T.bits, c);
        if (prm->max_seconds > 0.0 && sc_now_seconds() - t0 >= prm->max_seconds) return SC_OK;
        if (prm->progress && prm->progress(prm->progress_ctx, -1, 0.0)) return SC_ERR_CALLBACK;
    }
    return SC_OK;
}

/* The error history after refinement changed the cuts: add every cut back to R (the final
 * remainder, all cuts flushed), then subtract them again a block at a time. Within a block,
 * ||R_{j+1}||^2 = ||R_j||^2 - 2 c_j x_j + c_j^2 m n with x_j = s_j^T R_j t_j, from the
 * block-start remainder and the popcount dots of the block's earlier cuts; each block ends
 * with the exact norm. */
static void recompute_errors(engine_t *E, sc_result *res, double ref2) {
    const sc_kernels *K = E->K;
    int64_t m = E->m, n = E->n, ws = E->S.words, wt = E->T.words, w = res->width;
    const double mn = (double)m * (double)n;
    for (int64_t j0 = 0; j0 < w; j0 += SC_MAX_BLOCK) {
        int64_t k = (w - j0 < SC_MAX_BLOCK) ? w - j0 : SC_MAX_BLOCK;
        rank_block(K, E->pr.nt, E->R, m, n, n, res->bits[0] + j0 * ws, res->bits[1] + j0 * wt,
                   res->coef + j0, k, 1.0f, E->panel, E->amat, NULL);
    }
    double nrm2 = 0.0;
    for (int64_t i = 0; i < m; i++) nrm2 += K->sumsq(E->R + i * n, n);
    int64_t nt_tiles = sc_ntiles(m);
    for (int64_t j0 = 0; j0 < w; j0 += SC_MAX_BLOCK) {
        int64_t k = (w - j0 < SC_MAX_BLOCK) ? w - j0 : SC_MAX_BLOCK;
        const uint64_t *sb = res->bits[0] + j0 * ws, *tb = res->bits[1] + j0 * wt;
        double x0[SC_MAX_BLOCK];
        block_values(E, sb, ws, tb, wt, k, x0);
        for (int64_t j = 0; j < k; j++) {
            double x = x0[j];
            if (j > 0) {
                int64_t ds[SC_MAX_BLOCK], dt[SC_MAX_BLOCK];
                K->sign_dots(ds, sb, ws, sb + j * ws, ws, m, j);
                K->sign_dots(dt, tb, wt, tb + j * wt, wt, n, j);
                for (int64_t i = 0; i < j; i++)
                    x -= (double)res->coef[j0 + i] * (double)ds[i] * (double)dt[i];
            }
            double c = res->coef[j0 + j];
            nrm2 += c * (c * mn - 2.0 * x);
            res->errors[j0 + j] = sqrt((nrm2 > 0.0 ? nrm2 : 0.0) / ref2);
        }
        rank_block(K, E->pr.nt, E->R, m, n, n, sb, tb, res->coef + j0, k, -1.0f, E->panel, E->amat,
                   E->partial);
        nrm2 = 0.0;
        for (int64_t t = 0; t < nt_tiles; t++) nrm2 += E->partial[t];
        res->errors[j0 + k - 1] = sqrt(nrm2 / ref2);
    }
}

int sc_matrix_decompose(const sc_kernels *K, float *R, int64_t m, int64_t n,
                        const sc_params *prm, sc_result *res) {
    if (!K || m <= 0 || n <= 0 || prm->block_size < 1 || prm->block_size > SC_MAX_BLOCK ||
        prm->max_width < 0 || prm->max_sweeps < 2)
        return SC_ERR_ARG;
    double t0 = sc_now_seconds();
    engine_t E;
    memset(&E, 0, sizeof E);
    E.K = K;
    sc_probe_init(&E.pr, sc_clamp_threads(prm->n_threads));
    E.m = m; E.n = n; E.block = prm->block_size; E.R = R;
    int64_t mx = m > n ? m : n;
    int st = SC_OK;
    if (side_alloc(&E.S, m) || side_alloc(&E.T, n)) st = SC_ERR_NOMEM;
    E.Rh = copy_alloc((size_t)(m * n) * sizeof(uint16_t));
    E.RTh = copy_alloc((size_t)(m * n) * sizeof(uint16_t));
    E.idx = malloc((size_t)mx * sizeof(int64_t));
    E.w = malloc((size_t)mx * sizeof(float));
    E.fl = calloc((size_t)E.pr.nt_max, sizeof(flips_t));
    E.pcoef = calloc(SC_MAX_BLOCK, sizeof(float));
    E.partial = calloc((size_t)(2 * sc_ntiles(mx)), sizeof(double));
    E.panel = malloc((size_t)(SC_MAX_BLOCK * mx) * sizeof(float));
    E.amat = malloc((size_t)(SC_MAX_BLOCK * mx) * sizeof(float));
    E.best_s = calloc((size_t)E.S.words + 1, sizeof(uint64_t));
    E.best_t = calloc((size_t)E.T.words + 1, sizeof(uint64_t));
    E.xpart = malloc((size_t)(sc_ntiles(m) * SC_MAX_BLOCK) * sizeof(double));
    E.tmax = malloc((size_t)sc_ntiles(m) * sizeof(float));
    E.vpart = malloc((size_t)(sc_ntiles(m) > 1 ? sc_ntiles(m) * n : 1) * sizeof(float));
    if (!E.best_s || !E.best_t || !E.xpart || !E.tmax || !E.vpart) st = SC_ERR_NOMEM;
    if (!E.Rh || !E.RTh || !E.idx || !E.w || !E.fl || !E.pcoef || !E.partial || !E.panel || !E.amat)
        st = SC_ERR_NOMEM;
    if (st) { engine_free(&E); return st; }
    E.S.rows = E.Rh;  E.S.ld = n;    /* flips of s add rows of R to v */
    E.T.rows = E.RTh; E.T.ld = m;    /* flips of t add rows of R^T to u */

    sc_rng rng;
    E.random_starts = (m >= ELONGATED * n || n >= ELONGATED * m);
    E.probe_gap = 1;
    E.next_probe = 1;

    /* Exact start: squared norm, the float16 copies, and the images of the all-plus signs. */
    double nrm2 = 0.0;
    int64_t zeros = 0;
    for (int64_t i = 0; i < m; i++) {
        nrm2 += K->sumsq(R + i * n, n);
        for (int64_t j = 0; j < n; j++) zeros += (R[i * n + j] == 0.0f);
    }
    E.random_starts |= (zeros > m * n / 2);
    double ref2;
    if (sc_run_start(prm, nrm2, &ref2, res)) { engine_free(&E); return SC_OK; }
    int64_t ws = E.S.words, wt = E.T.words, dims[2] = {m, n};
    if (prm->warm_s && prm->warm_t) {     /* continuing: start next to the previous cut */
        memcpy(E.S.bits, prm->warm_s, (size_t)ws * sizeof(uint64_t));
        memcpy(E.T.bits, prm->warm_t, (size_t)wt * sizeof(uint64_t));
        E.S.bits[ws - 1] &= sc_tail_mask(m);
        E.T.bits[wt - 1] &= sc_tail_mask(n);
        E.have_prev = 1;
    }
    rebuild(&E, 0);
    const double mn = (double)m * (double)n;

    double nrm2_flushed = nrm2;
    E.pr.win_t0 = sc_now_seconds();
    for (int64_t k = 0;; k++) {
        if ((st = sc_result_grow(res, k + 1, dims))) break;
        sc_rng_for_cut(&rng, prm->seed, prm->first_cut + k);
        double cur = best_cut(&E, prm, &rng, k);
        if (!(cur > 0.0)) { res->stopped_by = SC_STOP_EXHAUSTED; break; }   /* nothing left to fit */
        /* The value comes from images updated through the float16 copies (relative error
         * ~1e-4); a cut that takes most of what is left (exact low-rank data) gets its exact
         * value from R, so such data is recovered to float32 precision. */
        if (cur * cur / mn > 0.5 * nrm2) cur = exact_value(&E);
        float c = (float)(cur / mn);
        memcpy(res->bits[0] + k * ws, E.S.bits, (size_t)ws * sizeof(uint64_t));
        memcpy(res->bits[1] + k * wt, E.T.bits, (size_t)wt * sizeof(uint64_t));
        res->coef[k] = c;
        add_pending(&E, E.S.bits, E.T.bits, c);
        E.have_prev = 1;
        /* A cut that takes most of what is left makes the tracked norm a difference of two
         * nearly equal numbers, and once the remainder's norm has halved the float16 copies
         * (scaled at the last flush) hold it with fewer digits: flush at once in both cases. */
        double taken = cur * cur / mn;
        int cancels = taken > 0.5 * nrm2;
        nrm2 -= taken;
        int block_end = E.p == E.block || cancels || nrm2 < 0.25 * nrm2_flushed;
        sc_probe_cut(&E.pr, block_end);
        if (block_end) {
            nrm2 = nrm2_flushed = flush(&E);
            sc_probe_flushed(&E.pr);
        }
        double err = sqrt((nrm2 > 0.0 ? nrm2 : 0.0) / ref2);
        res->errors[k] = err;
        res->width = k + 1;
        if (sc_after_cut(prm, res->width, err, t0, &res->stopped_by, &st)) break;
    }
    for (int pass = 0; st == SC_OK && pass < prm->refine && res->width > 0; pass++)
        st = refine_pass(&E, prm, res, t0);
    /* The tracked norm loses digits when the remainder is tiny: make the last error exact
     * (the remainder in R is then final too). */
    if (st == SC_OK && res->width > 0 && (E.p > 0 || prm->refine > 0)) {
        nrm2 = E.p > 0 ? flush(&E) : nrm2;
        res->errors[res->width - 1] = sqrt(nrm2 / ref2);
        if (prm->refine > 0) recompute_errors(&E, res, ref2);
    }
    engine_free(&E);
    return st;
}

int sc_matrix_expand(const sc_kernels *K, float *out, int64_t m, int64_t n, int64_t ld,
                     const uint64_t *s_bits, const uint64_t *t_bits, const float *coef,
                     int64_t width, float sign, int n_threads) {
    if (m <= 0 || n <= 0 || width <= 0) return SC_OK;
    int64_t mx = m > n ? m : n;
    float *panel = malloc((size_t)(SC_MAX_BLOCK * mx) * sizeof(float));
    float *amat = malloc((size_t)(SC_MAX_BLOCK * mx) * sizeof(float));
    if (!panel || !amat) { free(panel); free(amat); return SC_ERR_NOMEM; }
    int64_t ws = sc_words(m), wt = sc_words(n);
    for (int64_t j0 = 0; j0 < width; j0 += SC_MAX_BLOCK) {
        int64_t k = (width - j0 < SC_MAX_BLOCK) ? width - j0 : SC_MAX_BLOCK;
        rank_block(K, sc_clamp_threads(n_threads), out, m, n, ld, s_bits + j0 * ws,
                   t_bits + j0 * wt, coef + j0, k, sign, panel, amat, NULL);
    }
    free(panel); free(amat);
    return SC_OK;
}

/* signcut: the greedy driver for an implicit remainder R = A - sum_j c_j s_j t_j^T, where A
 * is a sparse matrix (CSR and CSC) or an operator known only by its products. Written once
 * against the kernel table, with the matrix engine's search rules (driver.h: growth test,
 * start attempts; common.h: kicks, per-cut random generator) but starts of its own: from the
 * previous cut's signs, and also from random ones where that falls short (see best_cut).
 *
 * Each side keeps its image of the other side's signs in two parts, u = R t = uA - uC: the
 * A part uA = A t and the cuts' part uC = sum_j c_j <t_j, t> s_j. When t flips on a set F,
 * uA changes by 2 t_new[f] A[:, f] over the flipped columns (CSC; rows of the CSR for flips
 * of s), or, for an operator, is one product A t. The dots <t_j, t> change by integers that
 * popcounts of the changed words give (flip_dots), and uC by sum_j c_j d<t_j, t> s_j. Those
 * weights are kept pending per side and applied to every entry only when a half step
 * resolves (see half_step), through 4-bit group tables in 16-bit fixed point (nib_tables /
 * chunk_apply, blocks of 64 cuts: every cut so far; the signs are also kept in chunk layout,
 * common.h, 1 bit per cut and entry, so that a tile's lookups read only its own entries'
 * bytes). In between, a side's candidate is the signs of its stale image, and the value of
 * the pair is still exact, from the integer dots of the candidate with the cuts.
 *
 * A search depends only on the cuts before it and its random draws, not on how the images
 * got there, so that a run continued from its first k cuts (init) makes the same cuts as one
 * long run: after each cut both uA are those of its signs (an operator's last products;
 * for sparse A made again from A's lines, unless exact_flips: then the flip updates gave
 * them exactly), and the first two half steps of a cut's search make uC from zero, through
 * the tables of the full weights c_j <y_j, y>. The rounding of the tables and of float32
 * flip updates only perturbs the search within a cut.
 *
 * Values are exact: a cut's s^T R t = s^T A t - sum_j c_j <s_j, s> <t_j, t> from uA and the
 * integer dots, and the squared error is ||A||^2 - 2 <A, X> + ||X||^2 with <A, X> = sum_j
 * c_j s_j^T A t_j and ||X||^2 = sum_{i,j} c_i c_j <s_i, s_j> <t_i, t_j>, whose entries for a
 * new cut are the dots the search keeps (popcounts, exact integers), summed in double.
 *
 * Parallel work is split into fixed tiles of SC_TILE entries, each written by one thread, and
 * per-tile partial sums are added in tile order: n_threads cannot change a bit. */
#define _POSIX_C_SOURCE 200809L  /* clock_gettime under -std=c11 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "signcut/signcut.h"
#include "signcut/common.h"
#include "signcut/driver.h"

#define BLOCK 64                 /* cuts per block of group tables (their int16 bound) */
#define TAB 512                  /* bytes of one block's tables (sc_chunk_tables) */
#define FLIP_CHUNK 256           /* flipped lines listed at a time */
#define FULL_DIV 3               /* A y from scratch when more than 1 / FULL_DIV of y flips */
/* Below this relative error the cuts' part of the images changes through signs_matvec (float32,
 * exact to its rounding) instead of the group tables, whose rounding (up to ~2.4e-4 of the
 * weights' magnitudes per half step) would swamp a remainder that small: with the tables,
 * block-constant data stalled near 5e-5 where the dense engine reaches 1e-7. */
#define PRECISE_BELOW 1e-2

typedef struct {
    int64_t len, words;
    float *imgA;         /* A part of the image of the other side's signs: A t (s), A^T s (t) */
    float *cut;          /* cuts' part, as of its last update: sum_j c_j <other sign j, other
                          * signs> sign_j, less sum_j pend_j sign_j (see pend) */
    double *pend;        /* per cut, the weight of sign_j not yet added to cut */
    uint64_t *bits, *cand;
    uint8_t **chunks;    /* per block of BLOCK cuts, its signs in chunk layout (common.h) of
                          * E->planes[b] planes */
    int64_t *dots;       /* <this side's sign of cut j, bits>, j < width */
    /* cand against bits: entries that differ (nf), the words where they do (qs[0..nq)), and
     * per cut the change of dots (delta); known says they describe the current cand */
    int64_t *delta, *qs, nf, nq;
    int known;
    int exact;           /* imgA is A's image of the other side's signs (0 until first made) */
    /* A's lines along this side (rows of A for s, columns for t): a flip of entry f changes
     * the other side's uA by +-2 times line f */
    const int64_t *ptr;
    const int32_t *idx;
    const float *val;
    int transposed;      /* operator: the product these signs enter (0: A t, 1: A^T s) */
} side_t;

/* Planes of chunk layout that k cuts of a block fill (chunk_apply reads 2, 4 or 8). */
static int64_t block_planes(int64_t k) { return k <= 16 ? 2 : k <= 32 ? 4 : 8; }

typedef struct {
    const sc_kernels *K;
    sc_probe pr;
    int64_t m, n, width, nblocks, cap, cap_blocks;
    side_t S, T;
    sc_result *res;           /* the cuts so far (signs, coefficients in the engine's scale) */
    sc_product_fn product;    /* an operator's products (NULL: sparse A) */
    void *pctx;
    int status;               /* a failed product */
    int precise;              /* the cuts' part changes through signs_matvec (PRECISE_BELOW) */
    int exact_flips;          /* every float sum of A's values along a line is exact (the
                               * values are multiples of one power of two, their line sums
                               * at most 2^24 of it): so are the images' flip updates */
    float *w;                 /* per cut: weight of its correction in a half step */
    uint8_t *tab;             /* per block: the tables of chunk_apply */
    float *tscale;
    int64_t *tgroups, *planes, *cnt;
    double *partial;          /* per-tile partial sums */
    uint64_t *best_s, *best_t;
} engine_t;

/* Packed signs of every cut on side X (the result's arrays, which grow). */
static const uint64_t *side_signs(const engine_t *E, const side_t *X) {
    return E->res->bits[X == &E->S ? 0 : 1];
}

/* The mask of Y's flipped entries in word q (with negate, of those that did not flip). */
static inline uint64_t flip_word(const side_t *Y, int64_t q, int negate) {
    uint64_t x = Y->cand[q] ^ Y->bits[q];
    return negate ? ~x & (q + 1 < Y->words ? ~UINT64_C(0) : sc_tail_mask(Y->len)) : x;
}

/* Which entries of Y's candidate differ from its signs: Y->nf, and the words Y->qs[0..nq). */
static void count_changes(const engine_t *E, side_t *Y) {
    Y->nf = sc_sign_diff(E->K, Y->cand, Y->bits, Y->words, Y->len);
    Y->nq = 0;
    if (Y->nf)
        for (int64_t q = 0; q < Y->words; q++)
            if (Y->cand[q] != Y->bits[q]) Y->qs[Y->nq++] = q;
}

/* Block b of the cuts: how their dots with Y change when Y's candidate replaces its signs
 * (Y->delta; count_changes first). */
static void block_changes(engine_t *E, side_t *Y, int64_t b) {
    int64_t j0 = b * BLOCK, k = (E->width - j0 < BLOCK) ? E->width - j0 : BLOCK;
    int64_t *cnt = E->cnt + j0;
    E->K->flip_dots(cnt, side_signs(E, Y) + j0 * Y->words, Y->words, Y->bits, Y->cand, Y->qs,
                    Y->nq, k);
    /* <y_j, y_new> - <y_j, y_old> = 2 (flips where y_j agrees with y_new - the others) */
    for (int64_t j = 0; j < k; j++) Y->delta[j0 + j] = 2 * (Y->nf - 2 * cnt[j]);
}

/* Block b of X's pending weights as float weights and, unless precise, their group tables. */
static void block_tables(engine_t *E, const side_t *X, int64_t b) {
    int64_t j0 = b * BLOCK, k = (E->width - j0 < BLOCK) ? E->width - j0 : BLOCK;
    for (int64_t j = 0; j < k; j++) E->w[j0 + j] = (float)X->pend[j0 + j];
    uint8_t tlo[16 * SC_NIB_GROUPS], thi[16 * SC_NIB_GROUPS];
    E->tgroups[b] = E->precise ? 0 : E->K->nib_tables(tlo, thi, &E->tscale[b], E->w + j0, k);
    if (E->tgroups[b]) sc_chunk_tables(E->tab + b * TAB, tlo, thi, E->tgroups[b]);
}

/* One thread's tiles [t0, t1) of X, first part: the flips of Y on uA (sparse A; negate: see
 * half_step). */
static void flip_tiles(engine_t *E, const side_t *Y, side_t *X, int negate, int64_t t0,
                       int64_t t1) {
    const sc_kernels *K = E->K;
    if (t1 <= t0) return;
    int64_t a = t0 * SC_TILE, end = (t1 * SC_TILE < X->len) ? t1 * SC_TILE : X->len;
    if (negate > 1) {
        K->sparse_sign_rows(X->imgA + a, X->ptr + a, X->idx, X->val, end - a, Y->cand);
    } else if (!E->product && Y->nf) {
        if (negate)
            for (int64_t i = a; i < end; i++) X->imgA[i] = -X->imgA[i];
        int64_t lines[FLIP_CHUNK], k = 0;
        float w[FLIP_CHUNK];
        for (int64_t q = 0; q < Y->words; q++)
            for (uint64_t x = flip_word(Y, q, negate); x; x &= x - 1) {
                int bit = sc_ctz64(x);
                lines[k] = 64 * q + bit;
                w[k] = ((Y->cand[q] >> bit) & 1) ? -2.0f : 2.0f;
                if (++k == FLIP_CHUNK) {
                    K->sparse_accum(X->imgA + a, a, end, Y->ptr, Y->idx, Y->val, lines, w, k);
                    k = 0;
                }
            }
        if (k) K->sparse_accum(X->imgA + a, a, end, Y->ptr, Y->idx, Y->val, lines, w, k);
    }
}

/* Second part: X's candidate, the signs of uA - cut, and per tile sum |uA - cut| into
 * E->partial; resolve: the pending weights join cut first (group tables or signs_matvec;
 * E->w, E->tab), from zero when fresh. */
static void sign_tiles(engine_t *E, side_t *X, int resolve, int fresh, int64_t t0, int64_t t1) {
    const sc_kernels *K = E->K;
    for (int64_t t = t0; t < t1; t++) {
        int64_t c = t * SC_TILE, len = (X->len - c < SC_TILE) ? X->len - c : SC_TILE;
        if (fresh) memset(X->cut + c, 0, (size_t)len * sizeof(float));
        if (resolve && E->precise)
            K->signs_matvec(X->cut + c, len, side_signs(E, X) + c / 64, X->words, E->w,
                            E->width);
        for (int64_t b = 0; resolve && b < E->nblocks; b++)
            if (E->tgroups[b])
                K->chunk_apply(X->cut + c, len, X->chunks[b] + E->planes[b] * c, E->planes[b],
                               E->tab + b * TAB, E->tscale[b]);
        E->partial[t] = K->diff_signs(X->cand + c / 64, X->imgA + c, X->cut + c, len);
    }
}

/* Apply the flips of side Y (candidate -> current) to X's image, then take the signs of X's
 * image as X's candidate; fresh: X's cuts' part from zero (all weights c_j <y_j, y>). Returns
 * the value of (cand_X, bits_Y), of either sign; E->status is set when a product failed.
 *
 * The cuts' part of X's image changes by sum_j c_j delta_j x_j. These weights add to X's
 * pending ones, which join cut in one pass of the group tables over every entry (resolve)
 * when resolve is asked (the end of an alternation, see alternate), when fresh, when more
 * than 1 / FULL_DIV of Y flips, and for an operator (whose half steps are products: the
 * extra half steps that stale signs take would cost more than the tables). Otherwise X's
 * candidate is the signs of uA - cut, stale by the pending part, and its value
 * sum_i x_i (uA_i - cut_i) - sum_j pend_j <x_j, x> is exact from the dots of X's candidate
 * (whose changes the next half step reuses). */
static double half_step(engine_t *E, side_t *Y, side_t *X, int fresh, int resolve) {
    if (!Y->known) count_changes(E, Y);
    int64_t nf = Y->nf;
    /* More than half of Y flips (a new start): negate uA, the image of -y, and add the lines
     * that did not flip instead. */
    int negate = !E->product && 2 * nf > Y->len;
    /* Many lines to add: A y from scratch (2 for negate) instead, X's own lines read in order
     * against Y's signs (a gather from a small array against a scatter into a large one) */
    int many = !X->exact || FULL_DIV * (2 * nf > Y->len ? Y->len - nf : nf) > Y->len;
    if (!E->product && many) negate = 2;
    if ((nf || !X->exact) && E->product &&
        E->product(E->pctx, Y->transposed, Y->cand, X->imgA)) {
        E->status = SC_ERR_CALLBACK;
        return 0.0;
    }
    X->exact = 1;
    int64_t nb = E->nblocks, nt_tiles = sc_ntiles(X->len);
    int known = Y->known;
    resolve = resolve || fresh || many || E->product;
    X->known = 0;                       /* X's candidate is about to change */
    SC_OMP(parallel num_threads(E->pr.nt) if (E->pr.nt > 1 && nt_tiles > 1))
    {
        SC_OMP(for schedule(static))
        for (int64_t b = 0; b < nb; b++) {
            if (!known) block_changes(E, Y, b);
            int64_t j0 = b * BLOCK, k = (E->width - j0 < BLOCK) ? E->width - j0 : BLOCK;
            for (int64_t j = j0; j < j0 + k; j++) {
                double c = (double)E->res->coef[j];
                X->pend[j] = fresh ? c * (double)(Y->dots[j] + Y->delta[j])
                                   : X->pend[j] + c * (double)Y->delta[j];
            }
            if (resolve) block_tables(E, X, b);
        }
        int nth, me = sc_thread(&nth);
        int64_t t0 = nt_tiles * me / nth, t1 = nt_tiles * (me + 1) / nth;
        flip_tiles(E, Y, X, negate, t0, t1);
        sign_tiles(E, X, resolve, fresh, t0, t1);
    }
    if (resolve) memset(X->pend, 0, (size_t)E->width * sizeof(double));
    if (nf) {
        for (int64_t j = 0; j < E->width; j++) Y->dots[j] += Y->delta[j];
        memcpy(Y->bits, Y->cand, (size_t)Y->words * sizeof(uint64_t));
    }
    Y->known = 0;
    double val = 0.0;
    for (int64_t t = 0; t < nt_tiles; t++) val += E->partial[t];
    if (!resolve) {
        count_changes(E, X);
        SC_OMP(parallel for schedule(static) num_threads(E->pr.nt) if (E->pr.nt > 1 && nb > 1))
        for (int64_t b = 0; b < nb; b++) block_changes(E, X, b);
        X->known = 1;
        for (int64_t j = 0; j < E->width; j++)
            val -= X->pend[j] * (double)(X->dots[j] + X->delta[j]);
    }
    return val;
}

/* Alternate from the candidate signs of side Y0 while the value grows, the first `fresh`
 * half steps fresh (half_step); returns the value of the signs left in S.bits and T.bits
 * (the images match them; E->status is set on a failed product). A half step whose signs
 * were stale (see half_step) and that would end the alternation is taken again with the
 * pending part resolved: an alternation ends only where exact signs stop growing. */
static double alternate(engine_t *E, const sc_params *prm, side_t *Y0, int fresh) {
    side_t *Y = Y0, *X = (Y0 == &E->T) ? &E->S : &E->T;
    double cur = 0.0;
    for (int64_t h = 0;; h++) {
        double val = half_step(E, Y, X, h < fresh, 0);
        if (!E->status && sc_alternation_ends(prm, h, val, cur) && X->known)
            val = half_step(E, Y, X, 0, 1);
        if (E->status) return 0.0;
        if (sc_alternation_ends(prm, h, val, cur)) break;
        cur = val;
        side_t *tmp = X; X = Y; Y = tmp;
    }
    return cur;
}

/* Starts (measured on a 200,000-node stochastic block model and on a sparse identity): the
 * previous cut's t follows the block structure of a graph, where random starts settle on
 * noise cuts (communities read off the first 16 cuts: adjusted Rand index 0.93 against
 * 0.004); but from the previous cut alone the search stalls on structured inputs such as an
 * identity (eye(64), 300 cuts: 98% error against 1.8% from random starts). So the warm start
 * comes first, and a random one too when its value is below WARM_FLOOR of the largest of the
 * last WARM_MEMORY cuts; the better is kept (eye(64): 1.7%). Depends only on the cuts
 * before, so a continuation searches as one long run. */
#define WARM_FLOOR 0.9
#define WARM_MEMORY 16

/* The largest value |s^T R t| of the last WARM_MEMORY cuts. */
static double recent_value(const engine_t *E) {
    double top = 0.0;
    for (int64_t j = E->width > WARM_MEMORY ? E->width - WARM_MEMORY : 0; j < E->width; j++)
        top = fmax(top, fabs((double)E->res->coef[j]));
    return top * (double)E->m * (double)E->n;
}

/* Search a cut as matrix.c's best_cut does (same kicks and draws), with the starts above
 * when prm->warm_start. */
static double best_cut(engine_t *E, const sc_params *prm, sc_rng *rng) {
    int restarts = prm->restarts > 1 ? prm->restarts : 1, starts = restarts;
    int warm = prm->warm_start && E->width > 0, need_random = 0;
    double best = 0.0;
    int found = 0, last_is_best = 0;
    for (int attempt = 0; attempt < SC_START_ATTEMPTS + starts && found < starts; attempt++) {
        side_t *Y = &E->T;
        Y->known = 0;
        int kind = (attempt == 0 && warm) ? 0 : (found == 0 || need_random) ? 1 : 2;
        if (kind == 0)
            memcpy(E->T.cand, E->res->bits[1] + (E->width - 1) * E->T.words,
                   (size_t)E->T.words * sizeof(uint64_t));
        else if (kind == 2)
            sc_kick_signs(rng, E->T.cand, E->best_t, E->n);
        else
            sc_rng_signs(rng, E->T.cand, E->n);
        double val = alternate(E, prm, Y, attempt == 0 ? 2 : 0);
        if (E->status) return 0.0;
        if (!(val > 0.0)) {
            last_is_best = 0;
            continue;
        }
        if (kind == 0 && val < WARM_FLOOR * recent_value(E)) {
            need_random = 1;
            starts++;
        } else if (kind == 1) {
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
        E->T.known = E->S.known = 0;
        memcpy(E->T.cand, E->best_t, (size_t)E->T.words * sizeof(uint64_t));
        half_step(E, &E->T, &E->S, 0, 1);
        memcpy(E->S.cand, E->best_s, (size_t)E->S.words * sizeof(uint64_t));
        if (!E->status) half_step(E, &E->S, &E->T, 0, 1);
    }
    return best;
}

/* uA of side X from scratch: A t for s (CSR rows), A^T s for t (CSC columns); an operator's
 * product. Sparse: parallel over tiles. */
static int exact_imgA(engine_t *E, side_t *X) {
    side_t *Y = (X == &E->S) ? &E->T : &E->S;
    X->exact = 1;
    if (E->product) {
        int st = E->product(E->pctx, Y->transposed, Y->bits, X->imgA) ? SC_ERR_CALLBACK : SC_OK;
        return E->status = st;
    }
    /* X's own lines are the ones whose entries sum into X's image */
    int64_t nt_tiles = sc_ntiles(X->len);
    const sc_kernels *K = E->K;
    SC_OMP(parallel for schedule(static) num_threads(E->pr.nt) if (E->pr.nt > 1 && nt_tiles > 1))
    for (int64_t t = 0; t < nt_tiles; t++) {
        int64_t c = t * SC_TILE, len = (X->len - c < SC_TILE) ? X->len - c : SC_TILE;
        K->sparse_sign_rows(X->imgA + c, X->ptr + c, X->idx, X->val, len, Y->bits);
    }
    return SC_OK;
}

/* s^T A t for the current signs, in double, from S.imgA = A t (exact_imgA). */
static double value_A(engine_t *E) {
    int64_t nt_tiles = sc_ntiles(E->m);
    for (int64_t t = 0; t < nt_tiles; t++) {
        int64_t c = t * SC_TILE, end = (E->m - c < SC_TILE) ? E->m : c + SC_TILE;
        double acc = 0.0;
        for (int64_t i = c; i < end; i++)
            acc += sc_sign_at(E->S.bits, i) * (double)E->S.imgA[i];
        E->partial[t] = acc;
    }
    double x = 0.0;
    for (int64_t t = 0; t < nt_tiles; t++) x += E->partial[t];
    return x;
}

static int side_alloc(side_t *X, int64_t len) {
    X->len = len;
    X->words = sc_words(len);
    X->imgA = calloc((size_t)len, sizeof(float));
    X->cut = calloc((size_t)len, sizeof(float));
    X->bits = calloc((size_t)X->words, sizeof(uint64_t));
    X->cand = calloc((size_t)X->words, sizeof(uint64_t));
    X->qs = malloc((size_t)X->words * sizeof(int64_t));
    return (X->imgA && X->cut && X->bits && X->cand && X->qs) ? SC_OK : SC_ERR_NOMEM;
}

static void engine_free(engine_t *E) {
    side_t *sides[2] = {&E->S, &E->T};
    for (int i = 0; i < 2; i++) {
        side_t *X = sides[i];
        free(X->imgA); free(X->cut); free(X->bits); free(X->cand);
        free(X->dots); free(X->delta); free(X->pend); free(X->qs);
        if (X->chunks)
            for (int64_t b = 0; b < E->nblocks; b++) free(X->chunks[b]);
        free(X->chunks);
    }
    free(E->w); free(E->tab); free(E->tscale); free(E->tgroups); free(E->planes); free(E->cnt);
    free(E->partial); free(E->best_s); free(E->best_t);
}

static void *grow_array(void *p, int64_t count, size_t size, int *st) {
    void *q = realloc(p, (size_t)count * size);
    if (!q) *st = SC_ERR_NOMEM;
    return q ? q : p;
}

/* Room for cut number k (0-based) in the result and the engine's per-cut and per-block
 * arrays. */
static int make_room(engine_t *E, int64_t k) {
    sc_result *res = E->res;
    int st = SC_OK;
    int64_t dims[2] = {E->m, E->n};
    if ((st = sc_result_grow(res, k + 1, dims))) return st;
    if (k >= E->cap) {
        int64_t cap = E->cap ? 2 * E->cap : 64;
        E->S.dots = grow_array(E->S.dots, cap, sizeof(int64_t), &st);
        E->T.dots = grow_array(E->T.dots, cap, sizeof(int64_t), &st);
        E->S.delta = grow_array(E->S.delta, cap, sizeof(int64_t), &st);
        E->T.delta = grow_array(E->T.delta, cap, sizeof(int64_t), &st);
        E->S.pend = grow_array(E->S.pend, cap, sizeof(double), &st);
        E->T.pend = grow_array(E->T.pend, cap, sizeof(double), &st);
        E->w = grow_array(E->w, cap, sizeof(float), &st);
        E->cnt = grow_array(E->cnt, cap, sizeof(int64_t), &st);
        if (st) return st;
        E->cap = cap;
    }
    if (k == E->nblocks * BLOCK) {           /* a new block of signs and tables */
        if (E->nblocks == E->cap_blocks) {
            int64_t cap = E->cap_blocks ? 2 * E->cap_blocks : 4;
            E->S.chunks = grow_array(E->S.chunks, cap, sizeof(uint8_t *), &st);
            E->T.chunks = grow_array(E->T.chunks, cap, sizeof(uint8_t *), &st);
            E->tab = grow_array(E->tab, cap * TAB, 1, &st);
            E->tscale = grow_array(E->tscale, cap, sizeof(float), &st);
            E->tgroups = grow_array(E->tgroups, cap, sizeof(int64_t), &st);
            E->planes = grow_array(E->planes, cap, sizeof(int64_t), &st);
            if (st) return st;
            E->cap_blocks = cap;
        }
        E->S.chunks[E->nblocks] = E->T.chunks[E->nblocks] = NULL;
        E->planes[E->nblocks] = 0;
        E->nblocks++;
    }
    /* the block's signs in as many planes as its cuts so far and cut k need */
    int64_t b = k / BLOCK, had = E->planes[b], planes = block_planes(k % BLOCK + 1);
    side_t *sides[2] = {&E->S, &E->T};
    for (int a = 0; a < 2 && planes != had; a++) {
        side_t *X = sides[a];
        int64_t nch = (X->len + SC_CHUNK - 1) / SC_CHUNK;
        uint8_t *to = calloc((size_t)(nch * planes * SC_CHUNK), 1), *from = X->chunks[b];
        if (!to) return SC_ERR_NOMEM;
        for (int64_t q = 0; q < nch && had; q++)
            memcpy(to + q * planes * SC_CHUNK, from + q * had * SC_CHUNK,
                   (size_t)(had * SC_CHUNK));
        free(from);
        X->chunks[b] = to;
    }
    E->planes[b] = planes;
    return SC_OK;
}

/* Cut k = width with the current signs and coefficient c joins the cuts: its signs in the
 * result and in chunk layout, its dots with the current signs (all entries agree), and its part
 * of both images: uC gains c n s (for s) and c m t (for t). */
static void add_cut(engine_t *E, float c) {
    int64_t k = E->width;
    side_t *sides[2] = {&E->S, &E->T};
    uint64_t *dst[2] = {E->res->bits[0] + k * E->S.words, E->res->bits[1] + k * E->T.words};
    for (int a = 0; a < 2; a++) {
        side_t *X = sides[a];
        memcpy(dst[a], X->bits, (size_t)X->words * sizeof(uint64_t));
        uint8_t *chunks = X->chunks[k / BLOCK];
        int64_t plane = k % BLOCK / 8, planes = E->planes[k / BLOCK];
        for (int64_t q = 0; q < X->words; q++)
            for (uint64_t x = X->bits[q]; x; x &= x - 1)
                chunks[sc_chunk_at(64 * q + sc_ctz64(x), plane, planes)] |=
                    (uint8_t)(1u << (k % 8));
        X->dots[k] = X->len;
        X->pend[k] = 0.0;
        X->known = 0;      /* no change of dots known for cut k */
    }
    E->res->coef[k] = c;
    float ws = (float)((double)c * (double)E->n), wt = (float)((double)c * (double)E->m);
    E->K->signs_matvec(E->S.cut, E->m, E->S.bits, E->S.words, &ws, 1);
    E->K->signs_matvec(E->T.cut, E->n, E->T.bits, E->T.words, &wt, 1);
    E->width = k + 1;
}

/* The engine's run: init's cuts (if any) become the first cuts of the result, then cuts are
 * searched until a budget stops. */
static int decompose(engine_t *E, double nrmA2, const sc_cuts *init, const sc_params *prm,
                     sc_result *res) {
    int64_t m = E->m, n = E->n, mx = m > n ? m : n, given = init ? init->width : 0;
    if (prm->block_size < 1 || prm->max_width < 0 || prm->max_sweeps < 2 || given < 0 ||
        (given && (given > prm->max_width || !(nrmA2 > 0.0) || !init->bits[0] ||
                   !init->bits[1] || !init->coef)))
        return SC_ERR_ARG;
    double t0 = sc_now_seconds();
    E->res = res;
    sc_probe_init(&E->pr, sc_clamp_threads(prm->n_threads));
    int st = SC_OK;
    if (side_alloc(&E->S, m) || side_alloc(&E->T, n)) st = SC_ERR_NOMEM;
    E->partial = calloc((size_t)sc_ntiles(mx), sizeof(double));
    E->best_s = calloc((size_t)E->S.words, sizeof(uint64_t));
    E->best_t = calloc((size_t)E->T.words, sizeof(uint64_t));
    if (!E->partial || !E->best_s || !E->best_t) st = SC_ERR_NOMEM;
    res->ndim = 2;
    double ref2;
    int none = sc_run_start(prm, nrmA2, &ref2, res);
    if (st || (none && !given)) return st;   /* init's cuts are kept whatever the budgets */

    sc_rng rng;
    sc_params quiet = *prm;           /* init's cuts are not reported to the callback */
    quiet.progress = NULL;
    const double mn = (double)m * (double)n;
    double ax = 0.0, xx = 0.0;        /* <A, X> and ||X||^2 */
    double nrm2 = nrmA2;
    int64_t since = 0;                /* cuts in the thread-count probe's window */
    E->pr.win_t0 = sc_now_seconds();
    for (int64_t k = 0;; k++) {
        if (k >= given && !(nrm2 > 0.0)) {               /* exactly recovered */
            res->stopped_by = SC_STOP_EXHAUSTED;
            break;
        }
        if ((st = make_room(E, k))) break;
        if (k < given) {              /* init's cut k, taken as if the search had found it */
            side_t *sides[2] = {&E->S, &E->T};
            for (int a = 0; a < 2; a++) {
                side_t *X = sides[a];
                int64_t w = X->words;
                memcpy(X->bits, init->bits[a] + k * w, (size_t)w * sizeof(uint64_t));
                X->bits[w - 1] &= sc_tail_mask(X->len);
                E->K->sign_dots(X->dots, side_signs(E, X), w, X->bits, w, X->len, k);
            }
        } else {
            sc_rng_for_cut(&rng, prm->seed, prm->first_cut + k);
            double cur = best_cut(E, prm, &rng);
            if ((st = E->status)) break;
            if (!(cur > 0.0)) { res->stopped_by = SC_STOP_EXHAUSTED; break; }
        }
        /* The images of the cut's signs, made again so that the next search starts from
         * images that depend on the cuts alone: after init's cuts (A t for value_A, and
         * A^T s after the last one, to go on from), and after a searched cut of sparse A
         * unless exact_flips. An operator's last products are these images already, and so
         * are exact flip updates. */
        if ((k < given || (!E->product && !E->exact_flips)) &&
            ((st = exact_imgA(E, &E->S)) || (k + 1 >= given && (st = exact_imgA(E, &E->T)))))
            break;
        double xa = value_A(E), g = 0.0;
        for (int64_t j = 0; j < k; j++)
            g += (double)res->coef[j] * (double)E->S.dots[j] * (double)E->T.dots[j];
        double x = xa - g;                           /* s^T R t */
        float c = k < given ? init->coef[k] : (float)(x / mn);
        add_cut(E, c);
        ax += (double)c * xa;
        xx += (double)c * (2.0 * g + (double)c * mn);
        nrm2 = nrmA2 - 2.0 * ax + xx;
        int window_end = ++since == prm->block_size;
        sc_probe_cut(&E->pr, window_end);
        if (window_end) {
            since = 0;
            sc_probe_flushed(&E->pr);
        }
        double err = sqrt((nrm2 > 0.0 ? nrm2 : 0.0) / ref2);
        E->precise = err < PRECISE_BELOW;
        res->errors[k] = err;
        res->width = k + 1;
        if (k + 1 >= given && sc_after_cut(k < given ? &quiet : prm, res->width, err, t0,
                                           &res->stopped_by, &st))
            break;
    }
    return st;
}

/* The exponent of the lowest bit of the values (INT_MAX for none nonzero): all are integer
 * multiples of 2^that. */
static int lowest_bit(const float *val, int64_t nnz) {
    int low = INT_MAX;
    for (int64_t e = 0; e < nnz; e++) {
        int ex;
        float f = frexpf(val[e], &ex);           /* val = f 2^ex, |f| in [0.5, 1) */
        if (f == 0.0f || !isfinite(f)) continue;
        int64_t mant = (int64_t)ldexpf(fabsf(f), 24);   /* 24 bits, exact */
        int bit = ex - 24 + sc_ctz64((uint64_t)mant);
        if (bit < low) low = bit;
    }
    return low;
}

/* Whether every line's absolute values sum to at most 2^(24 + low): with every value an
 * integer multiple of 2^low, any signed sum of a line's values, and so every flip update of
 * an image, is exact in float. */
static int exact_lines(const int64_t *ptr, const float *val, int64_t lines, int low) {
    for (int64_t r = 0; r < lines; r++) {
        double sum = 0.0;
        for (int64_t e = ptr[r]; e < ptr[r + 1]; e++) sum += fabs((double)val[e]);
        if (sum > ldexp(1.0, 24 + low)) return 0;
    }
    return 1;
}

int sc_sparse_decompose(const sc_kernels *K, const sc_sparse *A, const sc_cuts *init,
                        const sc_params *p, sc_result *res) {
    if (!K || !A || A->m <= 0 || A->n <= 0) return SC_ERR_ARG;
    engine_t E;
    memset(&E, 0, sizeof E);
    E.K = K;
    E.m = A->m;
    E.n = A->n;
    E.S.ptr = A->row_ptr; E.S.idx = A->col_idx; E.S.val = A->row_val;   /* flips of s: rows */
    E.T.ptr = A->col_ptr; E.T.idx = A->row_idx; E.T.val = A->col_val;   /* flips of t: columns */
    double nrm2 = 0.0;
    int64_t nnz = A->row_ptr[A->m];
    for (int64_t e0 = 0; e0 < nnz; e0 += 4096)
        nrm2 += K->sumsq(A->row_val + e0, (nnz - e0 < 4096) ? nnz - e0 : 4096);
    int low = lowest_bit(A->row_val, nnz);
    E.exact_flips = low == INT_MAX || (exact_lines(A->row_ptr, A->row_val, A->m, low) &&
                                       exact_lines(A->col_ptr, A->col_val, A->n, low));
    int st = decompose(&E, nrm2, init, p, res);
    engine_free(&E);
    return st;
}

int sc_operator_decompose(const sc_kernels *K, int64_t m, int64_t n, double norm2,
                          sc_product_fn product, void *ctx, const sc_cuts *init,
                          const sc_params *p, sc_result *res) {
    if (!K || !product || m <= 0 || n <= 0 || !(norm2 >= 0.0)) return SC_ERR_ARG;
    engine_t E;
    memset(&E, 0, sizeof E);
    E.K = K;
    E.m = m;
    E.n = n;
    E.product = product;
    E.pctx = ctx;
    E.S.transposed = 1;    /* s enters A^T s, the image of t */
    E.T.transposed = 0;
    int st = decompose(&E, norm2, init, p, res);
    engine_free(&E);
    return st;
}

/* signcut: products with an order-2 decomposition W = S diag(c) T^T, never expanding it.
 *
 * y = S (c * (T^T x)) in two lookup-table stages, each a block of sign rows times x: stage 1
 * the rows of T (cuts) against x, stage 2 the rows of S transposed (one per output entry, its
 * bits over the cuts) against z = c * (T^T x). Both read the rows in lane layout (signcut.h).
 *
 * One column (lut3_stage): x is cut into groups of 3 entries, each with the table of its 8
 * signed sums (bit b set: entry b enters with -1); a 32-bit word of a row is 11 groups, and
 * one lane permute looks a group up for 8 rows at once. Several columns (lut_stage): groups
 * of 4 entries, each with a table of 16 rows of up to PB_MAX = 64 columns (4 KiB), one word's
 * 8 tables filling an L1 cache; one lookup adds a whole row of accumulators. Measured on
 * 4096 x 4096 (Zen 3, AVX2): 3-bit permutes ~22 ps per sign entry, byte lookups of single
 * floats 37-75 ps (tables in L1 or L2), so one column takes the permutes. For 64 columns,
 * per stage of W @ X (one thread, noisy shared machine): 4-bit tables in L1 39-54 ms, 8-bit
 * tables of 64 columns in L2 40-55 ms (half the lookups, but bound by L2) plus 8x the table
 * building, 8-bit tables of 8 or 16 columns (in L1) 120-215 ms (index and accumulator
 * traffic per add); two rows at a time and passes of 1024 rows were a little faster.
 *
 * Every output row adds its lookups in a fixed order (words, then groups) whatever thread
 * computes it and whatever the instruction set: n_threads cannot change a bit, and the
 * scalar and AVX2 kernels give the same answer (the AVX-512 ones are written to). */
#define _POSIX_C_SOURCE 200809L  /* driver.h's clock_gettime under -std=c11 */
#include <stdlib.h>
#include <string.h>
#include "signcut/signcut.h"
#include "signcut/common.h"
#include "signcut/driver.h"

#define PB_MAX 64                 /* columns per table row */
#ifndef TAB_BYTES
#define TAB_BYTES (32 * 1024)     /* 4-bit tables per block of words (an L1 data cache) */
#endif
#ifndef ROW_BLOCK
#define ROW_BLOCK 1024            /* rows per pass over the tables (their accumulators in L2) */
#endif
/* floats of one thread's 4-bit tables: TAB_BYTES, or one word's 8 groups if larger */
#define TAB_FLOATS(pb) ((size_t)(TAB_BYTES / 4 > 128 * (pb) ? TAB_BYTES / 4 : 128 * (pb)))
#define LUT3_COLUMNS 6            /* at most this many columns: one at a time, 3-bit tables */
#define LUT3_BLOCK 64             /* words of x per block of 3-bit tables (22 KiB) */
#define ROW_CHUNK 256             /* output rows per parallel task, a multiple of 32 */
#define PAR_MIN_WORK 8192         /* below this many row-words a stage runs on one thread */

/* Transposes the 64 x 64 bit block a in place: bit j of a[i] <-> bit i of a[j]. */
static void transpose64(uint64_t a[64]) {
    uint64_t m = UINT64_C(0x00000000FFFFFFFF);
    for (int j = 32; j; j >>= 1, m ^= m << j)
        for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
            uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k | j] ^= t;
            a[k] ^= t << j;
        }
}

void sc_bits_transpose(uint64_t *out, const uint64_t *bits, int64_t rows, int64_t wpr,
                       int64_t len) {
    int64_t wo = sc_words(rows);
    uint64_t blk[64];
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
        int64_t nr = (rows - r0 < 64) ? rows - r0 : 64;
        for (int64_t q = 0; q < sc_words(len); q++) {
            for (int64_t r = 0; r < 64; r++) blk[r] = (r < nr) ? bits[(r0 + r) * wpr + q] : 0;
            transpose64(blk);
            int64_t ni = (len - 64 * q < 64) ? len - 64 * q : 64;
            for (int64_t i = 0; i < ni; i++) out[(64 * q + i) * wo + r0 / 64] = blk[i];
        }
    }
}

void sc_bits_lanes(uint32_t *out, const uint64_t *bits, int64_t rows, int64_t wpr, int64_t len) {
    int64_t nw = (len + 31) / 32, blocks = (rows + 7) / 8;
    for (int64_t b = 0; b < blocks; b++) {     /* a block's 8 x nw words are written in cache */
        uint32_t *o = out + b * 8 * nw;
        for (int64_t i = 0; i < 8; i++) {
            if (8 * b + i >= rows) {
                for (int64_t k = 0; k < nw; k++) o[8 * k + i] = 0;
                continue;
            }
            const uint64_t *row = bits + (8 * b + i) * wpr;
            for (int64_t k = 0; k < nw; k++) o[8 * k + i] = (uint32_t)(row[k / 2] >> (32 * (k & 1)));
        }
    }
}

/* tab[b*pb + c] = sum_{i<4} (bit i of b ? -1 : 1) * x[i*pb + c], each entry from an earlier
 * one by one subtraction (at most six roundings). */
static void build_table(float *tab, const float *x, int64_t pb) {
    for (int64_t c = 0; c < pb; c++)
        tab[c] = (x[c] + x[pb + c]) + (x[2 * pb + c] + x[3 * pb + c]);
    for (int b = 1; b < 16; b++) {
        int low = b & (b - 1), i = sc_ctz64((uint64_t)b);
        for (int64_t c = 0; c < pb; c++) tab[b * pb + c] = tab[low * pb + c] - 2.0f * x[i * pb + c];
    }
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* out[r] = <sign row r, x[0:len]> for rows r < rows (a multiple of 8) in lane layout with
 * ceil(len/32) words per row. tab holds the 3-bit tables of all of x; each task of ROW_CHUNK
 * rows walks them LUT3_BLOCK words (22 KiB of tables) at a time. One barrier per stage. */
static void lut3_stage(const sc_kernels *K, float *out, int64_t rows, const uint32_t *lanes,
                       const float *x, int64_t len, float *tab, int nt) {
    int64_t nwords = (len + 31) / 32, ldl = 8 * nwords;
    sc_lut3_tables(tab, x, len);
    SC_OMP(parallel for schedule(static) num_threads(nt) if (nt > 1 && rows * nwords >= PAR_MIN_WORK))
    for (int64_t r0 = 0; r0 < rows; r0 += ROW_CHUNK) {
        int64_t nr = min64(ROW_CHUNK, rows - r0);
        memset(out + r0, 0, (size_t)nr * sizeof(float));
        for (int64_t k0 = 0; k0 < nwords; k0 += LUT3_BLOCK)
            K->lut3_rows(out + r0, nr, lanes + (r0 / 8) * ldl + 8 * k0, ldl,
                         tab + 8 * SC_LUT3_GROUPS * k0, min64(LUT3_BLOCK, nwords - k0));
    }
}

/* out[r*pb + 0:pb] = sum_{i<len} sign_r[i] xb[i*pb + 0:pb] for rows r < rows (a multiple of 8)
 * in lane layout; xb has 32 ceil(len/32) rows, those past len zero. 4-bit tables for blocks
 * of words of about TAB_BYTES: each thread builds its own in tab + thread * TAB_FLOATS(pb)
 * for its own range of rows, ROW_BLOCK rows at a time (building costs about 16 / ROW_BLOCK
 * of the lookups; sharing the tables took two barriers per block, which crawled on busy
 * cores). */
static void lut_stage(const sc_kernels *K, float *out, int64_t rows, const uint32_t *lanes,
                      const float *xb, int64_t len, int64_t pb, float *tab, int nt) {
    int64_t nwords = (len + 31) / 32, ldl = 8 * nwords;
    int64_t kblock = TAB_BYTES / (512 * pb);
    if (kblock < 1) kblock = 1;
    SC_OMP(parallel num_threads(nt) if (nt > 1 && rows * nwords >= PAR_MIN_WORK))
    {
        int nth, me = sc_thread(&nth);
        int64_t per = 8 * ((rows / 8 + nth - 1) / nth);
        int64_t r0 = min64(rows, me * per), r1 = min64(rows, r0 + per);
        float *t = tab + (size_t)me * TAB_FLOATS(pb);
        if (r1 > r0) memset(out + r0 * pb, 0, (size_t)((r1 - r0) * pb) * sizeof(float));
        for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
            int64_t nr = min64(ROW_BLOCK, r1 - rb);
            for (int64_t k0 = 0; k0 < nwords; k0 += kblock) {
                int64_t nk = min64(kblock, nwords - k0);
                for (int64_t g = 0; g < 8 * nk; g++)
                    build_table(t + g * 16 * pb, xb + 4 * (8 * k0 + g) * pb, pb);
                K->lut_rows(out + rb * pb, nr, lanes + (rb / 8) * ldl + 8 * k0, ldl, t, nk, pb);
            }
        }
    }
}

int sc_matrix_matmul(const sc_kernels *K, float *y, int64_t ldy, const float *x, int64_t ldx,
                     int64_t p, int64_t m, int64_t n, const uint32_t *t_lanes,
                     const uint32_t *st_lanes, const float *coef, int64_t width, int n_threads) {
    if (m < 0 || n < 0 || p < 0 || width < 0 || ldy < p || ldx < p) return SC_ERR_ARG;
    int nt = sc_clamp_threads(n_threads);
    if (width == 0 || n == 0) {
        for (int64_t i = 0; i < m; i++) memset(y + i * ldy, 0, (size_t)p * sizeof(float));
        return SC_OK;
    }
    if (m == 0 || p == 0) return SC_OK;
    /* rows padded to lane blocks of 8, entries to words of 32 */
    int64_t mp = 8 * ((m + 7) / 8), wp = 8 * ((width + 7) / 8);
    int64_t nx = 32 * ((n + 31) / 32), nz = 32 * ((width + 31) / 32);
    /* up to LUT3_COLUMNS columns go one by one through the 3-bit tables (measured faster) */
    int64_t pb = (p <= LUT3_COLUMNS) ? 1 : min64(PB_MAX, (p + 7) / 8 * 8);
    int64_t lut3_words = (n > width ? n + 31 : width + 31) / 32;
    size_t tab_floats = (pb == 1) ? (size_t)(lut3_words * 8 * SC_LUT3_GROUPS)
                                 : (size_t)nt * TAB_FLOATS(pb);
    float *xb = calloc((size_t)(nx * pb), sizeof(float));
    float *z = calloc((size_t)(nz * pb), sizeof(float));
    float *yb = malloc((size_t)(mp * pb) * sizeof(float));
    float *tab = malloc(tab_floats * sizeof(float));
    int status = SC_OK;
    if (!xb || !z || !yb || !tab) {
        status = SC_ERR_NOMEM;
        goto done;
    }
    for (int64_t c0 = 0; c0 < p; c0 += pb) {
        int64_t pc = min64(pb, p - c0);
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < pb; c++) xb[i * pb + c] = (c < pc) ? x[i * ldx + c0 + c] : 0.0f;
        /* stage 1: z = coef * (T^T x); the padded rows (cuts past width) are zeroed */
        if (pb == 1)
            lut3_stage(K, z, wp, t_lanes, xb, n, tab, nt);
        else
            lut_stage(K, z, wp, t_lanes, xb, n, pb, tab, nt);
        for (int64_t j = 0; j < wp; j++)
            for (int64_t c = 0; c < pb; c++) z[j * pb + c] = (j < width) ? z[j * pb + c] * coef[j] : 0.0f;
        /* stage 2: y = S z */
        if (pb == 1)
            lut3_stage(K, yb, mp, st_lanes, z, width, tab, nt);
        else
            lut_stage(K, yb, mp, st_lanes, z, width, pb, tab, nt);
        for (int64_t i = 0; i < m; i++) memcpy(y + i * ldy + c0, yb + i * pb, (size_t)pc * sizeof(float));
    }
done:
    free(xb);
    free(z);
    free(yb);
    free(tab);
    return status;
}

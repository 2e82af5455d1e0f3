/* signcut: exact numbers of decompositions from their packed signs.
 *
 * <X, Y> = sum_{i,j} cx_i cy_j prod_a <x_a_i, y_a_j>, each sign dot an exact integer
 * (len - 2 popcount of the XOR, the kernel's gram_mul). The pairs of cuts go by tiles of
 * SC_GRAM_TILE x SC_GRAM_TILE: a tile of products starts as cx_i cy_j (double) and takes
 * each mode's factor in turn, then its entries are summed row by row. Each row of tiles is
 * summed by one thread, tiles left to right, and the rows top to bottom at the end: the
 * same bits for any thread count (and, the factors being integers, any instruction set). */
#define _POSIX_C_SOURCE 200809L  /* clock_gettime (driver.h) under -std=c11 */
#include <stdlib.h>
#include "signcut/signcut.h"
#include "signcut/driver.h"

static double tile_sum(const sc_kernels *K, double *p, int ndim, const int64_t *dims,
                       const uint64_t *const *xbits, const float *cx, int64_t ni,
                       const uint64_t *const *ybits, const float *cy, int64_t nj) {
    for (int64_t i = 0; i < ni; i++)
        for (int64_t j = 0; j < nj; j++) p[i * SC_GRAM_TILE + j] = (double)cx[i] * (double)cy[j];
    for (int a = 0; a < ndim; a++) {
        int64_t words = (dims[a] + 63) / 64;
        K->gram_mul(p, SC_GRAM_TILE, xbits[a], words, ni, ybits[a], words, nj, words, dims[a]);
    }
    double total = 0.0;
    for (int64_t i = 0; i < ni; i++) {
        double row = 0.0;
        for (int64_t j = 0; j < nj; j++) row += p[i * SC_GRAM_TILE + j];
        total += row;
    }
    return total;
}

int sc_cuts_inner(const sc_kernels *K, int ndim, const int64_t *dims,
                  const uint64_t *const *xbits, const float *xcoef, int64_t wx,
                  const uint64_t *const *ybits, const float *ycoef, int64_t wy,
                  int n_threads, double *out) {
    *out = 0.0;
    if (ndim < 1 || ndim > SC_MAX_NDIM || wx < 0 || wy < 0) return SC_ERR_ARG;
    for (int a = 0; a < ndim; a++)
        if (dims[a] < 1) return SC_ERR_ARG;
    if (wx == 0 || wy == 0) return SC_OK;
    int same = (wx == wy && xcoef == ycoef);
    for (int a = 0; a < ndim && same; a++) same = (xbits[a] == ybits[a]);
    int64_t ti = (wx + SC_GRAM_TILE - 1) / SC_GRAM_TILE, tj = (wy + SC_GRAM_TILE - 1) / SC_GRAM_TILE;
    double *rows = calloc((size_t)ti, sizeof(double));
    if (!rows) return SC_ERR_NOMEM;
    int failed = 0;
    /* one row of tiles per task: dynamic, as a norm's rows shrink towards the bottom */
    SC_OMP(parallel num_threads(sc_clamp_threads(n_threads)) if (n_threads > 1 && ti > 1))
    {
        double *p = malloc((size_t)SC_GRAM_TILE * SC_GRAM_TILE * sizeof(double));
        const uint64_t *xa[SC_MAX_NDIM], *yb[SC_MAX_NDIM];
        if (!p) {
            SC_OMP(atomic write)
            failed = 1;
        }
        SC_OMP(for schedule(dynamic, 1))
        for (int64_t I = 0; I < ti; I++) {
            if (!p) continue;
            int64_t i0 = I * SC_GRAM_TILE, ni = (wx - i0 < SC_GRAM_TILE) ? wx - i0 : SC_GRAM_TILE;
            double row = 0.0;
            for (int64_t J = same ? I : 0; J < tj; J++) {
                int64_t j0 = J * SC_GRAM_TILE, nj = (wy - j0 < SC_GRAM_TILE) ? wy - j0 : SC_GRAM_TILE;
                for (int a = 0; a < ndim; a++) {
                    int64_t words = (dims[a] + 63) / 64;
                    xa[a] = xbits[a] + i0 * words;
                    yb[a] = ybits[a] + j0 * words;
                }
                double t = tile_sum(K, p, ndim, dims, xa, xcoef + i0, ni, yb, ycoef + j0, nj);
                row += (same && J > I) ? 2.0 * t : t;     /* a norm: the tile below counts too */
            }
            rows[I] = row;
        }
        free(p);
    }
    double total = 0.0;
    for (int64_t I = 0; I < ti; I++) total += rows[I];
    free(rows);
    if (failed) return SC_ERR_NOMEM;
    *out = total;
    return SC_OK;
}

/* signcut: portable scalar kernels, the reference every SIMD kernel is tested against. */
#include <math.h>
#include "signcut/signcut.h"
#include "signcut/common.h"

static void accum_rows(float *y, int64_t len, const float *rows, int64_t ld,
                       const int64_t *idx, const float *w, int64_t k) {
    for (int64_t q = 0; q < k; q++) {
        const float *r = rows + idx[q] * ld;
        float wq = w[q];
        for (int64_t i = 0; i < len; i++) y[i] += wq * r[i];
    }
}

static void signs_matvec(float *y, int64_t len, const uint64_t *bits, int64_t wpr,
                         const float *w, int64_t k) {
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        for (int64_t i = 0; i < len; i++) y[i] += ((b[i >> 6] >> (i & 63)) & 1) ? -w[j] : w[j];
    }
}

static void signs_rmatvec(float *z, const float *x, int64_t len, const uint64_t *bits,
                          int64_t wpr, int64_t k) {
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        double acc = 0.0;
        for (int64_t i = 0; i < len; i++) acc += ((b[i >> 6] >> (i & 63)) & 1) ? -(double)x[i] : (double)x[i];
        z[j] = (float)acc;
    }
}

static void rank_update(float *out, int64_t rows, int64_t cols, int64_t ld,
                        const float *a, int64_t lda, const float *panel, int64_t k) {
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * ld;
        for (int64_t q = 0; q < k; q++) {
            float aq = a[r * lda + q];
            const float *p = panel + q * cols;
            for (int64_t c = 0; c < cols; c++) o[c] += aq * p[c];
        }
    }
}

/* pack_signs of x - y (y NULL: of x). */
static inline double signs_of(uint64_t *bits, const float *x, const float *y, int64_t len) {
    double acc = 0.0;
    int64_t w = sc_words(len);
    for (int64_t k = 0; k < w; k++) {
        uint64_t word = 0;
        int64_t end = (64 * k + 64 < len) ? 64 * k + 64 : len;
        for (int64_t i = 64 * k; i < end; i++) {
            float v = y ? x[i] - y[i] : x[i];
            if (v < 0.0f) word |= UINT64_C(1) << (i & 63);
            acc += fabs((double)v);
        }
        bits[k] = word;
    }
    return acc;
}

static double pack_signs(uint64_t *bits, const float *x, int64_t len) {
    return signs_of(bits, x, NULL, len);
}

static double diff_signs(uint64_t *bits, const float *a, const float *b, int64_t len) {
    return signs_of(bits, a, b, len);
}

static void unpack_signs(float *out, const uint64_t *bits, int64_t len, float scale) {
    for (int64_t i = 0; i < len; i++) out[i] = ((bits[i >> 6] >> (i & 63)) & 1) ? -scale : scale;
}

static void sign_dots(int64_t *dots, const uint64_t *bits, int64_t wpr, const uint64_t *x,
                      int64_t words, int64_t len, int64_t k) {
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        int64_t diff = 0;
        for (int64_t q = 0; q < words; q++) diff += sc_popcount64(b[q] ^ x[q]);
        dots[j] = len - 2 * diff;
    }
}

static double sumsq(const float *x, int64_t len) {
    double acc = 0.0;
    for (int64_t i = 0; i < len; i++) acc += (double)x[i] * (double)x[i];
    return acc;
}

static void group_apply(float *y, int64_t len, const uint8_t *nib, int64_t ldn,
                        const uint8_t *tlo, const uint8_t *thi, int64_t ngroups, float scale) {
    sc_nib_apply(y, len, nib, ldn, tlo, thi, ngroups, scale);
}

static void transpose(float *dst, int64_t ldd, const float *src, int64_t lds,
                      int64_t rows, int64_t cols) {
    for (int64_t r0 = 0; r0 < rows; r0 += 16)
        for (int64_t c0 = 0; c0 < cols; c0 += 16) {
            int64_t r1 = (rows - r0 < 16) ? rows : r0 + 16, c1 = (cols - c0 < 16) ? cols : c0 + 16;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) dst[c * ldd + r] = src[r * lds + c];
        }
}

static void accum_rows_h(float *y, int64_t len, const uint16_t *rows, int64_t ld,
                         const int64_t *idx, const float *w, int64_t k) {
    for (int64_t q = 0; q < k; q++) {
        const uint16_t *r = rows + idx[q] * ld;
        float wq = w[q];
        for (int64_t i = 0; i < len; i++) y[i] += wq * sc_half_to_float(r[i]);
    }
}

static void to_half(uint16_t *dst, const float *src, int64_t len, float scale) {
    for (int64_t i = 0; i < len; i++) dst[i] = sc_float_to_half(scale * src[i]);
}

static void transpose16(uint16_t *dst, int64_t ldd, const uint16_t *src, int64_t lds,
                        int64_t rows, int64_t cols) {
    for (int64_t r0 = 0; r0 < rows; r0 += 16)
        for (int64_t c0 = 0; c0 < cols; c0 += 16) {
            int64_t r1 = (rows - r0 < 16) ? rows : r0 + 16, c1 = (cols - c0 < 16) ? cols : c0 + 16;
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = c0; c < c1; c++) dst[c * ldd + r] = src[r * lds + c];
        }
}

static float absmax(const float *x, int64_t len) {
    float m = 0.0f;
    for (int64_t i = 0; i < len; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static void lut_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                     const float *tab, int64_t nwords, int64_t pb) {
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * pb;
        const uint32_t *w = lanes + (r / 8) * ldl + (r % 8);
        for (int64_t k = 0; k < nwords; k++)
            for (int i = 0; i < 8; i++) {
                const float *t = tab + (16 * (8 * k + i) + ((w[8 * k] >> (4 * i)) & 15)) * pb;
                for (int64_t c = 0; c < pb; c++) o[c] += t[c];
            }
    }
}

static void gram_mul(double *p, int64_t ldp, const uint64_t *a, int64_t lda, int64_t na,
                     const uint64_t *b, int64_t ldb, int64_t nb, int64_t words, int64_t len) {
    for (int64_t i = 0; i < na; i++)
        for (int64_t j = 0; j < nb; j++) {
            const uint64_t *x = a + i * lda, *y = b + j * ldb;
            int64_t diff = 0;
            for (int64_t q = 0; q < words; q++) diff += sc_popcount64(x[q] ^ y[q]);
            p[i * ldp + j] *= (double)(len - 2 * diff);
        }
}

const sc_kernels sc_kernels_scalar = {
    .name = "scalar", .accum_rows = accum_rows, .signs_matvec = signs_matvec,
    .signs_rmatvec = signs_rmatvec, .rank_update = rank_update, .pack_signs = pack_signs,
    .unpack_signs = unpack_signs, .diff_signs = diff_signs, .sign_dots = sign_dots, .sumsq = sumsq,
    .group_apply = group_apply, .nib_tables = sc_nib_tables, .transpose = transpose,
    .accum_rows_h = accum_rows_h, .to_half = to_half, .transpose16 = transpose16, .absmax = absmax,
    .lut3_rows = sc_lut3_rows, .lut_rows = lut_rows, .sparse_accum = sc_sparse_accum,
    .sparse_sign_rows = sc_sparse_sign_rows, .flip_dots = sc_flip_dots, .gram_mul = gram_mul,
    .chunk_apply = sc_chunk_apply,
};

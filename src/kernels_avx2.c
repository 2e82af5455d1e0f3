/* signcut: AVX2 + FMA (+ F16C) kernels. Compiled with -mavx2 -mfma -mpopcnt -mf16c; every entry follows the
 * same FMA chain whatever its position, so results do not depend on how work is split. */
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "signcut/signcut.h"
#include "signcut/common.h"

/* Lanes 0..7 select bits 0..7 of a byte. */
static inline __m256i bit_selectors(void) { return _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128); }

/* All-ones lanes where bit l of `byte` is set. */
static inline __m256 byte_mask(unsigned byte, __m256i sel) {
    __m256i v = _mm256_and_si256(_mm256_set1_epi32((int)byte), sel);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, sel));
}

static inline unsigned byte_at(const uint64_t *bits, int64_t i) {  /* i multiple of 8 */
    return (unsigned)((bits[i >> 6] >> (i & 63)) & 255);
}

/* Prefetch distance in floats for the float32 row streams of accum_rows (measured: 1 KiB
 * ahead). The float16 rows of accum_rows_h go without: measured 10-14% faster at 1024 and 4096
 * (the hardware prefetchers follow the eight streams; the prefetches took load slots). */
#define PF_DIST 256

/* Entries i..i+7 of a float32 (half = 0) or float16 (half = 1) row, and entry i alone. */
static inline __attribute__((always_inline)) __m256 row_load(const void *r, int64_t i, int half) {
    return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)r + i)))
                : _mm256_loadu_ps((const float *)r + i);
}
static inline __attribute__((always_inline)) float row_at(const void *r, int64_t i, int half) {
    return half ? sc_half_to_float(((const uint16_t *)r)[i]) : ((const float *)r)[i];
}

/* y += sum_{j < R} w[j] * rows[idx[j]] over float32 or float16 rows (elem bytes apart per
 * entry) in one pass over y: R concurrent read streams and one load/store of y per R FMAs.
 * The FMA chain of each entry runs over the rows in order. */
static inline __attribute__((always_inline)) void accum_pass(
        float *y, int64_t len, const char *rows, int64_t ld, const int64_t *idx, const float *w,
        const int R, const int half) {
    const int64_t elem = half ? 2 : 4;
    const char *r[8];
    __m256 wv[8];
    for (int j = 0; j < R; j++) {
        r[j] = rows + idx[j] * ld * elem;
        wv[j] = _mm256_set1_ps(w[j]);
    }
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 a = _mm256_loadu_ps(y + i);
        for (int j = 0; j < R; j++) {
            if (!half) _mm_prefetch(r[j] + (i + PF_DIST) * elem, _MM_HINT_T0);
            a = _mm256_fmadd_ps(wv[j], row_load(r[j], i, half), a);
        }
        _mm256_storeu_ps(y + i, a);
    }
    for (; i < len; i++) {
        float a = y[i];
        for (int j = 0; j < R; j++) a = fmaf(w[j], row_at(r[j], i, half), a);
        y[i] = a;
    }
}

/* Eight rows per pass, and the last k % 8 rows in one pass too (several streams in flight:
 * most half steps of a search flip fewer than eight entries). */
static inline __attribute__((always_inline)) void accum_body(
        float *y, int64_t len, const char *rows, int64_t ld, const int64_t *idx, const float *w,
        int64_t k, const int half) {
    int64_t q = 0;
    for (; q + 8 <= k; q += 8) accum_pass(y, len, rows, ld, idx + q, w + q, 8, half);
    switch (k - q) {
    case 7: accum_pass(y, len, rows, ld, idx + q, w + q, 7, half); break;
    case 6: accum_pass(y, len, rows, ld, idx + q, w + q, 6, half); break;
    case 5: accum_pass(y, len, rows, ld, idx + q, w + q, 5, half); break;
    case 4: accum_pass(y, len, rows, ld, idx + q, w + q, 4, half); break;
    case 3: accum_pass(y, len, rows, ld, idx + q, w + q, 3, half); break;
    case 2: accum_pass(y, len, rows, ld, idx + q, w + q, 2, half); break;
    case 1: accum_pass(y, len, rows, ld, idx + q, w + q, 1, half); break;
    default: break;
    }
}

static void accum_rows(float *y, int64_t len, const float *rows, int64_t ld,
                       const int64_t *idx, const float *w, int64_t k) {
    accum_body(y, len, (const char *)rows, ld, idx, w, k, 0);
}

static void accum_rows_h(float *y, int64_t len, const uint16_t *rows, int64_t ld,
                         const int64_t *idx, const float *w, int64_t k) {
    accum_body(y, len, (const char *)rows, ld, idx, w, k, 1);
}

static void signs_matvec(float *y, int64_t len, const uint64_t *bits, int64_t wpr,
                         const float *w, int64_t k) {
    const __m256i sel = bit_selectors();
    const __m256 neg = _mm256_set1_ps(-0.0f);
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        __m256 wv = _mm256_set1_ps(w[j]);
        int64_t i = 0;
        for (; i + 8 <= len; i += 8) {
            __m256 m = byte_mask(byte_at(b, i), sel);
            __m256 sv = _mm256_xor_ps(wv, _mm256_and_ps(m, neg));
            _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), sv));
        }
        for (; i < len; i++) y[i] += ((b[i >> 6] >> (i & 63)) & 1) ? -w[j] : w[j];
    }
}

static void signs_rmatvec(float *z, const float *x, int64_t len, const uint64_t *bits,
                          int64_t wpr, int64_t k) {
    const __m256i sel = bit_selectors();
    const __m256 neg = _mm256_set1_ps(-0.0f);
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
        int64_t i = 0;
        for (; i + 8 <= len; i += 8) {
            __m256 m = byte_mask(byte_at(b, i), sel);
            __m256 sv = _mm256_xor_ps(_mm256_loadu_ps(x + i), _mm256_and_ps(m, neg));
            acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(sv)));
            acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(sv, 1)));
        }
        double t[4];
        _mm256_storeu_pd(t, _mm256_add_pd(acc0, acc1));
        double acc = (t[0] + t[1]) + (t[2] + t[3]);
        for (; i < len; i++) acc += ((b[i >> 6] >> (i & 63)) & 1) ? -(double)x[i] : (double)x[i];
        z[j] = (float)acc;
    }
}

/* Rows [0, nr) (nr <= 4) of out, columns [0, cols); the panel has leading dimension pld.
 * 16 columns at a time for 4 rows, then 8 columns per row, then scalar FMAs. */
static void rank_update_rows(float *out, int nr, int64_t cols, int64_t ld, const float *a,
                             int64_t lda, const float *panel, int64_t pld, int64_t k) {
    int64_t c = 0;
    if (nr == 4) {
        for (; c + 16 <= cols; c += 16) {
            __m256 o00 = _mm256_loadu_ps(out + c), o01 = _mm256_loadu_ps(out + c + 8);
            __m256 o10 = _mm256_loadu_ps(out + ld + c), o11 = _mm256_loadu_ps(out + ld + c + 8);
            __m256 o20 = _mm256_loadu_ps(out + 2 * ld + c), o21 = _mm256_loadu_ps(out + 2 * ld + c + 8);
            __m256 o30 = _mm256_loadu_ps(out + 3 * ld + c), o31 = _mm256_loadu_ps(out + 3 * ld + c + 8);
            for (int64_t q = 0; q < k; q++) {
                __m256 p0 = _mm256_loadu_ps(panel + q * pld + c);
                __m256 p1 = _mm256_loadu_ps(panel + q * pld + c + 8);
                __m256 a0 = _mm256_broadcast_ss(a + q), a1 = _mm256_broadcast_ss(a + lda + q);
                __m256 a2 = _mm256_broadcast_ss(a + 2 * lda + q), a3 = _mm256_broadcast_ss(a + 3 * lda + q);
                o00 = _mm256_fmadd_ps(a0, p0, o00); o01 = _mm256_fmadd_ps(a0, p1, o01);
                o10 = _mm256_fmadd_ps(a1, p0, o10); o11 = _mm256_fmadd_ps(a1, p1, o11);
                o20 = _mm256_fmadd_ps(a2, p0, o20); o21 = _mm256_fmadd_ps(a2, p1, o21);
                o30 = _mm256_fmadd_ps(a3, p0, o30); o31 = _mm256_fmadd_ps(a3, p1, o31);
            }
            _mm256_storeu_ps(out + c, o00); _mm256_storeu_ps(out + c + 8, o01);
            _mm256_storeu_ps(out + ld + c, o10); _mm256_storeu_ps(out + ld + c + 8, o11);
            _mm256_storeu_ps(out + 2 * ld + c, o20); _mm256_storeu_ps(out + 2 * ld + c + 8, o21);
            _mm256_storeu_ps(out + 3 * ld + c, o30); _mm256_storeu_ps(out + 3 * ld + c + 8, o31);
        }
    }
    for (int r = 0; r < nr; r++) {
        float *o = out + r * ld;
        const float *ar = a + r * lda;
        int64_t cc = c;
        for (; cc + 8 <= cols; cc += 8) {
            __m256 acc = _mm256_loadu_ps(o + cc);
            for (int64_t q = 0; q < k; q++)
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(ar + q), _mm256_loadu_ps(panel + q * pld + cc), acc);
            _mm256_storeu_ps(o + cc, acc);
        }
        for (; cc < cols; cc++) {
            float acc = o[cc];
            for (int64_t q = 0; q < k; q++) acc = fmaf(ar[q], panel[q * pld + cc], acc);
            o[cc] = acc;
        }
    }
}

static void rank_update(float *out, int64_t rows, int64_t cols, int64_t ld,
                        const float *a, int64_t lda, const float *panel, int64_t k) {
    sc_rank_update_blocked(out, rows, cols, ld, a, lda, panel, k, rank_update_rows);
}

/* pack_signs of x - y (y NULL: of x). */
static inline double signs_of(uint64_t *bits, const float *x, const float *y, int64_t len) {
    const __m256 zero = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 64 <= len; i += 64) {
        uint64_t word = 0;
        for (int b = 0; b < 8; b++) {
            __m256 v = _mm256_loadu_ps(x + i + 8 * b);
            if (y) v = _mm256_sub_ps(v, _mm256_loadu_ps(y + i + 8 * b));
            word |= (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ)) << (8 * b);
            __m256 av = _mm256_and_ps(v, absmask);
            acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(av)));
            acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(av, 1)));
        }
        bits[i >> 6] = word;
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(acc0, acc1));
    double acc = (t[0] + t[1]) + (t[2] + t[3]);
    if (i < len) {
        uint64_t word = 0;
        for (int64_t j = i; j < len; j++) {
            float v = y ? x[j] - y[j] : x[j];
            if (v < 0.0f) word |= UINT64_C(1) << (j - i);
            acc += fabs((double)v);
        }
        bits[i >> 6] = word;
    }
    return acc;
}

static double pack_signs(uint64_t *bits, const float *x, int64_t len) {
    return signs_of(bits, x, NULL, len);
}

double sc_avx2_diff_signs(uint64_t *bits, const float *a, const float *b, int64_t len) {
    return signs_of(bits, a, b, len);
}

static void unpack_signs(float *out, const uint64_t *bits, int64_t len, float scale) {
    const __m256i sel = bit_selectors();
    const __m256 pos = _mm256_set1_ps(scale), negv = _mm256_set1_ps(-scale);
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
        _mm256_storeu_ps(out + i, _mm256_blendv_ps(pos, negv, byte_mask(byte_at(bits, i), sel)));
    for (; i < len; i++) out[i] = ((bits[i >> 6] >> (i & 63)) & 1) ? -scale : scale;
}

static void sign_dots(int64_t *dots, const uint64_t *bits, int64_t wpr, const uint64_t *x,
                      int64_t words, int64_t len, int64_t k) {
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        int64_t d0 = 0, d1 = 0, q = 0;
        for (; q + 2 <= words; q += 2) {
            d0 += _mm_popcnt_u64(b[q] ^ x[q]);
            d1 += _mm_popcnt_u64(b[q + 1] ^ x[q + 1]);
        }
        if (q < words) d0 += _mm_popcnt_u64(b[q] ^ x[q]);
        dots[j] = len - 2 * (d0 + d1);
    }
}

static double sumsq(const float *x, int64_t len) {
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        acc0 = _mm256_fmadd_pd(lo, lo, acc0);
        acc1 = _mm256_fmadd_pd(hi, hi, acc1);
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(acc0, acc1));
    double acc = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < len; i++) acc += (double)x[i] * (double)x[i];
    return acc;
}

/* y[0:8] = fma(scale, the 8 int16 entries of v, y[0:8]). */
static inline void nib_store(float *y, __m128i v, __m256 scale) {
    __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(v));
    _mm256_storeu_ps(y, _mm256_fmadd_ps(scale, f, _mm256_loadu_ps(y)));
}

static void group_apply(float *y, int64_t len, const uint8_t *nib, int64_t ldn,
                        const uint8_t *tlo, const uint8_t *thi, int64_t ngroups, float scale) {
    /* 32 entries at a time: byte shuffles read each group's low and high table bytes, and the
     * interleaved pairs add up as int16 (entries 0-7 and 16-23 in a0, 8-15 and 24-31 in a1). */
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        for (int64_t g = 0; g < ngroups; g++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(nib + g * ldn + i));
            __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tlo + 16 * g)));
            __m256i hi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(thi + 16 * g)));
            __m256i l = _mm256_shuffle_epi8(lo, x), h = _mm256_shuffle_epi8(hi, x);
            a0 = _mm256_add_epi16(a0, _mm256_unpacklo_epi8(l, h));
            a1 = _mm256_add_epi16(a1, _mm256_unpackhi_epi8(l, h));
        }
        nib_store(y + i, _mm256_castsi256_si128(a0), sc);
        nib_store(y + i + 8, _mm256_castsi256_si128(a1), sc);
        nib_store(y + i + 16, _mm256_extracti128_si256(a0, 1), sc);
        nib_store(y + i + 24, _mm256_extracti128_si256(a1, 1), sc);
    }
    sc_nib_apply(y + i, len - i, nib + i, ldn, tlo, thi, ngroups, scale);
}

/* A chunk of 16 entries at a time: each 32-byte load holds two planes of the chunk, one per
 * 128-bit lane, and the matching 32 bytes of the tables hold those planes' tables, so each
 * lane's byte shuffle reads its own group; the lanes' int16 sums (the same entries) add up at
 * the end. Also used by the AVX-512 table for chunks of 2 planes. */
void sc_avx2_chunk_apply(float *y, int64_t len, const uint8_t *chunks, int64_t planes,
                         const uint8_t *tab, float scale) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        const uint8_t *ch = chunks + planes * i;
        __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
        for (int64_t q = 0; 2 * q < planes; q++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(ch + 32 * q));
            __m256i xn[2] = {_mm256_and_si256(x, m4), _mm256_and_si256(_mm256_srli_epi16(x, 4), m4)};
            for (int n = 0; n < 2; n++) {
                const uint8_t *t = tab + 16 * (8 * n + 2 * q);
                __m256i l = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)t), xn[n]);
                __m256i h = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(t + 256)), xn[n]);
                a0 = _mm256_add_epi16(a0, _mm256_unpacklo_epi8(l, h));
                a1 = _mm256_add_epi16(a1, _mm256_unpackhi_epi8(l, h));
            }
        }
        nib_store(y + i, _mm_add_epi16(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1)), sc);
        nib_store(y + i + 8, _mm_add_epi16(_mm256_castsi256_si128(a1), _mm256_extracti128_si256(a1, 1)), sc);
    }
    sc_chunk_apply(y + i, len - i, chunks + planes * i, planes, tab, scale);
}

/* Also used by the AVX-512 table: 16 entries of a group are two float vectors. */
int64_t sc_avx2_nib_tables(uint8_t *tlo, uint8_t *thi, float *scale, const float *w, int64_t k) {
    float inv = 0.0f;
    *scale = sc_nib_unit(w, k, &inv);
    if (*scale == 0.0f) return 0;
    const __m256 z = _mm256_setzero_ps(), n = _mm256_set1_ps(-0.0f);
    /* sign masks of bits 0-2 of x = 0..7 (bit 3 is clear for x < 8 and set for x >= 8) */
    const __m256 m0 = _mm256_setr_ps(0, -0.0f, 0, -0.0f, 0, -0.0f, 0, -0.0f);
    const __m256 m1 = _mm256_setr_ps(0, 0, -0.0f, -0.0f, 0, 0, -0.0f, -0.0f);
    const __m256 m2 = _mm256_setr_ps(0, 0, 0, 0, -0.0f, -0.0f, -0.0f, -0.0f);
    /* int16 pairs -> low bytes then high bytes per lane; dwords back in order of x */
    const __m256i bytes = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                           0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t ng = (k + 3) / 4;
    for (int64_t g = 0; g < ng; g++) {
        __m256 b[4];
        for (int j = 0; j < 4; j++)
            b[j] = (4 * g + j < k) ? _mm256_set1_ps(w[4 * g + j] * inv) : z;
        __m256 a = _mm256_add_ps(_mm256_xor_ps(b[0], m0), _mm256_xor_ps(b[1], m1));
        __m256 lo = _mm256_add_ps(a, _mm256_add_ps(_mm256_xor_ps(b[2], m2), b[3]));
        __m256 hi = _mm256_add_ps(a, _mm256_add_ps(_mm256_xor_ps(b[2], m2), _mm256_xor_ps(b[3], n)));
        /* lanes: x 0-3, 8-11 | 4-7, 12-15 as int16 (rounded to nearest, ties to even) */
        __m256i q = _mm256_packs_epi32(_mm256_cvtps_epi32(lo), _mm256_cvtps_epi32(hi));
        q = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(q, bytes), order);
        _mm_storeu_si128((__m128i *)(tlo + 16 * g), _mm256_castsi256_si128(q));
        _mm_storeu_si128((__m128i *)(thi + 16 * g), _mm256_extracti128_si256(q, 1));
    }
    return ng;
}

/* 8 x 8 block transpose in registers. */
static inline void transpose8(float *dst, int64_t ldd, const float *src, int64_t lds) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + lds);
    __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
    __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* Also used by the AVX-512 table (a memory-bound copy gains nothing from wider registers). */
void sc_avx2_transpose(float *dst, int64_t ldd, const float *src, int64_t lds,
                       int64_t rows, int64_t cols) {
    /* Blocks of 256 rows bound the pages touched (TLB); inside, 16 source columns (one cache
     * line) at a time, rows in order, so 16 destination rows are written sequentially. */
    for (int64_t r0 = 0; r0 < rows; r0 += 256) {
        int64_t r1 = (rows - r0 < 256) ? rows : r0 + 256;
        int64_t c = 0;
        for (; c + 16 <= cols; c += 16) {
            int64_t r = r0;
            for (; r + 8 <= r1; r += 8) {
                transpose8(dst + c * ldd + r, ldd, src + r * lds + c, lds);
                transpose8(dst + (c + 8) * ldd + r, ldd, src + r * lds + c + 8, lds);
            }
            for (; r < r1; r++)
                for (int64_t cc = c; cc < c + 16; cc++) dst[cc * ldd + r] = src[r * lds + cc];
        }
        for (; c < cols; c++)
            for (int64_t r = r0; r < r1; r++) dst[c * ldd + r] = src[r * lds + c];
    }
}

/* Shared with the AVX-512 table, like the transposes below (memory-bound). */
void sc_avx2_to_half(uint16_t *dst, const float *src, int64_t len, float scale) {
    __m256 sv = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_mul_ps(sv, _mm256_loadu_ps(src + i)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < len; i++) dst[i] = sc_float_to_half(scale * src[i]);
}

/* 8 x 8 blocks of 16-bit entries in registers: three rounds of unpacks. */
void sc_avx2_transpose16(uint16_t *dst, int64_t ldd, const uint16_t *src, int64_t lds,
                         int64_t rows, int64_t cols) {
    for (int64_t r0 = 0; r0 < rows; r0 += 256) {
        int64_t r1 = (rows - r0 < 256) ? rows : r0 + 256;
        int64_t c = 0;
        for (; c + 8 <= cols; c += 8) {
            int64_t r = r0;
            for (; r + 8 <= r1; r += 8) {
                const uint16_t *s = src + r * lds + c;
                __m128i a[8], b[8];
                for (int j = 0; j < 8; j++) a[j] = _mm_loadu_si128((const __m128i *)(s + j * lds));
                for (int j = 0; j < 4; j++) {
                    b[2 * j] = _mm_unpacklo_epi16(a[2 * j], a[2 * j + 1]);
                    b[2 * j + 1] = _mm_unpackhi_epi16(a[2 * j], a[2 * j + 1]);
                }
                /* b[2j] holds columns 0-3 of rows 2j, 2j+1 interleaved; b[2j+1] columns 4-7 */
                for (int h = 0; h < 2; h++) {
                    __m128i p0 = _mm_unpacklo_epi32(b[h], b[2 + h]);
                    __m128i p1 = _mm_unpackhi_epi32(b[h], b[2 + h]);
                    __m128i p2 = _mm_unpacklo_epi32(b[4 + h], b[6 + h]);
                    __m128i p3 = _mm_unpackhi_epi32(b[4 + h], b[6 + h]);
                    uint16_t *d = dst + (c + 4 * h) * ldd + r;
                    _mm_storeu_si128((__m128i *)d, _mm_unpacklo_epi64(p0, p2));
                    _mm_storeu_si128((__m128i *)(d + ldd), _mm_unpackhi_epi64(p0, p2));
                    _mm_storeu_si128((__m128i *)(d + 2 * ldd), _mm_unpacklo_epi64(p1, p3));
                    _mm_storeu_si128((__m128i *)(d + 3 * ldd), _mm_unpackhi_epi64(p1, p3));
                }
            }
            for (; r < r1; r++)
                for (int64_t cc = c; cc < c + 8; cc++) dst[cc * ldd + r] = src[r * lds + cc];
        }
        for (; c < cols; c++)
            for (int64_t r = r0; r < r1; r++) dst[c * ldd + r] = src[r * lds + c];
    }
}

float sc_avx2_absmax(const float *x, int64_t len) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_and_ps(abs, _mm256_loadu_ps(x + i)));
        m1 = _mm256_max_ps(m1, _mm256_and_ps(abs, _mm256_loadu_ps(x + i + 8)));
    }
    float buf[8], m = 0.0f;
    _mm256_storeu_ps(buf, _mm256_max_ps(m0, m1));
    for (int j = 0; j < 8; j++) m = buf[j] > m ? buf[j] : m;
    for (; i < len; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

/* R rows (lanes w[r*rstep], word k at w[8k]), columns [0, 8 nv) of table rows pb floats wide:
 * R * nv <= 8 accumulators, each adding its lookups in order. Constant R and nv specialise
 * the loops. */
static inline __attribute__((always_inline)) void lut_block(
        float *out, int64_t pb, const uint32_t *w, const float *tab, int64_t nwords,
        const int R, const int nv) {
    __m256 acc[16];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) acc[r * nv + v] = _mm256_loadu_ps(out + r * pb + 8 * v);
    for (int64_t k = 0; k < nwords; k++)
        for (int i = 0; i < 8; i++)
            for (int r = 0; r < R; r++) {
                const float *t = tab + (16 * (8 * k + i) + ((w[r + 8 * k] >> (4 * i)) & 15)) * pb;
                for (int v = 0; v < nv; v++)
                    acc[r * nv + v] = _mm256_add_ps(acc[r * nv + v], _mm256_loadu_ps(t + 8 * v));
            }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + r * pb + 8 * v, acc[r * nv + v]);
}

void sc_avx2_lut_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                      const float *tab, int64_t nwords, int64_t pb) {
    /* 64 columns (the product's usual block): two rows at a time in 16 registers, the table
     * stride a constant. */
    if (pb == 64) {
        for (int64_t r = 0; r < rows; r += 2)
            lut_block(out + r * 64, 64, lanes + (r / 8) * ldl + (r % 8), tab, nwords, 2, 8);
        return;
    }
    /* Column chunks of up to 64 floats (8 registers); narrow rows go several at a time so
     * that at least four chains of adds are in flight. */
    for (int64_t c0 = 0; c0 < pb; c0 += 64) {
        int nv = (int)((pb - c0 >= 64) ? 8 : (pb - c0) / 8);
        for (int64_t r = 0; r < rows; ) {
            float *o = out + r * pb + c0;
            const uint32_t *w = lanes + (r / 8) * ldl + (r % 8);
            const float *t = tab + c0;
            switch (nv) {   /* rows % 8 == 0, so blocks of 4 or 2 rows stay inside a lane block */
            case 1: lut_block(o, pb, w, t, nwords, 4, 1); r += 4; break;
            case 2: lut_block(o, pb, w, t, nwords, 2, 2); r += 2; break;
            case 3: lut_block(o, pb, w, t, nwords, 1, 3); r += 1; break;
            case 4: lut_block(o, pb, w, t, nwords, 1, 4); r += 1; break;
            case 5: lut_block(o, pb, w, t, nwords, 1, 5); r += 1; break;
            case 6: lut_block(o, pb, w, t, nwords, 1, 6); r += 1; break;
            case 7: lut_block(o, pb, w, t, nwords, 1, 7); r += 1; break;
            default: lut_block(o, pb, w, t, nwords, 1, 8); r += 1; break;
            }
        }
    }
}

/* nb (constant) blocks of 8 rows from lanes w, blocks ldl apart: a block's words are its 8
 * lanes, and each 3-bit group is one lane permute of the group's 8-float table. */
static inline __attribute__((always_inline)) void lut3_blocks(
        float *out, const uint32_t *w, int64_t ldl, const float *tab, int64_t nwords, const int nb) {
    __m256 acc[4];
    for (int b = 0; b < nb; b++) acc[b] = _mm256_loadu_ps(out + 8 * b);
    for (int64_t k = 0; k < nwords; k++) {
        __m256i v[4];
        for (int b = 0; b < nb; b++) v[b] = _mm256_loadu_si256((const __m256i *)(w + b * ldl + 8 * k));
        const float *t = tab + 8 * SC_LUT3_GROUPS * k;
        /* the lane permute reads the low 3 bits of each index: shift v down as we go. Not
         * unrolled: unrolled, GCC computed every permute first and spilled them. */
#pragma GCC unroll 1
        for (int q = 0; q < SC_LUT3_GROUPS; q++) {
            __m256 tq = _mm256_loadu_ps(t + 8 * q);
            for (int b = 0; b < nb; b++) {
                acc[b] = _mm256_add_ps(acc[b], _mm256_permutevar8x32_ps(tq, v[b]));
                v[b] = _mm256_srli_epi32(v[b], 3);
            }
        }
    }
    for (int b = 0; b < nb; b++) _mm256_storeu_ps(out + 8 * b, acc[b]);
}

/* Four blocks of 8 rows at a time (four chains of adds in flight, all in registers: with a
 * variable block count GCC kept them on the stack, 2.5x slower), then one block at a time. */
void sc_avx2_lut3_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                       const float *tab, int64_t nwords) {
    int64_t nb = rows / 8, b0 = 0;
    for (; b0 + 4 <= nb; b0 += 4) lut3_blocks(out + 8 * b0, lanes + b0 * ldl, ldl, tab, nwords, 4);
    for (; b0 < nb; b0++) lut3_blocks(out + 8 * b0, lanes + b0 * ldl, ldl, tab, nwords, 1);
}

/* gram_mul for ni x nj (<= 4 x 4) pairs of rows: 16 popcnt chains over 8 loads per word.
 * Measured on this project's 2-core AMD EPYC (interleaved, best of 15): 0.41 / 0.50 / 0.85
 * ns per pair and word for rows of 64 / 8 / 2 words, against 0.50 / 0.83 / 2.70 for nibble
 * lookups (two vpshufb per 4 words) in 2 x 2 blocks of 8-bit counters. (On cores with a
 * single popcnt port the byte lookups may win.) */
static inline __attribute__((always_inline)) void gram_block(
        double *p, int64_t ldp, const uint64_t *a, int64_t lda, const uint64_t *b, int64_t ldb,
        int64_t words, int64_t len, int ni, int nj) {
    int64_t acc[4][4] = {{0}};
    for (int64_t q = 0; q < words; q++) {
        uint64_t va[4], vb[4];
        for (int r = 0; r < ni; r++) va[r] = a[r * lda + q];
        for (int c = 0; c < nj; c++) vb[c] = b[c * ldb + q];
        for (int r = 0; r < ni; r++)
            for (int c = 0; c < nj; c++) acc[r][c] += (int64_t)_mm_popcnt_u64(va[r] ^ vb[c]);
    }
    for (int r = 0; r < ni; r++)
        for (int c = 0; c < nj; c++) p[r * ldp + c] *= (double)(len - 2 * acc[r][c]);
}

/* The blocks at the edges (fewer than 4 rows or columns left). */
static void gram_edge(double *p, int64_t ldp, const uint64_t *a, int64_t lda, const uint64_t *b,
                      int64_t ldb, int64_t words, int64_t len, int ni, int nj) {
    gram_block(p, ldp, a, lda, b, ldb, words, len, ni, nj);
}

static void gram_mul(double *p, int64_t ldp, const uint64_t *a, int64_t lda, int64_t na,
                     const uint64_t *b, int64_t ldb, int64_t nb, int64_t words, int64_t len) {
    for (int64_t i = 0; i < na; i += 4) {
        int ni = (na - i < 4) ? (int)(na - i) : 4;
        for (int64_t j = 0; j < nb; j += 4) {
            int nj = (nb - j < 4) ? (int)(nb - j) : 4;
            double *pp = p + i * ldp + j;
            if (ni == 4 && nj == 4)
                gram_block(pp, ldp, a + i * lda, lda, b + j * ldb, ldb, words, len, 4, 4);
            else
                gram_edge(pp, ldp, a + i * lda, lda, b + j * ldb, ldb, words, len, ni, nj);
        }
    }
}

const sc_kernels sc_kernels_avx2 = {
    .name = "avx2", .accum_rows = accum_rows, .signs_matvec = signs_matvec,
    .signs_rmatvec = signs_rmatvec, .rank_update = rank_update, .pack_signs = pack_signs,
    .diff_signs = sc_avx2_diff_signs, .unpack_signs = unpack_signs, .sign_dots = sign_dots, .sumsq = sumsq,
    .group_apply = group_apply, .nib_tables = sc_avx2_nib_tables, .transpose = sc_avx2_transpose,
    .accum_rows_h = accum_rows_h, .to_half = sc_avx2_to_half, .transpose16 = sc_avx2_transpose16,
    .absmax = sc_avx2_absmax, .lut3_rows = sc_avx2_lut3_rows, .lut_rows = sc_avx2_lut_rows,
    .sparse_accum = sc_sparse_accum, .sparse_sign_rows = sc_sparse_sign_rows,
    .flip_dots = sc_flip_dots, .chunk_apply = sc_avx2_chunk_apply, .gram_mul = gram_mul,
};

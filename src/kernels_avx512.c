/* signcut: AVX-512 kernels (F, BW, VL, VPOPCNTDQ). Sign bits become lane masks directly;
 * tails use masked loads and stores, so every entry follows the same FMA chain. */
#include <immintrin.h>
#include <math.h>
#include "signcut/signcut.h"
#include "signcut/common.h"

static inline __mmask16 tail_mask16(int64_t n) {  /* n in [0, 16] */
    return (__mmask16)((n >= 16) ? 0xFFFF : ((1u << n) - 1));
}

static inline __mmask16 mask_at(const uint64_t *bits, int64_t i) {  /* i multiple of 16 */
    return (__mmask16)((bits[i >> 6] >> (i & 63)) & 0xFFFF);
}

static void accum_rows(float *y, int64_t len, const float *rows, int64_t ld,
                       const int64_t *idx, const float *w, int64_t k) {
    int64_t q = 0;
    for (; q + 4 <= k; q += 4) {
        const float *r0 = rows + idx[q] * ld, *r1 = rows + idx[q + 1] * ld;
        const float *r2 = rows + idx[q + 2] * ld, *r3 = rows + idx[q + 3] * ld;
        __m512 w0 = _mm512_set1_ps(w[q]), w1 = _mm512_set1_ps(w[q + 1]);
        __m512 w2 = _mm512_set1_ps(w[q + 2]), w3 = _mm512_set1_ps(w[q + 3]);
        for (int64_t i = 0; i < len; i += 16) {
            /* rows are streams of flipped columns: prefetch ahead (reads past a row are harmless hints) */
            _mm_prefetch((const char *)(r0 + i + 256), _MM_HINT_T0);
            _mm_prefetch((const char *)(r1 + i + 256), _MM_HINT_T0);
            _mm_prefetch((const char *)(r2 + i + 256), _MM_HINT_T0);
            _mm_prefetch((const char *)(r3 + i + 256), _MM_HINT_T0);
            __mmask16 m = tail_mask16(len - i);
            __m512 a = _mm512_maskz_loadu_ps(m, y + i);
            a = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, r0 + i), a);
            a = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m, r1 + i), a);
            a = _mm512_fmadd_ps(w2, _mm512_maskz_loadu_ps(m, r2 + i), a);
            a = _mm512_fmadd_ps(w3, _mm512_maskz_loadu_ps(m, r3 + i), a);
            _mm512_mask_storeu_ps(y + i, m, a);
        }
    }
    for (; q < k; q++) {
        const float *r0 = rows + idx[q] * ld;
        __m512 w0 = _mm512_set1_ps(w[q]);
        for (int64_t i = 0; i < len; i += 16) {
            __mmask16 m = tail_mask16(len - i);
            __m512 a = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, r0 + i), _mm512_maskz_loadu_ps(m, y + i));
            _mm512_mask_storeu_ps(y + i, m, a);
        }
    }
}

static void signs_matvec(float *y, int64_t len, const uint64_t *bits, int64_t wpr,
                         const float *w, int64_t k) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        __m512 wv = _mm512_set1_ps(w[j]);
        __m512 nv = _mm512_sub_ps(zero, wv);
        for (int64_t i = 0; i < len; i += 16) {
            __mmask16 m = tail_mask16(len - i);
            __m512 sv = _mm512_mask_blend_ps(mask_at(b, i), wv, nv);
            _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i), sv));
        }
    }
}

static void signs_rmatvec(float *z, const float *x, int64_t len, const uint64_t *bits,
                          int64_t wpr, int64_t k) {
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
        for (int64_t i = 0; i < len; i += 16) {
            __m512 xv = _mm512_maskz_loadu_ps(tail_mask16(len - i), x + i);
            __m512 sv = _mm512_mask_sub_ps(xv, mask_at(b, i), zero, xv);
            acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(sv)));
            acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sv), 1))));
        }
        z[j] = (float)_mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
    }
}

/* Rows [0, nr) (nr <= 4), columns [0, cols), panel leading dimension pld. */
static void rank_update_rows(float *out, int nr, int64_t cols, int64_t ld, const float *a,
                             int64_t lda, const float *panel, int64_t pld, int64_t k) {
    int64_t c = 0;
    if (nr == 4) {
        for (; c + 32 <= cols; c += 32) {
            __m512 o00 = _mm512_loadu_ps(out + c), o01 = _mm512_loadu_ps(out + c + 16);
            __m512 o10 = _mm512_loadu_ps(out + ld + c), o11 = _mm512_loadu_ps(out + ld + c + 16);
            __m512 o20 = _mm512_loadu_ps(out + 2 * ld + c), o21 = _mm512_loadu_ps(out + 2 * ld + c + 16);
            __m512 o30 = _mm512_loadu_ps(out + 3 * ld + c), o31 = _mm512_loadu_ps(out + 3 * ld + c + 16);
            for (int64_t q = 0; q < k; q++) {
                __m512 p0 = _mm512_loadu_ps(panel + q * pld + c);
                __m512 p1 = _mm512_loadu_ps(panel + q * pld + c + 16);
                __m512 a0 = _mm512_set1_ps(a[q]), a1 = _mm512_set1_ps(a[lda + q]);
                __m512 a2 = _mm512_set1_ps(a[2 * lda + q]), a3 = _mm512_set1_ps(a[3 * lda + q]);
                o00 = _mm512_fmadd_ps(a0, p0, o00); o01 = _mm512_fmadd_ps(a0, p1, o01);
                o10 = _mm512_fmadd_ps(a1, p0, o10); o11 = _mm512_fmadd_ps(a1, p1, o11);
                o20 = _mm512_fmadd_ps(a2, p0, o20); o21 = _mm512_fmadd_ps(a2, p1, o21);
                o30 = _mm512_fmadd_ps(a3, p0, o30); o31 = _mm512_fmadd_ps(a3, p1, o31);
            }
            _mm512_storeu_ps(out + c, o00); _mm512_storeu_ps(out + c + 16, o01);
            _mm512_storeu_ps(out + ld + c, o10); _mm512_storeu_ps(out + ld + c + 16, o11);
            _mm512_storeu_ps(out + 2 * ld + c, o20); _mm512_storeu_ps(out + 2 * ld + c + 16, o21);
            _mm512_storeu_ps(out + 3 * ld + c, o30); _mm512_storeu_ps(out + 3 * ld + c + 16, o31);
        }
    }
    for (int r = 0; r < nr; r++) {
        float *o = out + r * ld;
        const float *ar = a + r * lda;
        for (int64_t cc = c; cc < cols; cc += 16) {
            __mmask16 m = tail_mask16(cols - cc);
            __m512 acc = _mm512_maskz_loadu_ps(m, o + cc);
            for (int64_t q = 0; q < k; q++)
                acc = _mm512_fmadd_ps(_mm512_set1_ps(ar[q]), _mm512_maskz_loadu_ps(m, panel + q * pld + cc), acc);
            _mm512_mask_storeu_ps(o + cc, m, acc);
        }
    }
}

static void rank_update(float *out, int64_t rows, int64_t cols, int64_t ld,
                        const float *a, int64_t lda, const float *panel, int64_t k) {
    sc_rank_update_blocked(out, rows, cols, ld, a, lda, panel, k, rank_update_rows);
}

static double pack_signs(uint64_t *bits, const float *x, int64_t len) {
    const __m512 zero = _mm512_setzero_ps();
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < len; i += 64) {
        uint64_t word = 0;
        for (int b = 0; b < 4 && i + 16 * b < len; b++) {
            __m512 v = _mm512_maskz_loadu_ps(tail_mask16(len - i - 16 * b), x + i + 16 * b);
            word |= (uint64_t)_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ) << (16 * b);
            __m512 av = _mm512_abs_ps(v);
            acc0 = _mm512_add_pd(acc0, _mm512_cvtps_pd(_mm512_castps512_ps256(av)));
            acc1 = _mm512_add_pd(acc1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(av), 1))));
        }
        bits[i >> 6] = word;
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}

static void unpack_signs(float *out, const uint64_t *bits, int64_t len, float scale) {
    const __m512 pos = _mm512_set1_ps(scale), negv = _mm512_set1_ps(-scale);
    for (int64_t i = 0; i < len; i += 16)
        _mm512_mask_storeu_ps(out + i, tail_mask16(len - i), _mm512_mask_blend_ps(mask_at(bits, i), pos, negv));
}

static void sign_dots(int64_t *dots, const uint64_t *bits, int64_t wpr, const uint64_t *x,
                      int64_t words, int64_t len, int64_t k) {
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        __m512i acc = _mm512_setzero_si512();
        for (int64_t q = 0; q < words; q += 8) {
            __mmask8 m = (__mmask8)((words - q >= 8) ? 0xFF : ((1u << (words - q)) - 1));
            __m512i d = _mm512_xor_si512(_mm512_maskz_loadu_epi64(m, b + q), _mm512_maskz_loadu_epi64(m, x + q));
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(d));
        }
        dots[j] = len - 2 * (int64_t)_mm512_reduce_add_epi64(acc);
    }
}

static double sumsq(const float *x, int64_t len) {
    __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < len; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask16(len - i), x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        acc0 = _mm512_fmadd_pd(lo, lo, acc0);
        acc1 = _mm512_fmadd_pd(hi, hi, acc1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}

static void group_apply(float *y, int64_t len, const uint8_t *nib, int64_t ldn,
                        const uint8_t *tlo, const uint8_t *thi, int64_t ngroups, float scale) {
    /* 64 entries at a time: byte shuffles read each group's low and high table bytes, and the
     * interleaved pairs add up as int16 (a0 holds entries 16c..16c+7 of each 128-bit lane c,
     * a1 entries 16c+8..16c+15); two lane permutes put them back in order. */
    const __m512 sc = _mm512_set1_ps(scale);
    const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    const __m512i second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    int64_t i = 0;
    for (; i + 64 <= len; i += 64) {
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
        for (int64_t g = 0; g < ngroups; g++) {
            __m512i x = _mm512_loadu_si512((const void *)(nib + g * ldn + i));
            __m512i lo = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(tlo + 16 * g)));
            __m512i hi = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(thi + 16 * g)));
            __m512i l = _mm512_shuffle_epi8(lo, x), h = _mm512_shuffle_epi8(hi, x);
            a0 = _mm512_add_epi16(a0, _mm512_unpacklo_epi8(l, h));
            a1 = _mm512_add_epi16(a1, _mm512_unpackhi_epi8(l, h));
        }
        __m512i e[2] = {_mm512_permutex2var_epi64(a0, first, a1),
                        _mm512_permutex2var_epi64(a0, second, a1)};
        for (int q = 0; q < 4; q++) {
            __m256i v = (q & 1) ? _mm512_extracti64x4_epi64(e[q >> 1], 1) : _mm512_castsi512_si256(e[q >> 1]);
            __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(v));
            _mm512_storeu_ps(y + i + 16 * q, _mm512_fmadd_ps(sc, f, _mm512_loadu_ps(y + i + 16 * q)));
        }
    }
    sc_nib_apply(y + i, len - i, nib + i, ldn, tlo, thi, ngroups, scale);
}

/* A chunk of 16 entries at a time: each 64-byte load holds four planes of the chunk, one per
 * 128-bit lane, and the matching 64 bytes of the tables hold those planes' tables, so each
 * lane's byte shuffle reads its own group; the four lanes' int16 sums (the same entries) add
 * up at the end. Chunks of 2 planes go through the AVX2 kernel. */
static void chunk_apply(float *y, int64_t len, const uint8_t *chunks, int64_t planes,
                        const uint8_t *tab, float scale) {
    if (planes < 4) {
        sc_avx2_chunk_apply(y, len, chunks, planes, tab, scale);
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512 sc = _mm512_set1_ps(scale);
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        const uint8_t *ch = chunks + planes * i;
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
        for (int64_t h = 0; 4 * h < planes; h++) {
            __m512i x = _mm512_loadu_si512((const void *)(ch + 64 * h));
            __m512i xn[2] = {_mm512_and_si512(x, m4), _mm512_and_si512(_mm512_srli_epi16(x, 4), m4)};
            for (int n = 0; n < 2; n++) {
                const uint8_t *t = tab + 16 * (8 * n + 4 * h);
                __m512i l = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)t), xn[n]);
                __m512i g = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(t + 256)), xn[n]);
                a0 = _mm512_add_epi16(a0, _mm512_unpacklo_epi8(l, g));
                a1 = _mm512_add_epi16(a1, _mm512_unpackhi_epi8(l, g));
            }
        }
        /* lanes 0+2, 1+3, then the two halves: entries 0-7 from a0, 8-15 from a1 */
        a0 = _mm512_add_epi16(a0, _mm512_shuffle_i64x2(a0, a0, 0x4E));
        a1 = _mm512_add_epi16(a1, _mm512_shuffle_i64x2(a1, a1, 0x4E));
        __m128i e0 = _mm_add_epi16(_mm512_castsi512_si128(a0), _mm512_extracti32x4_epi32(a0, 1));
        __m128i e1 = _mm_add_epi16(_mm512_castsi512_si128(a1), _mm512_extracti32x4_epi32(a1, 1));
        __m256i e = _mm256_inserti128_si256(_mm256_castsi128_si256(e0), e1, 1);
        __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(e));
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(sc, f, _mm512_loadu_ps(y + i)));
    }
    sc_chunk_apply(y + i, len - i, chunks + planes * i, planes, tab, scale);
}

/* R rows of accum_rows_h in one pass over y (full vectors, then a masked tail). */
static inline __attribute__((always_inline)) void accum_h_pass(
        float *y, int64_t len, const uint16_t *rows, int64_t ld, const int64_t *idx,
        const float *w, const int R) {
    const uint16_t *r[8];
    __m512 wv[8];
    for (int j = 0; j < R; j++) {
        r[j] = rows + idx[j] * ld;
        wv[j] = _mm512_set1_ps(w[j]);
    }
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m512 a = _mm512_loadu_ps(y + i);
        for (int j = 0; j < R; j++)
            a = _mm512_fmadd_ps(wv[j], _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r[j] + i))), a);
        _mm512_storeu_ps(y + i, a);
    }
    if (i < len) {
        __mmask16 m = tail_mask16(len - i);
        __m512 a = _mm512_maskz_loadu_ps(m, y + i);
        for (int j = 0; j < R; j++)
            a = _mm512_fmadd_ps(wv[j], _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, r[j] + i)), a);
        _mm512_mask_storeu_ps(y + i, m, a);
    }
}

/* accum_rows over float16 rows, eight rows per pass and no software prefetch: measured on the
 * 16-core Xeon against four rows with prefetch, 13% faster per cut at 1024^2 and 1-2% at
 * 4096^2 (one thread), 3-16% with 16 threads. */
static void accum_rows_h(float *y, int64_t len, const uint16_t *rows, int64_t ld,
                         const int64_t *idx, const float *w, int64_t k) {
    int64_t q = 0;
    for (; q + 8 <= k; q += 8) accum_h_pass(y, len, rows, ld, idx + q, w + q, 8);
    switch (k - q) {     /* the last k % 8 rows in one pass too (several streams in flight) */
    case 7: accum_h_pass(y, len, rows, ld, idx + q, w + q, 7); break;
    case 6: accum_h_pass(y, len, rows, ld, idx + q, w + q, 6); break;
    case 5: accum_h_pass(y, len, rows, ld, idx + q, w + q, 5); break;
    case 4: accum_h_pass(y, len, rows, ld, idx + q, w + q, 4); break;
    case 3: accum_h_pass(y, len, rows, ld, idx + q, w + q, 3); break;
    case 2: accum_h_pass(y, len, rows, ld, idx + q, w + q, 2); break;
    case 1: accum_h_pass(y, len, rows, ld, idx + q, w + q, 1); break;
    default: break;
    }
}

/* As the AVX2 lut_block, with 16-float registers. */
static inline __attribute__((always_inline)) void lut_block(
        float *out, int64_t pb, const uint32_t *w, const float *tab, int64_t nwords,
        const int R, const int nv) {
    __m512 acc[16];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) acc[r * nv + v] = _mm512_loadu_ps(out + r * pb + 16 * v);
    for (int64_t k = 0; k < nwords; k++)
        for (int i = 0; i < 8; i++)
            for (int r = 0; r < R; r++) {
                const float *t = tab + (16 * (8 * k + i) + ((w[r + 8 * k] >> (4 * i)) & 15)) * pb;
                for (int v = 0; v < nv; v++)
                    acc[r * nv + v] = _mm512_add_ps(acc[r * nv + v], _mm512_loadu_ps(t + 16 * v));
            }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(out + r * pb + 16 * v, acc[r * nv + v]);
}

static void lut_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                     const float *tab, int64_t nwords, int64_t pb) {
    /* 64 columns: four rows at a time in 16 registers, the table stride a constant. */
    if (pb == 64) {
        for (int64_t r = 0; r < rows; r += 4)
            lut_block(out + r * 64, 64, lanes + (r / 8) * ldl + (r % 8), tab, nwords, 4, 4);
        return;
    }
    /* Rows of 8 floats (or any width not a multiple of 16) take the AVX2 code. */
    if (pb % 16) {
        sc_avx2_lut_rows(out, rows, lanes, ldl, tab, nwords, pb);
        return;
    }
    for (int64_t c0 = 0; c0 < pb; c0 += 128) {
        int nv = (int)((pb - c0 >= 128) ? 8 : (pb - c0) / 16);
        for (int64_t r = 0; r < rows; ) {
            float *o = out + r * pb + c0;
            const uint32_t *w = lanes + (r / 8) * ldl + (r % 8);
            const float *t = tab + c0;
            switch (nv) {
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

/* As the AVX2 lut3_blocks, a register holding two blocks of 8 rows: lanes 0-7 block 2z, lanes
 * 8-15 block 2z+1. The permute reads 4 index bits: tables are doubled to 16 entries so bit 3
 * is ignored. Every row adds its lookups in the same order as the scalar and AVX2 kernels. */
static inline __attribute__((always_inline)) void lut3_blocks(
        float *out, const uint32_t *w, int64_t ldl, const float *tab, int64_t nwords, const int nz) {
    __m512 acc[4];
    for (int z = 0; z < nz; z++) acc[z] = _mm512_loadu_ps(out + 16 * z);
    for (int64_t k = 0; k < nwords; k++) {
        __m512i v[4];
        for (int z = 0; z < nz; z++) {
            __m256i lo = _mm256_loadu_si256((const __m256i *)(w + 2 * z * ldl + 8 * k));
            __m256i hi = _mm256_loadu_si256((const __m256i *)(w + (2 * z + 1) * ldl + 8 * k));
            v[z] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        const float *t = tab + 8 * SC_LUT3_GROUPS * k;
#pragma GCC unroll 1
        for (int q = 0; q < SC_LUT3_GROUPS; q++) {
            __m256 t8 = _mm256_loadu_ps(t + 8 * q);
            __m512 tq = _mm512_castpd_ps(_mm512_insertf64x4(
                _mm512_castps_pd(_mm512_castps256_ps512(t8)), _mm256_castps_pd(t8), 1));
            for (int z = 0; z < nz; z++) {
                acc[z] = _mm512_add_ps(acc[z], _mm512_permutexvar_ps(v[z], tq));
                v[z] = _mm512_srli_epi32(v[z], 3);
            }
        }
    }
    for (int z = 0; z < nz; z++) _mm512_storeu_ps(out + 16 * z, acc[z]);
}

static void lut3_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                      const float *tab, int64_t nwords) {
    int64_t nb = rows / 8, b0 = 0;
    for (; b0 + 8 <= nb; b0 += 8) lut3_blocks(out + 8 * b0, lanes + b0 * ldl, ldl, tab, nwords, 4);
    for (; b0 + 2 <= nb; b0 += 2) lut3_blocks(out + 8 * b0, lanes + b0 * ldl, ldl, tab, nwords, 1);
    if (b0 < nb) sc_avx2_lut3_rows(out + 8 * b0, 8, lanes + b0 * ldl, ldl, tab, nwords);
}

/* Eight sign vectors at a time: one gather reads word q of each, vpopcntq counts. */
static void flip_dots(int64_t *cnt, const uint64_t *bits, int64_t wpr, const uint64_t *old,
                      const uint64_t *cur, const int64_t *qs, int64_t nq, int64_t k) {
    const __m512i offs = _mm512_setr_epi64(0, wpr, 2 * wpr, 3 * wpr, 4 * wpr, 5 * wpr, 6 * wpr,
                                           7 * wpr);
    for (int64_t j0 = 0; j0 < k; j0 += 8) {
        __mmask8 m = (__mmask8)((k - j0 >= 8) ? 0xFF : ((1u << (k - j0)) - 1));
        const uint64_t *b = bits + j0 * wpr;
        __m512i acc = _mm512_setzero_si512();
        for (int64_t i = 0; i < nq; i++) {
            int64_t q = qs[i];
            __m512i g = _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), m, offs, b + q, 8);
            __m512i c = _mm512_set1_epi64((long long)cur[q]);
            __m512i x = _mm512_set1_epi64((long long)(old[q] ^ cur[q]));
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_and_si512(x, _mm512_xor_si512(g, c))));
        }
        _mm512_mask_storeu_epi64(cnt + j0, m, acc);
    }
}

/* gram_mul for ni x nj (<= 4 x 2) pairs of rows: vpopcntq on 8 words at a time, the last
 * ones through a masked load (zeros past the row). */
static inline __attribute__((always_inline)) void gram_block(
        double *p, int64_t ldp, const uint64_t *a, int64_t lda, const uint64_t *b, int64_t ldb,
        int64_t words, int64_t len, int ni, int nj) {
    __m512i acc[4][2];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 2; c++) acc[r][c] = _mm512_setzero_si512();
    for (int64_t q = 0; q < words; q += 8) {
        __mmask8 m = (__mmask8)((words - q >= 8) ? 0xFF : ((1u << (words - q)) - 1));
        __m512i va[4], vb[2];
        for (int r = 0; r < ni; r++) va[r] = _mm512_maskz_loadu_epi64(m, a + r * lda + q);
        for (int c = 0; c < nj; c++) vb[c] = _mm512_maskz_loadu_epi64(m, b + c * ldb + q);
        for (int r = 0; r < ni; r++)
            for (int c = 0; c < nj; c++)
                acc[r][c] = _mm512_add_epi64(acc[r][c],
                                             _mm512_popcnt_epi64(_mm512_xor_si512(va[r], vb[c])));
    }
    for (int r = 0; r < ni; r++)
        for (int c = 0; c < nj; c++)
            p[r * ldp + c] *= (double)(len - 2 * (int64_t)_mm512_reduce_add_epi64(acc[r][c]));
}

static void gram_mul(double *p, int64_t ldp, const uint64_t *a, int64_t lda, int64_t na,
                     const uint64_t *b, int64_t ldb, int64_t nb, int64_t words, int64_t len) {
    int64_t i = 0;
    for (; i + 4 <= na; i += 4) {
        int64_t j = 0;
        for (; j + 2 <= nb; j += 2)
            gram_block(p + i * ldp + j, ldp, a + i * lda, lda, b + j * ldb, ldb, words, len, 4, 2);
        if (j < nb)
            gram_block(p + i * ldp + j, ldp, a + i * lda, lda, b + j * ldb, ldb, words, len, 4, 1);
    }
    for (; i < na; i++) {
        int64_t j = 0;
        for (; j + 2 <= nb; j += 2)
            gram_block(p + i * ldp + j, ldp, a + i * lda, lda, b + j * ldb, ldb, words, len, 1, 2);
        if (j < nb)
            gram_block(p + i * ldp + j, ldp, a + i * lda, lda, b + j * ldb, ldb, words, len, 1, 1);
    }
}

const sc_kernels sc_kernels_avx512 = {
    .name = "avx512", .accum_rows = accum_rows, .signs_matvec = signs_matvec,
    .signs_rmatvec = signs_rmatvec, .rank_update = rank_update, .pack_signs = pack_signs,
    .diff_signs = sc_avx2_diff_signs, .unpack_signs = unpack_signs, .sign_dots = sign_dots, .sumsq = sumsq,
    .group_apply = group_apply, .nib_tables = sc_avx2_nib_tables, .transpose = sc_avx2_transpose,
    .accum_rows_h = accum_rows_h, .to_half = sc_avx2_to_half, .transpose16 = sc_avx2_transpose16,
    .absmax = sc_avx2_absmax, .lut3_rows = lut3_rows, .lut_rows = lut_rows,
    .sparse_accum = sc_sparse_accum, .sparse_sign_rows = sc_sparse_sign_rows,
    .flip_dots = flip_dots, .chunk_apply = chunk_apply, .gram_mul = gram_mul,
};

/* signcut: static inline helpers shared by every kernel file and the drivers. */
#ifndef SIGNCUT_COMMON_H
#define SIGNCUT_COMMON_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Words needed for d packed signs. */
static inline int64_t sc_words(int64_t d) { return (d + 63) / 64; }

/* Mask of the valid bits in the last word of a d-entry sign vector (all ones if d % 64 == 0). */
static inline uint64_t sc_tail_mask(int64_t d) {
    return (d % 64) ? ((UINT64_C(1) << (d % 64)) - 1) : ~UINT64_C(0);
}

/* Portable popcount / count-trailing-zeros on one word. */
static inline int sc_popcount64(uint64_t x) { return __builtin_popcountll(x); }
static inline int sc_ctz64(uint64_t x) { return __builtin_ctzll(x); }

/* Sign (+1/-1) of entry i of a packed sign vector, as a float. */
static inline float sc_sign_at(const uint64_t *bits, int64_t i) {
    return ((bits[i >> 6] >> (i & 63)) & 1) ? -1.0f : 1.0f;
}

/* IEEE half precision <-> float, exact and portable (round to nearest even). The matrix
 * engine keeps float16 copies of the remainder for the sign search (see matrix.c). */
static inline uint16_t sc_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax >= 0x477FF000u)                       /* rounds to infinity, or inf / nan */
        return sign | (ax > 0x7F800000u ? 0x7E00 : 0x7C00);
    if (ax < 0x38800000u) {                      /* below 2^-14: a subnormal half or zero */
        float a;
        memcpy(&a, &ax, 4);
        a += 0.5f;                               /* the ulp of 0.5f is 2^-24, the half's step */
        uint32_t r;
        memcpy(&r, &a, 4);
        return sign | (uint16_t)(r - 0x3F000000u);
    }
    /* Rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to even. */
    ax += 0xC8000FFFu + ((ax >> 13) & 1);
    return sign | (uint16_t)(ax >> 13);
}

static inline float sc_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7FFFu, x;
    float f;
    if (em >= 0x7C00u) {
        x = sign | 0x7F800000u | ((em & 0x3FFu) << 13);
    } else if (em >= 0x0400u) {
        x = sign | ((em << 13) + 0x38000000u);
    } else {
        f = (float)em * 5.9604644775390625e-8f;   /* em * 2^-24, exact */
        memcpy(&x, &f, 4);
        x |= sign;
    }
    memcpy(&f, &x, 4);
    return f;
}

/* xoshiro256** (Blackman and Vigna), the generator for random starts. */
typedef struct { uint64_t s[4]; } sc_rng;

static inline uint64_t sc_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t sc_rng_next(sc_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = sc_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sc_rotl(s[3], 45);
    return result;
}

/* splitmix64: one step of a 64-bit mixing sequence (Steele, Lea, Flood 2014). */
static inline uint64_t sc_splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* The generator of cut number `cut` of a decomposition seeded with `seed`: its state is
 * splitmix64 of the four seed words and the cut's index, so the draws of a cut do not depend
 * on how many numbers the earlier cuts drew (a continuation from cut k draws as the long run
 * did). The all-zero state, which xoshiro256** never leaves, is replaced. */
static inline void sc_rng_for_cut(sc_rng *r, const uint64_t seed[4], int64_t cut) {
    uint64_t x = seed[0];
    for (int i = 1; i < 4; i++) x = sc_splitmix64(&x) ^ seed[i];
    x = sc_splitmix64(&x) ^ (uint64_t)cut;
    for (int i = 0; i < 4; i++) r->s[i] = sc_splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

/* A kick (a restart of a matrix search from the best signs so far) flips 1 in 2^SC_KICK_SHIFT
 * entries of t, drawing SC_KICK_SHIFT random words per word. */
#define SC_KICK_SHIFT 4

/* Fill a d-entry sign vector with random signs (tail bits zero). */
static inline void sc_rng_signs(sc_rng *r, uint64_t *bits, int64_t d) {
    int64_t w = sc_words(d);
    for (int64_t k = 0; k < w; k++) bits[k] = sc_rng_next(r);
    if (w) bits[w - 1] &= sc_tail_mask(d);
}

/* A kick of the d-entry signs `best` into `bits`: each entry flipped with probability
 * 2^-SC_KICK_SHIFT (tail bits zero). */
static inline void sc_kick_signs(sc_rng *r, uint64_t *bits, const uint64_t *best, int64_t d) {
    int64_t w = sc_words(d);
    for (int64_t k = 0; k < w; k++) {
        uint64_t x = ~UINT64_C(0);
        for (int b = 0; b < SC_KICK_SHIFT; b++) x &= sc_rng_next(r);
        bits[k] = best[k] ^ x;
    }
    if (w) bits[w - 1] &= sc_tail_mask(d);
}

/* Pending cuts (up to 64) are also stored as nibbles: byte nib[g * ldn + i] holds bits
 * 4g..4g+3 of entry i's pending signs (bit l set if pending cut 4g + l has -1 at i). Adding
 * sum_j w_j * sign_j[i] goes through one 16-entry table per group of 4 cuts, in 16-bit fixed
 * point: table entries are the group's signed weight sums in units of `scale` (the sum of
 * |w_j| over 32752 units), so the groups' integer sum never leaves int16 and is exact in any
 * order; y[i] = fma(scale, sum, y[i]). The tables are kept as low and high bytes, the form a
 * byte shuffle reads (16 entries per 128-bit lane). Rounding: at most half a unit per group,
 * about 2.4e-4 of sum |w_j| in all. */
#define SC_NIB_GROUPS 16
#define SC_NIB_UNITS 32752.0

/* The unit of the tables of weights w[0..k-1]: sum |w_j| / SC_NIB_UNITS (0 when every weight
 * is 0); *inv = 1 / unit, the factor that takes weights to units. */
static inline float sc_nib_unit(const float *w, int64_t k, float *inv) {
    double total = 0.0;
    for (int64_t j = 0; j < k; j++) total += fabs((double)w[j]);
    if (!(total > 0.0)) return 0.0f;
    *inv = (float)(SC_NIB_UNITS / total);
    return (float)(total / SC_NIB_UNITS);
}

/* Tables of the ceil(k/4) groups of weights w[0..k-1] into tlo/thi[16g + x], *scale the unit;
 * returns the number of groups (0 when every weight is 0). Entry x of group g is
 * ((+-v0 +- v1) + (+-v2 +- v3)) with v_b = w[4g + b] * inv in float (minus where bit b of x
 * is set), rounded to the nearest integer, ties to even: the SIMD kernels compute the same. */
static inline int64_t sc_nib_tables(uint8_t *tlo, uint8_t *thi, float *scale, const float *w,
                                    int64_t k) {
    float inv = 0.0f;
    *scale = sc_nib_unit(w, k, &inv);
    if (*scale == 0.0f) return 0;
    int64_t ng = (k + 3) / 4;
    for (int64_t g = 0; g < ng; g++) {
        float v[4];
        for (int b = 0; b < 4; b++) v[b] = (4 * g + b < k) ? w[4 * g + b] * inv : 0.0f;
        for (int x = 0; x < 16; x++) {
            float t = ((x & 1 ? -v[0] : v[0]) + (x & 2 ? -v[1] : v[1]))
                    + ((x & 4 ? -v[2] : v[2]) + (x & 8 ? -v[3] : v[3]));
            int q = (int)rintf(t);    /* the rounding mode's nearest, as cvtps2dq */
            tlo[16 * g + x] = (uint8_t)(q & 0xFF);
            thi[16 * g + x] = (uint8_t)((q >> 8) & 0xFF);
        }
    }
    return ng;
}

/* Table entry x of group g as a signed integer. */
static inline int sc_nib_entry(const uint8_t *tlo, const uint8_t *thi, int64_t g, int x) {
    int v = tlo[16 * g + x] | (thi[16 * g + x] << 8);
    return v - ((v & 0x8000) << 1);
}

/* Scalar form of the nibble lookups for entries [0, len). */
static inline void sc_nib_apply(float *y, int64_t len, const uint8_t *nib, int64_t ldn,
                                const uint8_t *tlo, const uint8_t *thi, int64_t ngroups,
                                float scale) {
    for (int64_t i = 0; i < len; i++) {
        int acc = 0;
        for (int64_t g = 0; g < ngroups; g++) acc += sc_nib_entry(tlo, thi, g, nib[g * ldn + i]);
        y[i] = fmaf(scale, (float)acc, y[i]);
    }
}

/* The sparse engine's signs of every cut in chunk layout, per block of up to 64 cuts: chunks
 * of SC_CHUNK entries, each `planes` planes (2, 4 or 8: as many as the block's cuts need) of
 * SC_CHUNK bytes, byte sc_chunk_at(i, p, planes) holding the signs of cuts 8p..8p+7 of the
 * block at entry i (bit l set if cut 8p + l has -1 there): group 2p of the nibble tables in its
 * low nibble, group 2p + 1 in its high one. One bit per cut and entry, and a chunk's bytes are
 * all that a lookup of its entries reads. */
#define SC_CHUNK 16

static inline int64_t sc_chunk_at(int64_t i, int64_t plane, int64_t planes) {
    return SC_CHUNK * (planes * (i / SC_CHUNK) + plane) + i % SC_CHUNK;
}

/* The tables of chunk_apply: the nibble tables of ngroups groups (tlo/thi[16g + x], from
 * nib_tables) reordered by nibble, then plane, so that consecutive planes' tables are side
 * by side: tab[16 (8n + p) + x] is the low byte of entry x of group 2p + n, tab[256 + ...]
 * its high byte; groups from ngroups on are zero. */
static inline void sc_chunk_tables(uint8_t tab[512], const uint8_t *tlo, const uint8_t *thi,
                                   int64_t ngroups) {
    memset(tab, 0, 512);
    for (int64_t g = 0; g < ngroups; g++) {
        memcpy(tab + 16 * (8 * (g % 2) + g / 2), tlo + 16 * g, 16);
        memcpy(tab + 256 + 16 * (8 * (g % 2) + g / 2), thi + 16 * g, 16);
    }
}

/* Scalar form of chunk_apply (signcut.h) for entries [0, len). */
static inline void sc_chunk_apply(float *y, int64_t len, const uint8_t *chunks, int64_t planes,
                                  const uint8_t *tab, float scale) {
    for (int64_t i = 0; i < len; i++) {
        int acc = 0;
        for (int64_t p = 0; p < planes; p++)
            for (int n = 0; n < 2; n++) {
                int x = (chunks[sc_chunk_at(i, p, planes)] >> (4 * n)) & 15;
                int64_t e = 16 * (8 * n + p) + x;
                int v = tab[e] | (tab[256 + e] << 8);
                acc += v - ((v & 0x8000) << 1);
            }
        y[i] = fmaf(scale, (float)acc, y[i]);
    }
}

/* Row kernel of a rank update: rows [0, nr) (nr <= 4) of out, columns [0, cols), panel with
 * leading dimension pld, k terms. */
typedef void (*sc_rank_rows_fn)(float *out, int nr, int64_t cols, int64_t ld, const float *a,
                                int64_t lda, const float *panel, int64_t pld, int64_t k);

#define SC_RU_STRIP 128   /* panel columns per strip */
#define SC_RU_K 64        /* panel rows per chunk */
#define SC_RU_ROWS 32     /* rows per block */

/* out += a @ panel, blocked for the SIMD kernels: blocks of SC_RU_ROWS rows stream through
 * memory once; for each block, column strips of the panel are copied to a contiguous buffer
 * that stays in L1 (panel rows a power of two apart would alias in the cache). Chunks of
 * SC_RU_K terms keep each entry's FMA chain in order. */
static inline void sc_rank_update_blocked(float *out, int64_t rows, int64_t cols, int64_t ld,
                                          const float *a, int64_t lda, const float *panel,
                                          int64_t k, sc_rank_rows_fn rows_fn) {
    float buf[SC_RU_K * SC_RU_STRIP] __attribute__((aligned(64)));
    for (int64_t r0 = 0; r0 < rows; r0 += SC_RU_ROWS) {
        int64_t r1 = (rows - r0 < SC_RU_ROWS) ? rows : r0 + SC_RU_ROWS;
        for (int64_t q0 = 0; q0 < k; q0 += SC_RU_K) {
            int64_t kk = (k - q0 < SC_RU_K) ? k - q0 : SC_RU_K;
            for (int64_t c0 = 0; c0 < cols; c0 += SC_RU_STRIP) {
                int64_t cw = (cols - c0 < SC_RU_STRIP) ? cols - c0 : SC_RU_STRIP;
                for (int64_t q = 0; q < kk; q++)
                    memcpy(buf + q * cw, panel + (q0 + q) * cols + c0, (size_t)cw * sizeof(float));
                for (int64_t r = r0; r < r1; r += 4) {
                    int nr = (r1 - r < 4) ? (int)(r1 - r) : 4;
                    rows_fn(out + r * ld + c0, nr, cw, ld, a + r * lda + q0, lda, buf, cw, kk);
                }
            }
        }
    }
}

/* Lookup tables for a sign row times a vector x: each 32-bit word of packed signs is 11 groups
 * of 3 bits (the last one 2 bits), group q of word k covering entries 32k + 3q + {0, 1, 2};
 * its table tab[8 (11k + q) + b] is the signed sum of those entries of x for the bit pattern b
 * (a set bit means -1). A table is 8 floats: one AVX2 register, read with a lane permute. */
#define SC_LUT3_GROUPS 11

/* tab[88 k + 8 q + b] for the words k < ceil(len / 32) of x[0:len] (entries past len count 0). */
static inline void sc_lut3_tables(float *tab, const float *x, int64_t len) {
    for (int64_t k = 0; 32 * k < len; k++)
        for (int q = 0; q < SC_LUT3_GROUPS; q++) {
            int64_t i0 = 32 * k + 3 * q;
            float xb[3];
            for (int b = 0; b < 3; b++) xb[b] = (3 * q + b < 32 && i0 + b < len) ? x[i0 + b] : 0.0f;
            float *t = tab + 8 * (SC_LUT3_GROUPS * k + q);
            t[0] = (xb[0] + xb[1]) + xb[2];
            for (int b = 1; b < 8; b++) t[b] = t[b & (b - 1)] - 2.0f * xb[sc_ctz64((uint64_t)b)];
        }
}

/* Scalar form of lut3_rows (lane layout, rows a multiple of 8). */
static inline void sc_lut3_rows(float *out, int64_t rows, const uint32_t *lanes, int64_t ldl,
                                const float *tab, int64_t nwords) {
    for (int64_t r = 0; r < rows; r++) {
        const uint32_t *w = lanes + (r / 8) * ldl + (r % 8);
        float acc = out[r];
        for (int64_t k = 0; k < nwords; k++)
            for (int q = 0; q < SC_LUT3_GROUPS; q++)
                acc += tab[8 * (SC_LUT3_GROUPS * k + q) + ((w[8 * k] >> (3 * q)) & 7)];
        out[r] = acc;
    }
}

/* Sparse lines (see sparse_accum in signcut.h). The A part of the sparse engine's images
 * scatters into or gathers from random entries: memory-bound, so every kernel table uses these
 * forms, compiled with its own file's flags. */

/* The first entry of [b, e) whose index is >= lo (indices increasing). */
static inline int64_t sc_line_lower(const int32_t *idx, int64_t b, int64_t e, int64_t lo) {
    while (b < e) {
        int64_t mid = b + (e - b) / 2;
        if (idx[mid] < lo) b = mid + 1; else e = mid;
    }
    return b;
}

static inline void sc_sparse_accum(float *y, int64_t lo, int64_t hi, const int64_t *ptr,
                                   const int32_t *idx, const float *val, const int64_t *lines,
                                   const float *w, int64_t k) {
    for (int64_t q = 0; q < k; q++) {
        int64_t b = ptr[lines[q]], e = ptr[lines[q] + 1];
        if (lo > 0 && b < e && idx[b] < lo) b = sc_line_lower(idx, b, e, lo);
        float wq = w[q];
        if (q + 4 < k) {
            int64_t n = ptr[lines[q + 4]];
            __builtin_prefetch(&idx[n]);
            __builtin_prefetch(&val[n]);
        }
        for (; b < e && idx[b] < hi; b++) y[idx[b] - lo] += wq * val[b];
    }
}

static inline void sc_sparse_sign_rows(float *y, const int64_t *ptr, const int32_t *idx,
                                       const float *val, int64_t rows, const uint64_t *bits) {
    /* no branch on the signs (as random as they are); two chains of adds, even and odd
     * entries, summed at the end of the line */
    for (int64_t r = 0; r < rows; r++) {
        double acc[2] = {0.0, 0.0};
        for (int64_t e = ptr[r]; e < ptr[r + 1]; e++) {
            int32_t c = idx[e];
            double sign = 1.0 - 2.0 * (double)((bits[c >> 6] >> (c & 63)) & 1);
            acc[e & 1] += sign * (double)val[e];
        }
        y[r] = (float)(acc[0] + acc[1]);
    }
}

/* Scalar form of flip_dots (the AVX2 table uses it too: compiled with -mpopcnt there). */
static inline void sc_flip_dots(int64_t *cnt, const uint64_t *bits, int64_t wpr,
                                const uint64_t *old, const uint64_t *cur, const int64_t *qs,
                                int64_t nq, int64_t k) {
    for (int64_t j = 0; j < k; j++) {
        const uint64_t *b = bits + j * wpr;
        int64_t c = 0;
        for (int64_t i = 0; i < nq; i++) {
            int64_t q = qs[i];
            c += sc_popcount64((old[q] ^ cur[q]) & (b[q] ^ cur[q]));
        }
        cnt[j] = c;
    }
}

#endif

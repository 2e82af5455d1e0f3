/* signcut: static inline helpers shared by every kernel file and the drivers. */
#ifndef SIGNCUT_COMMON_H
#define SIGNCUT_COMMON_H

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

/* Fill a d-entry sign vector with random signs (tail bits zero). */
static inline void sc_rng_signs(sc_rng *r, uint64_t *bits, int64_t d) {
    int64_t w = sc_words(d);
    for (int64_t k = 0; k < w; k++) bits[k] = sc_rng_next(r);
    if (w) bits[w - 1] &= sc_tail_mask(d);
}

/* Pending cuts (up to 64) are stored transposed: one word per entry i, bit j set if pending
 * cut j has -1 at i. Adding sum_j w_j * sign_j[i] goes through 3-bit groups: group q covers
 * bits [sc_group_shift(q), +3) and its table tab[8q + x] is the signed sum of those 3 weights
 * for the bit pattern x. Groups never straddle the two 32-bit halves, so SIMD kernels can work
 * on 32-bit lanes; a table fits one AVX2 register and is read with a lane permute. */
#define SC_GROUPS_PER_HALF 11
#define SC_MAX_GROUPS (2 * SC_GROUPS_PER_HALF)

static inline int sc_group_shift(int64_t q) {
    return (int)(32 * (q / SC_GROUPS_PER_HALF) + 3 * (q % SC_GROUPS_PER_HALF));
}

/* Number of groups covering k pending cuts. */
static inline int64_t sc_ngroups(int64_t k) {
    return (k <= 32) ? (k + 2) / 3 : SC_GROUPS_PER_HALF + (k - 32 + 2) / 3;
}

/* tab[8q + x] for q < sc_ngroups(k), from weights w[0..k-1]. */
static inline void sc_group_tables(float *tab, const float *w, int64_t k) {
    int64_t ng = sc_ngroups(k);
    for (int64_t q = 0; q < ng; q++) {
        int s = sc_group_shift(q);
        float wb[3];
        for (int b = 0; b < 3; b++)   /* a group's bits stay inside its 32-bit half */
            wb[b] = ((s % 32) + b < 32 && s + b < k) ? w[s + b] : 0.0f;
        float *t = tab + 8 * q;
        t[0] = (wb[0] + wb[1]) + wb[2];
        for (int x = 1; x < 8; x++) t[x] = t[x & (x - 1)] - 2.0f * wb[sc_ctz64((uint64_t)x)];
    }
}

/* Scalar form of the group lookups for entries [0, len): y[i] += tab lookups in group order. */
static inline void sc_group_apply(float *y, int64_t len, const uint64_t *pend, const float *tab,
                                  int64_t ngroups) {
    for (int64_t i = 0; i < len; i++) {
        uint64_t x = pend[i];
        float acc = y[i];
        for (int64_t q = 0; q < ngroups; q++) acc += tab[8 * q + ((x >> sc_group_shift(q)) & 7)];
        y[i] = acc;
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

#endif

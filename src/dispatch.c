/* signcut: CPU detection and the choice of kernel table (c-blosc2 style). */
#include <string.h>
#include "signcut/signcut.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define SC_X86 1
#endif

/* __builtin_cpu_supports checks cpuid and, for AVX and AVX-512, that the OS saves the
 * registers (xgetbv), so a feature reported here is usable. */
int sc_cpu_supported(void) {
    int mask = 1;
#ifdef SC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt") &&
        __builtin_cpu_supports("f16c"))
        mask |= 2;
#ifdef SIGNCUT_HAVE_AVX512
    if ((mask & 2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq"))
        mask |= 4;
#endif
#endif
    return mask;
}

const char *sc_cpu_features(void) {
    static char buf[256];
    buf[0] = 0;
#ifdef SC_X86
    static const char *names[] = {"sse4.2", "popcnt", "avx", "avx2", "fma", "f16c", "avx512f",
                                  "avx512bw", "avx512vl", "avx512vpopcntdq", "avx512vbmi2"};
    __builtin_cpu_init();
    int have[11] = {
        __builtin_cpu_supports("sse4.2"), __builtin_cpu_supports("popcnt"),
        __builtin_cpu_supports("avx"), __builtin_cpu_supports("avx2"),
        __builtin_cpu_supports("fma"), __builtin_cpu_supports("f16c"),
        __builtin_cpu_supports("avx512f"),
        __builtin_cpu_supports("avx512bw"), __builtin_cpu_supports("avx512vl"),
        __builtin_cpu_supports("avx512vpopcntdq"), __builtin_cpu_supports("avx512vbmi2")};
    for (int i = 0; i < 11; i++) {
        if (!have[i]) continue;
        if (buf[0]) strcat(buf, ",");
        strcat(buf, names[i]);
    }
#endif
    return buf;
}

/* The table compiled for `name` (whether or not this CPU can run it) and its bit in
 * sc_cpu_supported's mask; NULL if not compiled in. */
static const sc_kernels *compiled(const char *name, int *bit) {
    *bit = 1;
    if (strcmp(name, "scalar") == 0) return &sc_kernels_scalar;
#ifdef SC_X86
    *bit = 2;
    if (strcmp(name, "avx2") == 0) return &sc_kernels_avx2;
#ifdef SIGNCUT_HAVE_AVX512
    *bit = 4;
    if (strcmp(name, "avx512") == 0) return &sc_kernels_avx512;
#endif
#endif
    return NULL;
}

const sc_kernels *sc_kernels_get(const char *name) {
    int bit;
    const sc_kernels *K = compiled(name, &bit);
    return (K && (sc_cpu_supported() & bit)) ? K : NULL;
}

const sc_kernels *sc_kernels_best(void) {
    static const sc_kernels *best = NULL;
    if (best) return best;
    int mask = sc_cpu_supported();
    const sc_kernels *k = &sc_kernels_scalar;
#ifdef SC_X86
    if (mask & 2) k = &sc_kernels_avx2;
#ifdef SIGNCUT_HAVE_AVX512
    if (mask & 4) k = &sc_kernels_avx512;
#endif
#endif
    (void)mask;
    best = k;
    return best;
}

int sc_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int sc_default_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

int sc_clamp_threads(int n_threads) {
    if (n_threads < 1) return 1;
#ifdef _OPENMP
    int procs = omp_get_num_procs();
    return n_threads < procs ? n_threads : (procs > 1 ? procs : 1);
#else
    return 1;
#endif
}

const char *sc_kernels_missing(const char *name) {
    int bit;
    const sc_kernels *K = compiled(name, &bit);
    if (!K) return "the whole table";
    if (!K->accum_rows) return "accum_rows";
    if (!K->signs_matvec) return "signs_matvec";
    if (!K->signs_rmatvec) return "signs_rmatvec";
    if (!K->rank_update) return "rank_update";
    if (!K->pack_signs) return "pack_signs";
    if (!K->unpack_signs) return "unpack_signs";
    if (!K->sign_dots) return "sign_dots";
    if (!K->sumsq) return "sumsq";
    if (!K->group_apply) return "group_apply";
    if (!K->nib_tables) return "nib_tables";
    if (!K->transpose) return "transpose";
    if (!K->accum_rows_h) return "accum_rows_h";
    if (!K->to_half) return "to_half";
    if (!K->transpose16) return "transpose16";
    if (!K->absmax) return "absmax";
    if (!K->lut3_rows) return "lut3_rows";
    if (!K->lut_rows) return "lut_rows";
    if (!K->sparse_accum) return "sparse_accum";
    if (!K->sparse_sign_rows) return "sparse_sign_rows";
    if (!K->flip_dots) return "flip_dots";
    if (!K->gram_mul) return "gram_mul";
    return NULL;
}

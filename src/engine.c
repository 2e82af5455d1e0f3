/* signcut: the one entry of the dense engines, and the result they fill. */
#include <stdlib.h>
#include "signcut/driver.h"
#include "signcut/common.h"

int sc_decompose(const sc_kernels *K, float *R, int ndim, const int64_t *dims,
                 const sc_params *p, sc_result *res) {
    if (ndim < 1 || ndim > SC_MAX_NDIM) return SC_ERR_ARG;
    res->ndim = ndim;
    if (ndim == 2) return sc_matrix_decompose(K, R, dims[0], dims[1], p, res);
    return sc_tensor_decompose(K, R, ndim, dims, p, res);
}

int sc_result_grow(sc_result *res, int64_t need, const int64_t *dims) {
    if (need <= res->capacity) return SC_OK;
    int64_t cap = res->capacity ? res->capacity : 64;
    while (cap < need) cap *= 2;
    int ok = 1;
    for (int a = 0; a < res->ndim; a++) {
        uint64_t *b = realloc(res->bits[a], (size_t)(cap * sc_words(dims[a])) * sizeof(uint64_t));
        if (b) res->bits[a] = b; else ok = 0;
    }
    float *c = realloc(res->coef, (size_t)cap * sizeof(float));
    if (c) res->coef = c; else ok = 0;
    double *e = realloc(res->errors, (size_t)cap * sizeof(double));
    if (e) res->errors = e; else ok = 0;
    if (!ok) return SC_ERR_NOMEM;
    res->capacity = cap;
    return SC_OK;
}

void sc_result_free(sc_result *res) {
    for (int a = 0; a < SC_MAX_NDIM; a++) { free(res->bits[a]); res->bits[a] = NULL; }
    free(res->coef); free(res->errors);
    res->coef = NULL; res->errors = NULL;
    res->width = res->capacity = 0;
}

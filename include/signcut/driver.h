/* signcut: helpers shared by the matrix and tensor drivers (not part of the public C API). */
#ifndef SIGNCUT_DRIVER_H
#define SIGNCUT_DRIVER_H

#include <time.h>
#include "signcut/signcut.h"

/* Monotonic wall time in seconds. */
static inline double sc_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* After `width` cuts with relative error `err`: report progress, then check the budgets.
 * Returns 1 to stop (with *stopped_by set, and *status = SC_ERR_CALLBACK if the callback
 * failed), 0 to go on. */
static inline int sc_after_cut(const sc_params *p, int64_t width, double err, double t0,
                               int *stopped_by, int *status) {
    if (p->progress) {
        int r = p->progress(p->progress_ctx, width, err);
        if (r == 1) { *stopped_by = 3; return 1; }
        if (r) { *status = SC_ERR_CALLBACK; return 1; }
    }
    if (width >= p->max_width) { *stopped_by = 0; return 1; }
    if (p->rtol > 0.0 && err <= p->rtol) { *stopped_by = 1; return 1; }
    if (p->max_seconds > 0.0 && sc_now_seconds() - t0 >= p->max_seconds) { *stopped_by = 2; return 1; }
    return 0;
}

#endif

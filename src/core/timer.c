/* core/timer.c — monotonic wall-clock time. */
#include <time.h>

#include "liandan/core.h"

double ld_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* kernels/cpu/rows_neon.c — the row kernels of the decode path at the NEON level (aarch64):
 * RMSNorm forward (kernels/kernels.h). The rest of the rows (LayerNorm, softmax, RoPE,
 * backward passes) are the reference's at this level. Rows are split over the thread team;
 * each row is one fixed sequence of operations whatever the thread count. */
#include <arm_neon.h>
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/par.h"

/* y = x * rstd * w over one row of C; returns rstd = 1/sqrt(mean(x^2) + eps). The squares are
 * summed in 16 float lanes, the mean and the root in double (as the reference does). */
static float rmsnorm_row(float *y, const float *x, const float *w, int64_t C, float eps) {
    float32x4_t q0 = vdupq_n_f32(0), q1 = q0, q2 = q0, q3 = q0;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
        const float32x4_t a = vld1q_f32(x + c), b = vld1q_f32(x + c + 4), d = vld1q_f32(x + c + 8),
                          e = vld1q_f32(x + c + 12);
        q0 = vfmaq_f32(q0, a, a), q1 = vfmaq_f32(q1, b, b), q2 = vfmaq_f32(q2, d, d), q3 = vfmaq_f32(q3, e, e);
    }
    for (; c + 4 <= C; c += 4) {
        const float32x4_t a = vld1q_f32(x + c);
        q0 = vfmaq_f32(q0, a, a);
    }
    double ss = (double)vaddvq_f32(vaddq_f32(vaddq_f32(q0, q1), vaddq_f32(q2, q3)));
    for (; c < C; c++) ss += (double)x[c] * (double)x[c];
    const float rs = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    const float32x4_t vrs = vdupq_n_f32(rs);
    for (c = 0; c + 4 <= C; c += 4) vst1q_f32(y + c, vmulq_f32(vmulq_f32(vld1q_f32(x + c), vrs), vld1q_f32(w + c)));
    for (; c < C; c++) y[c] = x[c] * rs * w[c];
    return rs;
}

typedef struct {
    float *y, *rstd;
    const float *x, *w;
    int64_t C;
    float eps;
} rms_args;

static void rmsnorm_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const rms_args *a = arg;
    for (int64_t n = lo; n < hi; n++) {
        const float rs = rmsnorm_row(a->y + n * a->C, a->x + n * a->C, a->w, a->C, a->eps);
        if (a->rstd) a->rstd[n] = rs;
    }
}

static void rmsnorm_fwd_neon(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps) {
    rms_args a = {y, rstd, x, w, C, eps};
    ld_par_for(N, ld_par_grain(C), rmsnorm_part, &a);
}

const ld_kernels ld_kernels_cpu_neon_rows = {
    .name = "cpu-neon",
    .rmsnorm_fwd = rmsnorm_fwd_neon,
};

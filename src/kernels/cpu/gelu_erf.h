/* kernels/cpu/gelu_erf.h — the constants of the vector erf GELU, x Φ(x) with
 * Φ(x) = (1 + erf(x / √2)) / 2, shared by every ISA's version (ops_<isa>.c).
 *
 * With z = |x| / √2:
 *   z <  GERF_Z0   erf(z) = z P(u), u = z² · 2 / Z0² − 1 (u in [−1, 1]), P of degree 5;
 *   z >= GERF_Z0   erfc(z) = e^(−z²) R(v), t = 1 / (1 + z / 2) (z capped at 6), v the map of
 *                  t from [1/4, 1/(1 + Z0/2)] to [−1, 1], R of degree 8 (≈ erfcx(z));
 * Φ(x) = 1 − erfc(z) / 2 for x >= 0, erfc(z) / 2 below. e^(−z²) = e^(−x²/2) is formed as
 * e^(−hi/2) (1 − lo/2) with hi + lo = x² exactly (FMA), so z²'s rounding (which would cost
 * 2 z² ulps) does not enter; the backward's density φ(x) = e^(−x²/2) / √(2π) reuses it.
 * P and R interpolate erf(z)/z and erfcx(z) at Chebyshev nodes (fit errors 1.5e-9 and
 * 8.8e-9 relative); in float the result is within 3.2e-7 of the exact GELU relative to
 * |GELU| + 1e-3 (test_ops_pointwise gelu_erf_matches_ref holds it to 1e-6). */
#ifndef LD_KERNELS_CPU_GELU_ERF_H
#define LD_KERNELS_CPU_GELU_ERF_H

#define GERF_Z0 0.75f
#define GERF_U_SCALE (2.0f / (GERF_Z0 * GERF_Z0))
#define GERF_T_MID ((0.25f + 1.0f / (1.0f + GERF_Z0 / 2)) / 2)
#define GERF_T_SCALE (2.0f / (1.0f / (1.0f + GERF_Z0 / 2) - 0.25f))
#define GERF_Z_CAP 6.0f
#define GERF_SQRT1_2 0.70710678118654752f
#define GERF_INV_SQRT_2PI 0.39894228040143268f

/* P (erf(z)/z on z < Z0) and R (erfcx(z) on Z0 <= z <= 6), lowest degree first */
static const float GERF_P[6] = {1.030952817e+00f, -8.960376716e-02f, 7.314458877e-03f,
                                -4.808715646e-04f, 2.606190820e-05f, -1.189003479e-06f};
static const float GERF_R[9] = {2.458108044e-01f, 1.986998996e-01f, 5.382333850e-02f,
                                8.545461902e-03f, 2.345942740e-04f, -1.698060421e-04f,
                                -1.186505244e-05f, 4.986576875e-06f, 2.369166029e-07f};

#endif

/* kernels/cpu/ops_avx2.c — AVX2 + FMA pointwise kernels (GELU, SiLU, quick_gelu, SwiGLU, GeGLU, soft-cap,
 * add, scale, axpy, dropout), the optimiser kernels (sum of squares, fused AdamW), f32 <-> bf16
 * conversion, and the partial table ld_kernels_cpu_avx2_ops that cpu_table.c overlays at
 * the AVX2 level (with the row-wise kernels of rows_avx2.c). The same formulas as
 * ops_avx512.c on 8-lane vectors (GeGLU and the soft-cap are this level's only: the AVX-512
 * table keeps them).
 *
 * Everything here streams memory once; large arrays are cut into pieces of
 * LD_PAR_MIN floats for the thread team (core/team.h), so results are the same on any
 * number of threads. Semantics: kernels/kernels.h; oracle: kernels/ref/ref_ops_impl.h. */
#include <math.h>

#include "kernels/cpu/gelu_erf.h"
#include "kernels/cpu/ops_avx2.h"
#include "kernels/cpu/simd_avx2.h"

/* The body of a pointwise kernel's piece (core/team.h: a part function with arguments
 * lo_, hi_): runs the statements in __VA_ARGS__ for every 8-float step i of [lo_, hi_),
 * with k the lane mask and `full` set when all 8 lanes are valid. Pieces are LD_PAR_MIN
 * floats, a multiple of 16, so an aligned output stays aligned; the sfence publishes any
 * non-temporal stores before the piece ends. */
#define LD_PIECE(...)                                                               \
    {                                                                               \
        for (int64_t i = lo_; i < hi_; i += 8) {                                  \
            const int full = hi_ - i >= 8;                                          \
            const __m256i k = ld_tail8(hi_ - i);                                    \
            (void)k;                                                                \
            __VA_ARGS__                                                             \
        }                                                                           \
        _mm_sfence();                                                               \
    }

#define LD_LOAD(p) ld_load8((p) + i, k, full)
#define LD_STORE(p, v) ld_store8((p) + i, k, full, (v))
#define LD_ACCUM(p, v) LD_STORE(p, _mm256_add_ps(LD_LOAD(p), (v)))
/* A write-only output: streamed when `strm` (set by LD_STREAM_FOR) */
#define LD_STREAM_FOR(y, n) const int strm = ld_use_stream((y), (n) * (int64_t)sizeof(float))
#define LD_OUT(p, v)                                                                \
    do {                                                                            \
        if (strm && full) _mm256_stream_ps((p) + i, (v));                           \
        else LD_STORE(p, v);                                                        \
    } while (0)

/* ---- activations ---- */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

static inline __m256 one8(void) {
    return _mm256_set1_ps(1.0f);
}

/* 0.5 x (1 + tanh(u)) = x * sigmoid(2u): e = e^(-2u), s = 1 / (1 + e); no cancellation. */
static inline __m256 gelu_e(__m256 x) {
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 u = _mm256_mul_ps(_mm256_set1_ps(GELU_K), _mm256_fmadd_ps(_mm256_set1_ps(GELU_A), _mm256_mul_ps(x2, x), x));
    return ld_exp_neg_clamped8(_mm256_add_ps(u, u));
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} gelu_fwd_args;

static void gelu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const gelu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m256 v = LD_LOAD(x);
        LD_OUT(y, _mm256_div_ps(v, _mm256_add_ps(one8(), gelu_e(v))));
    })
}

static void gelu_fwd(float *y, const float *x, int64_t n) {
    gelu_fwd_args args_ = {y, x, n};
    ld_par_for(n, LD_PAR_MIN, gelu_fwd_part, &args_);
}

/* d/dx x sigmoid(2u) = s + x * s * (1 - s) * 2 u',  1 - s = e s,  u' = K (1 + 3 A x^2). */
typedef struct {
    float *dx;
    const float *dy;
    const float *x;
} gelu_bwd_args;

static void gelu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const gelu_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    LD_PIECE({
        __m256 v = LD_LOAD(x), e = gelu_e(v);
        __m256 s = _mm256_div_ps(one8(), _mm256_add_ps(one8(), e));
        __m256 du2 = _mm256_mul_ps(_mm256_set1_ps(2.0f * GELU_K),
                                   _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_A), _mm256_mul_ps(v, v), one8()));
        __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(v, s), _mm256_mul_ps(e, s)), du2, s);
        LD_ACCUM(dx, _mm256_mul_ps(LD_LOAD(dy), d));
    })
}

static void gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (!dx) return;
    gelu_bwd_args args_ = {dx, dy, x};
    ld_par_for(n, LD_PAR_MIN, gelu_bwd_part, &args_);
}

/* The erf GELU x Φ(x) (constants and method: kernels/cpu/gelu_erf.h). Returns Φ(x) and
 * sets *e = e^(-x²/2). */
static inline __m256 gerf_cdf(__m256 x, __m256 *e) {
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), _mm256_set1_ps(GERF_SQRT1_2));
    const __m256 hi = _mm256_mul_ps(x, x), lo = _mm256_fmsub_ps(x, x, hi);
    *e = _mm256_mul_ps(ld_exp8(_mm256_mul_ps(hi, _mm256_set1_ps(-0.5f))), _mm256_fnmadd_ps(lo, half, one8()));
    /* z < Z0: erfc = 1 - z P(u) */
    const __m256 u = _mm256_fmsub_ps(_mm256_mul_ps(z, z), _mm256_set1_ps(GERF_U_SCALE), one8());
    __m256 p = _mm256_set1_ps(GERF_P[5]);
    for (int i = 4; i >= 0; i--) p = _mm256_fmadd_ps(p, u, _mm256_set1_ps(GERF_P[i]));
    const __m256 small = _mm256_fnmadd_ps(z, p, one8());
    /* z >= Z0: erfc = e R(v) */
    const __m256 t = _mm256_div_ps(one8(), _mm256_fmadd_ps(_mm256_min_ps(z, _mm256_set1_ps(GERF_Z_CAP)), half, one8()));
    const __m256 v = _mm256_mul_ps(_mm256_sub_ps(t, _mm256_set1_ps(GERF_T_MID)), _mm256_set1_ps(GERF_T_SCALE));
    __m256 r = _mm256_set1_ps(GERF_R[8]);
    for (int i = 7; i >= 0; i--) r = _mm256_fmadd_ps(r, v, _mm256_set1_ps(GERF_R[i]));
    const __m256 erfc = _mm256_blendv_ps(_mm256_mul_ps(*e, r), small, _mm256_cmp_ps(z, _mm256_set1_ps(GERF_Z0), _CMP_LT_OQ));
    const __m256 h = _mm256_mul_ps(erfc, half);
    return _mm256_blendv_ps(h, _mm256_sub_ps(one8(), h), _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} gelu_erf_fwd_args;

static void gelu_erf_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const gelu_erf_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m256 v = LD_LOAD(x), e;
        LD_OUT(y, _mm256_mul_ps(v, gerf_cdf(v, &e)));
    })
}

static void gelu_erf_fwd(float *y, const float *x, int64_t n) {
    gelu_erf_fwd_args args_ = {y, x, n};
    ld_par_for(n, LD_PAR_MIN, gelu_erf_fwd_part, &args_);
}

/* d/dx x Φ(x) = Φ(x) + x φ(x) */
typedef struct {
    float *dx;
    const float *dy;
    const float *x;
} gelu_erf_bwd_args;

static void gelu_erf_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const gelu_erf_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    LD_PIECE({
        __m256 v = LD_LOAD(x), e, c = gerf_cdf(v, &e);
        __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(v, _mm256_set1_ps(GERF_INV_SQRT_2PI)), e, c);
        LD_ACCUM(dx, _mm256_mul_ps(LD_LOAD(dy), d));
    })
}

static void gelu_erf_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (!dx) return;
    gelu_erf_bwd_args args_ = {dx, dy, x};
    ld_par_for(n, LD_PAR_MIN, gelu_erf_bwd_part, &args_);
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} silu_fwd_args;

static void silu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const silu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m256 v = LD_LOAD(x);
        LD_OUT(y, _mm256_div_ps(v, _mm256_add_ps(one8(), ld_exp_neg_clamped8(v))));
    })
}

static void silu_fwd(float *y, const float *x, int64_t n) {
    silu_fwd_args args_ = {y, x, n};
    ld_par_for(n, LD_PAR_MIN, silu_fwd_part, &args_);
}

/* silu'(x) = s (1 + x (1 - s)), 1 - s = e s with e = e^-x. */
static inline __m256 silu_grad(__m256 v, __m256 *silu) {
    __m256 e = ld_exp_neg_clamped8(v), s = _mm256_div_ps(one8(), _mm256_add_ps(one8(), e));
    *silu = _mm256_mul_ps(v, s);
    return _mm256_mul_ps(s, _mm256_fmadd_ps(*silu, e, one8()));
}

typedef struct {
    float *dx;
    const float *dy;
    const float *x;
} silu_bwd_args;

static void silu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const silu_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    LD_PIECE({
        __m256 sv, d = silu_grad(LD_LOAD(x), &sv);
        LD_ACCUM(dx, _mm256_mul_ps(LD_LOAD(dy), d));
    })
}

static void silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (!dx) return;
    silu_bwd_args args_ = {dx, dy, x};
    ld_par_for(n, LD_PAR_MIN, silu_bwd_part, &args_);
}

/* CLIP's quick_gelu x sigmoid(1.702 x): silu's form at a = 1.702 x; the derivative
 * s (1 + a (1 - s)) with 1 - s = e s, e = e^-a. */
#define QUICK_GELU_A 1.702f

static void quick_gelu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const silu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m256 v = LD_LOAD(x), e = ld_exp_neg_clamped8(_mm256_mul_ps(_mm256_set1_ps(QUICK_GELU_A), v));
        LD_OUT(y, _mm256_div_ps(v, _mm256_add_ps(one8(), e)));
    })
}

static void quick_gelu_fwd(float *y, const float *x, int64_t n) {
    silu_fwd_args args_ = {y, x, n};
    ld_par_for(n, LD_PAR_MIN, quick_gelu_fwd_part, &args_);
}

static void quick_gelu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const silu_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    LD_PIECE({
        __m256 a = _mm256_mul_ps(_mm256_set1_ps(QUICK_GELU_A), LD_LOAD(x)), sa, d = silu_grad(a, &sa);
        (void)sa;
        LD_ACCUM(dx, _mm256_mul_ps(LD_LOAD(dy), d));
    })
}

static void quick_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (!dx) return;
    silu_bwd_args args_ = {dx, dy, x};
    ld_par_for(n, LD_PAR_MIN, quick_gelu_bwd_part, &args_);
}

typedef struct {
    float *y;
    const float *gate;
    const float *up;
    int64_t n;
} swiglu_fwd_args;

static void swiglu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const swiglu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *gate = args_->gate;
    const float *up = args_->up;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m256 g = LD_LOAD(gate);
        __m256 sv = _mm256_div_ps(g, _mm256_add_ps(one8(), ld_exp_neg_clamped8(g)));
        LD_OUT(y, _mm256_mul_ps(sv, LD_LOAD(up)));
    })
}

static void swiglu_fwd(float *y, const float *gate, const float *up, int64_t n) {
    swiglu_fwd_args args_ = {y, gate, up, n};
    ld_par_for(n, LD_PAR_MIN, swiglu_fwd_part, &args_);
}

typedef struct {
    float *dgate;
    float *dup;
    const float *dy;
    const float *gate;
    const float *up;
} swiglu_bwd_args;

static void swiglu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const swiglu_bwd_args *args_ = arg;
    float *dgate = args_->dgate;
    float *dup = args_->dup;
    const float *dy = args_->dy;
    const float *gate = args_->gate;
    const float *up = args_->up;
    LD_PIECE({
        __m256 sv, d = silu_grad(LD_LOAD(gate), &sv), g = LD_LOAD(dy);
        if (dgate) LD_ACCUM(dgate, _mm256_mul_ps(_mm256_mul_ps(g, LD_LOAD(up)), d));
        if (dup) LD_ACCUM(dup, _mm256_mul_ps(g, sv));
    })
}

static void swiglu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up, int64_t n) {
    if (!dgate && !dup) return;
    swiglu_bwd_args args_ = {dgate, dup, dy, gate, up};
    ld_par_for(n, LD_PAR_MIN, swiglu_bwd_part, &args_);
}

/* GeGLU (Gemma): gelu_tanh(gate) * up, with gelu's x sigmoid(2u) form and derivative. */
typedef struct {
    float *y;
    const float *gate;
    const float *up;
    int64_t n;
} geglu_fwd_args;

static void geglu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const geglu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *gate = args_->gate;
    const float *up = args_->up;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m256 v = LD_LOAD(gate);
        LD_OUT(y, _mm256_mul_ps(_mm256_div_ps(v, _mm256_add_ps(one8(), gelu_e(v))), LD_LOAD(up)));
    })
}

static void geglu_fwd(float *y, const float *gate, const float *up, int64_t n) {
    geglu_fwd_args args_ = {y, gate, up, n};
    ld_par_for(n, LD_PAR_MIN, geglu_fwd_part, &args_);
}

typedef struct {
    float *dgate;
    float *dup;
    const float *dy;
    const float *gate;
    const float *up;
} geglu_bwd_args;

static void geglu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const geglu_bwd_args *args_ = arg;
    float *dgate = args_->dgate;
    float *dup = args_->dup;
    const float *dy = args_->dy;
    const float *gate = args_->gate;
    const float *up = args_->up;
    LD_PIECE({
        __m256 v = LD_LOAD(gate), e = gelu_e(v), g = LD_LOAD(dy);
        __m256 s = _mm256_div_ps(one8(), _mm256_add_ps(one8(), e));
        if (dgate) {
            __m256 du2 = _mm256_mul_ps(_mm256_set1_ps(2.0f * GELU_K),
                                       _mm256_fmadd_ps(_mm256_set1_ps(3.0f * GELU_A), _mm256_mul_ps(v, v), one8()));
            __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(v, s), _mm256_mul_ps(e, s)), du2, s);
            LD_ACCUM(dgate, _mm256_mul_ps(_mm256_mul_ps(g, LD_LOAD(up)), d));
        }
        if (dup) LD_ACCUM(dup, _mm256_mul_ps(g, _mm256_mul_ps(v, s)));
    })
}

static void geglu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up, int64_t n) {
    if (!dgate && !dup) return;
    geglu_bwd_args args_ = {dgate, dup, dy, gate, up};
    ld_par_for(n, LD_PAR_MIN, geglu_bwd_part, &args_);
}

/* Soft-capping (Gemma 2): cap tanh(x / cap). */
typedef struct {
    float *y;
    const float *x;
    float cap;
    int64_t n;
} softcap_fwd_args;

static void softcap_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const softcap_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    float cap = args_->cap;
    int64_t n = args_->n;
    const __m256 c = _mm256_set1_ps(cap), ic = _mm256_set1_ps(1.0f / cap);
    LD_STREAM_FOR(y, n);
    LD_PIECE({ LD_OUT(y, _mm256_mul_ps(c, ld_tanh8(_mm256_mul_ps(LD_LOAD(x), ic), NULL))); })
}

static void softcap_fwd(float *y, const float *x, float cap, int64_t n) {
    softcap_fwd_args args_ = {y, x, cap, n};
    ld_par_for(n, LD_PAR_MIN, softcap_fwd_part, &args_);
}

typedef struct {
    float *dx;
    const float *dy;
    const float *x;
    float cap;
} softcap_bwd_args;

static void softcap_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const softcap_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    float cap = args_->cap;
    const __m256 ic = _mm256_set1_ps(1.0f / cap);
    LD_PIECE({
        __m256 s2;
        (void)ld_tanh8(_mm256_mul_ps(LD_LOAD(x), ic), &s2);
        LD_ACCUM(dx, _mm256_mul_ps(LD_LOAD(dy), s2));
    })
}

static void softcap_bwd(float *dx, const float *dy, const float *x, float cap, int64_t n) {
    if (!dx) return;
    softcap_bwd_args args_ = {dx, dy, x, cap};
    ld_par_for(n, LD_PAR_MIN, softcap_bwd_part, &args_);
}

/* ---- linear pointwise ---- */

typedef struct {
    float *y;
    const float *a;
    const float *b;
    int64_t n;
} add_fwd_args;

static void add_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const add_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *a = args_->a;
    const float *b = args_->b;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({ LD_OUT(y, _mm256_add_ps(LD_LOAD(a), LD_LOAD(b))); })
}

static void add_fwd(float *y, const float *a, const float *b, int64_t n) {
    add_fwd_args args_ = {y, a, b, n};
    ld_par_for(n, LD_PAR_MIN, add_fwd_part, &args_);
}

typedef struct {
    float *y;
    const float *x;
} add_inplace_args;

static void add_inplace_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const add_inplace_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    LD_PIECE({ LD_ACCUM(y, LD_LOAD(x)); })
}

static void add_inplace(float *y, const float *x, int64_t n) {
    add_inplace_args args_ = {y, x};
    ld_par_for(n, LD_PAR_MIN, add_inplace_part, &args_);
}

typedef struct {
    float *y;
    const float *x;
    float alpha;
    int64_t n;
} scale_fwd_args;

static void scale_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const scale_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    float alpha = args_->alpha;
    int64_t n = args_->n;
    const __m256 a = _mm256_set1_ps(alpha);
    LD_STREAM_FOR(y, n);
    LD_PIECE({ LD_OUT(y, _mm256_mul_ps(a, LD_LOAD(x))); })
}

static void scale_fwd(float *y, const float *x, float alpha, int64_t n) {
    scale_fwd_args args_ = {y, x, alpha, n};
    ld_par_for(n, LD_PAR_MIN, scale_fwd_part, &args_);
}

typedef struct {
    float *y;
    float alpha;
    const float *x;
} axpy_args;

static void axpy_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const axpy_args *args_ = arg;
    float *y = args_->y;
    float alpha = args_->alpha;
    const float *x = args_->x;
    const __m256 a = _mm256_set1_ps(alpha);
    LD_PIECE({ LD_ACCUM(y, _mm256_mul_ps(a, LD_LOAD(x))); })
}

static void axpy(float *y, float alpha, const float *x, int64_t n) {
    axpy_args args_ = {y, alpha, x};
    ld_par_for(n, LD_PAR_MIN, axpy_part, &args_);
}

/* ---- dropout: the mask is ld_rng_at(seed, offset + i) >> 40 >= p * 2^24, vectorized ---- */

/* a * b mod 2^64 on 4 lanes (AVX2 has no 64-bit multiply): lo*lo + (lo*hi + hi*lo) << 32. */
static inline __m256i mul64(__m256i a, __m256i b) {
    const __m256i lo = _mm256_mul_epu32(a, b);
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b), _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32)));
    return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

/* splitmix64 finaliser on 4 lanes (the same steps as ld_rng_at in core/rng.c). */
static inline __m256i mix64(__m256i z) {
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), _mm256_set1_epi64x((long long)0xBF58476D1CE4E5B9ULL));
    z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), _mm256_set1_epi64x((long long)0x94D049BB133111EBULL));
    return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

/* Keep-mask (all-ones lanes) of the 8 elements offset + i .. offset + i + 7. */
static inline __m256 dropout_keep8(uint64_t seed, uint64_t offset, int64_t i, __m256 thresh) {
    const uint64_t K = 0x9E3779B97F4A7C15ULL, base = (seed ^ 0x2545F4914F6CDD1DULL) * 0xD1B54A32D192ED03ULL;
    const uint64_t z0 = base + (offset + (uint64_t)i + 1) * K; /* wrapping like the scalar code */
    const __m256i step = _mm256_setr_epi64x(0, (long long)K, (long long)(2 * K), (long long)(3 * K));
    const __m256i za = mix64(_mm256_add_epi64(_mm256_set1_epi64x((long long)z0), step));
    const __m256i zb = mix64(_mm256_add_epi64(_mm256_set1_epi64x((long long)(z0 + 4 * K)), step));
    /* the top 24 bits of each: lanes (a0 a1 a2 a3 b0 b1 b2 b3) as int32 */
    const __m256i ua = _mm256_srli_epi64(za, 40), ub = _mm256_srli_epi64(zb, 40);
    const __m256i packed = _mm256_permutevar8x32_epi32(_mm256_or_si256(ua, _mm256_slli_epi64(ub, 32)),
                                                       _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    const __m256 u = _mm256_cvtepi32_ps(packed); /* < 2^24: exact */
    return _mm256_cmp_ps(u, thresh, _CMP_GE_OQ);
}

typedef struct {
    float *y;
    const float *x;
    float p;
    uint64_t seed;
    uint64_t offset;
    int64_t n;
} dropout_fwd_args;

static void dropout_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const dropout_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    float p = args_->p;
    uint64_t seed = args_->seed;
    uint64_t offset = args_->offset;
    int64_t n = args_->n;
    const __m256 scale = _mm256_set1_ps((float)(1.0 / (1.0 - (double)p)));
    const __m256 thresh = _mm256_set1_ps(p * 16777216.0f);
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        const __m256 keep = dropout_keep8(seed, offset, i, thresh);
        LD_OUT(y, _mm256_and_ps(keep, _mm256_mul_ps(LD_LOAD(x), scale)));
    })
}

static void dropout_fwd(float *y, const float *x, float p, uint64_t seed, uint64_t offset, int64_t n) {
    dropout_fwd_args args_ = {y, x, p, seed, offset, n};
    ld_par_for(n, LD_PAR_MIN, dropout_fwd_part, &args_);
}

typedef struct {
    float *dx;
    const float *dy;
    float p;
    uint64_t seed;
    uint64_t offset;
} dropout_bwd_args;

static void dropout_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const dropout_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    float p = args_->p;
    uint64_t seed = args_->seed;
    uint64_t offset = args_->offset;
    const __m256 scale = _mm256_set1_ps((float)(1.0 / (1.0 - (double)p)));
    const __m256 thresh = _mm256_set1_ps(p * 16777216.0f);
    LD_PIECE({
        const __m256 keep = dropout_keep8(seed, offset, i, thresh);
        const __m256 old = LD_LOAD(dx);
        LD_STORE(dx, _mm256_blendv_ps(old, _mm256_add_ps(old, _mm256_mul_ps(LD_LOAD(dy), scale)), keep));
    })
}

static void dropout_bwd(float *dx, const float *dy, float p, uint64_t seed, uint64_t offset, int64_t n) {
    if (!dx) return;
    dropout_bwd_args args_ = {dx, dy, p, seed, offset};
    ld_par_for(n, LD_PAR_MIN, dropout_bwd_part, &args_);
}

/* ---- bf16 rounding (round to nearest even, NaN stays a quiet NaN, as ld_fp32_to_bf16),
 * 8 floats to 8 bf16 ---- */
static inline __m128i bf16_round(__m256 x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)), nan);
    /* 32 -> 16 bits: values are < 2^16, so the unsigned saturating pack is exact */
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}

/* Stores the first `valid` of 8 bf16 values. */
static inline void store_bf16(uint16_t *p, __m128i v, int64_t valid) {
    if (valid >= 8) {
        _mm_storeu_si128((__m128i *)p, v);
        return;
    }
    uint16_t tmp[8];
    _mm_storeu_si128((__m128i *)tmp, v);
    for (int64_t j = 0; j < valid; j++) p[j] = tmp[j];
}

/* ---- optimiser ---- */

/* Squares summed in double lanes over each piece, then the pieces' sums added in piece
 * order: the same bits on any number of threads. */
typedef struct {
    const float *x;
    double *part; /* per piece */
} sumsq_args;

static void sumsq_part(void *arg, int64_t lo, int64_t hi, int piece) {
    const sumsq_args *a = arg;
    const float *x = a->x;
        __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int64_t i = lo; i < hi; i += 8) {
        const __m256 v = ld_load8(x + i, ld_tail8(hi - i), hi - i >= 8);
        const __m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        a0 = _mm256_fmadd_pd(d0, d0, a0);
        a1 = _mm256_fmadd_pd(d1, d1, a1);
    }
    a->part[piece] = ld_hsum4d(_mm256_add_pd(a0, a1));
}

static double sumsq(const float *x, int64_t n) {
    double part[LD_PAR_MAX_PIECES];
    sumsq_args a = {x, part};
    ld_par_for(n, LD_PAR_MIN, sumsq_part, &a);
    double s = 0;
    for (int p = 0; p < ld_par_pieces(n, LD_PAR_MIN); p++) s += part[p];
    return s;
}

/* One pass: reads param, grad, m, v; writes param, m, v and the bf16 copy. */
typedef struct {
    float *param;
    const float *grad;
    float *m;
    float *v;
    uint16_t *param_bf16;
    const ld_adamw_params *p;
} adamw_args;

static void adamw_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const adamw_args *args_ = arg;
    float *param = args_->param;
    const float *grad = args_->grad;
    float *m = args_->m;
    float *v = args_->v;
    uint16_t *param_bf16 = args_->param_bf16;
    const ld_adamw_params *p = args_->p;
    double bc1 = 1.0 - pow((double)p->beta1, (double)p->step), bc2 = 1.0 - pow((double)p->beta2, (double)p->step);
    const __m256 gs = _mm256_set1_ps(p->grad_scale), b1 = _mm256_set1_ps(p->beta1), b2 = _mm256_set1_ps(p->beta2);
    const __m256 c1 = _mm256_set1_ps((float)(1.0 - (double)p->beta1)), c2 = _mm256_set1_ps((float)(1.0 - (double)p->beta2));
    const __m256 ib1 = _mm256_set1_ps((float)(1.0 / bc1)), ib2 = _mm256_set1_ps((float)(1.0 / bc2));
    const __m256 eps = _mm256_set1_ps(p->eps), lr = _mm256_set1_ps(p->lr), wd = _mm256_set1_ps(p->weight_decay);
    LD_PIECE({
        __m256 g = _mm256_mul_ps(LD_LOAD(grad), gs);
        __m256 mi = _mm256_fmadd_ps(b1, LD_LOAD(m), _mm256_mul_ps(c1, g));
        __m256 vi = _mm256_fmadd_ps(b2, LD_LOAD(v), _mm256_mul_ps(_mm256_mul_ps(c2, g), g));
        LD_STORE(m, mi);
        LD_STORE(v, vi);
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, ib2)), eps);
        __m256 w = LD_LOAD(param);
        __m256 upd = _mm256_fmadd_ps(wd, w, _mm256_div_ps(_mm256_mul_ps(mi, ib1), den));
        w = _mm256_fnmadd_ps(lr, upd, w);
        LD_STORE(param, w);
        if (param_bf16) store_bf16(param_bf16 + i, bf16_round(w), hi_ - i);
    })
}

static void adamw(float *param, const float *grad, float *m, float *v, uint16_t *param_bf16, int64_t n,
                  const ld_adamw_params *p) {
    adamw_args args_ = {param, grad, m, v, param_bf16, p};
    ld_par_for(n, LD_PAR_MIN, adamw_part, &args_);
}

/* ---- conversions ---- */

typedef struct {
    uint16_t *dst;
    const float *src;
} f32_to_bf16_args;

static void f32_to_bf16_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const f32_to_bf16_args *args_ = arg;
    uint16_t *dst = args_->dst;
    const float *src = args_->src;
    LD_PIECE({ store_bf16(dst + i, bf16_round(LD_LOAD(src)), hi_ - i); })
}

static void f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    f32_to_bf16_args args_ = {dst, src};
    ld_par_for(n, LD_PAR_MIN, f32_to_bf16_part, &args_);
}

typedef struct {
    float *dst;
    const uint16_t *src;
    int64_t n;
} bf16_to_f32_args;

static void bf16_to_f32_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const bf16_to_f32_args *args_ = arg;
    float *dst = args_->dst;
    const uint16_t *src = args_->src;
    int64_t n = args_->n;
    LD_STREAM_FOR(dst, n);
    LD_PIECE({
        __m128i h;
        if (full) h = _mm_loadu_si128((const __m128i *)(src + i));
        else {
            uint16_t tmp[8] = {0};
            for (int64_t j = 0; j < hi_ - i; j++) tmp[j] = src[i + j];
            h = _mm_loadu_si128((const __m128i *)tmp);
        }
        LD_OUT(dst, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
    })
}

static void bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    bf16_to_f32_args args_ = {dst, src, n};
    ld_par_for(n, LD_PAR_MIN, bf16_to_f32_part, &args_);
}

/* The entries this file and rows_avx2.c provide; cpu_table.c overlays them at the AVX2
 * level (AVX2 + FMA + F16C). */
const ld_kernels ld_kernels_cpu_avx2_ops = {
    .name = "cpu-avx2-ops",
    .embedding_fwd = ld_avx2_embedding_fwd,
    .embedding_bwd = ld_avx2_embedding_bwd,
    .layernorm_fwd = ld_avx2_layernorm_fwd,
    .layernorm_bwd = ld_avx2_layernorm_bwd,
    .rmsnorm_fwd = ld_avx2_rmsnorm_fwd,
    .rmsnorm_bwd = ld_avx2_rmsnorm_bwd,
    .rope_fwd = ld_avx2_rope_fwd,
    .rope_bwd = ld_avx2_rope_bwd,
    .rope_freq_fwd = ld_avx2_rope_freq_fwd,
    .rope_freq_bwd = ld_avx2_rope_freq_bwd,
    .softmax_fwd = ld_avx2_softmax_fwd,
    .softmax_bwd = ld_avx2_softmax_bwd,
    .xent_fwd = ld_avx2_xent_fwd,
    .xent_bwd = ld_avx2_xent_bwd,
    .distill_fwd = ld_avx2_distill_fwd,
    .distill_bwd = ld_avx2_distill_bwd,
    .gelu_fwd = gelu_fwd,
    .gelu_bwd = gelu_bwd,
    .gelu_erf_fwd = gelu_erf_fwd,
    .gelu_erf_bwd = gelu_erf_bwd,
    .silu_fwd = silu_fwd,
    .silu_bwd = silu_bwd,
    .quick_gelu_fwd = quick_gelu_fwd,
    .quick_gelu_bwd = quick_gelu_bwd,
    .swiglu_fwd = swiglu_fwd,
    .swiglu_bwd = swiglu_bwd,
    .geglu_fwd = geglu_fwd,
    .geglu_bwd = geglu_bwd,
    .softcap_fwd = softcap_fwd,
    .softcap_bwd = softcap_bwd,
    .add_fwd = add_fwd,
    .add_inplace = add_inplace,
    .scale_fwd = scale_fwd,
    .axpy = axpy,
    .dropout_fwd = dropout_fwd,
    .dropout_bwd = dropout_bwd,
    .sumsq = sumsq,
    .adamw = adamw,
    .f32_to_bf16 = f32_to_bf16,
    .bf16_to_f32 = bf16_to_f32,
};

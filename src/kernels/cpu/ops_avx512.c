/* kernels/cpu/ops_avx512.c — AVX-512 pointwise kernels (GELU, erf GELU, SiLU, SwiGLU, add,
 * scale, axpy, dropout), the optimiser kernels (sum of squares, fused AdamW), f32 <-> bf16
 * conversion, and the partial table ld_kernels_cpu_avx512_ops that cpu_table.c overlays
 * (together with the row-wise kernels of rows_avx512.c).
 *
 * Everything here streams memory once; large arrays are cut into pieces of
 * LD_PAR_MIN floats for the thread team (core/team.h), so results are the same on any
 * number of threads. Semantics: kernels/kernels.h; oracle: kernels/ref/ref_ops_impl.h. */
#include <math.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gelu_erf.h"
#include "kernels/cpu/ops_avx512.h"
#include "kernels/cpu/simd_avx512.h"

/* The body of a pointwise kernel's piece (core/team.h: a part function with arguments
 * lo_, hi_): runs the statements in __VA_ARGS__ for every 16-float step i of [lo_, hi_),
 * with k the mask of valid lanes. Pieces are LD_PAR_MIN floats, a multiple of 16, so an
 * aligned output stays aligned; the sfence publishes any non-temporal stores before the
 * piece ends. */
#define LD_PIECE(...)                                                               \
    {                                                                               \
        for (int64_t i = lo_; i < hi_; i += 16) {                                  \
            __mmask16 k = ld_tail16(hi_ - i);                                       \
            __VA_ARGS__                                                             \
        }                                                                           \
        _mm_sfence();                                                               \
    }

#define LD_LOAD(p) _mm512_maskz_loadu_ps(k, (p) + i)
#define LD_STORE(p, v) _mm512_mask_storeu_ps((p) + i, k, (v))
#define LD_ACCUM(p, v) LD_STORE(p, _mm512_add_ps(LD_LOAD(p), (v)))
/* A write-only output: streamed when `strm` (set by LD_STREAM_FOR) */
#define LD_STREAM_FOR(y, n) const int strm = ld_use_stream((y), (n) * (int64_t)sizeof(float))
#define LD_OUT(p, v) ld_store_out((p) + i, k, (v), strm)

/* ---- activations ---- */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

/* 0.5 x (1 + tanh(u)) = x * sigmoid(2u): e = e^(-2u), s = 1 / (1 + e); no cancellation. */
static inline __m512 gelu_e(__m512 x) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 u = _mm512_mul_ps(_mm512_set1_ps(GELU_K), _mm512_fmadd_ps(_mm512_set1_ps(GELU_A), _mm512_mul_ps(x2, x), x));
    return ld_exp_neg_clamped512(_mm512_add_ps(u, u));
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} ld_avx512_gelu_fwd_args;

static void ld_avx512_gelu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_gelu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    int64_t n = args_->n;
    const __m512 one = _mm512_set1_ps(1.0f);
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m512 v = LD_LOAD(x);
        LD_OUT(y, _mm512_mul_ps(v, ld_recip512(_mm512_add_ps(one, gelu_e(v)))));
    })
}

static void ld_avx512_gelu_fwd(float *y, const float *x, int64_t n) {
    ld_avx512_gelu_fwd_args args_ = {y, x, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_gelu_fwd_part, &args_);
}

/* d/dx x sigmoid(2u) = s + x * s * (1 - s) * 2 u',  1 - s = e s,  u' = K (1 + 3 A x^2). */
typedef struct {
    float *dx;
    const float *dy;
    const float *x;
} ld_avx512_gelu_bwd_args;

static void ld_avx512_gelu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_gelu_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    const __m512 one = _mm512_set1_ps(1.0f);
    LD_PIECE({
        __m512 v = LD_LOAD(x), e = gelu_e(v);
        __m512 s = ld_recip512(_mm512_add_ps(one, e));
        __m512 du2 = _mm512_mul_ps(_mm512_set1_ps(2.0f * GELU_K),
                                   _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_A), _mm512_mul_ps(v, v), one));
        __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(v, s), _mm512_mul_ps(e, s)), du2, s);
        LD_ACCUM(dx, _mm512_mul_ps(LD_LOAD(dy), d));
    })
}

static void ld_avx512_gelu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (!dx) return;
    ld_avx512_gelu_bwd_args args_ = {dx, dy, x};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_gelu_bwd_part, &args_);
}

/* The erf GELU x Φ(x) (constants and method: kernels/cpu/gelu_erf.h; ops_avx2.c's gerf_cdf
 * on 16 lanes). Returns Φ(x) and sets *e = e^(-x²/2). */
static inline __m512 gerf_cdf512(__m512 x, __m512 *e) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(GERF_SQRT1_2));
    const __m512 hi = _mm512_mul_ps(x, x), lo = _mm512_fmsub_ps(x, x, hi);
    *e = _mm512_mul_ps(ld_exp512(_mm512_mul_ps(hi, _mm512_set1_ps(-0.5f))), _mm512_fnmadd_ps(lo, half, one));
    /* z < Z0: erfc = 1 - z P(u) */
    const __m512 u = _mm512_fmsub_ps(_mm512_mul_ps(z, z), _mm512_set1_ps(GERF_U_SCALE), one);
    __m512 p = _mm512_set1_ps(GERF_P[5]);
    for (int i = 4; i >= 0; i--) p = _mm512_fmadd_ps(p, u, _mm512_set1_ps(GERF_P[i]));
    const __m512 small = _mm512_fnmadd_ps(z, p, one);
    /* z >= Z0: erfc = e R(v) */
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_min_ps(z, _mm512_set1_ps(GERF_Z_CAP)), half, one));
    const __m512 v = _mm512_mul_ps(_mm512_sub_ps(t, _mm512_set1_ps(GERF_T_MID)), _mm512_set1_ps(GERF_T_SCALE));
    __m512 r = _mm512_set1_ps(GERF_R[8]);
    for (int i = 7; i >= 0; i--) r = _mm512_fmadd_ps(r, v, _mm512_set1_ps(GERF_R[i]));
    const __m512 erfc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_set1_ps(GERF_Z0), _CMP_LT_OQ),
                                             _mm512_mul_ps(*e, r), small);
    const __m512 h = _mm512_mul_ps(erfc, half);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), h, _mm512_sub_ps(one, h));
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} ld_avx512_gelu_erf_fwd_args;

static void ld_avx512_gelu_erf_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_gelu_erf_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m512 v = LD_LOAD(x), e;
        LD_OUT(y, _mm512_mul_ps(v, gerf_cdf512(v, &e)));
    })
}

static void ld_avx512_gelu_erf_fwd(float *y, const float *x, int64_t n) {
    ld_avx512_gelu_erf_fwd_args args_ = {y, x, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_gelu_erf_fwd_part, &args_);
}

/* d/dx x Φ(x) = Φ(x) + x φ(x) */
typedef struct {
    float *dx;
    const float *dy;
    const float *x;
} ld_avx512_gelu_erf_bwd_args;

static void ld_avx512_gelu_erf_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_gelu_erf_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    LD_PIECE({
        __m512 v = LD_LOAD(x), e, c = gerf_cdf512(v, &e);
        __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(v, _mm512_set1_ps(GERF_INV_SQRT_2PI)), e, c);
        LD_ACCUM(dx, _mm512_mul_ps(LD_LOAD(dy), d));
    })
}

static void ld_avx512_gelu_erf_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (!dx) return;
    ld_avx512_gelu_erf_bwd_args args_ = {dx, dy, x};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_gelu_erf_bwd_part, &args_);
}

typedef struct {
    float *y;
    const float *x;
    int64_t n;
} ld_avx512_silu_fwd_args;

static void ld_avx512_silu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_silu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    int64_t n = args_->n;
    const __m512 one = _mm512_set1_ps(1.0f);
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m512 v = LD_LOAD(x);
        LD_OUT(y, _mm512_mul_ps(v, ld_recip512(_mm512_add_ps(one, ld_exp_neg_clamped512(v)))));
    })
}

static void ld_avx512_silu_fwd(float *y, const float *x, int64_t n) {
    ld_avx512_silu_fwd_args args_ = {y, x, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_silu_fwd_part, &args_);
}

/* silu'(x) = s (1 + x (1 - s)), 1 - s = e s with e = e^-x. */
static inline __m512 silu_grad(__m512 v, __m512 *silu) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = ld_exp_neg_clamped512(v), s = ld_recip512(_mm512_add_ps(one, e));
    *silu = _mm512_mul_ps(v, s);
    return _mm512_mul_ps(s, _mm512_fmadd_ps(*silu, e, one));
}

typedef struct {
    float *dx;
    const float *dy;
    const float *x;
} ld_avx512_silu_bwd_args;

static void ld_avx512_silu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_silu_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    const float *x = args_->x;
    LD_PIECE({
        __m512 sv, d = silu_grad(LD_LOAD(x), &sv);
        LD_ACCUM(dx, _mm512_mul_ps(LD_LOAD(dy), d));
    })
}

static void ld_avx512_silu_bwd(float *dx, const float *dy, const float *x, int64_t n) {
    if (!dx) return;
    ld_avx512_silu_bwd_args args_ = {dx, dy, x};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_silu_bwd_part, &args_);
}

typedef struct {
    float *y;
    const float *gate;
    const float *up;
    int64_t n;
} ld_avx512_swiglu_fwd_args;

static void ld_avx512_swiglu_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_swiglu_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *gate = args_->gate;
    const float *up = args_->up;
    int64_t n = args_->n;
    const __m512 one = _mm512_set1_ps(1.0f);
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __m512 g = LD_LOAD(gate);
        __m512 sv = _mm512_mul_ps(g, ld_recip512(_mm512_add_ps(one, ld_exp_neg_clamped512(g))));
        LD_OUT(y, _mm512_mul_ps(sv, LD_LOAD(up)));
    })
}

static void ld_avx512_swiglu_fwd(float *y, const float *gate, const float *up, int64_t n) {
    ld_avx512_swiglu_fwd_args args_ = {y, gate, up, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_swiglu_fwd_part, &args_);
}

typedef struct {
    float *dgate;
    float *dup;
    const float *dy;
    const float *gate;
    const float *up;
} ld_avx512_swiglu_bwd_args;

static void ld_avx512_swiglu_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_swiglu_bwd_args *args_ = arg;
    float *dgate = args_->dgate;
    float *dup = args_->dup;
    const float *dy = args_->dy;
    const float *gate = args_->gate;
    const float *up = args_->up;
    LD_PIECE({
        __m512 sv, d = silu_grad(LD_LOAD(gate), &sv), g = LD_LOAD(dy);
        if (dgate) LD_ACCUM(dgate, _mm512_mul_ps(_mm512_mul_ps(g, LD_LOAD(up)), d));
        if (dup) LD_ACCUM(dup, _mm512_mul_ps(g, sv));
    })
}

static void ld_avx512_swiglu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                          int64_t n) {
    if (!dgate && !dup) return;
    ld_avx512_swiglu_bwd_args args_ = {dgate, dup, dy, gate, up};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_swiglu_bwd_part, &args_);
}

/* ---- linear pointwise ---- */

typedef struct {
    float *y;
    const float *a;
    const float *b;
    int64_t n;
} ld_avx512_add_fwd_args;

static void ld_avx512_add_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_add_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *a = args_->a;
    const float *b = args_->b;
    int64_t n = args_->n;
    LD_STREAM_FOR(y, n);
    LD_PIECE({ LD_OUT(y, _mm512_add_ps(LD_LOAD(a), LD_LOAD(b))); })
}

static void ld_avx512_add_fwd(float *y, const float *a, const float *b, int64_t n) {
    ld_avx512_add_fwd_args args_ = {y, a, b, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_add_fwd_part, &args_);
}

typedef struct {
    float *y;
    const float *x;
} ld_avx512_add_inplace_args;

static void ld_avx512_add_inplace_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_add_inplace_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    LD_PIECE({ LD_ACCUM(y, LD_LOAD(x)); })
}

static void ld_avx512_add_inplace(float *y, const float *x, int64_t n) {
    ld_avx512_add_inplace_args args_ = {y, x};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_add_inplace_part, &args_);
}

typedef struct {
    float *y;
    const float *x;
    float alpha;
    int64_t n;
} ld_avx512_scale_fwd_args;

static void ld_avx512_scale_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_scale_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    float alpha = args_->alpha;
    int64_t n = args_->n;
    const __m512 a = _mm512_set1_ps(alpha);
    LD_STREAM_FOR(y, n);
    LD_PIECE({ LD_OUT(y, _mm512_mul_ps(a, LD_LOAD(x))); })
}

static void ld_avx512_scale_fwd(float *y, const float *x, float alpha, int64_t n) {
    ld_avx512_scale_fwd_args args_ = {y, x, alpha, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_scale_fwd_part, &args_);
}

typedef struct {
    float *y;
    float alpha;
    const float *x;
} ld_avx512_axpy_args;

static void ld_avx512_axpy_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_axpy_args *args_ = arg;
    float *y = args_->y;
    float alpha = args_->alpha;
    const float *x = args_->x;
    const __m512 a = _mm512_set1_ps(alpha);
    LD_PIECE({ LD_ACCUM(y, _mm512_mul_ps(a, LD_LOAD(x))); })
}

static void ld_avx512_axpy(float *y, float alpha, const float *x, int64_t n) {
    ld_avx512_axpy_args args_ = {y, alpha, x};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_axpy_part, &args_);
}

/* ---- dropout: the mask is ld_rng_at(seed, offset + i) >> 40 >= p * 2^24, vectorized ---- */

/* splitmix64 finaliser on 8 lanes (the same steps as ld_rng_at in core/rng.c). */
static inline __m512i mix64(__m512i z) {
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)0x94D049BB133111EBULL));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/* Keep-mask of the 16 elements offset + i .. offset + i + 15. */
static inline __mmask16 dropout_keep16(uint64_t seed, uint64_t offset, int64_t i, __m512 thresh) {
    const uint64_t K = 0x9E3779B97F4A7C15ULL;
    uint64_t base = (seed ^ 0x2545F4914F6CDD1DULL) * 0xD1B54A32D192ED03ULL;
    /* z_j = base + (offset + i + j + 1) * K, wrapping like the scalar code */
    __m512i idx = _mm512_add_epi64(_mm512_set1_epi64((long long)(offset + (uint64_t)i + 1)),
                                   _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
    __m512i kk = _mm512_set1_epi64((long long)K), bb = _mm512_set1_epi64((long long)base);
    __m512i z0 = mix64(_mm512_add_epi64(bb, _mm512_mullo_epi64(idx, kk)));
    __m512i z1 = mix64(_mm512_add_epi64(bb, _mm512_mullo_epi64(_mm512_add_epi64(idx, _mm512_set1_epi64(8)), kk)));
    __m256i u0 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(z0, 40)), u1 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(z1, 40));
    __m512 u = _mm512_cvtepi32_ps(_mm512_inserti64x4(_mm512_castsi256_si512(u0), u1, 1));
    return _mm512_cmp_ps_mask(u, thresh, _CMP_GE_OQ); /* u < 2^24 converts exactly */
}

typedef struct {
    float *y;
    const float *x;
    float p;
    uint64_t seed;
    uint64_t offset;
    int64_t n;
} ld_avx512_dropout_fwd_args;

static void ld_avx512_dropout_fwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_dropout_fwd_args *args_ = arg;
    float *y = args_->y;
    const float *x = args_->x;
    float p = args_->p;
    uint64_t seed = args_->seed;
    uint64_t offset = args_->offset;
    int64_t n = args_->n;
    const __m512 scale = _mm512_set1_ps((float)(1.0 / (1.0 - (double)p)));
    const __m512 thresh = _mm512_set1_ps(p * 16777216.0f);
    LD_STREAM_FOR(y, n);
    LD_PIECE({
        __mmask16 keep = dropout_keep16(seed, offset, i, thresh) & k;
        LD_OUT(y, _mm512_maskz_mul_ps(keep, LD_LOAD(x), scale));
    })
}

static void ld_avx512_dropout_fwd(float *y, const float *x, float p, uint64_t seed, uint64_t offset, int64_t n) {
    ld_avx512_dropout_fwd_args args_ = {y, x, p, seed, offset, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_dropout_fwd_part, &args_);
}

typedef struct {
    float *dx;
    const float *dy;
    float p;
    uint64_t seed;
    uint64_t offset;
} ld_avx512_dropout_bwd_args;

static void ld_avx512_dropout_bwd_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_dropout_bwd_args *args_ = arg;
    float *dx = args_->dx;
    const float *dy = args_->dy;
    float p = args_->p;
    uint64_t seed = args_->seed;
    uint64_t offset = args_->offset;
    const __m512 scale = _mm512_set1_ps((float)(1.0 / (1.0 - (double)p)));
    const __m512 thresh = _mm512_set1_ps(p * 16777216.0f);
    LD_PIECE({
        __mmask16 keep = dropout_keep16(seed, offset, i, thresh) & k;
        _mm512_mask_storeu_ps(dx + i, keep, _mm512_add_ps(LD_LOAD(dx), _mm512_mul_ps(LD_LOAD(dy), scale)));
    })
}

static void ld_avx512_dropout_bwd(float *dx, const float *dy, float p, uint64_t seed, uint64_t offset, int64_t n) {
    if (!dx) return;
    ld_avx512_dropout_bwd_args args_ = {dx, dy, p, seed, offset};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_dropout_bwd_part, &args_);
}

/* ---- bf16 rounding (round to nearest even, NaN stays a quiet NaN, as ld_fp32_to_bf16;
 * integer arithmetic rather than vcvtneps2bf16, which flushes subnormals) ---- */
static inline __m256i bf16_round(__m512 x) {
    __m512i u = _mm512_castps_si512(x);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
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
        __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    for (int64_t i = lo; i < hi; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(ld_tail16(hi - i), x + i);
        __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        a0 = _mm512_fmadd_pd(d0, d0, a0);
        a1 = _mm512_fmadd_pd(d1, d1, a1);
    }
    a->part[piece] = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

static double ld_avx512_sumsq(const float *x, int64_t n) {
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
} ld_avx512_adamw_args;

static void ld_avx512_adamw_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_adamw_args *args_ = arg;
    float *param = args_->param;
    const float *grad = args_->grad;
    float *m = args_->m;
    float *v = args_->v;
    uint16_t *param_bf16 = args_->param_bf16;
    const ld_adamw_params *p = args_->p;
    double bc1 = 1.0 - pow((double)p->beta1, (double)p->step), bc2 = 1.0 - pow((double)p->beta2, (double)p->step);
    const __m512 gs = _mm512_set1_ps(p->grad_scale), b1 = _mm512_set1_ps(p->beta1), b2 = _mm512_set1_ps(p->beta2);
    const __m512 c1 = _mm512_set1_ps((float)(1.0 - (double)p->beta1)), c2 = _mm512_set1_ps((float)(1.0 - (double)p->beta2));
    const __m512 ib1 = _mm512_set1_ps((float)(1.0 / bc1)), ib2 = _mm512_set1_ps((float)(1.0 / bc2));
    const __m512 eps = _mm512_set1_ps(p->eps), lr = _mm512_set1_ps(p->lr), wd = _mm512_set1_ps(p->weight_decay);
    LD_PIECE({
        __m512 g = _mm512_mul_ps(LD_LOAD(grad), gs);
        __m512 mi = _mm512_fmadd_ps(b1, LD_LOAD(m), _mm512_mul_ps(c1, g));
        __m512 vi = _mm512_fmadd_ps(b2, LD_LOAD(v), _mm512_mul_ps(_mm512_mul_ps(c2, g), g));
        LD_STORE(m, mi);
        LD_STORE(v, vi);
        __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(vi, ib2)), eps);
        __m512 w = LD_LOAD(param);
        __m512 upd = _mm512_fmadd_ps(wd, w, _mm512_div_ps(_mm512_mul_ps(mi, ib1), den));
        w = _mm512_fnmadd_ps(lr, upd, w);
        LD_STORE(param, w);
        if (param_bf16) _mm256_mask_storeu_epi16(param_bf16 + i, k, bf16_round(w));
    })
}

static void ld_avx512_adamw(float *param, const float *grad, float *m, float *v, uint16_t *param_bf16, int64_t n,
                     const ld_adamw_params *p) {
    ld_avx512_adamw_args args_ = {param, grad, m, v, param_bf16, p};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_adamw_part, &args_);
}

/* ---- conversions ---- */

typedef struct {
    uint16_t *dst;
    const float *src;
} ld_avx512_f32_to_bf16_args;

static void ld_avx512_f32_to_bf16_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_f32_to_bf16_args *args_ = arg;
    uint16_t *dst = args_->dst;
    const float *src = args_->src;
    LD_PIECE({ _mm256_mask_storeu_epi16(dst + i, k, bf16_round(LD_LOAD(src))); })
}

static void ld_avx512_f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    ld_avx512_f32_to_bf16_args args_ = {dst, src};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_f32_to_bf16_part, &args_);
}

typedef struct {
    float *dst;
    const uint16_t *src;
    int64_t n;
} ld_avx512_bf16_to_f32_args;

static void ld_avx512_bf16_to_f32_part(void *arg, int64_t lo_, int64_t hi_, int piece) {
    (void)piece;
    const ld_avx512_bf16_to_f32_args *args_ = arg;
    float *dst = args_->dst;
    const uint16_t *src = args_->src;
    int64_t n = args_->n;
    LD_STREAM_FOR(dst, n);
    LD_PIECE({
        __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, src + i));
        LD_OUT(dst, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
    })
}

static void ld_avx512_bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    ld_avx512_bf16_to_f32_args args_ = {dst, src, n};
    ld_par_for(n, LD_PAR_MIN, ld_avx512_bf16_to_f32_part, &args_);
}

/* The entries this file and rows_avx512.c provide; cpu_table.c overlays them after
 * checking AVX-512 F + BW (DQ, used by dropout's 64-bit multiplies, comes with both on
 * every CPU that has them). */
const ld_kernels ld_kernels_cpu_avx512_ops = {
    .name = "cpu-avx512-ops",
    .embedding_fwd = ld_avx512_embedding_fwd,
    .embedding_bwd = ld_avx512_embedding_bwd,
    .layernorm_fwd = ld_avx512_layernorm_fwd,
    .layernorm_bwd = ld_avx512_layernorm_bwd,
    .rmsnorm_fwd = ld_avx512_rmsnorm_fwd,
    .rmsnorm_bwd = ld_avx512_rmsnorm_bwd,
    .rope_fwd = ld_avx512_rope_fwd,
    .rope_bwd = ld_avx512_rope_bwd,
    .softmax_fwd = ld_avx512_softmax_fwd,
    .softmax_bwd = ld_avx512_softmax_bwd,
    .xent_fwd = ld_avx512_xent_fwd,
    .xent_bwd = ld_avx512_xent_bwd,
    .distill_fwd = ld_avx512_distill_fwd,
    .distill_bwd = ld_avx512_distill_bwd,
    .gelu_fwd = ld_avx512_gelu_fwd,
    .gelu_bwd = ld_avx512_gelu_bwd,
    .gelu_erf_fwd = ld_avx512_gelu_erf_fwd,
    .gelu_erf_bwd = ld_avx512_gelu_erf_bwd,
    .silu_fwd = ld_avx512_silu_fwd,
    .silu_bwd = ld_avx512_silu_bwd,
    .swiglu_fwd = ld_avx512_swiglu_fwd,
    .swiglu_bwd = ld_avx512_swiglu_bwd,
    .add_fwd = ld_avx512_add_fwd,
    .add_inplace = ld_avx512_add_inplace,
    .scale_fwd = ld_avx512_scale_fwd,
    .axpy = ld_avx512_axpy,
    .dropout_fwd = ld_avx512_dropout_fwd,
    .dropout_bwd = ld_avx512_dropout_bwd,
    .sumsq = ld_avx512_sumsq,
    .adamw = ld_avx512_adamw,
    .f32_to_bf16 = ld_avx512_f32_to_bf16,
    .bf16_to_f32 = ld_avx512_bf16_to_f32,
};

/* kernels/kernels.h — the compute kernels every layer above calls, as one table per backend.
 *
 * A backend (ref = plain scalar C, the oracle; cpu = SIMD + OpenMP with runtime ISA
 * dispatch; cuda later) fills an ld_kernels table. Callers never name a backend's functions
 * directly: they take the table from ld_kernels_get(), so tests can run the same code on
 * ref and cpu and compare.
 *
 * Conventions for every kernel:
 *   - pointers are to contiguous row-major data; shapes are given as explicit sizes;
 *   - f32 unless the name says otherwise; bf16 is stored as uint16_t;
 *   - forward kernels overwrite their outputs;
 *   - backward kernels ACCUMULATE (+=) into every gradient they produce, so gradient
 *     accumulation and tensors with several consumers need no extra work; a gradient
 *     pointer may be NULL when that gradient is not wanted (frozen parameter) and then no
 *     work is done for it;
 *   - kernels do not allocate unless they take a scratch pointer with a stated size, and
 *     are deterministic: same inputs + same thread count = same bits;
 *   - kernels cannot fail: callers (nn layer) validate shapes first.
 *   - In/out arguments may alias only where stated. */
#ifndef LD_KERNELS_H
#define LD_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Attention shapes. q is [B, Tq, Hq, D]; k, v are [B, Tk, Hkv, D]; out is [B, Tq, Hq, D];
 * Hq must be a multiple of Hkv (grouped-query attention: query head h uses kv head
 * h / (Hq/Hkv)). Query i (0-based within this call) sits at absolute position
 * q_offset + i; keys sit at 0..Tk-1. causal: query at position p sees keys 0..p.
 * key_len: NULL, or per-batch number of valid keys (keys at >= key_len[b] are padding
 * and are never attended). scale is usually 1/sqrt(D).
 * lse ([B, Hq, Tq]) receives the log-sum-exp of each query row's scaled scores (what
 * the backward pass needs; rows with no visible key get lse = -INFINITY and out = 0). */
typedef struct ld_attn_shape {
    int64_t B, Tq, Tk, Hq, Hkv, D;
    int64_t q_offset;
    bool causal;
    float scale;
    const int32_t *key_len;
    /* window > 0 (sliding-window attention, with causal): the query at position p sees only
     * keys p - window + 1 .. p. softcap > 0 (Gemma 2): each scaled score s becomes
     * softcap * tanh(s / softcap) before the softmax. 0 = off. Kernels that do not implement
     * them run the reference for such shapes. */
    int64_t window;
    float softcap;
} ld_attn_shape;

/* Row formats of the keys and values attention_fwd_kv reads (a KV cache's types): f32;
 * IEEE f16 (widened exactly); GGML's Q8_0, blocks of 32 values of LD_KV_Q8_0_BLOCK bytes, an
 * fp16 scale d then 32 int8 q, each value the float product q * d (a row of Q8_0 holds a
 * whole number of blocks). */
enum { LD_KV_F32 = 0, LD_KV_F16 = 1, LD_KV_Q8_0 = 2 };
#define LD_KV_Q8_0_BLOCK 34

typedef struct ld_adamw_params {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step;        /* 1-based step number for bias correction */
    float grad_scale;    /* multiply gradients by this first (global-norm clipping, 1/accum) */
} ld_adamw_params;

typedef struct ld_kernels {
    const char *name; /* "ref", "cpu-avx512", "cpu-avx2", "cpu-neon", "cpu-scalar" */

    /* ---- matrix products ----
     * C[M,N] = alpha * op(A) op(B) + beta * C, where op(A) is [M,K] (A stored [M,K] with
     * leading dimension lda, or, if transA, stored [K,M]), op(B) is [K,N] (B stored [K,N],
     * or, if transB, stored [N,K] — the nn.Linear weight layout). beta is 0 or 1 in
     * practice; beta == 0 ignores C's previous contents (NaNs included). The CPU GEMMs pack
     * into per-thread buffers grown on first use of a size and reused after (no allocation
     * in steady state; see kernels/cpu/gemm.h). */
    void (*gemm_f32)(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                     float *C, int64_t ldc);
    /* Same with bf16 A and B, fp32 accumulation and fp32 C. */
    void (*gemm_bf16)(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb,
                      float beta, float *C, int64_t ldc);
    /* Same with f32 A and IEEE f16 B (F16 weights: widened exactly to f32 while B is packed,
     * so prefill never writes an F32 copy of the matrix). */
    void (*gemm_f32_f16)(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const uint16_t *B, int64_t ldb,
                         float beta, float *C, int64_t ldc);
    /* How many times faster gemm_bf16 multiplies than gemm_f32, per flop, on this machine:
     * the ratio of their micro-kernels' rates measured at first use where gemm_bf16 runs
     * on bf16 dot products (2 where LD_GEMM_BF16=dot skips the measurement), else 1 (bf16
     * widened to f32 and multiplied by the f32 kernel: the same arithmetic rate). */
    double (*gemm_bf16_speedup)(void);

    /* Matrix-vector products for decoding (a few rows of x against a weight read once):
     * y[M, N] = x[M, K] · W, W stored [K, N] or, if transW, [N, K] (nn.Linear). Meant for
     * M <= LD_GEMV_MAX_M (any M is correct). Unlike gemm_f32 nothing is packed: the weight
     * is streamed from memory once per call, so the time is its bytes / read bandwidth. */
    void (*gemv_f32)(bool transW, int64_t M, int64_t N, int64_t K, const float *x, const float *W, float *y);

    /* ---- embeddings ----  out[n, :] = table[ids[n], :]  (ids already validated < V) */
    void (*embedding_fwd)(float *out, const int32_t *ids, const float *table, int64_t N,
                          int64_t C);
    void (*embedding_bwd)(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                          int64_t C);

    /* ---- normalisation over the last dimension C of x[N, C] ----
     * LayerNorm: y = (x - mean) * rstd * w + b, saves mean[N], rstd[N]. b may be NULL. */
    void (*layernorm_fwd)(float *y, float *mean, float *rstd, const float *x, const float *w,
                          const float *b, int64_t N, int64_t C, float eps);
    void (*layernorm_bwd)(float *dx, float *dw, float *db, const float *dy, const float *x,
                          const float *w, const float *mean, const float *rstd, int64_t N,
                          int64_t C);
    /* RMSNorm: y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps). */
    void (*rmsnorm_fwd)(float *y, float *rstd, const float *x, const float *w, int64_t N,
                        int64_t C, float eps);
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dy, const float *x, const float *w,
                        const float *rstd, int64_t N, int64_t C);

    /* ---- rotary position embedding on x[B, T, H, D] (D even), "rotate half" (Llama/HF
     * layout: pairs (i, i + D/2)); token t of batch b is at position pos0 + t.
     * fwd may run in place (y == x); bwd applies the inverse rotation, accumulating into dx
     * (dx != dy). */
    void (*rope_fwd)(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D,
                     int64_t pos0, float theta);
    void (*rope_bwd)(float *dx, const float *dy, int64_t B, int64_t T, int64_t H, int64_t D,
                     int64_t pos0, float theta);

    /* The same rotation with explicit frequencies (RoPE scaling: linear, NTK, Llama 3,
     * YaRN): pair i of every head turns by (pos0 + t) * inv_freq[i] (D/2 values), and cos and
     * sin are multiplied by mscale (YaRN's attention factor; 1 otherwise). bwd applies the
     * inverse rotation times mscale, accumulating into dx. */
    void (*rope_freq_fwd)(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                          const float *inv_freq, float mscale);
    void (*rope_freq_bwd)(float *dx, const float *dy, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                          const float *inv_freq, float mscale);

    /* ---- attention (memory-efficient: never materialises [B, H, Tq, Tk]) ---- */
    void (*attention_fwd)(float *out, float *lse, const float *q, const float *k,
                          const float *v, const ld_attn_shape *s);
    /* attention_fwd over keys and values stored as rows of Hkv * D values in the formats
     * k_type and v_type (LD_KV_*; [B, Tk] rows each, Q8_0 rows Hkv * D / 32 blocks): the
     * result of attention_fwd on the rows widened to f32 (bit for bit: the reference's of
     * the reference, the AVX2 kernel's of the AVX2 kernel), read in place: nothing of the
     * cache's size is written (a decode step over an F16 cache reads half an F32 cache's
     * bytes). */
    void (*attention_fwd_kv)(float *out, float *lse, const float *q, const void *k, int k_type, const void *v,
                             int v_type, const ld_attn_shape *s);
    /* scratch: at least attention_bwd_scratch(s) bytes, 64-byte aligned. */
    size_t (*attention_bwd_scratch)(const ld_attn_shape *s);
    void (*attention_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *out,
                          const float *lse, const float *q, const float *k, const float *v,
                          const ld_attn_shape *s, void *scratch);

    /* ---- softmax over rows of x[N, C]; bwd: dx += y * (dy - sum(dy*y)) ---- */
    void (*softmax_fwd)(float *y, const float *x, int64_t N, int64_t C);
    void (*softmax_bwd)(float *dx, const float *dy, const float *y, int64_t N, int64_t C);

    /* ---- fused softmax + cross-entropy on logits[N, V] ----
     * loss[n] = logsumexp(logits[n]) - logits[n, target[n]], or 0 where target[n] ==
     * ignore_index; lse[n] is saved for backward.
     * bwd: dlogits[n, :] += dloss[n] * (softmax(logits[n]) - onehot(target[n])), zero rows
     * where ignored. dlogits may alias logits (then it is overwritten, not accumulated:
     * the memory-saving path used for the LM head). */
    void (*xent_fwd)(float *loss, float *lse, const float *logits, const int32_t *target,
                     int64_t N, int64_t V, int32_t ignore_index);
    void (*xent_bwd)(float *dlogits, const float *dloss, const float *logits, const float *lse,
                     const int32_t *target, int64_t N, int64_t V, int32_t ignore_index);

    /* ---- knowledge distillation on student logits s[N, V] and teacher logits t[N, V] ----
     * For a row whose target != ignore_index, with temperature T > 0 and 0 <= alpha <= 1:
     *   loss[n] = alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, target)
     * (T^2 keeps the soft term's gradient on the scale of the hard term's, Hinton et al.
     * 2015); ignored rows get loss 0. stats[3n .. 3n+2] receive logsumexp(s/T),
     * logsumexp(t/T) and logsumexp(s) of every counted row (what backward needs).
     * bwd (the teacher is a constant: only the student gets a gradient):
     *   ds[n, :] += dloss[n] * (alpha * T * (softmax(s/T) - softmax(t/T))
     *                           + (1 - alpha) * (softmax(s) - onehot(target)))
     * and ignored rows are left untouched. ds must not alias s or t. */
    void (*distill_fwd)(float *loss, float *stats, const float *s, const float *t, const int32_t *target,
                        int64_t N, int64_t V, float temp, float alpha, int32_t ignore_index);
    void (*distill_bwd)(float *ds, const float *dloss, const float *s, const float *t, const float *stats,
                        const int32_t *target, int64_t N, int64_t V, float temp, float alpha,
                        int32_t ignore_index);

    /* ---- pointwise ---- */
    /* GELU, tanh approximation (GPT-2 "gelu_new"). */
    void (*gelu_fwd)(float *y, const float *x, int64_t n);
    void (*gelu_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    /* GELU, exact: y = x Phi(x) = 0.5 x (1 + erf(x / sqrt(2))) (BERT's and ESM's "gelu");
     * bwd: dx += dy (Phi(x) + x phi(x)). */
    void (*gelu_erf_fwd)(float *y, const float *x, int64_t n);
    void (*gelu_erf_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    void (*silu_fwd)(float *y, const float *x, int64_t n);
    void (*silu_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    /* CLIP's quick_gelu: y = x sigmoid(1.702 x); bwd: dx += dy s (1 + 1.702 x (1 - s)). */
    void (*quick_gelu_fwd)(float *y, const float *x, int64_t n);
    void (*quick_gelu_bwd)(float *dx, const float *dy, const float *x, int64_t n);
    /* SwiGLU: y = silu(gate) * up (Llama MLP). */
    void (*swiglu_fwd)(float *y, const float *gate, const float *up, int64_t n);
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dy, const float *gate,
                       const float *up, int64_t n);
    /* GeGLU: y = gelu(gate) * up (Gemma MLP; the tanh GELU above). */
    void (*geglu_fwd)(float *y, const float *gate, const float *up, int64_t n);
    void (*geglu_bwd)(float *dgate, float *dup, const float *dy, const float *gate,
                      const float *up, int64_t n);
    /* Soft-capping: y = cap * tanh(x / cap) (Gemma 2's logits); dx += dy * (1 - tanh^2). */
    void (*softcap_fwd)(float *y, const float *x, float cap, int64_t n);
    void (*softcap_bwd)(float *dx, const float *dy, const float *x, float cap, int64_t n);
    /* y = a + b (residual); y may alias a or b. Backward is an accumulate: add_inplace. */
    void (*add_fwd)(float *y, const float *a, const float *b, int64_t n);
    /* y += x */
    void (*add_inplace)(float *y, const float *x, int64_t n);
    /* y = alpha * x (y may alias x); backward is scale of dy by alpha accumulated: axpy. */
    void (*scale_fwd)(float *y, const float *x, float alpha, int64_t n);
    /* y += alpha * x */
    void (*axpy)(float *y, float alpha, const float *x, int64_t n);
    /* Inverted dropout with keep-probability 1-p: element i is kept iff
     * ld_rng_at(seed, offset + i) (as a uniform 24-bit float) >= p, and kept elements are
     * scaled by 1/(1-p). The mask is recomputed from (seed, offset) in backward: nothing
     * is stored. */
    void (*dropout_fwd)(float *y, const float *x, float p, uint64_t seed, uint64_t offset,
                        int64_t n);
    void (*dropout_bwd)(float *dx, const float *dy, float p, uint64_t seed, uint64_t offset,
                        int64_t n);

    /* ---- optimiser ---- */
    /* sum of squares of x[0..n) in double (for the global gradient norm). */
    double (*sumsq)(const float *x, int64_t n);
    /* Fused AdamW: g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * param -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * param).
     * If param_bf16 is not NULL, it receives the bf16 copy of the updated param. */
    void (*adamw)(float *param, const float *grad, float *m, float *v, uint16_t *param_bf16,
                  int64_t n, const ld_adamw_params *p);

    /* ---- conversion ---- */
    void (*f32_to_bf16)(uint16_t *dst, const float *src, int64_t n);
    void (*bf16_to_f32)(float *dst, const uint16_t *src, int64_t n);
} ld_kernels;

/* Rows of x up to which a matrix product is a gemv_f32 (beyond it, gemm_f32 packs W once
 * and reuses it across rows, which wins). */
#define LD_GEMV_MAX_M 4

typedef enum ld_backend { LD_BACKEND_AUTO = 0, LD_BACKEND_REF, LD_BACKEND_CPU } ld_backend;

/* The table for a backend (AUTO = the fastest available). Never NULL. CPU and AUTO give
 * the table of ld_isa_active(). */
const ld_kernels *ld_kernels_get(ld_backend b);

/* Instruction-set levels of the CPU backend. Each processor has its chain of levels, lowest
 * first (x86-64: SCALAR < AVX2 < AVX512; aarch64: SCALAR < NEON); a level's table is the
 * level below with that ISA's kernels overlaid (kernels/cpu/cpu_table.c), and the quantized
 * kernels (quant/quant.c) follow the same levels. Levels of another processor are never
 * detected, and never run (ld_isa_includes).
 *   SCALAR  the reference kernels (plain C; every CPU)
 *   AVX2    AVX2 + FMA + F16C (Haswell, Zen 1 and later); int8 dots with AVX-VNNI where the
 *           CPU has it, else vpmaddubsw/vpmaddwd
 *   AVX512  AVX-512 F + BW + VL + DQ (Skylake-SP, Zen 4 and later); int8 kernels need VNNI
 *           too, else they stay at the AVX2 ones
 *   NEON    AArch64 Advanced SIMD (every 64-bit ARM CPU): the decode path's kernels */
typedef enum ld_isa { LD_ISA_SCALAR = 0, LD_ISA_AVX2, LD_ISA_AVX512, LD_ISA_NEON, LD_ISA_COUNT } ld_isa;
/* Whether level isa includes level part: part is isa itself or a level below it on isa's
 * chain (LD_ISA_AVX512 includes AVX2 and SCALAR; NEON includes SCALAR, never AVX2). Use it,
 * not <, to compare levels. */
bool ld_isa_includes(ld_isa isa, ld_isa part);
/* The highest level this CPU runs. */
ld_isa ld_isa_detected(void);
/* The level the library computes with: ld_isa_detected(), or lower when the environment
 * variable LD_ISA (avx512, avx2, neon or scalar) asks for a level it includes. LD_ISA is read once, at
 * first use; a level above the CPU's, or an unknown name, leaves the detected level (the
 * CLI checks LD_ISA and says so: ld_isa_env). */
ld_isa ld_isa_active(void);
/* "scalar", "avx2", "avx512", "neon" (NULL for an out-of-range value). */
const char *ld_isa_name(ld_isa isa);
/* The level named s (as ld_isa_name spells it); false for anything else. */
bool ld_isa_parse(const char *s, ld_isa *out);
/* What LD_ISA asks for: 0 when unset, 1 when it names a level (*asked set), -1 when the name
 * is unknown. */
int ld_isa_env(ld_isa *asked);
/* The CPU table of level isa, or of ld_isa_detected() when the CPU does not run isa (tests run
 * each level with it). */
const ld_kernels *ld_kernels_cpu_at(ld_isa isa);

/* The reference backend, also instantiated in double precision for finite-difference
 * checks: the same source compiled with REAL = double (see kernels/ref/ref_ops_impl.h and
 * kernels/ref/ref_f64.h). */
extern const ld_kernels ld_kernels_ref;

/* CPU features found at run time. */
typedef struct ld_cpu_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16, avx512_vnni, avx_vnni;
} ld_cpu_features;
const ld_cpu_features *ld_cpu_features_get(void);

#ifdef __cplusplus
}
#endif
#endif

/* quant/quant_blocks.h — GGML-compatible quantized block layouts, the activation blocks used
 * by the quantized dot products, and the per-type traits table (library-internal).
 *
 * Every struct here is byte-for-byte the GGML struct of the same name (see
 * docs/formats/quant-blocks.md), so a row of blocks read from a GGUF file is used in place.
 * Block sizes are checked against LD_DTYPE_TABLE (include/liandan/tensor.h). */
#ifndef LD_QUANT_BLOCKS_H
#define LD_QUANT_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "liandan/tensor.h"
#include "quant/quant_lowbit.h"

#define LD_QK4_0 32
#define LD_QK8_0 32
#define LD_QK_K 256
#define LD_K_SCALE_SIZE 12

/* Q4_0: 32 weights; value i = (q_i - 8) * d. qs[j] low nibble = element j, high nibble =
 * element j + 16. */
typedef struct {
    uint16_t d; /* fp16 */
    uint8_t qs[LD_QK4_0 / 2];
} ld_block_q4_0;

/* Q8_0: 32 weights; value i = qs[i] * d. Also the activation block of Q4_0 and Q8_0 dots. */
typedef struct {
    uint16_t d; /* fp16 */
    int8_t qs[LD_QK8_0];
} ld_block_q8_0;

/* Q4_K: 256 weights in 8 sub-blocks of 32; sub-block j has a 6-bit scale sc_j and 6-bit min
 * m_j packed in scales[12]; value = d*sc_j*q - dmin*m_j with 4-bit q. */
typedef struct {
    uint16_t d;    /* fp16, super-block scale of the sub-block scales */
    uint16_t dmin; /* fp16, super-block scale of the sub-block mins */
    uint8_t scales[LD_K_SCALE_SIZE];
    uint8_t qs[LD_QK_K / 2];
} ld_block_q4_K;

/* Q5_K: as Q4_K with a fifth bit per weight in qh. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[LD_K_SCALE_SIZE];
    uint8_t qh[LD_QK_K / 8];
    uint8_t qs[LD_QK_K / 2];
} ld_block_q5_K;

/* Q6_K: 256 weights in 16 groups of 16 with int8 scales; value = d*sc_g*(q - 32), 6-bit q
 * split into 4 low bits (ql) and 2 high bits (qh). */
typedef struct {
    uint8_t ql[LD_QK_K / 2];
    uint8_t qh[LD_QK_K / 4];
    int8_t scales[LD_QK_K / 16];
    uint16_t d;
} ld_block_q6_K;

/* Q8_K: the activation block of the K-type dots (never stored in files): value = qs*d,
 * bsums[g] = sum of qs[16g .. 16g+15]. */
typedef struct {
    float d;
    int8_t qs[LD_QK_K];
    int16_t bsums[LD_QK_K / 16];
} ld_block_q8_K;

/* Block sizes straight from LD_DTYPE_TABLE, so the structs and the table cannot drift. */
#define LD_QB_TABLE_(e, name, blk, bytes, ggml, isf, ftype) ld_qb_bytes_##e = bytes, ld_qb_block_##e = blk,
enum { LD_DTYPE_TABLE(LD_QB_TABLE_) ld_qb_dummy_ };
#undef LD_QB_TABLE_
_Static_assert(sizeof(ld_block_q4_0) == ld_qb_bytes_LD_Q4_0 && ld_qb_bytes_LD_Q4_0 == 18, "Q4_0 block: 18 bytes");
_Static_assert(sizeof(ld_block_q8_0) == ld_qb_bytes_LD_Q8_0 && ld_qb_bytes_LD_Q8_0 == 34, "Q8_0 block: 34 bytes");
_Static_assert(sizeof(ld_block_q4_K) == ld_qb_bytes_LD_Q4_K && ld_qb_bytes_LD_Q4_K == 144, "Q4_K block: 144 bytes");
_Static_assert(sizeof(ld_block_q5_K) == ld_qb_bytes_LD_Q5_K && ld_qb_bytes_LD_Q5_K == 176, "Q5_K block: 176 bytes");
_Static_assert(sizeof(ld_block_q6_K) == ld_qb_bytes_LD_Q6_K && ld_qb_bytes_LD_Q6_K == 210, "Q6_K block: 210 bytes");
_Static_assert(ld_qb_block_LD_Q4_0 == LD_QK4_0 && ld_qb_block_LD_Q8_0 == LD_QK8_0 && ld_qb_block_LD_Q4_K == LD_QK_K &&
                   ld_qb_block_LD_Q5_K == LD_QK_K && ld_qb_block_LD_Q6_K == LD_QK_K,
               "block element counts match LD_DTYPE_TABLE");
_Static_assert(sizeof(ld_block_q8_K) == 292, "Q8_K block is 4 + 256 + 32 bytes");
/* The low-bit formats (quant_lowbit.h): struct sizes equal the table's block bytes. */
#define LD_QB_LOWBIT_SIZE_(T, S) _Static_assert(sizeof(S) == ld_qb_bytes_##T, #S " size matches LD_DTYPE_TABLE");
LD_QB_LOWBIT_SIZE_(LD_Q2_K, ld_block_q2_K)
LD_QB_LOWBIT_SIZE_(LD_Q3_K, ld_block_q3_K)
LD_QB_LOWBIT_SIZE_(LD_TQ1_0, ld_block_tq1_0)
LD_QB_LOWBIT_SIZE_(LD_TQ2_0, ld_block_tq2_0)
LD_QB_LOWBIT_SIZE_(LD_IQ2_XXS, ld_block_iq2_xxs)
LD_QB_LOWBIT_SIZE_(LD_IQ2_XS, ld_block_iq2_xs)
LD_QB_LOWBIT_SIZE_(LD_IQ2_S, ld_block_iq2_s)
LD_QB_LOWBIT_SIZE_(LD_IQ3_XXS, ld_block_iq3_xxs)
LD_QB_LOWBIT_SIZE_(LD_IQ3_S, ld_block_iq3_s)
LD_QB_LOWBIT_SIZE_(LD_IQ1_S, ld_block_iq1_s)
LD_QB_LOWBIT_SIZE_(LD_IQ1_M, ld_block_iq1_m)
LD_QB_LOWBIT_SIZE_(LD_IQ4_NL, ld_block_iq4_nl)
LD_QB_LOWBIT_SIZE_(LD_IQ4_XS, ld_block_iq4_xs)
#undef LD_QB_LOWBIT_SIZE_

/* ---- scalar reference codecs (one file per family) ----------------------------------
 * quantize: n elements (a multiple of the block size) of x into blocks at y; w is NULL or
 * n importance weights (weighted squared error is minimised; ignored by Q8_0).
 * dequantize: n elements of blocks x into floats y. */
void ld_quantize_row_q8_0_ref(const float *x, void *y, int64_t n, const float *w);
void ld_dequantize_row_q8_0(const void *x, float *y, int64_t n);
void ld_quantize_row_q4_0_ref(const float *x, void *y, int64_t n, const float *w);
void ld_dequantize_row_q4_0(const void *x, float *y, int64_t n);
void ld_quantize_row_q4_K_ref(const float *x, void *y, int64_t n, const float *w);
void ld_dequantize_row_q4_K(const void *x, float *y, int64_t n);
void ld_quantize_row_q5_K_ref(const float *x, void *y, int64_t n, const float *w);
void ld_dequantize_row_q5_K(const void *x, float *y, int64_t n);
void ld_quantize_row_q6_K_ref(const float *x, void *y, int64_t n, const float *w);
void ld_dequantize_row_q6_K(const void *x, float *y, int64_t n);
/* Decode-only types (quant_legacy.c): llama.cpp's fallbacks for narrow rows. */
void ld_dequantize_row_q4_1(const void *x, float *y, int64_t n);
void ld_dequantize_row_q5_0(const void *x, float *y, int64_t n);
void ld_dequantize_row_q5_1(const void *x, float *y, int64_t n);
/* Activation quantizers (round to nearest even, symmetric, |q| <= 127). */
void ld_quantize_act_q8_0_ref(const float *x, void *y, int64_t n);
void ld_quantize_act_q8_K_ref(const float *x, void *y, int64_t n);
void ld_dequantize_row_q8_K(const void *x, float *y, int64_t n);

/* Reference dots of one weight row with one activation row of n elements. */
float ld_vec_dot_q8_0_q8_0_ref(int64_t n, const void *w, const void *a);
float ld_vec_dot_q4_0_q8_0_ref(int64_t n, const void *w, const void *a);
float ld_vec_dot_q4_K_q8_K_ref(int64_t n, const void *w, const void *a);
float ld_vec_dot_q5_K_q8_K_ref(int64_t n, const void *w, const void *a);
float ld_vec_dot_q6_K_q8_K_ref(int64_t n, const void *w, const void *a);
float ld_vec_dot_f32_ref(int64_t n, const void *w, const void *a);
float ld_vec_dot_f16_f32_ref(int64_t n, const void *w, const void *a);

/* AVX-512 (F, BW, VL, VNNI) versions, qdot_avx512.c: same results as the reference in
 * their integer parts; float sums of whole blocks may be ordered differently. */
float ld_vec_dot_q8_0_q8_0_avx512(int64_t n, const void *w, const void *a);
float ld_vec_dot_q4_0_q8_0_avx512(int64_t n, const void *w, const void *a);
float ld_vec_dot_q4_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float ld_vec_dot_q5_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float ld_vec_dot_q6_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float ld_vec_dot_f32_avx512(int64_t n, const void *w, const void *a);
float ld_vec_dot_f16_f32_avx512(int64_t n, const void *w, const void *a);
/* out[r] = dot(w, activation row r) for r < na (1..LD_QDOT_MAX_ROWS), rows `as` bytes apart;
 * the weight row is unpacked once for all of them. Each row's result equals the single-row
 * vec_dot bit for bit. */
#define LD_QDOT_MAX_ROWS 4
typedef void (*ld_dot_rows_fn)(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
void ld_dot_rows_q8_0_q8_0_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
void ld_dot_rows_q4_0_q8_0_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
void ld_dot_rows_q4_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
void ld_dot_rows_q5_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
void ld_dot_rows_q6_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
void ld_dot_rows_f32_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
void ld_dot_rows_f16_f32_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out);
/* Bit-identical to the _ref activation quantizers. */
void ld_quantize_act_q8_0_avx512(const float *x, void *y, int64_t n);
void ld_quantize_act_q8_K_avx512(const float *x, void *y, int64_t n);

/* ---- levels form (the int8 GEMM's view of a weight row; quant/qgemm.h) -------------
 * Levels form of a weight row: n weights as unsigned levels L[n] and, per group of
 * `group` elements, a scale s and (types with mins) an offset o, so that
 * w = s * (L - zp) + o. The GEMM multiplies L with int8 activations (vpdpbusd's unsigned x
 * signed bytes), removes the zero point with the activation group sums, and applies s and
 * o once per group. Scalar reference extraction, one per type family file. */
typedef void (*ld_levels_fn)(const void *w, int64_t n, uint8_t *L, float *s, float *o);
void ld_levels_row_q8_0(const void *w, int64_t n, uint8_t *L, float *s, float *o);
void ld_levels_row_q4_0(const void *w, int64_t n, uint8_t *L, float *s, float *o);
void ld_levels_row_q4_K(const void *w, int64_t n, uint8_t *L, float *s, float *o);
void ld_levels_row_q5_K(const void *w, int64_t n, uint8_t *L, float *s, float *o);
void ld_levels_row_q6_K(const void *w, int64_t n, uint8_t *L, float *s, float *o);
/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block's scales[12]. */
void ld_q4_K_scale_min(const uint8_t *scales, int j, int *sc, int *m);
/* The 256 levels (unsigned: Q4_K 0..15, Q5_K 0..31, Q6_K 0..63) of one block. */
void ld_block_levels_q4_K(const ld_block_q4_K *b, uint8_t *L);
void ld_block_levels_q5_K(const ld_block_q5_K *b, uint8_t *L);
void ld_block_levels_q6_K(const ld_block_q6_K *b, uint8_t *L);

/* ---- shared scale searches (quant_search.c) ------------------------------------------ */
/* Symmetric: finds s and L[i] in [0, 2*nmax) minimising sum w_i (x_i - s*(L_i - nmax))^2
 * (w NULL = all ones). Returns s (0 and L = nmax for an all-zero x). */
float ld_quant_search_sym(int n, int nmax, const float *x, const float *w, uint8_t *L);
/* Asymmetric: finds s >= 0, m >= 0 and L[i] in [0, nmax] minimising
 * sum w_i (x_i - (s*L_i - m))^2. Returns s, stores m. */
float ld_quant_search_asym(int n, int nmax, const float *x, const float *w, uint8_t *L, float *m);
static inline int ld_quant_nearest(float f) {
    return (int)__builtin_lrintf(f); /* round to nearest even; callers clamp */
}

/* ---- the traits table (quant.c) ------------------------------------------------------ */
typedef float (*ld_vec_dot_fn)(int64_t n, const void *w, const void *a);
typedef void (*ld_quantize_act_fn)(const float *x, void *y, int64_t n);

/* One ISA's kernels for one weight type, indexed by ld_dtype in that ISA's row table
 * (ld_quant_rows_<isa>, defined in the ISA's kernel file). NULL fields keep the level
 * below's. quant.c overlays the row tables of every level up to the one asked for (after
 * its CPU check), the way kernels/cpu/cpu_table.c builds the float kernels' tables: a new
 * type adds one row to each ISA file that has kernels for it. */
typedef struct ld_quant_isa_row {
    ld_quantize_act_fn quantize_act;
    ld_vec_dot_fn vec_dot;
    ld_dot_rows_fn dot_rows;
} ld_quant_isa_row;
extern const ld_quant_isa_row ld_quant_rows_avx2[LD_DTYPE_COUNT];    /* qdot_avx2.c */
extern const ld_quant_isa_row ld_quant_rows_lowbit_avx2[LD_DTYPE_COUNT]; /* qdot_lowbit_avx2.c (quant_lowbit.h's types) */
extern const ld_quant_isa_row ld_quant_rows_avxvnni[LD_DTYPE_COUNT]; /* qdot_avxvnni.c (AVX2 level, AVX-VNNI CPUs) */
extern const ld_quant_isa_row ld_quant_rows_avx512[LD_DTYPE_COUNT];  /* qdot_avx512.c (needs AVX-512 VNNI) */
extern const ld_quant_isa_row ld_quant_rows_lowbit_avx512[LD_DTYPE_COUNT]; /* qdot_lowbit_avx512.c (Q2_K, Q3_K) */
extern const ld_quant_isa_row ld_quant_rows_neon[LD_DTYPE_COUNT];    /* qdot_neon.c (aarch64) */

typedef struct ld_quant_traits {
    ld_dtype type;
    int block_size;
    void (*quantize_row)(const float *x, void *y, int64_t n, const float *w); /* NULL: F32/F16 */
    void (*dequantize_row)(const void *x, float *y, int64_t n);
    /* Activation format of the dot: LD_F32 (used directly), or a Q8 block type. */
    int act_block_size;    /* elements per activation block (1 = plain f32) */
    int act_block_bytes;
    ld_quantize_act_fn quantize_act_ref, quantize_act; /* NULL for f32 activations */
    ld_vec_dot_fn vec_dot_ref, vec_dot;                /* vec_dot: the fastest for this CPU */
    ld_dot_rows_fn dot_rows;                           /* NULL: loop over vec_dot */
} ld_quant_traits;

/* NULL for types without quantized kernels. The kernels of level ld_isa_active(). */
const ld_quant_traits *ld_quant_traits_get(ld_dtype t);
/* The same at level isa (capped at the CPU's; LD_ISA_SCALAR: the reference kernels). */
const ld_quant_traits *ld_quant_traits_at(ld_dtype t, ld_isa isa);

/* nblk blocks of type t filled with random bytes, every fp16 block scale made finite with
 * |d| < 2 (the top exponent bit cleared): valid blocks of every bit pattern, for tests and
 * benchmarks of the types liandan decodes but does not quantize to. */
void ld_quant_random_blocks(ld_dtype t, void *blocks, int64_t nblk, uint64_t seed);

/* ld_qmatmul with the kernels of level isa (LD_ISA_SCALAR = the scalar reference), on the
 * current thread team (core/team.h) when threads > 1, on the calling thread otherwise. */
int ld_qmatmul_impl(ld_dtype wtype, const void *W, int64_t N, int64_t K, const float *x, int64_t M,
                    float *y, void *scratch, int threads, ld_isa isa);

#endif

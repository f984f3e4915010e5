/* liandan/quant.h — quantized weight formats (bit-compatible with GGML) and the matrix
 * products that read them.
 *
 * Block types: every GGML weight type llama.cpp's quantizer writes. Decoded and computed:
 * Q8_0, Q4_0, IQ4_NL (32 elements per block), Q6_K, Q5_K, Q4_K, Q3_K, Q2_K, IQ4_XS, IQ3_S,
 * IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S, TQ2_0, TQ1_0 (256 per super-block); decoded
 * only (computed in F32 by the models): Q4_1, Q5_0, Q5_1. Quantized to (ld_quantize): Q8_0,
 * Q6_K, Q5_K, Q4_K, Q4_0, IQ4_NL, IQ4_XS, IQ3_S, Q3_K, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS, Q2_K,
 * TQ2_0, TQ1_0. A quantized row of n elements is
 * n / block_size blocks of ld_dtype_traits(t)->block_bytes bytes, laid out exactly as in
 * GGML/GGUF (docs/formats/quant-blocks.md). */
#ifndef LIANDAN_QUANT_H
#define LIANDAN_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"
#include "liandan/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* true when ld_quantize can produce type t (ld_dequantize reads it then too; it also reads
 * the types liandan only decodes). */
bool ld_quant_type_supported(ld_dtype t);

/* true for the types ld_quantize writes only with an importance matrix (the i-quants below 3
 * bits and IQ3_XXS, as in llama.cpp: IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_M, IQ1_S). */
bool ld_quant_needs_imatrix(ld_dtype t);

/* Quantizes a row-major [nrows, ncols] f32 matrix into nrows rows of blocks at dst (the
 * caller owns dst: nrows * row_bytes(dst_type, ncols) bytes, see ld_dtype_row_bytes).
 * imatrix: NULL, or ncols non-negative importance weights per column (e.g. the mean
 * squared activation of that input feature); the quantizer then minimises the
 * importance-weighted squared error (every type but Q8_0, which ignores it).
 * Rows are quantized in parallel on the context's threads; the result does not depend on
 * the thread count.
 * Errors: LD_ERR_DTYPE for an unsupported type, LD_ERR_INVALID_ARG without an importance
 * matrix for a type that needs one (ld_quant_needs_imatrix), LD_ERR_SHAPE when ncols is not a multiple
 * of the block size, LD_ERR_NUMERIC for a NaN/infinite input (row and column named),
 * LD_ERR_INVALID_ARG for NULL pointers or negative sizes. */
ld_status ld_quantize(ld_ctx *ctx, ld_dtype dst_type, void *dst, const float *src, int64_t nrows,
                      int64_t ncols, const float *imatrix);

/* Decodes n elements (a multiple of the block size) of type src_type (a quantized type,
 * F16, BF16 or F32) into dst_f32 (caller-owned, n floats). */
ld_status ld_dequantize(ld_ctx *ctx, ld_dtype src_type, const void *src, float *dst_f32, int64_t n);

/* Bytes of scratch ld_qmatmul needs for M rows of x with K columns and weights of type
 * wtype on ctx's thread count (0 for F32/F16 weights, which read x directly). */
ld_status ld_qmatmul_scratch_size(ld_ctx *ctx, ld_dtype wtype, int64_t M, int64_t K, size_t *out);

/* y[M, N] = x[M, K] . W^T, where W is [N, K] in type wtype (F32, F16 or a supported
 * quantized type; rows of whole blocks, the nn.Linear layout). x is f32 row-major.
 * For few rows (decode), each row is quantized to the dot product's activation format
 * (Q8_0 for Q4_0/Q8_0/IQ4_NL weights, Q8_K for the others) and dotted with each weight row. From 16
 * rows on (prefill, scoring), on CPUs with AVX-512 VNNI, the quantized types go through a
 * blocked int8 GEMM instead: rows quantized per group of 32 (16 for Q6_K), weights unpacked
 * to int8 panels, products at the int8 dot rate. Both use `scratch`
 * (ld_qmatmul_scratch_size bytes for the same ctx; may be NULL when that size is 0).
 * Parallel over N with a static schedule on the context's threads: every y element is
 * computed by one fixed sequence of operations, so results are identical for any thread
 * count.
 * Errors: LD_ERR_DTYPE (unsupported wtype), LD_ERR_SHAPE (K not a multiple of the block
 * size), LD_ERR_INVALID_ARG (NULL pointers, non-positive sizes). */
ld_status ld_qmatmul(ld_ctx *ctx, ld_dtype wtype, const void *W, int64_t N, int64_t K, const float *x,
                     int64_t M, float *y, void *scratch);

/* Whether ld_qmatmul multiplies M rows with weights of type wtype through the int8 GEMM on
 * this CPU. When it does not, a caller with many rows does better to dequantize W once and
 * use an F32 GEMM: the row dots read each weight block once per 4 rows. */
bool ld_qmatmul_has_gemm(ld_dtype wtype, int64_t M);

/* ---- prepacked weights --------------------------------------------------------------------
 * ld_qmatmul reads weights in their GGML block layout and, for many rows, unpacks them
 * into int8 panels on every call. A prepacked copy holds those panels for good: one byte
 * per weight, interleaved for the int8 GEMM microkernel, with float scales; any number of
 * rows (decode or prefill) then runs that microkernel with no unpacking, and a decode step
 * streams the panels at a few instructions per 100 weights. Only for types where the
 * panels cost few extra bytes: Q8_0 (9 bits per weight against 8.5) and Q4_K (levels kept
 * as nibbles: 4.625 bits against 4.5). Results equal ld_qmatmul's int8 GEMM for the same
 * rows bit for bit (activations quantized per group of 32). */
bool ld_qpack_supported(ld_dtype wtype); /* Q8_0, Q4_K on CPUs with AVX-512 VNNI */
/* Bytes of the packed form of an [N, K] matrix of type wtype. Errors: LD_ERR_DTYPE (not
 * packable here), LD_ERR_SHAPE (K not whole blocks), LD_ERR_OVERFLOW. */
ld_status ld_qpack_size(ld_ctx *ctx, ld_dtype wtype, int64_t N, int64_t K, size_t *out);
/* Packs W ([N, K] blocks of wtype) into dst (ld_qpack_size bytes, 64-byte aligned), in
 * parallel on ctx's threads. */
ld_status ld_qpack(ld_ctx *ctx, ld_dtype wtype, const void *W, int64_t N, int64_t K, void *dst);
ld_status ld_qmatmul_packed_scratch_size(ld_ctx *ctx, ld_dtype wtype, int64_t M, int64_t K, size_t *out);
/* y[M, N] = x[M, K] . W^T with W prepacked by ld_qpack (same wtype, N, K). */
ld_status ld_qmatmul_packed(ld_ctx *ctx, ld_dtype wtype, const void *P, int64_t N, int64_t K, const float *x,
                            int64_t M, float *y, void *scratch);

/* ---- quantization mixes ----------------------------------------------------------------
 * llama.cpp's named mixes ("ftypes"): Q2_K, Q2_K_S, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M,
 * Q5_K_S, Q5_K_M, IQ4_NL, IQ4_XS. A mix gives each matrix of a model a type by its role and
 * layer (e.g. Q3_K_M: attn_v of the first two layers Q5_K, the others Q4_K; ffn_down Q5_K
 * in the first sixteenth, Q4_K after; attn_output Q4_K; the output matrix Q6_K; the rest
 * Q3_K), as llama.cpp's quantizer does for dense models. Used by ld_lm_save_gguf
 * (ld_lm_gguf_params.mix). */
typedef struct ld_quant_mix ld_quant_mix;
/* The mix named `name` (case-insensitive), or NULL. */
const ld_quant_mix *ld_quant_mix_get(const char *name);
int ld_quant_mix_count(void);
const ld_quant_mix *ld_quant_mix_at(int i); /* 0 <= i < ld_quant_mix_count() */
const char *ld_quant_mix_name(const ld_quant_mix *m);
ld_dtype ld_quant_mix_body(const ld_quant_mix *m); /* the type of matrices no rule picks */
uint32_t ld_quant_mix_ftype(const ld_quant_mix *m); /* llama_ftype, GGUF general.file_type */

/* ---- importance matrices (calibration statistics for the 4-6 bit quantizers) ----------- */
/* Per matrix (by its GGUF tensor name, e.g. "blk.0.attn_q.weight"): the sum of squares of
 * each input column over the rows seen, and the row count. Stored as llama.cpp's imatrix
 * GGUF ("NAME.in_sum2" [1, K], "NAME.counts" [1]), so files from llama-imatrix load too. */
typedef struct ld_imatrix ld_imatrix;
ld_status ld_imatrix_new(ld_ctx *ctx, ld_imatrix **out);
void ld_imatrix_free(ld_imatrix *im);
int ld_imatrix_count(const ld_imatrix *im);
/* Accumulates the rows of x[M, K] (the input of matrix `name`). */
ld_status ld_imatrix_add(ld_imatrix *im, const char *name, const float *x, int64_t M, int64_t K);
/* Mean squared activation per column (K floats owned by im, valid until the next add), or
 * NULL when name is absent, has another width, or saw no rows. */
const float *ld_imatrix_get(ld_imatrix *im, const char *name, int64_t K);
/* ld_imatrix_get in the form ld_lm_gguf_params.imatrix takes (user = the ld_imatrix). */
const float *ld_imatrix_lookup(void *user, const char *tensor, int64_t K);
/* Dataset name and chunking recorded in the file. */
void ld_imatrix_set_info(ld_imatrix *im, const char *dataset, int64_t chunks, int64_t chunk_size);
ld_status ld_imatrix_save(const ld_imatrix *im, const char *path);
/* Reads an imatrix GGUF. Malformed files are LD_ERR_FORMAT naming the tensor; per-expert
 * (MoE) statistics are LD_ERR_UNSUPPORTED. */
ld_status ld_imatrix_load(ld_ctx *ctx, const char *path, ld_imatrix **out);
/* The same from memory (`name` names it in messages; data is read during the call only). */
ld_status ld_imatrix_load_memory(ld_ctx *ctx, const char *name, const void *data, size_t size, ld_imatrix **out);

#ifdef __cplusplus
}
#endif
#endif

/* liandan/tensor.h — data types and tensors.
 *
 * A tensor is a typed, strided view of memory with up to LD_MAX_DIMS dimensions. The
 * struct is public (like a plain value type) so kernels and tests can read shapes and
 * data directly; create tensors with the functions below so sizes are overflow-checked.
 *
 * Shapes are written outermost first: a [B, T, C] tensor has shape = {B, T, C} and, when
 * contiguous, stride = {T*C, C, 1} (strides count elements, not bytes; quantized types are
 * only ever contiguous along the last dimension, in whole blocks).
 *
 * Memory: tensor storage comes from an ld_arena (one per lifetime class) or is borrowed
 * (a view, or memory the caller owns such as an mmapped file). Tensors never free data. */
#ifndef LIANDAN_TENSOR_H
#define LIANDAN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LD_MAX_DIMS 4
#define LD_TENSOR_NAME_MAX 96

/* Enum values are liandan's own; ld_dtype_traits() gives the GGML type id for GGUF. ftype is
 * llama.cpp's llama_ftype (GGUF general.file_type) of a file whose matrices are mostly of this
 * type (-1: none); the K-quants' are the _S mixes, which keep every matrix in the type but the
 * output (Q6_K): liandan's own mix. */
#define LD_DTYPE_TABLE(X)                                                   \
    /*  enum      name    block bytes ggml float ftype */                   \
    X(LD_F32,   "F32",  1,   4,   0,  1, 0)                                 \
    X(LD_F16,   "F16",  1,   2,   1,  1, 1)                                 \
    X(LD_BF16,  "BF16", 1,   2,   30, 1, 32)                                \
    X(LD_I32,   "I32",  1,   4,   26, 0, -1)                                \
    X(LD_Q4_0,  "Q4_0", 32,  18,  2,  0, 2)                                 \
    X(LD_Q8_0,  "Q8_0", 32,  34,  8,  0, 7)                                 \
    X(LD_Q4_K,  "Q4_K", 256, 144, 12, 0, 14)                                \
    X(LD_Q5_K,  "Q5_K", 256, 176, 13, 0, 16)                                \
    X(LD_Q6_K,  "Q6_K", 256, 210, 14, 0, 18)                                \
    X(LD_Q4_1,  "Q4_1", 32,  20,  3,  0, 3)                                 \
    X(LD_Q5_0,  "Q5_0", 32,  22,  6,  0, 8)                                 \
    X(LD_Q5_1,  "Q5_1", 32,  24,  7,  0, 9)                                 \
    X(LD_Q2_K, "Q2_K", 256, 84, 10, 0, 21)                                  \
    X(LD_Q3_K, "Q3_K", 256, 110, 11, 0, 11)                                 \
    X(LD_IQ2_XXS, "IQ2_XXS", 256, 66, 16, 0, 19)                            \
    X(LD_IQ2_XS, "IQ2_XS", 256, 74, 17, 0, 20)                              \
    X(LD_IQ3_XXS, "IQ3_XXS", 256, 98, 18, 0, 23)                            \
    X(LD_IQ1_S, "IQ1_S", 256, 50, 19, 0, 24)                                \
    X(LD_IQ4_NL, "IQ4_NL", 32, 18, 20, 0, 25)                               \
    X(LD_IQ3_S, "IQ3_S", 256, 110, 21, 0, 26)                               \
    X(LD_IQ2_S, "IQ2_S", 256, 82, 22, 0, 28)                                \
    X(LD_IQ4_XS, "IQ4_XS", 256, 136, 23, 0, 30)                             \
    X(LD_IQ1_M, "IQ1_M", 256, 56, 29, 0, 31)                                \
    X(LD_TQ1_0, "TQ1_0", 256, 54, 34, 0, 36)                                \
    X(LD_TQ2_0, "TQ2_0", 256, 66, 35, 0, 37)

typedef enum ld_dtype {
#define LD_DTYPE_ENUM_(e, name, blk, bytes, ggml, isf, ftype) e,
    LD_DTYPE_TABLE(LD_DTYPE_ENUM_)
#undef LD_DTYPE_ENUM_
    LD_DTYPE_COUNT
} ld_dtype;

typedef struct ld_dtype_info {
    const char *name;     /* "F32", "Q4_K" — the spelling used by GGUF tools and safetensors */
    int block_size;       /* elements per block (1 for plain types) */
    int block_bytes;      /* bytes per block */
    int ggml_type;        /* GGML type id, as stored in GGUF */
    bool is_float;        /* plain floating-point element type */
    int ftype;            /* llama_ftype of a file mostly of this type (GGUF general.file_type), -1 none */
} ld_dtype_info;

/* NULL for values outside the enum. */
const ld_dtype_info *ld_dtype_traits(ld_dtype t);
/* LD_DTYPE_COUNT if unknown. Case-sensitive ("F32", "BF16", ...). */
ld_dtype ld_dtype_from_name(const char *name);
/* Bytes needed for n elements (n must be a multiple of the block size); 0 + nonzero
 * return on overflow or a partial block. */
int ld_dtype_row_bytes(ld_dtype t, int64_t n, size_t *out);

/* Tensor flags. */
enum {
    LD_TENSOR_PARAM = 1u << 0,     /* a model parameter */
    LD_TENSOR_TRAINABLE = 1u << 1, /* receives gradients (frozen parameters lack this) */
    LD_TENSOR_VIEW = 1u << 2,      /* data borrowed from another tensor */
};

typedef struct ld_tensor {
    ld_dtype dtype;
    int ndim;
    int64_t shape[LD_MAX_DIMS];
    int64_t stride[LD_MAX_DIMS]; /* in elements */
    void *data;
    struct ld_tensor *grad;      /* same shape, F32; NULL when no gradient is kept */
    uint32_t flags;
    char name[LD_TENSOR_NAME_MAX];
} ld_tensor;

/* Number of elements; 0 for ndim == 0 is never produced (scalars are shape {1}). */
int64_t ld_tensor_numel(const ld_tensor *t);
size_t ld_tensor_nbytes(const ld_tensor *t);
bool ld_tensor_is_contiguous(const ld_tensor *t);
bool ld_tensor_same_shape(const ld_tensor *a, const ld_tensor *b);

/* Fills *t with a contiguous description of the given shape; data is left NULL.
 * Errors: ndim outside 1..LD_MAX_DIMS, a dimension <= 0, size overflow, a last dimension
 * that is not a whole number of blocks. */
ld_status ld_tensor_init(ld_ctx *ctx, ld_tensor *t, ld_dtype dtype, int ndim, const int64_t *shape);
/* Creates a tensor (struct and data, 64-byte aligned) in `arena`. Data is zeroed. */
ld_status ld_tensor_new(ld_ctx *ctx, ld_arena *arena, ld_dtype dtype, int ndim,
                        const int64_t *shape, ld_tensor **out);
/* A view with a new shape over the same contiguous data (numel must match). */
ld_status ld_tensor_reshape(ld_ctx *ctx, const ld_tensor *src, int ndim, const int64_t *shape,
                            ld_tensor *out);
/* A view of rows [start, start+len) along dimension 0. */
ld_status ld_tensor_slice0(ld_ctx *ctx, const ld_tensor *src, int64_t start, int64_t len,
                           ld_tensor *out);
void ld_tensor_set_name(ld_tensor *t, const char *name);
/* Describes the shape as "[4, 64, 768]" into buf. Returns buf. */
const char *ld_tensor_shape_str(const ld_tensor *t, char *buf, size_t cap);

/* ---- conversions between element types ---------------------------------------------- */
uint16_t ld_fp32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
float ld_bf16_to_fp32(uint16_t h);
uint16_t ld_fp32_to_fp16(float f);
float ld_fp16_to_fp32(uint16_t h);
/* Converts n elements between plain float types (F32, F16, BF16). */
ld_status ld_convert(ld_ctx *ctx, ld_dtype dst_type, void *dst, ld_dtype src_type,
                     const void *src, int64_t n);

#ifdef __cplusplus
}
#endif
#endif

/* quant/quant_mix.h — per-tensor types of llama.cpp's quantization mixes (library-internal;
 * the public part, looking mixes up by name, is in liandan/quant.h). */
#ifndef LD_QUANT_MIX_H
#define LD_QUANT_MIX_H

#include <stdbool.h>
#include <stdint.h>

#include "liandan/quant.h"

/* What a matrix is, from its GGUF name (llama.cpp's tensor categories). */
typedef enum ld_tensor_role {
    LD_ROLE_OTHER,
    LD_ROLE_TOKEN_EMBD,
    LD_ROLE_OUTPUT,
    LD_ROLE_ATTN_Q,
    LD_ROLE_ATTN_K,
    LD_ROLE_ATTN_V,
    LD_ROLE_ATTN_QKV,
    LD_ROLE_ATTN_OUTPUT,
    LD_ROLE_FFN_UP,
    LD_ROLE_FFN_GATE,
    LD_ROLE_FFN_DOWN,
} ld_tensor_role;
ld_tensor_role ld_tensor_role_of(const char *gguf_name);

/* One matrix of a model, as the mix rules see it. */
typedef struct ld_mix_tensor {
    ld_tensor_role role;
    int layer, n_layers; /* layer of blk.N tensors (0 otherwise) and the model's layer count */
    int64_t K;           /* row length */
    int n_gqa;           /* query heads per key/value head */
    bool has_imatrix;    /* an importance matrix was given for the model */
    bool tied;           /* the token embedding is also the output matrix */
} ld_mix_tensor;

/* The type mix m gives matrix t (before ld_quant_mix_fallback). */
ld_dtype ld_quant_mix_type(const ld_quant_mix *m, const ld_mix_tensor *t);
/* `want`, or the type a row of K elements falls back to when K is not whole blocks of it. */
ld_dtype ld_quant_mix_fallback(ld_dtype want, int64_t K);

#endif

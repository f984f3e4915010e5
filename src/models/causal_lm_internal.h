/* models/causal_lm_internal.h — the causal LM's layout, shared by the training forward
 * (causal_lm.c), inference (infer/) and the model-directory loader/saver. */
#ifndef LD_CAUSAL_LM_INTERNAL_H
#define LD_CAUSAL_LM_INTERNAL_H

#include "liandan/causal_lm.h"
#include "nn/nn_internal.h"

/* Per-layer parameters (NULL where the variant lacks them). */
typedef struct lm_layer {
    ld_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    ld_tensor *q, *k, *v, *qkv, *qkv_b, *o, *o_b; /* llama: q/k/v/o; gpt2: qkv (c_attn), o (c_proj) */
    ld_tensor *q_b, *k_b, *v_b;                   /* qwen2 only */
    ld_tensor *gate, *up, *down, *up_b, *down_b;  /* gpt2: up = c_fc, down = c_proj */
} lm_layer;

struct ld_lm {
    ld_ctx *ctx;
    ld_lm_config cfg;
    ld_params *params;
    ld_tensor *wte, *wpe, *lnf_w, *lnf_b, *lm_head;
    lm_layer *layers;
};

#endif

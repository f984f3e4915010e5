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

/* A matrix that inference reads in the type a GGUF file stored it in (F16 or a quantized
 * type) instead of its F32 parameter: rows of blocks in nn.Linear order [N, K]. */
typedef struct lm_packed {
    const ld_tensor *w; /* the parameter it stands for */
    ld_dtype dtype;
    const void *data;   /* into the GGUF mapping, or an owned copy (rows reordered) */
    bool owned;
} lm_packed;

struct ld_lm {
    ld_ctx *ctx;
    ld_lm_config cfg;
    ld_params *params;
    ld_tensor *wte, *wpe, *lnf_w, *lnf_b, *lm_head;
    lm_layer *layers;
    lm_packed *packed; /* models loaded from GGUF: the file's F16/quantized matrices */
    int n_packed;
    struct ld_gguf *gguf; /* kept open (mmapped) while packed entries point into it */
};

/* The packed form of parameter w, or NULL. */
const lm_packed *lm_packed_find(const ld_lm *m, const ld_tensor *w);

#endif

/* liandan/causal_lm.h — the decoder-only language model (文源 / CPM, GPT-3 style).
 *
 * One implementation, two variants chosen by the config:
 *   llama: RMSNorm, RoPE, SwiGLU MLP, grouped-query attention, no biases, optional tied
 *          embeddings (HF LlamaForCausalLM tensor names);
 *   gpt2:  LayerNorm, GELU MLP, learned positions, biases, tied embeddings
 *          (HF GPT2LMHeadModel tensor names; Conv1D weights stored [in, out]).
 * Parameters are named exactly as in the Hugging Face model, so a model directory written
 * here loads in transformers and vice versa. */
#ifndef LIANDAN_CAUSAL_LM_H
#define LIANDAN_CAUSAL_LM_H

#include "liandan/nn.h"
#include "liandan/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ld_lm_arch { LD_ARCH_LLAMA = 0, LD_ARCH_GPT2 = 1 } ld_lm_arch;

/* Which Hugging Face model_type a llama-architecture config came from (written back as is).
 * Mistral is llama with an optional sliding window; Qwen2 adds q/k/v projection biases. */
typedef enum ld_lm_family {
    LD_FAMILY_LLAMA = 0,
    LD_FAMILY_MISTRAL,
    LD_FAMILY_QWEN2,
    LD_FAMILY_GPT2,
    LD_FAMILY_QWEN3,  /* RMSNorm over each head of q and k */
    LD_FAMILY_GEMMA2, /* GeGLU, sandwich norms, soft-capped logits, sliding window on every other layer */
    LD_FAMILY_PHI3,   /* fused qkv and gate/up projections */
    LD_FAMILY_MIXTRAL, /* llama with a mixture-of-experts MLP (top-k renormalised gates) */
    LD_FAMILY_QWEN2MOE, /* qwen2 with experts and a sigmoid-gated shared expert */
} ld_lm_family;

/* Rotary position embedding scaling (config.json "rope_scaling"): how the rotation
 * frequencies are stretched for contexts longer than the model was trained on. */
typedef enum ld_rope_scaling_type {
    LD_ROPE_SCALING_NONE = 0,
    LD_ROPE_SCALING_LINEAR,  /* positions / factor */
    LD_ROPE_SCALING_DYNAMIC, /* NTK-aware: the base grows with the context beyond the original */
    LD_ROPE_SCALING_LLAMA3,  /* Llama 3.1: low frequencies / factor, high kept, a smooth band between */
    LD_ROPE_SCALING_YARN,    /* YaRN: interpolation mixed with extrapolation per frequency, scaled attention */
} ld_rope_scaling_type;

typedef struct ld_rope_scaling {
    ld_rope_scaling_type type;
    float factor;                  /* > 0 (>= 1 for dynamic, llama3 and yarn) */
    int64_t original_max_position; /* the context trained on; 0 = max_position */
    float low_freq_factor, high_freq_factor; /* llama3 (1 and 4 in Llama 3.1) */
    float beta_fast, beta_slow;    /* yarn (32 and 1 by default) */
    float attention_factor;        /* yarn: cos and sin scale; 0 = 0.1 ln(factor) + 1 */
} ld_rope_scaling;

#define LD_LM_MAX_EOS 8

typedef struct ld_lm_config {
    ld_lm_arch arch;
    int64_t vocab_size;
    int64_t hidden_size;       /* C */
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads;        /* = n_heads for gpt2 */
    int64_t intermediate_size; /* MLP width (gpt2: n_inner, usually 4 C) */
    int64_t max_position;      /* context length */
    float norm_eps;
    float rope_theta;
    float init_std;            /* 0.02 */
    bool tie_embeddings;
    bool qkv_bias;             /* biases on the q, k, v projections (Qwen2) */
    ld_lm_family family;
    int32_t bos_token_id, eos_token_id;
    /* every token that ends generation (config.json's eos_token_id may be a list; the first
     * is eos_token_id); n_eos_token_ids 0 = just eos_token_id */
    int32_t eos_token_ids[LD_LM_MAX_EOS];
    int n_eos_token_ids;
    int64_t head_dim;          /* per attention head; 0 = hidden_size / n_heads */
    ld_rope_scaling rope_scaling;
    /* attention sees only the last sliding_window keys (0 = all) on the layers of the
     * pattern: every layer (pattern 1), or every other one starting with the first (2, Gemma 2) */
    int64_t sliding_window;
    int sliding_window_pattern;
    float attn_softcap;  /* attention scores become c * tanh(s / c) (Gemma 2: 50); 0 = off */
    float final_softcap; /* the same on the logits (Gemma 2: 30); 0 = off */
    float query_scale;   /* the attention scale; 0 = 1 / sqrt(head_dim) (Gemma 2: query_pre_attn_scalar^-1/2) */
    /* mixture of experts (Mixtral, Qwen2-MoE): every layer's MLP is n_experts SwiGLU experts,
     * n_experts_used of them per token by a router; 0 = a dense MLP */
    int64_t n_experts, n_experts_used;  /* num_local_experts / num_experts, num_experts_per_tok */
    int64_t moe_intermediate_size;      /* each expert's width; 0 = intermediate_size (Mixtral) */
    int64_t shared_expert_size;         /* Qwen2-MoE: a shared expert of this width, its output times
                                           sigmoid(x . shared_expert_gate); 0 = none */
    bool moe_norm_topk;         /* gates renormalised over the chosen experts (Mixtral: true; Qwen2-MoE:
                                   norm_topk_prob) */
    float router_aux_loss_coef; /* training: weight of the load-balancing loss (the layers' mean) */
    float router_z_loss_coef;   /* training: weight of the router z-loss ("liandan" key) */
    float moe_capacity_factor;  /* training: choices per expert <= factor M k / E ("liandan" key); 0 = no limit */
} ld_lm_config;

/* The size of one attention head. */
int64_t ld_lm_head_dim(const ld_lm_config *cfg);
/* Whether layer l attends through the sliding window. */
bool ld_lm_layer_sliding(const ld_lm_config *cfg, int64_t layer);
/* The rotation frequencies for a config: inv_freq[i] (i < head_dim / 2) and the cos/sin
 * scale (*mscale, YaRN; else 1), for sequences of up to seq_len tokens (dynamic NTK scaling
 * depends on it; the others do not). */
void ld_lm_rope_freqs(const ld_lm_config *cfg, int64_t seq_len, float *inv_freq, float *mscale);

/* A small Llama-style default (the demo's starting point). */
ld_lm_config ld_lm_default_config(ld_lm_arch arch);
/* Checks dimensions for consistency; the error names the offending fields. */
ld_status ld_lm_config_validate(ld_ctx *ctx, const ld_lm_config *cfg);
/* Parameter count for a config (embeddings included, tied weights counted once). */
int64_t ld_lm_config_num_params(const ld_lm_config *cfg);

/* Parses a Hugging Face config.json (model_type "llama" or "gpt2"). `path` is used in error
 * messages. Unknown keys are logged as warnings; unsupported features are errors. */
ld_status ld_lm_config_from_json(ld_ctx *ctx, const char *text, size_t len, const char *path, ld_lm_config *out);
/* The config.json text for cfg (malloc'd, caller frees with free()); NULL on OOM. */
char *ld_lm_config_to_json(const ld_lm_config *cfg);

typedef struct ld_lm ld_lm;

/* Builds the model with freshly initialised parameters (GPT-2/Llama conventions: N(0, std),
 * residual output projections scaled by 1/sqrt(2 n_layers), norms 1, biases 0). */
ld_status ld_lm_new(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, ld_lm **out);
/* The same model (the same values for the same seed), but the matrices' values are drawn only
 * as they are written (ld_lm_save_gguf, ld_lm_save), one at a time: writes a new model of any
 * size without holding its weights (`liandan init`). It cannot compute: sessions, adapters
 * and ld_lm_forward refuse it. */
ld_status ld_lm_new_lazy(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, ld_lm **out);
void ld_lm_free(ld_lm *m);
const ld_lm_config *ld_lm_config_of(const ld_lm *m);
ld_params *ld_lm_params(ld_lm *m);

/* Writes dir/config.json, dir/model.safetensors (F32, HF names) and
 * dir/generation_config.json (the directory is created if needed; files written atomically).
 * The tokenizer.json is the caller's to copy. */
ld_status ld_lm_save(ld_lm *m, const char *dir);
/* How a model file is loaded. */
typedef struct ld_lm_load_params {
    /* true: every parameter is copied to F32, as training and fine-tuning need (the file is
     * closed). false (default, for inference): the weights are used in place from the
     * mapped file — quantized and F16 matrices as they are stored, F32 ones without a copy;
     * only norms, biases and learned positions are copied, and matrices in a type the
     * kernels cannot multiply or at an unaligned offset. The file stays mapped while the
     * model lives; ld_lm_forward (training) refuses such a model. */
    bool trainable;
} ld_lm_load_params;
ld_lm_load_params ld_lm_load_default_params(void);

/* Loads a model directory (config.json + model.safetensors or a sharded index; F32, F16 or
 * BF16 weights) for training: ld_lm_load_ex with trainable = true. Errors name the file and
 * the tensor: missing, wrong shape, wrong dtype. */
ld_status ld_lm_load(ld_ctx *ctx, const char *dir, ld_lm **out);
/* The same with load parameters (NULL = defaults: in place, for inference). */
ld_status ld_lm_load_ex(ld_ctx *ctx, const char *dir, const ld_lm_load_params *p, ld_lm **out);
/* generation_config.json's sampling defaults (each < 0 when the file does not give it;
 * do_sample = false is temperature 0). Its eos_token_id list is merged into the config's. */
typedef struct ld_lm_generation_config {
    float temperature, top_p, repetition_penalty;
    int top_k;
} ld_lm_generation_config;
const ld_lm_generation_config *ld_lm_generation_config_of(const ld_lm *m);
/* Whether the model reads its weights in place (loaded for inference) rather than from F32
 * parameters of its own. */
bool ld_lm_in_place(const ld_lm *m);
/* The model file's Jinja chat template (GGUF tokenizer.chat_template, or tokenizer_config.json
 * "chat_template" beside config.json), or NULL. Owned by the model. */
const char *ld_lm_chat_template(const ld_lm *m);
/* Bytes of the model's weights: *mapped = bytes of the mapped file its weights are read
 * from in place, *copied = bytes of values it holds itself (parameters and converted
 * matrices). Either may be NULL. */
void ld_lm_weight_memory(const ld_lm *m, size_t *mapped, size_t *copied);

/* Opens a model directory (and its tokenizer.json) or a GGUF file (model and tokenizer),
 * whichever path is, for training (trainable: F32 copies). Errors as the loaders', and a
 * tokenizer larger than the model's vocab. */
ld_status ld_lm_open(ld_ctx *ctx, const char *path, ld_lm **m, ld_tokenizer **tok);
/* The same with load parameters (NULL = defaults: in place, for inference; a model read in
 * place still trains under an adapter: QLoRA). */
ld_status ld_lm_open_ex(ld_ctx *ctx, const char *path, const ld_lm_load_params *p, ld_lm **m, ld_tokenizer **tok);

/* ---- GGUF (llama.cpp's format) ------------------------------------------------------
 * Architectures "llama" (also for Mistral), "qwen2" and "gpt2" with llama.cpp's tensor names,
 * keys and layouts (docs/formats/gguf-models.md) and the tokenizer as tokenizer.ggml.*. */
typedef struct ld_lm_gguf_params {
    ld_dtype type;        /* the matrices: F32, F16, BF16 or a type ld_quant_type_supported */
    /* A llama.cpp mix (ld_quant_mix_get("Q3_K_M")): per-matrix types by role and layer;
     * overrides `type`. NULL = every matrix in `type`. */
    const struct ld_quant_mix *mix;
    ld_dtype embd_type;   /* token embedding; LD_DTYPE_COUNT = default (Q6_K for 3-5 bit types, else type;
                             with a mix: the mix's body type, or its output type when tied) */
    ld_dtype output_type; /* LM head, or the embedding when tied; LD_DTYPE_COUNT = default, as above */
    const char *name;     /* general.name; NULL = "liandan model" */
    /* Importance weights for the quantizer: K non-negative values for the matrix with GGUF
     * name `tensor` and rows of K elements, or NULL (none). NULL function = none. */
    const float *(*imatrix)(void *user, const char *tensor, int64_t K);
    void *imatrix_user;
} ld_lm_gguf_params;
ld_lm_gguf_params ld_lm_gguf_default_params(void);
/* The usual mixes' type for the embedding / output matrix of a model whose other matrices
 * are `body`: above the body's 4-5 bits (Q6_K); Q8_0, Q6_K and float bodies keep their own. */
ld_dtype ld_lm_mix_edge_type(ld_dtype body);

/* Writes m and its tokenizer as one GGUF file (atomically). Matrices whose rows do not fit
 * the requested block type fall back to Q8_0 or F16; norms, biases and learned positions
 * stay F32. The tokenizer's vocabulary may be smaller than the model's (padded with unused
 * tokens), not larger. */
ld_status ld_lm_save_gguf(ld_lm *m, const ld_tokenizer *tok, const char *path, const ld_lm_gguf_params *p);
/* Loads a GGUF model (made here or by llama.cpp's tools) for training: every parameter is
 * dequantized to F32 (ld_lm_load_gguf_ex with trainable = true). *tok (may be NULL)
 * receives the file's tokenizer. Unsupported architectures, tokenizers, tensor types and
 * RoPE variants are LD_ERR_UNSUPPORTED naming them. */
ld_status ld_lm_load_gguf(ld_ctx *ctx, const char *path, ld_lm **out, ld_tokenizer **tok);
/* The same with load parameters (NULL = defaults: in place from the mapped file, for
 * inference). */
ld_status ld_lm_load_gguf_ex(ld_ctx *ctx, const char *path, const ld_lm_load_params *p, ld_lm **out,
                             ld_tokenizer **tok);
/* The same from a caller-owned buffer that must outlive the model (`name` is used in
 * messages; p NULL = defaults). */
ld_status ld_lm_load_gguf_memory(ld_ctx *ctx, const char *name, const void *data, size_t size,
                                 const ld_lm_load_params *p, ld_lm **out, ld_tokenizer **tok);
/* true when the model came from a GGUF file with quantized (block-type) matrices. */
bool ld_lm_is_quantized(const ld_lm *m);
/* The GGUF tensor name of parameter `param` (an HF name) in m's architecture, into out;
 * false when it has none. */
bool ld_lm_gguf_tensor_name(const ld_lm *m, const char *param, char *out, size_t cap);
/* true when path is a readable file starting with the GGUF magic. */
bool ld_lm_gguf_sniff(const char *path);

/* Training/scoring forward on the tape: ids and targets are [B*T] (row-major [B, T]);
 * targets may be NULL (no loss). *logits (may be NULL) receives [B, T, V]; *loss (may be
 * NULL when targets is NULL) the mean cross-entropy over targets != -100.
 * ids/targets must stay valid until ld_tape_backward() returns. */
ld_status ld_lm_forward(ld_lm *m, ld_tape *tape, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T,
                        ld_tensor **logits, ld_tensor **loss);

/* What the routers of a mixture-of-experts model did in its last training forward (one with
 * the tape recording gradients; summed over layers): choices made (tokens x k x layers), choices dropped over capacity, and the
 * mean load-balancing and z losses over layers (before their coefficients). Zeros for a
 * dense model or before any forward. */
typedef struct ld_lm_moe_stats {
    int64_t choices, dropped;
    double aux_loss, z_loss;
} ld_lm_moe_stats;
ld_lm_moe_stats ld_lm_moe_stats_of(const ld_lm *m);

/* Model FLOPs per token of a training step (6 N + 6 L C T, the MFU convention;
 * N = non-embedding... here all matmul parameters incl. the LM head). */
double ld_lm_train_flops_per_token(const ld_lm_config *cfg, int64_t T);

#ifdef __cplusplus
}
#endif
#endif

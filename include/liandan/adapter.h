/* liandan/adapter.h — adapting a pretrained causal LM without (or besides) changing its
 * weights: LoRA, prompt tuning and classification heads, and adapters as files.
 *
 * An adapter is a small set of parameters of its own (ld_adapter_params) attached to one
 * model: while attached, the model's forward (ld_lm_forward, ld_lm_classify) applies it.
 *   LoRA (Hu et al. 2021): every matrix W [N, K] whose parameter name matches a target
 *     pattern gets A [r, K] and B [N, r]; the layer computes x W^T + (alpha / r) dropout(x)
 *     A^T B^T. A starts uniform in +-1/sqrt(K), B at zero, so training starts from the base.
 *     The base may be F32 or a quantized model (QLoRA: the frozen matrices are read in their
 *     block type and never converted to F32 parameters).
 *   Prompt tuning (Lester et al. 2021): P trainable virtual-token embeddings are put before
 *     the input; with per_layer (deep prompt tuning, P-tuning v2 style) every later layer
 *     also adds P trainable vectors of its own to its input at those positions (they start
 *     at zero, so training starts from plain prompt tuning).
 *   Classification head: score.weight [n_labels, C] over the final hidden state of each
 *     row's last real token (LD_POOL_LAST, as transformers' *ForSequenceClassification) or
 *     the mean over its real tokens (LD_POOL_MEAN). It may be combined with any method,
 *     including full fine-tuning (method LD_ADAPTER_NONE: the head is the only adapter part).
 *
 * Parameter names follow PEFT without its "base_model.model." prefix:
 * "model.layers.0.self_attn.q_proj.lora_A.weight", "prompt_embeddings",
 * "prompt_layers.N" (per-layer prompts, liandan's own), "score.weight". */
#ifndef LIANDAN_ADAPTER_H
#define LIANDAN_ADAPTER_H

#include "liandan/causal_lm.h"
#include "liandan/encoder.h" /* ld_pooling */

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ld_adapter_method {
    LD_ADAPTER_NONE = 0, /* no adapter layers (full fine-tuning, or a head alone) */
    LD_ADAPTER_LORA,
    LD_ADAPTER_PROMPT,
} ld_adapter_method;

#define LD_ADAPTER_MAX_TARGETS 16
#define LD_ADAPTER_MAX_LABELS 256

typedef struct ld_adapter_config {
    ld_adapter_method method;
    /* LoRA */
    int64_t rank;        /* r (default 8) */
    float alpha;         /* the update is scaled by alpha / r (default 16) */
    float dropout;       /* on the LoRA branch's input while training (default 0) */
    /* Comma-separated patterns matched against the base's parameter names (without
     * ".weight"): a pattern matches when it equals the name's last component ("q_proj"), or
     * as a glob over the whole name ("model.layers.*.mlp.*"). Default "q_proj,v_proj" (for
     * gpt2 models "c_attn", for models with a fused qkv_proj (phi3) "qkv_proj"). Only 2-D matrices of the layers match (never embeddings). */
    char targets[256];
    /* prompt tuning */
    int64_t virtual_tokens; /* P (default 20) */
    bool per_layer;         /* a prompt per layer (deep prompt tuning) */
    /* classification head (n_labels = 0: none) */
    int64_t n_labels;
    ld_pooling pooling;
} ld_adapter_config;
ld_adapter_config ld_adapter_default_config(void);
/* "none", "lora", "prompt" -> method; false for other names. */
bool ld_adapter_method_from_name(const char *name, ld_adapter_method *out);
const char *ld_adapter_method_name(ld_adapter_method m);

typedef struct ld_adapter ld_adapter;

/* Creates an adapter for m and attaches it (m must have none attached; m is not owned and
 * must outlive the adapter). LoRA and prompt tuning freeze every base parameter; NONE leaves
 * the base's trainability as it is. LoRA's A and prompt vectors are initialised from seed
 * (prompts from embeddings of random vocabulary tokens, which train better than noise).
 * Errors: bad sizes, targets that match no matrix (the message lists the model's matrix
 * names), a prompt longer than max_position allows. */
ld_status ld_adapter_new(ld_lm *m, const ld_adapter_config *c, uint64_t seed, ld_adapter **out);
/* Detaches the adapter from its model (unmerging a merged LoRA first is the caller's
 * choice: a merged LoRA stays in the weights) and frees it. */
void ld_adapter_free(ld_adapter *a);
const ld_adapter_config *ld_adapter_config_of(const ld_adapter *a);
ld_params *ld_adapter_params(ld_adapter *a);
ld_lm *ld_adapter_model(const ld_adapter *a);
/* The adapter attached to m, or NULL. */
ld_adapter *ld_lm_adapter(const ld_lm *m);
/* Label names of the head (n_labels strings, copied), for files and reports. */
ld_status ld_adapter_set_labels(ld_adapter *a, const char *const *names, int64_t n);
/* Label i's name ("LABEL_i" when none was set). */
const char *ld_adapter_label(const ld_adapter *a, int64_t i);

/* Adds (alpha / r) B A into every target matrix of the base (F32 parameters only: a quantized
 * base is refused) and stops applying the LoRA branch; unmerge subtracts it again. The
 * merged model's logits equal base + adapter up to rounding. Errors for other methods. */
ld_status ld_adapter_merge(ld_adapter *a);
ld_status ld_adapter_unmerge(ld_adapter *a);
bool ld_adapter_is_merged(const ld_adapter *a);

/* Classification forward on the tape: ids [B * T] (row-major [B, T]), lengths[B] real tokens
 * per row (1..T; the rest is padding, which the causal attention of earlier positions never
 * sees). *logits receives [B, n_labels]. Needs an attached adapter with a head. */
ld_status ld_lm_classify(ld_lm *m, ld_tape *t, const int32_t *ids, const int32_t *lengths, int64_t B, int64_t T,
                         ld_tensor **logits);

/* ---- files -------------------------------------------------------------------------
 * PEFT layout (docs/formats/adapters.md): dir/adapter_config.json (peft_type LORA or
 * PROMPT_TUNING, r, lora_alpha, lora_dropout, target_modules, fan_in_fan_out for gpt2,
 * num_virtual_tokens, ...; liandan's extras under "liandan": per-layer prompts, head,
 * labels, the base's shape) and dir/adapter_model.safetensors with PEFT tensor names
 * ("base_model.model.<param>.lora_A.weight" [r, K], ".lora_B.weight" [N, r],
 * "prompt_embeddings" [P, C], "base_model.model.score.weight" [n_labels, C]). */
ld_status ld_adapter_save(const ld_adapter *a, const char *dir);
/* Loads an adapter directory (written here or by PEFT) for m and attaches it. Errors name
 * the file and the tensor: a module the base lacks, a shape that does not fit the base
 * (an adapter for another model), missing or unexpected tensors, unsupported peft_type. */
ld_status ld_adapter_load(ld_lm *m, const char *dir, ld_adapter **out);
/* true when dir holds an adapter_config.json. */
bool ld_adapter_sniff(const char *dir);
/* Writes a LoRA adapter as llama.cpp's GGUF LoRA (general.type "adapter", adapter.type
 * "lora", adapter.lora.alpha; F32 tensors "<base tensor's GGUF name>.lora_a" [r, K] and
 * ".lora_b" [N, r], B's rows ordered like the exported base's q/k rows), which llama.cpp
 * (`llama-cli --lora FILE`) applies to the GGUF export of the same base. Errors for other
 * methods and for a head (llama.cpp has no place for it). */
ld_status ld_adapter_save_gguf(const ld_adapter *a, const char *path);

#ifdef __cplusplus
}
#endif
#endif

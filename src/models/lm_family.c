/* models/lm_family.c — the model families: one row each says what config.json and GGUF call
 * it, which blocks it is built from, and how its Hugging Face parameter names map to GGUF
 * tensor names (the table the loaders, the exporter and the quantizer share). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/causal_lm_internal.h"

/* ---- HF <-> GGUF names: "%d" = the layer ------------------------------------------------- */

static const lm_name_map llama_common[] = {
    {"model.embed_tokens.weight", "token_embd.weight", XF_NONE},
    {"model.norm.weight", "output_norm.weight", XF_NONE},
    {"lm_head.weight", "output.weight", XF_NONE},
    {"model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight", XF_NONE},
    {"model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight", XF_NONE},
    {"model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};

/* separate q, k, v (llama.cpp interleaves q/k rows for the llama architecture only) */
static const lm_name_map llama_qkv[] = {
    {"model.layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight", XF_ROPE_Q},
    {"model.layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight", XF_ROPE_K},
    {"model.layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight", XF_NONE},
    {"model.layers.%d.self_attn.q_proj.bias", "blk.%d.attn_q.bias", XF_ROPE_Q},
    {"model.layers.%d.self_attn.k_proj.bias", "blk.%d.attn_k.bias", XF_ROPE_K},
    {"model.layers.%d.self_attn.v_proj.bias", "blk.%d.attn_v.bias", XF_NONE},
    {NULL, NULL, XF_NONE},
};

static const lm_name_map llama_mlp[] = {
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {"model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", XF_NONE},
    {"model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};

static const lm_name_map qwen3_qk_norm[] = {
    {"model.layers.%d.self_attn.q_norm.weight", "blk.%d.attn_q_norm.weight", XF_NONE},
    {"model.layers.%d.self_attn.k_norm.weight", "blk.%d.attn_k_norm.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};

/* Gemma 2's sandwich: post_attention_layernorm is the attention output's norm there */
static const lm_name_map gemma2_mlp[] = {
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.post_attention_norm.weight", XF_NONE},
    {"model.layers.%d.pre_feedforward_layernorm.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {"model.layers.%d.post_feedforward_layernorm.weight", "blk.%d.post_ffw_norm.weight", XF_NONE},
    {"model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", XF_NONE},
    {"model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};

/* Phi-3: q, k, v in one matrix, gate and up in one (ffn_up holds both, gate first) */
static const lm_name_map phi3_fused[] = {
    {"model.layers.%d.self_attn.qkv_proj.weight", "blk.%d.attn_qkv.weight", XF_NONE},
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {"model.layers.%d.mlp.gate_up_proj.weight", "blk.%d.ffn_up.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};

/* Mixtral: the router, and each expert's w1 (gate), w3 (up), w2 (down) stacked per layer */
static const lm_name_map mixtral_moe[] = {
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {"model.layers.%d.block_sparse_moe.gate.weight", "blk.%d.ffn_gate_inp.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};
/* gate, up, down in this order (lm_build names the experts from it) */
static const lm_name_map mixtral_experts[] = {
    {"model.layers.%d.block_sparse_moe.experts.%d.w1.weight", "blk.%d.ffn_gate_exps.weight", XF_NONE},
    {"model.layers.%d.block_sparse_moe.experts.%d.w3.weight", "blk.%d.ffn_up_exps.weight", XF_NONE},
    {"model.layers.%d.block_sparse_moe.experts.%d.w2.weight", "blk.%d.ffn_down_exps.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};

/* Qwen2-MoE: experts' gate/up/down_proj, and a shared expert with a sigmoid gate (GGUF: a [C]
 * vector; here the [1, C] matrix of HF) */
static const lm_name_map qwen2moe_mlp[] = {
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {"model.layers.%d.mlp.gate.weight", "blk.%d.ffn_gate_inp.weight", XF_NONE},
    {"model.layers.%d.mlp.shared_expert.gate_proj.weight", "blk.%d.ffn_gate_shexp.weight", XF_NONE},
    {"model.layers.%d.mlp.shared_expert.up_proj.weight", "blk.%d.ffn_up_shexp.weight", XF_NONE},
    {"model.layers.%d.mlp.shared_expert.down_proj.weight", "blk.%d.ffn_down_shexp.weight", XF_NONE},
    {"model.layers.%d.mlp.shared_expert_gate.weight", "blk.%d.ffn_gate_inp_shexp.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};
static const lm_name_map qwen2moe_experts[] = {
    {"model.layers.%d.mlp.experts.%d.gate_proj.weight", "blk.%d.ffn_gate_exps.weight", XF_NONE},
    {"model.layers.%d.mlp.experts.%d.up_proj.weight", "blk.%d.ffn_up_exps.weight", XF_NONE},
    {"model.layers.%d.mlp.experts.%d.down_proj.weight", "blk.%d.ffn_down_exps.weight", XF_NONE},
    {NULL, NULL, XF_NONE},
};

static const lm_name_map gpt2_names[] = {
    {"transformer.wte.weight", "token_embd.weight", XF_NONE},
    {"transformer.wpe.weight", "position_embd.weight", XF_NONE},
    {"transformer.ln_f.weight", "output_norm.weight", XF_NONE},
    {"transformer.ln_f.bias", "output_norm.bias", XF_NONE},
    {"transformer.h.%d.ln_1.weight", "blk.%d.attn_norm.weight", XF_NONE},
    {"transformer.h.%d.ln_1.bias", "blk.%d.attn_norm.bias", XF_NONE},
    {"transformer.h.%d.attn.c_attn.weight", "blk.%d.attn_qkv.weight", XF_TRANSPOSE},
    {"transformer.h.%d.attn.c_attn.bias", "blk.%d.attn_qkv.bias", XF_NONE},
    {"transformer.h.%d.attn.c_proj.weight", "blk.%d.attn_output.weight", XF_TRANSPOSE},
    {"transformer.h.%d.attn.c_proj.bias", "blk.%d.attn_output.bias", XF_NONE},
    {"transformer.h.%d.ln_2.weight", "blk.%d.ffn_norm.weight", XF_NONE},
    {"transformer.h.%d.ln_2.bias", "blk.%d.ffn_norm.bias", XF_NONE},
    {"transformer.h.%d.mlp.c_fc.weight", "blk.%d.ffn_up.weight", XF_TRANSPOSE},
    {"transformer.h.%d.mlp.c_fc.bias", "blk.%d.ffn_up.bias", XF_NONE},
    {"transformer.h.%d.mlp.c_proj.weight", "blk.%d.ffn_down.weight", XF_TRANSPOSE},
    {"transformer.h.%d.mlp.c_proj.bias", "blk.%d.ffn_down.bias", XF_NONE},
    {NULL, NULL, XF_NONE},
};

/* ---- the families ------------------------------------------------------------------------ */

#define NAMES(...) {__VA_ARGS__, NULL}

static const lm_family_info families[] = {
    {.family = LD_FAMILY_LLAMA, .model_type = "llama", .hf_class = "LlamaForCausalLM", .gguf_arch = "llama",
     .arch = LD_ARCH_LLAMA, .rope_interleave = true, .swa_pattern = 1,
     .names = NAMES(llama_common, llama_qkv, llama_mlp)},
    /* Mistral is llama in GGUF (llama.cpp's converter writes it so) */
    {.family = LD_FAMILY_MISTRAL, .model_type = "mistral", .hf_class = "MistralForCausalLM", .gguf_arch = "llama",
     .arch = LD_ARCH_LLAMA, .rope_interleave = true, .swa_pattern = 1,
     .names = NAMES(llama_common, llama_qkv, llama_mlp)},
    {.family = LD_FAMILY_QWEN2, .model_type = "qwen2", .hf_class = "Qwen2ForCausalLM", .gguf_arch = "qwen2",
     .arch = LD_ARCH_LLAMA, .qkv_bias = true, .swa_pattern = 1, .names = NAMES(llama_common, llama_qkv, llama_mlp)},
    {.family = LD_FAMILY_QWEN3, .model_type = "qwen3", .hf_class = "Qwen3ForCausalLM", .gguf_arch = "qwen3",
     .arch = LD_ARCH_LLAMA, .qk_norm = true, .swa_pattern = 1, .names = NAMES(llama_common, llama_qkv, llama_mlp, qwen3_qk_norm)},
    {.family = LD_FAMILY_GEMMA2, .model_type = "gemma2", .hf_class = "Gemma2ForCausalLM", .gguf_arch = "gemma2",
     .arch = LD_ARCH_LLAMA, .sandwich_norms = true, .geglu = true, .embed_scale = true, .norm_plus_one = true,
     .always_tied = true, .swa_pattern = 2, .names = NAMES(llama_common, llama_qkv, gemma2_mlp)},
    {.family = LD_FAMILY_PHI3, .model_type = "phi3", .hf_class = "Phi3ForCausalLM", .gguf_arch = "phi3",
     .arch = LD_ARCH_LLAMA, .fused_qkv = true, .fused_gate_up = true, .swa_pattern = 1,
     .names = NAMES(llama_common, phi3_fused)},
    /* Mixtral is llama in GGUF too, with llama.expert_count (lm_gguf.c tells them apart) */
    {.family = LD_FAMILY_MIXTRAL, .model_type = "mixtral", .hf_class = "MixtralForCausalLM", .gguf_arch = "llama",
     .arch = LD_ARCH_LLAMA, .rope_interleave = true, .swa_pattern = 1,
     .names = NAMES(llama_common, llama_qkv, mixtral_moe), .experts = mixtral_experts,
     .router = "model.layers.%d.block_sparse_moe.gate.weight"},
    {.family = LD_FAMILY_QWEN2MOE, .model_type = "qwen2_moe", .hf_class = "Qwen2MoeForCausalLM", .gguf_arch = "qwen2moe",
     .arch = LD_ARCH_LLAMA, .qkv_bias = true, .swa_pattern = 1, .names = NAMES(llama_common, llama_qkv, qwen2moe_mlp),
     .experts = qwen2moe_experts, .router = "model.layers.%d.mlp.gate.weight",
     .shared = {"model.layers.%d.mlp.shared_expert.gate_proj.weight", "model.layers.%d.mlp.shared_expert.up_proj.weight",
                "model.layers.%d.mlp.shared_expert.down_proj.weight", "model.layers.%d.mlp.shared_expert_gate.weight"}},
    {.family = LD_FAMILY_GPT2, .model_type = "gpt2", .hf_class = "GPT2LMHeadModel", .gguf_arch = "gpt2",
     .arch = LD_ARCH_GPT2, .always_tied = true, .names = NAMES(gpt2_names)},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

const lm_family_info *lm_family(ld_lm_family f) {
    for (size_t i = 0; i < N_FAMILIES; i++)
        if (families[i].family == f) return &families[i];
    return NULL;
}

const lm_family_info *lm_family_by_model_type(const char *model_type) {
    for (size_t i = 0; model_type && i < N_FAMILIES; i++)
        if (!strcmp(families[i].model_type, model_type)) return &families[i];
    return NULL;
}

const lm_family_info *lm_family_by_gguf_arch(const char *arch) {
    for (size_t i = 0; arch && i < N_FAMILIES; i++) /* first row wins: llama, not mistral */
        if (!strcmp(families[i].gguf_arch, arch)) return &families[i];
    return NULL;
}

const char *lm_family_list(bool gguf, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_FAMILIES && n < cap; i++) {
        const char *name = gguf ? families[i].gguf_arch : families[i].model_type;
        bool dup = false;
        for (size_t j = 0; j < i; j++) dup |= !strcmp(name, gguf ? families[j].gguf_arch : families[j].model_type);
        if (!dup) n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", name);
    }
    return buf;
}

bool lm_gguf_name(const lm_family_info *f, const char *hf, char *out, size_t cap, lm_xform *xf) {
    for (int t = 0; f->names[t]; t++)
        for (const lm_name_map *e = f->names[t]; e->hf; e++) {
            const char *pct = strstr(e->hf, "%d");
            if (!pct) {
                if (strcmp(e->hf, hf)) continue;
                snprintf(out, cap, "%s", e->gguf);
            } else {
                size_t pre = (size_t)(pct - e->hf);
                if (strncmp(hf, e->hf, pre)) continue;
                char *end;
                long layer = strtol(hf + pre, &end, 10);
                if (end == hf + pre || strcmp(end, pct + 2)) continue;
                snprintf(out, cap, e->gguf, (int)layer);
            }
            *xf = f->rope_interleave || (e->xf != XF_ROPE_Q && e->xf != XF_ROPE_K) ? e->xf : XF_NONE;
            return true;
        }
    return false;
}

bool lm_gguf_expert_name(const lm_family_info *f, const char *hf, char *out, size_t cap, int *expert) {
    for (const lm_name_map *e = f->experts; e && e->hf; e++) {
        const char *p1 = strstr(e->hf, "%d"), *p2 = p1 ? strstr(p1 + 2, "%d") : NULL;
        if (!p2) continue;
        size_t pre = (size_t)(p1 - e->hf), mid = (size_t)(p2 - (p1 + 2));
        if (strncmp(hf, e->hf, pre)) continue;
        char *end;
        long layer = strtol(hf + pre, &end, 10);
        if (end == hf + pre || strncmp(end, p1 + 2, mid)) continue;
        const char *q = end + mid;
        long ex = strtol(q, &end, 10);
        if (end == q || strcmp(end, p2 + 2) || layer < 0 || ex < 0) continue;
        snprintf(out, cap, e->gguf, (int)layer);
        *expert = (int)ex;
        return true;
    }
    return false;
}

/* models/lm_config_json.c — the causal LM config as Hugging Face config.json: the keys of
 * the transformers config class of each family (LlamaConfig, MistralConfig, Qwen2Config,
 * Qwen3Config, Gemma2Config, Phi3Config, GPT2Config), read and written. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/causal_lm_internal.h"

/* Keys we read (or know to be harmless) for the llama-style families; anything else gets a
 * warning (never an error). */
static const char *const llama_keys[] = {
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "initializer_range", "tie_word_embeddings", "bos_token_id", "eos_token_id", "hidden_act", "torch_dtype",
    "attention_bias", "mlp_bias", "attention_dropout", "pretraining_tp", "rope_scaling", "use_cache",
    "transformers_version", "head_dim", "pad_token_id", "liandan", "sliding_window", "use_sliding_window",
    "max_window_layers", "attn_implementation", "layer_types", "dtype",
    /* gemma2 */
    "hidden_activation", "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping",
    "cache_implementation",
    /* phi3 */
    "embd_pdrop", "resid_pdrop", "original_max_position_embeddings",
    /* mixtral */
    "num_local_experts", "num_experts_per_tok", "router_aux_loss_coef", "output_router_logits", "router_jitter_noise",
    /* qwen2_moe */
    "num_experts", "moe_intermediate_size", "shared_expert_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
    "mlp_only_layers", "qkv_bias", NULL};
static const char *const gpt2_keys[] = {
    "architectures", "model_type", "vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "n_ctx", "n_inner",
    "layer_norm_epsilon", "initializer_range", "activation_function", "bos_token_id", "eos_token_id",
    "tie_word_embeddings", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type", "summary_use_proj",
    "summary_activation", "summary_proj_to_labels", "summary_first_dropout", "scale_attn_weights", "use_cache",
    "torch_dtype", "transformers_version", "reorder_and_upcast_attn", "scale_attn_by_inverse_layer_idx",
    "task_specific_params", "pad_token_id", "liandan", NULL};
static const char *const rope_keys[] = {"type", "rope_type", "factor", "original_max_position_embeddings",
                                        "low_freq_factor", "high_freq_factor", "beta_fast", "beta_slow",
                                        "attention_factor", "mscale", "mscale_all_dim", "truncate", NULL};

typedef struct reader {
    ld_ctx *ctx;
    const char *path;
    const char *where; /* "" or "rope_scaling." for messages */
    const cJSON *obj;  /* the object keys are read from */
    ld_status st;
} reader;

static const cJSON *item(reader *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Reads an integer key; missing keys keep *out (the default) when optional. */
static void get_int(reader *r, const char *key, int64_t *out, bool required) {
    if (r->st) return;
    const cJSON *v = item(r, key);
    if (!v) {
        if (required) r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: required key '%s%s' is missing", r->path, r->where, key);
        return;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9e15) {
        char *s = cJSON_PrintUnformatted(v);
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key '%s%s': expected an integer, got %.60s", r->path, r->where, key,
                         s ? s : "?");
        free(s);
        return;
    }
    *out = (int64_t)v->valuedouble;
}

static void get_float(reader *r, const char *key, float *out) {
    if (r->st) return;
    const cJSON *v = item(r, key);
    if (!v) return;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 3e38) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key '%s%s': expected a number", r->path, r->where, key);
        return;
    }
    *out = (float)v->valuedouble;
}

static void get_bool(reader *r, const char *key, bool *out) {
    if (r->st) return;
    const cJSON *v = item(r, key);
    if (!v) return;
    if (!cJSON_IsBool(v)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key '%s%s': expected true or false", r->path, r->where, key);
        return;
    }
    *out = cJSON_IsTrue(v);
}

static void get_token_id(reader *r, const char *key, int32_t *out) {
    int64_t v = *out;
    get_int(r, key, &v, false);
    if (!r->st && (v < -1 || v > INT32_MAX)) r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key '%s' out of range", r->path, key);
    *out = (int32_t)v;
}

/* eos_token_id: one id or a list of ids (Llama 3.1: [128001, 128008, 128009]). */
static void get_eos_ids(reader *r, ld_lm_config *c) {
    if (r->st) return;
    const cJSON *v = item(r, "eos_token_id");
    if (!cJSON_IsArray(v)) {
        get_token_id(r, "eos_token_id", &c->eos_token_id);
        c->n_eos_token_ids = 0;
        return;
    }
    int n = cJSON_GetArraySize(v), k = 0;
    if (n < 1 || n > LD_LM_MAX_EOS) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key 'eos_token_id': a list of %d ids (1..%d)", r->path, n, LD_LM_MAX_EOS);
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
            it->valuedouble > INT32_MAX) {
            r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key 'eos_token_id': item %d is not a token id", r->path, k);
            return;
        }
        c->eos_token_ids[k++] = (int32_t)it->valuedouble;
    }
    c->n_eos_token_ids = k;
    c->eos_token_id = c->eos_token_ids[0];
}

static void expect_string(reader *r, const char *key, const char *const *allowed) {
    if (r->st) return;
    const cJSON *v = item(r, key);
    if (!v) return;
    for (int i = 0; allowed[i]; i++)
        if (cJSON_IsString(v) && !strcmp(v->valuestring, allowed[i])) return;
    r->st = ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s '%.40s' is not supported (supported: %s%s%s)", r->path, key,
                     cJSON_IsString(v) ? v->valuestring : "?", allowed[0], allowed[1] ? ", " : "",
                     allowed[1] ? allowed[1] : "");
}

static const char *const scaling_types[] = {"default", "linear", "dynamic", "llama3", "yarn"};

/* "rope_scaling": {"type" or "rope_type": linear | dynamic | llama3 | yarn, "factor", ...}. */
static void get_rope_scaling(reader *r, ld_lm_config *c) {
    if (r->st) return;
    const cJSON *rs = item(r, "rope_scaling");
    if (!rs) return;
    if (!cJSON_IsObject(rs)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key 'rope_scaling': expected an object or null", r->path);
        return;
    }
    reader sub = {r->ctx, r->path, "rope_scaling.", rs, LD_OK};
    const cJSON *t = item(&sub, "rope_type");
    if (!t) t = item(&sub, "type");
    if (!cJSON_IsString(t)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: rope_scaling has no \"rope_type\" (or \"type\") string", r->path);
        return;
    }
    int type = -1;
    for (int i = 0; i < (int)(sizeof scaling_types / sizeof scaling_types[0]); i++)
        if (!strcmp(t->valuestring, scaling_types[i])) type = i;
    if (type < 0) {
        r->st = ld_error(r->ctx, LD_ERR_UNSUPPORTED,
                         "%s: rope_scaling type '%.40s' is not supported (linear, dynamic, llama3, yarn)", r->path,
                         t->valuestring);
        return;
    }
    ld_rope_scaling *s = &c->rope_scaling;
    *s = (ld_rope_scaling){.type = (ld_rope_scaling_type)type, .factor = 1};
    if (type == LD_ROPE_SCALING_LLAMA3) s->low_freq_factor = 1, s->high_freq_factor = 4;
    if (type == LD_ROPE_SCALING_YARN) s->beta_fast = 32, s->beta_slow = 1;
    if (type == 0) return;
    int64_t orig = 0;
    get_float(&sub, "factor", &s->factor);
    get_int(&sub, "original_max_position_embeddings", &orig, false);
    get_float(&sub, "low_freq_factor", &s->low_freq_factor);
    get_float(&sub, "high_freq_factor", &s->high_freq_factor);
    get_float(&sub, "beta_fast", &s->beta_fast);
    get_float(&sub, "beta_slow", &s->beta_slow);
    get_float(&sub, "attention_factor", &s->attention_factor);
    float mscale = 0, mscale_all = 0;
    get_float(&sub, "mscale", &mscale);
    get_float(&sub, "mscale_all_dim", &mscale_all);
    if (!sub.st && (mscale != 0 || mscale_all != 0) && type == LD_ROPE_SCALING_YARN && s->attention_factor == 0 &&
        s->factor > 1) /* DeepSeek-style: the ratio of two magnitude scales */
        s->attention_factor = (float)((0.1 * mscale * log(s->factor) + 1) / (0.1 * mscale_all * log(s->factor) + 1));
    s->original_max_position = orig;
    if (type == LD_ROPE_SCALING_LLAMA3 && !orig && !sub.st)
        sub.st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: rope_scaling llama3 needs original_max_position_embeddings", r->path);
    if (!sub.st)
        for (const cJSON *it = rs->child; it; it = it->next) {
            bool ok = false;
            for (int i = 0; rope_keys[i] && !ok; i++) ok = !strcmp(it->string, rope_keys[i]);
            if (!ok) ld_log(r->ctx, LD_LOG_WARN, "%s: unknown key 'rope_scaling.%s' ignored", r->path, it->string);
        }
    r->st = sub.st;
}

/* The keys of the llama-style families (llama, mistral, qwen2, qwen3, gemma2, phi3). */
static void read_llama_style(reader *r, const lm_family_info *fam, ld_lm_config *c) {
    ld_ctx *ctx = r->ctx;
    c->family = fam->family;
    c->qkv_bias = fam->qkv_bias;
    c->n_kv_heads = 0;
    get_int(r, "vocab_size", &c->vocab_size, true);
    get_int(r, "hidden_size", &c->hidden_size, true);
    get_int(r, "intermediate_size", &c->intermediate_size, true);
    get_int(r, "num_hidden_layers", &c->n_layers, true);
    get_int(r, "num_attention_heads", &c->n_heads, true);
    get_int(r, "num_key_value_heads", &c->n_kv_heads, false);
    if (!c->n_kv_heads) c->n_kv_heads = c->n_heads;
    get_int(r, "max_position_embeddings", &c->max_position, true);
    get_float(r, "rms_norm_eps", &c->norm_eps);
    get_float(r, "rope_theta", &c->rope_theta);
    c->tie_embeddings = fam->always_tied;
    get_bool(r, "tie_word_embeddings", &c->tie_embeddings);
    if (!r->st && fam->always_tied && !c->tie_embeddings)
        r->st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: %s always ties its embeddings (tie_word_embeddings = false)",
                         r->path, fam->model_type);
    int64_t head_dim = 0;
    get_int(r, "head_dim", &head_dim, false);
    if (!r->st && head_dim && (head_dim < 2 || head_dim > 4096))
        r->st = ld_error(ctx, LD_ERR_FORMAT, "%s: head_dim %lld outside 2..4096", r->path, (long long)head_dim);
    if (!r->st && c->n_heads && head_dim * c->n_heads != c->hidden_size) c->head_dim = head_dim;
    /* the activation: SiLU (SwiGLU) or tanh GELU (GeGLU) */
    if (fam->geglu) {
        expect_string(r, "hidden_activation", (const char *const[]){"gelu_pytorch_tanh", NULL});
        expect_string(r, "hidden_act", (const char *const[]){"gelu_pytorch_tanh", NULL});
    } else {
        expect_string(r, "hidden_act", (const char *const[]){"silu", NULL});
    }
    bool bias = fam->qkv_bias, mlp_bias = false;
    get_bool(r, "attention_bias", &bias);
    get_bool(r, "mlp_bias", &mlp_bias);
    if (!r->st && (bias != fam->qkv_bias || mlp_bias))
        r->st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: %s = %s is not supported for %s", r->path,
                         mlp_bias ? "mlp_bias" : "attention_bias", mlp_bias || bias ? "true" : "false", fam->model_type);
    /* sliding window: Mistral and Phi-3 on every layer, Gemma 2 on every other; Qwen's
     * (use_sliding_window, below max_window_layers) is not implemented */
    int64_t window = 0;
    const bool qwen = fam->family == LD_FAMILY_QWEN2 || fam->family == LD_FAMILY_QWEN3 || fam->family == LD_FAMILY_QWEN2MOE;
    bool use_window = !qwen;
    get_bool(r, "use_sliding_window", &use_window);
    get_int(r, "sliding_window", &window, false);
    if (!r->st && window < 0)
        r->st = ld_error(ctx, LD_ERR_FORMAT, "%s: sliding_window %lld out of range", r->path, (long long)window);
    if (!r->st && use_window && window > 0) {
        if (qwen)
            r->st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: use_sliding_window (Qwen's, below max_window_layers) is not "
                             "supported", r->path);
        else if (window < 0 || window > (1 << 24))
            r->st = ld_error(ctx, LD_ERR_FORMAT, "%s: sliding_window %lld out of range", r->path, (long long)window);
        else c->sliding_window = window, c->sliding_window_pattern = fam->swa_pattern;
    }
    get_rope_scaling(r, c);
    if (fam->family == LD_FAMILY_MIXTRAL) { /* the MLP is experts of intermediate_size, gates renormalised */
        c->moe_norm_topk = true, c->n_experts_used = 2, c->router_aux_loss_coef = 0.001f;
        get_int(r, "num_local_experts", &c->n_experts, true);
        get_int(r, "num_experts_per_tok", &c->n_experts_used, false);
    } else if (fam->family == LD_FAMILY_QWEN2MOE) { /* experts of moe_intermediate_size + a shared expert */
        c->n_experts = 60, c->n_experts_used = 4, c->router_aux_loss_coef = 0.001f;
        c->moe_intermediate_size = 1408, c->shared_expert_size = 5632, c->moe_norm_topk = false;
        get_int(r, "num_experts", &c->n_experts, false);
        get_int(r, "num_experts_per_tok", &c->n_experts_used, false);
        get_int(r, "moe_intermediate_size", &c->moe_intermediate_size, false);
        get_int(r, "shared_expert_intermediate_size", &c->shared_expert_size, false);
        get_bool(r, "norm_topk_prob", &c->moe_norm_topk);
        int64_t step = 1;
        get_int(r, "decoder_sparse_step", &step, false);
        const cJSON *only = item(r, "mlp_only_layers");
        if (!r->st && (step != 1 || (only && (!cJSON_IsArray(only) || cJSON_GetArraySize(only) > 0))))
            r->st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: dense layers between the sparse ones (decoder_sparse_step %lld, "
                             "mlp_only_layers) are not supported: every layer must be a mixture of experts", r->path,
                             (long long)step);
        if (!r->st && (c->moe_intermediate_size < 1 || c->shared_expert_size < 0))
            r->st = ld_error(ctx, LD_ERR_FORMAT, "%s: moe_intermediate_size %lld / shared_expert_intermediate_size %lld "
                             "out of range", r->path, (long long)c->moe_intermediate_size, (long long)c->shared_expert_size);
    }
    if (fam->experts) {
        get_float(r, "router_aux_loss_coef", &c->router_aux_loss_coef);
        float jitter = 0;
        get_float(r, "router_jitter_noise", &jitter);
        if (!r->st && jitter != 0)
            r->st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: router_jitter_noise %g is not supported (0 only)", r->path, jitter);
        /* liandan's own training keys */
        const cJSON *ld = item(r, "liandan");
        if (!r->st && ld && cJSON_IsObject(ld)) {
            reader sub = *r;
            sub.obj = ld, sub.where = "liandan.";
            get_float(&sub, "router_z_loss_coef", &c->router_z_loss_coef);
            get_float(&sub, "moe_capacity_factor", &c->moe_capacity_factor);
            r->st = sub.st;
        }
    }
    if (fam->family == LD_FAMILY_GEMMA2) {
        float qpas = 0;
        c->attn_softcap = 50.0f, c->final_softcap = 30.0f;
        get_float(r, "attn_logit_softcapping", &c->attn_softcap);
        get_float(r, "final_logit_softcapping", &c->final_softcap);
        get_float(r, "query_pre_attn_scalar", &qpas);
        if (!r->st && qpas < 0) r->st = ld_error(ctx, LD_ERR_FORMAT, "%s: query_pre_attn_scalar %g is negative", r->path, qpas);
        if (!r->st && qpas > 0) c->query_scale = 1.0f / sqrtf(qpas);
        /* "null" turns a cap off */
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->obj, "attn_logit_softcapping"))) c->attn_softcap = 0;
        if (cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->obj, "final_logit_softcapping"))) c->final_softcap = 0;
    }
}

ld_status ld_lm_config_from_json(ld_ctx *ctx, const char *text, size_t len, const char *path, ld_lm_config *out) {
    if (!text || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_config_from_json: NULL argument");
    if (!path) path = "config.json";
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        return ld_error(ctx, LD_ERR_FORMAT, "%s: invalid JSON near byte %zu", path, off);
    }
    reader r = {ctx, path, "", root, LD_OK};
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    char list[160];
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        cJSON_Delete(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: 'model_type' (%s) is missing", path, lm_family_list(false, list, sizeof list));
    }
    const lm_family_info *fam = lm_family_by_model_type(mt->valuestring);
    if (!fam) {
        ld_status st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model_type '%.40s' is not supported (%s)", path,
                                mt->valuestring, lm_family_list(false, list, sizeof list));
        cJSON_Delete(root);
        return st;
    }
    const char *const *known;
    ld_lm_config c = ld_lm_default_config(fam->arch);
    if (fam->arch == LD_ARCH_LLAMA) {
        known = llama_keys;
        read_llama_style(&r, fam, &c);
    } else {
        known = gpt2_keys;
        get_int(&r, "vocab_size", &c.vocab_size, true);
        get_int(&r, "n_embd", &c.hidden_size, true);
        get_int(&r, "n_layer", &c.n_layers, true);
        get_int(&r, "n_head", &c.n_heads, true);
        c.n_kv_heads = c.n_heads;
        get_int(&r, "n_positions", &c.max_position, true);
        c.intermediate_size = 4 * c.hidden_size;
        get_int(&r, "n_inner", &c.intermediate_size, false);
        get_float(&r, "layer_norm_epsilon", &c.norm_eps);
        expect_string(&r, "activation_function", (const char *const[]){"gelu_new", "gelu_pytorch_tanh", NULL});
    }
    get_float(&r, "initializer_range", &c.init_std);
    get_token_id(&r, "bos_token_id", &c.bos_token_id);
    get_eos_ids(&r, &c);
    if (!r.st)
        for (const cJSON *it = root->child; it; it = it->next) {
            bool ok = false;
            for (int i = 0; known[i] && !ok; i++) ok = !strcmp(it->string, known[i]);
            if (!ok) ld_log(ctx, LD_LOG_WARN, "%s: unknown key '%s' ignored", path, it->string);
        }
    cJSON_Delete(root);
    if (r.st) return r.st;
    ld_status st = ld_lm_config_validate(ctx, &c);
    if (st) return ld_error_wrap(ctx, st, "%s: ", path);
    *out = c;
    return LD_OK;
}

static void add_rope_scaling(cJSON *o, const ld_lm_config *c) {
    const ld_rope_scaling *s = &c->rope_scaling;
    if (s->type == LD_ROPE_SCALING_NONE) {
        cJSON_AddNullToObject(o, "rope_scaling");
        return;
    }
    cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", scaling_types[s->type]);
    cJSON_AddNumberToObject(rs, "factor", s->factor);
    if (s->original_max_position) cJSON_AddNumberToObject(rs, "original_max_position_embeddings", (double)s->original_max_position);
    if (s->type == LD_ROPE_SCALING_LLAMA3) {
        cJSON_AddNumberToObject(rs, "low_freq_factor", s->low_freq_factor);
        cJSON_AddNumberToObject(rs, "high_freq_factor", s->high_freq_factor);
    }
    if (s->type == LD_ROPE_SCALING_YARN) {
        cJSON_AddNumberToObject(rs, "beta_fast", s->beta_fast);
        cJSON_AddNumberToObject(rs, "beta_slow", s->beta_slow);
        if (s->attention_factor > 0) cJSON_AddNumberToObject(rs, "attention_factor", s->attention_factor);
    }
}

char *ld_lm_config_to_json(const ld_lm_config *c) {
    const lm_family_info *fam = lm_family(c->family);
    if (!fam) return NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    bool llama = c->arch == LD_ARCH_LLAMA;
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(fam->hf_class));
    cJSON_AddStringToObject(o, "model_type", fam->model_type);
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    if (llama) {
        cJSON_AddNumberToObject(o, "hidden_size", (double)c->hidden_size);
        cJSON_AddNumberToObject(o, "intermediate_size", (double)c->intermediate_size);
        cJSON_AddNumberToObject(o, "num_hidden_layers", (double)c->n_layers);
        cJSON_AddNumberToObject(o, "num_attention_heads", (double)c->n_heads);
        cJSON_AddNumberToObject(o, "num_key_value_heads", (double)c->n_kv_heads);
        cJSON_AddNumberToObject(o, "head_dim", (double)ld_lm_head_dim(c));
        cJSON_AddNumberToObject(o, "max_position_embeddings", (double)c->max_position);
        cJSON_AddNumberToObject(o, "rms_norm_eps", c->norm_eps);
        cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
        add_rope_scaling(o, c);
        if (fam->geglu) {
            cJSON_AddStringToObject(o, "hidden_act", "gelu_pytorch_tanh");
            cJSON_AddStringToObject(o, "hidden_activation", "gelu_pytorch_tanh");
        } else {
            cJSON_AddStringToObject(o, "hidden_act", "silu");
        }
        if (c->family == LD_FAMILY_LLAMA || c->family == LD_FAMILY_QWEN3 || c->family == LD_FAMILY_GEMMA2) {
            cJSON_AddBoolToObject(o, "attention_bias", false);
            if (c->family == LD_FAMILY_LLAMA) cJSON_AddBoolToObject(o, "mlp_bias", false);
        }
        if (c->n_experts > 0) {
            if (c->family == LD_FAMILY_QWEN2MOE) {
                cJSON_AddNumberToObject(o, "num_experts", (double)c->n_experts);
                cJSON_AddNumberToObject(o, "moe_intermediate_size", (double)lm_expert_width(c));
                cJSON_AddNumberToObject(o, "shared_expert_intermediate_size", (double)c->shared_expert_size);
                cJSON_AddBoolToObject(o, "norm_topk_prob", c->moe_norm_topk);
                cJSON_AddNumberToObject(o, "decoder_sparse_step", 1);
                cJSON_AddItemToObject(o, "mlp_only_layers", cJSON_CreateArray());
            } else {
                cJSON_AddNumberToObject(o, "num_local_experts", (double)c->n_experts);
            }
            cJSON_AddNumberToObject(o, "num_experts_per_tok", (double)c->n_experts_used);
            cJSON_AddNumberToObject(o, "router_aux_loss_coef", c->router_aux_loss_coef);
            cJSON_AddNumberToObject(o, "router_jitter_noise", 0.0);
            if (c->router_z_loss_coef > 0 || c->moe_capacity_factor > 0) {
                cJSON *ld = cJSON_AddObjectToObject(o, "liandan");
                cJSON_AddNumberToObject(ld, "router_z_loss_coef", c->router_z_loss_coef);
                cJSON_AddNumberToObject(ld, "moe_capacity_factor", c->moe_capacity_factor);
            }
        }
        if (c->sliding_window > 0) cJSON_AddNumberToObject(o, "sliding_window", (double)c->sliding_window);
        else if (c->family != LD_FAMILY_LLAMA) cJSON_AddNullToObject(o, "sliding_window");
        if (c->family == LD_FAMILY_QWEN2 || c->family == LD_FAMILY_QWEN3 || c->family == LD_FAMILY_QWEN2MOE)
            cJSON_AddBoolToObject(o, "use_sliding_window", false);
        if (c->family == LD_FAMILY_GEMMA2) {
            const double D = (double)ld_lm_head_dim(c);
            cJSON_AddNumberToObject(o, "query_pre_attn_scalar", c->query_scale > 0 ? 1.0 / ((double)c->query_scale * c->query_scale) : D);
            if (c->attn_softcap > 0) cJSON_AddNumberToObject(o, "attn_logit_softcapping", c->attn_softcap);
            else cJSON_AddNullToObject(o, "attn_logit_softcapping");
            if (c->final_softcap > 0) cJSON_AddNumberToObject(o, "final_logit_softcapping", c->final_softcap);
            else cJSON_AddNullToObject(o, "final_logit_softcapping");
        }
    } else {
        cJSON_AddNumberToObject(o, "n_embd", (double)c->hidden_size);
        cJSON_AddNumberToObject(o, "n_layer", (double)c->n_layers);
        cJSON_AddNumberToObject(o, "n_head", (double)c->n_heads);
        cJSON_AddNumberToObject(o, "n_positions", (double)c->max_position);
        cJSON_AddNumberToObject(o, "n_inner", (double)c->intermediate_size);
        cJSON_AddNumberToObject(o, "layer_norm_epsilon", c->norm_eps);
        cJSON_AddStringToObject(o, "activation_function", "gelu_new");
        cJSON_AddNumberToObject(o, "resid_pdrop", 0.0);
        cJSON_AddNumberToObject(o, "embd_pdrop", 0.0);
        cJSON_AddNumberToObject(o, "attn_pdrop", 0.0);
    }
    cJSON_AddNumberToObject(o, "initializer_range", c->init_std);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    if (c->n_eos_token_ids > 1) {
        cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
        for (int i = 0; i < c->n_eos_token_ids; i++) cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos_token_ids[i]));
    } else {
        cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    }
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

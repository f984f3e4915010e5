/* models/lm_config_json.c — the causal LM config as Hugging Face config.json: the keys of
 * LlamaConfig (model_type "llama") and GPT2Config (model_type "gpt2"), read and written. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/causal_lm.h"

/* Keys we read for each architecture; anything else gets a warning (never an error). */
static const char *const llama_keys[] = {
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "initializer_range", "tie_word_embeddings", "bos_token_id", "eos_token_id", "hidden_act", "torch_dtype",
    "attention_bias", "mlp_bias", "attention_dropout", "pretraining_tp", "rope_scaling", "use_cache",
    "transformers_version", "head_dim", "pad_token_id", "liandan", "sliding_window", "use_sliding_window",
    "max_window_layers", "attn_implementation", NULL};
static const char *const gpt2_keys[] = {
    "architectures", "model_type", "vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "n_ctx", "n_inner",
    "layer_norm_epsilon", "initializer_range", "activation_function", "bos_token_id", "eos_token_id",
    "tie_word_embeddings", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type", "summary_use_proj",
    "summary_activation", "summary_proj_to_labels", "summary_first_dropout", "scale_attn_weights", "use_cache",
    "torch_dtype", "transformers_version", "reorder_and_upcast_attn", "scale_attn_by_inverse_layer_idx",
    "task_specific_params", "pad_token_id", "liandan", NULL};

typedef struct reader {
    ld_ctx *ctx;
    const char *path;
    const cJSON *root;
    ld_status st;
} reader;

/* Reads an integer key; missing keys keep *out (the default) when optional. */
static void get_int(reader *r, const char *key, int64_t *out, bool required) {
    if (r->st) return;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: required key '%s' is missing", r->path, key);
        return;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 9e15) {
        char *s = cJSON_PrintUnformatted(v);
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key '%s': expected an integer, got %.60s", r->path, key,
                         s ? s : "?");
        free(s);
        return;
    }
    *out = (int64_t)v->valuedouble;
}

static void get_float(reader *r, const char *key, float *out) {
    if (r->st) return;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return;
    if (!cJSON_IsNumber(v)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key '%s': expected a number", r->path, key);
        return;
    }
    *out = (float)v->valuedouble;
}

static void get_bool(reader *r, const char *key, bool *out) {
    if (r->st) return;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return;
    if (!cJSON_IsBool(v)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: key '%s': expected true or false", r->path, key);
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

static void expect_string(reader *r, const char *key, const char *const *allowed) {
    if (r->st) return;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    if (!v || cJSON_IsNull(v)) return;
    for (int i = 0; allowed[i]; i++)
        if (cJSON_IsString(v) && !strcmp(v->valuestring, allowed[i])) return;
    r->st = ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s '%.40s' is not supported (supported: %s%s%s)", r->path, key,
                     cJSON_IsString(v) ? v->valuestring : "?", allowed[0], allowed[1] ? ", " : "",
                     allowed[1] ? allowed[1] : "");
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
    reader r = {ctx, path, root, LD_OK};
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        cJSON_Delete(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: 'model_type' (\"llama\" or \"gpt2\") is missing", path);
    }
    const char *const *known;
    ld_lm_config c;
    bool mistral = !strcmp(mt->valuestring, "mistral"), qwen2 = !strcmp(mt->valuestring, "qwen2");
    if (!strcmp(mt->valuestring, "llama") || mistral || qwen2) {
        c = ld_lm_default_config(LD_ARCH_LLAMA);
        c.family = mistral ? LD_FAMILY_MISTRAL : qwen2 ? LD_FAMILY_QWEN2 : LD_FAMILY_LLAMA;
        c.qkv_bias = qwen2;
        known = llama_keys;
        c.n_kv_heads = 0;
        get_int(&r, "vocab_size", &c.vocab_size, true);
        get_int(&r, "hidden_size", &c.hidden_size, true);
        get_int(&r, "intermediate_size", &c.intermediate_size, true);
        get_int(&r, "num_hidden_layers", &c.n_layers, true);
        get_int(&r, "num_attention_heads", &c.n_heads, true);
        get_int(&r, "num_key_value_heads", &c.n_kv_heads, false);
        if (!c.n_kv_heads) c.n_kv_heads = c.n_heads;
        get_int(&r, "max_position_embeddings", &c.max_position, true);
        get_float(&r, "rms_norm_eps", &c.norm_eps);
        get_float(&r, "rope_theta", &c.rope_theta);
        c.tie_embeddings = false;
        get_bool(&r, "tie_word_embeddings", &c.tie_embeddings);
        expect_string(&r, "hidden_act", (const char *const[]){"silu", NULL});
        bool bias = false, sliding = mistral;
        get_bool(&r, "attention_bias", &bias);
        if (!r.st && bias) r.st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: attention_bias = true is not supported for llama", path);
        /* a sliding window narrower than the context changes attention: not implemented */
        get_bool(&r, "use_sliding_window", &sliding);
        int64_t window = 0;
        get_int(&r, "sliding_window", &window, false);
        if (!r.st && sliding && window > 0 && window < c.max_position)
            r.st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: sliding_window %lld < max_position_embeddings %lld is not supported",
                            path, (long long)window, (long long)c.max_position);
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
        if (!r.st && rs && !cJSON_IsNull(rs))
            r.st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: rope_scaling is not supported yet", path);
        int64_t head_dim = 0;
        get_int(&r, "head_dim", &head_dim, false);
        if (!r.st && head_dim && c.n_heads && head_dim * c.n_heads != c.hidden_size)
            r.st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: head_dim %lld != hidden_size / num_attention_heads is not supported",
                            path, (long long)head_dim);
    } else if (!strcmp(mt->valuestring, "gpt2")) {
        c = ld_lm_default_config(LD_ARCH_GPT2);
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
    } else {
        ld_status st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model_type '%.40s' is not supported (llama, mistral, qwen2, gpt2)", path,
                                mt->valuestring);
        cJSON_Delete(root);
        return st;
    }
    get_float(&r, "initializer_range", &c.init_std);
    get_token_id(&r, "bos_token_id", &c.bos_token_id);
    get_token_id(&r, "eos_token_id", &c.eos_token_id);
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

char *ld_lm_config_to_json(const ld_lm_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    bool llama = c->arch == LD_ARCH_LLAMA;
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    static const char *const arch_names[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "GPT2LMHeadModel"};
    static const char *const type_names[] = {"llama", "mistral", "qwen2", "gpt2"};
    int fam = (int)c->family >= 0 && c->family <= LD_FAMILY_GPT2 ? (int)c->family : 0;
    cJSON_AddItemToArray(arch, cJSON_CreateString(arch_names[fam]));
    cJSON_AddStringToObject(o, "model_type", type_names[fam]);
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    if (llama) {
        cJSON_AddNumberToObject(o, "hidden_size", (double)c->hidden_size);
        cJSON_AddNumberToObject(o, "intermediate_size", (double)c->intermediate_size);
        cJSON_AddNumberToObject(o, "num_hidden_layers", (double)c->n_layers);
        cJSON_AddNumberToObject(o, "num_attention_heads", (double)c->n_heads);
        cJSON_AddNumberToObject(o, "num_key_value_heads", (double)c->n_kv_heads);
        cJSON_AddNumberToObject(o, "max_position_embeddings", (double)c->max_position);
        cJSON_AddNumberToObject(o, "rms_norm_eps", c->norm_eps);
        cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
        cJSON_AddStringToObject(o, "hidden_act", "silu");
        if (c->family == LD_FAMILY_LLAMA) {
            cJSON_AddBoolToObject(o, "attention_bias", false);
            cJSON_AddBoolToObject(o, "mlp_bias", false);
        } else {
            cJSON_AddNullToObject(o, "sliding_window");
            if (c->family == LD_FAMILY_QWEN2) cJSON_AddBoolToObject(o, "use_sliding_window", false);
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
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

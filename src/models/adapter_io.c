/* models/adapter_io.c — adapters as files: the PEFT layout (adapter_config.json +
 * adapter_model.safetensors, docs/formats/adapters.md), read and written, and LoRA as a
 * llama.cpp GGUF adapter. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"
#include "liandan/io.h"
#include "models/adapter_internal.h"

#define PEFT_PREFIX "base_model.model."
#define CONFIG_MAX (1 << 20)


bool ld_adapter_sniff(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    return access(path, R_OK) == 0;
}

/* The base module name of a LoRA's matrix ("model.layers.0.self_attn.q_proj"). */
static void module_name(const ld_tensor *w, char *out, size_t cap) {
    snprintf(out, cap, "%s", w->name);
    size_t len = strlen(out);
    if (len > 7 && !strcmp(out + len - 7, ".weight")) out[len - 7] = 0;
}

static const char *last_component(const char *name) {
    const char *d = strrchr(name, '.');
    return d ? d + 1 : name;
}

/* PEFT's target_modules: the matrices' last name components when those select exactly the
 * LoRA's matrices, else their full module names. */
static cJSON *target_modules(const ld_adapter *a) {
    cJSON *arr = cJSON_CreateArray();
    char comps[LD_ADAPTER_MAX_TARGETS * 4][64];
    int nc = 0;
    bool exact = true;
    for (int i = 0; i < a->n_lora && exact; i++) {
        char mod[LD_TENSOR_NAME_MAX];
        module_name(a->lora[i].w, mod, sizeof mod);
        const char *c = last_component(mod);
        bool seen = false;
        for (int k = 0; k < nc && !seen; k++) seen = !strcmp(comps[k], c);
        if (!seen && nc < (int)(sizeof comps / sizeof comps[0])) snprintf(comps[nc++], sizeof comps[0], "%s", c);
        else if (!seen) exact = false;
    }
    if (exact) { /* would the components select any matrix without a LoRA? */
        char joined[LD_ADAPTER_MAX_TARGETS * 4 * 65] = "";
        for (int k = 0; k < nc; k++) snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s", k ? "," : "", comps[k]);
        exact = lm_adapter_targets(a->m, joined, NULL, NULL) == a->n_lora;
        ld_ctx_clear_error(a->ctx);
    }
    for (int i = 0; i < (exact ? nc : a->n_lora); i++) {
        char mod[LD_TENSOR_NAME_MAX];
        if (!exact) module_name(a->lora[i].w, mod, sizeof mod);
        cJSON_AddItemToArray(arr, cJSON_CreateString(exact ? comps[i] : mod));
    }
    return arr;
}

static char *config_json(const ld_adapter *a) {
    const ld_adapter_config *c = &a->cfg;
    const ld_lm_config *mc = &a->m->cfg;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const char *task = c->n_labels ? "SEQ_CLS" : "CAUSAL_LM";
    if (c->method == LD_ADAPTER_LORA) {
        cJSON_AddStringToObject(o, "peft_type", "LORA");
        cJSON_AddStringToObject(o, "task_type", task);
        cJSON_AddNumberToObject(o, "r", (double)c->rank);
        cJSON_AddNumberToObject(o, "lora_alpha", c->alpha);
        cJSON_AddNumberToObject(o, "lora_dropout", c->dropout);
        cJSON_AddItemToObject(o, "target_modules", target_modules(a));
        cJSON_AddBoolToObject(o, "fan_in_fan_out", mc->arch == LD_ARCH_GPT2);
        cJSON_AddStringToObject(o, "bias", "none");
        cJSON_AddBoolToObject(o, "use_rslora", false);
    } else if (c->method == LD_ADAPTER_PROMPT) {
        cJSON_AddStringToObject(o, "peft_type", "PROMPT_TUNING");
        cJSON_AddStringToObject(o, "task_type", task);
        cJSON_AddNumberToObject(o, "num_virtual_tokens", (double)c->virtual_tokens);
        cJSON_AddNumberToObject(o, "token_dim", (double)mc->hidden_size);
        cJSON_AddNumberToObject(o, "num_transformer_submodules", 1);
        cJSON_AddNumberToObject(o, "num_attention_heads", (double)mc->n_heads);
        cJSON_AddNumberToObject(o, "num_layers", (double)mc->n_layers);
        cJSON_AddStringToObject(o, "prompt_tuning_init", "RANDOM");
    }
    if (c->n_labels) {
        cJSON *m = cJSON_AddArrayToObject(o, "modules_to_save");
        cJSON_AddItemToArray(m, cJSON_CreateString("score"));
    }
    cJSON_AddStringToObject(o, "base_model_name_or_path", "");
    cJSON_AddBoolToObject(o, "inference_mode", true);
    cJSON *l = cJSON_AddObjectToObject(o, "liandan");
    cJSON_AddStringToObject(l, "method", ld_adapter_method_name(c->method));
    if (c->method == LD_ADAPTER_PROMPT) cJSON_AddBoolToObject(l, "per_layer", c->per_layer);
    if (c->n_labels) {
        cJSON_AddNumberToObject(l, "num_labels", (double)c->n_labels);
        cJSON_AddStringToObject(l, "pooling", ld_pooling_name(c->pooling));
        cJSON *names = cJSON_AddArrayToObject(l, "labels");
        for (int64_t i = 0; i < c->n_labels; i++) cJSON_AddItemToArray(names, cJSON_CreateString(ld_adapter_label(a, i)));
    }
    cJSON *b = cJSON_AddObjectToObject(l, "base");
    cJSON_AddStringToObject(b, "architecture", mc->arch == LD_ARCH_GPT2 ? "gpt2" : "llama");
    cJSON_AddNumberToObject(b, "hidden_size", (double)mc->hidden_size);
    cJSON_AddNumberToObject(b, "num_hidden_layers", (double)mc->n_layers);
    cJSON_AddNumberToObject(b, "vocab_size", (double)mc->vocab_size);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

ld_status ld_adapter_save(const ld_adapter *a, const char *dir) {
    if (!a || !dir) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = a->ctx;
    if (!a->m) return ld_error(ctx, LD_ERR_STATE, "the adapter's model is gone");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ld_error(ctx, LD_ERR_IO, "cannot create adapter directory %s: %s", dir, strerror(errno));
    int n = ld_params_count(a->params);
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)n + 1, sizeof *w);
    char (*names)[LD_TENSOR_NAME_MAX + 32] = ld_calloc(ctx, (size_t)n + 1, sizeof *names);
    ld_status st = w && names ? LD_OK : ld_ctx_status(ctx);
    for (int i = 0; !st && i < n; i++) {
        const ld_tensor *t = ld_params_at(a->params, i);
        bool prompt = !strncmp(t->name, "prompt_", 7); /* PEFT keeps prompt tensors without the prefix */
        snprintf(names[i], sizeof names[i], "%s%s", prompt ? "" : PEFT_PREFIX, t->name);
        w[i] = (ld_st_write_tensor){.name = names[i], .dtype = LD_F32, .ndim = t->ndim, .shape = t->shape, .data = t->data};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    ld_str_pair meta[] = {{"format", "pt"}};
    if (!st) st = ld_safetensors_write(ctx, path, w, (size_t)n, meta, 1);
    ld_free(ctx, w);
    ld_free(ctx, names);
    if (st) return st;
    char *js = config_json(a);
    if (!js) return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing adapter_config.json");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    st = ld_file_write_atomic(ctx, path, js, strlen(js));
    free(js);
    return st;
}

/* ---- reading ---------------------------------------------------------------------------- */

ld_status lm_adapter_parse_config(ld_ctx *ctx, const char *path, const char *text, size_t len, ld_adapter_config *c,
                              char ***labels, int64_t *n_labels) {
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *c = ld_adapter_default_config();
    ld_status st = LD_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "peft_type");
    const cJSON *ld = cJSON_GetObjectItemCaseSensitive(o, "liandan");
    const cJSON *method = ld ? cJSON_GetObjectItemCaseSensitive(ld, "method") : NULL;
#define NUM(obj, key, lo, hi, dst)                                                                              \
    do {                                                                                                        \
        const cJSON *v_ = (obj) ? cJSON_GetObjectItemCaseSensitive((obj), (key)) : NULL;                         \
        if (!st && v_ && (!cJSON_IsNumber(v_) || !(v_->valuedouble >= (lo) && v_->valuedouble <= (hi))))        \
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: '%s' must be a number in [%g, %g]", path, (key), (double)(lo), \
                          (double)(hi));                                                                        \
        else if (!st && v_) (dst) = (__typeof__(dst))v_->valuedouble;                                           \
    } while (0)
    if (cJSON_IsString(type) && !strcmp(type->valuestring, "LORA")) {
        c->method = LD_ADAPTER_LORA;
        NUM(o, "r", 1, 4096, c->rank);
        NUM(o, "lora_alpha", 1e-9, 1e9, c->alpha);
        NUM(o, "lora_dropout", 0, 0.99, c->dropout);
        const cJSON *tm = cJSON_GetObjectItemCaseSensitive(o, "target_modules"), *it;
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "use_rslora");
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, "rank_pattern"), *ap = cJSON_GetObjectItemCaseSensitive(o, "alpha_pattern");
        if (!st && !cJSON_IsArray(tm))
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: target_modules must be a list of module names (a regex is not supported)", path);
        if (!st && (cJSON_IsTrue(rs) || cJSON_GetArraySize(rp) > 0 || cJSON_GetArraySize(ap) > 0))
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: use_rslora, rank_pattern and alpha_pattern are not supported", path);
        size_t used = 0;
        cJSON_ArrayForEach(it, tm) {
            if (st) break;
            if (!cJSON_IsString(it) || used + strlen(it->valuestring) + 2 > sizeof c->targets)
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: target_modules must be strings (at most %zu bytes in all)", path,
                              sizeof c->targets - 1);
            else used += (size_t)snprintf(c->targets + used, sizeof c->targets - used, "%s%s", used ? "," : "", it->valuestring);
        }
        if (!st && !used) st = ld_error(ctx, LD_ERR_FORMAT, "%s: target_modules is empty", path);
    } else if (cJSON_IsString(type) && !strcmp(type->valuestring, "PROMPT_TUNING")) {
        c->method = LD_ADAPTER_PROMPT;
        NUM(o, "num_virtual_tokens", 1, 1 << 20, c->virtual_tokens);
        const cJSON *sub = cJSON_GetObjectItemCaseSensitive(o, "num_transformer_submodules");
        if (!st && sub && !(cJSON_IsNumber(sub) && sub->valuedouble == 1))
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: num_transformer_submodules must be 1 (a decoder-only model)", path);
        const cJSON *pl = ld ? cJSON_GetObjectItemCaseSensitive(ld, "per_layer") : NULL;
        c->per_layer = cJSON_IsTrue(pl);
    } else if (!type && cJSON_IsString(method) && !strcmp(method->valuestring, "none")) {
        c->method = LD_ADAPTER_NONE;
    } else {
        char buf[64];
        st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: peft_type %s is not supported (LORA, PROMPT_TUNING)", path,
                      ld_json_describe(type, buf, sizeof buf));
    }
    NUM(ld, "num_labels", 0, LD_ADAPTER_MAX_LABELS, c->n_labels);
    const cJSON *pool = ld ? cJSON_GetObjectItemCaseSensitive(ld, "pooling") : NULL;
    if (!st && pool) {
        if (cJSON_IsString(pool) && !strcmp(pool->valuestring, "mean")) c->pooling = LD_POOL_MEAN;
        else if (!cJSON_IsString(pool) || strcmp(pool->valuestring, "last"))
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: liandan.pooling must be \"last\" or \"mean\"", path);
    }
    const cJSON *names = ld ? cJSON_GetObjectItemCaseSensitive(ld, "labels") : NULL, *it;
    if (!st && names && c->n_labels) {
        if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != (int)c->n_labels)
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: liandan.labels must list %lld names", path, (long long)c->n_labels);
        char **l = st ? NULL : calloc((size_t)c->n_labels + 1, sizeof *l);
        int i = 0;
        cJSON_ArrayForEach(it, names) {
            if (!l) break;
            l[i++] = strdup(cJSON_IsString(it) ? it->valuestring : "");
        }
        *labels = l, *n_labels = l ? c->n_labels : 0;
    }
#undef NUM
    cJSON_Delete(o);
    return st;
}

/* The file's tensor for adapter parameter t, converted into t; errors name both shapes. */
static ld_status read_tensor(ld_ctx *ctx, const char *path, const ld_safetensors *sf, ld_tensor *t) {
    char key[LD_TENSOR_NAME_MAX + 32];
    const ld_tensor_info *info = NULL;
    bool prompt = !strncmp(t->name, "prompt_", 7);
    snprintf(key, sizeof key, "%s%s", prompt ? "" : PEFT_PREFIX, t->name);
    if (ld_safetensors_get(ctx, sf, key, &info) != LD_OK) {
        ld_ctx_clear_error(ctx);
        if (ld_safetensors_get(ctx, sf, t->name, &info) != LD_OK)
            return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: tensor '%s' is missing (the adapter_config.json asks for it)",
                            path, key);
    }
    bool same = info->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = info->shape[d] == t->shape[d];
    if (!same) {
        char want[64], got[96] = "[";
        for (int d = 0; d < info->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld", (long long)info->shape[d]);
        strcat(got, "]");
        return ld_error(ctx, LD_ERR_SHAPE, "%s: tensor '%s' is %s but this base model needs %s (an adapter for another model?)",
                        path, info->name, got, ld_tensor_shape_str(t, want, sizeof want));
    }
    if (info->dtype != LD_F32 && info->dtype != LD_F16 && info->dtype != LD_BF16)
        return ld_error(ctx, LD_ERR_DTYPE, "%s: tensor '%s' is %s (F32, F16 or BF16 expected)", path, info->name,
                        info->dtype_name);
    float *dst = t->data;
    if (info->dtype == LD_F32) {
        memcpy(dst, info->data, info->nbytes); /* the mapping may be unaligned */
        return LD_OK;
    }
    void *tmp = ld_alloc(ctx, info->nbytes);
    if (!tmp) return ld_ctx_status(ctx);
    memcpy(tmp, info->data, info->nbytes);
    ld_status st = ld_convert(ctx, LD_F32, dst, info->dtype, tmp, ld_tensor_numel(t));
    ld_free(ctx, tmp);
    return st;
}

ld_status lm_adapter_read_weights(ld_adapter *a, const char *dir) {
    ld_ctx *ctx = a->ctx;
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    ld_safetensors *sf = NULL;
    ld_status st = ld_safetensors_open(ctx, path, &sf);
    int n = ld_params_count(a->params);
    for (int i = 0; !st && i < n; i++) st = read_tensor(ctx, path, sf, ld_params_at(a->params, i));
    if (!st && ld_safetensors_count(sf) != (size_t)n)
        st = ld_error(ctx, LD_ERR_MISMATCH, "%s: holds %zu tensors but the adapter has %d", path, ld_safetensors_count(sf), n);
    ld_safetensors_close(sf);
    return st;
}

ld_status ld_adapter_load(ld_lm *m, const char *dir, ld_adapter **out) {
    if (!m || !dir || !out) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text = NULL;
    size_t len = 0;
    ld_status st = ld_file_read(ctx, path, CONFIG_MAX, &text, &len);
    if (st) return st;
    ld_adapter_config c;
    char **labels = NULL;
    int64_t n_labels = 0;
    st = lm_adapter_parse_config(ctx, path, text, len, &c, &labels, &n_labels);
    ld_free(ctx, text);
    ld_adapter *a = NULL;
    if (!st && (st = lm_adapter_create(m, &c, &a))) st = ld_error_wrap(ctx, st, "%s: ", path);
    if (!st && labels) st = ld_adapter_set_labels(a, (const char *const *)labels, n_labels);
    for (int64_t i = 0; labels && i < n_labels; i++) free(labels[i]);
    free(labels);
    ld_safetensors *sf = NULL;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!st) st = ld_safetensors_open(ctx, path, &sf);
    int n = a ? ld_params_count(a->params) : 0;
    for (int i = 0; !st && i < n; i++) st = read_tensor(ctx, path, sf, ld_params_at(a->params, i));
    if (!st && ld_safetensors_count(sf) != (size_t)n) {
        const char *extra = "?";
        for (size_t i = 0; i < ld_safetensors_count(sf); i++) {
            const char *nm = ld_safetensors_at(sf, i)->name;
            const char *p = !strncmp(nm, PEFT_PREFIX, strlen(PEFT_PREFIX)) ? nm + strlen(PEFT_PREFIX) : nm;
            if (!ld_params_find(a->params, p)) extra = nm;
        }
        st = ld_error(ctx, LD_ERR_MISMATCH, "%s: holds %zu tensors but the adapter has %d (e.g. '%s' fits no module of "
                      "this base)", path, ld_safetensors_count(sf), n, extra);
    }
    ld_safetensors_close(sf);
    if (st) {
        ld_adapter_free(a);
        return st;
    }
    lm_adapter_freeze_base(a);
    *out = a;
    return LD_OK;
}

/* ---- llama.cpp's GGUF LoRA ---------------------------------------------------------------- */

ld_status ld_adapter_save_gguf(const ld_adapter *a, const char *path) {
    if (!a || !path) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = a->ctx;
    if (!a->m) return ld_error(ctx, LD_ERR_STATE, "the adapter's model is gone");
    if (a->cfg.method != LD_ADAPTER_LORA)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "only LoRA adapters have a GGUF form (this one is %s)",
                        ld_adapter_method_name(a->cfg.method));
    if (a->cfg.n_labels)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "llama.cpp's LoRA files cannot hold a classification head");
    ld_gguf_writer *w = NULL;
    ld_status st = ld_gguf_writer_new(ctx, &w);
    float **bufs = ld_calloc(ctx, (size_t)a->n_lora + 1, sizeof *bufs);
    char (*names)[LD_TENSOR_NAME_MAX + 8] = ld_calloc(ctx, 2 * (size_t)a->n_lora + 1, sizeof *names);
    if (!st && (!bufs || !names)) st = ld_ctx_status(ctx);
    const char *arch = NULL;
    int64_t r = a->cfg.rank;
    for (int i = 0; !st && i < a->n_lora; i++) {
        const lora_pair *p = &a->lora[i];
        char gname[LD_TENSOR_NAME_MAX];
        int64_t rope = 0;
        if (!lm_gguf_export_rows(a->m, p->w->name, gname, sizeof gname, &arch, &rope)) {
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF LoRA: %s has no GGUF name", p->w->name);
            break;
        }
        if (i == 0) {
            if (!st) st = ld_gguf_writer_set_str(w, "general.architecture", arch);
            if (!st) st = ld_gguf_writer_set_str(w, "general.type", "adapter");
            if (!st) st = ld_gguf_writer_set_str(w, "general.name", "liandan LoRA");
            if (!st) st = ld_gguf_writer_set_str(w, "adapter.type", "lora");
            if (!st) st = ld_gguf_writer_set_f32(w, "adapter.lora.alpha", a->cfg.alpha);
        }
        /* A [r, K] as is; B [N, r] with its rows in the order of the exported base's rows */
        const float *b = p->b->data;
        if (rope) {
            if (!(bufs[i] = ld_alloc(ctx, (size_t)(p->N * r) * sizeof(float)))) {
                st = ld_ctx_status(ctx);
                break;
            }
            lm_gguf_rope_rows(bufs[i], b, p->N, rope, (size_t)r * sizeof(float));
            b = bufs[i];
        }
        snprintf(names[2 * i], sizeof names[0], "%s.lora_a", gname);
        snprintf(names[2 * i + 1], sizeof names[0], "%s.lora_b", gname);
        if (!st) st = ld_gguf_writer_add_tensor(w, names[2 * i], 0, 2, (int64_t[]){r, p->K}, p->a->data,
                                                (size_t)(r * p->K) * sizeof(float));
        if (!st) st = ld_gguf_writer_add_tensor(w, names[2 * i + 1], 0, 2, (int64_t[]){p->N, r}, b,
                                                (size_t)(p->N * r) * sizeof(float));
    }
    if (!st) st = ld_gguf_writer_write(w, path);
    ld_gguf_writer_free(w);
    for (int i = 0; bufs && i < a->n_lora; i++) ld_free(ctx, bufs[i]);
    ld_free(ctx, bufs);
    ld_free(ctx, names);
    return st;
}

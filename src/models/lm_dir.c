/* models/lm_dir.c — the causal LM as a Hugging Face model directory: config.json,
 * model.safetensors (or a sharded set), generation_config.json. The tensor names are the
 * parameter names (models/causal_lm.c), so loading is a lookup per parameter. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"
#include "liandan/io.h"
#include "liandan/quant.h"
#include "models/causal_lm_internal.h"

#define CONFIG_MAX (1 << 20)

static ld_status write_text(ld_ctx *ctx, const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return ld_file_write_atomic(ctx, path, text, strlen(text));
}

ld_status ld_lm_save(ld_lm *m, const char *dir) {
    if (!m || !dir) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ld_error(ctx, LD_ERR_IO, "cannot create model directory %s: %s", dir, strerror(errno));
    char *cfg = ld_lm_config_to_json(&m->cfg);
    if (!cfg) return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing config.json");
    ld_status st = write_text(ctx, dir, "config.json", cfg);
    free(cfg);
    if (st) return st;
    char gen[256];
    snprintf(gen, sizeof gen, "{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"do_sample\": true,\n"
             "  \"temperature\": 0.8,\n  \"top_p\": 0.95\n}\n", m->cfg.bos_token_id, m->cfg.eos_token_id);
    if ((st = write_text(ctx, dir, "generation_config.json", gen))) return st;
    if (m->chat_template && (st = write_text(ctx, dir, "chat_template.jinja", m->chat_template))) return st;
    int n = ld_params_count(m->params), k = 0;
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)n + 1, sizeof *w);
    float **vals = ld_calloc(ctx, (size_t)n + 1, sizeof *vals); /* values of matrices read in place */
    if (!w || !vals) st = ld_ctx_status(ctx);
    for (int i = 0; i < n && !st; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        const void *data = t->data;
        if (!data && !(data = vals[i] = ld_alloc(ctx, (size_t)ld_tensor_numel(t) * sizeof(float)))) st = ld_ctx_status(ctx);
        else if (!t->data) st = lm_values(m, t, false, vals[i]);
        w[k++] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F32, .ndim = t->ndim, .shape = t->shape, .data = data};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_str_pair meta[] = {{"format", "pt"}};
    if (!st) st = ld_safetensors_write(ctx, path, w, (size_t)k, meta, 1);
    for (int i = 0; vals && i < n; i++) ld_free(ctx, vals[i]);
    ld_free(ctx, vals), ld_free(ctx, w);
    return st;
}

/* GPT-2 checkpoints converted from the original release name tensors without the
 * "transformer." prefix; accept both. */
static const ld_tensor_info *find_tensor(const ld_st_set *set, const ld_lm_config *c, const char *name) {
    const ld_tensor_info *info = ld_st_set_find(set, name);
    if (!info && c->arch == LD_ARCH_GPT2 && !strncmp(name, "transformer.", 12)) info = ld_st_set_find(set, name + 12);
    return info;
}

/* Tensors a file may hold that are not parameters (attention-mask buffers, a tied head). */
static bool ignorable(const char *name) {
    size_t n = strlen(name);
    return (n >= 9 && !strcmp(name + n - 9, ".attn.bias")) || (n >= 16 && !strcmp(name + n - 16, ".attn.masked_bias")) ||
           strstr(name, "rotary_emb.inv_freq") || !strcmp(name, "lm_head.weight");
}

/* Checks every parameter's tensor (present, same shape, a float type) before anything is
 * allocated for the values: a config asking for more than the files hold fails here. */
static ld_status check_weights(ld_lm *m, const ld_st_set *set, const char *dir) {
    ld_ctx *ctx = m->ctx;
    int n = ld_params_count(m->params);
    for (int i = 0; i < n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        const ld_tensor_info *info = find_tensor(set, &m->cfg, t->name);
        if (!info)
            return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: tensor '%s' is missing from the weights", dir, t->name);
        bool same = info->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = info->shape[d] == t->shape[d];
        if (!same) {
            char want[64], got[96] = "[";
            for (int d = 0; d < info->ndim; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld", (long long)info->shape[d]);
            strcat(got, "]");
            return ld_error(ctx, LD_ERR_SHAPE, "%s: tensor '%s' has shape %s, the config needs %s", dir, t->name, got,
                            ld_tensor_shape_str(t, want, sizeof want));
        }
        if (info->dtype != LD_F32 && info->dtype != LD_F16 && info->dtype != LD_BF16)
            return ld_error(ctx, LD_ERR_DTYPE, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", dir, t->name,
                            info->dtype_name);
    }
    if (!m->cfg.tie_embeddings && m->cfg.arch == LD_ARCH_LLAMA && !ld_st_set_find(set, "lm_head.weight"))
        return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: 'lm_head.weight' is missing and tie_word_embeddings is false", dir);
    /* tensors in the file that the model does not use */
    size_t extra = 0;
    for (size_t i = 0; i < ld_st_set_count(set); i++) {
        const ld_tensor_info *info = ld_st_set_at(set, i);
        char full[LD_TENSOR_NAME_MAX + 16];
        snprintf(full, sizeof full, "transformer.%s", info->name);
        if (ld_params_find(m->params, info->name) || ld_params_find(m->params, full) || ignorable(info->name)) continue;
        if (extra++ < 5) ld_log(ctx, LD_LOG_WARN, "%s: tensor '%s' is not used by the model", dir, info->name);
    }
    return LD_OK;
}

/* Whether ld_qmatmul multiplies [N, K] matrices of type t as they are. */
static bool matmul_reads(ld_ctx *ctx, ld_dtype t, int64_t K) {
    size_t sz;
    bool ok = ld_qmatmul_scratch_size(ctx, t, 1, K, &sz) == LD_OK;
    ld_ctx_clear_error(ctx);
    return ok;
}

/* Matrix t of a model read in place: the file's F32 values (t->data points into the
 * mapping) or F16 rows as they are when aligned; otherwise a copy (F32, or F16 rows
 * transposed into [N, K] for GPT-2's Conv1D). */
static ld_status place_matrix(ld_lm *m, ld_tensor *t, const ld_tensor_info *info, bool kn) {
    ld_ctx *ctx = m->ctx;
    const size_t esize = (size_t)ld_dtype_traits(info->dtype)->block_bytes;
    const bool aligned = ((uintptr_t)info->data % esize) == 0;
    const int64_t n = ld_tensor_numel(t), R = t->shape[0], Cc = t->shape[1];
    if (info->dtype == LD_F32 && aligned) {
        t->data = (void *)info->data;
        return lm_set_form(m, t, LD_F32, info->data, kn, false, false);
    }
    if (info->dtype != LD_F32 && matmul_reads(ctx, info->dtype, kn ? R : Cc)) {
        if (aligned && !kn) return lm_set_form(m, t, info->dtype, info->data, false, false, false);
        /* a copy in the same type: aligned, and [N, K] */
        uint16_t *copy = ld_alloc(ctx, (size_t)n * esize);
        if (!copy) return ld_ctx_status(ctx);
        const uint8_t *src = info->data;
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < Cc; c++)
                memcpy(kn ? copy + c * R + r : copy + r * Cc + c, src + (size_t)(r * Cc + c) * esize, esize);
        return lm_set_form(m, t, info->dtype, copy, false, false, true);
    }
    /* F32 values of our own (BF16, or unaligned F32) */
    float *copy = ld_alloc(ctx, (size_t)n * sizeof(float));
    if (!copy) return ld_ctx_status(ctx);
    ld_status st = ld_convert(ctx, LD_F32, copy, info->dtype, info->data, n);
    if (st) return ld_free(ctx, copy), st;
    t->data = copy; /* the view's values: owned by the form */
    return lm_set_form(m, t, LD_F32, copy, kn, false, true);
}

static ld_status load_weights(ld_lm *m, const ld_st_set *set, const char *dir) {
    ld_ctx *ctx = m->ctx;
    int n = ld_params_count(m->params);
    for (int i = 0; i < n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        const ld_tensor_info *info = find_tensor(set, &m->cfg, t->name);
        ld_status st;
        if (m->in_place && lm_is_matrix(m, t))
            st = place_matrix(m, t, info, m->cfg.arch == LD_ARCH_GPT2 && t != m->wte);
        else st = ld_convert(ctx, LD_F32, t->data, info->dtype, info->data, ld_tensor_numel(t));
        if (st) return ld_error_wrap(ctx, st, "%s: tensor '%s': ", dir, t->name);
    }
    return LD_OK;
}

/* The chat template beside the config: chat_template.jinja, or tokenizer_config.json's
 * "chat_template" (a string, or a list of {name, template} whose "default" is taken). */
static ld_status read_chat_template(ld_ctx *ctx, const char *dir, char **out) {
    char path[4096];
    *out = NULL;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (!access(path, R_OK)) return ld_file_read(ctx, path, CONFIG_MAX, out, NULL);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (access(path, R_OK)) return LD_OK;
    cJSON *root = NULL;
    ld_status st = ld_json_load(ctx, path, 16 << 20, &root);
    if (st) return st;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsArray(t)) {
        const cJSON *pick = NULL, *it;
        cJSON_ArrayForEach(it, t) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default")) pick = it;
        }
        t = pick ? cJSON_GetObjectItemCaseSensitive(pick, "template") : NULL;
        if (!t) st = ld_error(ctx, LD_ERR_FORMAT, "%s: chat_template is a list without a \"default\" template", path);
    }
    if (!st && t && !cJSON_IsNull(t)) {
        if (!cJSON_IsString(t)) st = ld_error(ctx, LD_ERR_FORMAT, "%s: chat_template must be a string", path);
        else if (!(*out = ld_strdup(ctx, t->valuestring))) st = ld_ctx_status(ctx);
    }
    ld_json_free(root);
    return st;
}

ld_status ld_lm_load(ld_ctx *ctx, const char *dir, ld_lm **out) {
    ld_lm_load_params p = {.trainable = true};
    return ld_lm_load_ex(ctx, dir, &p, out);
}

ld_status ld_lm_load_ex(ld_ctx *ctx, const char *dir, const ld_lm_load_params *p, ld_lm **out) {
    if (!dir || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_load: NULL argument");
    *out = NULL;
    ld_lm_load_params dp = ld_lm_load_default_params();
    if (!p) p = &dp;
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ld_status st = ld_file_read(ctx, path, CONFIG_MAX, &text, &len);
    if (st) return st;
    ld_lm_config cfg;
    st = ld_lm_config_from_json(ctx, text, len, path, &cfg);
    ld_free(ctx, text);
    if (st) return st;
    ld_st_set *set = NULL;
    if ((st = ld_st_set_open(ctx, dir, &set))) return st;
    /* the model's names and shapes, without values, checked against the files before
     * anything is allocated for the values */
    ld_lm *m = NULL;
    if (!(st = lm_build(ctx, &cfg, 0, LM_INIT_SHAPES, &m))) st = check_weights(m, set, dir);
    ld_lm_free(m), m = NULL;
    if (!st) st = lm_build(ctx, &cfg, 0, p->trainable ? LM_INIT_ZERO : LM_INIT_IN_PLACE, &m);
    if (!st) st = load_weights(m, set, dir);
    if (!st) st = read_chat_template(ctx, dir, &m->chat_template);
    if (!st && m->in_place) m->st_set = set, m->file_backed = true, set = NULL;
    ld_st_set_close(set);
    if (st) {
        ld_lm_free(m);
        return st;
    }
    *out = m;
    return LD_OK;
}

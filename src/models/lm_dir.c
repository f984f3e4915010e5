/* models/lm_dir.c — the causal LM as a Hugging Face model directory: config.json,
 * model.safetensors (or a sharded set), generation_config.json. The tensor names are the
 * parameter names (models/causal_lm.c), so loading is a lookup per parameter. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "liandan/io.h"
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
    int n = ld_params_count(m->params), k = 0;
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)n + 1, sizeof *w);
    if (!w) return ld_ctx_status(ctx);
    for (int i = 0; i < n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        w[k++] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F32, .ndim = t->ndim, .shape = t->shape, .data = t->data};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_str_pair meta[] = {{"format", "pt"}};
    st = ld_safetensors_write(ctx, path, w, (size_t)k, meta, 1);
    ld_free(ctx, w);
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

static ld_status load_weights(ld_lm *m, const ld_st_set *set, const char *dir) {
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
        ld_status st = ld_convert(ctx, LD_F32, t->data, info->dtype, info->data, ld_tensor_numel(t));
        if (st) return ld_error_wrap(ctx, st, "%s: tensor '%s': ", dir, t->name);
    }
    /* tensors in the file that the model does not use */
    size_t extra = 0;
    for (size_t i = 0; i < ld_st_set_count(set); i++) {
        const ld_tensor_info *info = ld_st_set_at(set, i);
        char full[LD_TENSOR_NAME_MAX + 16];
        snprintf(full, sizeof full, "transformer.%s", info->name);
        if (ld_params_find(m->params, info->name) || ld_params_find(m->params, full) || ignorable(info->name)) continue;
        if (extra++ < 5) ld_log(ctx, LD_LOG_WARN, "%s: tensor '%s' is not used by the model", dir, info->name);
    }
    if (!m->cfg.tie_embeddings && m->cfg.arch == LD_ARCH_LLAMA && !ld_st_set_find(set, "lm_head.weight"))
        return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: 'lm_head.weight' is missing and tie_word_embeddings is false", dir);
    return LD_OK;
}

ld_status ld_lm_load(ld_ctx *ctx, const char *dir, ld_lm **out) {
    if (!dir || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_load: NULL argument");
    *out = NULL;
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
    ld_lm *m = NULL;
    if (!(st = ld_lm_new(ctx, &cfg, 0, &m))) st = load_weights(m, set, dir);
    ld_st_set_close(set);
    if (st) {
        ld_lm_free(m);
        return st;
    }
    *out = m;
    return LD_OK;
}

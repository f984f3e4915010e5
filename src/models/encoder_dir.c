/* models/encoder_dir.c — the encoder as a Hugging Face model directory (BertForMaskedLM /
 * EsmForMaskedLM): config.json and model.safetensors (or a sharded set). Names come from the
 * parameter tables of encoder.c; loading also accepts the bare BertModel / EsmModel layout,
 * TF-era LayerNorm names and checkpoints without an MLM head. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "liandan/io.h"
#include "models/encoder_internal.h"

#define CONFIG_MAX (1 << 20)

ld_status ld_encoder_save(ld_encoder *m, const char *dir) {
    if (!m || !dir) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    const ld_encoder_config *c = &m->cfg;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ld_error(ctx, LD_ERR_IO, "cannot create model directory %s: %s", dir, strerror(errno));
    char path[4096];
    char *cfg = ld_encoder_config_to_json(c);
    if (!cfg) return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing config.json");
    snprintf(path, sizeof path, "%s/config.json", dir);
    ld_status st = ld_file_write_atomic(ctx, path, cfg, strlen(cfg));
    free(cfg);
    if (st) return st;
    /* esm: every layer's rotary inv_freq buffer is part of HF's state dict */
    bool esm = c->arch == LD_ENCODER_ESM;
    int n = ld_params_count(m->params), n_extra = esm ? (int)c->n_layers : 0, k = 0;
    int64_t half = c->hidden_size / c->n_heads / 2;
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)(n + n_extra), sizeof *w);
    char (*names)[LD_TENSOR_NAME_MAX] = n_extra ? ld_calloc(ctx, (size_t)n_extra, sizeof *names) : NULL;
    float *inv_freq = n_extra ? ld_calloc(ctx, (size_t)half, sizeof(float)) : NULL;
    if (!w || (n_extra && (!names || !inv_freq))) {
        ld_free(ctx, w), ld_free(ctx, names), ld_free(ctx, inv_freq);
        return ld_ctx_status(ctx);
    }
    for (int i = 0; i < n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        w[k++] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F32, .ndim = t->ndim, .shape = t->shape, .data = t->data};
    }
    for (int64_t i = 0; n_extra && i < half; i++)
        inv_freq[i] = (float)(1.0 / pow((double)c->rope_theta, (double)(2 * i) / (double)(2 * half)));
    for (int l = 0; l < n_extra; l++) {
        snprintf(names[l], sizeof names[l], "%s%d.attention.self.rotary_embeddings.inv_freq", enc_layer_prefix(c->arch), l);
        w[k++] = (ld_st_write_tensor){.name = names[l], .dtype = LD_F32, .ndim = 1, .shape = &half, .data = inv_freq};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_str_pair meta[] = {{"format", "pt"}};
    st = ld_safetensors_write(ctx, path, w, (size_t)k, meta, 1);
    ld_free(ctx, w), ld_free(ctx, names), ld_free(ctx, inv_freq);
    return st;
}

/* The file's tensor for parameter `name`: the name itself, then without the "bert." / "esm."
 * prefix (BertModel / EsmModel checkpoints), then with TF-era LayerNorm names. */
static const ld_tensor_info *find_tensor(const ld_st_set *set, const char *name) {
    const ld_tensor_info *info = ld_st_set_find(set, name);
    const char *bare = !strncmp(name, "bert.", 5) ? name + 5 : !strncmp(name, "esm.", 4) ? name + 4 : NULL;
    if (!info && bare) info = ld_st_set_find(set, bare);
    size_t n = strlen(name);
    const char *suffix = n >= 16 && !strcmp(name + n - 16, "LayerNorm.weight") ? "gamma"
                         : n >= 14 && !strcmp(name + n - 14, "LayerNorm.bias") ? "beta" : NULL;
    for (int i = 0; !info && suffix && i < 2; i++) {
        char alt[LD_TENSOR_NAME_MAX + 8];
        const char *base = i ? bare : name;
        if (!base) break;
        size_t keep = strlen(base) - (suffix[0] == 'g' ? 6 : 4); /* drop "weight" / "bias" */
        snprintf(alt, sizeof alt, "%.*s%s", (int)keep, base, suffix);
        info = ld_st_set_find(set, alt);
    }
    return info;
}

/* Parameters a checkpoint may lack: the MLM head (BertModel, or a fine-tuned encoder) and
 * esm's contact head. They keep their fresh initialisation. */
static bool optional_param(const char *name) {
    return !strncmp(name, "cls.predictions.", 16) || !strncmp(name, "lm_head.", 8) ||
           !strncmp(name, "esm.contact_head.", 17);
}

/* Tensors a file may hold that are not parameters: buffers, the tied decoder, heads of
 * other tasks. */
static bool ignorable(const char *name) {
    static const char *const parts[] = {"position_ids", "token_type_ids", "rotary_embeddings.inv_freq", "pooler.",
                                        "cls.seq_relationship.", "predictions.decoder.", "lm_head.decoder.",
                                        "embeddings.position_embeddings.weight", "classifier.", NULL};
    for (int i = 0; parts[i]; i++)
        if (strstr(name, parts[i])) return true;
    return false;
}

/* The file's tensor `info` can be parameter p: the same shape, a float type. */
static ld_status check_tensor(ld_ctx *ctx, const enc_param_desc *p, const ld_tensor_info *info, const char *dir) {
    bool same = info->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = info->shape[d] == p->dims[d];
    if (!same) {
        char want[64] = "[", got[96] = "[";
        for (int d = 0; d < info->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld", (long long)info->shape[d]);
        for (int d = 0; d < p->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), d ? ", %lld" : "%lld", (long long)p->dims[d]);
        strcat(got, "]"), strcat(want, "]");
        return ld_error(ctx, LD_ERR_SHAPE, "%s: tensor '%s' has shape %s, the config needs %s", dir, info->name, got, want);
    }
    if (info->dtype != LD_F32 && info->dtype != LD_F16 && info->dtype != LD_BF16)
        return ld_error(ctx, LD_ERR_DTYPE, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", dir, info->name,
                        info->dtype_name);
    return LD_OK;
}

typedef struct weights_check {
    ld_ctx *ctx;
    const ld_st_set *set;
    const char *dir;
} weights_check;

/* Every parameter the config asks for is in the files with its shape: checked from names and
 * shapes alone, before the model is allocated (a config.json asking for more than the files
 * hold would otherwise allocate and initialise all of it first). */
static ld_status check_param(void *user, const enc_param_desc *p) {
    const weights_check *w = user;
    const ld_tensor_info *info = find_tensor(w->set, p->name);
    if (!info) return optional_param(p->name) ? LD_OK
                                              : ld_error(w->ctx, LD_ERR_NOT_FOUND, "%s: tensor '%s' is missing from the weights",
                                                         w->dir, p->name);
    return check_tensor(w->ctx, p, info, w->dir);
}

static ld_status load_tensor(ld_ctx *ctx, ld_tensor *t, const ld_tensor_info *info, const char *dir) {
    enc_param_desc p = {t->name, t->ndim, {t->shape[0], t->ndim > 1 ? t->shape[1] : 0}, 0, false, NULL};
    ld_status st = check_tensor(ctx, &p, info, dir);
    if (st) return st;
    st = ld_convert(ctx, LD_F32, t->data, info->dtype, info->data, ld_tensor_numel(t));
    return st ? ld_error_wrap(ctx, st, "%s: tensor '%s': ", dir, info->name) : LD_OK;
}

static ld_status load_weights(ld_encoder *m, const ld_st_set *set, const char *dir) {
    ld_ctx *ctx = m->ctx;
    int n = ld_params_count(m->params), missing_head = 0;
    const ld_tensor_info **used = ld_calloc(ctx, (size_t)n, sizeof *used);
    if (!used) return ld_ctx_status(ctx);
    ld_status st = LD_OK;
    for (int i = 0; i < n && !st; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        const ld_tensor_info *info = used[i] = find_tensor(set, t->name);
        if (!info && optional_param(t->name)) {
            missing_head += strncmp(t->name, "esm.contact_head.", 17) != 0;
            continue;
        }
        if (!info) st = ld_error(ctx, LD_ERR_NOT_FOUND, "%s: tensor '%s' is missing from the weights", dir, t->name);
        else st = load_tensor(ctx, t, info, dir);
    }
    if (!st && missing_head)
        ld_log(ctx, LD_LOG_WARN, "%s: no masked-LM head in the weights (%d tensors): it starts freshly initialised", dir,
               missing_head);
    /* tensors in the file that the model does not use */
    size_t extra = 0;
    for (size_t i = 0; !st && i < ld_st_set_count(set); i++) {
        const ld_tensor_info *info = ld_st_set_at(set, i);
        bool hit = ignorable(info->name);
        for (int j = 0; j < n && !hit; j++) hit = used[j] == info;
        if (!hit && extra++ < 5) ld_log(ctx, LD_LOG_WARN, "%s: tensor '%s' is not used by the model", dir, info->name);
    }
    ld_free(ctx, used);
    return st;
}

ld_status ld_encoder_load(ld_ctx *ctx, const char *dir, ld_encoder **out) {
    if (!dir || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_encoder_load: NULL argument");
    *out = NULL;
    char path[4096], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    ld_status st = ld_file_read(ctx, path, CONFIG_MAX, &text, &len);
    if (st) return st;
    ld_encoder_config cfg;
    st = ld_encoder_config_from_json(ctx, text, len, path, &cfg);
    ld_free(ctx, text);
    if (st) return st;
    ld_st_set *set = NULL;
    if ((st = ld_st_set_open(ctx, dir, &set))) return st;
    ld_encoder *m = NULL;
    weights_check wc = {ctx, set, dir};
    if ((st = ld_encoder_config_validate(ctx, &cfg)) || (st = enc_each_param(&cfg, NULL, check_param, &wc))) {
        ld_st_set_close(set);
        return st;
    }
    if (!(st = ld_encoder_new(ctx, &cfg, 0, &m))) st = load_weights(m, set, dir);
    ld_st_set_close(set);
    if (st) {
        ld_encoder_free(m);
        return st;
    }
    *out = m;
    return LD_OK;
}

bool ld_encoder_dir_sniff(const char *dir) {
    if (!dir) return false;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    bool yes = cJSON_IsString(mt) && (!strcmp(mt->valuestring, "bert") || !strcmp(mt->valuestring, "esm"));
    cJSON_Delete(root);
    return yes;
}

/* models/lm_dir.c — the causal LM as a Hugging Face model directory: config.json,
 * model.safetensors (or a sharded set), generation_config.json. The tensor names are the
 * parameter names (models/causal_lm.c), so loading is a lookup per parameter. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/comm.h"
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

/* generation_config.json: the special ids and the sampling defaults (the file's own when the
 * model came with one, else liandan's: temperature 0.8, top_p 0.95). */
static char *generation_json(const ld_lm *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    const ld_lm_config *c = &m->cfg;
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    if (c->n_eos_token_ids > 1) {
        cJSON *e = cJSON_AddArrayToObject(o, "eos_token_id");
        for (int i = 0; i < c->n_eos_token_ids; i++) cJSON_AddItemToArray(e, cJSON_CreateNumber(c->eos_token_ids[i]));
    } else {
        cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    }
    const ld_lm_generation_config *g = &m->gen;
    bool given = g->temperature >= 0 || g->top_p >= 0 || g->top_k >= 0 || g->repetition_penalty >= 0;
    cJSON_AddBoolToObject(o, "do_sample", !given || g->temperature != 0);
    if (!given || g->temperature > 0) cJSON_AddNumberToObject(o, "temperature", given ? g->temperature : 0.8);
    if (!given || g->top_p >= 0) cJSON_AddNumberToObject(o, "top_p", given ? g->top_p : 0.95);
    if (g->top_k >= 0) cJSON_AddNumberToObject(o, "top_k", g->top_k);
    if (g->repetition_penalty >= 0) cJSON_AddNumberToObject(o, "repetition_penalty", g->repetition_penalty);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

ld_status lm_save_meta(ld_lm *m, const char *dir) {
    if (!m || !dir) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    if (m->rope_factors)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: the model's RoPE frequency factors (a GGUF's rope_freqs.weight) are "
                        "not a rope_scaling config.json can state", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ld_error(ctx, LD_ERR_IO, "cannot create model directory %s: %s", dir, strerror(errno));
    char *cfg = ld_lm_config_to_json(&m->cfg);
    if (!cfg) return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing config.json");
    ld_status st = write_text(ctx, dir, "config.json", cfg);
    free(cfg);
    if (st) return st;
    char *gen = generation_json(m);
    if (!gen) return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing generation_config.json");
    st = write_text(ctx, dir, "generation_config.json", gen);
    free(gen);
    if (!st && m->chat_template) st = write_text(ctx, dir, "chat_template.jinja", m->chat_template);
    return st;
}

/* Which file of a model sharded over P expert-parallel ranks parameter t goes to: rank p's
 * (0-based) holds its experts, rank 0's also every parameter that is not an expert's. */
static int ep_part_of(const ld_lm *m, const ld_tensor *t, int P) {
    int64_t e = lm_expert_index(m, t);
    return e < 0 ? 0 : (int)(e / (m->cfg.n_experts / P));
}

/* The parameters of file `part` of `parts` (parts <= 1: all of them) into the safetensors file
 * `path`, as F32 under their HF names (values of matrices read in place, and Gemma's w - 1
 * norms, computed). */
static ld_status write_params(ld_lm *m, const char *path, int part, int parts) {
    ld_ctx *ctx = m->ctx;
    ld_status st = LD_OK;
    int n = ld_params_count(m->params), k = 0;
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)n + 1, sizeof *w);
    float **vals = ld_calloc(ctx, (size_t)n + 1, sizeof *vals); /* values of matrices read in place */
    if (!w || !vals) st = ld_ctx_status(ctx);
    for (int i = 0; i < n && !st; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        if (parts > 1 && ep_part_of(m, t, parts) != part) continue;
        const void *data = t->data;
        const bool minus_one = lm_family(m->cfg.family)->norm_plus_one && lm_is_norm_weight(m, t);
        if ((!data || minus_one) && !(data = vals[i] = ld_alloc(ctx, (size_t)ld_tensor_numel(t) * sizeof(float))))
            st = ld_ctx_status(ctx);
        else if (vals[i]) st = lm_values(m, t, false, vals[i]);
        for (int64_t j = 0; !st && minus_one && j < ld_tensor_numel(t); j++) vals[i][j] -= 1.0f; /* HF stores w - 1 */
        w[k++] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F32, .ndim = t->ndim, .shape = t->shape, .data = data};
    }
    ld_str_pair meta[] = {{"format", "pt"}};
    if (!st) st = ld_safetensors_write(ctx, path, w, (size_t)k, meta, 1);
    for (int i = 0; vals && i < n; i++) ld_free(ctx, vals[i]);
    ld_free(ctx, vals), ld_free(ctx, w);
    return st;
}

ld_status ld_lm_save(ld_lm *m, const char *dir) {
    if (!m || !dir) return LD_ERR_INVALID_ARG;
    ld_status st = lm_save_meta(m, dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return st ? st : write_params(m, path, 0, 0);
}

static void shard_name(char *buf, size_t cap, int part, int parts) {
    snprintf(buf, cap, "model-%05d-of-%05d.safetensors", part + 1, parts);
}

ld_status lm_save_ep_part(ld_lm *m, const char *dir, bool index) {
    if (!m || !dir || !m->ep) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    const int P = ld_comm_size(m->ep), p = ld_comm_rank(m->ep);
    char name[64], path[4096];
    shard_name(name, sizeof name, p, P);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    ld_status st = write_params(m, path, p, P);
    if (st || !index) return st;
    /* Hugging Face's index: {"metadata": {"total_size": bytes}, "weight_map": {tensor: file}} */
    cJSON *o = cJSON_CreateObject(), *meta = o ? cJSON_AddObjectToObject(o, "metadata") : NULL;
    cJSON *map = o ? cJSON_AddObjectToObject(o, "weight_map") : NULL;
    double total = 0;
    for (int i = 0; map && i < ld_params_count(m->params); i++) {
        const ld_tensor *t = ld_params_at(m->params, i);
        shard_name(name, sizeof name, ep_part_of(m, t, P), P);
        if (!cJSON_AddStringToObject(map, t->name, name)) map = NULL;
        total += (double)ld_tensor_numel(t) * 4.0;
    }
    char *js = map && meta && cJSON_AddNumberToObject(meta, "total_size", total) ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!js) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory writing model.safetensors.index.json", dir);
    st = write_text(ctx, dir, "model.safetensors.index.json", js);
    free(js);
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
        if (!m->in_place && !t->data) continue; /* another rank's expert (lm_load_part): checked, not read */
        if (m->in_place && lm_is_matrix(m, t))
            st = place_matrix(m, t, info, m->cfg.arch == LD_ARCH_GPT2 && t != m->wte);
        else st = ld_convert(ctx, LD_F32, t->data, info->dtype, info->data, ld_tensor_numel(t));
        if (!st && lm_family(m->cfg.family)->norm_plus_one && lm_is_norm_weight(m, t)) /* HF stores w - 1 */
            for (int64_t j = 0; j < ld_tensor_numel(t); j++) ((float *)t->data)[j] += 1.0f;
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

/* generation_config.json (optional): sampling defaults, and its EOS ids joined to the
 * config's. Values outside their ranges are errors naming the key. */
static ld_status read_generation_config(ld_lm *m, const char *dir) {
    ld_ctx *ctx = m->ctx;
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (access(path, R_OK)) return LD_OK;
    cJSON *root = NULL;
    ld_status st = ld_json_load(ctx, path, CONFIG_MAX, &root);
    if (st) return st;
    ld_json_ref r = ld_json_root("generation_config.json", root);
    ld_lm_generation_config *g = &m->gen;
    double v = -1;
    int64_t k = -1;
    bool sample = true;
    if (!cJSON_IsObject(root)) st = ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    if (!st && !(st = ld_json_get_float(ctx, &r, "temperature", false, 0, 1e6, &v))) g->temperature = (float)v, v = -1;
    if (!st && !(st = ld_json_get_float(ctx, &r, "top_p", false, 0, 1, &v))) g->top_p = (float)v, v = -1;
    if (!st && !(st = ld_json_get_float(ctx, &r, "repetition_penalty", false, 1e-6, 1e6, &v))) g->repetition_penalty = (float)v;
    if (!st && !(st = ld_json_get_int(ctx, &r, "top_k", false, 0, 1 << 24, &k))) g->top_k = (int)k;
    if (!st && !(st = ld_json_get_bool(ctx, &r, "do_sample", false, &sample)) && !sample) g->temperature = 0;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "eos_token_id");
    ld_lm_config *c = &m->cfg;
    if (!c->n_eos_token_ids) c->eos_token_ids[c->n_eos_token_ids++] = c->eos_token_id;
    for (int i = 0; !st && e && (cJSON_IsArray(e) ? i < cJSON_GetArraySize(e) : i < 1); i++) {
        const cJSON *it = cJSON_IsArray(e) ? cJSON_GetArrayItem(e, i) : e;
        if (cJSON_IsNull(it)) continue;
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
            it->valuedouble >= (double)c->vocab_size) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: eos_token_id item %d is not a token id below %lld", path, i,
                          (long long)c->vocab_size);
            break;
        }
        int32_t id = (int32_t)it->valuedouble;
        bool have = false;
        for (int j = 0; j < c->n_eos_token_ids; j++) have |= c->eos_token_ids[j] == id;
        if (have) continue;
        if (c->n_eos_token_ids == LD_LM_MAX_EOS)
            st = ld_error(ctx, LD_ERR_LIMIT, "%s: more than %d EOS ids with config.json's", path, LD_LM_MAX_EOS);
        else c->eos_token_ids[c->n_eos_token_ids++] = id;
    }
    if (c->n_eos_token_ids == 1) c->n_eos_token_ids = 0; /* just eos_token_id */
    ld_json_free(root);
    return st;
}

ld_status ld_lm_load(ld_ctx *ctx, const char *dir, ld_lm **out) {
    ld_lm_load_params p = {.trainable = true};
    return ld_lm_load_ex(ctx, dir, &p, out);
}

static ld_status load_dir(ld_ctx *ctx, const char *dir, const ld_lm_load_params *p, int part, int parts, ld_lm **out);

ld_status ld_lm_load_ex(ld_ctx *ctx, const char *dir, const ld_lm_load_params *p, ld_lm **out) {
    return load_dir(ctx, dir, p, 0, 0, out);
}

ld_status lm_load_part(ld_ctx *ctx, const char *dir, int part, int parts, ld_lm **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_load: NULL argument");
    ld_lm_load_params p = {.trainable = true};
    ld_status st = load_dir(ctx, dir, &p, part, parts, out);
    for (int i = 0; !st && i < ld_params_count(ld_lm_params(*out)); i++) { /* every value held trains */
        ld_tensor *t = ld_params_at(ld_lm_params(*out), i);
        if (t->data && ld_params_set_trainable(ld_lm_params(*out), t->name, true) < 0) st = ld_ctx_status(ctx);
    }
    if (st && *out) ld_lm_free(*out), *out = NULL;
    return st;
}

static ld_status load_dir(ld_ctx *ctx, const char *dir, const ld_lm_load_params *p, int part, int parts, ld_lm **out) {
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
    if (!st) st = lm_build_part(ctx, &cfg, 0, p->trainable ? LM_INIT_ZERO : LM_INIT_IN_PLACE, p->trainable ? part : 0,
                                p->trainable ? parts : 0, &m);
    if (!st) st = load_weights(m, set, dir);
    if (!st) st = read_chat_template(ctx, dir, &m->chat_template);
    if (!st) st = read_generation_config(m, dir);
    if (!st && m->in_place) m->st_set = set, m->file_backed = true, set = NULL;
    ld_st_set_close(set);
    if (st) {
        ld_lm_free(m);
        return st;
    }
    *out = m;
    return LD_OK;
}

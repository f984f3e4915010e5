/* train/train_config.c — the training config file (JSON) and `key=value` overrides.
 *
 * {
 *   "model": { ...config.json keys: model_type, vocab_size, hidden_size, ... },
 *   "tokenizer": "tokenizer.json", "train_data": "train shards", "val_data": "val shards",
 *   "batch_size": 8, "seq_len": 128, "grad_accum": 1, "max_steps": 1000,
 *   "lr": 1e-3, "min_lr": 1e-4, "schedule": "cosine", "warmup_steps": 100, "decay_steps": 0,
 *   "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0,
 *   "eval_every": 100, "eval_batches": 8, "checkpoint_every": 200, "keep_last": 2,
 *   "spike_factor": 0, "seed": 1, "precision": "fp32", "out_dir": "run",
 *   "sample_every": 0, "sample_prompts": ["..."], "sample_tokens": 64,
 *   "teacher": "", "temperature": 1.0, "alpha": 0.9        (distillation)
 *   "objective": "mlm", "mask_prob": 0.15, "whole_word": false, "bucket": 64   (masked LM)
 * }
 * Unknown keys are warned about; wrong types are errors naming the key. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/train.h"
#include "train/train_config.h"

static const char *const known_keys[] = {
    "model", "tokenizer", "train_data", "val_data", "batch_size", "seq_len", "grad_accum", "max_steps", "lr",
    "min_lr", "schedule", "warmup_steps", "decay_steps", "weight_decay", "beta1", "beta2", "eps", "grad_clip",
    "eval_every", "eval_batches", "checkpoint_every", "keep_last", "log_every", "spike_factor", "seed", "precision",
    "out_dir", "sample_every", "sample_prompts", "sample_tokens", "threads", "init_from", "teacher", "temperature",
    "alpha", "objective", "mask_prob", "whole_word", "bucket", NULL};

typedef struct cfg_reader {
    ld_ctx *ctx;
    const char *path;
    cJSON *root;
    ld_status st;
} cfg_reader;

static const cJSON *item(cfg_reader *r, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->root, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static void get_i64(cfg_reader *r, const char *key, int64_t *out, int64_t min, int64_t max) {
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)min ||
        v->valuedouble > (double)max) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s' must be an integer in %lld..%lld", r->path, key,
                         (long long)min, (long long)max);
        return;
    }
    *out = (int64_t)v->valuedouble;
}

static void get_f32(cfg_reader *r, const char *key, float *out, double min, double max) {
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s' must be a number in [%g, %g]", r->path, key, min, max);
        return;
    }
    *out = (float)v->valuedouble;
}

static void get_str(cfg_reader *r, const char *key, char *out, size_t cap) {
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s' must be a string of at most %zu bytes", r->path, key, cap - 1);
        return;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
}

ld_train_config ld_train_config_default(void) {
    ld_train_config c;
    memset(&c, 0, sizeof c);
    c.train = ld_train_default_params();
    c.model = ld_lm_default_config(LD_ARCH_LLAMA);
    snprintf(c.out_dir, sizeof c.out_dir, "run");
    snprintf(c.precision, sizeof c.precision, "fp32");
    c.sample_tokens = 64;
    c.temperature = LD_DISTILL_DEFAULT_TEMPERATURE;
    c.alpha = LD_DISTILL_DEFAULT_ALPHA;
    c.encoder = ld_encoder_default_config(LD_ENCODER_BERT);
    c.mlm_params = ld_mlm_default_params();
    return c;
}

/* Sets root[key] = value, where value is parsed as JSON when it is valid JSON (numbers,
 * true/false, arrays, quoted strings) and taken as a plain string otherwise. Keys may be
 * dotted ("model.hidden_size"). */
static ld_status apply_override(ld_ctx *ctx, cJSON *root, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return ld_error(ctx, LD_ERR_INVALID_ARG, "override '%s' is not key=value", kv);
    char key[256];
    size_t klen = (size_t)(eq - kv);
    if (klen >= sizeof key) return ld_error(ctx, LD_ERR_INVALID_ARG, "override key too long");
    memcpy(key, kv, klen);
    key[klen] = 0;
    cJSON *obj = root;
    char *dot, *k = key;
    while ((dot = strchr(k, '.'))) {
        *dot = 0;
        cJSON *sub = cJSON_GetObjectItemCaseSensitive(obj, k);
        if (!sub) sub = cJSON_AddObjectToObject(obj, k);
        if (!cJSON_IsObject(sub)) return ld_error(ctx, LD_ERR_INVALID_ARG, "override '%s': '%s' is not an object", kv, k);
        obj = sub;
        k = dot + 1;
    }
    cJSON *val = cJSON_Parse(eq + 1);
    if (!val) val = cJSON_CreateString(eq + 1);
    if (!val) return ld_error(ctx, LD_ERR_NOMEM, "override: out of memory");
    if (cJSON_GetObjectItemCaseSensitive(obj, k)) cJSON_ReplaceItemInObjectCaseSensitive(obj, k, val);
    else cJSON_AddItemToObject(obj, k, val);
    return LD_OK;
}

ld_status ld_train_config_parse(ld_ctx *ctx, const char *text, size_t len, const char *path, const char *const *overrides,
                                int n_overrides, ld_train_config *out) {
    if (!out) return LD_ERR_INVALID_ARG;
    if (!path) path = "config";
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : cJSON_CreateObject();
    if (!root) return ld_error(ctx, LD_ERR_FORMAT, "%s: invalid JSON", path);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    for (int i = 0; i < n_overrides; i++) {
        ld_status st = apply_override(ctx, root, overrides[i]);
        if (st) {
            cJSON_Delete(root);
            return st;
        }
    }
    ld_train_config c = ld_train_config_default();
    cfg_reader r = {ctx, path, root, LD_OK};
    ld_train_params *p = &c.train;
    get_i64(&r, "batch_size", &p->batch_size, 1, 1 << 20);
    get_i64(&r, "seq_len", &p->seq_len, 1, 1 << 20);
    get_i64(&r, "grad_accum", &p->grad_accum, 1, 1 << 20);
    get_i64(&r, "max_steps", &p->max_steps, 1, (int64_t)1 << 40);
    get_f32(&r, "lr", &p->schedule.lr, 1e-12, 10);
    p->schedule.min_lr = p->schedule.lr * 0.1f;
    get_f32(&r, "min_lr", &p->schedule.min_lr, 0, 10);
    char sched[32] = "cosine";
    get_str(&r, "schedule", sched, sizeof sched);
    if (!r.st && !ld_lr_kind_from_name(sched, &p->schedule.kind))
        r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: schedule '%s' is not one of constant, cosine, wsd", path, sched);
    p->schedule.warmup_steps = p->max_steps / 20;
    get_i64(&r, "warmup_steps", &p->schedule.warmup_steps, 0, (int64_t)1 << 40);
    p->schedule.max_steps = p->max_steps;
    p->schedule.decay_steps = p->max_steps / 5;
    get_i64(&r, "decay_steps", &p->schedule.decay_steps, 0, (int64_t)1 << 40);
    get_f32(&r, "weight_decay", &p->optim.weight_decay, 0, 10);
    get_f32(&r, "beta1", &p->optim.beta1, 0, 0.999999);
    get_f32(&r, "beta2", &p->optim.beta2, 0, 0.999999);
    get_f32(&r, "eps", &p->optim.eps, 1e-30, 1);
    get_f32(&r, "grad_clip", &p->optim.max_grad_norm, 0, 1e9);
    get_i64(&r, "eval_every", &p->eval_every, 0, (int64_t)1 << 40);
    get_i64(&r, "eval_batches", &p->eval_batches, 0, 1 << 20);
    get_i64(&r, "checkpoint_every", &p->checkpoint_every, 0, (int64_t)1 << 40);
    get_i64(&r, "keep_last", &p->keep_last, 1, 1 << 20);
    get_i64(&r, "log_every", &p->log_every, 1, 1 << 20);
    get_f32(&r, "spike_factor", &p->spike_factor, 0, 1e6);
    int64_t seed = (int64_t)p->seed;
    get_i64(&r, "seed", &seed, 0, INT64_MAX);
    p->seed = (uint64_t)seed;
    get_str(&r, "out_dir", c.out_dir, sizeof c.out_dir);
    get_str(&r, "tokenizer", c.tokenizer, sizeof c.tokenizer);
    get_str(&r, "train_data", c.train_data, sizeof c.train_data);
    get_str(&r, "val_data", c.val_data, sizeof c.val_data);
    get_str(&r, "init_from", c.init_from, sizeof c.init_from);
    get_str(&r, "precision", c.precision, sizeof c.precision);
    if (!r.st && strcmp(c.precision, "fp32") && strcmp(c.precision, "bf16"))
        r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: precision '%s' is not fp32 or bf16", path, c.precision);
    get_str(&r, "teacher", c.teacher, sizeof c.teacher);
    get_f32(&r, "temperature", &c.temperature, -INFINITY, INFINITY);
    if (!r.st && !(c.temperature > 0 && c.temperature <= 1e4))
        r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: 'temperature' must be greater than 0 and at most 10000 (got %g)", path,
                        (double)c.temperature);
    get_f32(&r, "alpha", &c.alpha, 0, 1);
    get_i64(&r, "sample_every", &c.sample_every, 0, (int64_t)1 << 40);
    get_i64(&r, "sample_tokens", &c.sample_tokens, 1, 1 << 20);
    int64_t threads = 0;
    get_i64(&r, "threads", &threads, 0, 4096);
    c.threads = (int)threads;
    const cJSON *prompts = item(&r, "sample_prompts");
    if (!r.st && prompts) {
        if (!cJSON_IsArray(prompts))
            r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: 'sample_prompts' must be an array of strings", path);
        const cJSON *it;
        cJSON_ArrayForEach(it, prompts) {
            if (r.st) break;
            if (!cJSON_IsString(it) || strlen(it->valuestring) >= sizeof c.sample_prompts[0])
                r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: sample_prompts[%d] must be a string under %zu bytes", path,
                                c.n_sample_prompts, sizeof c.sample_prompts[0]);
            else if (c.n_sample_prompts < LD_TRAIN_MAX_PROMPTS)
                snprintf(c.sample_prompts[c.n_sample_prompts++], sizeof c.sample_prompts[0], "%s", it->valuestring);
        }
    }
    char objective[8] = "clm";
    get_str(&r, "objective", objective, sizeof objective);
    if (!r.st && strcmp(objective, "clm") && strcmp(objective, "mlm"))
        r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: objective '%s' is not clm (next token) or mlm (masked LM)", path, objective);
    c.mlm = !strcmp(objective, "mlm");
    get_f32(&r, "mask_prob", &c.mlm_params.mask_prob, 0.001, 0.999);
    get_i64(&r, "bucket", &c.mlm_params.bucket, 1, 1 << 20);
    const cJSON *ww = item(&r, "whole_word");
    if (!r.st && ww && !cJSON_IsBool(ww)) r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: 'whole_word' must be true or false", path);
    c.mlm_params.whole_word = ww && cJSON_IsTrue(ww);
    const cJSON *model = item(&r, "model");
    if (!r.st && model) {
        if (!cJSON_IsObject(model)) {
            r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: 'model' must be an object of config.json keys", path);
        } else {
            char *mt = cJSON_PrintUnformatted(model);
            char where[600];
            snprintf(where, sizeof where, "%s: model", path);
            r.st = !mt ? LD_ERR_NOMEM
                   : c.mlm ? ld_encoder_config_from_json(ctx, mt, strlen(mt), where, &c.encoder)
                           : ld_lm_config_from_json(ctx, mt, strlen(mt), where, &c.model);
            c.has_model = !r.st;
            c.model_bos = cJSON_GetObjectItemCaseSensitive(model, "bos_token_id") != NULL;
            c.model_eos = cJSON_GetObjectItemCaseSensitive(model, "eos_token_id") != NULL;
            free(mt);
        }
    }
    if (!r.st)
        for (const cJSON *it = root->child; it; it = it->next) {
            bool ok = false;
            for (int i = 0; known_keys[i] && !ok; i++) ok = !strcmp(it->string, known_keys[i]);
            if (!ok) ld_log(ctx, LD_LOG_WARN, "%s: unknown key '%s' ignored", path, it->string);
        }
    cJSON_Delete(root);
    if (r.st) return r.st;
    if (p->schedule.warmup_steps > p->max_steps) p->schedule.warmup_steps = p->max_steps;
    if (p->schedule.decay_steps > p->max_steps) p->schedule.decay_steps = p->max_steps;
    p->out_dir = NULL; /* set by the caller from c.out_dir: the struct may be copied */
    *out = c;
    return LD_OK;
}

/* train/train_config.c — the training config file (JSON) and `key=value` overrides.
 *
 * {
 *   "model": { ...config.json keys: model_type, vocab_size, hidden_size, ... },
 *   "tokenizer": "tokenizer.json", "train_data": "train shards", "val_data": "val shards",
 *   "batch_size": 8, "seq_len": 128, "grad_accum": 1, "max_steps": 1000,
 *   "lr": 1e-3, "min_lr": 1e-4, "schedule": "cosine", "warmup_steps": 100, "decay_steps": 0,
 *   "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "grad_clip": 1.0,
 *   "eval_every": 100, "eval_batches": 8, "checkpoint_every": 200, "keep_last": 2,
 *   "spike_factor": 0, "seed": 1, "precision": "auto", "out_dir": "run",
 *   "sample_every": 0, "sample_prompts": ["..."], "sample_tokens": 64,
 *   "teacher": "", "temperature": 1.0, "alpha": 0.9        (distillation)
 *   "objective": "mlm", "mask_prob": 0.15, "whole_word": false, "bucket": 64   (masked LM)
 *   "base": "MODEL", "method": "full" | "lora" | "prompt", "epochs": 3, "early_stopping": 0,
 *   "lora": {"rank": 8, "alpha": 16, "dropout": 0, "targets": "q_proj,v_proj"},
 *   "prompt": {"virtual_tokens": 20, "per_layer": false}, "head": {"pooling": "last"},
 *   "data": {"format": "text" | "chat" | "classification", "train": "...", "val": "...",
 *            "val_fraction": 0.05, "text_field": "text" (or a list), "label_field": "label",
 *            "messages_field": "messages", "separator": "\n", "labels": [...], "packing": true,
 *            "max_examples": 0}                          (fine-tuning)
 *   "stages": [{"name": "...", "data": {...}, "max_steps": ...}, ...],
 *   "zero": 0, "dp_bucket_mb": 25, "dp_overlap": true,     (data parallel under mpirun: docs/scale-out.md)
 *   "dp_reduce": "f32"                                    (or "bf16": gradients summed as bfloat16)
 *   "expert_parallel": 0                                  (a mixture of experts' experts split over ranks: docs/moe.md)
 *   "continual": {"replay": 0, "regularizer": "none" | "l2sp" | "ewc", "lambda": 1,
 *                 "fisher_batches": 8, "adapter_per_stage": false}  (continual learning)
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
    "alpha", "objective", "mask_prob", "whole_word", "bucket",
    "peak_gflops", "base", "method", "lora", "prompt", "head", "data", "epochs", "early_stopping", "stages",
    "continual", "name", "zero", "dp_bucket_mb", "dp_overlap", "dp_reduce", "expert_parallel", NULL};
static const char *const continual_keys[] = {"replay", "regularizer", "lambda", "fisher_batches", "adapter_per_stage", NULL};
static const char *const lora_keys[] = {"rank", "alpha", "dropout", "targets", NULL};
static const char *const prompt_keys[] = {"virtual_tokens", "per_layer", NULL};
static const char *const head_keys[] = {"pooling", NULL};
static const char *const data_keys[] = {"format", "train", "val", "val_fraction", "text_field", "label_field",
                                        "messages_field", "separator", "labels", "packing", "max_examples", NULL};

typedef struct cfg_reader {
    ld_ctx *ctx;
    const char *path;
    cJSON *root;      /* the object keys are read from (the file's, or a nested one) */
    const char *pre;  /* "" or "lora." for messages */
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
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s%s' must be an integer in %lld..%lld", r->path, r->pre, key,
                         (long long)min, (long long)max);
        return;
    }
    *out = (int64_t)v->valuedouble;
}

static void get_f32(cfg_reader *r, const char *key, float *out, double min, double max) {
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s%s' must be a number in [%g, %g]", r->path, r->pre, key, min,
                         max);
        return;
    }
    *out = (float)v->valuedouble;
}

static void get_f32_d(cfg_reader *r, const char *key, double *out, double min, double max) {
    float f = (float)*out;
    get_f32(r, key, &f, min, max);
    const cJSON *v = r->st ? NULL : item(r, key);
    if (v) *out = v->valuedouble; /* full precision */
    (void)f;
}

static void get_str(cfg_reader *r, const char *key, char *out, size_t cap) {
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s%s' must be a string of at most %zu bytes", r->path, r->pre, key,
                         cap - 1);
        return;
    }
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
}

static void get_bool(cfg_reader *r, const char *key, bool *out) {
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return;
    if (!cJSON_IsBool(v)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s%s' must be true or false", r->path, r->pre, key);
        return;
    }
    *out = cJSON_IsTrue(v);
}

/* A string or an array of strings, joined with commas into out (LoRA targets), or into
 * up to max entries of list (text fields). */
static void get_str_list(cfg_reader *r, const char *key, char *joined, size_t cap, char (*list)[LD_FT_FIELD_MAX],
                         int max, int *n) {
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return;
    const cJSON *it;
    int count = 0;
    size_t used = 0;
    if (joined) joined[0] = 0;
    bool ok = cJSON_IsString(v) || cJSON_IsArray(v);
    if (cJSON_IsString(v)) {
        if (joined && strlen(v->valuestring) < cap) memcpy(joined, v->valuestring, strlen(v->valuestring) + 1);
        else if (list && max > 0 && strlen(v->valuestring) < LD_FT_FIELD_MAX) snprintf(list[0], LD_FT_FIELD_MAX, "%s", v->valuestring), count = 1;
        else ok = false;
    }
    if (cJSON_IsArray(v)) {
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it) || !it->valuestring[0]) ok = false;
            else if (joined) {
                size_t l = strlen(it->valuestring);
                if (used + l + 2 > cap) ok = false;
                else used += (size_t)snprintf(joined + used, cap - used, "%s%s", used ? "," : "", it->valuestring);
            } else if (count >= max || strlen(it->valuestring) >= LD_FT_FIELD_MAX) ok = false;
            else snprintf(list[count++], LD_FT_FIELD_MAX, "%s", it->valuestring);
        }
        if (!joined && count == 0) ok = false;
    }
    if (!ok) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s%s' must be a non-empty string or array of strings%s", r->path,
                         r->pre, key, joined ? "" : " (at most 4, each under 64 bytes)");
        return;
    }
    if (n) *n = count;
}

/* Warns about keys of obj that are not in known. */
static void warn_unknown(ld_ctx *ctx, const char *path, const char *pre, const cJSON *obj, const char *const *known) {
    for (const cJSON *it = obj->child; it; it = it->next) {
        bool ok = false;
        for (int i = 0; known[i] && !ok; i++) ok = !strcmp(it->string, known[i]);
        if (!ok) ld_log(ctx, LD_LOG_WARN, "%s: unknown key '%s%s' ignored", path, pre, it->string);
    }
}

/* A nested object of the config: a reader over it (NULL root when absent), or an error. */
static cfg_reader nested(cfg_reader *r, const char *key, const char *pre, const char *const *known) {
    cfg_reader n = {r->ctx, r->path, NULL, pre, LD_OK};
    const cJSON *v;
    if (r->st || !(v = item(r, key))) return n;
    if (!cJSON_IsObject(v)) {
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: '%s' must be an object", r->path, key);
        return n;
    }
    n.root = (cJSON *)v;
    warn_unknown(r->ctx, r->path, pre, v, known);
    return n;
}

/* The fine-tuning keys: base, method, lora, prompt, head, data, epochs. */
static void read_finetune(cfg_reader *r, ld_train_config *c) {
    get_str(r, "base", c->base, sizeof c->base);
    get_str(r, "method", c->method, sizeof c->method);
    if (!r->st && strcmp(c->method, "full") && strcmp(c->method, "lora") && strcmp(c->method, "prompt"))
        r->st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: method '%s' is not one of full, lora, prompt", r->path, c->method);
    /* an adapter trains without weight decay unless the config asks for it (PEFT / HF Trainer's
     * default): decay pulls LoRA's B back to its zero start and shrinks what the adapter learned */
    if (strcmp(c->method, "full") && !item(r, "weight_decay")) c->train.optim.weight_decay = 0;
    c->has_max_steps = item(r, "max_steps") != NULL;
    c->has_warmup = item(r, "warmup_steps") != NULL;
    c->has_decay = item(r, "decay_steps") != NULL;
    c->has_eval_batches = item(r, "eval_batches") != NULL;
    get_f32_d(r, "epochs", &c->epochs, 0, 1e6);
    get_i64(r, "early_stopping", &c->train.early_stopping, 0, 1 << 20);
    ld_adapter_config *a = &c->adapter;
    cfg_reader l = nested(r, "lora", "lora.", lora_keys);
    if (l.root) {
        get_i64(&l, "rank", &a->rank, 1, 4096);
        get_f32(&l, "alpha", &a->alpha, 1e-6, 1e6);
        get_f32(&l, "dropout", &a->dropout, 0, 0.99);
        get_str_list(&l, "targets", a->targets, sizeof a->targets, NULL, 0, NULL);
        if (l.st) r->st = l.st;
    }
    cfg_reader p = nested(r, "prompt", "prompt.", prompt_keys);
    if (p.root) {
        get_i64(&p, "virtual_tokens", &a->virtual_tokens, 1, 1 << 16);
        get_bool(&p, "per_layer", &a->per_layer);
        if (p.st) r->st = p.st;
    }
    cfg_reader h = nested(r, "head", "head.", head_keys);
    if (h.root) {
        char pool[16] = "last";
        get_str(&h, "pooling", pool, sizeof pool);
        if (!h.st && strcmp(pool, "last") && strcmp(pool, "mean"))
            h.st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: head.pooling '%s' is not last or mean", r->path, pool);
        a->pooling = !strcmp(pool, "mean") ? LD_POOL_MEAN : LD_POOL_LAST;
        if (h.st) r->st = h.st;
    }
    get_str(r, "name", c->name, sizeof c->name);
    cfg_reader cl = nested(r, "continual", "continual.", continual_keys);
    if (cl.root) {
        get_f32_d(&cl, "replay", &c->replay, 0, 0.95);
        get_str(&cl, "regularizer", c->regularizer, sizeof c->regularizer);
        if (!cl.st && strcmp(c->regularizer, "none") && strcmp(c->regularizer, "l2sp") && strcmp(c->regularizer, "ewc"))
            cl.st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: continual.regularizer '%s' is not none, l2sp or ewc", r->path,
                             c->regularizer);
        get_f32(&cl, "lambda", &c->reg_lambda, 0, 1e9);
        get_i64(&cl, "fisher_batches", &c->fisher_batches, 1, 1 << 20);
        get_bool(&cl, "adapter_per_stage", &c->adapter_per_stage);
        if (cl.st) r->st = cl.st;
    }
    cfg_reader d = nested(r, "data", "data.", data_keys);
    if (d.root) {
        ld_ft_data_config *dc = &c->data;
        char fmt[32] = "text";
        get_str(&d, "format", fmt, sizeof fmt);
        if (!d.st && !ld_ft_format_from_name(fmt, &dc->format))
            d.st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: data.format '%s' is not one of text, chat, classification",
                            r->path, fmt);
        get_str(&d, "train", c->data_train, sizeof c->data_train);
        get_str(&d, "val", c->data_val, sizeof c->data_val);
        get_f32_d(&d, "val_fraction", &c->val_fraction, 0, 0.9);
        get_str_list(&d, "text_field", NULL, 0, dc->text_fields, LD_FT_MAX_FIELDS, &dc->n_text_fields);
        get_str(&d, "label_field", dc->label_field, sizeof dc->label_field);
        get_str(&d, "messages_field", dc->messages_field, sizeof dc->messages_field);
        get_str(&d, "separator", dc->separator, sizeof dc->separator);
        c->has_packing = item(&d, "packing") != NULL;
        get_bool(&d, "packing", &c->packing);
        get_i64(&d, "max_examples", &dc->max_examples, 0, (int64_t)1 << 40);
        const cJSON *labels = item(&d, "labels");
        if (!d.st && labels) {
            const cJSON *it;
            if (!cJSON_IsArray(labels) || cJSON_GetArraySize(labels) < 2 ||
                cJSON_GetArraySize(labels) > LD_ADAPTER_MAX_LABELS)
                d.st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: data.labels must be an array of 2..%d label names", r->path,
                                LD_ADAPTER_MAX_LABELS);
            cJSON_ArrayForEach(it, labels) {
                if (d.st) break;
                char num[64];
                const char *name = cJSON_IsString(it) ? it->valuestring : NULL;
                if (cJSON_IsNumber(it)) snprintf(num, sizeof num, "%.17g", it->valuedouble), name = num;
                for (int i = 0; name && i < c->labels.n; i++)
                    if (!strcmp(c->labels.names[i], name)) name = NULL;
                if (!name || !(c->labels.names[c->labels.n] = strdup(name)))
                    d.st = ld_error(r->ctx, LD_ERR_FORMAT, "%s: data.labels[%d] must be a new string or number", r->path,
                                    c->labels.n);
                else c->labels.n++;
            }
            c->labels.fixed = c->labels.n > 0;
        }
        if (d.st) r->st = d.st;
    }
}

void ld_train_config_clear(ld_train_config *c) {
    if (c) ld_ft_labels_clear(&c->labels);
}

/* speedup < 0: ask the kernels (only when it matters: the measurement takes ~1 ms). */
bool ld_train_config_bf16_at(const ld_train_config *c, bool finetune, double speedup) {
    if (!strcmp(c->precision, "bf16")) return true;
    if (strcmp(c->precision, "auto") || !finetune || !strcmp(c->method, "full")) return false;
    return (speedup < 0 ? ld_bf16_gemm_speedup() : speedup) >= LD_TRAIN_BF16_BASE_MIN_SPEEDUP;
}

bool ld_train_config_bf16(const ld_train_config *c, bool finetune) {
    return ld_train_config_bf16_at(c, finetune, -1);
}

ld_train_config ld_train_config_default(void) {
    ld_train_config c;
    memset(&c, 0, sizeof c);
    c.train = ld_train_default_params();
    c.model = ld_lm_default_config(LD_ARCH_LLAMA);
    snprintf(c.out_dir, sizeof c.out_dir, "run");
    snprintf(c.precision, sizeof c.precision, "auto");
    c.sample_tokens = 64;
    c.temperature = LD_DISTILL_DEFAULT_TEMPERATURE;
    c.alpha = LD_DISTILL_DEFAULT_ALPHA;
    c.encoder = ld_encoder_default_config(LD_ENCODER_BERT);
    c.mlm_params = ld_mlm_default_params();
    snprintf(c.method, sizeof c.method, "full");
    c.adapter = ld_adapter_default_config();
    c.data = ld_ft_data_default_config();
    c.val_fraction = 0.05;
    snprintf(c.regularizer, sizeof c.regularizer, "none");
    c.reg_lambda = 1.0f;
    c.fisher_batches = 8;
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
    cfg_reader r = {ctx, path, root, "", LD_OK};
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
    get_i64(&r, "zero", &p->zero, 0, 1);
    get_i64(&r, "expert_parallel", &p->expert_parallel, 0, 4096);
    get_f32(&r, "dp_bucket_mb", &p->dp_bucket_mb, 0.001, 1 << 20);
    bool overlap = !p->dp_no_overlap;
    get_bool(&r, "dp_overlap", &overlap);
    p->dp_no_overlap = !overlap;
    char reduce[16] = "f32";
    get_str(&r, "dp_reduce", reduce, sizeof reduce);
    if (!r.st && strcmp(reduce, "f32") && strcmp(reduce, "bf16"))
        r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: dp_reduce '%s' is not f32 or bf16", path, reduce);
    p->dp_bf16 = !strcmp(reduce, "bf16");
    int64_t seed = (int64_t)p->seed;
    get_i64(&r, "seed", &seed, 0, INT64_MAX);
    p->seed = (uint64_t)seed;
    get_str(&r, "out_dir", c.out_dir, sizeof c.out_dir);
    get_str(&r, "tokenizer", c.tokenizer, sizeof c.tokenizer);
    get_str(&r, "train_data", c.train_data, sizeof c.train_data);
    get_str(&r, "val_data", c.val_data, sizeof c.val_data);
    get_str(&r, "init_from", c.init_from, sizeof c.init_from);
    get_str(&r, "precision", c.precision, sizeof c.precision);
    if (!r.st && strcmp(c.precision, "auto") && strcmp(c.precision, "fp32") && strcmp(c.precision, "bf16"))
        r.st = ld_error(ctx, LD_ERR_FORMAT, "%s: precision '%s' is not auto, fp32 or bf16", path, c.precision);
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
    get_f32_d(&r, "peak_gflops", &c.peak_gflops, 0, 1e9);
    read_finetune(&r, &c);
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
    if (r.st) {
        ld_train_config_clear(&c);
        return r.st;
    }
    if (p->schedule.warmup_steps > p->max_steps) p->schedule.warmup_steps = p->max_steps;
    if (p->schedule.decay_steps > p->max_steps) p->schedule.decay_steps = p->max_steps;
    p->out_dir = NULL; /* set by the caller from c.out_dir: the struct may be copied */
    *out = c;
    return LD_OK;
}

/* train/clip_train.c — contrastive pretraining of the image-text model: the config file
 * (model = CLIPConfig keys, image-text data, optimisation), the character vocabulary built from
 * the training captions, batches drawn epoch by epoch without replacement, augmentation on the
 * ctx's threads, AdamW with the learning-rate schedule, the temperature clamp, validation loss
 * on fixed batches, metrics.jsonl and the final model directory. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/comm.h"
#include "io/json.h"
#include "liandan/clip_train.h"
#include "liandan/io.h"
#include "liandan/train.h"
#include "nn/nn_internal.h"
#include "train/ckpt_tensors.h"

#define TRY(call)               \
    do {                        \
        ld_status st_ = (call); \
        if (st_) return st_;    \
    } while (0)

ld_clip_train_config ld_clip_train_config_default(void) {
    ld_clip_train_config c = {.model = ld_clip_default_config(), .batch_size = 64, .max_steps = 500,
                              .schedule = {.kind = LD_LR_COSINE, .lr = 1e-3f, .min_lr = 1e-5f, .warmup_steps = 50,
                                           .max_steps = 500},
                              .optim = ld_adamw_default_config(), .eval_every = 100, .seed = 1, .augment = true,
                              .momentum = 0.995f};
    c.optim.weight_decay = 0.1f;
    c.transform = ld_image_transform_default();
    c.transform.pad = 2;
    snprintf(c.train_data, sizeof c.train_data, "../shared/data/emoji_clip");
    snprintf(c.split, sizeof c.split, "train");
    snprintf(c.val_split, sizeof c.val_split, "dev");
    snprintf(c.lang, sizeof c.lang, "zh");
    snprintf(c.out_dir, sizeof c.out_dir, "runs/clip");
    return c;
}

static const char *const known_keys[] = {"model", "train_data", "val_data", "split", "val_split", "lang", "batch_size",
                                         "max_steps", "lr", "min_lr", "schedule", "warmup_steps", "weight_decay",
                                         "beta1", "beta2", "grad_clip", "eval_every", "seed", "augment", "pad", "flip",
                                         "out_dir", "threads", "queue_size", "momentum",
                                         "checkpoint_every", NULL};

static ld_status get_str(ld_ctx *ctx, const ld_json_ref *r, const char *key, char *out, size_t cap) {
    const char *s = NULL;
    TRY(ld_json_get_string(ctx, r, key, false, &s));
    if (s && strlen(s) >= cap) return ld_error(ctx, LD_ERR_FORMAT, "%s: '%s' is longer than %zu bytes", r->doc, key, cap - 1);
    if (s) snprintf(out, cap, "%s", s);
    return LD_OK;
}

static ld_status get_f(ld_ctx *ctx, const ld_json_ref *r, const char *key, double lo, double hi, float *out) {
    double v = *out;
    TRY(ld_json_get_float(ctx, r, key, false, lo, hi, &v));
    *out = (float)v;
    return LD_OK;
}

static ld_status parse_train(ld_ctx *ctx, const char *path, cJSON *root, ld_clip_train_config *c) {
    ld_json_ref r = ld_json_root(path, root), mr;
    TRY(ld_json_get_object(ctx, &r, "model", true, &mr));
    char *mtext = cJSON_PrintUnformatted(mr.node);
    if (!mtext) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", path);
    char mpath[300];
    snprintf(mpath, sizeof mpath, "%s: model", path);
    ld_status st = ld_clip_config_from_json(ctx, mtext, strlen(mtext), mpath, &c->model);
    free(mtext);
    if (st) return st;
    TRY(get_str(ctx, &r, "train_data", c->train_data, sizeof c->train_data));
    TRY(get_str(ctx, &r, "val_data", c->val_data, sizeof c->val_data));
    TRY(get_str(ctx, &r, "split", c->split, sizeof c->split));
    TRY(get_str(ctx, &r, "val_split", c->val_split, sizeof c->val_split));
    TRY(get_str(ctx, &r, "lang", c->lang, sizeof c->lang));
    if (strcmp(c->lang, "zh") && strcmp(c->lang, "en") && strcmp(c->lang, "both"))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: lang '%s' is not zh, en or both", path, c->lang);
    TRY(get_str(ctx, &r, "out_dir", c->out_dir, sizeof c->out_dir));
    TRY(ld_json_get_int(ctx, &r, "batch_size", false, 2, 1 << 16, &c->batch_size));
    TRY(ld_json_get_int(ctx, &r, "max_steps", false, 1, (int64_t)1 << 40, &c->max_steps));
    TRY(ld_json_get_int(ctx, &r, "warmup_steps", false, 0, (int64_t)1 << 40, &c->schedule.warmup_steps));
    TRY(ld_json_get_int(ctx, &r, "eval_every", false, 0, (int64_t)1 << 40, &c->eval_every));
    TRY(ld_json_get_int(ctx, &r, "queue_size", false, 0, 1 << 20, &c->queue_size));
    TRY(ld_json_get_int(ctx, &r, "checkpoint_every", false, 0, (int64_t)1 << 40, &c->checkpoint_every));
    TRY(get_f(ctx, &r, "momentum", 0, 1, &c->momentum));
    if (c->momentum >= 1.0f)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: momentum %g must be below 1 (1 never updates the momentum encoder)",
                        path, c->momentum);
    int64_t seed = (int64_t)c->seed, pad = c->transform.pad, threads = c->threads;
    TRY(ld_json_get_int(ctx, &r, "seed", false, 0, INT64_MAX, &seed));
    TRY(ld_json_get_int(ctx, &r, "pad", false, 0, 64, &pad));
    TRY(ld_json_get_int(ctx, &r, "threads", false, 0, 1024, &threads));
    c->seed = (uint64_t)seed, c->transform.pad = (int)pad, c->threads = (int)threads;
    TRY(ld_json_get_bool(ctx, &r, "augment", false, &c->augment));
    TRY(ld_json_get_bool(ctx, &r, "flip", false, &c->transform.flip));
    TRY(get_f(ctx, &r, "lr", 1e-12, 10, &c->schedule.lr));
    TRY(get_f(ctx, &r, "min_lr", 0, 10, &c->schedule.min_lr));
    TRY(get_f(ctx, &r, "weight_decay", 0, 10, &c->optim.weight_decay));
    TRY(get_f(ctx, &r, "beta1", 0, 0.999999, &c->optim.beta1));
    TRY(get_f(ctx, &r, "beta2", 0, 0.999999, &c->optim.beta2));
    TRY(get_f(ctx, &r, "grad_clip", 0, 1e9, &c->optim.max_grad_norm));
    char sched[32] = "";
    TRY(get_str(ctx, &r, "schedule", sched, sizeof sched));
    if (*sched && !ld_lr_kind_from_name(sched, &c->schedule.kind))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: schedule '%s' is not one of constant, cosine, wsd", path, sched);
    ld_json_check_keys(ctx, &r, known_keys, sizeof known_keys / sizeof known_keys[0] - 1, NULL, NULL);
    return LD_OK;
}

ld_status ld_clip_train_config_parse(ld_ctx *ctx, const char *text, size_t len, const char *path,
                                     ld_clip_train_config *out) {
    if (!text || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_train_config_parse: NULL argument");
    if (!path) path = "config";
    cJSON *root = NULL;
    TRY(ld_json_parse(ctx, path, text, len, &root));
    ld_clip_train_config c = ld_clip_train_config_default();
    ld_status st = cJSON_IsObject(root) ? parse_train(ctx, path, root, &c)
                                        : ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    ld_json_free(root);
    if (!st) {
        c.schedule.max_steps = c.max_steps;
        *out = c;
    }
    return st;
}

bool ld_clip_train_config_is_clip(const char *text, size_t len) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(m, "model_type");
    bool yes = cJSON_IsString(mt) && !strcmp(mt->valuestring, "clip");
    cJSON_Delete(root);
    return yes;
}

/* ---- pairs ------------------------------------------------------------------------------ */

static void pair_at(const ld_clip_pairs *p, int64_t i, const uint8_t **px, const char **cap) {
    int k = 0;
    while (i >= ld_image_set_count(p->sets[k])) i -= ld_image_set_count(p->sets[k]), k++;
    *px = ld_image_set_pixels(p->sets[k], i);
    *cap = ld_image_set_caption(p->sets[k], i);
}

/* ---- the loop --------------------------------------------------------------------------- */

typedef struct run {
    ld_ctx *ctx;
    ld_clip *m;
    const ld_tokenizer *tok;
    const ld_clip_train_config *c;
    int64_t B, T, S;
    float *px;
    int32_t *ids, *lens;
    const uint8_t **imgs;
    int64_t *order, cursor, epoch;
    ld_tape *tape;
    /* MoCo: the momentum model, its tape, the queues [Q, E] (a ring: head is the next row to
     * overwrite, fill how many rows hold embeddings) */
    ld_clip *mk;
    ld_tape *ktape;
    float *img_q, *txt_q;
    int64_t Q, E, q_head, q_fill;
} run;

/* Batch rows idx[0..B): pixels (augmented when `augment`), captions padded to the longest. */
static ld_status fill_batch(run *r, const ld_clip_pairs *p, const int64_t *idx, bool augment, uint64_t seed, int64_t *Tb) {
    int64_t B = r->B, T = r->T, longest = 2;
    for (int64_t b = 0; b < B; b++) {
        const char *cap;
        pair_at(p, idx[b], &r->imgs[b], &cap);
        ld_status st = ld_clip_encode_caption(r->tok, cap, T, r->ids + b * T, &r->lens[b]);
        if (st) return ld_error(r->ctx, st, "encoding caption '%s'", cap);
        if (r->lens[b] > longest) longest = r->lens[b];
    }
    for (int64_t b = 0; b < B; b++) memmove(r->ids + b * longest, r->ids + b * T, (size_t)longest * sizeof(int32_t));
    ld_image_batch_to_input(r->ctx, r->imgs, B, (int)r->S, &r->c->transform, augment, seed, r->px);
    *Tb = longest;
    return LD_OK;
}

/* The permutation of epoch e (seeded by seed and e). */
static void shuffle(run *r, int64_t n, int64_t e) {
    for (int64_t i = 0; i < n; i++) r->order[i] = i;
    ld_rng g = ld_rng_init(ld_rng_at(r->c->seed, (uint64_t)e));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ld_rng_below(&g, (uint64_t)(i + 1)), t = r->order[i];
        r->order[i] = r->order[j], r->order[j] = t;
    }
}

/* The next B training rows: a fresh permutation each epoch. */
static void next_indices(run *r, int64_t n, int64_t *idx) {
    for (int64_t b = 0; b < r->B; b++) {
        if (r->cursor == 0 || r->cursor >= n) {
            shuffle(r, n, r->epoch++);
            r->cursor = 0;
        }
        idx[b] = r->order[r->cursor++];
    }
}

static ld_status val_loss(run *r, const ld_clip_pairs *val, double *out) {
    int64_t nb = val->n / r->B, idx[4096];
    if (nb < 1) return ld_error(r->ctx, LD_ERR_INVALID_ARG, "validation: fewer pairs (%lld) than batch_size", (long long)val->n);
    ld_tape_set_grad_enabled(r->tape, false);
    double sum = 0;
    ld_status st = LD_OK;
    for (int64_t k = 0; k < nb && !st; k++) {
        for (int64_t b = 0; b < r->B; b++) idx[b] = k * r->B + b; /* fixed batches in file order */
        int64_t Tb;
        ld_tensor *loss;
        ld_tape_reset(r->tape);
        if (!(st = fill_batch(r, val, idx, false, 0, &Tb)) &&
            !(st = ld_clip_loss(r->m, r->tape, r->px, r->ids, r->lens, r->B, Tb, &loss)))
            sum += ((float *)loss->data)[0];
    }
    ld_tape_set_grad_enabled(r->tape, true);
    *out = sum / (double)nb;
    return st;
}

/* ---- checkpoints (docs/clip.md) ----------------------------------------------------------- */

#define CLIP_CKPT_VERSION 1
#define CLIP_CKPT_KEEP 2

static int is_step_dir(const struct dirent *e) {
    return !strncmp(e->d_name, "step-", 5);
}

/* Keeps the newest CLIP_CKPT_KEEP complete checkpoints; removes stale temporary ones. */
static void prune(ld_ctx *ctx, const char *root) {
    struct dirent **names = NULL;
    int n = scandir(root, &names, is_step_dir, alphasort), complete = 0;
    char path[2200];
    for (int i = 0; i < n; i++) complete += !strstr(names[i]->d_name, ".tmp-");
    for (int i = 0, seen = 0; i < n; i++) {
        bool tmp = strstr(names[i]->d_name, ".tmp-") != NULL;
        if (tmp || seen++ < complete - CLIP_CKPT_KEEP) {
            snprintf(path, sizeof path, "%s/%s", root, names[i]->d_name);
            ld_remove_tree(ctx, path);
        }
        free(names[i]);
    }
    free(names);
}

static ld_status write_queues(run *r, const char *path) {
    ld_st_write_tensor w[2] = {
        {.name = "image_queue", .dtype = LD_F32, .ndim = 2, .shape = (int64_t[]){r->Q, r->E}, .data = r->img_q},
        {.name = "text_queue", .dtype = LD_F32, .ndim = 2, .shape = (int64_t[]){r->Q, r->E}, .data = r->txt_q}};
    ld_str_pair meta[] = {{"format", "liandan-clip-queue"}};
    return ld_safetensors_write(r->ctx, path, w, 2, meta, 1);
}

static ld_status read_queues(run *r, const char *path) {
    ld_safetensors *sf = NULL;
    TRY(ld_safetensors_open(r->ctx, path, &sf));
    ld_status st = ld_safetensors_count(sf) == 2 ? LD_OK
                   : ld_error(r->ctx, LD_ERR_FORMAT, "%s: holds %zu tensors, expected image_queue and text_queue", path,
                              ld_safetensors_count(sf));
    const char *names[2] = {"image_queue", "text_queue"};
    float *dst[2] = {r->img_q, r->txt_q};
    for (int k = 0; k < 2 && !st; k++) {
        const ld_tensor_info *info;
        if ((st = ld_safetensors_get(r->ctx, sf, names[k], &info))) break;
        if (info->dtype != LD_F32 || info->ndim != 2 || info->shape[0] != r->Q || info->shape[1] != r->E)
            st = ld_error(r->ctx, LD_ERR_SHAPE, "%s: %s is not F32 [%lld, %lld] (queue_size, projection_dim)", path,
                          names[k], (long long)r->Q, (long long)r->E);
        else memcpy(dst[k], info->data, info->nbytes);
    }
    ld_safetensors_close(sf);
    return st;
}

static ld_status write_checkpoint(run *r, ld_adamw *opt, int64_t step) {
    ld_ctx *ctx = r->ctx;
    char root[1100], final[1200], path[1400];
    snprintf(root, sizeof root, "%s/checkpoints", r->c->out_dir);
    if (mkdir(root, 0755) != 0 && errno != EEXIST) return ld_error(ctx, LD_ERR_IO, "cannot create %s: %s", root, strerror(errno));
    snprintf(final, sizeof final, "%s/step-%07lld", root, (long long)step);
    ld_dir_txn *tx = NULL;
    TRY(ld_dir_txn_begin(ctx, final, &tx));
    const char *dir = ld_dir_txn_path(tx);
    ld_params *ps = ld_clip_params(r->m);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_status st = ld_ckpt_write_params(ctx, path, ps, NULL, 0);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (!st) st = ld_ckpt_write_params(ctx, path, ps, opt, 1);
    snprintf(path, sizeof path, "%s/momentum.safetensors", dir);
    if (!st && r->Q) st = ld_ckpt_write_params(ctx, path, ld_clip_params(r->mk), NULL, 0);
    snprintf(path, sizeof path, "%s/queue.safetensors", dir);
    if (!st && r->Q) st = write_queues(r, path);
    if (!st) {
        char js[768], seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->c->seed);
        int n = snprintf(js, sizeof js,
                         "{\n  \"format_version\": %d,\n  \"step\": %lld,\n  \"optimizer_steps\": %lld,\n  \"epoch\": %lld,\n"
                         "  \"cursor\": %lld,\n  \"batch_size\": %lld,\n  \"seed\": \"%s\",\n  \"queue_size\": %lld,\n"
                         "  \"queue_head\": %lld,\n  \"queue_fill\": %lld\n}\n",
                         CLIP_CKPT_VERSION, (long long)step, (long long)ld_adamw_steps(opt), (long long)r->epoch,
                         (long long)r->cursor, (long long)r->B, seed, (long long)r->Q, (long long)r->q_head,
                         (long long)r->q_fill);
        snprintf(path, sizeof path, "%s/trainer_state.json", dir);
        st = ld_file_write_atomic(ctx, path, js, (size_t)n);
    }
    if (st) {
        ld_dir_txn_abort(tx);
        return ld_error_wrap(ctx, st, "checkpoint %s: ", final);
    }
    if ((st = ld_dir_txn_commit(tx))) return st;
    char line[64];
    int n = snprintf(line, sizeof line, "step-%07lld\n", (long long)step);
    snprintf(path, sizeof path, "%s/latest", root);
    TRY(ld_file_write_atomic(ctx, path, line, (size_t)n)); /* the pointer last */
    prune(ctx, root);
    return LD_OK;
}

static ld_status state_int(ld_ctx *ctx, const char *path, const cJSON *o, const char *key, int64_t lo, int64_t hi,
                           int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= (double)lo && v->valuedouble <= (double)hi) ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: '%s' is missing or not an integer in %lld..%lld", path, key,
                        (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return LD_OK;
}

/* Loads out_dir/checkpoints/latest into the run; *step the steps it had done (0: nothing to
 * resume). */
static ld_status load_checkpoint(run *r, ld_adamw *opt, int64_t n_train, int64_t *step) {
    ld_ctx *ctx = r->ctx;
    char root[1100], dir[1200], path[1400];
    *step = 0;
    snprintf(root, sizeof root, "%s/checkpoints", r->c->out_dir);
    snprintf(path, sizeof path, "%s/latest", root);
    char *latest = NULL;
    ld_status st = ld_file_read(ctx, path, 4096, &latest, NULL);
    if (st == LD_ERR_NOT_FOUND) {
        ld_ctx_clear_error(ctx);
        return LD_OK;
    }
    if (st) return st;
    latest[strcspn(latest, "\r\n")] = 0;
    bool ok = !strncmp(latest, "step-", 5) && !strchr(latest, '/') && strlen(latest) < 64;
    if (ok) snprintf(dir, sizeof dir, "%s/%s", root, latest);
    ld_free(ctx, latest);
    if (!ok) return ld_error(ctx, LD_ERR_FORMAT, "%s: not a checkpoint name", path);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    char *text = NULL;
    size_t len = 0;
    TRY(ld_file_read(ctx, path, (size_t)1 << 20, &text, &len));
    cJSON *o = cJSON_ParseWithLength(text, len);
    ld_free(ctx, text);
    int64_t s = 0, ost = 0, epoch = 0, cursor = 0, bs = 0, Q = 0, head = 0, fill = 0, ver = 0;
    if (!cJSON_IsObject(o)) st = ld_error(ctx, LD_ERR_FORMAT, "%s: not a JSON object", path);
    if (!st) st = state_int(ctx, path, o, "format_version", CLIP_CKPT_VERSION, CLIP_CKPT_VERSION, &ver);
    if (!st) st = state_int(ctx, path, o, "step", 1, r->c->max_steps, &s);
    if (!st) st = state_int(ctx, path, o, "optimizer_steps", 0, s, &ost);
    if (!st) st = state_int(ctx, path, o, "epoch", 0, (int64_t)1 << 50, &epoch);
    if (!st) st = state_int(ctx, path, o, "cursor", 0, n_train, &cursor);
    if (!st) st = state_int(ctx, path, o, "batch_size", 0, (int64_t)1 << 20, &bs);
    if (!st) st = state_int(ctx, path, o, "queue_size", 0, 1 << 20, &Q);
    if (!st) st = state_int(ctx, path, o, "queue_head", 0, Q ? Q - 1 : 0, &head);
    if (!st) st = state_int(ctx, path, o, "queue_fill", 0, Q, &fill);
    const cJSON *seed = o ? cJSON_GetObjectItemCaseSensitive(o, "seed") : NULL;
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)r->c->seed);
    if (!st && (bs != r->B || Q != r->Q || !cJSON_IsString(seed) || strcmp(seed->valuestring, want)))
        st = ld_error(ctx, LD_ERR_MISMATCH,
                      "%s: written with batch_size %lld, queue_size %lld, seed %s; the config says %lld, %lld, %s "
                      "(a resumed run must keep them)",
                      path, (long long)bs, (long long)Q, cJSON_IsString(seed) ? seed->valuestring : "?", (long long)r->B,
                      (long long)r->Q, want);
    if (!st && epoch == 0 && cursor != 0) st = ld_error(ctx, LD_ERR_FORMAT, "%s: cursor %lld before the first epoch", path, (long long)cursor);
    cJSON_Delete(o);
    if (st) return st;
    ld_params *ps = ld_clip_params(r->m);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    TRY(ld_ckpt_read_params(ctx, path, ps, NULL, 0));
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    TRY(ld_ckpt_read_params(ctx, path, ps, opt, 1));
    if (r->Q) {
        snprintf(path, sizeof path, "%s/momentum.safetensors", dir);
        TRY(ld_ckpt_read_params(ctx, path, ld_clip_params(r->mk), NULL, 0));
        snprintf(path, sizeof path, "%s/queue.safetensors", dir);
        TRY(read_queues(r, path));
    }
    ld_adamw_set_steps(opt, ost);
    r->epoch = epoch, r->cursor = cursor, r->q_head = head, r->q_fill = fill;
    if (epoch > 0) shuffle(r, n_train, epoch - 1); /* the permutation the cursor walks */
    *step = s;
    return LD_OK;
}

/* metrics.jsonl without the lines of steps after `step` (the resumed run redoes them) or a
 * line torn by a kill; opened for appending. */
static ld_status open_metrics(ld_ctx *ctx, const char *path, int64_t step, FILE **out) {
    if (step > 0) {
        char *text = NULL;
        size_t len = 0;
        ld_status st = ld_file_read(ctx, path, (size_t)1 << 30, &text, &len);
        if (st == LD_ERR_NOT_FOUND) ld_ctx_clear_error(ctx);
        else if (st) return st;
        size_t keep = 0;
        for (size_t i = 0; text && i < len;) {
            char *nl = memchr(text + i, '\n', len - i);
            if (!nl) break; /* torn */
            long long s = -1;
            if (sscanf(text + i, "{\"step\":%lld", &s) != 1 || s > step) break;
            size_t n = (size_t)(nl - (text + i)) + 1;
            memmove(text + keep, text + i, n);
            keep += n, i += n;
        }
        st = ld_file_write_atomic(ctx, path, text ? text : "", keep);
        ld_free(ctx, text);
        if (st) return st;
    }
    if (!(*out = fopen(path, step > 0 ? "a" : "w"))) return ld_error(ctx, LD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return LD_OK;
}

/* Keys of the momentum model for the batch in r (nothing recorded), then the loss against the
 * queues. */
static ld_status step_loss(run *r, int64_t Tb, const float **kimg, const float **ktxt, ld_tensor **loss) {
    if (!r->Q) return ld_clip_loss(r->m, r->tape, r->px, r->ids, r->lens, r->B, Tb, loss);
    ld_tensor *ki, *kt;
    ld_tape_reset(r->ktape);
    TRY(ld_clip_image_embed(r->mk, r->ktape, r->px, r->B, &ki));
    TRY(ld_clip_text_embed(r->mk, r->ktape, r->ids, r->lens, r->B, Tb, &kt));
    *kimg = ki->data, *ktxt = kt->data;
    return ld_clip_loss_queued(r->m, r->tape, r->px, r->ids, r->lens, r->B, Tb, r->img_q, r->q_fill, r->txt_q, r->q_fill,
                               loss);
}

/* The batch's momentum keys into the queues (first in, first out). */
static void enqueue(run *r, const float *kimg, const float *ktxt) {
    for (int64_t b = 0; b < r->B; b++) {
        memcpy(r->img_q + r->q_head * r->E, kimg + b * r->E, (size_t)r->E * sizeof(float));
        memcpy(r->txt_q + r->q_head * r->E, ktxt + b * r->E, (size_t)r->E * sizeof(float));
        r->q_head = (r->q_head + 1) % r->Q;
        if (r->q_fill < r->Q) r->q_fill++;
    }
}

ld_status ld_clip_train(ld_clip *m, const ld_tokenizer *tok, const ld_clip_train_config *c, const ld_clip_pairs *train,
                        const ld_clip_pairs *val, double peak_flops, ld_clip_train_progress_fn cb, void *user,
                        volatile int *stop) {
    if (!m || !tok || !c || !train) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = ld_clip_ctx(m);
    if (ld_comm_launched()) { /* N copies of one run would write the same files: refuse */
        ld_comm *w = NULL;
        ld_status cs = ld_comm_world(ctx, &w);
        int n = ld_comm_size(w);
        ld_comm_free(w);
        if (cs) return cs;
        if (n > 1)
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "clip training runs on one process: data parallel over %d MPI ranks "
                                                     "is not built for the image-text model yet (docs/scale-out.md)", n);
    }
    if (c->batch_size > 4096 || c->batch_size > train->n)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "clip training: batch_size %lld must be at most 4096 and the %lld pairs",
                        (long long)c->batch_size, (long long)train->n);
    if (c->queue_size < 0 || c->queue_size > (1 << 20) || !(c->momentum >= 0 && c->momentum < 1))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "clip training: queue_size %lld (0..1048576) or momentum %g ([0, 1)) out of range",
                        (long long)c->queue_size, c->momentum);
    const ld_clip_config *mc = ld_clip_config_of(m);
    run r = {.ctx = ctx, .m = m, .tok = tok, .c = c, .B = c->batch_size, .T = mc->text.max_position, .S = mc->image_size,
             .Q = c->queue_size, .E = mc->embed_dim};
    ld_adamw *opt = NULL;
    ld_status st = ld_tape_new(ctx, &r.tape);
    if (!st) st = ld_adamw_new(ld_clip_params(m), &c->optim, &opt);
    r.px = ld_alloc(ctx, (size_t)(r.B * 3 * r.S * r.S) * sizeof(float));
    r.ids = ld_alloc(ctx, (size_t)(r.B * r.T) * sizeof(int32_t));
    r.lens = ld_alloc(ctx, (size_t)r.B * sizeof(int32_t));
    r.imgs = ld_alloc(ctx, (size_t)r.B * sizeof *r.imgs);
    r.order = ld_alloc(ctx, (size_t)train->n * sizeof(int64_t));
    if (!st && (!r.px || !r.ids || !r.lens || !r.imgs || !r.order)) st = ld_ctx_status(ctx);
    if (!st && r.Q) { /* the momentum encoder starts as a copy */
        r.img_q = ld_calloc(ctx, (size_t)(r.Q * r.E), sizeof(float));
        r.txt_q = ld_calloc(ctx, (size_t)(r.Q * r.E), sizeof(float));
        if (!r.img_q || !r.txt_q) st = ld_ctx_status(ctx);
        if (!st) st = ld_clip_new(ctx, mc, 0, &r.mk);
        if (!st) st = ld_clip_copy_params(r.mk, m);
        if (!st && !(st = ld_tape_new(ctx, &r.ktape))) ld_tape_set_grad_enabled(r.ktape, false);
    }
    char path[4200];
    FILE *metrics = NULL;
    int64_t start = 0;
    if (!st && mkdir(c->out_dir, 0755) != 0 && errno != EEXIST)
        st = ld_error(ctx, LD_ERR_IO, "cannot create %s: %s", c->out_dir, strerror(errno));
    snprintf(path, sizeof path, "%s/checkpoints/latest", c->out_dir);
    if (!st && !c->resume && access(path, F_OK) == 0)
        st = ld_error(ctx, LD_ERR_INVALID_ARG, "%s exists: continue that run with --resume, or remove %s/checkpoints "
                                               "(or choose another out_dir)", path, c->out_dir);
    if (!st && c->resume && (st = load_checkpoint(&r, opt, train->n, &start)))
        st = ld_error_wrap(ctx, st, "resuming from %s/checkpoints: ", c->out_dir);
    if (!st && c->resume) {
        if (start) ld_log(ctx, LD_LOG_INFO, "resuming clip training at step %lld", (long long)start);
        else ld_log(ctx, LD_LOG_INFO, "no checkpoint in %s/checkpoints: starting from step 0", c->out_dir);
    }
    if (!st) {
        snprintf(path, sizeof path, "%s/metrics.jsonl", c->out_dir);
        st = open_metrics(ctx, path, start, &metrics);
    }
    ld_tensor *ls = ld_params_find(ld_clip_params(m), "logit_scale");
    double flops = ld_clip_train_flops_per_pair(mc, r.T / 2), t0 = ld_time_now(), tprev = t0;
    int64_t idx[4096];
    for (int64_t step = start; !st && step < c->max_steps; step++) {
        ld_clip_train_progress pr = {.step = step + 1, .max_steps = c->max_steps, .val_loss = NAN};
        next_indices(&r, train->n, idx);
        double td = ld_time_now();
        int64_t Tb;
        if ((st = fill_batch(&r, train, idx, c->augment, ld_rng_at(c->seed ^ 0x5eed, (uint64_t)step), &Tb))) break;
        pr.data_s = ld_time_now() - td;
        ld_params_zero_grad(ld_clip_params(m));
        ld_tape_reset(r.tape);
        ld_tensor *loss;
        const float *kimg = NULL, *ktxt = NULL;
        if ((st = step_loss(&r, Tb, &kimg, &ktxt, &loss)) || (st = ld_tape_backward(r.tape, loss))) break;
        pr.loss = ((float *)loss->data)[0];
        pr.lr = ld_lr_at(&c->schedule, step);
        st = ld_adamw_step(opt, (float)pr.lr, 1.0f, &pr.grad_norm);
        if (st == LD_ERR_NUMERIC) {
            ld_ctx_clear_error(ctx);
            st = LD_OK;
            pr.skipped = true;
        }
        if (st) break;
        float *lsv = ls->data; /* CLIP clamps the temperature's parameter itself after each update */
        if (lsv[0] > mc->logit_scale_max) lsv[0] = mc->logit_scale_max;
        pr.temperature = exp(-(double)lsv[0]);
        if (r.Q) { /* MoCo: the momentum encoder follows, the batch's keys join the queues */
            if ((st = ld_clip_momentum_update(r.mk, m, c->momentum))) break;
            enqueue(&r, kimg, ktxt);
        }
        double now = ld_time_now();
        pr.pairs_per_s = (double)r.B / (now - tprev);
        pr.mfu = peak_flops > 0 ? pr.pairs_per_s * flops / peak_flops : 0;
        pr.elapsed_s = now - t0;
        tprev = now;
        if (val && c->eval_every > 0 && ((step + 1) % c->eval_every == 0 || step + 1 == c->max_steps)) {
            if ((st = val_loss(&r, val, &pr.val_loss))) break;
            tprev = ld_time_now();
        }
        fprintf(metrics, "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.4f,\"temperature\":%.5f,"
                         "\"pairs_per_s\":%.1f,\"mfu\":%.4f,\"data_s\":%.5f",
                (long long)pr.step, pr.loss, pr.lr, pr.grad_norm, pr.temperature, pr.pairs_per_s, pr.mfu, pr.data_s);
        if (r.Q) fprintf(metrics, ",\"queue\":%lld", (long long)r.q_fill);
        if (!isnan(pr.val_loss)) fprintf(metrics, ",\"val_loss\":%.6f", pr.val_loss);
        fprintf(metrics, "%s}\n", pr.skipped ? ",\"skipped\":true" : "");
        fflush(metrics);
        if (c->checkpoint_every > 0 && (step + 1) % c->checkpoint_every == 0 &&
            (st = write_checkpoint(&r, opt, step + 1)))
            break;
        if (cb) cb(user, &pr);
        if (stop && *stop) {
            st = ld_error(ctx, LD_ERR_INTERRUPTED, "training stopped at step %lld", (long long)pr.step);
            break;
        }
    }
    if (metrics) fclose(metrics);
    ld_adamw_free(opt);
    ld_tape_free(r.tape);
    ld_tape_free(r.ktape);
    ld_clip_free(r.mk);
    ld_free(ctx, r.px), ld_free(ctx, r.ids), ld_free(ctx, r.lens), ld_free(ctx, r.imgs), ld_free(ctx, r.order);
    ld_free(ctx, r.img_q), ld_free(ctx, r.txt_q);
    return st;
}

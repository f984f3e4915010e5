/* train/checkpoint.c — training checkpoints (docs/formats/checkpoint.md):
 *
 *   OUT/checkpoints/step-0000120/model.safetensors       parameters (HF names; absent when the base is frozen;
 *                                                       expert parallelism: model-R-of-P.safetensors and
 *                                                       model.safetensors.index.json, each rank's experts)
 *                               adapter.safetensors     an adapter's parameters (when one trains)
 *                               optimizer.safetensors   AdamW m and v ("<name>.exp_avg[_sq]"), or with
 *                                                       ZeRO-1 one shard per rank + a manifest (dist.c)
 *                               best.safetensors        early stopping: the best evaluation's trainable weights
 *                               trainer_state.json      step, data cursor, RNG seed, loss and early-stopping state
 *   OUT/checkpoints/latest                              "step-0000120\n"
 *
 * A checkpoint is a directory written as a whole (ld_dir_txn: a temporary sibling, fsynced,
 * swapped into place, the parent fsynced, removed on failure), and only then `latest` replaced
 * (an atomic file write). A checkpoint directory exists under its final name only when
 * complete, so a crash at any moment leaves the previous checkpoint loadable and a partial one
 * invisible. Resume follows `latest`, and falls back to the newest checkpoint that loads when
 * `latest` is missing or damaged or names one that does not load. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "liandan/io.h"
#include "train/ckpt_tensors.h"
#include "train/trainer_internal.h"

#define CKPT_STATE_VERSION 1

/* Early stopping's best weights (trainable parameters, concatenated in t->best_weights) to
 * or from a safetensors file under the parameters' names. */
static ld_status best_io(ld_trainer *t, const char *path, bool read) {
    ld_ctx *ctx = t->ctx;
    int n = 0;
    for (int s = 0; s < t->n_sets; s++) n += ld_params_count(t->sets[s]);
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)n + 1, sizeof *w);
    if (!w) return ld_ctx_status(ctx);
    ld_safetensors *sf = NULL;
    ld_status st = read ? ld_safetensors_open(ctx, path, &sf) : LD_OK;
    int k = 0;
    int64_t off = 0;
    for (int s = 0; s < t->n_sets && !st; s++)
        for (int i = 0; i < ld_params_count(t->sets[s]) && !st; i++) {
            ld_tensor *x = ld_params_at(t->sets[s], i);
            if (!(x->flags & LD_TENSOR_TRAINABLE)) continue;
            float *dst = t->best_weights + off;
            off += ld_tensor_numel(x);
            if (!read) {
                w[k++] = (ld_st_write_tensor){.name = x->name, .dtype = LD_F32, .ndim = x->ndim, .shape = x->shape,
                                              .data = dst};
                continue;
            }
            const ld_tensor_info *info;
            if ((st = ld_safetensors_get(ctx, sf, x->name, &info))) break;
            if (info->dtype != LD_F32 || info->nbytes != (size_t)ld_tensor_numel(x) * sizeof(float))
                st = ld_error(ctx, LD_ERR_SHAPE, "%s: tensor '%s' does not match the parameter", path, x->name);
            else memcpy(dst, info->data, info->nbytes);
        }
    if (!read && !st) {
        ld_str_pair meta[] = {{"format", "pt"}};
        st = ld_safetensors_write(ctx, path, w, (size_t)k, meta, 1);
    }
    ld_safetensors_close(sf);
    ld_free(ctx, w);
    return st;
}

/* The trainer state as JSON (malloc'd). */
static char *state_json(ld_trainer *t) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "format_version", CKPT_STATE_VERSION);
    cJSON_AddNumberToObject(o, "step", (double)t->step);
    cJSON_AddNumberToObject(o, "optimizer_steps", (double)ld_adamw_steps(t->opt));
    /* the seed is stored as a string: JSON numbers lose bits past 2^53 */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)t->p.seed);
    cJSON_AddStringToObject(o, "seed", seed);
    /* running loss for the spike guard, bit-exact as hex float */
    char rl[64];
    snprintf(rl, sizeof rl, "%a", t->running_loss);
    cJSON_AddStringToObject(o, "running_loss", rl);
    snprintf(rl, sizeof rl, "%a", t->best_metric);
    cJSON_AddStringToObject(o, "best_metric", rl);
    cJSON_AddNumberToObject(o, "bad_evals", (double)t->bad_evals);
    char *cursor = NULL;
    if (t->train.save && t->train.save(t->train.user, &cursor) == LD_OK && cursor) {
        cJSON *c = cJSON_Parse(cursor);
        if (c) cJSON_AddItemToObject(o, "data_cursor", c);
        free(cursor);
    }
    cJSON *cfg = cJSON_AddObjectToObject(o, "config");
    cJSON_AddNumberToObject(cfg, "batch_size", (double)t->p.batch_size);
    cJSON_AddNumberToObject(cfg, "seq_len", (double)t->p.seq_len);
    cJSON_AddNumberToObject(cfg, "grad_accum", (double)t->p.grad_accum);
    cJSON_AddNumberToObject(cfg, "max_steps", (double)t->p.max_steps);
    cJSON_AddNumberToObject(cfg, "lr", t->p.schedule.lr);
    cJSON_AddStringToObject(cfg, "schedule", ld_lr_kind_name(t->p.schedule.kind));
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

static int is_step_dir(const struct dirent *e) {
    return !strncmp(e->d_name, "step-", 5);
}

/* Deletes complete checkpoints beyond keep_last (oldest first) and stale temporary ones. */
static void prune(ld_trainer *t, const char *root) {
    struct dirent **names = NULL;
    int n = scandir(root, &names, is_step_dir, alphasort);
    char path[LD_TRAIN_PATH_MAX];
    int complete = 0;
    for (int i = 0; i < n; i++) complete += !strstr(names[i]->d_name, ".tmp-");
    for (int i = 0, seen = 0; i < n; i++) {
        bool tmp = strstr(names[i]->d_name, ".tmp-") != NULL;
        if (tmp || seen++ < complete - t->p.keep_last) {
            snprintf(path, sizeof path, "%s/%s", root, names[i]->d_name);
            ld_remove_tree(t->ctx, path);
        }
        free(names[i]);
    }
    free(names);
}

/* Rank 0's part of a checkpoint (all of it for one process) into the directory being written. */
static ld_status write_main(ld_trainer *t, const char *dir) {
    ld_ctx *ctx = t->ctx;
    char path[LD_TRAIN_PATH_MAX + 64];
    ld_status st = LD_OK;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!st && t->base_trainable && !t->ep_comm) st = ld_ckpt_write_params(ctx, path, t->params, NULL, 0);
    snprintf(path, sizeof path, "%s/adapter.safetensors", dir);
    if (!st && t->adapter) st = ld_ckpt_write_params(ctx, path, ld_adapter_params(t->adapter), NULL, 0);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (!st && !t->zero && !t->ep_comm) st = ld_ckpt_write_sets(ctx, path, t->sets, t->n_sets, t->opt, 1);
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    if (!st && t->best_weights && !isnan(t->best_metric)) st = best_io(t, path, false);
    char *js = st ? NULL : state_json(t);
    if (!st && !js) st = ld_error(ctx, LD_ERR_NOMEM, "checkpoint: out of memory");
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    if (!st) st = ld_file_write_atomic(ctx, path, js, strlen(js));
    free(js);
    return st;
}

/* Data parallel: rank 0 opens the directory and writes what every rank holds alike; with
 * ZeRO-1 every rank adds its optimizer shard; the directory is committed (and `latest` moved)
 * only when every rank's part was written, and every rank returns the same outcome. */
ld_status ld_trainer_checkpoint(ld_trainer *t) {
    if (!t) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    char root[LD_TRAIN_PATH_MAX], final[LD_TRAIN_PATH_MAX], path[LD_TRAIN_PATH_MAX + 64], name[64];
    snprintf(root, sizeof root, "%s/checkpoints", t->out_dir);
    snprintf(name, sizeof name, "step-%07lld", (long long)t->step);
    snprintf(final, sizeof final, "%s/%s", root, name);
    ld_dir_txn *tx = NULL;
    ld_status st = t->rank == 0 ? ld_dir_txn_begin(ctx, final, &tx) : LD_OK;
    if ((st = ld_dist_agree(t, st, "starting a checkpoint"))) {
        if (tx) ld_dir_txn_abort(tx);
        return st;
    }
    char dir[LD_TRAIN_PATH_MAX] = "";
    if (t->rank == 0) snprintf(dir, sizeof dir, "%s", ld_dir_txn_path(tx));
    if (t->world > 1 && (t->zero || t->ep_comm) && (st = ld_comm_bcast(t->comm, dir, sizeof dir, LD_COMM_BYTE, 0)))
        return st;
    if (t->rank == 0) st = write_main(t, dir);
    /* expert parallelism: the model as a sharded set, each expert written by the rank holding it */
    if (!st && t->base_trainable) st = ld_dist_write_model(t, dir, false);
    if (!st && t->zero) st = ld_dist_write_optimizer(t, dir);
    if (!st && t->ep_comm) { /* each rank's optimizer state: the dense values' and its own experts' */
        snprintf(path, sizeof path, "%s/optimizer-ep-%05d-of-%05d.safetensors", dir, t->rank, t->world);
        st = ld_ckpt_write_sets(ctx, path, t->sets, t->n_sets, t->opt, 1);
    }
    st = ld_dist_agree(t, st, "writing a checkpoint");
    if (st) {
        if (tx) ld_dir_txn_abort(tx); /* nothing of a failed checkpoint stays behind */
        return ld_error_wrap(ctx, st, "checkpoint %s: ", final);
    }
    if (t->rank == 0) {
        /* a checkpoint of the same step from an earlier, abandoned run is replaced whole */
        st = ld_dir_txn_commit(tx);
        /* the pointer last */
        char line[80];
        snprintf(line, sizeof line, "%s\n", name);
        snprintf(path, sizeof path, "%s/latest", root);
        if (!st) st = ld_file_write_atomic(ctx, path, line, strlen(line));
        if (!st) prune(t, root);
    }
    return ld_dist_agree(t, st, "committing a checkpoint");
}

/* Keeps only the metrics lines of steps <= step (the ones the resumed run will not redo) and
 * drops a torn last line; written atomically. */
static ld_status trim_metrics(ld_trainer *t, int64_t step) {
    char path[LD_TRAIN_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
    FILE *in = fopen(path, "r");
    if (!in) return LD_OK;
    ld_atomic_file *out = NULL;
    ld_status st = ld_atomic_file_open(t->ctx, path, &out);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (!st && (n = getline(&line, &cap, in)) > 0) {
        long long s = -1;
        if (line[n - 1] != '\n') continue; /* torn by a kill */
        if (sscanf(line, "{\"step\":%lld", &s) == 1 && s > step) continue;
        st = ld_atomic_file_write(out, line, (size_t)n);
    }
    free(line);
    fclose(in);
    if (out) {
        if (st) ld_atomic_file_abort(out);
        else st = ld_atomic_file_commit(out);
    }
    return st;
}

/* Loads the checkpoint directory `dir` into the trainer (all or nothing for the step counters;
 * parameters may be partly overwritten on failure, and are overwritten again by the next
 * checkpoint that loads). */
static ld_status load_checkpoint(ld_trainer *t, const char *dir) {
    ld_ctx *ctx = t->ctx;
    char path[LD_TRAIN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    char *text = NULL;
    size_t len = 0;
    ld_status st = ld_file_read(ctx, path, (size_t)256 << 20, &text, &len);
    if (st) return st;
    cJSON *o = cJSON_ParseWithLength(text, len);
    ld_free(ctx, text);
    const cJSON *step = o ? cJSON_GetObjectItem(o, "step") : NULL, *opt_steps = o ? cJSON_GetObjectItem(o, "optimizer_steps") : NULL;
    const cJSON *rl = o ? cJSON_GetObjectItem(o, "running_loss") : NULL, *cursor = o ? cJSON_GetObjectItem(o, "data_cursor") : NULL;
    char *end = NULL;
    double running = cJSON_IsString(rl) ? strtod(rl->valuestring, &end) : 0;
    if (!cJSON_IsNumber(step) || !cJSON_IsNumber(opt_steps) || !end || *end || !(step->valuedouble >= 0) ||
        step->valuedouble > 1e15 || step->valuedouble != (double)(int64_t)step->valuedouble || !(opt_steps->valuedouble >= 0) ||
        opt_steps->valuedouble > 1e15 || (cursor && !cJSON_IsObject(cursor))) {
        cJSON_Delete(o);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: missing or invalid step / optimizer_steps / running_loss / data_cursor", path);
    }
    /* model.safetensors, or an expert-parallel run's sharded set (each rank reads what it holds) */
    if (t->base_trainable && (st = ld_ckpt_read_model(ctx, dir, t->params))) goto done;
    snprintf(path, sizeof path, "%s/adapter.safetensors", dir);
    if (t->adapter && (st = ld_ckpt_read_params(ctx, path, ld_adapter_params(t->adapter), NULL, 0))) goto done;
    if ((st = ld_dist_read_optimizer(t, dir))) goto done; /* optimizer.safetensors, or ZeRO-1 shards */
    const cJSON *bm = cJSON_GetObjectItem(o, "best_metric"), *bad = cJSON_GetObjectItem(o, "bad_evals");
    double best = cJSON_IsString(bm) ? strtod(bm->valuestring, NULL) : NAN;
    snprintf(path, sizeof path, "%s/best.safetensors", dir);
    if (t->best_weights && !isnan(best) && (st = best_io(t, path, true))) goto done;
    if (cursor && t->train.restore) {
        char *c = cJSON_PrintUnformatted(cursor);
        st = c ? t->train.restore(t->train.user, c) : ld_error(ctx, LD_ERR_NOMEM, "out of memory");
        free(c);
        if (st) {
            st = ld_error_wrap(ctx, st, "%s/trainer_state.json: data cursor: ", dir);
            goto done;
        }
    }
    for (int i = 0; i < t->n_sets; i++) ld_params_refresh_bf16(t->sets[i]);
    t->best_metric = t->best_weights ? best : NAN;
    t->bad_evals = cJSON_IsNumber(bad) && bad->valuedouble >= 0 ? (int64_t)bad->valuedouble : 0;
    t->step = (int64_t)step->valuedouble;
    ld_adamw_set_steps(t->opt, (int64_t)opt_steps->valuedouble);
    t->running_loss = running;
done:
    cJSON_Delete(o);
    return st;
}

ld_status ld_trainer_resume(ld_trainer *t, bool *found) {
    if (!t || !found) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    *found = false;
    t->start_checked = true; /* resuming (or starting over, when there is nothing to resume) */
    char root[LD_TRAIN_PATH_MAX], path[LD_TRAIN_PATH_MAX + 64], first[64] = "";
    snprintf(root, sizeof root, "%s/checkpoints", t->out_dir);
    /* latest first */
    snprintf(path, sizeof path, "%s/latest", root);
    char *latest = NULL;
    ld_status rs = ld_file_read(ctx, path, 4096, &latest, NULL);
    if (rs == LD_OK) {
        latest[strcspn(latest, "\r\n")] = 0;
        if (!strncmp(latest, "step-", 5) && !strchr(latest, '/') && strlen(latest) < sizeof first)
            snprintf(first, sizeof first, "%s", latest);
        else ld_log(ctx, LD_LOG_WARN, "%s: '%.40s' is not a checkpoint name: looking for the newest checkpoint", path, latest);
        ld_free(ctx, latest);
    } else if (rs != LD_ERR_NOT_FOUND) {
        ld_log(ctx, LD_LOG_WARN, "%s: %s: looking for the newest checkpoint", path, ld_ctx_error(ctx));
    }
    ld_ctx_clear_error(ctx);
    struct dirent **names = NULL;
    int n = scandir(root, &names, is_step_dir, alphasort);
    ld_status st = LD_OK;
    bool tried_any = false;
    char last_err[512] = "";
    /* `first`, then every complete checkpoint from the newest down */
    for (int i = first[0] ? n : n - 1; i >= 0 && !*found; i--) {
        const char *name = i == n ? first : names[i]->d_name;
        if (i < n && (strstr(name, ".tmp-") || !strcmp(name, first))) continue;
        snprintf(path, sizeof path, "%s/%s", root, name);
        tried_any = true;
        /* every rank loads the same checkpoint, or none does */
        if ((st = ld_dist_agree(t, load_checkpoint(t, path), "loading a checkpoint")) == LD_OK) {
            *found = true;
        } else {
            snprintf(last_err, sizeof last_err, "%s", ld_ctx_error(ctx));
            ld_log(ctx, LD_LOG_WARN, "checkpoint %s does not load (%s)%s", path, last_err,
                   i > 0 ? ": trying an older one" : "");
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (!*found && tried_any)
        return ld_error(ctx, st ? st : LD_ERR_FORMAT, "%s: no checkpoint loads (the last error: %s)", root, last_err);
    if (*found) ld_ctx_clear_error(ctx);
    /* metrics of steps the run will redo go; with nothing to resume, all of them (rank 0 writes them) */
    return ld_dist_agree(t, t->rank == 0 ? trim_metrics(t, *found ? t->step : 0) : LD_OK, "trimming metrics.jsonl");
}

bool ld_trainer_dir_has_run(ld_trainer *t) {
    char path[LD_TRAIN_PATH_MAX + 32];
    struct stat sb;
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
    if (stat(path, &sb) == 0 && sb.st_size > 0) return true;
    snprintf(path, sizeof path, "%s/checkpoints/latest", t->out_dir);
    return access(path, F_OK) == 0;
}

/* train/checkpoint.c — training checkpoints (docs/formats/checkpoint.md):
 *
 *   OUT/checkpoints/step-0000120/model.safetensors       parameters (HF names)
 *                               optimizer.safetensors   AdamW m and v ("<name>.exp_avg[_sq]")
 *                               trainer_state.json      step, data cursor, RNG seed, loss state
 *   OUT/checkpoints/latest                              "step-0000120\n"
 *
 * Written to "step-0000120.tmp-<pid>", every file fsynced, the directory renamed into place,
 * the parent fsynced, and only then `latest` replaced (write latest.tmp, fsync, rename,
 * fsync). A checkpoint directory exists under its final name only when complete, so a crash
 * at any moment leaves the previous checkpoint loadable and a partial one invisible. */
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

#include "train/ckpt_tensors.h"
#include "train/trainer_internal.h"

#define CKPT_STATE_VERSION 1

static ld_status fsync_path(ld_ctx *ctx, const char *path, bool dir) {
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return ld_error(ctx, LD_ERR_IO, "cannot open %s to sync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return ld_error(ctx, LD_ERR_IO, "fsync of %s failed: %s", path, strerror(errno));
    return LD_OK;
}

static ld_status write_file_synced(ld_ctx *ctx, const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return ld_error(ctx, LD_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok) return ld_error(ctx, LD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return LD_OK;
}

static ld_status remove_tree(ld_ctx *ctx, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? LD_OK : ld_error(ctx, LD_ERR_IO, "cannot open %s: %s", dir, strerror(errno));
    struct dirent *e;
    char path[LD_TRAIN_PATH_MAX];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    if (rmdir(dir) != 0) return ld_error(ctx, LD_ERR_IO, "cannot remove %s: %s", dir, strerror(errno));
    return LD_OK;
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

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Deletes complete checkpoints beyond keep_last (oldest first) and stale temp dirs. */
static void prune(ld_trainer *t, const char *root) {
    DIR *d = opendir(root);
    if (!d) return;
    char *names[4096];
    int n = 0;
    struct dirent *e;
    char path[LD_TRAIN_PATH_MAX];
    while ((e = readdir(d)) && n < 4096) {
        if (strncmp(e->d_name, "step-", 5)) continue;
        if (strstr(e->d_name, ".tmp-")) {
            snprintf(path, sizeof path, "%s/%s", root, e->d_name);
            remove_tree(t->ctx, path);
            continue;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        if (names[i] && i < n - t->p.keep_last) {
            snprintf(path, sizeof path, "%s/%s", root, names[i]);
            remove_tree(t->ctx, path);
        }
        free(names[i]);
    }
}

ld_status ld_trainer_checkpoint(ld_trainer *t) {
    if (!t) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    char root[LD_TRAIN_PATH_MAX], tmp[LD_TRAIN_PATH_MAX], final[LD_TRAIN_PATH_MAX], path[LD_TRAIN_PATH_MAX];
    char name[64];
    snprintf(root, sizeof root, "%s/checkpoints", t->out_dir);
    snprintf(name, sizeof name, "step-%07lld", (long long)t->step);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp-%ld", root, name, (long)getpid());
    snprintf(final, sizeof final, "%s/%s", root, name);
    remove_tree(ctx, tmp);
    if (mkdir(tmp, 0755) != 0) return ld_error(ctx, LD_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    ld_status st;
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    if ((st = ld_ckpt_write_params(ctx, path, t->m->params, NULL, 0))) return st;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", tmp);
    if ((st = ld_ckpt_write_params(ctx, path, t->m->params, t->opt, 1))) return st;
    char *js = state_json(t);
    if (!js) return ld_error(ctx, LD_ERR_NOMEM, "checkpoint: out of memory");
    snprintf(path, sizeof path, "%s/trainer_state.json", tmp);
    st = write_file_synced(ctx, path, js);
    free(js);
    if (st) return st;
    if ((st = fsync_path(ctx, tmp, true))) return st;
    remove_tree(ctx, final); /* a checkpoint of the same step from an earlier, abandoned run */
    if (rename(tmp, final) != 0) return ld_error(ctx, LD_ERR_IO, "cannot rename %s: %s", tmp, strerror(errno));
    if ((st = fsync_path(ctx, root, true))) return st;
    /* the pointer last */
    char latest_tmp[LD_TRAIN_PATH_MAX], latest[LD_TRAIN_PATH_MAX], line[80];
    snprintf(latest_tmp, sizeof latest_tmp, "%s/latest.tmp", root);
    snprintf(latest, sizeof latest, "%s/latest", root);
    snprintf(line, sizeof line, "%s\n", name);
    if ((st = write_file_synced(ctx, latest_tmp, line))) return st;
    if (rename(latest_tmp, latest) != 0) return ld_error(ctx, LD_ERR_IO, "cannot update %s: %s", latest, strerror(errno));
    if ((st = fsync_path(ctx, root, true))) return st;
    prune(t, root);
    return LD_OK;
}

static ld_status read_small_file(ld_ctx *ctx, const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return ld_error(ctx, LD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = malloc(1 << 20);
    size_t n = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (!buf) return ld_error(ctx, LD_ERR_NOMEM, "out of memory reading %s", path);
    buf[n] = 0;
    *out = buf;
    return LD_OK;
}

/* Keeps only metrics lines of steps <= step (the ones the resumed run will not redo). */
static void trim_metrics(ld_trainer *t) {
    char path[LD_TRAIN_PATH_MAX], tmp[LD_TRAIN_PATH_MAX];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
    snprintf(tmp, sizeof tmp, "%s/metrics.jsonl.tmp", t->out_dir);
    FILE *in = fopen(path, "r"), *out;
    if (!in) return;
    if (!(out = fopen(tmp, "w"))) {
        fclose(in);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
        long long step = -1;
        if (sscanf(line, "{\"step\":%lld", &step) == 1 && step > t->step) continue;
        fputs(line, out);
    }
    free(line);
    fclose(in);
    fclose(out);
    rename(tmp, path);
}

ld_status ld_trainer_resume(ld_trainer *t, bool *found) {
    if (!t || !found) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    *found = false;
    char root[LD_TRAIN_PATH_MAX], path[LD_TRAIN_PATH_MAX], dir[LD_TRAIN_PATH_MAX];
    snprintf(root, sizeof root, "%s/checkpoints", t->out_dir);
    snprintf(path, sizeof path, "%s/latest", root);
    char *latest = NULL;
    if (access(path, F_OK) != 0) return LD_OK; /* nothing to resume */
    ld_status st = read_small_file(ctx, path, &latest);
    if (st) return st;
    latest[strcspn(latest, "\r\n")] = 0;
    if (strncmp(latest, "step-", 5) || strchr(latest, '/') || strlen(latest) > 40) {
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: '%.40s' is not a checkpoint name", path, latest);
        free(latest);
        return st;
    }
    snprintf(dir, sizeof dir, "%s/%s", root, latest);
    free(latest);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    char *text = NULL;
    if ((st = read_small_file(ctx, path, &text))) return st;
    cJSON *o = cJSON_Parse(text);
    free(text);
    const cJSON *step = o ? cJSON_GetObjectItem(o, "step") : NULL, *opt_steps = o ? cJSON_GetObjectItem(o, "optimizer_steps") : NULL;
    const cJSON *rl = o ? cJSON_GetObjectItem(o, "running_loss") : NULL, *cursor = o ? cJSON_GetObjectItem(o, "data_cursor") : NULL;
    if (!cJSON_IsNumber(step) || !cJSON_IsNumber(opt_steps) || !cJSON_IsString(rl) || step->valuedouble < 0) {
        cJSON_Delete(o);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: missing or invalid step / optimizer_steps / running_loss", path);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((st = ld_ckpt_read_params(ctx, path, t->m->params, NULL, 0))) goto done;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if ((st = ld_ckpt_read_params(ctx, path, t->m->params, t->opt, 1))) goto done;
    if (cursor && t->train.restore) {
        char *c = cJSON_PrintUnformatted(cursor);
        st = c ? t->train.restore(t->train.user, c) : LD_ERR_NOMEM;
        free(c);
        if (st) {
            st = ld_error_wrap(ctx, st, "%s/trainer_state.json: data cursor: ", dir);
            goto done;
        }
    }
    ld_params_refresh_bf16(t->m->params);
    t->step = (int64_t)step->valuedouble;
    ld_adamw_set_steps(t->opt, (int64_t)opt_steps->valuedouble);
    t->running_loss = strtod(rl->valuestring, NULL);
    trim_metrics(t);
    *found = true;
done:
    cJSON_Delete(o);
    return st;
}

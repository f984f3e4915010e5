/* serve/job_worker.c — one fine-tuning job of the registry, run in the worker process the
 * server starts for it (`liandan job-worker`, so a crash of the job never takes the server
 * down): the job's hyperparameters become a training-job config, the library's training job
 * runs it (resuming from the job's last checkpoint), each step is an event in the registry
 * (loss, ETA), checkpoints are recorded, and the result is moved into the models directory
 * and registered as a model with its lineage. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "liandan/io.h"
#include "liandan/registry.h"
#include "liandan/serve.h"
#include "liandan/train.h"
#include "serve/ft_file.h"
#include "serve/serve_internal.h"

typedef struct work {
    ld_ctx *ctx;
    ld_registry *reg;
    const char *models_dir;
    char id[96], model[160], training_file[64], validation_file[64], method[16], suffix[64], status[32];
    char *hyper;              /* JSON text */
    bool found;
    ld_train_job *job;
    volatile int *stop;
    double last_event;
    int64_t last_step;
    double last_loss;
    int64_t hold_step;        /* LD_JOB_HOLD_STEP (a test hook; 0 = none) */
    const char *hold_file;    /* LD_JOB_HOLD_FILE (NULL = none) */
    char run_dir[4300];
} work;

static void copy_job(void *user, const ld_job_row *j) {
    work *w = user;
    w->found = true;
    snprintf(w->model, sizeof w->model, "%s", j->model);
    snprintf(w->training_file, sizeof w->training_file, "%s", j->training_file);
    snprintf(w->validation_file, sizeof w->validation_file, "%s", j->validation_file ? j->validation_file : "");
    snprintf(w->method, sizeof w->method, "%s", j->method);
    snprintf(w->suffix, sizeof w->suffix, "%s", j->suffix ? j->suffix : "");
    snprintf(w->status, sizeof w->status, "%s", j->status);
    free(w->hyper);
    w->hyper = strdup(j->hyperparameters ? j->hyperparameters : "{}");
}

static void copy_sha(void *user, const ld_file_info *f) {
    snprintf(user, 65, "%s", f->sha256);
}

static void event(work *w, const char *level, const char *data, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void event(work *w, const char *level, const char *data, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ld_registry_event_add(w->reg, w->id, level, msg, data); /* an event lost is not the job lost */
}

/* Fails the job (unless it has been cancelled meanwhile) with the context's message. */
static ld_status fail_job(work *w, ld_status st, const char *what) {
    char msg[900];
    snprintf(msg, sizeof msg, "%s: %s", what, ld_ctx_error(w->ctx));
    event(w, "error", NULL, "%s", msg);
    ld_registry_job_set_status(w->reg, w->id, "validating_files|queued|running", "failed", msg, NULL);
    return st;
}

/* The stored path of a registry file. */
static bool file_path(work *w, const char *id, char *path, size_t cap) {
    char sha[65] = "";
    if (ld_registry_file_get(w->reg, id, copy_sha, sha) || !sha[0]) return false;
    snprintf(path, cap, "%s/.liandan/files/%s.jsonl", w->models_dir, sha);
    return access(path, R_OK) == 0;
}

/* The base model's path: DIR/name (a model directory) or DIR/name.gguf. */
static bool base_path(work *w, char *path, size_t cap) {
    bool exists = false;
    char file[200];
    if (ld_name_check(w->ctx, "model", w->model)) return false;
    if (!ld_path_inside(w->ctx, w->models_dir, w->model, path, cap, &exists) && exists) return true;
    snprintf(file, sizeof file, "%s.gguf", w->model);
    return !ld_path_inside(w->ctx, w->models_dir, file, path, cap, &exists) && exists;
}

/* The hyperparameters a job takes: OpenAI's (n_epochs, batch_size, learning_rate_multiplier)
 * and liandan's; build_config's dst follows this order. */
enum { N_HYPER = 10 };
static const char *const hyper_keys[N_HYPER] = {"n_epochs", "batch_size", "learning_rate_multiplier",
                                                "learning_rate", "seq_len", "checkpoint_every", "seed",
                                                "lora_rank", "lora_alpha", "max_steps"};

bool ld_job_hyper_check(const cJSON *hp, char *err, size_t cap) {
    if (!cJSON_IsObject(hp)) return snprintf(err, cap, "hyperparameters must be an object"), false;
    for (const cJSON *it = hp->child; it; it = it->next) {
        int k = 0;
        while (k < N_HYPER && strcmp(hyper_keys[k], it->string)) k++;
        if (k == N_HYPER)
            return snprintf(err, cap, "hyperparameters: unknown key '%.60s' (n_epochs, batch_size, learning_rate_multiplier, "
                                      "learning_rate, seq_len, checkpoint_every, seed, lora_rank, lora_alpha, max_steps)",
                            it->string),
                   false;
        if (cJSON_IsString(it) && !strcmp(it->valuestring, "auto")) continue;
        bool seed = !strcmp(it->string, "seed");
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < (seed ? 0 : 1e-12) ||
            it->valuedouble > 1e9)
            return snprintf(err, cap, "hyperparameters.%s: a %s number or \"auto\"", it->string, seed ? "non-negative" : "positive"),
                   false;
    }
    return true;
}

/* Hyperparameters (OpenAI's and liandan's) as keys of the training config. A number or
 * "auto" (the default) for OpenAI's keys. */
static ld_status build_config(work *w, const char *base, const char *train, const char *val, const char *format,
                              int threads, char **out) {
    cJSON *h = cJSON_Parse(w->hyper), *c = cJSON_CreateObject(), *data = cJSON_AddObjectToObject(c, "data");
    if (!cJSON_IsObject(h)) {
        cJSON_Delete(h), cJSON_Delete(c);
        return ld_error(w->ctx, LD_ERR_FORMAT, "hyperparameters are not a JSON object");
    }
    cJSON_AddStringToObject(c, "base", base);
    cJSON_AddStringToObject(c, "method", w->method);
    cJSON_AddStringToObject(c, "out_dir", w->run_dir);
    cJSON_AddStringToObject(data, "format", format);
    cJSON_AddStringToObject(data, "train", train);
    if (val) cJSON_AddStringToObject(data, "val", val);
    else cJSON_AddNumberToObject(data, "val_fraction", 0);
    /* defaults for small jobs; every one can be given */
    double lr = w->method[0] == 'f' ? 1e-4 : 1e-3, mult = 1, epochs = 3;
    double batch = 4, seq = 128, every = 10, seed = 1, rank = 8, alpha = 16, steps = 0;
    double *dst[N_HYPER] = {&epochs, &batch, &mult, &lr, &seq, &every, &seed, &rank, &alpha, &steps};
    char err[200];
    if (!ld_job_hyper_check(h, err, sizeof err)) {
        cJSON_Delete(h), cJSON_Delete(c);
        return ld_error(w->ctx, LD_ERR_FORMAT, "%s", err);
    }
    for (const cJSON *it = h->child; it; it = it->next)
        for (int k = 0; k < N_HYPER; k++)
            if (!strcmp(hyper_keys[k], it->string) && cJSON_IsNumber(it)) *dst[k] = it->valuedouble;
    cJSON_Delete(h);
    cJSON_AddNumberToObject(c, "lr", lr * mult);
    cJSON_AddNumberToObject(c, "batch_size", floor(batch));
    cJSON_AddNumberToObject(c, "seq_len", floor(seq));
    if (steps > 0) cJSON_AddNumberToObject(c, "max_steps", floor(steps));
    else cJSON_AddNumberToObject(c, "epochs", epochs);
    cJSON_AddNumberToObject(c, "checkpoint_every", floor(every));
    cJSON_AddNumberToObject(c, "keep_last", 2);
    cJSON_AddNumberToObject(c, "seed", floor(seed));
    cJSON_AddNumberToObject(c, "eval_every", val ? floor(every) : 0);
    cJSON_AddNumberToObject(c, "log_every", 1);
    if (threads > 0) cJSON_AddNumberToObject(c, "threads", threads);
    if (!strcmp(w->method, "lora")) {
        cJSON *l = cJSON_AddObjectToObject(c, "lora");
        cJSON_AddNumberToObject(l, "rank", floor(rank));
        cJSON_AddNumberToObject(l, "alpha", alpha);
    }
    *out = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return *out ? LD_OK : ld_error(w->ctx, LD_ERR_NOMEM, "out of memory");
}

/* Records step p: its checkpoint, and (at most 5 a second, and the last step) an event with
 * the loss and ETA. */
static void report(work *w, const ld_train_progress *p) {
    w->last_step = p->step, w->last_loss = p->loss;
    if (p->note && !strcmp(p->note, "checkpoint")) {
        char path[4400];
        snprintf(path, sizeof path, "%s/checkpoints/step-%07lld", w->run_dir, (long long)p->step);
        ld_registry_checkpoint_add(w->reg, w->id, p->step, path, p->loss);
    }
    double now = ld_time_now();
    if (p->step != p->max_steps && p->step != w->hold_step && now - w->last_event < 0.2) return;
    w->last_event = now;
    char data[400], val[64] = "";
    if (!isnan(p->val_loss)) snprintf(val, sizeof val, ", \"valid_loss\": %.9g", p->val_loss);
    snprintf(data, sizeof data,
             "{\"step\": %lld, \"total_steps\": %lld, \"train_loss\": %.9g, \"learning_rate\": %.6g, \"eta_s\": %.3f, "
             "\"tokens_per_s\": %.1f%s}",
             (long long)p->step, (long long)p->max_steps, p->loss, p->lr, p->eta_s, p->tokens_per_s, val);
    event(w, "info", data, "Step %lld/%lld: training loss=%.4f, ETA %.0f s", (long long)p->step, (long long)p->max_steps,
          p->loss, p->eta_s);
}

static void on_progress(void *user, const ld_train_progress *p) {
    work *w = user;
    report(w, p);
    /* a test hook: LD_JOB_HOLD_STEP=N holds every job after its step N until it is stopped,
     * or, with LD_JOB_HOLD_FILE, until that file is gone (tests/e2e/serve_finetune.sh kills the
     * server there, ui_chromium.sh looks at a running job's chart, however fast the host trains) */
    while (w->hold_step > 0 && p->step == w->hold_step && !*w->stop && (!w->hold_file || !access(w->hold_file, F_OK)))
        usleep(10000);
    if (*w->stop) ld_train_job_cancel(w->job);
}

/* The name the result is served under: the adapter (or model) directory's name. */
static void result_name(const work *w, char *out, size_t cap) {
    const char *hex = strrchr(w->id, '-');
    hex = hex ? hex + 1 : w->id;
    size_t n = strlen(hex);
    if (n > 8) hex += n - 8;
    if (w->suffix[0]) snprintf(out, cap, "ft-%s-%s", w->suffix, hex);
    else snprintf(out, cap, "ft-%s", hex);
    if (!strcmp(w->method, "full")) {
        char full[200];
        snprintf(full, sizeof full, "%s-%s", w->model, out);
        snprintf(out, cap, "%.127s", full);
    }
}

static ld_status finish(work *w, const ld_train_job_info *info) {
    char name[160], dst[4300], src[4400], served[400];
    result_name(w, name, sizeof name);
    bool exists = false;
    if (ld_name_check(w->ctx, "model", name) || ld_path_inside(w->ctx, w->models_dir, name, dst, sizeof dst, &exists))
        return fail_job(w, LD_ERR_INVALID_ARG, "naming the result");
    bool full = !strcmp(w->method, "full");
    snprintf(src, sizeof src, "%s/%s", w->run_dir, full ? "model" : "adapter");
    if (exists && ld_remove_tree(w->ctx, dst)) return fail_job(w, LD_ERR_IO, "replacing an earlier result");
    if (rename(src, dst)) {
        ld_error(w->ctx, LD_ERR_IO, "moving %s to %s: %s", src, dst, strerror(errno));
        return fail_job(w, LD_ERR_IO, "storing the result");
    }
    if (full) snprintf(served, sizeof served, "%s", name);
    else snprintf(served, sizeof served, "%s:%s", w->model, name);
    char sha[65] = "";
    ld_registry_file_get(w->reg, w->training_file, copy_sha, sha);
    ld_model_row m = {.id = served, .base = w->model, .kind = full ? "full" : w->method, .path = name,
                      .training_file = w->training_file, .training_sha256 = sha, .hyperparameters = w->hyper,
                      .job = w->id};
    if (ld_registry_model_add(w->reg, &m)) return fail_job(w, LD_ERR_IO, "registering the model");
    int64_t tokens = w->last_step * info->batch_size * info->seq_len * info->grad_accum;
    bool done = false;
    if (ld_registry_job_succeed(w->reg, w->id, served, tokens, &done)) return fail_job(w, LD_ERR_IO, "finishing");
    char data[200];
    snprintf(data, sizeof data, "{\"step\": %lld, \"final_train_loss\": %.9g}", (long long)w->last_step, w->last_loss);
    if (done) event(w, "info", data, "The job has successfully completed: model %s (final training loss %.6f)", served, w->last_loss);
    return LD_OK;
}

ld_status ld_serve_job_work(ld_ctx *ctx, const char *models_dir, const char *registry, const char *job_id, int threads,
                            volatile int *stop) {
    static volatile int never;
    work w = {.ctx = ctx, .models_dir = models_dir, .stop = stop ? stop : &never};
    snprintf(w.id, sizeof w.id, "%s", job_id);
    ld_status st = ld_registry_open(ctx, registry, &w.reg);
    if (st) return st;
    char dir[4300], path[4400];
    int lock = -1;
    /* one worker per job at a time: a second waits for the first (still checkpointing) */
    snprintf(dir, sizeof dir, "%s/.liandan/jobs", models_dir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/.liandan/jobs/%s", models_dir, job_id);
    mkdir(dir, 0700);
    snprintf(w.run_dir, sizeof w.run_dir, "%s/run", dir);
    snprintf(path, sizeof path, "%s/lock", dir);
    if ((lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 || flock(lock, LOCK_EX)) {
        st = ld_error(ctx, LD_ERR_IO, "job %s: cannot lock %s: %s", job_id, path, strerror(errno));
        goto done;
    }
    if ((st = ld_registry_job_get(w.reg, job_id, copy_job, &w))) goto done;
    if (strcmp(w.status, "running") && strcmp(w.status, "queued")) {
        st = ld_error(ctx, LD_ERR_STATE, "job %s is %s, not queued or running", job_id, w.status);
        goto done;
    }
    char train[4400], val[4400], base[4300];
    bool have_val = w.validation_file[0] != 0;
    if (!file_path(&w, w.training_file, train, sizeof train)) {
        ld_error(ctx, LD_ERR_NOT_FOUND, "training file %s is gone", w.training_file);
        st = fail_job(&w, LD_ERR_NOT_FOUND, "reading the data");
        goto done;
    }
    if (have_val && !file_path(&w, w.validation_file, val, sizeof val)) {
        ld_error(ctx, LD_ERR_NOT_FOUND, "validation file %s is gone", w.validation_file);
        st = fail_job(&w, LD_ERR_NOT_FOUND, "reading the data");
        goto done;
    }
    if (!base_path(&w, base, sizeof base)) {
        ld_error(ctx, LD_ERR_NOT_FOUND, "the base model '%s' is not in %s", w.model, models_dir);
        st = fail_job(&w, LD_ERR_NOT_FOUND, "finding the model");
        goto done;
    }
    char *bytes = NULL;
    size_t n = 0;
    ld_ft_file_info fi;
    if ((st = ld_file_read(ctx, train, (size_t)1 << 34, &bytes, &n)) || (st = ld_ft_file_check(ctx, bytes, n, 0, &fi))) {
        ld_free(ctx, bytes);
        st = fail_job(&w, st, "checking the training file");
        goto done;
    }
    ld_free(ctx, bytes);
    char *cfg = NULL;
    if ((st = build_config(&w, base, train, have_val ? val : NULL, fi.format, threads, &cfg))) {
        st = fail_job(&w, st, "the job's hyperparameters");
        goto done;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    ld_file_write_atomic(ctx, path, cfg, strlen(cfg)); /* for whoever looks into the job's directory */
    st = ld_train_job_new(ctx, LD_JOB_FINETUNE, cfg, strlen(cfg), "the job's config", NULL, 0, &w.job);
    free(cfg);
    if (st) {
        st = fail_job(&w, st, "preparing the job");
        goto done;
    }
    const ld_train_job_info *info = ld_train_job_info_of(w.job);
    snprintf(path, sizeof path, "%s/checkpoints/latest", w.run_dir);
    bool resuming = access(path, F_OK) == 0;
    event(&w, "info", NULL, "%s fine-tuning of %s: %lld examples (%s), %lld steps, %lld trainable parameters%s",
          w.method, w.model, (long long)info->train_examples, fi.format, (long long)info->max_steps,
          (long long)info->trainable, resuming ? "; resuming from the last checkpoint" : "");
    if (info->truncated)
        event(&w, "warning", NULL, "%lld examples are longer than seq_len %lld tokens and were cut to it (their end is not learnt)",
              (long long)info->truncated, (long long)info->seq_len);
    w.last_event = 0;
    const char *hold = getenv("LD_JOB_HOLD_STEP");
    w.hold_step = hold ? strtoll(hold, NULL, 10) : 0;
    w.hold_file = getenv("LD_JOB_HOLD_FILE");
    st = ld_train_job_run(w.job, true, on_progress, &w);
    if (st == LD_ERR_INTERRUPTED) {
        ld_registry_job_get(w.reg, job_id, copy_job, &w);
        if (!strcmp(w.status, "cancelled")) {
            event(&w, "info", NULL, "The job was cancelled at step %lld", (long long)w.last_step);
            st = LD_OK;
        } else {
            event(&w, "info", NULL, "The job stopped at step %lld (checkpointed); it resumes when the server starts it again",
                  (long long)w.last_step);
        }
    } else if (st) {
        st = fail_job(&w, st, "training");
    } else {
        st = finish(&w, info);
    }
done:
    ld_train_job_free(w.job);
    if (lock >= 0) close(lock);
    free(w.hyper);
    ld_registry_close(w.reg);
    return st;
}

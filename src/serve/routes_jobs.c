/* serve/routes_jobs.c — OpenAI's fine-tuning routes: POST /v1/fine_tuning/jobs (base model,
 * training file, method lora / full / prompt, hyperparameters), GET the list and one job,
 * GET .../events and .../checkpoints, POST .../cancel. The job runs in a worker process
 * (jobs.c); these handlers only read and write the registry. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "liandan/io.h"
#include "liandan/registry.h"
#include "serve/serve_internal.h"

static int fail(ld_http *h, int status, const char *param, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
static int fail(ld_http *h, int status, const char *param, const char *code, const char *fmt, ...) {
    ld_api_error e;
    memset(&e, 0, sizeof e);
    if (code) snprintf(e.code, sizeof e.code, "%s", code);
    char msg[sizeof e.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ld_api_fail(&e, status, param, "%s", msg);
    return ld_http_error(h, &e);
}

static void add_time(cJSON *o, const char *key, double t) {
    if (t > 0) cJSON_AddNumberToObject(o, key, floor(t));
    else cJSON_AddNullToObject(o, key);
}

static void add_str(cJSON *o, const char *key, const char *s) {
    if (s && s[0]) cJSON_AddStringToObject(o, key, s);
    else cJSON_AddNullToObject(o, key);
}

static cJSON *job_json(const ld_job_row *j) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "object", "fine_tuning.job");
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "model", j->model);
    add_time(o, "created_at", j->created);
    add_time(o, "finished_at", j->finished);
    add_str(o, "fine_tuned_model", j->fine_tuned_model);
    cJSON_AddStringToObject(o, "organization_id", "liandan");
    cJSON_AddItemToObject(o, "result_files", cJSON_CreateArray());
    cJSON_AddStringToObject(o, "status", j->status);
    add_str(o, "training_file", j->training_file);
    add_str(o, "validation_file", j->validation_file);
    cJSON *hp = cJSON_Parse(j->hyperparameters ? j->hyperparameters : "{}");
    cJSON_AddItemToObject(o, "hyperparameters", hp ? hp : cJSON_CreateObject());
    cJSON *m = cJSON_AddObjectToObject(o, "method");
    cJSON_AddStringToObject(m, "type", j->method);
    if (j->trained_tokens > 0) cJSON_AddNumberToObject(o, "trained_tokens", (double)j->trained_tokens);
    else cJSON_AddNullToObject(o, "trained_tokens");
    add_str(o, "user_provided_suffix", j->suffix);
    if (j->error && j->error[0]) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", "job_failed");
        cJSON_AddStringToObject(e, "message", j->error);
        cJSON_AddNullToObject(e, "param");
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    cJSON_AddNullToObject(o, "estimated_finish");
    cJSON_AddItemToObject(o, "integrations", cJSON_CreateArray());
    cJSON_AddNumberToObject(o, "attempts", (double)j->attempts);
    return o;
}

static void job_to_json(void *user, const ld_job_row *j) {
    *(cJSON **)user = job_json(j);
}
static void job_to_array(void *user, const ld_job_row *j) {
    cJSON_AddItemToArray(user, job_json(j));
}

static bool need_jobs(ld_http *h) {
    if (!ld_srv_need_registry(h)) return false;
    if (h->srv->jobs) return true;
    fail(h, 501, NULL, NULL, "this server runs no fine-tuning jobs (it was started without a worker executable)");
    return false;
}

/* ---- create --------------------------------------------------------------------------------------- */

static const char *const methods[] = {"lora", "full", "prompt"};

/* The method's name from "method" (a string, or OpenAI's {"type": ..., TYPE: {"hyperparameters"}}),
 * and the hyperparameters object inside it (borrowed, may be NULL). */
static bool parse_method(const cJSON *m, const char **name, const cJSON **hp, char *err, size_t cap) {
    *name = "lora", *hp = NULL;
    if (!m) return true;
    const cJSON *type = cJSON_IsString(m) ? m : cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "type") : NULL;
    if (!cJSON_IsString(type)) return snprintf(err, cap, "method: a string (lora, full, prompt) or {\"type\": ...}"), false;
    const char *t = type->valuestring;
    if (!strcmp(t, "supervised")) t = "lora"; /* OpenAI's supervised fine-tuning: here a LoRA by default */
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (!strcmp(t, methods[i])) *name = methods[i];
    if (strcmp(*name, t)) return snprintf(err, cap, "method '%.40s': use lora, full, prompt (or supervised)", type->valuestring), false;
    if (cJSON_IsObject(m)) {
        const cJSON *inner = cJSON_GetObjectItemCaseSensitive(m, type->valuestring);
        if (inner && !cJSON_IsObject(inner)) return snprintf(err, cap, "method.%.40s must be an object", type->valuestring), false;
        if (inner) *hp = cJSON_GetObjectItemCaseSensitive(inner, "hyperparameters");
    }
    return true;
}

static bool base_exists(ld_http *h, const char *name) {
    char path[4300], file[200];
    bool exists = false;
    if (ld_name_check(h->ctx, "model", name)) return false;
    if (!ld_path_inside(h->ctx, h->srv->models_dir, name, path, sizeof path, &exists) && exists) return true;
    snprintf(file, sizeof file, "%s.gguf", name);
    return !ld_path_inside(h->ctx, h->srv->models_dir, file, path, sizeof path, &exists) && exists;
}

static int create_job(ld_http *h) {
    cJSON *b = cJSON_ParseWithLength(h->body, h->body_len);
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return fail(h, 400, NULL, NULL, "the body is not a JSON object");
    }
    static const char *const known[] = {"model", "training_file", "validation_file", "hyperparameters", "suffix",
                                        "seed", "method", "metadata", "integrations"};
    for (const cJSON *it = b->child; it; it = it->next) {
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok |= !strcmp(it->string, known[k]);
        if (!ok) {
            int r = fail(h, 400, it->string, "unknown_parameter", "Unrecognized request argument supplied: %.60s", it->string);
            cJSON_Delete(b);
            return r;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(b, "model");
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(b, "training_file");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(b, "validation_file");
    const cJSON *suffix = cJSON_GetObjectItemCaseSensitive(b, "suffix");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(b, "seed");
    const cJSON *top_hp = cJSON_GetObjectItemCaseSensitive(b, "hyperparameters");
    const char *method = NULL;
    const cJSON *method_hp = NULL;
    char err[200];
    int r = 0;
    if (!cJSON_IsString(model)) r = fail(h, 400, "model", NULL, "'model' (the base model's name) is required");
    else if (!base_exists(h, model->valuestring))
        r = fail(h, 404, "model", "model_not_found", "The model '%.160s' does not exist", model->valuestring);
    else if (!cJSON_IsString(train)) r = fail(h, 400, "training_file", NULL, "'training_file' (a file id) is required");
    else if (!ld_srv_file_path(h->srv, train->valuestring, err, sizeof err, NULL))
        r = fail(h, 404, "training_file", NULL, "No such File object: %.64s", train->valuestring);
    else if (val && !cJSON_IsNull(val) && (!cJSON_IsString(val) || !ld_srv_file_path(h->srv, val->valuestring, err, sizeof err, NULL)))
        r = fail(h, 404, "validation_file", NULL, "No such File object: %.64s", cJSON_IsString(val) ? val->valuestring : "");
    else if (suffix && !cJSON_IsNull(suffix) &&
             (!cJSON_IsString(suffix) || strlen(suffix->valuestring) > 40 || !suffix->valuestring[0] ||
              strspn(suffix->valuestring, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") !=
                  strlen(suffix->valuestring)))
        r = fail(h, 400, "suffix", NULL, "suffix: 1..40 characters of letters, digits, '-' and '_'");
    else if (seed && !cJSON_IsNull(seed) && (!cJSON_IsNumber(seed) || seed->valuedouble < 0 || seed->valuedouble > 2147483647))
        r = fail(h, 400, "seed", NULL, "seed: an integer in 0..2147483647");
    else if (!parse_method(cJSON_GetObjectItemCaseSensitive(b, "method"), &method, &method_hp, err, sizeof err))
        r = fail(h, 400, "method", NULL, "%s", err);
    else if ((top_hp && !cJSON_IsObject(top_hp)) || (method_hp && !cJSON_IsObject(method_hp)))
        r = fail(h, 400, "hyperparameters", NULL, "hyperparameters must be an object");
    if (r) {
        cJSON_Delete(b);
        return r;
    }
    /* the hyperparameters: the method's over the top-level ones, the seed among them */
    cJSON *hp = cJSON_CreateObject();
    const cJSON *srcs[2] = {top_hp, method_hp};
    for (int s = 0; s < 2; s++)
        for (const cJSON *it = srcs[s] ? srcs[s]->child : NULL; it; it = it->next) {
            cJSON_DeleteItemFromObjectCaseSensitive(hp, it->string);
            cJSON_AddItemToObject(hp, it->string, cJSON_Duplicate(it, true));
        }
    if (cJSON_IsNumber(seed)) {
        cJSON_DeleteItemFromObjectCaseSensitive(hp, "seed");
        cJSON_AddNumberToObject(hp, "seed", floor(seed->valuedouble));
    }
    if (!ld_job_hyper_check(hp, err, sizeof err)) {
        cJSON_Delete(hp);
        r = fail(h, 400, "hyperparameters", NULL, "%s", err);
        cJSON_Delete(b);
        return r;
    }
    char *hp_text = cJSON_PrintUnformatted(hp);
    cJSON_Delete(hp);
    uint8_t rnd[12] = {0};
    char id[40];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t t = (uint64_t)(ld_time_now() * 1e6);
        memcpy(rnd, &t, sizeof t);
    }
    strcpy(id, "ftjob-");
    for (int i = 0; i < 12; i++) snprintf(id + 6 + 2 * i, 3, "%02x", rnd[i]);
    ld_job_row j = {.id = id, .model = model->valuestring, .training_file = train->valuestring,
                    .validation_file = cJSON_IsString(val) ? val->valuestring : NULL, .method = method,
                    .hyperparameters = hp_text ? hp_text : "{}", .suffix = cJSON_IsString(suffix) ? suffix->valuestring : NULL,
                    .status = "validating_files"};
    cJSON *out = NULL;
    if (ld_registry_job_add(h->srv->reg, &j) || ld_registry_job_get(h->srv->reg, id, job_to_json, &out)) {
        ld_server_log(h->srv, LD_LOG_ERROR, "fine-tuning: %s", ld_registry_error(h->srv->reg));
        r = fail(h, 500, NULL, NULL, "the registry could not record the job");
    } else {
        /* the job as created: the jobs thread may already have validated it between the add
         * and the read (the client then saw "queued" from create, now and then) */
        cJSON_ReplaceItemInObject(out, "status", cJSON_CreateString("validating_files"));
        ld_registry_event_add(h->srv->reg, id, "info", "Created fine-tuning job", NULL);
        ld_server_log(h->srv, LD_LOG_INFO, "fine-tuning job %s: %s of %s on %s", id, method, j.model, j.training_file);
        ld_jobs_kick(h->srv->jobs);
        r = ld_http_json(h, 200, out);
    }
    free(hp_text);
    cJSON_Delete(b);
    return r;
}

/* ---- one job and its parts --------------------------------------------------------------------------- */

static int64_t query_int(ld_http *h, const char *key, int64_t def, int64_t lo, int64_t hi, bool *bad) {
    const char *v = MHD_lookup_connection_value(h->conn, MHD_GET_ARGUMENT_KIND, key);
    if (!v) return def;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) *bad = true;
    return x;
}

static void event_to_array(void *user, const ld_job_event *e) {
    cJSON *o = cJSON_CreateObject();
    char id[40];
    snprintf(id, sizeof id, "ftevent-%lld", (long long)e->id);
    cJSON_AddStringToObject(o, "object", "fine_tuning.job.event");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "created_at", floor(e->created));
    cJSON_AddStringToObject(o, "level", e->level);
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON *data = e->data ? cJSON_Parse(e->data) : NULL;
    cJSON_AddStringToObject(o, "type", data && cJSON_GetObjectItemCaseSensitive(data, "train_loss") ? "metrics" : "message");
    cJSON_AddItemToObject(o, "data", data ? data : cJSON_CreateObject());
    cJSON_AddItemToArray(user, o);
}

typedef struct ckpt_ctx {
    cJSON *arr;
    const char *model; /* the job's base */
} ckpt_ctx;

static void checkpoint_to_array(void *user, const ld_job_checkpoint *c) {
    ckpt_ctx *cc = user;
    cJSON *o = cJSON_CreateObject();
    char id[40], name[300];
    snprintf(id, sizeof id, "ftckpt-%lld", (long long)c->id);
    snprintf(name, sizeof name, "%s:%s:ckpt-step-%lld", cc->model, c->job, (long long)c->step);
    cJSON_AddStringToObject(o, "object", "fine_tuning.job.checkpoint");
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "created_at", floor(c->created));
    cJSON_AddStringToObject(o, "fine_tuned_model_checkpoint", name);
    cJSON_AddNumberToObject(o, "step_number", (double)c->step);
    cJSON *m = cJSON_AddObjectToObject(o, "metrics");
    cJSON_AddNumberToObject(m, "step", (double)c->step);
    cJSON_AddNumberToObject(m, "train_loss", c->train_loss);
    cJSON_AddStringToObject(o, "fine_tuning_job_id", c->job);
    cJSON_AddItemToArray(cc->arr, o);
}

static void copy_model(void *user, const ld_job_row *j) {
    snprintf(user, 160, "%s", j->model);
}

int ld_route_fine_tuning(ld_http *h) {
    if (!need_jobs(h)) return MHD_YES;
    if (!strcmp(h->method, "POST")) return create_job(h);
    bool bad = false;
    int64_t limit = query_int(h, "limit", 20, 1, 10000, &bad);
    const char *after = MHD_lookup_connection_value(h->conn, MHD_GET_ARGUMENT_KIND, "after");
    if (bad) return fail(h, 400, "limit", NULL, "limit: an integer in 1..10000");
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data");
    cJSON_AddStringToObject(root, "object", "list");
    if (ld_registry_job_list(h->srv->reg, after, limit + 1, NULL, job_to_array, data)) {
        cJSON_Delete(root);
        return fail(h, 500, NULL, NULL, "the registry could not list jobs");
    }
    bool more = cJSON_GetArraySize(data) > limit;
    if (more) cJSON_DeleteItemFromArray(data, (int)limit);
    cJSON_AddBoolToObject(root, "has_more", more);
    return ld_http_json(h, 200, root);
}

int ld_route_fine_tuning_job(ld_http *h) {
    if (!need_jobs(h)) return MHD_YES;
    const char *rest = h->url + strlen("/v1/fine_tuning/jobs/");
    size_t n = strcspn(rest, "/");
    char id[96];
    if (n >= sizeof id || n == 0) return fail(h, 404, NULL, NULL, "Unknown request URL: %.200s", h->url);
    memcpy(id, rest, n), id[n] = 0;
    const char *part = rest[n] ? rest + n + 1 : "";
    char model[160] = "";
    if (ld_registry_job_get(h->srv->reg, id, copy_model, model))
        return fail(h, 404, "fine_tuning_job_id", NULL, "No such fine-tuning job: %.96s", id);
    bool post = !strcmp(h->method, "POST");
    if (post != !strcmp(part, "cancel")) {
        bool known = !part[0] || !strcmp(part, "events") || !strcmp(part, "checkpoints") || !strcmp(part, "cancel");
        return known ? fail(h, 405, NULL, NULL, "method not allowed on this route")
                     : fail(h, 404, NULL, NULL, "Unknown request URL: %.200s", h->url);
    }
    if (post) {
        if (!ld_jobs_cancel(h->srv->jobs, id)) {
            cJSON *cur = NULL;
            ld_registry_job_get(h->srv->reg, id, job_to_json, &cur);
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(cur, "status");
            char msg[200];
            snprintf(msg, sizeof msg, "Job %s is already %s and cannot be cancelled", id,
                     cJSON_IsString(st) ? st->valuestring : "finished");
            cJSON_Delete(cur);
            return fail(h, 409, NULL, "job_not_cancellable", "%s", msg);
        }
    }
    if (!part[0] || post) {
        cJSON *out = NULL;
        if (ld_registry_job_get(h->srv->reg, id, job_to_json, &out) || !out)
            return fail(h, 500, NULL, NULL, "the registry could not read the job");
        return ld_http_json(h, 200, out);
    }
    bool bad = false;
    int64_t limit = query_int(h, "limit", !strcmp(part, "events") ? 20 : 10, 1, 10000, &bad);
    if (bad) return fail(h, 400, "limit", NULL, "limit: an integer in 1..10000");
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data");
    cJSON_AddStringToObject(root, "object", "list");
    ld_status st;
    if (!strcmp(part, "events")) {
        const char *after = MHD_lookup_connection_value(h->conn, MHD_GET_ARGUMENT_KIND, "after");
        int64_t before = 0;
        if (after && (strncmp(after, "ftevent-", 8) || (before = strtoll(after + 8, NULL, 10)) <= 0)) {
            cJSON_Delete(root);
            return fail(h, 400, "after", NULL, "after: an event id (ftevent-N)");
        }
        st = ld_registry_event_list(h->srv->reg, id, before, limit + 1, event_to_array, data);
    } else if (!strcmp(part, "checkpoints")) {
        ckpt_ctx cc = {.arr = data, .model = model};
        st = ld_registry_checkpoint_list(h->srv->reg, id, checkpoint_to_array, &cc);
    } else {
        cJSON_Delete(root);
        return fail(h, 404, NULL, NULL, "Unknown request URL: %.200s", h->url);
    }
    if (st) {
        cJSON_Delete(root);
        return fail(h, 500, NULL, NULL, "the registry could not list the job's %s", part);
    }
    bool more = cJSON_GetArraySize(data) > limit;
    while (cJSON_GetArraySize(data) > limit) cJSON_DeleteItemFromArray(data, (int)limit);
    cJSON_AddBoolToObject(root, "has_more", more);
    return ld_http_json(h, 200, root);
}

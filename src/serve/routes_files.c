/* serve/routes_files.c — OpenAI's files routes for fine-tuning data: POST /v1/files (multipart
 * upload, purpose "fine-tune", JSONL checked line by line, stored content-addressed as
 * DIR/.liandan/files/<sha256>.jsonl), GET /v1/files, GET and DELETE /v1/files/{id}, and
 * GET /v1/files/{id}/content. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "liandan/io.h"
#include "liandan/registry.h"
#include "serve/ft_file.h"
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
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof e.message];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ld_api_fail(&e, status, param, "%s", msg);
    return ld_http_error(h, &e);
}

bool ld_srv_need_registry(ld_http *h) {
    if (h->srv->reg) return true;
    fail(h, 501, NULL, NULL, "this server has no registry (files and fine-tuning need one)");
    return false;
}

/* DIR/.liandan/files[/<sha>.jsonl] */
static void file_path(const ld_server *s, const char *sha, char *out, size_t cap) {
    if (sha) snprintf(out, cap, "%s/.liandan/files/%s.jsonl", s->models_dir, sha);
    else snprintf(out, cap, "%s/.liandan/files", s->models_dir);
}

bool ld_srv_file_id_ok(const char *id) {
    if (strncmp(id, "file-", 5) || strlen(id) != 5 + 24) return false;
    for (const char *p = id + 5; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
    return true;
}

static cJSON *file_json(const ld_file_info *f) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", f->id);
    cJSON_AddStringToObject(o, "object", "file");
    cJSON_AddNumberToObject(o, "bytes", (double)f->bytes);
    cJSON_AddNumberToObject(o, "created_at", floor(f->created));
    cJSON_AddStringToObject(o, "filename", f->filename);
    cJSON_AddStringToObject(o, "purpose", f->purpose);
    cJSON_AddStringToObject(o, "status", "processed");
    cJSON_AddNullToObject(o, "status_details");
    cJSON_AddStringToObject(o, "sha256", f->sha256);
    cJSON_AddNumberToObject(o, "examples", (double)f->lines);
    return o;
}

static void file_to_json(void *user, const ld_file_info *f) {
    *(cJSON **)user = file_json(f);
}

static void file_to_array(void *user, const ld_file_info *f) {
    cJSON_AddItemToArray(user, file_json(f));
}

/* ---- the multipart body ------------------------------------------------------------------------- */

typedef struct upload {
    char *data;             /* the "file" part */
    size_t len, cap;
    char filename[256];
    char purpose[32];
    size_t purpose_len;
    bool have_file, too_long;
} upload;

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
                               size_t size) {
    (void)kind, (void)content_type, (void)transfer_encoding, (void)off;
    upload *u = cls;
    if (!strcmp(key, "file")) {
        if (!u->have_file) snprintf(u->filename, sizeof u->filename, "%s", filename ? filename : "upload.jsonl");
        u->have_file = true;
        if (u->len + size + 1 > u->cap) {
            size_t cap = u->cap ? u->cap : 65536;
            while (cap < u->len + size + 1) cap *= 2;
            char *d = realloc(u->data, cap);
            if (!d) return MHD_NO;
            u->data = d, u->cap = cap;
        }
        memcpy(u->data + u->len, data, size);
        u->len += size;
        u->data[u->len] = 0;
    } else if (!strcmp(key, "purpose")) {
        if (u->purpose_len + size >= sizeof u->purpose) u->too_long = true;
        else memcpy(u->purpose + u->purpose_len, data, size), u->purpose_len += size;
    }
    return MHD_YES;
}

static int upload_file(ld_http *h) {
    const char *ct = MHD_lookup_connection_value(h->conn, MHD_HEADER_KIND, "Content-Type");
    if (!ct || strncasecmp(ct, "multipart/form-data", 19))
        return fail(h, 400, NULL, NULL, "upload the file as multipart/form-data with parts 'file' and 'purpose'");
    upload u;
    memset(&u, 0, sizeof u);
    struct MHD_PostProcessor *pp = MHD_create_post_processor(h->conn, 65536, on_part, &u);
    if (!pp) return fail(h, 400, NULL, NULL, "cannot read the multipart body (no boundary?)");
    enum MHD_Result ok = MHD_post_process(pp, h->body, h->body_len);
    enum MHD_Result done = MHD_destroy_post_processor(pp);
    int r;
    if (ok != MHD_YES || done != MHD_YES) r = fail(h, 400, NULL, NULL, "a malformed multipart body");
    else if (!u.have_file) r = fail(h, 400, "file", NULL, "the upload has no 'file' part");
    else if (u.too_long || strcmp(u.purpose, "fine-tune"))
        r = fail(h, 400, "purpose", NULL, "purpose '%.40s': this server takes files for 'fine-tune' only", u.purpose);
    else {
        ld_ft_file_info info;
        ld_status st = ld_ft_file_check(h->ctx, u.data ? u.data : "", u.len, 0, &info);
        if (st) {
            char msg[600];
            snprintf(msg, sizeof msg, "%s: %s", u.filename, ld_ctx_error(h->ctx));
            r = fail(h, 400, "file", "invalid_file", "%s", msg);
        } else {
            char sha[65], id[40], dir[4200], path[4300];
            ld_sha256_hex(u.data, u.len, sha);
            snprintf(id, sizeof id, "file-%.24s", sha);
            snprintf(dir, sizeof dir, "%s/.liandan", h->srv->models_dir);
            mkdir(dir, 0700);
            file_path(h->srv, NULL, dir, sizeof dir);
            mkdir(dir, 0700);
            file_path(h->srv, sha, path, sizeof path);
            struct stat sb;
            bool ok_write = (stat(path, &sb) == 0 && (size_t)sb.st_size == u.len) ||
                            ld_file_write_atomic(h->ctx, path, u.data, u.len) == LD_OK;
            ld_file_info f = {.id = id, .filename = u.filename, .purpose = "fine-tune", .sha256 = sha,
                              .bytes = (int64_t)u.len, .lines = info.examples, .created = 0};
            cJSON *out = NULL;
            if (!ok_write) {
                ld_server_log(h->srv, LD_LOG_ERROR, "files: storing %s: %s", id, ld_ctx_error(h->ctx));
                r = fail(h, 500, NULL, NULL, "the file could not be stored");
            } else if (ld_registry_file_add(h->srv->reg, &f, NULL) ||
                       ld_registry_file_get(h->srv->reg, id, file_to_json, &out)) {
                ld_server_log(h->srv, LD_LOG_ERROR, "files: %s", ld_registry_error(h->srv->reg));
                r = fail(h, 500, NULL, NULL, "the registry could not record the file");
            } else {
                ld_server_log(h->srv, LD_LOG_INFO, "files: %s (%s, %lld bytes, %lld %s examples)", id, u.filename,
                              (long long)u.len, (long long)info.examples, info.format);
                r = ld_http_json(h, 200, out);
            }
        }
    }
    free(u.data);
    return r;
}

/* ---- routes ----------------------------------------------------------------------------------------- */

int ld_route_files(ld_http *h) {
    if (!ld_srv_need_registry(h)) return MHD_YES;
    if (!strcmp(h->method, "POST")) return upload_file(h);
    const char *purpose = MHD_lookup_connection_value(h->conn, MHD_GET_ARGUMENT_KIND, "purpose");
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data");
    cJSON_AddStringToObject(root, "object", "list");
    if (ld_registry_file_list(h->srv->reg, purpose, file_to_array, data)) {
        cJSON_Delete(root);
        return fail(h, 500, NULL, NULL, "the registry could not list files");
    }
    cJSON_AddBoolToObject(root, "has_more", false);
    return ld_http_json(h, 200, root);
}

typedef struct file_copy {
    char sha[65];
    bool found;
} file_copy;

static void keep_sha(void *user, const ld_file_info *f) {
    file_copy *c = user;
    snprintf(c->sha, sizeof c->sha, "%s", f->sha256);
    c->found = true;
}

int ld_route_file(ld_http *h) {
    if (!ld_srv_need_registry(h)) return MHD_YES;
    char id[64];
    const char *rest = h->url + strlen("/v1/files/");
    size_t n = strcspn(rest, "/");
    bool content = !strcmp(rest + n, "/content");
    if (n >= sizeof id || (rest[n] && !content)) return fail(h, 404, NULL, NULL, "Unknown request URL: %.200s", h->url);
    memcpy(id, rest, n), id[n] = 0;
    if (!ld_srv_file_id_ok(id)) return fail(h, 404, "file_id", NULL, "No such File object: %.64s", id);
    if (!strcmp(h->method, "DELETE")) {
        if (content) return fail(h, 405, NULL, NULL, "method not allowed on this route");
        file_copy c = {.found = false};
        ld_registry_file_get(h->srv->reg, id, keep_sha, &c);
        if (!c.found || ld_registry_file_delete(h->srv->reg, id))
            return fail(h, 404, "file_id", NULL, "No such File object: %s", id);
        char path[4300];
        file_path(h->srv, c.sha, path, sizeof path);
        if (unlink(path) && errno != ENOENT) ld_server_log(h->srv, LD_LOG_WARN, "files: removing %s: %s", path, strerror(errno));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "object", "file");
        cJSON_AddBoolToObject(o, "deleted", true);
        return ld_http_json(h, 200, o);
    }
    if (content) {
        file_copy c = {.found = false};
        ld_registry_file_get(h->srv->reg, id, keep_sha, &c);
        if (!c.found) return fail(h, 404, "file_id", NULL, "No such File object: %s", id);
        char path[4300];
        file_path(h->srv, c.sha, path, sizeof path);
        size_t len = 0;
        char *bytes = NULL;
        if (ld_file_read(h->ctx, path, (size_t)1 << 34, &bytes, &len))
            return fail(h, 500, NULL, NULL, "the stored file cannot be read");
        int r = ld_http_text(h, 200, "application/jsonl", bytes, len);
        ld_free(h->ctx, bytes);
        return r;
    }
    cJSON *out = NULL;
    if (ld_registry_file_get(h->srv->reg, id, file_to_json, &out) || !out)
        return fail(h, 404, "file_id", NULL, "No such File object: %s", id);
    return ld_http_json(h, 200, out);
}

/* The stored path of a file by id (false when there is none). */
bool ld_srv_file_path(ld_server *s, const char *id, char *path, size_t cap, char sha[65]) {
    file_copy c = {.found = false};
    if (!s->reg || !ld_srv_file_id_ok(id) || ld_registry_file_get(s->reg, id, keep_sha, &c) || !c.found) return false;
    file_path(s, c.sha, path, cap);
    if (sha) memcpy(sha, c.sha, 65);
    return true;
}

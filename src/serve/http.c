/* serve/http.c — the HTTP layer on libmicrohttpd: one thread per connection, limits on
 * headers, bodies and connections, timeouts for slow clients, API-key checks, the route
 * table, JSON / text / server-sent-event responses, and the server's start and stop. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "registry/registry.h"
#include "serve/engine.h"
#include "serve/serve_internal.h"

/* ---- the route table ---------------------------------------------------------------------- */

typedef struct route {
    const char *method;
    const char *path;   /* exact, or a prefix when it ends in '/' */
    const char *scope;  /* key scope needed; NULL = no key needed */
    int (*fn)(ld_http *h);
    int body;           /* BODY_*: what it reads, and under which size limit */
} route;
enum { BODY_NONE, BODY_JSON /* limits.max_body_bytes */, BODY_FILE /* limits.max_file_bytes */ };

static const route routes[] = {
    {"GET", "/health", NULL, ld_route_health, BODY_NONE},
    {"GET", "/metrics", LD_SCOPE_INFERENCE, ld_route_metrics, BODY_NONE},
    {"GET", "/v1/models", LD_SCOPE_INFERENCE, ld_route_models, BODY_NONE},
    {"GET", "/v1/models/", LD_SCOPE_INFERENCE, ld_route_model, BODY_NONE},
    {"POST", "/v1/completions", LD_SCOPE_INFERENCE, ld_route_generate, BODY_JSON},
    {"POST", "/v1/chat/completions", LD_SCOPE_INFERENCE, ld_route_generate, BODY_JSON},
    {"POST", "/v1/embeddings", LD_SCOPE_INFERENCE, ld_route_embeddings, BODY_JSON},
    {"POST", "/tokenize", LD_SCOPE_INFERENCE, ld_route_tokenize, BODY_JSON},
    {"POST", "/detokenize", LD_SCOPE_INFERENCE, ld_route_detokenize, BODY_JSON},
    {"POST", "/v1/files", LD_SCOPE_FINETUNE, ld_route_files, BODY_FILE},
    {"GET", "/v1/files", LD_SCOPE_FINETUNE, ld_route_files, BODY_NONE},
    {"GET", "/v1/files/", LD_SCOPE_FINETUNE, ld_route_file, BODY_NONE},
    {"DELETE", "/v1/files/", LD_SCOPE_FINETUNE, ld_route_file, BODY_NONE},
    {"POST", "/v1/fine_tuning/jobs", LD_SCOPE_FINETUNE, ld_route_fine_tuning, BODY_JSON},
    {"GET", "/v1/fine_tuning/jobs", LD_SCOPE_FINETUNE, ld_route_fine_tuning, BODY_NONE},
    {"GET", "/v1/fine_tuning/jobs/", LD_SCOPE_FINETUNE, ld_route_fine_tuning_job, BODY_NONE},
    {"POST", "/v1/fine_tuning/jobs/", LD_SCOPE_FINETUNE, ld_route_fine_tuning_job, BODY_JSON},
    {"GET", "/", NULL, ld_route_ui, BODY_NONE}, /* the web UI (it asks for a key itself) */
    {"GET", "/ui/", NULL, ld_route_ui, BODY_NONE},
};
enum { N_ROUTES = sizeof routes / sizeof routes[0] };

const char *ld_route_path(int i) {
    return i >= 0 && i < N_ROUTES ? routes[i].path : "other";
}
int ld_route_count(void) {
    return N_ROUTES;
}

static bool path_matches(const char *pattern, const char *url) {
    size_t n = strlen(pattern);
    if (n == 1) return !strcmp(url, "/");
    if (pattern[n - 1] == '/') return !strncmp(url, pattern, n) && url[n];
    return !strcmp(url, pattern);
}

/* ---- logging ------------------------------------------------------------------------------ */

void ld_server_log(ld_server *s, ld_log_level level, const char *fmt, ...) {
    if (!s->log) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->log_mu);
    s->log(s->log_user, level, line);
    pthread_mutex_unlock(&s->log_mu);
}

static void log_thunk(void *user, ld_log_level level, const char *msg) {
    ld_server_log(user, level, "%s", msg);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    ld_server *s = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = 0;
    ld_server_log(s, LD_LOG_DEBUG, "http: %s", line);
}

/* ---- responses ------------------------------------------------------------------------------ */

static void finish_status(ld_http *h, int status) {
    h->status = status;
}

static int queue(ld_http *h, int status, struct MHD_Response *r, const char *content_type) {
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", content_type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (status == 429 || status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    int ret = MHD_queue_response(h->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    finish_status(h, status);
    return ret;
}

int ld_http_text(ld_http *h, int status, const char *content_type, const char *text, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
    return queue(h, status, r, content_type);
}

int ld_http_static(ld_http *h, const char *content_type, const void *data, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                            "img-src 'self' data:; frame-ancestors 'none'");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return queue(h, 200, r, content_type);
}

int ld_http_json(ld_http *h, int status, cJSON *body) {
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!text) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
        return ld_http_text(h, 500, "application/json", oom, sizeof oom - 1);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) free(text);
    return queue(h, status, r, "application/json");
}

int ld_http_error(ld_http *h, const ld_api_error *e) {
    cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(err, "message", e->message);
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0]) cJSON_AddStringToObject(err, "param", e->param);
    else cJSON_AddNullToObject(err, "param");
    if (e->code[0]) cJSON_AddStringToObject(err, "code", e->code);
    else cJSON_AddNullToObject(err, "code");
    if (e->http >= 500) ld_server_log(h->srv, LD_LOG_WARN, "%s %s: %d %s", h->method, h->url, e->http, e->message);
    pthread_mutex_lock(&h->srv->metrics.mu);
    if (e->http == 429) h->srv->metrics.rejected_429++;
    if (e->http == 503) h->srv->metrics.rejected_503++;
    pthread_mutex_unlock(&h->srv->metrics.mu);
    return ld_http_json(h, e->http ? e->http : 500, root);
}

static int fail(ld_http *h, int status, const char *param, const char *msg) {
    ld_api_error e;
    memset(&e, 0, sizeof e);
    ld_api_fail(&e, status, param, "%s", msg);
    return ld_http_error(h, &e);
}

void ld_http_new_id(ld_http *h, const char *prefix, char *out, size_t cap) {
    uint64_t n = __atomic_add_fetch(&h->srv->next_id, 1, __ATOMIC_RELAXED);
    snprintf(out, cap, "%s-%08llx%08llx", prefix, (unsigned long long)time(NULL), (unsigned long long)n);
}

bool ld_http_client_gone(ld_http *h) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(h->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pfd, 1, 0) <= 0) return false;
    if (pfd.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0; /* orderly shutdown; n > 0 is a pipelined request */
}

/* ---- server-sent events ------------------------------------------------------------------------ */

struct ld_sse {
    ld_server *srv;
    ld_http h;            /* a copy for client_gone (the connection outlives the response) */
    ld_srv_job *job;
    ld_pool_model *model;
    ld_sse_render render;
    void *user;
    char *buf;            /* rendered, not yet sent: buf[off..len) */
    size_t len, off;
    bool ended;           /* the last event has been rendered */
    bool closed;          /* sse_read ended the stream itself (sent, failed to render, or saw the client leave) */
    double last_write;
};

void *ld_sse_user(ld_sse *s) {
    return s->user;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    ld_sse *s = cls;
    for (;;) {
        if (s->off < s->len) {
            size_t n = s->len - s->off < max ? s->len - s->off : max;
            memcpy(out, s->buf + s->off, n);
            s->off += n;
            s->last_write = ld_time_now();
            return (ssize_t)n;
        }
        if (s->ended) {
            s->closed = true;
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        free(s->buf);
        s->buf = NULL, s->len = s->off = 0;
        if (!s->render(s, s->job, &s->buf, &s->len, &s->ended)) {
            s->closed = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (s->len || s->ended) continue;
        /* nothing new: wait for the engine, watching the client */
        ld_srv_job_wait_progress(s->job, 0.25);
        if (ld_http_client_gone(&s->h)) {
            pthread_mutex_lock(&s->srv->metrics.mu);
            s->srv->metrics.disconnects++;
            pthread_mutex_unlock(&s->srv->metrics.mu);
            s->closed = true;
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (ld_time_now() - s->last_write > 10) { /* keep proxies from timing the stream out */
            static const char ka[] = ": keep-alive\n\n";
            memcpy(out, ka, sizeof ka - 1 < max ? sizeof ka - 1 : max);
            s->last_write = ld_time_now();
            return (ssize_t)(sizeof ka - 1 < max ? sizeof ka - 1 : max);
        }
    }
}

static void sse_free(void *cls) {
    ld_sse *s = cls;
    /* freed before sse_read ended it: libmicrohttpd dropped the response because a write to
     * the client failed (a client that leaves while tokens are still coming fast, so that
     * sse_read never waited and looked) */
    if (!s->closed) {
        pthread_mutex_lock(&s->srv->metrics.mu);
        s->srv->metrics.disconnects++;
        pthread_mutex_unlock(&s->srv->metrics.mu);
    }
    if (s->model) ld_srv_job_cancel(s->model->eng, s->job); /* no-op when it finished */
    ld_srv_job_release(s->job);
    ld_pool_release(s->srv->pool, s->model);
    free(s->buf);
    free(s);
}

int ld_http_sse(ld_http *h, ld_srv_job *j, ld_pool_model *m, ld_sse_render render, void *render_user) {
    ld_sse *s = calloc(1, sizeof *s);
    if (!s) {
        ld_srv_job_cancel(m->eng, j);
        ld_srv_job_release(j);
        ld_pool_release(h->srv->pool, m);
        return fail(h, 500, NULL, "out of memory");
    }
    s->srv = h->srv, s->h = *h, s->job = j, s->model = m, s->render = render, s->user = render_user;
    s->last_write = ld_time_now();
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
    if (!r) {
        sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    return queue(h, 200, r, "text/event-stream");
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

typedef struct conn_state {
    ld_http h;
    char *body;
    size_t len, cap;
    bool too_big, answered;
} conn_state;

/* The scope the request's key grants, "" when the server is open; false (answered) when it
 * has no valid key for `scope`. */
static bool authorise(ld_http *h, const char *scope) {
    /* keys are required as soon as the registry has had one (created while serving, too;
     * revoking every key does not open the server again) */
    if (!scope) return true;
    if (!h->srv->reg || ld_registry_key_count(h->srv->reg, true) == 0) {
        if (h->srv->open_allowed) return true;
        fail(h, 401, NULL, "This server needs API keys and has none yet (liandan keys create).");
        return false;
    }
    const char *auth = MHD_lookup_connection_value(h->conn, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7)) {
        fail(h, 401, NULL, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' (liandan keys create).");
        return false;
    }
    const char *key = auth + 7;
    while (*key == ' ') key++;
    ld_key_check r = ld_registry_key_check(h->srv->reg, key, scope, h->key_scope, sizeof h->key_scope);
    if (r == LD_KEY_OK) return true;
    if (r == LD_KEY_WRONG_SCOPE) {
        char msg[160];
        snprintf(msg, sizeof msg, "This API key is scoped to %s; this route needs %s.", h->key_scope, scope);
        fail(h, 403, NULL, msg);
    } else {
        ld_api_error e;
        memset(&e, 0, sizeof e);
        snprintf(e.code, sizeof e.code, "invalid_api_key");
        ld_api_fail(&e, 401, NULL, "Incorrect API key provided."); /* never echo the key */
        ld_http_error(h, &e);
    }
    return false;
}

static size_t body_limit(const ld_server *s, int route) {
    return routes[route].body == BODY_FILE ? s->p.limits.max_file_bytes : s->p.limits.max_body_bytes;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    ld_server *srv = cls;
    conn_state *cs = *con_cls;
    if (!cs) { /* the headers are in: find the route, check the key and the declared size */
        if (!(cs = calloc(1, sizeof *cs))) return MHD_NO;
        *con_cls = cs;
        cs->h.srv = srv, cs->h.conn = conn, cs->h.url = url, cs->h.method = method, cs->h.t0 = ld_time_now();
        cs->h.route = -1;
        bool path_known = false;
        for (int i = 0; i < N_ROUTES; i++)
            if (path_matches(routes[i].path, url)) {
                path_known = true;
                if (!strcmp(routes[i].method, method)) cs->h.route = i;
            }
        if (cs->h.route < 0) {
            cs->answered = true;
            if (path_known) return fail(&cs->h, 405, NULL, "method not allowed on this route") == MHD_YES ? MHD_YES : MHD_NO;
            char msg[300];
            snprintf(msg, sizeof msg, "Unknown request URL: %s %.200s", method, url);
            return fail(&cs->h, 404, NULL, msg) == MHD_YES ? MHD_YES : MHD_NO;
        }
        if (!authorise(&cs->h, routes[cs->h.route].scope)) return cs->answered = true, MHD_YES;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > body_limit(srv, cs->h.route)) cs->too_big = true;
        return MHD_YES;
    }
    if (*upload_size) { /* body bytes */
        if (!cs->answered && !cs->too_big && routes[cs->h.route].body) {
            if (cs->len + *upload_size > body_limit(srv, cs->h.route)) cs->too_big = true;
            else {
                if (cs->len + *upload_size + 1 > cs->cap) {
                    size_t cap = cs->cap ? cs->cap : 4096;
                    while (cap < cs->len + *upload_size + 1) cap *= 2;
                    char *b = realloc(cs->body, cap);
                    if (!b) return MHD_NO;
                    cs->body = b, cs->cap = cap;
                }
                memcpy(cs->body + cs->len, upload, *upload_size);
                cs->len += *upload_size;
                cs->body[cs->len] = 0;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->answered) return MHD_YES;
    cs->answered = true;
    if (cs->too_big) {
        char msg[160];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", body_limit(srv, cs->h.route));
        return fail(&cs->h, 413, NULL, msg) == MHD_YES ? MHD_YES : MHD_NO;
    }
    cs->h.body = cs->body ? cs->body : "", cs->h.body_len = cs->len;
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = 1;
    if (ld_ctx_new(&cp, &cs->h.ctx)) return MHD_NO;
    int r = routes[cs->h.route].fn(&cs->h);
    return r == MHD_YES ? MHD_YES : MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)conn, (void)toe;
    ld_server *srv = cls;
    conn_state *cs = *con_cls;
    if (!cs) return;
    double dt = ld_time_now() - cs->h.t0;
    pthread_mutex_lock(&srv->metrics.mu);
    if (cs->h.route >= 0 && cs->h.status) {
        ld_route_stats *rm = &srv->metrics.routes[cs->h.route];
        rm->by_class[cs->h.status / 100 < 6 ? cs->h.status / 100 : 5]++;
        ld_histogram_add(&rm->latency, dt);
    }
    pthread_mutex_unlock(&srv->metrics.mu);
    ld_ctx_free(cs->h.ctx);
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx, enum MHD_ConnectionNotificationCode t) {
    (void)c, (void)socket_ctx;
    ld_server *srv = cls;
    pthread_mutex_lock(&srv->metrics.mu);
    srv->metrics.connections += t == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1;
    pthread_mutex_unlock(&srv->metrics.mu);
}

/* ---- start and stop ---------------------------------------------------------------------------------- */

ld_server_params ld_server_default_params(void) {
    ld_server_params p;
    memset(&p, 0, sizeof p);
    p.host = "127.0.0.1", p.port = 8080, p.max_seqs = 16, p.max_queue = 64;
    p.limits = (ld_serve_limits){.max_body_bytes = 1 << 20, .max_header_bytes = 32 << 10, .max_prompt_tokens = 0,
                                 .max_new_tokens = 4096, .max_connections = 256, .timeout_s = 60, .max_choices = 8,
                                 .max_prompts = 32, .max_file_bytes = (size_t)64 << 20};
    return p;
}

static bool is_loopback(const char *host) {
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") || !strcmp(host, "::1") || !strncmp(host, "127.", 4);
}

ld_status ld_server_start(ld_ctx *ctx, const ld_server_params *params, ld_server **out) {
    *out = NULL;
    if (!params || !params->models_dir) return ld_error(ctx, LD_ERR_INVALID_ARG, "serve: a models directory is required");
    ld_server *s = calloc(1, sizeof *s);
    if (!s) return ld_error(ctx, LD_ERR_NOMEM, "serve: out of memory");
    s->p = *params;
    snprintf(s->host, sizeof s->host, "%s", params->host ? params->host : "127.0.0.1");
    snprintf(s->models_dir, sizeof s->models_dir, "%s", params->models_dir);
    s->p.host = s->host, s->p.models_dir = s->models_dir;
    s->log = params->log, s->log_user = params->log_user;
    pthread_mutex_init(&s->log_mu, NULL);
    ld_metrics_init(&s->metrics, N_ROUTES);
    ld_status st = LD_OK;
    if (params->registry) {
        if ((st = ld_registry_open(ctx, params->registry, &s->reg))) goto fail;
    }
    bool have_keys = s->reg && ld_registry_key_count(s->reg, true) > 0;
    s->open_allowed = is_loopback(s->host) || params->allow_open_remote; /* may run open */
    if (!have_keys && !s->open_allowed) {
        st = ld_error(ctx, LD_ERR_INVALID_ARG,
                      "serve: refusing to listen on %s without API keys (create one with `liandan keys create`, or "
                      "pass --insecure to serve an open API on the network)",
                      s->host);
        goto fail;
    }
    ld_pool_params pp = {.root = s->models_dir, .threads = params->threads, .memory_budget = params->memory_budget,
                         .batch = ld_lm_batch_default_params(), .quantize = LD_DTYPE_COUNT, .log = log_thunk, .log_user = s};
    pp.batch.max_seqs = params->max_seqs > 0 ? params->max_seqs : 16;
    pp.batch.max_queue = params->max_queue > 0 ? params->max_queue : 64;
    pp.batch.max_len = params->context;
    pp.batch.kv_bytes = params->kv_bytes;
    pp.batch.kv_type_k = params->kv_type_k, pp.batch.kv_type_v = params->kv_type_v;
    if (pp.batch.step_tokens < pp.batch.max_seqs) pp.batch.step_tokens = pp.batch.max_seqs;
    if (params->quantize && (pp.quantize = ld_dtype_from_name(params->quantize)) == LD_DTYPE_COUNT) {
        st = ld_error(ctx, LD_ERR_INVALID_ARG, "serve: unknown quantization type '%s'", params->quantize);
        goto fail;
    }
    if ((st = ld_pool_new(ctx, &pp, &s->pool))) goto fail;
    if (params->job_worker && s->reg && (st = ld_jobs_start(ctx, s, params->job_worker, params->registry, &s->jobs)))
        goto fail;
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    const char *h = !strcmp(s->host, "localhost") ? "127.0.0.1" : s->host;
    if (strchr(h, ':')) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&addr;
        a6->sin6_family = AF_INET6, a6->sin6_port = htons((uint16_t)params->port);
        if (inet_pton(AF_INET6, h, &a6->sin6_addr) != 1) {
            st = ld_error(ctx, LD_ERR_INVALID_ARG, "serve: '%s' is not an IP address", s->host);
            goto fail;
        }
        flags |= MHD_USE_IPv6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&addr;
        a4->sin_family = AF_INET, a4->sin_port = htons((uint16_t)params->port);
        if (inet_pton(AF_INET, h, &a4->sin_addr) != 1) {
            st = ld_error(ctx, LD_ERR_INVALID_ARG, "serve: '%s' is not an IPv4 or IPv6 address", s->host);
            goto fail;
        }
    }
    const ld_serve_limits *L = &params->limits;
    s->daemon = MHD_start_daemon(flags, (uint16_t)params->port, NULL, NULL, on_request, s,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)(L->max_connections > 0 ? L->max_connections : 256),
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(L->timeout_s > 0 ? L->timeout_s : 60),
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(L->max_header_bytes ? L->max_header_bytes : 32768),
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                                 MHD_OPTION_END);
    if (!s->daemon) {
        st = ld_error(ctx, LD_ERR_IO, "serve: cannot listen on %s port %d (%s)", s->host, params->port,
                      errno ? strerror(errno) : "in use, or not an address of this machine");
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : params->port;
    if (!have_keys)
        ld_server_log(s, LD_LOG_WARN, "serve: no API keys: every route is open to whoever can reach %s:%d", s->host, s->port);
    *out = s;
    return LD_OK;
fail:
    ld_jobs_stop(s->jobs);
    ld_pool_free(s->pool);
    ld_registry_close(s->reg);
    ld_metrics_free(&s->metrics);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
    return st;
}

int ld_server_port(const ld_server *s) {
    return s ? s->port : 0;
}

void ld_server_stop(ld_server *s) {
    if (!s) return;
    MHD_quiesce_daemon(s->daemon); /* no new connections */
    ld_pool_halt(s->pool);         /* running requests end (cancelled), their streams close */
    MHD_stop_daemon(s->daemon);    /* joins the connection threads */
    ld_jobs_stop(s->jobs);         /* a running worker checkpoints; its job resumes at the next start */
    ld_pool_free(s->pool);
    ld_registry_close(s->reg);
    ld_metrics_free(&s->metrics);
    pthread_mutex_destroy(&s->log_mu);
    free(s);
}

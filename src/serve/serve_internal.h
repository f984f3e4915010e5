/* serve/serve_internal.h — what the server's files share: the server, one HTTP request as
 * the route handlers see it, responses, metrics. The HTTP layer (http.c) owns connections
 * and dispatch; route handlers (routes_*.c) are thin: parse, hand work to an engine, shape
 * the answer. */
#ifndef LD_SERVE_INTERNAL_H
#define LD_SERVE_INTERNAL_H

#include <pthread.h>

#include "liandan/serve.h"
#include "serve/api_request.h"
#include "serve/model_pool.h"

struct cJSON;
struct MHD_Connection;
struct MHD_Daemon;

/* ---- metrics (metrics.c) ---------------------------------------------------------------- */
enum { LD_METRIC_BUCKETS = 14 };
typedef struct ld_histogram {
    uint64_t counts[LD_METRIC_BUCKETS + 1]; /* per bucket, the last is +Inf */
    double sum;
    uint64_t n;
} ld_histogram;

typedef struct ld_route_metrics {
    uint64_t by_class[6]; /* responses by status class: [2] = 2xx ... [5] = 5xx */
    ld_histogram latency;
} ld_route_stats;

typedef struct ld_metrics {
    pthread_mutex_t mu;
    ld_route_stats *routes; /* one per route of the table */
    int n_routes;
    ld_histogram ttft;        /* time to first token */
    uint64_t rejected_429, rejected_503, disconnects;
    int connections;
    double last_t;            /* for tokens/s between scrapes */
    int64_t last_generated;
    double tokens_per_s;
} ld_metrics;
void ld_metrics_init(ld_metrics *m, int n_routes);
void ld_metrics_free(ld_metrics *m);
void ld_histogram_add(ld_histogram *h, double v);
/* Prometheus text exposition of everything, into a malloc'd string. */
char *ld_metrics_render(struct ld_server *s);

/* ---- the server ------------------------------------------------------------------------- */
typedef struct ld_registry ld_registry;

struct ld_server {
    ld_server_params p;
    char host[256], models_dir[4096];
    struct MHD_Daemon *daemon;
    ld_pool *pool;
    ld_metrics metrics;
    ld_registry *reg;          /* API keys (NULL: open) */
    bool open_allowed;         /* with no active key, serve without keys (loopback or --insecure) */
    int port;
    pthread_mutex_t log_mu;
    ld_log_fn log;
    void *log_user;
    uint64_t next_id;          /* request ids */
    struct ld_jobs *jobs;      /* fine-tuning jobs (NULL: none) */
};
void ld_server_log(struct ld_server *s, ld_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- one request as a handler sees it ----------------------------------------------------- */
typedef struct ld_http {
    struct ld_server *srv;
    struct MHD_Connection *conn;
    const char *method, *url;
    const char *body;
    size_t body_len;
    int route;
    int status;           /* what was answered (for metrics) */
    double t0;
    ld_ctx *ctx;          /* scratch context of this request (JSON messages) */
    char key_scope[32];   /* the scope of the key that authorised it ("" = open server) */
} ld_http;

/* Responses (each queues exactly one answer; return what the MHD callback returns). */
int ld_http_json(ld_http *h, int status, struct cJSON *body); /* takes body */
int ld_http_text(ld_http *h, int status, const char *content_type, const char *text, size_t len);
int ld_http_error(ld_http *h, const ld_api_error *e);
/* A file of the web UI (static, never freed) with a strict content security policy. */
int ld_http_static(ld_http *h, const char *content_type, const void *data, size_t len);
/* Streams a job as server-sent events; `chunk` renders one event for the job's progress
 * (see routes_openai.c). Takes the job and model references. */
typedef struct ld_sse ld_sse;
typedef bool (*ld_sse_render)(ld_sse *s, struct ld_srv_job *j, char **out, size_t *len, bool *end);
int ld_http_sse(ld_http *h, struct ld_srv_job *j, ld_pool_model *m, ld_sse_render render, void *render_user);
void *ld_sse_user(ld_sse *s);
/* True when the client has closed its side of the connection. */
bool ld_http_client_gone(ld_http *h);
/* "cmpl-..." style ids. */
void ld_http_new_id(ld_http *h, const char *prefix, char *out, size_t cap);

/* The route table's size and the path of route i (metrics labels). */
int ld_route_count(void);
const char *ld_route_path(int i);

/* ---- fine-tuning jobs (jobs.c: the runner; job_worker.c: one job in its worker) ------------ */
typedef struct ld_jobs ld_jobs;
/* Starts the runner thread; jobs that were running go back to the queue. bin: the liandan
 * executable; registry: its path (for the worker). */
ld_status ld_jobs_start(ld_ctx *ctx, struct ld_server *s, const char *bin, const char *registry, ld_jobs **out);
/* Wakes the runner (a job was created). */
void ld_jobs_kick(ld_jobs *J);
/* Cancels job id (a running worker gets SIGTERM); false when it was already final. */
bool ld_jobs_cancel(ld_jobs *J, const char *id);
/* Stops a running worker (it checkpoints: the job resumes at the next start) and the thread. */
void ld_jobs_stop(ld_jobs *J);
/* Whether hp is an object of known hyperparameters with valid values; else a message. */
bool ld_job_hyper_check(const struct cJSON *hp, char *err, size_t cap);

/* Route handlers. */
int ld_route_models(ld_http *h);
int ld_route_model(ld_http *h);
int ld_route_generate(ld_http *h); /* completions and chat completions */
int ld_route_embeddings(ld_http *h);
/* /v1/embeddings of an image-text model (m->clip): out [r->n_inputs, *dim] (malloc'd) in
 * input order; *tokens the texts' tokens. serve/clip_embed.c */
ld_status ld_clip_embed_request(ld_pool_model *m, const ld_api_request *r, float **out, int64_t *dim, int64_t *tokens,
                                ld_api_error *e);
int ld_route_tokenize(ld_http *h);
int ld_route_detokenize(ld_http *h);
int ld_route_health(ld_http *h);
int ld_route_metrics(ld_http *h);
int ld_route_ui(ld_http *h);
int ld_route_files(ld_http *h);    /* POST (upload) and GET (list) /v1/files */
int ld_route_file(ld_http *h);     /* GET / DELETE /v1/files/{id}, GET /v1/files/{id}/content */
int ld_route_fine_tuning(ld_http *h);     /* POST (create) and GET (list) /v1/fine_tuning/jobs */
int ld_route_fine_tuning_job(ld_http *h); /* GET one, /events, /checkpoints; POST /cancel */

/* Files (routes_files.c): false (answered 501) when the server has no registry. */
bool ld_srv_need_registry(ld_http *h);
/* "file-" + 24 lowercase hex digits. */
bool ld_srv_file_id_ok(const char *id);
/* The stored path of file `id` and its sha256 (may be NULL); false when there is none. */
bool ld_srv_file_path(struct ld_server *s, const char *id, char *path, size_t cap, char sha[65]);

/* The prompt of a chat request as token ids, and the stop strings / ids the template implies.
 * The one place chat templates are applied (chat_render.c). */
typedef struct ld_chat_prompt {
    int32_t *ids;
    int64_t n;
    const char *stops[4];
    int n_stops;
    int32_t stop_ids[4];
    int n_stop_ids;
} ld_chat_prompt;
ld_status ld_srv_chat_prompt(ld_pool_model *m, const ld_api_request *r, ld_chat_prompt *out, ld_api_error *e);

#endif

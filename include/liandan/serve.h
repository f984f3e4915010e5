/* liandan/serve.h — `liandan serve`: an HTTP server with OpenAI's API for the models of a
 * directory (model directories and GGUF files), continuous batching per model, models loaded
 * on first use and evicted least-recently-used under a memory budget, API keys, metrics.
 *
 * Routes (docs/serving.md has the details): GET /v1/models, POST /v1/completions,
 * POST /v1/chat/completions (stream: server-sent events), POST /v1/embeddings, POST /tokenize,
 * POST /detokenize, GET /health, GET /metrics (Prometheus text). Errors use OpenAI's JSON
 * shape {"error": {"message", "type", "param", "code"}} with 4xx/5xx statuses.
 *
 * The server runs its own threads (libmicrohttpd's, one per connection, and one engine thread
 * per loaded model); the ld_ctx given to ld_server_start is used only for the start-up and
 * for log lines (which go through its callback, serialised). */
#ifndef LIANDAN_SERVE_H
#define LIANDAN_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"
#include "liandan/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hardening limits: requests past them get a 4xx with a message, never a crash. */
typedef struct ld_serve_limits {
    size_t max_body_bytes;      /* request body (default 1 MiB) */
    size_t max_header_bytes;    /* memory per connection for the request line and headers (default 32 KiB) */
    int64_t max_prompt_tokens;  /* per prompt, after templating (default: the model's context) */
    int64_t max_new_tokens;     /* the largest max_tokens accepted (default 4096) */
    int max_connections;        /* at once (default 256) */
    int timeout_s;              /* an idle or slow client is dropped after this (default 60) */
    int max_choices;            /* n (default 8) */
    int max_prompts;            /* prompts (or embedding inputs) in one request (default 32) */
    size_t max_file_bytes;      /* an uploaded file (POST /v1/files; default 64 MiB) */
} ld_serve_limits;

typedef struct ld_server_params {
    const char *models_dir;  /* model directories and *.gguf files, one per name (required) */
    const char *host;        /* listening address (default "127.0.0.1": loopback only) */
    int port;                /* 0 = any free port (ld_server_port tells which) */
    const char *registry;    /* SQLite registry (API keys; once it has had a key, every route but
                                /health needs one); NULL = none: every route is open */
    bool allow_open_remote;  /* permit a non-loopback host without API keys (default false) */
    int threads;             /* compute threads per model (0 = all cores) */
    size_t memory_budget;    /* bytes of loaded models + KV caches before the least recently used
                                idle model is evicted (0 = no limit: one model at a time stays) */
    int max_seqs;            /* sequences batched per model (default 16) */
    int max_queue;           /* requests waiting per model before 429 (default 64) */
    int64_t context;         /* tokens per sequence (0 = the model's, at most 2048) */
    size_t kv_bytes;         /* KV cache per model (0 = enough for max_seqs sequences of context) */
    ld_dtype kv_type_k, kv_type_v; /* the KV cache's key and value types: LD_F32 (default), LD_F16, LD_Q8_0 */
    const char *quantize;    /* run loaded F32 models' matrices as this type ("Q8_0", ...), NULL = as stored */
    ld_serve_limits limits;
    const char *job_worker;  /* the liandan executable, which runs fine-tuning jobs as
                                `job_worker job-worker ...` in a process of their own; NULL =
                                no fine-tuning jobs (the routes answer 501) */
    ld_log_fn log;           /* log lines of every thread (serialised); NULL = none */
    void *log_user;
} ld_server_params;
ld_server_params ld_server_default_params(void);

typedef struct ld_server ld_server;
/* Binds and starts serving. Errors: the models directory is missing or unreadable, the
 * address cannot be bound, a non-loopback host without keys (unless allow_open_remote). */
ld_status ld_server_start(ld_ctx *ctx, const ld_server_params *p, ld_server **out);
int ld_server_port(const ld_server *s);
/* Stops accepting, ends running requests (cancelled), stops a running fine-tuning worker
 * (it checkpoints; the job resumes at the next start), joins every thread, frees. */
void ld_server_stop(ld_server *s);

/* Runs fine-tuning job `job_id` of the registry: what the worker process the server starts
 * for a job (`liandan job-worker`) does. The job's training file and hyperparameters become a
 * fine-tuning config (its run directory is DIR/.liandan/jobs/ID/run); it trains, resuming from
 * the run's last checkpoint, writing each step's loss and ETA as job events and each
 * checkpoint as a job checkpoint; at the end the adapter (LoRA, prompt) or model (full) moves
 * to DIR/<name> and is registered as model "base:name" (or "name") with its lineage, and the
 * job succeeds. Errors fail the job with their message. When *stop becomes nonzero (a signal
 * handler may set it) the job checkpoints and this returns LD_ERR_INTERRUPTED, leaving the job
 * running (to resume), or LD_OK when the job was cancelled meanwhile. threads: 0 = all. */
ld_status ld_serve_job_work(ld_ctx *ctx, const char *models_dir, const char *registry, const char *job_id, int threads,
                            volatile int *stop);

#ifdef __cplusplus
}
#endif
#endif

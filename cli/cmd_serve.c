/* cli/cmd_serve.c — `liandan serve` (the HTTP API until Ctrl-C / SIGTERM) and `liandan keys`
 * (create, list and revoke API keys in the registry). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_model.h"
#include "liandan/registry.h"
#include "liandan/serve.h"

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void log_line(void *user, ld_log_level level, const char *msg) {
    (void)user;
    static const char *const prefix[] = {"debug: ", "", "warning: ", "error: "};
    if (level == LD_LOG_DEBUG && !getenv("LD_DEBUG")) return;
    char when[32];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%H:%M:%S", localtime(&t));
    fprintf(stderr, "liandan %s %s%s\n", when, prefix[level], msg);
}

/* The registry path for a models directory: DIR/.liandan/registry.db (created). */
static const char *default_registry(const char *models_dir, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/.liandan", models_dir);
    mkdir(buf, 0700);
    snprintf(buf, cap, "%s/.liandan/registry.db", models_dir);
    return buf;
}

static int cmd_serve(int argc, char **argv) {
    ld_server_params p = ld_server_default_params();
    const char *registry = NULL;
    int64_t budget_mb = 0, kv_mb = 0, body_kb = 1024, context = 0, file_mb = 64;
    int port = 8080, threads = 0, max_seqs = 16, max_queue = 64, max_conn = 256, timeout = 60;
    int64_t max_tokens = 4096;
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("models-dir", 0, &p.models_dir, "DIR", "the models: model directories and *.gguf files (required)"),
        LD_CLI_STRING("host", 0, &p.host, "ADDR", "listen address (loopback: this machine only)"),
        LD_CLI_INT("port", 0, &port, 0, 65535, "N", "port (0 = any free port, printed)"),
        LD_CLI_STRING("registry", 0, &registry, "FILE", "SQLite registry of keys and jobs (default DIR/.liandan/registry.db)"),
        LD_CLI_FLAG("insecure", 0, &p.allow_open_remote, "allow a non-loopback --host without API keys"),
        LD_CLI_THREADS(&threads),
        LD_CLI_INT64("memory-budget", 0, &budget_mb, 0, 1 << 30, "MB",
                     "unload least recently used idle models past this (0 = no limit)"),
        LD_CLI_INT("max-seqs", 0, &max_seqs, 1, 1024, "N", "sequences batched per model"),
        LD_CLI_INT("max-queue", 0, &max_queue, 1, 1 << 20, "N", "requests waiting per model before 429"),
        LD_CLI_INT64("context", 0, &context, 0, 1 << 20, "N", "tokens per sequence (0 = the model's, at most 2048)"),
        LD_CLI_INT64("kv-mb", 0, &kv_mb, 0, 1 << 30, "MB", "KV cache per model (0 = max-seqs sequences of --context)"),
        LD_CLI_KV_TYPES(&p.kv_type_k, &p.kv_type_v),
        LD_CLI_STRING("quantize", 0, &p.quantize, "T", "run F32 models' matrices as T (Q8_0, Q4_K, F16, ...)"),
        LD_CLI_INT64("max-body", 0, &body_kb, 1, 1 << 20, "KB", "request body limit"),
        LD_CLI_INT64("max-file", 0, &file_mb, 1, 1 << 20, "MB", "uploaded file limit (POST /v1/files)"),
        LD_CLI_INT64("max-tokens", 0, &max_tokens, 1, 1 << 20, "N", "largest max_tokens accepted"),
        LD_CLI_INT("max-connections", 0, &max_conn, 1, 1 << 16, "N", "connections at once"),
        LD_CLI_INT("timeout", 0, &timeout, 1, 86400, "S", "drop idle or slow clients after S seconds"),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "serve",
        .about = "Serves every model directory and *.gguf file in DIR over HTTP with OpenAI's API:\n"
                 "GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream: true for\n"
                 "server-sent events), POST /v1/embeddings, POST /tokenize, POST /detokenize, GET /health,\n"
                 "GET /metrics (Prometheus). Requests to one model are batched together (one forward pass\n"
                 "per step for all of them); models load on first use. API keys (liandan keys create) are\n"
                 "required once the registry has had any. docs/serving.md has the details.",
        .opts = opts};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return rc;
    if (!p.models_dir) return fprintf(stderr, "liandan serve: --models-dir is required (see --help)\n"), 2;
    p.port = port, p.threads = threads, p.max_seqs = max_seqs, p.max_queue = max_queue, p.context = context;
    p.memory_budget = (size_t)budget_mb << 20, p.kv_bytes = (size_t)kv_mb << 20;
    p.limits.max_file_bytes = (size_t)file_mb << 20;
    p.limits.max_body_bytes = (size_t)body_kb << 10, p.limits.max_new_tokens = max_tokens;
    p.limits.max_connections = max_conn, p.limits.timeout_s = timeout;
    char regbuf[4200];
    p.registry = registry ? registry : default_registry(p.models_dir, regbuf, sizeof regbuf);
    p.log = log_line;
    char self[4096];
    ssize_t n_self = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n_self > 0) self[n_self] = 0, p.job_worker = self; /* fine-tuning jobs run in `liandan job-worker` */
    ld_ctx *ctx = ld_cli_ctx(p.threads);
    ld_server *s = NULL;
    if (ld_server_start(ctx, &p, &s)) {
        rc = ld_cli_fail(ctx, "serve");
        ld_ctx_free(ctx);
        return rc;
    }
    fprintf(stderr, "liandan serve: listening on http://%s:%d (models from %s; Ctrl-C stops)\n",
            strchr(p.host, ':') ? "[::1]" : p.host, ld_server_port(s), p.models_dir);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    while (!stop_requested) pause();
    fprintf(stderr, "liandan serve: stopping\n");
    ld_server_stop(s);
    ld_ctx_free(ctx);
    return 0;
}

/* ---- keys ---------------------------------------------------------------------------------- */

static void print_key(void *user, const ld_key_info *k) {
    (void)user;
    char when[32] = "never";
    time_t c = (time_t)k->created;
    char created[32];
    strftime(created, sizeof created, "%Y-%m-%d %H:%M", localtime(&c));
    if (k->last_used > 0) {
        time_t u = (time_t)k->last_used;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&u));
    }
    printf("%-4lld %-20s %-13s %-10s %-17s %-17s %s\n", (long long)k->id, k->name, k->prefix, k->scope, created, when,
           k->revoked ? "revoked" : "active");
}

static int cmd_keys(int argc, char **argv) {
    const char *dir = NULL, *registry = NULL, *scope = LD_SCOPE_INFERENCE;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("models-dir", 0, &dir, "DIR", "the served directory (its registry: DIR/.liandan/registry.db)"),
        LD_CLI_STRING("registry", 0, &registry, "FILE", "the registry file instead"),
        LD_CLI_STRING("scope", 0, &scope, "SCOPE", "create: inference, fine-tune or admin"),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "keys", .args = "create NAME | list | revoke ID|NAME",
        .about = "API keys for `liandan serve`. A key is printed once, when it is created; the registry\n"
                 "stores only its SHA-256 hash. Scopes: inference (the models), fine-tune (also files and\n"
                 "fine-tuning jobs), admin (everything).",
        .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 2};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return rc;
    const char *action = pos.v[0], *arg = pos.n > 1 ? pos.v[1] : NULL;
    bool create = !strcmp(action, "create"), list = !strcmp(action, "list"), revoke = !strcmp(action, "revoke");
    rc = !create && !list && !revoke ? (fprintf(stderr, "liandan keys: '%s' is not create, list or revoke\n", action), 2)
         : (create || revoke) && !arg ? (fprintf(stderr, "liandan keys %s: which key? (see --help)\n", action), 2)
         : list && arg                ? (fprintf(stderr, "liandan keys list: unexpected argument '%s'\n", arg), 2)
         : !dir && !registry          ? (fprintf(stderr, "liandan keys: give --models-dir DIR or --registry FILE\n"), 2)
                                      : 0;
    if (rc) return ld_cli_parse_free(&spec), rc;
    char regbuf[4200];
    if (!registry) {
        struct stat sb;
        if (stat(dir, &sb) || !S_ISDIR(sb.st_mode))
            return fprintf(stderr, "liandan keys: %s is not a directory\n", dir), ld_cli_parse_free(&spec), 1;
        registry = default_registry(dir, regbuf, sizeof regbuf);
    }
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_registry *r = NULL;
    rc = 0;
    if (ld_registry_open(ctx, registry, &r)) rc = ld_cli_fail(ctx, "keys");
    else if (create) {
        char key[64];
        int64_t id;
        if (ld_registry_key_create(r, arg, scope, key, sizeof key, &id)) rc = ld_cli_fail(ctx, "keys create");
        else {
            printf("%s\n", key);
            fprintf(stderr, "liandan keys: created key %lld '%s' (scope %s). It is shown only now: keep it.\n",
                    (long long)id, arg, scope);
        }
    } else if (list) {
        printf("%-4s %-20s %-13s %-10s %-17s %-17s %s\n", "id", "name", "prefix", "scope", "created", "last used", "state");
        if (ld_registry_key_list(r, print_key, NULL)) rc = ld_cli_fail(ctx, "keys list");
    } else if (ld_registry_key_revoke(r, arg)) {
        rc = ld_cli_fail(ctx, "keys revoke");
    } else {
        fprintf(stderr, "liandan keys: revoked '%s'\n", arg);
    }
    ld_registry_close(r);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

/* ---- job-worker ------------------------------------------------------------------------------ */

static volatile int worker_stop;
static void on_worker_signal(int sig) {
    (void)sig;
    worker_stop = 1;
}

static int cmd_job_worker(int argc, char **argv) {
    const char *dir = NULL, *registry = NULL;
    int threads = 0;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("models-dir", 0, &dir, "DIR", "the served directory (required)"),
        LD_CLI_STRING("registry", 0, &registry, "FILE", "the registry (default DIR/.liandan/registry.db)"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "job-worker", .args = "JOB_ID", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Runs one fine-tuning job of the registry: what `liandan serve` starts in a process of its own\n"
                 "for each job (POST /v1/fine_tuning/jobs). It trains, resuming from the job's last checkpoint,\n"
                 "records events and checkpoints, and registers the result. SIGTERM / Ctrl-C checkpoint and stop.\n"
                 "Exit status: 0 done (succeeded or cancelled), 3 stopped to resume later, 1 the job failed."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return rc;
    if (!dir) return fprintf(stderr, "liandan job-worker: --models-dir is required (see --help)\n"), ld_cli_parse_free(&spec), 2;
    char regbuf[4200];
    if (!registry) snprintf(regbuf, sizeof regbuf, "%s/.liandan/registry.db", dir), registry = regbuf;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_worker_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_status st = ld_serve_job_work(ctx, dir, registry, pos.v[0], threads, &worker_stop);
    rc = st == LD_OK ? 0 : st == LD_ERR_INTERRUPTED ? 3 : ld_cli_fail(ctx, "job-worker");
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_job_worker = {"job-worker", "run one fine-tuning job of serve's registry (serve starts it)",
                                          cmd_job_worker};
const ld_cli_command ld_cmd_serve = {"serve", "serve models over HTTP with OpenAI's API (batched, streaming)", cmd_serve};
const ld_cli_command ld_cmd_keys = {"keys", "create, list and revoke API keys for serve", cmd_keys};

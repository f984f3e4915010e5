/* cli/cmd_serve.c — `liandan serve` (the HTTP API until Ctrl-C / SIGTERM) and `liandan keys`
 * (create, list and revoke API keys in the registry). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
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

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: liandan serve --models-dir DIR [options]\n\n"
            "Serves every model directory and *.gguf file in DIR over HTTP with OpenAI's API:\n"
            "  GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream: true for\n"
            "  server-sent events), POST /v1/embeddings, POST /tokenize, POST /detokenize,\n"
            "  GET /health, GET /metrics (Prometheus). Requests to one model are batched together\n"
            "  (one forward pass per step for all of them); models load on first use.\n"
            "API keys (liandan keys create) are required once the registry has any.\n\n"
            "options:\n"
            "  --models-dir DIR      the models (required)\n"
            "  --host ADDR           listen address (default 127.0.0.1: this machine only)\n"
            "  --port N              port (default 8080; 0 = any free port, printed)\n"
            "  --registry FILE       SQLite registry of keys and jobs (default DIR/.liandan/registry.db)\n"
            "  --insecure            allow a non-loopback --host without API keys\n"
            "  --threads N           compute threads per model (default: all cores)\n"
            "  --memory-budget MB    unload least recently used idle models past this (default: no limit)\n"
            "  --max-seqs N          sequences batched per model (default 16)\n"
            "  --max-queue N         requests waiting per model before 429 (default 64)\n"
            "  --context N           tokens per sequence (default: the model's, at most 2048)\n"
            "  --kv-mb MB            KV cache per model (default: max-seqs sequences of --context)\n"
            "  --quantize T          run F32 models' matrices as T (Q8_0, Q4_K, F16, ...)\n"
            "  --max-body KB         request body limit (default 1024)\n"
            "  --max-tokens N        largest max_tokens accepted (default 4096)\n"
            "  --max-connections N   connections at once (default 256)\n"
            "  --timeout S           drop idle or slow clients after S seconds (default 60)\n");
}

static int cmd_serve(int argc, char **argv) {
    ld_server_params p = ld_server_default_params();
    const char *registry = NULL;
    char regbuf[4200];
    long v;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return serve_usage(stdout), 0;
        else if (!strcmp(o, "--insecure")) p.allow_open_remote = true;
        else if (!val) return fprintf(stderr, "liandan serve: %s needs a value (see --help)\n", o), 2;
        else if (!strcmp(o, "--models-dir")) p.models_dir = argv[++i];
        else if (!strcmp(o, "--host")) p.host = argv[++i];
        else if (!strcmp(o, "--registry")) registry = argv[++i];
        else if (!strcmp(o, "--quantize")) p.quantize = argv[++i];
        else {
            static const struct { const char *name; long min, max; } ints[] = {
                {"--port", 0, 65535}, {"--threads", 1, 4096}, {"--memory-budget", 1, 1L << 30}, {"--max-seqs", 1, 1024},
                {"--max-queue", 1, 1 << 20}, {"--context", 2, 1 << 20}, {"--kv-mb", 1, 1L << 30}, {"--max-body", 1, 1 << 20},
                {"--max-tokens", 1, 1 << 20}, {"--max-connections", 1, 1 << 16}, {"--timeout", 1, 86400}};
            size_t k = 0;
            while (k < sizeof ints / sizeof ints[0] && strcmp(ints[k].name, o)) k++;
            if (k == sizeof ints / sizeof ints[0])
                return fprintf(stderr, "liandan serve: unknown option '%s' (see --help)\n", o), 2;
            if (!ld_cli_parse_int(o, argv[++i], ints[k].min, ints[k].max, &v)) return 2;
            switch (k) {
            case 0: p.port = (int)v; break;
            case 1: p.threads = (int)v; break;
            case 2: p.memory_budget = (size_t)v << 20; break;
            case 3: p.max_seqs = (int)v; break;
            case 4: p.max_queue = (int)v; break;
            case 5: p.context = v; break;
            case 6: p.kv_bytes = (size_t)v << 20; break;
            case 7: p.limits.max_body_bytes = (size_t)v << 10; break;
            case 8: p.limits.max_new_tokens = v; break;
            case 9: p.limits.max_connections = (int)v; break;
            default: p.limits.timeout_s = (int)v; break;
            }
        }
    }
    if (!p.models_dir) return fprintf(stderr, "liandan serve: --models-dir is required (see --help)\n"), 2;
    p.registry = registry ? registry : default_registry(p.models_dir, regbuf, sizeof regbuf);
    p.log = log_line;
    ld_ctx *ctx = ld_cli_ctx(p.threads);
    ld_server *s = NULL;
    if (ld_server_start(ctx, &p, &s)) {
        int rc = ld_cli_fail(ctx, "serve");
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

static void keys_usage(FILE *f) {
    fprintf(f, "usage: liandan keys create NAME [--scope inference|fine-tune|admin] (--models-dir DIR | --registry FILE)\n"
               "       liandan keys list (--models-dir DIR | --registry FILE)\n"
               "       liandan keys revoke ID|NAME (--models-dir DIR | --registry FILE)\n\n"
               "API keys for `liandan serve`. A key is printed once, when it is created; the registry\n"
               "stores only its SHA-256 hash. Scopes: inference (the models), fine-tune (also files\n"
               "and fine-tuning jobs), admin (everything). Default scope: inference.\n");
}

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
    const char *action = NULL, *arg = NULL, *dir = NULL, *registry = NULL, *scope = LD_SCOPE_INFERENCE;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return keys_usage(stdout), 0;
        if ((!strcmp(o, "--models-dir") || !strcmp(o, "--registry") || !strcmp(o, "--scope")) && i + 1 >= argc)
            return fprintf(stderr, "liandan keys: %s needs a value\n", o), 2;
        if (!strcmp(o, "--models-dir")) dir = argv[++i];
        else if (!strcmp(o, "--registry")) registry = argv[++i];
        else if (!strcmp(o, "--scope")) scope = argv[++i];
        else if (o[0] == '-') return fprintf(stderr, "liandan keys: unknown option '%s' (see --help)\n", o), 2;
        else if (!action) action = o;
        else if (!arg) arg = o;
        else return fprintf(stderr, "liandan keys: unexpected argument '%s'\n", o), 2;
    }
    bool create = action && !strcmp(action, "create"), list = action && !strcmp(action, "list"),
         revoke = action && !strcmp(action, "revoke");
    if (!create && !list && !revoke) return keys_usage(stderr), 2;
    if ((create || revoke) && !arg) return fprintf(stderr, "liandan keys %s: which key? (see --help)\n", action), 2;
    if (!dir && !registry) return fprintf(stderr, "liandan keys: give --models-dir DIR or --registry FILE\n"), 2;
    char regbuf[4200];
    if (!registry) {
        struct stat sb;
        if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) return fprintf(stderr, "liandan keys: %s is not a directory\n", dir), 1;
        registry = default_registry(dir, regbuf, sizeof regbuf);
    }
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_registry *r = NULL;
    int rc = 0;
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
    return rc;
}

const ld_cli_command ld_cmd_serve = {"serve", "serve models over HTTP with OpenAI's API (batched, streaming)", cmd_serve};
const ld_cli_command ld_cmd_keys = {"keys", "create, list and revoke API keys for serve", cmd_keys};

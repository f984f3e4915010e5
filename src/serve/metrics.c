/* serve/metrics.c — the server's counters and histograms, and /metrics in Prometheus' text
 * format: requests by route and status class, latency and time-to-first-token histograms,
 * and per loaded model its queue, active sequences, KV pages and token counts. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve_internal.h"

static const double bounds[LD_METRIC_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

void ld_metrics_init(ld_metrics *m, int n_routes) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->routes = calloc((size_t)n_routes, sizeof *m->routes);
    m->n_routes = m->routes ? n_routes : 0;
    m->last_t = ld_time_now();
}

void ld_metrics_free(ld_metrics *m) {
    free(m->routes);
    pthread_mutex_destroy(&m->mu);
}

void ld_histogram_add(ld_histogram *h, double v) {
    int b = 0;
    while (b < LD_METRIC_BUCKETS && v > bounds[b]) b++;
    h->counts[b]++;
    h->sum += v, h->n++;
}

/* A growing string. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? 2 * b->cap : 8192;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return;
        b->p = q, b->cap = cap;
    }
}

static void histogram(sbuf *b, const char *name, const char *labels, const ld_histogram *h) {
    uint64_t cum = 0;
    for (int i = 0; i <= LD_METRIC_BUCKETS; i++) {
        cum += h->counts[i];
        if (i < LD_METRIC_BUCKETS) put(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "", bounds[i],
                                       (unsigned long long)cum);
        else put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "", (unsigned long long)cum);
    }
    put(b, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, h->sum, name, labels, (unsigned long long)h->n);
}

typedef struct model_rows {
    sbuf *b;
    int64_t generated;
    int loaded;
} model_rows;

static void model_metrics(void *user, ld_pool_model *m) {
    model_rows *r = user;
    ld_engine_stats st;
    if (!m->eng) { /* an image-text model: no engine, only its size */
        put(r->b, "liandan_model_bytes{model=\"%s\"} %zu\n", m->name, m->bytes);
        r->loaded++;
        return;
    }
    ld_engine_stats_get(m->eng, &st);
    const ld_lm_batch_stats *s = &st.batch;
    put(r->b, "liandan_queue_requests{model=\"%s\"} %d\n", m->name, s->queued);
    put(r->b, "liandan_active_sequences{model=\"%s\"} %d\n", m->name, s->active);
    put(r->b, "liandan_cached_sequences{model=\"%s\"} %d\n", m->name, s->cached);
    put(r->b, "liandan_kv_pages_used{model=\"%s\"} %lld\n", m->name, (long long)s->kv_pages_used);
    put(r->b, "liandan_kv_pages_total{model=\"%s\"} %lld\n", m->name, (long long)s->kv_pages_total);
    put(r->b, "liandan_kv_pages_cached{model=\"%s\"} %lld\n", m->name, (long long)s->kv_pages_cached);
    put(r->b, "liandan_forward_passes_total{model=\"%s\"} %lld\n", m->name, (long long)s->steps);
    put(r->b, "liandan_prompt_tokens_total{model=\"%s\"} %lld\n", m->name, (long long)s->prompt_tokens);
    put(r->b, "liandan_prompt_tokens_reused_total{model=\"%s\"} %lld\n", m->name, (long long)s->prompt_tokens_reused);
    put(r->b, "liandan_generated_tokens_total{model=\"%s\"} %lld\n", m->name, (long long)s->generated_tokens);
    put(r->b, "liandan_embedded_tokens_total{model=\"%s\"} %lld\n", m->name, (long long)st.embed_tokens);
    put(r->b, "liandan_model_bytes{model=\"%s\"} %zu\n", m->name, m->bytes);
    r->generated += s->generated_tokens;
    r->loaded++;
}

char *ld_metrics_render(ld_server *s) {
    sbuf b = {0};
    ld_metrics *m = &s->metrics;
    put(&b, "# HELP liandan_requests_total HTTP requests answered, by route and status class.\n"
            "# TYPE liandan_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (int r = 0; r < m->n_routes; r++)
        for (int c = 2; c <= 5; c++)
            put(&b, "liandan_requests_total{route=\"%s\",code=\"%dxx\"} %llu\n", ld_route_path(r), c,
                (unsigned long long)m->routes[r].by_class[c]);
    put(&b, "# HELP liandan_request_duration_seconds Time from the request's headers to its last byte.\n"
            "# TYPE liandan_request_duration_seconds histogram\n");
    for (int r = 0; r < m->n_routes; r++) {
        char labels[128];
        snprintf(labels, sizeof labels, "route=\"%s\"", ld_route_path(r));
        histogram(&b, "liandan_request_duration_seconds", labels, &m->routes[r].latency);
    }
    put(&b, "# HELP liandan_time_to_first_token_seconds Time from a generation request's arrival to its first token.\n"
            "# TYPE liandan_time_to_first_token_seconds histogram\n");
    histogram(&b, "liandan_time_to_first_token_seconds", "", &m->ttft);
    put(&b, "# TYPE liandan_rejected_total counter\nliandan_rejected_total{code=\"429\"} %llu\n"
            "liandan_rejected_total{code=\"503\"} %llu\n",
        (unsigned long long)m->rejected_429, (unsigned long long)m->rejected_503);
    put(&b, "# TYPE liandan_client_disconnects_total counter\nliandan_client_disconnects_total %llu\n",
        (unsigned long long)m->disconnects);
    put(&b, "# TYPE liandan_connections gauge\nliandan_connections %d\n", m->connections);
    pthread_mutex_unlock(&m->mu);
    put(&b, "# HELP liandan_queue_requests Requests waiting for a slot or KV pages, per model.\n"
            "# TYPE liandan_queue_requests gauge\n# TYPE liandan_active_sequences gauge\n"
            "# TYPE liandan_cached_sequences gauge\n# TYPE liandan_kv_pages_used gauge\n# TYPE liandan_kv_pages_total gauge\n"
            "# TYPE liandan_kv_pages_cached gauge\n"
            "# TYPE liandan_forward_passes_total counter\n# TYPE liandan_prompt_tokens_total counter\n"
            "# TYPE liandan_prompt_tokens_reused_total counter\n# TYPE liandan_generated_tokens_total counter\n"
            "# TYPE liandan_embedded_tokens_total counter\n# TYPE liandan_model_bytes gauge\n");
    model_rows rows = {.b = &b};
    ld_pool_each_loaded(s->pool, model_metrics, &rows);
    /* generated tokens per second since the previous scrape (of models still loaded) */
    pthread_mutex_lock(&m->mu);
    double t = ld_time_now(), dt = t - m->last_t;
    if (dt > 0.5) {
        int64_t d = rows.generated - m->last_generated;
        m->tokens_per_s = d > 0 ? (double)d / dt : 0;
        m->last_t = t, m->last_generated = rows.generated;
    }
    double tps = m->tokens_per_s;
    pthread_mutex_unlock(&m->mu);
    put(&b, "# HELP liandan_generated_tokens_per_second Generated tokens per second between the last two scrapes.\n"
            "# TYPE liandan_generated_tokens_per_second gauge\nliandan_generated_tokens_per_second %.3f\n", tps);
    put(&b, "# TYPE liandan_models_loaded gauge\nliandan_models_loaded %d\n", rows.loaded);
    return b.p;
}

/* train/grad_sync.c — bucketed gradient all-reduce overlapped with backward, and ZeRO-1's
 * parameter all-gather (train/grad_sync.h). */
#include "train/grad_sync.h"

#include <string.h>

#include "nn/nn_internal.h"

typedef struct gs_param {
    ld_tensor *x;
    int64_t off, n;  /* its range of the flat order */
    int bucket;
    int first_use;   /* node of its first use on the armed tape, -1: none */
} gs_param;

typedef struct gs_bucket {
    int64_t lo, hi;  /* flat range */
    int n_params, pending;
    int req;         /* in-flight all-reduce, -1: none */
    bool started;
} gs_bucket;

struct ld_grad_sync {
    ld_ctx *ctx;
    ld_comm *comm;
    ld_params *sets[4];
    int n_sets;
    bool overlap, armed;
    gs_param *p;
    int n_p;
    gs_bucket *b;
    int n_b;
    int *order;      /* parameter indices by first use, latest first (the order backward finishes them) */
    int next;        /* next entry of order not yet final */
    float *flat;     /* n_trainable floats */
    uint16_t *flat16; /* the same as bfloat16 when the sum is (ld_grad_sync_set_bf16), else NULL */
    int64_t n;
    int64_t *bounds; /* ZeRO-1 split, size + 1 entries */
    double t_first;  /* when the first bucket of the step started */
    ld_grad_sync_stats stats;
};

void ld_grad_sync_free(ld_grad_sync *g) {
    if (!g) return;
    for (int i = 0; i < g->n_b; i++)
        if (g->b[i].req >= 0) ld_comm_wait(g->comm, g->b[i].req);
    ld_free(g->ctx, g->p);
    ld_free(g->ctx, g->b);
    ld_free(g->ctx, g->order);
    ld_free(g->ctx, g->flat);
    ld_free(g->ctx, g->flat16);
    ld_free(g->ctx, g->bounds);
    ld_free(g->ctx, g);
}

ld_status ld_grad_sync_new(ld_ctx *ctx, ld_comm *comm, ld_params *const *sets, int n_sets, size_t bucket_bytes,
                           bool overlap, ld_grad_sync **out) {
    return ld_grad_sync_new_only(ctx, comm, sets, n_sets, bucket_bytes, overlap, NULL, NULL, out);
}

ld_status ld_grad_sync_new_only(ld_ctx *ctx, ld_comm *comm, ld_params *const *sets, int n_sets, size_t bucket_bytes,
                                bool overlap, bool (*keep)(void *user, const ld_tensor *x), void *keep_user,
                                ld_grad_sync **out) {
    if (!comm || !sets || n_sets < 1 || n_sets > 4 || !out) return LD_ERR_INVALID_ARG;
    *out = NULL;
    ld_grad_sync *g = ld_calloc(ctx, 1, sizeof *g);
    if (!g) return ld_ctx_status(ctx);
    g->ctx = ctx, g->comm = comm, g->n_sets = n_sets, g->overlap = overlap;
    int count = 0;
    for (int s = 0; s < n_sets; s++) g->sets[s] = sets[s], count += ld_params_count(sets[s]);
    int R = ld_comm_size(comm);
    if (!(g->p = ld_calloc(ctx, (size_t)count + 1, sizeof *g->p)) || !(g->b = ld_calloc(ctx, (size_t)count + 1, sizeof *g->b)) ||
        !(g->order = ld_calloc(ctx, (size_t)count + 1, sizeof *g->order)) ||
        !(g->bounds = ld_calloc(ctx, (size_t)R + 1, sizeof *g->bounds)))
        goto oom;
    for (int s = 0; s < n_sets; s++)
        for (int i = 0; i < ld_params_count(sets[s]); i++) {
            ld_tensor *x = ld_params_at(sets[s], i);
            if (!(x->flags & LD_TENSOR_TRAINABLE) || !x->grad || (keep && !keep(keep_user, x))) continue;
            g->p[g->n_p++] = (gs_param){.x = x, .off = g->n, .n = ld_tensor_numel(x), .first_use = -1};
            g->n += ld_tensor_numel(x);
        }
    if (!(g->flat = ld_alloc(ctx, (size_t)g->n * sizeof(float) + 64))) goto oom;
    /* buckets from the end of the flat order */
    size_t per = bucket_bytes / sizeof(float) > 0 ? bucket_bytes / sizeof(float) : 1;
    for (int i = g->n_p - 1; i >= 0;) {
        gs_bucket *b = &g->b[g->n_b];
        *b = (gs_bucket){.hi = g->p[i].off + g->p[i].n, .req = -1};
        while (i >= 0 && (b->n_params == 0 || (size_t)(b->hi - g->p[i].off) <= per)) {
            g->p[i].bucket = g->n_b, b->n_params++, b->lo = g->p[i].off;
            i--;
        }
        g->n_b++;
    }
    /* ZeRO-1: equal ranges, cut at multiples of 16 floats */
    for (int r = 0; r <= R; r++) {
        int64_t cut = (int64_t)((unsigned __int128)g->n * (unsigned)r / (unsigned)R);
        g->bounds[r] = r == R ? g->n : (cut / 16) * 16;
    }
    g->stats.n_buckets = g->n_b, g->stats.n_trainable = g->n;
    *out = g;
    return LD_OK;
oom:
    ld_grad_sync_free(g);
    return ld_ctx_status(ctx);
}

ld_status ld_grad_sync_set_bf16(ld_grad_sync *g, bool on) {
    if (!g || g->armed) return LD_ERR_INVALID_ARG;
    if (!on) {
        ld_free(g->ctx, g->flat16), g->flat16 = NULL;
        return LD_OK;
    }
    if (!g->flat16 && !(g->flat16 = ld_alloc(g->ctx, (size_t)g->n * sizeof(uint16_t) + 64))) return ld_ctx_status(g->ctx);
    return LD_OK;
}

/* Starts bucket k's all-reduce (its gradients copied into the flat buffer first, as bfloat16
 * when the sum is). */
static ld_status start_bucket(ld_grad_sync *g, int k) {
    gs_bucket *b = &g->b[k];
    if (b->started) return LD_OK;
    for (int i = 0; i < g->n_p; i++) {
        if (g->p[i].bucket != k) continue;
        if (g->flat16) ld_comm_to_bf16(g->flat16 + g->p[i].off, g->p[i].x->grad->data, g->p[i].n);
        else memcpy(g->flat + g->p[i].off, g->p[i].x->grad->data, (size_t)g->p[i].n * sizeof(float));
    }
    if (g->t_first < 0) g->t_first = ld_time_now();
    b->started = true;
    if (g->flat16) return ld_comm_iallreduce(g->comm, g->flat16 + b->lo, b->hi - b->lo, LD_COMM_BF16, &b->req);
    return ld_comm_iallreduce(g->comm, g->flat + b->lo, b->hi - b->lo, LD_COMM_F32, &b->req);
}

/* MPI moves data only inside its calls: poke every in-flight request. */
static ld_status progress(ld_grad_sync *g) {
    for (int k = 0; k < g->n_b; k++) {
        if (g->b[k].req < 0) continue;
        bool done = false;
        ld_status st = ld_comm_test(g->comm, g->b[k].req, &done);
        if (st) return st;
        if (done) g->b[k].req = -1;
    }
    return LD_OK;
}

static ld_status node_done(void *user, int node) {
    ld_grad_sync *g = user;
    ld_status st = LD_OK;
    while (g->next < g->n_p && g->p[g->order[g->next]].first_use >= node) {
        gs_bucket *b = &g->b[g->p[g->order[g->next++]].bucket];
        if (--b->pending == 0 && (st = start_bucket(g, (int)(b - g->b)))) return st;
    }
    return progress(g);
}

ld_status ld_grad_sync_arm(ld_grad_sync *g, ld_tape *tape) {
    if (!g || !tape) return LD_ERR_INVALID_ARG;
    for (int i = 0; i < g->n_p; i++) g->p[i].first_use = -1;
    for (int k = 0; k < g->n_b; k++) g->b[k].pending = g->b[k].n_params, g->b[k].started = false, g->b[k].req = -1;
    g->t_first = -1;
    g->armed = true;
    if (!g->overlap) return LD_OK;
    /* first use of each parameter = the lowest node that takes it as an input */
    int nodes = ld_tape_node_count(tape);
    for (int node = nodes - 1; node >= 0; node--)
        for (int k = 0; k < 3; k++) {
            const ld_tensor *x = ld_tape_node_input(tape, node, k);
            if (!x || !(x->flags & LD_TENSOR_TRAINABLE)) continue;
            for (int i = 0; i < g->n_p; i++)
                if (g->p[i].x == x) {
                    g->p[i].first_use = node;
                    break;
                }
        }
    /* order: by first use, latest first; parameters the tape never used come last (final at the end) */
    int n = 0;
    for (int i = 0; i < g->n_p; i++)
        if (g->p[i].first_use >= 0) g->order[n++] = i;
    for (int a = 1; a < n; a++) { /* insertion sort: a few hundred parameters, mostly in order already */
        int v = g->order[a], j = a;
        for (; j > 0 && g->p[g->order[j - 1]].first_use < g->p[v].first_use; j--) g->order[j] = g->order[j - 1];
        g->order[j] = v;
    }
    g->next = 0;
    ld_tape_set_node_done(tape, node_done, g);
    return LD_OK;
}

ld_status ld_grad_sync_finish(ld_grad_sync *g, ld_tape *tape) {
    if (!g || !g->armed) return LD_ERR_INVALID_ARG;
    if (tape) ld_tape_set_node_done(tape, NULL, NULL);
    g->armed = false;
    ld_status st = LD_OK;
    double t_end = ld_time_now(); /* backward is over: from here on, waiting is exposed */
    /* buckets not started yet (no overlap, or parameters the tape did not use) */
    for (int k = g->n_b - 1; k >= 0 && !st; k--) st = start_bucket(g, k);
    for (int k = 0; k < g->n_b; k++) {
        ld_status w = g->b[k].req >= 0 ? ld_comm_wait(g->comm, g->b[k].req) : LD_OK;
        g->b[k].req = -1;
        if (!st) st = w;
    }
    double now = ld_time_now();
    g->stats.exposed_s += now - t_end;
    g->stats.reduce_s += now - g->t_first;
    g->stats.steps++;
    if (st) return st;
    for (int i = 0; i < g->n_p; i++) {
        if (g->flat16) ld_comm_from_bf16(g->p[i].x->grad->data, g->flat16 + g->p[i].off, g->p[i].n);
        else memcpy(g->p[i].x->grad->data, g->flat + g->p[i].off, (size_t)g->p[i].n * sizeof(float));
    }
    return LD_OK;
}

const int64_t *ld_grad_sync_bounds(const ld_grad_sync *g) {
    return g ? g->bounds : NULL;
}

ld_status ld_grad_sync_gather_params(ld_grad_sync *g) {
    if (!g) return LD_ERR_INVALID_ARG;
    int R = ld_comm_size(g->comm), r = ld_comm_rank(g->comm);
    int64_t lo = g->bounds[r], hi = g->bounds[r + 1];
    /* the own range into the flat buffer */
    for (int i = 0; i < g->n_p; i++) {
        int64_t a = g->p[i].off > lo ? g->p[i].off : lo, b = g->p[i].off + g->p[i].n < hi ? g->p[i].off + g->p[i].n : hi;
        if (a < b) memcpy(g->flat + a, (const float *)g->p[i].x->data + (a - g->p[i].off), (size_t)(b - a) * sizeof(float));
    }
    int64_t *counts = ld_alloc(g->ctx, sizeof(int64_t) * (size_t)R);
    if (!counts) return ld_ctx_status(g->ctx);
    for (int q = 0; q < R; q++) counts[q] = g->bounds[q + 1] - g->bounds[q];
    double t0 = ld_time_now();
    ld_status st = ld_comm_allgatherv(g->comm, g->flat + lo, g->flat, counts, g->bounds, LD_COMM_F32);
    g->stats.gather_s += ld_time_now() - t0;
    ld_free(g->ctx, counts);
    if (st) return st;
    for (int i = 0; i < g->n_p; i++) memcpy(g->p[i].x->data, g->flat + g->p[i].off, (size_t)g->p[i].n * sizeof(float));
    for (int s = 0; s < g->n_sets; s++) ld_params_refresh_bf16(g->sets[s]);
    return LD_OK;
}

ld_grad_sync_stats ld_grad_sync_stats_get(const ld_grad_sync *g) {
    return g ? g->stats : (ld_grad_sync_stats){0};
}
void ld_grad_sync_stats_reset(ld_grad_sync *g) {
    if (!g) return;
    int nb = g->stats.n_buckets;
    int64_t n = g->stats.n_trainable;
    g->stats = (ld_grad_sync_stats){.n_buckets = nb, .n_trainable = n};
}

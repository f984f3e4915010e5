/* infer/lm_session.c — KV-cached inference for the causal LM. One eval call runs the model
 * on any set of (sequence, new tokens) segments in one batched pass: the linear layers see
 * all rows at once, attention runs per segment against that sequence's cache. The cache is
 * paged (infer/kv_pages.h): a sequence's keys and values live in fixed-size pages taken
 * from one pool as it grows, and full pages may be shared between sequences (prefix reuse). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/team.h"
#include "liandan/infer.h"
#include "liandan/quant.h"
#include "infer/kv_pages.h"
#include "models/adapter_internal.h"
#include "models/causal_lm_internal.h"

/* Rows of x from which a product with F16 weights runs the GEMM that widens them while
 * packing (gemm_f32_f16), and one with quantized weights that have no int8 GEMM on this CPU
 * (ld_qmatmul_has_gemm) dequantizes the weight and runs the F32 GEMM, instead of the dot
 * kernels (measured: bench infer). */
#define LD_DEQUANT_GEMM_MIN_M 32

/* Whether products of many rows with weights of type t go through an F32 copy. */
static bool dequant_for_gemm(ld_dtype t) {
    return t != LD_F16 && !ld_qmatmul_has_gemm(t, LD_DEQUANT_GEMM_MIN_M);
}

/* A weight as the session multiplies it: [N, K] rows of dtype (kn: [K, N], F32 only), or
 * with `packed`, the ld_qpack panels of such rows. rope_perm as in lm_form. */
typedef struct sess_form {
    const ld_tensor *w;
    ld_dtype dtype;
    const void *data;
    bool packed, kn, rope_perm;
} sess_form;

/* One of the KV cache's two pools (K or V): rows of Hkv*D values of the session's cache type
 * (F32, F16 or Q8_0: llama.cpp's -ctk / -ctv; kernel_type: the same as the attention
 * kernel's LD_KV_* row format). */
typedef struct kv_pool {
    ld_dtype type;
    int kernel_type;
    size_t row_bytes;
    uint8_t *data;
} kv_pool;

struct ld_lm_session {
    ld_lm *m;
    ld_ctx *ctx;
    const ld_kernels *k;
    int n_slots;
    int64_t max_len, max_tokens;
    int64_t *len;        /* tokens cached per slot */
    int64_t *seg_row;    /* [n_slots]: an eval's first row of each segment (attend_all) */
    int *par_seg;        /* [n_slots]: the segments attend_all runs in its parallel loop */
    ld_kv_pages kv;      /* page pool and per-slot page tables */
    kv_pool kc, vc;      /* K and V: [L][page][page_tokens] rows of Hkv*D values in their type */
    ld_arena *mem;       /* everything below, allocated once */
    float *x, *h, *q, *kk, *vv, *att, *o, *f1, *f2, *lse, *stat0, *stat1, *rows, *logits;
    float *att_page, *lse_page; /* one page's attention output and lse (merged into att, lse) */
    int64_t logit_rows;  /* rows the logits buffer holds (grown once for all_logits evals) */
    float *rope_freq;    /* head_dim / 2 rotation frequencies, or NULL for the plain theta form */
    float rope_mscale;
    /* the session's own forms of weights: from ld_lm_session_quantize, and the prepacked
     * panels (ld_qpack) of the model's or the session's matrices in packable types. Later
     * entries win; weights without one are read in the model's form. */
    sess_form *forms;
    int nq;
    float *perm_tmp; /* D floats for lm_rope_unpermute */
    bool quantized; /* ld_lm_session_quantize ran */
    void *qscratch;
    size_t qscratch_bytes;
    float *wf32; /* one F32 copy of a quantized matrix for products of many rows (see linear) */
    int64_t wf32_elems;
    int64_t evaluated; /* tokens run through eval so far */
    ld_lm_observer observe; /* ld_lm_session_set_observer */
    void *observe_user;
    /* LoRA adapters segments may run with (ld_lm_session_add_lora): a copy of each one's
     * matrices; row_lora[M] says which one each row of the eval runs with (0 = none) */
    struct sess_lora *loras;
    int n_lora;
    int *row_lora;
    int *slot_lora;  /* [n_slots]: each slot's (0 = none) */
    bool lora_rows;  /* the layers' products of this eval read row_lora (not the LM head's) */
    float *lora_tmp; /* [max_tokens, max_rank]: x A^T */
    int64_t max_rank;
    /* mixture of experts: the router's logits [T, E], each token's choices and gates [T, k],
     * the rows grouped by expert [T k, C] in and out, and where each choice's row is */
    float *moe_logits, *moe_gate, *moe_x, *moe_y;
    int32_t *moe_expert, *moe_row, *moe_token;
    int64_t *moe_offset;
};

/* One LoRA of a session: per target matrix w, A [r, K] and B [N, r], scaled by alpha / r. */
typedef struct sess_lora_mat {
    const ld_tensor *w;
    float *a, *b;
    int64_t N, K;
} sess_lora_mat;
typedef struct sess_lora {
    sess_lora_mat *mats;
    int n;
    int64_t r;
    float scale;
} sess_lora;

static int64_t kv_width(const ld_lm_config *c) {
    return c->n_kv_heads * ld_lm_head_dim(c);
}

/* Row `off` of page `page` in layer `layer` of pool c (K or V). */
static uint8_t *cache_at(const ld_lm_session *s, const kv_pool *c, int64_t layer, int32_t page, int64_t off) {
    return c->data + (size_t)((layer * s->kv.n_pages + page) * s->kv.page_tokens + off) * c->row_bytes;
}

/* Copies the first `rows` rows of page `from` into page `to`, K and V, every layer. */
static void copy_page(ld_lm_session *s, int32_t from, int32_t to, int64_t rows) {
    for (int64_t l = 0; l < s->m->cfg.n_layers; l++) {
        memcpy(cache_at(s, &s->kc, l, to, 0), cache_at(s, &s->kc, l, from, 0), (size_t)rows * s->kc.row_bytes);
        memcpy(cache_at(s, &s->vc, l, to, 0), cache_at(s, &s->vc, l, from, 0), (size_t)rows * s->vc.row_bytes);
    }
}

/* dst = n F32 rows of kvw values in the pool's type (Q8_0 widths were checked at session
 * creation to be whole blocks). A value an F16 / Q8_0 cache cannot hold (not finite, or
 * beyond F16's range) is an error naming the layer and position (pos: the first row's),
 * never a silently wrong cache. */
static ld_status kv_encode(const ld_lm_session *s, const kv_pool *c, uint8_t *dst, const float *rows, int64_t n,
                           int64_t l, int64_t pos) {
    const int64_t w = kv_width(&s->m->cfg);
    if (c->type == LD_F32) {
        memcpy(dst, rows, (size_t)(n * w) * sizeof(float));
        return LD_OK;
    }
    for (int64_t i = 0; i < n * w; i++)
        if (!(fabsf(rows[i]) <= (c->type == LD_F16 ? 65504.0f : FLT_MAX))) {
            char v[32];
            if (isnan(rows[i])) snprintf(v, sizeof v, "NaN");
            else snprintf(v, sizeof v, "%g", (double)rows[i]);
            return ld_error(s->ctx, LD_ERR_NUMERIC,
                            "session: layer %lld: the %s value %s at position %lld (column %lld) cannot be stored in "
                            "a KV cache of type %s",
                            (long long)l, c == &s->kc ? "key" : "value", v, (long long)(pos + i / w), (long long)(i % w),
                            ld_dtype_traits(c->type)->name);
        }
    if (c->type == LD_F16) return ld_convert(s->ctx, LD_F16, dst, LD_F32, rows, n * w);
    return ld_quantize(s->ctx, c->type, dst, rows, n, w, NULL);
}

/* Stores rows[n, kvw] as positions pos.. of slot's sequence in layer l of pool c (K or V). */
static ld_status cache_write(const ld_lm_session *s, const kv_pool *c, int64_t l, int slot, int64_t pos, const float *rows,
                             int64_t n) {
    const int64_t P = s->kv.page_tokens, w = kv_width(&s->m->cfg);
    for (int64_t j = 0; j < n;) {
        int64_t off = (pos + j) % P, take = n - j < P - off ? n - j : P - off;
        ld_status st = kv_encode(s, c, cache_at(s, c, l, ld_kv_pages_at(&s->kv, slot, pos + j), off), rows + j * w,
                                 take, l, pos + j);
        if (st) return st;
        j += take;
    }
    return LD_OK;
}

/* out/lse (rows [n, Hq, D] / [Hq, n]) = the softmax-weighted union of themselves and of a
 * second attention over other keys (out2/lse2): the log-sum-exp merge of flash decoding. */
static void attn_merge(float *out, float *lse, const float *out2, const float *lse2, int64_t n, int64_t Hq, int64_t D) {
    for (int64_t h = 0; h < Hq; h++)
        for (int64_t i = 0; i < n; i++) {
            float a = lse[h * n + i], b = lse2[h * n + i];
            if (b == -INFINITY) continue;
            float *o = out + (i * Hq + h) * D;
            const float *o2 = out2 + (i * Hq + h) * D;
            if (a == -INFINITY) {
                memcpy(o, o2, (size_t)D * sizeof(float));
                lse[h * n + i] = b;
                continue;
            }
            float mx = a > b ? a : b, wa = expf(a - mx), wb = expf(b - mx), inv = 1.0f / (wa + wb);
            for (int64_t d = 0; d < D; d++) o[d] = (o[d] * wa + o2[d] * wb) * inv;
            lse[h * n + i] = mx + logf(wa + wb);
        }
}

/* out[n, Hq*D] = causal attention of q[n, Hq*D] (positions pos..pos+n-1) over the slot's
 * cached keys 0..pos+n-1 in layer l: one kernel call per run of pages that are consecutive in
 * the pool (kv_pages.h places a growing sequence's pages so), merged. A sequence within one
 * run is one call (the same arithmetic as an unpaged cache). The layer's sliding window
 * (a page's keys are at positions p*P.., so q_offset = pos - p*P keeps the window's distances)
 * and the config's soft-cap and query scale go to every call; pages wholly before the window
 * of the first query are skipped. An F16 / Q8_0 cache is read in place by attention_fwd_kv
 * (the same arithmetic on the widened rows). */
static void attend(const ld_lm_session *s, int64_t l, int slot, int64_t pos, int64_t n, const float *q, float *out,
                   int64_t row) {
    const ld_lm_config *c = &s->m->cfg;
    const int64_t Hq = c->n_heads, D = ld_lm_head_dim(c), P = s->kv.page_tokens, total = pos + n;
    const bool llama = c->arch == LD_ARCH_LLAMA;
    const int64_t window = llama && ld_lm_layer_sliding(c, l) && c->sliding_window < s->max_len ? c->sliding_window : 0;
    ld_attn_shape as = {.B = 1, .Tq = n, .Hq = Hq, .Hkv = c->n_kv_heads, .D = D, .causal = true,
                        .scale = llama && c->query_scale > 0 ? c->query_scale : 1.0f / sqrtf((float)D),
                        .key_len = NULL, .window = window, .softcap = llama ? c->attn_softcap : 0.0f};
    const bool f32 = s->kc.type == LD_F32 && s->vc.type == LD_F32;
    bool first = true;
    for (int64_t p = 0, p1; p * P < total; p = p1) {
        p1 = p + 1;
        if (window > 0 && p1 * P <= pos + 1 - window && p1 * P < total) continue; /* every key before every query's window */
        /* the run of pages from p on that follow each other in the pool: one call */
        const int32_t page = ld_kv_pages_at(&s->kv, slot, p * P);
        while (p1 * P < total && ld_kv_pages_at(&s->kv, slot, p1 * P) == page + (p1 - p)) p1++;
        as.Tk = (p1 * P < total ? p1 * P : total) - p * P;
        as.q_offset = pos - p * P;
        float *o = first ? out : s->att_page + row * Hq * D, *lse = (first ? s->lse : s->lse_page) + row * Hq;
        const uint8_t *kr = cache_at(s, &s->kc, l, page, 0), *vr = cache_at(s, &s->vc, l, page, 0);
        if (f32) s->k->attention_fwd(o, lse, q, (const float *)kr, (const float *)vr, &as);
        else s->k->attention_fwd_kv(o, lse, q, kr, s->kc.kernel_type, vr, s->vc.kernel_type, &as);
        if (!first) attn_merge(out, s->lse + row * Hq, o, lse, n, Hq, D);
        first = false;
    }
}

/* Segments of at most this many tokens run their attention as pieces of one parallel loop:
 * one decode token's attention over a short cache is too small for the kernel to split
 * across the team (microseconds per page), but a step's 16 sequences of them are worth two
 * threads. Longer segments (prefill chunks) run one after another, each split by the kernel. */
#define LD_ATTN_SEG_PAR_MAX_N 16

typedef struct {
    const ld_lm_session *s;
    int64_t l, Q;
    const ld_lm_segment *segs;
    const float *q;
    float *out;
} attend_args;

static void attend_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const attend_args *a = arg;
    const ld_lm_session *s = a->s;
    for (int64_t j = lo; j < hi; j++) {
        const ld_lm_segment *g = &a->segs[s->par_seg[j]];
        const int64_t r = s->seg_row[s->par_seg[j]];
        attend(s, a->l, g->slot, s->len[g->slot], g->n, a->q + r * a->Q, a->out + r * a->Q, r);
    }
}

/* out[M, Hq*D] = every segment's attention (attend) of its rows of q[M, Hq*D] in layer l,
 * the keys and values of this eval already in the cache. Each segment's arithmetic is the
 * same whichever thread runs it. */
static void attend_all(ld_lm_session *s, int64_t l, const ld_lm_segment *segs, int n_segs, const float *q, float *out) {
    const ld_lm_config *c = &s->m->cfg;
    const int64_t Q = c->n_heads * ld_lm_head_dim(c);
    int np = 0;
    int64_t r = 0;
    for (int i = 0; i < n_segs; r += segs[i].n, i++) {
        s->seg_row[i] = r;
        if (segs[i].n <= LD_ATTN_SEG_PAR_MAX_N) s->par_seg[np++] = i;
        else attend(s, l, segs[i].slot, s->len[segs[i].slot], segs[i].n, q + r * Q, out + r * Q, r);
    }
    attend_args a = {s, l, Q, segs, q, out};
    ld_par_for(np, 1, attend_part, &a);
}

void ld_lm_session_free(ld_lm_session *s) {
    if (!s) return;
    for (int i = 0; i < s->n_lora; i++) {
        for (int j = 0; j < s->loras[i].n; j++) ld_free(s->ctx, s->loras[i].mats[j].a), ld_free(s->ctx, s->loras[i].mats[j].b);
        ld_free(s->ctx, s->loras[i].mats);
    }
    ld_free(s->ctx, s->loras), ld_free(s->ctx, s->row_lora), ld_free(s->ctx, s->slot_lora), ld_free(s->ctx, s->lora_tmp);
    ld_kv_pages_free(s->ctx, &s->kv);
    ld_arena_free(s->mem);
    ld_free(s->ctx, s);
}

/* Makes the activation scratch big enough for ld_qmatmul (and ld_qmatmul_packed) on
 * weights of `type`. */
static ld_status reserve_qscratch(ld_lm_session *s, ld_dtype type) {
    const ld_lm_config *c = &s->m->cfg;
    size_t need = 0, sz;
    int64_t widths[2] = {c->hidden_size, c->intermediate_size};
    for (int k = 0; k < 2; k++) {
        if (ld_qmatmul_scratch_size(s->ctx, type, s->max_tokens, widths[k], &sz) == LD_OK && sz > need) need = sz;
        if (ld_qpack_supported(type) && ld_qmatmul_packed_scratch_size(s->ctx, type, s->max_tokens, widths[k], &sz) == LD_OK &&
            sz > need)
            need = sz;
    }
    if (need > s->qscratch_bytes) {
        if (!(s->qscratch = ld_arena_alloc(s->mem, need))) return ld_ctx_status(s->ctx);
        s->qscratch_bytes = need;
    }
    return LD_OK;
}

/* The F32 expansion of a quantized matrix (see run_dequant_gemm) is done this many weights
 * at a time (8 MiB): a band of rows, not the whole matrix, so it costs little memory. */
#define LD_DEQUANT_BAND (1 << 21)

/* Makes the F32 weight scratch hold a band of the [N, K] matrix w (its rows, up to about
 * LD_DEQUANT_BAND weights). The LM head is never expanded: it is large, and a prefill needs
 * it for one row only. */
static ld_status reserve_wf32(ld_lm_session *s, int64_t N, int64_t K) {
    int64_t rows = LD_DEQUANT_BAND / K < 16 ? 16 : LD_DEQUANT_BAND / K, n = (rows < N ? rows : N) * K;
    if (n <= s->wf32_elems) return LD_OK;
    if (!(s->wf32 = ld_arena_alloc(s->mem, (size_t)n * sizeof(float)))) return ld_ctx_status(s->ctx);
    s->wf32_elems = n;
    return LD_OK;
}

/* [N, K] of weight w as the session multiplies it. */
static void weight_nk(const ld_lm_session *s, const ld_tensor *w, int64_t *N, int64_t *K) {
    const bool kn = s->m->cfg.arch == LD_ARCH_GPT2 && w != s->m->wte;
    *N = kn ? w->shape[1] : w->shape[0], *K = kn ? w->shape[0] : w->shape[1];
}

/* Records a new form of weight w: [N, K] rows (blocks or F16) `data` of type t, or with
 * pack set, the ld_qpack panels of those rows (allocated here; data is not kept). */
static ld_status add_form(ld_lm_session *s, const ld_tensor *w, ld_dtype t, const void *data, bool pack, bool rope_perm) {
    void *form = (void *)data;
    if (pack) {
        int64_t N, K;
        size_t bytes;
        weight_nk(s, w, &N, &K);
        ld_status st = ld_qpack_size(s->ctx, t, N, K, &bytes);
        if (!st && !(form = ld_arena_alloc(s->mem, bytes))) st = ld_ctx_status(s->ctx);
        if (!st) st = ld_qpack(s->ctx, t, data, N, K, form);
        if (st) return st;
    }
    s->forms[s->nq++] = (sess_form){w, t, form, pack, false, rope_perm};
    return LD_OK;
}

ld_lm_session_params ld_lm_session_default_params(void) {
    ld_lm_session_params p = {.n_slots = 1, .max_len = 0, .max_tokens = 0, .page_tokens = 0, .n_pages = 0, .kv_bytes = 0};
    return p;
}

/* Bytes of one cached row of type t (0 for a type the cache does not hold, or a Q8_0 row
 * that is not whole blocks). */
static size_t kv_row_bytes(const ld_lm_config *c, ld_dtype t) {
    size_t b = 0;
    if (!ld_lm_kv_type_ok(t) || ld_dtype_row_bytes(t, kv_width(c), &b)) return 0;
    return b;
}

/* The attention kernel's row format (LD_KV_*) of a cache type. */
static int kv_kernel_type(ld_dtype t) {
    return t == LD_F16 ? LD_KV_F16 : t == LD_Q8_0 ? LD_KV_Q8_0 : LD_KV_F32;
}

bool ld_lm_kv_type_ok(ld_dtype t) {
    return t == LD_F32 || t == LD_F16 || t == LD_Q8_0;
}

size_t ld_lm_kv_page_bytes_as(const ld_lm_config *c, int64_t page_tokens, ld_dtype k_type, ld_dtype v_type) {
    const size_t kb = kv_row_bytes(c, k_type), vb = kv_row_bytes(c, v_type);
    return kb && vb ? (size_t)(c->n_layers * page_tokens) * (kb + vb) : 0;
}

size_t ld_lm_kv_page_bytes(const ld_lm_config *c, int64_t page_tokens) {
    return ld_lm_kv_page_bytes_as(c, page_tokens, LD_F32, LD_F32);
}

ld_status ld_lm_session_new(ld_lm *m, int n_slots, int64_t max_len, int64_t max_tokens, ld_lm_session **out) {
    ld_lm_session_params p = ld_lm_session_default_params();
    p.n_slots = n_slots, p.max_len = max_len, p.max_tokens = max_tokens;
    return ld_lm_session_new_ex(m, &p, out);
}

ld_status ld_lm_session_new_ex(ld_lm *m, const ld_lm_session_params *p, ld_lm_session **out) {
    if (!m || !out || !p) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    *out = NULL;
    if (!lm_can_compute(m, "session")) return ld_ctx_status(ctx);
    const ld_lm_config *c = &m->cfg;
    const int n_slots = p->n_slots;
    const int64_t max_len = p->max_len, max_tokens = p->max_tokens;
    if (n_slots <= 0 || n_slots > 4096 || max_len <= 0 || max_len > c->max_position || max_tokens <= 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "session: need 1..4096 slots (got %d), length 1..%lld (got %lld), max_tokens > 0 (got %lld)",
                        n_slots, (long long)c->max_position, (long long)max_len, (long long)max_tokens);
    const ld_dtype kt = p->kv_type_k, vt = p->kv_type_v;
    for (int i = 0; i < 2; i++) {
        const ld_dtype t = i ? vt : kt;
        const ld_dtype_info *tr = ld_dtype_traits(t);
        if (!ld_lm_kv_type_ok(t))
            return ld_error(ctx, LD_ERR_DTYPE, "session: the %s cache cannot hold type %s (F32, F16 or Q8_0)", i ? "V" : "K",
                            tr ? tr->name : "?");
        if (!kv_row_bytes(c, t))
            return ld_error(ctx, LD_ERR_SHAPE, "session: a %s %s cache needs rows of whole %lld-value blocks (this model's are %lld)",
                            tr->name, i ? "V" : "K", (long long)tr->block_size, (long long)kv_width(c));
    }
    const int64_t P = p->page_tokens > 0 ? (p->page_tokens < max_len ? p->page_tokens : max_len) : max_len;
    const int64_t per_slot = (max_len + P - 1) / P;
    const size_t page_bytes = ld_lm_kv_page_bytes_as(c, P, kt, vt);
    int64_t n_pages = p->n_pages;
    if (n_pages <= 0 && p->kv_bytes > 0) n_pages = (int64_t)(p->kv_bytes / page_bytes);
    if (n_pages <= 0 && p->kv_bytes == 0) n_pages = (int64_t)n_slots * per_slot;
    if (n_pages <= 0 || n_pages > INT32_MAX)
        return ld_error(ctx, LD_ERR_LIMIT, "session: a KV budget of %zu bytes holds no page of %lld tokens (%zu bytes)",
                        p->kv_bytes, (long long)P, page_bytes);
    ld_lm_session *s = ld_calloc(ctx, 1, sizeof *s);
    if (!s) return ld_ctx_status(ctx);
    s->m = m, s->ctx = ctx, s->k = ld_kernels_get(LD_BACKEND_AUTO);
    s->n_slots = n_slots, s->max_len = max_len, s->max_tokens = max_tokens;
    const lm_family_info *fam = lm_family(c->family);
    int64_t C = c->hidden_size, I = c->intermediate_size, V = c->vocab_size, T = max_tokens;
    int64_t kvw = kv_width(c), Q = c->n_heads * ld_lm_head_dim(c);
    /* the fused projections' outputs: GPT-2's q|k|v, Phi-3's q|k|v and gate|up */
    int64_t fused = c->arch == LD_ARCH_GPT2 ? 3 * C : fam->fused_qkv ? Q + 2 * kvw : 1;
    /* experts: each token's k choices are rows of their own */
    const int64_t E = c->n_experts, Tk = T * (E ? c->n_experts_used : 1);
    if (E) I = lm_expert_width(c) > c->shared_expert_size ? lm_expert_width(c) : c->shared_expert_size;
    s->logit_rows = T < n_slots ? T : n_slots; /* one row per segment; grown for all_logits */
    s->kc = (kv_pool){kt, kv_kernel_type(kt), kv_row_bytes(c, kt), NULL};
    s->vc = (kv_pool){vt, kv_kernel_type(vt), kv_row_bytes(c, vt), NULL};
    size_t cache_rows, bytes = 0, kb = 0, vb = 0;
    if (ld_mul_size((size_t)(c->n_layers * n_pages), (size_t)P, &cache_rows) ||
        ld_mul_size(cache_rows, s->kc.row_bytes, &kb) || ld_mul_size(cache_rows, s->vc.row_bytes, &vb))
        return ld_lm_session_free(s), ld_error(ctx, LD_ERR_OVERFLOW, "session: KV cache size overflows");
    ld_status st = ld_kv_pages_init(ctx, &s->kv, n_slots, per_slot, (int32_t)n_pages, P);
    if (!st) st = ld_arena_new(ctx, 1 << 20, &s->mem);
    if (st) return ld_lm_session_free(s), st;
    if (!(s->kc.data = ld_arena_alloc(s->mem, kb)) || !(s->vc.data = ld_arena_alloc(s->mem, vb))) {
        ld_lm_session_free(s);
        return ld_error(ctx, LD_ERR_NOMEM, "session: cannot allocate a KV cache of %zu bytes", kb + vb);
    }
    const bool merged = per_slot > 1; /* calls per page whose outputs are merged */
    struct { float **p; size_t n; } bufs[] = {
        {&s->x, (size_t)(T * C)}, {&s->h, (size_t)(T * C)}, {&s->q, (size_t)(T * Q)}, {&s->kk, (size_t)(T * kvw)},
        {&s->vv, (size_t)(T * kvw)}, {&s->att, (size_t)(T * Q)}, {&s->o, (size_t)(T * fused)},
        {&s->f1, (size_t)(Tk * I * (fam->fused_gate_up ? 2 : 1))}, {&s->f2, (size_t)(Tk * I)},
        {&s->moe_logits, (size_t)(E ? T * E : 1)}, {&s->moe_gate, (size_t)(E ? Tk : 1)},
        {&s->moe_x, (size_t)(E ? Tk * C : 1)}, {&s->moe_y, (size_t)(E ? Tk * C : 1)},
        {&s->lse, (size_t)(T * c->n_heads)}, {&s->stat0, (size_t)(T * c->n_heads)},
        {&s->stat1, (size_t)T}, {&s->rows, (size_t)(T * C)}, {&s->logits, (size_t)(s->logit_rows * V)},
        {&s->att_page, (size_t)(merged ? T * Q : 1)}, {&s->lse_page, (size_t)(merged ? T * c->n_heads : 1)},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        size_t b;
        if (ld_mul_size(bufs[i].n, sizeof(float), &b) || !(*bufs[i].p = ld_arena_alloc(s->mem, b))) {
            ld_lm_session_free(s);
            return ld_error(ctx, LD_ERR_NOMEM, "session: cannot allocate %zu floats for buffer %zu", bufs[i].n, i);
        }
        bytes += b;
    }
    if (E && (!(s->moe_expert = ld_arena_alloc(s->mem, (size_t)Tk * sizeof(int32_t))) ||
              !(s->moe_row = ld_arena_alloc(s->mem, (size_t)Tk * sizeof(int32_t))) ||
              !(s->moe_token = ld_arena_alloc(s->mem, (size_t)Tk * sizeof(int32_t))) ||
              !(s->moe_offset = ld_arena_alloc(s->mem, (size_t)(E + 1) * sizeof(int64_t))))) {
        ld_lm_session_free(s);
        return ld_ctx_status(ctx);
    }
    if (!(s->len = ld_arena_alloc(s->mem, (size_t)n_slots * sizeof(int64_t))) ||
        !(s->seg_row = ld_arena_alloc(s->mem, (size_t)n_slots * sizeof(int64_t))) ||
        !(s->par_seg = ld_arena_alloc(s->mem, (size_t)n_slots * sizeof(int)))) {
        ld_lm_session_free(s);
        return ld_ctx_status(ctx);
    }
    memset(s->len, 0, (size_t)n_slots * sizeof(int64_t));
    const int np = ld_params_count(m->params);
    if (!(s->forms = ld_arena_alloc(s->mem, (size_t)np * 2 * sizeof *s->forms)) ||
        !(s->perm_tmp = ld_arena_alloc(s->mem, (size_t)ld_lm_head_dim(c) * sizeof(float)))) {
        ld_lm_session_free(s);
        return ld_ctx_status(ctx);
    }
    /* scaled RoPE: the frequencies for this session's context, once */
    if (c->arch == LD_ARCH_LLAMA && (c->rope_scaling.type != LD_ROPE_SCALING_NONE || m->rope_factors)) {
        if (!(s->rope_freq = ld_arena_alloc(s->mem, (size_t)(ld_lm_head_dim(c) / 2) * sizeof(float)))) {
            ld_lm_session_free(s);
            return ld_ctx_status(ctx);
        }
        lm_rope_freqs(m, max_len, s->rope_freq, &s->rope_mscale);
    }
    /* the model's matrices in types with a prepacked form are packed once; their bytes in
     * the file are then not needed (given back to the page cache) */
    for (int i = 0; i < m->n_forms; i++) {
        const lm_form *f = &m->forms[i];
        if (f->dtype == LD_F32) continue;
        if ((st = reserve_qscratch(s, f->dtype))) return ld_lm_session_free(s), st;
        if (ld_qpack_supported(f->dtype) && !(f->w == m->wte && f->w != m->lm_head)) {
            if ((st = add_form(s, f->w, f->dtype, f->data, true, f->rope_perm))) return ld_lm_session_free(s), st;
            size_t bytes = 0;
            if (!f->owned && f->w != m->wte && !ld_dtype_row_bytes(f->dtype, ld_tensor_numel(f->w), &bytes))
                lm_release(m, f->data, bytes);
        }
        int64_t N, K;
        weight_nk(s, f->w, &N, &K);
        if (max_tokens >= LD_DEQUANT_GEMM_MIN_M && f->w != m->lm_head && f->w != m->wte && dequant_for_gemm(f->dtype) &&
            (st = reserve_wf32(s, N, K)))
            return ld_lm_session_free(s), st;
    }
    ld_log(ctx, LD_LOG_DEBUG, "session: %zu MiB (KV cache %zu MiB, K %s, V %s)", (bytes + kb + vb) >> 20, (kb + vb) >> 20,
           ld_dtype_traits(kt)->name, ld_dtype_traits(vt)->name);
    *out = s;
    return LD_OK;
}

/* Whether the session can hold matrices in type t: F32 / F16 (converted) or a quantizable
 * type. */
static bool session_type_ok(ld_dtype t) {
    return t == LD_F32 || t == LD_F16 || ld_quant_type_supported(t);
}

/* dst = the [N, K] matrix src in type t (F32 / F16 conversion or block quantization). */
static ld_status encode(ld_ctx *ctx, ld_dtype t, void *dst, const float *src, int64_t N, int64_t K,
                        const float *imatrix) {
    if (t == LD_F32 || t == LD_F16) return ld_convert(ctx, t, dst, LD_F32, src, N * K);
    return ld_quantize(ctx, t, dst, src, N, K, imatrix);
}

ld_status ld_lm_session_quantize_ex(ld_lm_session *s, ld_dtype type, ld_dtype head_type) {
    return ld_lm_session_quantize_im(s, type, head_type, NULL, NULL);
}

ld_status ld_lm_session_quantize_im(ld_lm_session *s, ld_dtype type, ld_dtype head_type,
                                    const float *(*imatrix)(void *user, const char *name, int64_t K), void *user) {
    if (!s) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = s->ctx;
    if (s->quantized) return ld_error(ctx, LD_ERR_STATE, "session weights are already quantized");
    const ld_dtype asked[2] = {type, head_type};
    for (int i = 0; i < 2; i++)
        if (!session_type_ok(asked[i]) && !(i == 1 && asked[i] == LD_DTYPE_COUNT))
            return ld_error(ctx, LD_ERR_DTYPE, "quantize: %s type %s is not supported", i ? "head" : "matrix",
                            ld_dtype_traits(asked[i]) ? ld_dtype_traits(asked[i])->name : "?");
    s->quantized = true;
    int n = ld_params_count(s->m->params);
    float *tmp = NULL;
    ld_status st = LD_OK;
    for (int i = 0; i < n && !st; i++) {
        const ld_tensor *w = ld_params_at(s->m->params, i);
        const bool head = w == s->m->lm_head;
        if (w->ndim != 2 || w == s->m->wpe) continue;
        /* the token embedding is looked up in F32; as a tied head it is quantized only
         * when a head type is given (the usual mixes keep the embedding above 4 bits) */
        if (w == s->m->wte && !(head && head_type != LD_DTYPE_COUNT)) continue;
        const ld_dtype t = head && head_type != LD_DTYPE_COUNT ? head_type : type;
        const bool pack = ld_qpack_supported(t);
        int64_t N, K;
        weight_nk(s, w, &N, &K);
        if (K % ld_dtype_traits(t)->block_size) continue; /* rows must be whole blocks: keep F32 */
        size_t bytes;
        if (ld_dtype_row_bytes(t, N * K, &bytes)) continue;
        /* blocks in the arena, or for a prepacked type in a buffer freed once packed */
        void *q = pack ? ld_alloc(ctx, bytes) : ld_arena_alloc(s->mem, bytes);
        if (!q) return ld_ctx_status(ctx);
        /* the F32 values as [N, K] rows (the model's own, or from its form) */
        if (!(tmp = ld_alloc(ctx, (size_t)(N * K) * sizeof(float)))) {
            if (pack) ld_free(ctx, q);
            return ld_ctx_status(ctx);
        }
        st = lm_values(s->m, w, true, tmp);
        if (!st) st = encode(ctx, t, q, tmp, N, K, imatrix ? imatrix(user, w->name, K) : NULL);
        ld_free(ctx, tmp);
        tmp = NULL;
        if (!st) st = add_form(s, w, t, q, pack, false);
        if (pack) ld_free(ctx, q);
        if (!st) st = reserve_qscratch(s, t);
        if (!st && !head && s->max_tokens >= LD_DEQUANT_GEMM_MIN_M && dequant_for_gemm(t)) st = reserve_wf32(s, N, K);
    }
    return st;
}

ld_status ld_lm_session_quantize(ld_lm_session *s, ld_dtype type) {
    if (s && (type == LD_F16 || type == LD_F32)) /* keep this entry point's contract: block types only */
        return ld_error(s->ctx, LD_ERR_DTYPE, "quantize: type %s is not a block type (use ld_lm_session_quantize_ex)",
                        ld_dtype_traits(type)->name);
    return ld_lm_session_quantize_ex(s, type, LD_DTYPE_COUNT);
}

void ld_lm_session_set_observer(ld_lm_session *s, ld_lm_observer fn, void *user) {
    if (s) s->observe = fn, s->observe_user = user;
}

void ld_lm_session_clear(ld_lm_session *s, int slot) {
    if (!s || slot < 0 || slot >= s->n_slots) return;
    ld_kv_pages_truncate(&s->kv, slot, s->len[slot], 0), s->len[slot] = 0;
    if (s->slot_lora) s->slot_lora[slot] = 0;
}

ld_status ld_lm_session_truncate(ld_lm_session *s, int slot, int64_t len) {
    if (!s) return LD_ERR_INVALID_ARG;
    if (slot < 0 || slot >= s->n_slots || len < 0 || len > s->len[slot])
        return ld_error(s->ctx, LD_ERR_INVALID_ARG, "truncate: slot %d of %d to %lld tokens (it holds %lld)", slot,
                        s->n_slots, (long long)len, (long long)(slot >= 0 && slot < s->n_slots ? s->len[slot] : -1));
    /* the page that will take the next token must be this slot's own: copy a shared one */
    int32_t from, to;
    ld_status st = ld_kv_pages_unshare_last(s->ctx, &s->kv, slot, len, &from, &to);
    if (st) return st;
    if (to >= 0) copy_page(s, from, to, len % s->kv.page_tokens);
    ld_kv_pages_truncate(&s->kv, slot, s->len[slot], len);
    s->len[slot] = len;
    return LD_OK;
}

ld_status ld_lm_session_share(ld_lm_session *s, int dst, int src, int64_t n) {
    if (!s) return LD_ERR_INVALID_ARG;
    if (dst < 0 || dst >= s->n_slots || src < 0 || src >= s->n_slots || dst == src || n < 0 || n > s->len[src])
        return ld_error(s->ctx, LD_ERR_INVALID_ARG, "share: %lld tokens of slot %d into slot %d (of %d slots)",
                        (long long)n, src, dst, s->n_slots);
    ld_lm_session_clear(s, dst);
    /* whole pages are shared; the rest of a partly used page is copied into a new one */
    int32_t from, to;
    ld_status st = ld_kv_pages_share(s->ctx, &s->kv, dst, src, n, &from, &to);
    if (st) return st;
    if (to >= 0) copy_page(s, from, to, n % s->kv.page_tokens);
    s->len[dst] = n;
    if (s->slot_lora) s->slot_lora[dst] = s->slot_lora[src]; /* the keys and values it computed */
    return LD_OK;
}

int64_t ld_lm_session_page_tokens(const ld_lm_session *s) {
    return s ? s->kv.page_tokens : 0;
}

void ld_lm_session_kv_pages(const ld_lm_session *s, int64_t *used, int64_t *total) {
    if (used) *used = s ? s->kv.n_pages - s->kv.n_free : 0;
    if (total) *total = s ? s->kv.n_pages : 0;
}

int64_t ld_lm_session_pages_freed_by(const ld_lm_session *s, const bool *slots, int32_t *scratch) {
    return s ? ld_kv_pages_exclusive(&s->kv, slots, scratch) : 0;
}

int64_t ld_lm_session_pages_needed(const ld_lm_session *s, int slot, int64_t n) {
    if (!s || slot < 0 || slot >= s->n_slots || n < 0) return -1;
    return ld_kv_pages_needed(&s->kv, s->len[slot], n);
}

int64_t ld_lm_session_tokens_evaluated(const ld_lm_session *s) {
    return s ? s->evaluated : 0;
}
int64_t ld_lm_session_len(const ld_lm_session *s, int slot) {
    return s && slot >= 0 && slot < s->n_slots ? s->len[slot] : -1;
}
int ld_lm_session_slots(const ld_lm_session *s) {
    return s ? s->n_slots : 0;
}
int64_t ld_lm_session_max_len(const ld_lm_session *s) {
    return s ? s->max_len : 0;
}
int64_t ld_lm_session_max_tokens(const ld_lm_session *s) {
    return s ? s->max_tokens : 0;
}
ld_lm *ld_lm_session_model(const ld_lm_session *s) {
    return s ? s->m : NULL;
}
ld_ctx *ld_lm_session_ctx(const ld_lm_session *s) {
    return s ? s->ctx : NULL;
}
size_t ld_lm_session_kv_bytes(const ld_lm_session *s) {
    return (size_t)s->kv.n_pages * ld_lm_kv_page_bytes_as(&s->m->cfg, s->kv.page_tokens, s->kc.type, s->vc.type);
}

/* The form of weight w this session computes with: its own latest form (a quantized copy
 * from ld_lm_session_quantize, or prepacked panels), else the model's. */
static sess_form weight_for(const ld_lm_session *s, const ld_tensor *w) {
    for (int i = s->nq - 1; i >= 0; i--)
        if (s->forms[i].w == w) return s->forms[i];
    const lm_form *f = lm_form_of(s->m, w);
    return (sess_form){w, f->dtype, f->data, false, f->kn, f->rope_perm};
}

size_t ld_lm_session_weight_bytes(const ld_lm_session *s) {
    if (!s) return 0;
    size_t total = 0, experts = 0;
    for (int i = 0; i < ld_params_count(s->m->params); i++) {
        const ld_tensor *w = ld_params_at(s->m->params, i);
        if (!lm_is_matrix(s->m, w) || (w == s->m->wte && w != s->m->lm_head)) continue;
        size_t b = 0;
        int64_t N, K;
        weight_nk(s, w, &N, &K);
        sess_form f = weight_for(s, w);
        if (f.packed ? !ld_qpack_size(s->ctx, f.dtype, N, K, &b) : !ld_dtype_row_bytes(f.dtype, N * K, &b))
            *(strstr(w->name, ".experts.") ? &experts : &total) += b;
    }
    /* a token reads k of each layer's E experts (all of one size) */
    const ld_lm_config *c = &s->m->cfg;
    return total + (c->n_experts ? (size_t)((double)experts * (double)c->n_experts_used / (double)c->n_experts) : 0);
}

/* ---- matrix products: the first path (a table row) that applies to a form runs it -------- */

typedef struct matmul_path {
    const char *name;
    bool (*applies)(const ld_lm_session *s, const sess_form *f, int64_t M, int64_t N, int64_t K);
    void (*run)(const ld_lm_session *s, const sess_form *f, int64_t N, int64_t K, const float *x, int64_t M, float *y);
} matmul_path;

static bool is_packed(const ld_lm_session *s, const sess_form *f, int64_t M, int64_t N, int64_t K) {
    return f->packed;
}
static void run_packed(const ld_lm_session *s, const sess_form *f, int64_t N, int64_t K, const float *x, int64_t M,
                       float *y) {
    ld_qmatmul_packed(s->ctx, f->dtype, f->data, N, K, x, M, y, s->qscratch); /* any M: one kernel */
}

/* many rows, no int8 GEMM for this type: expand W to F32 a band of rows at a time (about a
 * tenth of the product's time at 512 rows) and run the packed F32 GEMM on each band, several
 * times faster per row than the dot kernels */
static bool wants_dequant_gemm(const ld_lm_session *s, const sess_form *f, int64_t M, int64_t N, int64_t K) {
    return f->dtype != LD_F32 && M >= LD_DEQUANT_GEMM_MIN_M && dequant_for_gemm(f->dtype) &&
           s->wf32_elems >= (N < 16 ? N : 16) * K;
}
typedef struct {
    ld_ctx *ctx;
    ld_dtype dtype;
    const void *data;
    size_t row_bytes;
    float *out;
    int64_t K;
} dequant_rows_args;

static void dequant_rows_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const dequant_rows_args *a = arg;
    for (int64_t r = lo; r < hi; r++)
        ld_dequantize(a->ctx, a->dtype, (const uint8_t *)a->data + (size_t)r * a->row_bytes, a->out + r * a->K, a->K);
}

static void run_dequant_gemm(const ld_lm_session *s, const sess_form *f, int64_t N, int64_t K, const float *x, int64_t M,
                             float *y) {
    size_t rb = 0;
    ld_dtype_row_bytes(f->dtype, K, &rb);
    float *wf = s->wf32;
    const int64_t band = s->wf32_elems / K;
    for (int64_t n0 = 0; n0 < N; n0 += band) {
        const int64_t nb = N - n0 < band ? N - n0 : band;
        dequant_rows_args a = {s->ctx, f->dtype, (const uint8_t *)f->data + (size_t)n0 * rb, rb, wf, K};
        ld_par_for(nb, ld_par_grain(K), dequant_rows_part, &a);
        s->k->gemm_f32(false, true, M, nb, K, 1.0f, x, K, wf, K, 0.0f, y + n0, N);
    }
}

/* many rows of F16 weights: one GEMM that widens each panel of W as it packs it (no F32
 * copy of the matrix is written) */
static bool f16_many_rows(const ld_lm_session *s, const sess_form *f, int64_t M, int64_t N, int64_t K) {
    return f->dtype == LD_F16 && !f->packed && !f->kn && M >= LD_DEQUANT_GEMM_MIN_M;
}
static void run_gemm_f16(const ld_lm_session *s, const sess_form *f, int64_t N, int64_t K, const float *x, int64_t M,
                         float *y) {
    s->k->gemm_f32_f16(false, true, M, N, K, 1.0f, x, K, f->data, K, 0.0f, y, N);
}

static bool is_blocks(const ld_lm_session *s, const sess_form *f, int64_t M, int64_t N, int64_t K) {
    return f->dtype != LD_F32;
}
static void run_qmatmul(const ld_lm_session *s, const sess_form *f, int64_t N, int64_t K, const float *x, int64_t M,
                        float *y) {
    ld_qmatmul(s->ctx, f->dtype, f->data, N, K, x, M, y, s->qscratch);
}

/* decode: stream W once */
static bool few_rows(const ld_lm_session *s, const sess_form *f, int64_t M, int64_t N, int64_t K) {
    return M <= LD_GEMV_MAX_M;
}
static void run_gemv(const ld_lm_session *s, const sess_form *f, int64_t N, int64_t K, const float *x, int64_t M,
                     float *y) {
    s->k->gemv_f32(!f->kn, M, N, K, x, f->data, y);
}

static bool always(const ld_lm_session *s, const sess_form *f, int64_t M, int64_t N, int64_t K) {
    return true;
}
static void run_gemm(const ld_lm_session *s, const sess_form *f, int64_t N, int64_t K, const float *x, int64_t M,
                     float *y) {
    if (f->kn) s->k->gemm_f32(false, false, M, N, K, 1.0f, x, K, f->data, N, 0.0f, y, N);
    else s->k->gemm_f32(false, true, M, N, K, 1.0f, x, K, f->data, K, 0.0f, y, N);
}

static const matmul_path matmul_paths[] = {
    {"prepacked", is_packed, run_packed},
    {"F16 GEMM (widened while packed)", f16_many_rows, run_gemm_f16},
    {"dequantized to an F32 GEMM", wants_dequant_gemm, run_dequant_gemm},
    {"quantized dots", is_blocks, run_qmatmul},
    {"F32 GEMV", few_rows, run_gemv},
    {"F32 GEMM", always, run_gemm},
};

/* y[M, N] += scale x A^T B^T for each run of rows whose adapter has a LoRA on w (in HF's
 * row order, like the training forward's branch). */
static void lora_add(const ld_lm_session *s, float *y, const float *x, const ld_tensor *w, int64_t M, int64_t N, int64_t K) {
    for (int64_t r0 = 0, r1; r0 < M; r0 = r1) {
        int id = s->row_lora[r0];
        for (r1 = r0 + 1; r1 < M && s->row_lora[r1] == id; r1++) {
        }
        if (!id) continue;
        const sess_lora *l = &s->loras[id - 1];
        const sess_lora_mat *p = NULL;
        for (int i = 0; i < l->n && !p; i++)
            if (l->mats[i].w == w) p = &l->mats[i];
        if (!p || p->N != N || p->K != K) continue;
        s->k->gemm_f32(false, true, r1 - r0, l->r, K, 1.0f, x + r0 * K, K, p->a, K, 0.0f, s->lora_tmp, l->r);
        s->k->gemm_f32(false, true, r1 - r0, N, l->r, l->scale, s->lora_tmp, l->r, p->b, l->r, 1.0f, y + r0 * N, N);
    }
}

/* y[M, N] = x[M, K] · W^T (+ b), W the session's form of parameter w. */
static void linear(const ld_lm_session *s, float *y, const float *x, const ld_tensor *w, const ld_tensor *b, int64_t M) {
    int64_t N, K;
    weight_nk(s, w, &N, &K);
    sess_form f = weight_for(s, w);
    if (s->observe) s->observe(s->observe_user, w->name, x, M, K);
    for (size_t i = 0; i < sizeof matmul_paths / sizeof matmul_paths[0]; i++)
        if (matmul_paths[i].applies(s, &f, M, N, K)) {
            matmul_paths[i].run(s, &f, N, K, x, M, y);
            break;
        }
    if (f.rope_perm) { /* q/k rows in llama.cpp's order: outputs back to HF's, per head */
        const int64_t D = ld_lm_head_dim(&s->m->cfg);
        lm_rope_unpermute(y, M, N / D, D, s->perm_tmp);
    }
    if (s->lora_rows) lora_add(s, y, x, w, M, N, K);
    if (b)
        for (int64_t r = 0; r < M; r++) s->k->add_inplace(y + r * N, b->data, N);
}

/* dst[C] = row `id` of the token embedding, in F32. */
static void embed(const ld_lm_session *s, int32_t id, float *dst) {
    const ld_lm *m = s->m;
    const int64_t C = m->cfg.hidden_size;
    const lm_form *f = lm_form_of(m, m->wte);
    size_t rb = 0;
    ld_dtype_row_bytes(f->dtype, C, &rb);
    if (f->dtype == LD_F32) memcpy(dst, (const float *)f->data + (int64_t)id * C, (size_t)C * sizeof(float));
    else ld_dequantize(s->ctx, f->dtype, (const uint8_t *)f->data + (size_t)id * rb, dst, C);
}

static void norm(const ld_lm_session *s, float *y, const float *x, const ld_tensor *w, const ld_tensor *b, int64_t M) {
    const ld_lm_config *c = &s->m->cfg;
    if (c->arch == LD_ARCH_LLAMA) s->k->rmsnorm_fwd(y, s->stat0, x, w->data, M, c->hidden_size, c->norm_eps);
    else s->k->layernorm_fwd(y, s->stat0, s->stat1, x, w->data, b->data, M, c->hidden_size, c->norm_eps);
}

static ld_status validate(ld_lm_session *s, const ld_lm_segment *segs, int n_segs, int64_t *total) {
    const ld_lm_config *c = &s->m->cfg;
    *total = 0;
    if (!segs || n_segs <= 0) return ld_error(s->ctx, LD_ERR_INVALID_ARG, "eval: no segments");
    for (int i = 0; i < n_segs; i++) {
        const ld_lm_segment *g = &segs[i];
        if (g->slot < 0 || g->slot >= s->n_slots)
            return ld_error(s->ctx, LD_ERR_INVALID_ARG, "eval: segment %d names slot %d of %d", i, g->slot, s->n_slots);
        for (int j = 0; j < i; j++)
            if (segs[j].slot == g->slot)
                return ld_error(s->ctx, LD_ERR_INVALID_ARG, "eval: slot %d appears twice", g->slot);
        if (g->n <= 0 || !g->ids) return ld_error(s->ctx, LD_ERR_INVALID_ARG, "eval: segment %d has no tokens", i);
        if (s->len[g->slot] + g->n > s->max_len)
            return ld_error(s->ctx, LD_ERR_LIMIT, "eval: sequence %d would grow to %lld tokens, past the context of %lld",
                            g->slot, (long long)(s->len[g->slot] + g->n), (long long)s->max_len);
        for (int64_t j = 0; j < g->n; j++)
            if (g->ids[j] < 0 || g->ids[j] >= c->vocab_size)
                return ld_error(s->ctx, LD_ERR_INVALID_ARG, "eval: token id %d at position %lld outside the vocabulary of %lld",
                                g->ids[j], (long long)j, (long long)c->vocab_size);
        *total += g->n;
    }
    if (*total > s->max_tokens)
        return ld_error(s->ctx, LD_ERR_LIMIT, "eval: %lld tokens in one call, more than the session's %lld",
                        (long long)*total, (long long)s->max_tokens);
    int64_t pages = 0;
    for (int i = 0; i < n_segs; i++) pages += ld_kv_pages_needed(&s->kv, s->len[segs[i].slot], segs[i].n);
    if (pages > s->kv.n_free)
        return ld_error(s->ctx, LD_ERR_LIMIT, "eval: KV cache full: %lld more pages needed, %d of %d free",
                        (long long)pages, (int)s->kv.n_free, (int)s->kv.n_pages);
    return LD_OK;
}

/* Rotary embedding of x [n, H, D] at positions pos..: the plain theta form or the session's
 * scaled frequencies. */
static void rope(const ld_lm_session *s, float *x, int64_t n, int64_t H, int64_t pos) {
    const ld_lm_config *c = &s->m->cfg;
    const int64_t D = ld_lm_head_dim(c);
    if (s->rope_freq) s->k->rope_freq_fwd(x, x, 1, n, H, D, pos, s->rope_freq, s->rope_mscale);
    else s->k->rope_fwd(x, x, 1, n, H, D, pos, c->rope_theta);
}

/* The columns [off, off + w) of rows of src [M, ld] into dst [M, w]. */
static void take_cols(float *dst, const float *src, int64_t M, int64_t ld, int64_t off, int64_t w) {
    for (int64_t r = 0; r < M; r++) memcpy(dst + r * w, src + r * ld + off, (size_t)w * sizeof(float));
}

/* Makes the logits buffer hold R rows (grown once, for the first eval that wants all rows). */
static ld_status reserve_logits(ld_lm_session *s, int64_t R) {
    if (R <= s->logit_rows) return LD_OK;
    float *p = ld_arena_alloc(s->mem, (size_t)(R * s->m->cfg.vocab_size) * sizeof(float));
    if (!p) return ld_ctx_status(s->ctx);
    s->logits = p, s->logit_rows = R;
    return LD_OK;
}

/* The attention block of a llama-family layer: q, k, v (fused or not, with biases), per-head
 * q/k norms, RoPE, the cache, attention (sliding window, soft-cap); out = s->att [M, H*D].
 * Fails only when the cache cannot hold a key or value (kv_encode). */
static ld_status attention_llama(ld_lm_session *s, const lm_layer *L, int64_t l, const ld_lm_segment *segs, int n_segs,
                            int64_t M) {
    const ld_lm_config *c = &s->m->cfg;
    const lm_family_info *fam = lm_family(c->family);
    const ld_kernels *k = s->k;
    const int64_t Hq = c->n_heads, Hkv = c->n_kv_heads, D = ld_lm_head_dim(c), Q = Hq * D, kvw = kv_width(c);
    if (fam->fused_qkv) {
        linear(s, s->o, s->h, L->qkv, NULL, M);
        take_cols(s->q, s->o, M, Q + 2 * kvw, 0, Q);
        take_cols(s->kk, s->o, M, Q + 2 * kvw, Q, kvw);
        take_cols(s->vv, s->o, M, Q + 2 * kvw, Q + kvw, kvw);
    } else {
        linear(s, s->q, s->h, L->q, L->q_b, M);
        linear(s, s->kk, s->h, L->k, L->k_b, M);
        linear(s, s->vv, s->h, L->v, L->v_b, M);
    }
    if (fam->qk_norm) { /* each head's D values: rows of D */
        k->rmsnorm_fwd(s->q, s->stat0, s->q, L->q_norm->data, M * Hq, D, c->norm_eps);
        k->rmsnorm_fwd(s->kk, s->stat0, s->kk, L->k_norm->data, M * Hkv, D, c->norm_eps);
    }
    for (int i = 0, r = 0; i < n_segs; r += (int)segs[i].n, i++) {
        int slot = segs[i].slot;
        int64_t n = segs[i].n, pos = s->len[slot];
        float *q = s->q + r * Q, *kr = s->kk + r * kvw, *vr = s->vv + r * kvw;
        rope(s, q, n, Hq, pos);
        rope(s, kr, n, Hkv, pos);
        ld_status st = cache_write(s, &s->kc, l, slot, pos, kr, n);
        if (st || (st = cache_write(s, &s->vc, l, slot, pos, vr, n))) return st;
    }
    attend_all(s, l, segs, n_segs, s->q, s->att);
    return LD_OK;
}

/* The mixture-of-experts MLP on s->h [M, C]; out = s->h. The router picks each row's k
 * experts (ld_op_moe_route's choice: largest probabilities, ties to the lower expert), rows
 * are grouped by expert, and only the experts some row chose are multiplied: a decode step
 * reads the weights of k experts per layer, not all of them. */
static void mlp_moe(ld_lm_session *s, const lm_layer *L, int64_t M) {
    const ld_lm_config *c = &s->m->cfg;
    const int64_t C = c->hidden_size, I = lm_expert_width(c), E = c->n_experts, k = c->n_experts_used;
    linear(s, s->moe_logits, s->h, L->router, NULL, M);
    s->k->softmax_fwd(s->moe_logits, s->moe_logits, M, E);
    memset(s->moe_offset, 0, (size_t)(E + 1) * sizeof(int64_t));
    for (int64_t m = 0; m < M; m++) {
        const float *p = s->moe_logits + m * E;
        int32_t *ex = s->moe_expert + m * k;
        double sum = 0;
        for (int64_t j = 0; j < k; j++) {
            int32_t best = -1;
            for (int32_t e = 0; e < (int32_t)E; e++) {
                bool taken = false;
                for (int64_t i = 0; i < j; i++) taken |= ex[i] == e;
                if (!taken && (best < 0 || p[e] > p[best])) best = e;
            }
            ex[j] = best, sum += p[best];
            s->moe_offset[best + 1]++;
        }
        for (int64_t j = 0; j < k; j++) s->moe_gate[m * k + j] = c->moe_norm_topk ? (float)(p[ex[j]] / sum) : p[ex[j]];
    }
    for (int64_t e = 0; e < E; e++) s->moe_offset[e + 1] += s->moe_offset[e];
    for (int64_t i = 0; i < M * k; i++) { /* rows in token order within each expert */
        int32_t e = s->moe_expert[i];
        int64_t row = s->moe_offset[e]++;
        s->moe_row[i] = (int32_t)row;
        s->moe_token[row] = (int32_t)(i / k);
        memcpy(s->moe_x + row * C, s->h + (i / k) * C, (size_t)C * sizeof(float));
    }
    for (int64_t e = E; e > 0; e--) s->moe_offset[e] = s->moe_offset[e - 1]; /* back to starts */
    s->moe_offset[0] = 0;
    for (int64_t e = 0; e < E; e++) {
        const int64_t o = s->moe_offset[e], n = s->moe_offset[e + 1] - o;
        if (!n) continue; /* an expert no row chose is never read */
        float *x = s->moe_x + o * C, *g = s->f1 + o * I, *u = s->f2 + o * I;
        linear(s, g, x, L->exp_gate[e], NULL, n);
        linear(s, u, x, L->exp_up[e], NULL, n);
        s->k->swiglu_fwd(g, g, u, n * I);
        linear(s, s->moe_y + o * C, g, L->exp_down[e], NULL, n);
    }
    const int64_t S = c->shared_expert_size;
    if (L->sh_gate) { /* Qwen2-MoE's shared expert on every row: into moe_x [M, C], its gate logit per row */
        linear(s, s->f1, s->h, L->sh_gate, NULL, M);
        linear(s, s->f2, s->h, L->sh_up, NULL, M);
        s->k->swiglu_fwd(s->f1, s->f1, s->f2, M * S);
        linear(s, s->moe_x, s->f1, L->sh_down, NULL, M);
        linear(s, s->moe_logits, s->h, L->sh_inp, NULL, M);
    }
    memset(s->h, 0, (size_t)(M * C) * sizeof(float));
    for (int64_t m = 0; L->sh_gate && m < M; m++) {
        const float g = 1.0f / (1.0f + expf(-s->moe_logits[m]));
        for (int64_t j = 0; j < C; j++) s->h[m * C + j] = g * s->moe_x[m * C + j];
    }
    for (int64_t i = 0; i < M * k; i++) {
        float *y = s->h + (i / k) * C;
        const float *src = s->moe_y + (int64_t)s->moe_row[i] * C, g = s->moe_gate[i];
        for (int64_t j = 0; j < C; j++) y[j] += g * src[j];
    }
}

/* The MLP of a llama-family layer on s->h; out = s->h. */
static void mlp_llama(ld_lm_session *s, const lm_layer *L, int64_t M) {
    const lm_family_info *fam = lm_family(s->m->cfg.family);
    const int64_t I = s->m->cfg.intermediate_size;
    if (fam->experts) {
        mlp_moe(s, L, M);
        return;
    }
    const float *gate = s->f1, *up = s->f2;
    if (fam->fused_gate_up) { /* [M, 2I] rows: gate | up */
        linear(s, s->f1, s->h, L->gate_up, NULL, M);
        for (int64_t r = 0; r < M; r++) {
            if (fam->geglu) s->k->geglu_fwd(s->f2 + r * I, s->f1 + r * 2 * I, s->f1 + r * 2 * I + I, I);
            else s->k->swiglu_fwd(s->f2 + r * I, s->f1 + r * 2 * I, s->f1 + r * 2 * I + I, I);
        }
        linear(s, s->h, s->f2, L->down, NULL, M);
        return;
    }
    linear(s, s->f1, s->h, L->gate, NULL, M);
    linear(s, s->f2, s->h, L->up, NULL, M);
    if (fam->geglu) s->k->geglu_fwd(s->f1, gate, up, M * I);
    else s->k->swiglu_fwd(s->f1, gate, up, M * I);
    linear(s, s->h, s->f1, L->down, NULL, M);
}

/* The forward pass of ld_lm_session_eval; with hidden, *out gets the final-norm hidden
 * states of every row instead of logits (ld_lm_session_eval_hidden). */
static ld_status eval_rows(ld_lm_session *s, const ld_lm_segment *segs, int n_segs, bool all_logits, bool hidden,
                           const float **out) {
    LD_TEAM_SCOPE(s->ctx);
    int64_t M;
    ld_status st = validate(s, segs, n_segs, &M);
    if (st || (all_logits && (st = reserve_logits(s, M)))) return st;
    ld_lm *m = s->m;
    const ld_lm_config *c = &m->cfg;
    const lm_family_info *fam = lm_family(c->family);
    const ld_kernels *k = s->k;
    int64_t C = c->hidden_size, kvw = kv_width(c);
    int64_t I = c->intermediate_size;
    bool gpt2 = c->arch == LD_ARCH_GPT2;
    for (int i = 0; i < n_segs; i++) ld_kv_pages_grow(&s->kv, segs[i].slot, s->len[segs[i].slot], segs[i].n);
    s->lora_rows = false;
    for (int i = 0, r = 0; s->n_lora && i < n_segs; i++)
        for (int64_t j = 0; j < segs[i].n; j++, r++) {
            s->row_lora[r] = s->slot_lora[segs[i].slot];
            s->lora_rows |= s->row_lora[r] != 0;
        }

    /* embeddings */
    for (int i = 0, r = 0; i < n_segs; i++)
        for (int64_t j = 0; j < segs[i].n; j++, r++) {
            embed(s, segs[i].ids[j], s->x + r * C);
            if (gpt2) k->add_inplace(s->x + r * C, (const float *)m->wpe->data + (s->len[segs[i].slot] + j) * C, C);
        }
    if (fam->embed_scale) k->scale_fwd(s->x, s->x, sqrtf((float)C), M * C);
    for (int64_t l = 0; l < c->n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        norm(s, s->h, s->x, L->ln1_w, L->ln1_b, M);
        if (gpt2) {
            linear(s, s->o, s->h, L->qkv, L->qkv_b, M);
            take_cols(s->q, s->o, M, 3 * C, 0, C);
            take_cols(s->kk, s->o, M, 3 * C, C, C);
            take_cols(s->vv, s->o, M, 3 * C, 2 * C, C);
            for (int i = 0, r = 0; i < n_segs; r += (int)segs[i].n, i++) {
                int slot = segs[i].slot;
                int64_t n = segs[i].n, pos = s->len[slot];
                if ((st = cache_write(s, &s->kc, l, slot, pos, s->kk + r * kvw, n)) ||
                    (st = cache_write(s, &s->vc, l, slot, pos, s->vv + r * kvw, n)))
                    return st;
            }
            attend_all(s, l, segs, n_segs, s->q, s->att);
        } else if ((st = attention_llama(s, L, l, segs, n_segs, M))) {
            return st;
        }
        linear(s, s->h, s->att, L->o, L->o_b, M);
        if (fam->sandwich_norms) norm(s, s->h, s->h, L->post_attn_norm, NULL, M);
        k->add_inplace(s->x, s->h, M * C);
        norm(s, s->h, s->x, L->ln2_w, L->ln2_b, M);
        if (gpt2) {
            linear(s, s->f1, s->h, L->up, L->up_b, M);
            k->gelu_fwd(s->f2, s->f1, M * I);
            linear(s, s->h, s->f2, L->down, L->down_b, M);
        } else {
            mlp_llama(s, L, M);
        }
        if (fam->sandwich_norms) norm(s, s->h, s->h, L->post_mlp_norm, NULL, M);
        k->add_inplace(s->x, s->h, M * C);
    }
    s->lora_rows = false; /* LoRA targets only the layers' matrices */
    if (hidden) {
        norm(s, s->h, s->x, m->lnf_w, m->lnf_b, M);
        for (int i = 0; i < n_segs; i++) s->len[segs[i].slot] += segs[i].n;
        s->evaluated += M;
        *out = s->h;
        return LD_OK;
    }
    /* final norm and LM head, only for the rows whose logits are wanted */
    int64_t R = 0;
    if (all_logits) {
        memcpy(s->rows, s->x, (size_t)(M * C) * sizeof(float));
        R = M;
    } else {
        for (int i = 0, r = 0; i < n_segs; r += (int)segs[i].n, i++)
            memcpy(s->rows + (R++) * C, s->x + (r + segs[i].n - 1) * C, (size_t)C * sizeof(float));
    }
    norm(s, s->h, s->rows, m->lnf_w, m->lnf_b, R);
    linear(s, s->logits, s->h, m->lm_head, NULL, R);
    if (c->final_softcap > 0) k->softcap_fwd(s->logits, s->logits, c->final_softcap, R * c->vocab_size);
    for (int i = 0; i < n_segs; i++) s->len[segs[i].slot] += segs[i].n;
    s->evaluated += M;
    *out = s->logits;
    return LD_OK;
}

ld_status ld_lm_session_eval(ld_lm_session *s, const ld_lm_segment *segs, int n_segs, bool all_logits,
                             const float **logits) {
    if (!s || !logits) return LD_ERR_INVALID_ARG;
    return eval_rows(s, segs, n_segs, all_logits, false, logits);
}

ld_status ld_lm_session_eval_hidden(ld_lm_session *s, const ld_lm_segment *segs, int n_segs, const float **hidden) {
    if (!s || !hidden) return LD_ERR_INVALID_ARG;
    return eval_rows(s, segs, n_segs, true, true, hidden);
}

double ld_logprob(const float *z, int64_t V, int32_t target) {
    float mx = z[0];
    for (int64_t v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    double se = 0;
    for (int64_t v = 0; v < V; v++) se += exp((double)(z[v] - mx));
    return (double)(z[target] - mx) - log(se);
}

/* Feeds tokens [fed[i], upto[i]) of each item's sequence to slots 0..gn-1, as many as the
 * session's max_tokens allows per eval; with `scored`, adds to logp[i] the log-probability of
 * the token after each fed one (all_logits), else only fills the caches. */
static ld_status score_feed(ld_lm_session *s, int gn, int32_t *const *seq, int64_t *fed, const int64_t *upto,
                            bool scored, ld_lm_segment *segs, double *logp) {
    int64_t V = s->m->cfg.vocab_size;
    for (;;) {
        int ns = 0;
        int64_t budget = s->max_tokens;
        for (int i = 0; i < gn && budget > 0; i++) {
            int64_t k = upto[i] - fed[i] < budget ? upto[i] - fed[i] : budget;
            if (k <= 0) continue;
            segs[ns++] = (ld_lm_segment){i, seq[i] + fed[i], k};
            budget -= k;
        }
        if (!ns) return LD_OK;
        const float *lg;
        ld_status st = ld_lm_session_eval(s, segs, ns, scored, &lg);
        if (st) return st;
        for (int k = 0, r = 0; k < ns; r += (int)segs[k].n, k++) {
            int i = segs[k].slot;
            for (int64_t j = 0; scored && j < segs[k].n; j++) logp[i] += ld_logprob(lg + (r + j) * V, V, seq[i][fed[i] + j + 1]);
            fed[i] += segs[k].n;
        }
    }
}

ld_status ld_lm_score(ld_lm_session *s, int n, const int32_t *const *ctx_ids, const int64_t *ctx_len,
                      const int32_t *const *cont_ids, const int64_t *cont_len, double *logp) {
    if (!s || n <= 0 || !ctx_ids || !ctx_len || !cont_ids || !cont_len || !logp)
        return ld_error(s ? s->ctx : NULL, LD_ERR_INVALID_ARG, "score: NULL argument or no items");
    for (int i = 0; i < n; i++) {
        if (ctx_len[i] < 1 || cont_len[i] < 1)
            return ld_error(s->ctx, LD_ERR_INVALID_ARG, "score: item %d needs a non-empty context and continuation", i);
        if (ctx_len[i] + cont_len[i] - 1 > s->max_len)
            return ld_error(s->ctx, LD_ERR_LIMIT, "score: item %d is %lld tokens, more than the session's %lld", i,
                            (long long)(ctx_len[i] + cont_len[i]), (long long)s->max_len);
    }
    /* Items go through the slots in groups. Each item's sequence (context then continuation,
     * without its last token, which predicts nothing) is fed in pieces of at most max_tokens
     * rows: first the context but its last token, with no logits, then the rest with the
     * logits of every row, of which only the target's log-probability is kept. */
    int gmax = n < s->n_slots ? n : s->n_slots;
    int32_t **seq = ld_alloc(s->ctx, (size_t)gmax * sizeof *seq);
    int64_t *fed = ld_alloc(s->ctx, (size_t)gmax * 2 * sizeof *fed), *upto = fed ? fed + gmax : NULL;
    ld_lm_segment *segs = ld_alloc(s->ctx, (size_t)gmax * sizeof *segs);
    ld_status st = seq && fed && segs ? LD_OK : ld_ctx_status(s->ctx);
    if (seq) memset(seq, 0, (size_t)gmax * sizeof *seq);
    for (int g0 = 0; !st && g0 < n; g0 += gmax) {
        int gn = n - g0 < gmax ? n - g0 : gmax;
        for (int i = 0; i < gn && !st; i++) {
            int it = g0 + i;
            ld_free(s->ctx, seq[i]);
            if (!(seq[i] = ld_alloc(s->ctx, (size_t)(ctx_len[it] + cont_len[it]) * sizeof(int32_t)))) {
                st = ld_ctx_status(s->ctx);
                break;
            }
            memcpy(seq[i], ctx_ids[it], (size_t)ctx_len[it] * sizeof(int32_t));
            memcpy(seq[i] + ctx_len[it], cont_ids[it], (size_t)cont_len[it] * sizeof(int32_t));
            ld_lm_session_clear(s, i);
            fed[i] = 0, upto[i] = ctx_len[it] - 1, logp[it] = 0;
        }
        if (!st) st = score_feed(s, gn, seq, fed, upto, false, segs, logp + g0);
        for (int i = 0; i < gn; i++) upto[i] = ctx_len[g0 + i] + cont_len[g0 + i] - 1;
        if (!st) st = score_feed(s, gn, seq, fed, upto, true, segs, logp + g0);
    }
    for (int i = 0; seq && i < gmax; i++) ld_free(s->ctx, seq[i]);
    ld_free(s->ctx, seq);
    ld_free(s->ctx, fed);
    ld_free(s->ctx, segs);
    return st;
}

/* ---- LoRA adapters per sequence ----------------------------------------------------------- */

ld_status ld_lm_session_add_lora(ld_lm_session *s, const ld_adapter *a, int *id) {
    if (!s || !a || !id) return LD_ERR_INVALID_ARG;
    *id = 0;
    if (a->m != s->m) return ld_error(s->ctx, LD_ERR_INVALID_ARG, "session: the LoRA was made for another model object");
    if (a->cfg.method != LD_ADAPTER_LORA || a->merged || !a->n_lora)
        return ld_error(s->ctx, LD_ERR_INVALID_ARG, "session: only an unmerged LoRA adapter runs per sequence (this one is %s%s)",
                        ld_adapter_method_name(a->cfg.method), a->merged ? ", merged" : "");
    if (a->prompt || a->score)
        return ld_error(s->ctx, LD_ERR_INVALID_ARG, "session: a LoRA with prompt vectors or a head does not run per sequence");
    if (s->n_lora >= LD_SESSION_MAX_LORA)
        return ld_error(s->ctx, LD_ERR_LIMIT, "session: %d LoRA adapters at most", LD_SESSION_MAX_LORA);
    const int64_t r = a->cfg.rank;
    sess_lora l = {.n = a->n_lora, .r = r, .scale = a->scale};
    sess_lora *grown = NULL;
    if (!(l.mats = ld_calloc(s->ctx, (size_t)a->n_lora, sizeof *l.mats))) goto nomem;
    for (int i = 0; i < a->n_lora; i++) {
        const lora_pair *p = &a->lora[i];
        sess_lora_mat *q = &l.mats[i];
        q->w = p->w, q->N = p->N, q->K = p->K;
        if (!(q->a = ld_calloc(s->ctx, (size_t)(r * p->K), sizeof(float))) ||
            !(q->b = ld_calloc(s->ctx, (size_t)(p->N * r), sizeof(float))))
            goto nomem;
        memcpy(q->a, p->a->data, (size_t)(r * p->K) * sizeof(float));
        memcpy(q->b, p->b->data, (size_t)(p->N * r) * sizeof(float));
    }
    if (!s->row_lora && !(s->row_lora = ld_calloc(s->ctx, (size_t)s->max_tokens, sizeof(int)))) goto nomem;
    if (!s->slot_lora && !(s->slot_lora = ld_calloc(s->ctx, (size_t)s->n_slots, sizeof(int)))) goto nomem;
    if (r > s->max_rank) {
        float *t = ld_calloc(s->ctx, (size_t)(s->max_tokens * r), sizeof(float));
        if (!t) goto nomem;
        ld_free(s->ctx, s->lora_tmp);
        s->lora_tmp = t, s->max_rank = r;
    }
    if (!(grown = ld_calloc(s->ctx, (size_t)(s->n_lora + 1), sizeof *grown))) goto nomem;
    if (s->n_lora) memcpy(grown, s->loras, (size_t)s->n_lora * sizeof *grown);
    grown[s->n_lora] = l;
    ld_free(s->ctx, s->loras);
    s->loras = grown;
    *id = ++s->n_lora;
    return LD_OK;
nomem:
    for (int i = 0; l.mats && i < l.n; i++) ld_free(s->ctx, l.mats[i].a), ld_free(s->ctx, l.mats[i].b);
    ld_free(s->ctx, l.mats);
    return ld_error(s->ctx, LD_ERR_NOMEM, "session: out of memory for a LoRA adapter");
}

ld_status ld_lm_session_set_lora(ld_lm_session *s, int slot, int id) {
    if (!s) return LD_ERR_INVALID_ARG;
    if (slot < 0 || slot >= s->n_slots || id < 0 || id > s->n_lora)
        return ld_error(s->ctx, LD_ERR_INVALID_ARG, "session: slot %d of %d, LoRA %d of %d", slot, s->n_slots, id, s->n_lora);
    if (s->slot_lora) s->slot_lora[slot] = id;
    return LD_OK;
}

int ld_lm_session_loras(const ld_lm_session *s) {
    return s ? s->n_lora : 0;
}

/* models/lm_gguf.c — the causal LM as a GGUF file, the way llama.cpp reads and writes it:
 * architecture keys, tensor names, tensor layouts and types (quantization mixes).
 *
 * One name table per architecture maps liandan's (Hugging Face) parameter names to GGUF
 * names and says how the data is laid out differently:
 *   - llama: llama.cpp applies RoPE to adjacent pairs (x0, x1), (x2, x3)... while HF Llama
 *     rotates (x_i, x_{i+D/2}); the converter therefore interleaves the rows of every head of
 *     q_proj and k_proj (row i and row i + D/2 become rows 2i and 2i+1). Qwen2 uses the
 *     rotate-half (NEOX) form in llama.cpp too, so it keeps HF's row order.
 *   - gpt2: HF stores Conv1D weights [in, out]; GGUF stores [out, in] like nn.Linear.
 * The same table drives export, import and the quantization mix. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/io.h"
#include "liandan/quant.h"
#include "models/causal_lm_internal.h"
#include "quant/quant_mix.h"

/* The family a config writes as, and its GGUF name of parameter hf. */
static bool gguf_name_of(const lm_family_info *f, const char *hf, char *out, size_t cap, lm_xform *xf) {
    return lm_gguf_name(f, hf, out, cap, xf);
}

static int64_t xf_head_dim(const ld_lm_config *c) {
    return ld_lm_head_dim(c);
}

/* ---- quantization mix ------------------------------------------------------------------ */

ld_lm_gguf_params ld_lm_gguf_default_params(void) {
    return (ld_lm_gguf_params){.type = LD_F32, .embd_type = LD_DTYPE_COUNT, .output_type = LD_DTYPE_COUNT};
}

static bool type_can_export(ld_dtype t) {
    return t == LD_F32 || t == LD_F16 || t == LD_BF16 || ld_quant_type_supported(t);
}

ld_dtype ld_lm_mix_edge_type(ld_dtype body) {
    if (body == LD_F32 || body == LD_F16 || body == LD_BF16 || body == LD_Q8_0 || body == LD_Q6_K) return body;
    return LD_Q6_K;
}

/* The type of matrix t (GGUF name gname, rows of K) in the file: the mix's choice or the
 * plain body / edge types, then the fallback for rows that are not whole blocks. */
static ld_dtype matrix_type(const ld_lm *m, const ld_tensor *t, const char *gname, int64_t K,
                            const ld_lm_gguf_params *p, ld_dtype embd, ld_dtype head) {
    ld_dtype want = t == m->lm_head ? head : t == m->wte ? embd : p->type;
    const bool edge_given = t == m->lm_head ? p->output_type != LD_DTYPE_COUNT : t == m->wte && p->embd_type != LD_DTYPE_COUNT;
    if (p->mix && !edge_given) {
        int layer = 0;
        sscanf(gname, "blk.%d.", &layer);
        const ld_mix_tensor mt = {ld_tensor_role_of(gname), layer, (int)m->cfg.n_layers, K,
                                  (int)(m->cfg.n_heads / (m->cfg.n_kv_heads > 0 ? m->cfg.n_kv_heads : m->cfg.n_heads)),
                                  p->imatrix != NULL, m->cfg.tie_embeddings};
        want = ld_quant_mix_type(p->mix, &mt);
    }
    return ld_quant_mix_fallback(want, K);
}

/* ---- export ------------------------------------------------------------------------------ */

/* One parameter's conversion, run by the writer when it writes the tensor (export_fill). */
typedef struct export_job {
    const ld_lm *m;
    const ld_tensor *t;
    lm_xform xf;
    ld_dtype type;
    int64_t rows, K; /* the GGUF layout (per expert, for experts) */
    const float *imat;
    ld_tensor *const *experts; /* a layer's experts of one matrix, stacked [E, rows, K]; else NULL */
    int64_t n_experts;
} export_job;

typedef struct export_state {
    ld_ctx *ctx;
    ld_gguf_writer *w;
    void **bufs; /* small tensor data kept until the write */
    int n_bufs;
    export_job *jobs; /* one per parameter, filled at write time: one tensor in memory at once */
    int n_jobs;
} export_state;

static void *keep(export_state *s, size_t bytes);

static const char *const scaling_names[] = {"none", "linear", "dynamic", "llama3", "yarn"};

static ld_status set_config(ld_gguf_writer *w, const lm_family_info *a, const ld_lm_config *c) {
    char key[96];
    ld_status st = LD_OK;
    const int64_t D = ld_lm_head_dim(c);
    const ld_rope_scaling *rs = &c->rope_scaling;
#define KEY_U32(suffix, v) \
    (snprintf(key, sizeof key, "%s." suffix, a->gguf_arch), ld_gguf_writer_set_u32(w, key, (uint32_t)(v)))
#define KEY_F32(suffix, v) \
    (snprintf(key, sizeof key, "%s." suffix, a->gguf_arch), ld_gguf_writer_set_f32(w, key, (v)))
    if ((st = KEY_U32("context_length", c->max_position)) || (st = KEY_U32("embedding_length", c->hidden_size)) ||
        (st = KEY_U32("block_count", c->n_layers)) || (st = KEY_U32("feed_forward_length", c->intermediate_size)) ||
        (st = KEY_U32("attention.head_count", c->n_heads)))
        return st;
    if (c->arch == LD_ARCH_GPT2) return KEY_F32("attention.layer_norm_epsilon", c->norm_eps);
    if ((st = KEY_U32("attention.head_count_kv", c->n_kv_heads)) || (st = KEY_F32("rope.freq_base", c->rope_theta)) ||
        (st = KEY_U32("rope.dimension_count", D)) ||
        (st = KEY_F32("attention.layer_norm_rms_epsilon", c->norm_eps)) || (st = KEY_U32("vocab_size", c->vocab_size)))
        return st;
    if (D * c->n_heads != c->hidden_size &&
        ((st = KEY_U32("attention.key_length", D)) || (st = KEY_U32("attention.value_length", D))))
        return st;
    if (c->sliding_window > 0 && (st = KEY_U32("attention.sliding_window", c->sliding_window))) return st;
    if (c->n_experts > 0 &&
        ((st = KEY_U32("expert_count", c->n_experts)) || (st = KEY_U32("expert_used_count", c->n_experts_used))))
        return st;
    if (c->family == LD_FAMILY_QWEN2MOE &&
        ((st = KEY_U32("expert_feed_forward_length", lm_expert_width(c))) ||
         (st = KEY_U32("expert_shared_feed_forward_length", c->shared_expert_size))))
        return st;
    if (c->attn_softcap > 0 && (st = KEY_F32("attn_logit_softcapping", c->attn_softcap))) return st;
    if (c->final_softcap > 0 && (st = KEY_F32("final_logit_softcapping", c->final_softcap))) return st;
    /* llama.cpp's keys for linear and YaRN scaling (Llama 3's goes in rope_freqs.weight) */
    if (rs->type == LD_ROPE_SCALING_LINEAR || rs->type == LD_ROPE_SCALING_YARN) {
        snprintf(key, sizeof key, "%s.rope.scaling.type", a->gguf_arch);
        if ((st = ld_gguf_writer_set_str(w, key, scaling_names[rs->type])) || (st = KEY_F32("rope.scaling.factor", rs->factor)))
            return st;
        if (rs->original_max_position && (st = KEY_U32("rope.scaling.original_context_length", rs->original_max_position)))
            return st;
    }
#undef KEY_U32
#undef KEY_F32
    /* liandan's own keys: what the config says exactly, for a lossless round trip */
    if (rs->type != LD_ROPE_SCALING_NONE) {
        const float vals[] = {rs->factor, (float)rs->original_max_position, rs->low_freq_factor, rs->high_freq_factor,
                              rs->beta_fast, rs->beta_slow, rs->attention_factor};
        if ((st = ld_gguf_writer_set_str(w, "liandan.rope_scaling.type", scaling_names[rs->type])) ||
            (st = ld_gguf_writer_set_array(w, "liandan.rope_scaling.params", LD_GGUF_FLOAT32, vals, 7)))
            return st;
    }
    if (c->query_scale > 0 && (st = ld_gguf_writer_set_f32(w, "liandan.attention.query_scale", c->query_scale))) return st;
    if (c->n_eos_token_ids > 1 &&
        (st = ld_gguf_writer_set_array(w, "liandan.eos_token_ids", LD_GGUF_INT32, c->eos_token_ids,
                                       (size_t)c->n_eos_token_ids)))
        return st;
    return LD_OK;
}

/* Llama 3 scaling as llama.cpp stores it: rope_freqs.weight [D/2], the divisor of each
 * frequency (unscaled / scaled). */
static ld_status add_rope_freqs(export_state *s, const ld_lm *m) {
    const ld_lm_config *c = &m->cfg;
    const int64_t half = ld_lm_head_dim(c) / 2;
    if (c->arch != LD_ARCH_LLAMA || (c->rope_scaling.type != LD_ROPE_SCALING_LLAMA3 && !m->rope_factors)) return LD_OK;
    float *f = keep(s, (size_t)half * sizeof(float));
    if (!f) return ld_ctx_status(s->ctx);
    float ms;
    ld_lm_config plain = *c;
    plain.rope_scaling.type = LD_ROPE_SCALING_NONE;
    float *base = ld_alloc(s->ctx, (size_t)half * sizeof(float));
    if (!base) return ld_ctx_status(s->ctx);
    ld_lm_rope_freqs(&plain, c->max_position, base, &ms);
    lm_rope_freqs(m, c->max_position, f, &ms);
    for (int64_t i = 0; i < half; i++) f[i] = base[i] / f[i];
    ld_free(s->ctx, base);
    return ld_gguf_writer_add_tensor(s->w, "rope_freqs.weight", 0, 1, &half, f, (size_t)half * sizeof(float));
}

static void *keep(export_state *s, size_t bytes) {
    void *p = ld_alloc(s->ctx, bytes ? bytes : 1);
    if (p) s->bufs[s->n_bufs++] = p;
    return p;
}

/* One parameter's bytes in the GGUF layout, converted or quantized into dst (the writer's
 * buffer): called at write time, so only this tensor's F32 values are held. */
static ld_status export_fill(void *user, void *dst, size_t bytes);

/* A layer's experts of one matrix, one after another in dst (each as export_fill writes a
 * matrix). */
static ld_status export_fill_experts(void *user, void *dst, size_t bytes) {
    const export_job *j = user;
    const size_t each = bytes / (size_t)j->n_experts;
    for (int64_t e = 0; e < j->n_experts; e++) {
        export_job one = *j;
        one.t = j->experts[e], one.experts = NULL;
        ld_status st = export_fill(&one, (char *)dst + (size_t)e * each, each);
        if (st) return st;
    }
    return LD_OK;
}

static ld_status export_fill(void *user, void *dst, size_t bytes) {
    const export_job *j = user;
    const ld_lm *m = j->m;
    const ld_tensor *t = j->t;
    ld_ctx *ctx = m->ctx;
    const int64_t rows = j->rows, K = j->K, n = rows * K;
    const float *src = t->data;
    float *tmp = NULL, *vals = NULL;
    if (!src) { /* a model read in place (its values from the file's form) or initialised as written */
        if (!(vals = ld_alloc(ctx, (size_t)n * sizeof(float)))) return ld_ctx_status(ctx);
        ld_status st = lm_values(m, t, false, vals);
        if (st) return ld_free(ctx, vals), st;
        src = vals;
    }
    if (j->xf != XF_NONE) {
        if (!(tmp = ld_alloc(ctx, (size_t)n * sizeof(float)))) return ld_free(ctx, vals), ld_ctx_status(ctx);
        if (j->xf == XF_TRANSPOSE) {
            for (int64_t r = 0; r < rows; r++)
                for (int64_t k = 0; k < K; k++) tmp[r * K + k] = src[k * rows + r];
        } else {
            /* biases are one value per row: treat a 1-D tensor as a column */
            int64_t prow = t->ndim == 2 ? rows : K;
            lm_rope_permute(tmp, src, prow / xf_head_dim(&m->cfg), xf_head_dim(&m->cfg), (size_t)(n / prow) * sizeof(float),
                            true);
        }
        src = tmp;
    }
    ld_status st = LD_OK;
    if (j->type == LD_F32) memcpy(dst, src, bytes);
    else if (ld_dtype_traits(j->type)->is_float) st = ld_convert(ctx, j->type, dst, LD_F32, src, n);
    else st = ld_quantize(ctx, j->type, dst, src, rows, K, j->imat);
    ld_free(ctx, tmp), ld_free(ctx, vals);
    return st;
}

/* One parameter into the writer: its GGUF shape now, its bytes (transformed to the GGUF
 * layout, then converted or quantized) when the writer writes it. */
static ld_status export_tensor(export_state *s, const ld_lm *m, const ld_tensor *t, const char *gname, lm_xform xf,
                               ld_dtype type, const ld_lm_gguf_params *p, ld_tensor *const *experts) {
    ld_ctx *ctx = s->ctx;
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, K = t->ndim == 2 ? t->shape[1] : t->shape[0];
    if (xf == XF_TRANSPOSE) rows = t->shape[1], K = t->shape[0];
    size_t bytes;
    if (ld_dtype_row_bytes(type, rows * K, &bytes))
        return ld_error(ctx, LD_ERR_SHAPE, "GGUF export: %s does not fit %s", gname, ld_dtype_traits(type)->name);
    const float *imat = NULL;
    if (type != LD_F32 && !ld_dtype_traits(type)->is_float && p->imatrix) imat = p->imatrix(p->imatrix_user, gname, K);
    export_job *j = &s->jobs[s->n_jobs++];
    *j = (export_job){m, t, xf, type, rows, K, imat, NULL, 0};
    int64_t shape[2] = {rows, K};
    const int32_t gt = ld_dtype_traits(type)->ggml_type;
    if (experts) { /* every expert of the layer: [E, rows, K] */
        j->experts = experts, j->n_experts = m->cfg.n_experts;
        int64_t shape3[3] = {m->cfg.n_experts, rows, K};
        return ld_gguf_writer_add_tensor_fn(s->w, gname, gt, 3, shape3, bytes * (size_t)m->cfg.n_experts,
                                            export_fill_experts, j);
    }
    if (t->ndim == 2 && rows == 1 && strstr(gname, "ffn_gate_inp_shexp")) /* llama.cpp's [C] vector */
        return ld_gguf_writer_add_tensor_fn(s->w, gname, gt, 1, &K, bytes, export_fill, j);
    return t->ndim == 2 ? ld_gguf_writer_add_tensor_fn(s->w, gname, gt, 2, shape, bytes, export_fill, j)
                        : ld_gguf_writer_add_tensor_fn(s->w, gname, gt, 1, &K, bytes, export_fill, j);
}

ld_status ld_lm_save_gguf(ld_lm *m, const ld_tokenizer *tok, const char *path, const ld_lm_gguf_params *p) {
    if (!m || !tok || !path) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    ld_lm_gguf_params dp = ld_lm_gguf_default_params();
    if (!p) p = &dp;
    const ld_lm_config *c = &m->cfg;
    const lm_family_info *a = lm_family(c->family);
    ld_lm_gguf_params mp;
    if (p->mix) { /* the mix's body type stands for `type` */
        mp = *p;
        mp.type = ld_quant_mix_body(p->mix);
        p = &mp;
    }
    ld_dtype embd = p->embd_type == LD_DTYPE_COUNT ? ld_lm_mix_edge_type(p->type) : p->embd_type;
    ld_dtype head = p->output_type == LD_DTYPE_COUNT ? ld_lm_mix_edge_type(p->type) : p->output_type;
    ld_dtype types[3] = {p->type, embd, head};
    for (int i = 0; i < 3; i++)
        if (!type_can_export(types[i]))
            return ld_error(ctx, LD_ERR_DTYPE, "GGUF export: cannot write tensors of type %s",
                            ld_dtype_traits(types[i]) ? ld_dtype_traits(types[i])->name : "?");
    if (ld_tokenizer_vocab_size(tok) > c->vocab_size)
        return ld_error(ctx, LD_ERR_SHAPE, "GGUF export: the tokenizer has %lld tokens, the model's vocabulary %lld",
                        (long long)ld_tokenizer_vocab_size(tok), (long long)c->vocab_size);
    int n = ld_params_count(m->params);
    export_state s = {ctx, NULL, ld_calloc(ctx, (size_t)n + 2, sizeof(void *)), 0, ld_calloc(ctx, (size_t)n + 1, sizeof(export_job)), 0};
    if (!s.bufs || !s.jobs) return ld_free(ctx, s.bufs), ld_free(ctx, s.jobs), ld_ctx_status(ctx);
    ld_status st = ld_gguf_writer_new(ctx, &s.w);
    bool quantized = ld_dtype_traits(p->type)->block_size > 1 || ld_dtype_traits(embd)->block_size > 1 ||
                     ld_dtype_traits(head)->block_size > 1;
    if (!st) st = ld_gguf_writer_set_str(s.w, "general.architecture", a->gguf_arch);
    if (!st) st = ld_gguf_writer_set_str(s.w, "general.name", p->name ? p->name : "liandan model");
    if (!st) {
        const uint32_t ftype = p->mix ? ld_quant_mix_ftype(p->mix) : (uint32_t)ld_dtype_traits(p->type)->ftype;
        st = ld_gguf_writer_set_u32(s.w, "general.file_type", ftype);
    }
    if (!st && quantized) st = ld_gguf_writer_set_u32(s.w, "general.quantization_version", 2);
    if (!st) st = set_config(s.w, a, c);
    if (!st) st = ld_tokenizer_to_gguf(tok, s.w, c->vocab_size);
    if (!st && m->chat_template) st = ld_gguf_writer_set_str(s.w, "tokenizer.chat_template", m->chat_template);
    for (int i = 0; i < n && !st; i++) {
        const ld_tensor *t = ld_params_at(m->params, i);
        char gname[LD_TENSOR_NAME_MAX];
        lm_xform xf = XF_NONE;
        int expert = 0;
        ld_tensor *const *experts = NULL;
        if (lm_gguf_expert_name(a, t->name, gname, sizeof gname, &expert)) {
            if (expert) continue; /* written with expert 0, all of the layer's in one tensor */
            experts = lm_expert_list(m, t);
            if (!experts) {
                st = ld_error(ctx, LD_ERR_STATE, "GGUF export: %s is not one of the model's experts", t->name);
                break;
            }
        } else if (!gguf_name_of(a, t->name, gname, sizeof gname, &xf)) {
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF export: parameter %s has no GGUF name", t->name);
            break;
        }
        ld_dtype type = LD_F32; /* norms, biases, learned positions, routers (as llama.cpp keeps them) */
        if (t->ndim == 2 && t != m->wpe && !strstr(gname, "ffn_gate_inp"))
            type = matrix_type(m, t, gname, xf == XF_TRANSPOSE ? t->shape[0] : t->shape[1], p, embd, head);
        st = export_tensor(&s, m, t, gname, xf, type, p, experts);
    }
    if (!st) st = add_rope_freqs(&s, m);
    if (!st) st = ld_gguf_writer_write(s.w, path);
    ld_gguf_writer_free(s.w);
    for (int i = 0; i < s.n_bufs; i++) ld_free(ctx, s.bufs[i]);
    ld_free(ctx, s.bufs);
    ld_free(ctx, s.jobs);
    return st;
}

/* ---- import ------------------------------------------------------------------------------ */

static ld_status get_dim(ld_ctx *ctx, const ld_gguf *g, const lm_family_info *a, const char *suffix, bool required,
                         int64_t dflt, int64_t *out) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", a->gguf_arch, suffix);
    if (!required && !ld_gguf_find(g, key)) return *out = dflt, LD_OK;
    return ld_gguf_get_int(ctx, g, key, 1, 1 << 24, out);
}

static ld_status get_float(ld_ctx *ctx, const ld_gguf *g, const lm_family_info *a, const char *suffix, float dflt,
                           float *out) {
    char key[96];
    snprintf(key, sizeof key, "%s.%s", a->gguf_arch, suffix);
    if (!ld_gguf_find(g, key)) return *out = dflt, LD_OK;
    ld_status st = ld_gguf_get_f32(ctx, g, key, out);
    if (!st && !isfinite(*out)) st = ld_error(ctx, LD_ERR_FORMAT, "%s is not a finite number", key);
    return st;
}

/* RoPE scaling: liandan's exact keys, else llama.cpp's (rope_freqs.weight is read with the
 * tensors: per-frequency factors). */
static ld_status read_rope_scaling(ld_ctx *ctx, const ld_gguf *g, const lm_family_info *a, ld_lm_config *c) {
    ld_rope_scaling *rs = &c->rope_scaling;
    const char *type = NULL;
    char key[96];
    ld_status st;
    if (ld_gguf_find(g, "liandan.rope_scaling.type")) {
        float *p = NULL;
        size_t n = 0;
        if ((st = ld_gguf_get_str(ctx, g, "liandan.rope_scaling.type", &type)) ||
            (st = ld_gguf_get_f32s(ctx, g, "liandan.rope_scaling.params", &p, &n)))
            return st;
        if (n != 7) st = ld_error(ctx, LD_ERR_FORMAT, "liandan.rope_scaling.params has %zu values, not 7", n);
        else
            *rs = (ld_rope_scaling){.factor = p[0], .original_max_position = (int64_t)p[1], .low_freq_factor = p[2],
                                    .high_freq_factor = p[3], .beta_fast = p[4], .beta_slow = p[5], .attention_factor = p[6]};
        ld_free(ctx, p);
        if (st) return st;
    } else {
        snprintf(key, sizeof key, "%s.rope.scaling.type", a->gguf_arch);
        if (ld_gguf_find(g, key) && (st = ld_gguf_get_str(ctx, g, key, &type))) return st;
        if (!type || !strcmp(type, "none")) return LD_OK;
        int64_t orig = 0;
        if ((st = get_float(ctx, g, a, "rope.scaling.factor", 1.0f, &rs->factor)) ||
            (st = get_dim(ctx, g, a, "rope.scaling.original_context_length", false, 0, &orig)) ||
            (st = get_float(ctx, g, a, "rope.scaling.yarn_beta_fast", 32.0f, &rs->beta_fast)) ||
            (st = get_float(ctx, g, a, "rope.scaling.yarn_beta_slow", 1.0f, &rs->beta_slow)))
            return st;
        rs->original_max_position = orig;
    }
    for (int i = 1; i < (int)(sizeof scaling_names / sizeof scaling_names[0]); i++)
        if (!strcmp(type, scaling_names[i])) return rs->type = (ld_rope_scaling_type)i, LD_OK;
    return ld_error(ctx, LD_ERR_UNSUPPORTED, "RoPE scaling '%.40s' is not supported (linear, yarn, llama3, dynamic)", type);
}

/* The model config from the architecture keys; vocabulary and tying from the tensors. */
static ld_status read_config(ld_ctx *ctx, const ld_gguf *g, const char *path, const lm_family_info *a, ld_lm_config *c) {
    *c = ld_lm_default_config(a->arch);
    c->family = a->family;
    c->qkv_bias = ld_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    ld_status st;
    if ((st = get_dim(ctx, g, a, "context_length", true, 0, &c->max_position)) ||
        (st = get_dim(ctx, g, a, "embedding_length", true, 0, &c->hidden_size)) ||
        (st = get_dim(ctx, g, a, "block_count", true, 0, &c->n_layers)) ||
        (st = get_dim(ctx, g, a, "feed_forward_length", true, 0, &c->intermediate_size)) ||
        (st = get_dim(ctx, g, a, "attention.head_count", true, 0, &c->n_heads)) ||
        (st = get_dim(ctx, g, a, "attention.head_count_kv", false, c->n_heads, &c->n_kv_heads)))
        return ld_error_wrap(ctx, st, "%s: ", path);
    if (a->arch == LD_ARCH_GPT2) st = get_float(ctx, g, a, "attention.layer_norm_epsilon", 1e-5f, &c->norm_eps);
    else st = get_float(ctx, g, a, "attention.layer_norm_rms_epsilon", 1e-6f, &c->norm_eps);
    if (!st) st = get_float(ctx, g, a, "rope.freq_base", 10000.0f, &c->rope_theta);
    if (st) return ld_error_wrap(ctx, st, "%s: ", path);
    if (a->arch == LD_ARCH_LLAMA) {
        int64_t rot, kl, vl, window;
        const int64_t even = c->hidden_size % c->n_heads == 0 ? c->hidden_size / c->n_heads : 0;
        if ((st = get_dim(ctx, g, a, "attention.key_length", false, even, &kl)) ||
            (st = get_dim(ctx, g, a, "attention.value_length", false, kl, &vl)))
            return ld_error_wrap(ctx, st, "%s: ", path);
        if (kl != vl)
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: key length %lld != value length %lld is not supported", path,
                            (long long)kl, (long long)vl);
        if (kl != even) c->head_dim = kl;
        if (!kl && (st = ld_lm_config_validate(ctx, c))) return ld_error_wrap(ctx, st, "%s: ", path); /* heads vs width */
        const int64_t D = ld_lm_head_dim(c);
        if ((st = get_dim(ctx, g, a, "rope.dimension_count", false, D, &rot))) return ld_error_wrap(ctx, st, "%s: ", path);
        if (rot != D)
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: partial rotary embeddings (%lld of %lld dims) are not supported",
                            path, (long long)rot, (long long)D);
        if ((st = read_rope_scaling(ctx, g, a, c))) return ld_error_wrap(ctx, st, "%s: ", path);
        /* Gemma 2: a 4096 window on every other layer and soft-capping unless the file says otherwise */
        const bool gemma2 = a->family == LD_FAMILY_GEMMA2;
        if ((st = get_dim(ctx, g, a, "attention.sliding_window", false, gemma2 ? 4096 : 0, &window)) ||
            (st = get_float(ctx, g, a, "attn_logit_softcapping", gemma2 ? 50.0f : 0.0f, &c->attn_softcap)) ||
            (st = get_float(ctx, g, a, "final_logit_softcapping", gemma2 ? 30.0f : 0.0f, &c->final_softcap)))
            return ld_error_wrap(ctx, st, "%s: ", path);
        c->sliding_window = window, c->sliding_window_pattern = a->swa_pattern;
        if (a->experts) { /* Mixtral renormalises the top-k gates (llama.cpp's llama), Qwen2-MoE does not */
            c->moe_norm_topk = a->family == LD_FAMILY_MIXTRAL, c->router_aux_loss_coef = 0.001f;
            if ((st = get_dim(ctx, g, a, "expert_count", true, 0, &c->n_experts)) ||
                (st = get_dim(ctx, g, a, "expert_used_count", true, 0, &c->n_experts_used)))
                return ld_error_wrap(ctx, st, "%s: ", path);
            if (a->family == LD_FAMILY_QWEN2MOE &&
                ((st = get_dim(ctx, g, a, "expert_feed_forward_length", true, 0, &c->moe_intermediate_size)) ||
                 (st = get_dim(ctx, g, a, "expert_shared_feed_forward_length", false, 0, &c->shared_expert_size))))
                return ld_error_wrap(ctx, st, "%s: ", path);
        }
        if (gemma2 && c->n_layers == 46) c->query_scale = 1.0f / sqrtf((float)(c->hidden_size / c->n_heads)); /* 27B */
        if (ld_gguf_find(g, "liandan.attention.query_scale") &&
            (st = ld_gguf_get_f32(ctx, g, "liandan.attention.query_scale", &c->query_scale)))
            return ld_error_wrap(ctx, st, "%s: ", path);
    }
    const ld_tensor_info *te = ld_gguf_find_tensor(g, "token_embd.weight");
    if (!te || te->ndim != 2)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: token_embd.weight is missing or not a matrix", path);
    c->vocab_size = te->shape[0];
    c->tie_embeddings = a->always_tied || !ld_gguf_find_tensor(g, "output.weight");
    int64_t id;
    if (ld_gguf_find(g, "tokenizer.ggml.bos_token_id") &&
        !ld_gguf_get_int(ctx, g, "tokenizer.ggml.bos_token_id", 0, c->vocab_size - 1, &id))
        c->bos_token_id = (int32_t)id;
    if (ld_gguf_find(g, "tokenizer.ggml.eos_token_id") &&
        !ld_gguf_get_int(ctx, g, "tokenizer.ggml.eos_token_id", 0, c->vocab_size - 1, &id))
        c->eos_token_id = (int32_t)id;
    /* every id that ends a turn: liandan's list, else EOS and llama.cpp's end-of-turn ids */
    int32_t *ids = NULL;
    size_t n = 0;
    if (ld_gguf_find(g, "liandan.eos_token_ids")) {
        if ((st = ld_gguf_get_i32s(ctx, g, "liandan.eos_token_ids", &ids, &n))) return ld_error_wrap(ctx, st, "%s: ", path);
        for (size_t i = 0; i < n && !st; i++)
            if (n > LD_LM_MAX_EOS || ids[i] < 0 || ids[i] >= c->vocab_size)
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: liandan.eos_token_ids: %zu ids, id %d (vocabulary %lld)", path, n,
                              ids[i], (long long)c->vocab_size);
        for (size_t i = 0; !st && i < n; i++) c->eos_token_ids[i] = ids[i];
        if (!st) c->n_eos_token_ids = (int)n;
        ld_free(ctx, ids);
        if (st) return st;
    } else {
        static const char *const eot_keys[] = {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"};
        c->eos_token_ids[c->n_eos_token_ids++] = c->eos_token_id;
        for (size_t i = 0; i < 2; i++)
            if (ld_gguf_find(g, eot_keys[i]) && !ld_gguf_get_int(ctx, g, eot_keys[i], 0, c->vocab_size - 1, &id) &&
                id != c->eos_token_id)
                c->eos_token_ids[c->n_eos_token_ids++] = (int32_t)id;
        ld_ctx_clear_error(ctx);
    }
    if ((st = ld_lm_config_validate(ctx, c))) return ld_error_wrap(ctx, st, "%s: ", path);
    return LD_OK;
}

/* Per-frequency RoPE divisors (llama.cpp's rope_freqs.weight, Llama 3 scaling), when the
 * file has them and liandan's own scaling keys do not already describe them. */
static ld_status read_rope_factors(ld_lm *m, const ld_gguf *g, const char *path) {
    const ld_tensor_info *t = ld_gguf_find_tensor(g, "rope_freqs.weight");
    if (!t || m->cfg.arch != LD_ARCH_LLAMA || ld_gguf_find(g, "liandan.rope_scaling.type")) return LD_OK;
    const int64_t half = ld_lm_head_dim(&m->cfg) / 2;
    if (t->ndim != 1 || t->shape[0] != half || t->dtype != LD_F32)
        return ld_error(m->ctx, LD_ERR_FORMAT, "%s: rope_freqs.weight must be F32 [%lld] (head_dim / 2)", path,
                        (long long)half);
    if (!(m->rope_factors = ld_alloc(m->ctx, (size_t)half * sizeof(float)))) return ld_ctx_status(m->ctx);
    memcpy(m->rope_factors, t->data, (size_t)half * sizeof(float));
    for (int64_t i = 0; i < half; i++)
        if (!(m->rope_factors[i] > 0) || !isfinite(m->rope_factors[i]))
            return ld_error(m->ctx, LD_ERR_FORMAT, "%s: rope_freqs.weight[%lld] = %g is not a positive number", path,
                            (long long)i, m->rope_factors[i]);
    /* the Llama 3.x releases' scalings are recognised, so the config can say them (and a
     * model directory written from the file carries rope_scaling) */
    static const ld_rope_scaling known[] = {
        {LD_ROPE_SCALING_LLAMA3, 8, 8192, 1, 4, 0, 0, 0},  /* Llama 3.1 */
        {LD_ROPE_SCALING_LLAMA3, 32, 8192, 1, 4, 0, 0, 0}, /* Llama 3.2 */
    };
    float *plain = ld_alloc(m->ctx, 2 * (size_t)half * sizeof(float)), ms;
    if (!plain) return ld_ctx_status(m->ctx);
    ld_lm_config c = m->cfg;
    c.rope_scaling.type = LD_ROPE_SCALING_NONE;
    ld_lm_rope_freqs(&c, c.max_position, plain, &ms);
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        c.rope_scaling = known[k];
        ld_lm_rope_freqs(&c, c.max_position, plain + half, &ms);
        bool same = true;
        for (int64_t i = 0; i < half && same; i++) same = fabsf(plain[i] / plain[half + i] - m->rope_factors[i]) <= 1e-4f * m->rope_factors[i];
        if (same) {
            m->cfg.rope_scaling = known[k];
            ld_free(m->ctx, m->rope_factors);
            m->rope_factors = NULL;
            break;
        }
    }
    ld_free(m->ctx, plain);
    return LD_OK;
}

/* Whether matrices of type t can be multiplied as they are (ld_qmatmul reads them). */
static bool matmul_reads(ld_ctx *ctx, ld_dtype t, int64_t K) {
    size_t sz;
    bool ok = ld_qmatmul_scratch_size(ctx, t, 1, K, &sz) == LD_OK;
    ld_ctx_clear_error(ctx);
    return ok;
}

/* A matrix read in place: the file's bytes become its form, or, for a type the kernels do
 * not multiply, an F32 copy of its rows (in the file's row order). */
static ld_status place_matrix(ld_lm *m, const ld_tensor_info *info, ld_tensor *t, const char *path, const char *gname,
                              lm_xform xf) {
    ld_ctx *ctx = m->ctx;
    const bool rope = xf == XF_ROPE_Q || xf == XF_ROPE_K;
    const int64_t N = info->shape[0], K = info->shape[1];
    /* the embedding alone is only looked up: any type ld_dequantize reads will do */
    const bool lookup_only = t == m->wte && t != m->lm_head;
    if (lookup_only ? info->dtype != LD_DTYPE_COUNT && info->dtype != LD_I32 : matmul_reads(ctx, info->dtype, K))
        return lm_set_form(m, t, info->dtype, info->data, false, rope, false);
    float *copy = ld_alloc(ctx, (size_t)(N * K) * sizeof(float));
    if (!copy) return ld_ctx_status(ctx);
    ld_status st = ld_dequantize(ctx, info->dtype, info->data, copy, N * K);
    if (st) {
        ld_free(ctx, copy);
        return ld_error_wrap(ctx, st, "%s: tensor %s: ", path, gname);
    }
    ld_log(ctx, LD_LOG_INFO, "%s: %s (%s) is computed from an F32 copy", path, gname, info->dtype_name);
    return lm_set_form(m, t, LD_F32, copy, false, rope, true);
}

/* Fills parameter t from the file's tensor: checks its shape and type, then either reads
 * it in place (matrices of a model loaded for inference) or dequantizes it into t and undoes
 * the layout transform. */
static ld_status import_tensor(ld_lm *m, const ld_gguf *g, const char *path, ld_tensor *t, const char *gname,
                               lm_xform xf, int expert) {
    ld_ctx *ctx = m->ctx;
    const ld_tensor_info *info = ld_gguf_find_tensor(g, gname);
    if (!info)
        return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: tensor %s (for %s) is missing", path, gname, t->name);
    ld_tensor_info one;
    if (expert >= 0) { /* expert `expert` of the layer's [E, N, K] tensor: its own [N, K] rows */
        const int64_t E = m->cfg.n_experts;
        size_t each;
        if (info->ndim != 3 || info->shape[0] != E || info->shape[1] != t->shape[0] || info->shape[2] != t->shape[1])
            return ld_error(ctx, LD_ERR_SHAPE, "%s: tensor %s has %d dims [%lld, %lld, %lld], expected [%lld, %lld, %lld] "
                            "(experts, rows, columns)", path, gname, info->ndim, (long long)info->shape[0],
                            (long long)(info->ndim > 1 ? info->shape[1] : 0), (long long)(info->ndim > 2 ? info->shape[2] : 0),
                            (long long)E, (long long)t->shape[0], (long long)t->shape[1]);
        if (info->dtype == LD_DTYPE_COUNT || ld_dtype_row_bytes(info->dtype, t->shape[0] * t->shape[1], &each))
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which liandan does not compute with",
                            path, gname, info->dtype_name);
        one = *info;
        one.ndim = 2, one.shape[0] = t->shape[0], one.shape[1] = t->shape[1];
        one.data = (const uint8_t *)info->data + (size_t)expert * each, one.nbytes = each;
        info = &one;
    }
    int64_t want[2] = {t->shape[0], t->ndim == 2 ? t->shape[1] : 0};
    if (xf == XF_TRANSPOSE) want[0] = t->shape[1], want[1] = t->shape[0];
    if (t->ndim == 2 && t->shape[0] == 1 && info->ndim == 1 && info->shape[0] == t->shape[1]) { /* [C] for [1, C] */
        one = *info;
        one.ndim = 2, one.shape[0] = 1, one.shape[1] = t->shape[1];
        info = &one;
    }
    if (info->ndim != t->ndim || info->shape[0] != want[0] || (t->ndim == 2 && info->shape[1] != want[1])) {
        char buf[64];
        return ld_error(ctx, LD_ERR_SHAPE, "%s: tensor %s has %d dims [%lld, %lld], expected %s%s", path, gname,
                        info->ndim, (long long)info->shape[0], (long long)(info->ndim > 1 ? info->shape[1] : 0),
                        ld_tensor_shape_str(t, buf, sizeof buf), xf == XF_TRANSPOSE ? " transposed" : "");
    }
    if (info->dtype == LD_DTYPE_COUNT || info->dtype == LD_I32)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: tensor %s has type %s, which liandan does not compute with", path,
                        gname, info->dtype_name);
    if (m->in_place && lm_is_matrix(m, t)) return place_matrix(m, info, t, path, gname, xf);
    int64_t n = ld_tensor_numel(t);
    int64_t rows = want[0], K = n / rows;
    float *dst = t->data, *tmp = NULL;
    if (xf != XF_NONE && !(dst = tmp = ld_alloc(ctx, (size_t)n * sizeof(float)))) return ld_ctx_status(ctx);
    ld_status st = ld_dequantize(ctx, info->dtype, info->data, dst, n);
    if (!st && xf == XF_TRANSPOSE) {
        float *p = t->data; /* file [N, K] -> parameter [K, N] */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < K; k++) p[k * rows + r] = tmp[r * K + k];
    } else if (!st && xf != XF_NONE) {
        int64_t prow = t->ndim == 2 ? rows : n;
        lm_rope_permute(t->data, tmp, prow / xf_head_dim(&m->cfg), xf_head_dim(&m->cfg), (size_t)(n / prow) * sizeof(float),
                        false);
    }
    ld_free(ctx, tmp);
    if (st) return ld_error_wrap(ctx, st, "%s: tensor %s: ", path, gname);
    return LD_OK;
}

ld_lm_load_params ld_lm_load_default_params(void) {
    return (ld_lm_load_params){.trainable = false};
}

/* Builds the model from an open GGUF file; takes ownership of g (closed on failure, else
 * kept by the model while its forms point into it). */
static ld_status load_from(ld_ctx *ctx, ld_gguf *g, const char *path, const ld_lm_load_params *p, bool file_backed,
                           ld_lm **out, ld_tokenizer **tok) {
    const char *arch_name;
    ld_status st;
    if ((st = ld_gguf_get_str(ctx, g, "general.architecture", &arch_name))) {
        ld_gguf_close(g);
        return ld_error_wrap(ctx, st, "%s: ", path);
    }
    const lm_family_info *a = lm_family_by_gguf_arch(arch_name);
    /* llama with experts is Mixtral (llama.cpp writes both as "llama") */
    if (a && a->family == LD_FAMILY_LLAMA && ld_gguf_find(g, "llama.expert_count")) a = lm_family(LD_FAMILY_MIXTRAL);
    if (!a) { /* the message first: arch_name lives in g */
        char list[128];
        st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: GGUF architecture '%.60s' is not supported (%s)", path, arch_name,
                      lm_family_list(true, list, sizeof list));
        ld_gguf_close(g);
        return st;
    }
    ld_lm_config cfg;
    ld_lm *m = NULL;
    if ((st = read_config(ctx, g, path, a, &cfg))) {
        ld_gguf_close(g);
        return st;
    }
    /* every parameter comes from a tensor of the file: a config asking for more elements
     * than the file holds is refused before anything is allocated from it */
    double held = 0;
    for (size_t i = 0; i < ld_gguf_tensor_count(g); i++) {
        const ld_tensor_info *t = ld_gguf_tensor_at(g, i);
        double e = 1;
        for (int d = 0; d < t->ndim; d++) e *= (double)t->shape[d];
        held += e;
    }
    if ((double)ld_lm_config_num_params(&cfg) > held) {
        ld_gguf_close(g);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: the configuration needs %lld parameters but the file's tensors hold %.0f",
                        path, (long long)ld_lm_config_num_params(&cfg), held);
    }
    if ((st = lm_build(ctx, &cfg, 0, p->trainable ? LM_INIT_ZERO : LM_INIT_IN_PLACE, &m))) {
        ld_gguf_close(g);
        return st;
    }
    int n = ld_params_count(m->params);
    m->gguf = g;
    m->file_backed = file_backed && !p->trainable;
    size_t used = ld_gguf_find_tensor(g, "rope_freqs.weight") ? 1 : 0;
    if ((st = read_rope_factors(m, g, path))) n = 0;
    for (int i = 0; i < n && !st; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        char gname[LD_TENSOR_NAME_MAX];
        lm_xform xf = XF_NONE;
        int expert = -1;
        if (lm_gguf_expert_name(a, t->name, gname, sizeof gname, &expert))
            st = import_tensor(m, g, path, t, gname, XF_NONE, expert), used += expert == 0;
        else if (!gguf_name_of(a, t->name, gname, sizeof gname, &xf))
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: no GGUF name for %s", path, t->name);
        else st = import_tensor(m, g, path, t, gname, xf, -1), used++;
    }
    if (!st && used < ld_gguf_tensor_count(g))
        ld_log(ctx, LD_LOG_WARN, "%s: %zu tensors of the file are not used by the %s model", path,
               ld_gguf_tensor_count(g) - used, a->gguf_arch);
    const char *tmpl = NULL;
    if (!st && ld_gguf_find(g, "tokenizer.chat_template") &&
        !(st = ld_gguf_get_str(ctx, g, "tokenizer.chat_template", &tmpl)) && !(m->chat_template = ld_strdup(ctx, tmpl)))
        st = ld_ctx_status(ctx);
    if (!st && tok) {
        if ((st = ld_tokenizer_from_gguf(ctx, g, path, tok))) {
        } else if (ld_tokenizer_vocab_size(*tok) != cfg.vocab_size) {
            st = ld_error(ctx, LD_ERR_SHAPE, "%s: the tokenizer has %lld tokens but token_embd.weight %lld rows", path,
                          (long long)ld_tokenizer_vocab_size(*tok), (long long)cfg.vocab_size);
            ld_tokenizer_free(*tok);
            *tok = NULL;
        }
    }
    if (!st && p->trainable) { /* every value is copied: the file is not needed any more */
        ld_gguf_close(m->gguf);
        m->gguf = NULL;
    }
    if (st) {
        if (tok && *tok) ld_tokenizer_free(*tok), *tok = NULL;
        ld_lm_free(m);
        return st;
    }
    *out = m;
    return LD_OK;
}

ld_status ld_lm_load_gguf_ex(ld_ctx *ctx, const char *path, const ld_lm_load_params *p, ld_lm **out,
                             ld_tokenizer **tok) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_load_gguf: NULL argument");
    *out = NULL;
    if (tok) *tok = NULL;
    ld_lm_load_params dp = ld_lm_load_default_params();
    ld_gguf *g = NULL;
    ld_status st = ld_gguf_open(ctx, path, &g);
    return st ? st : load_from(ctx, g, path, p ? p : &dp, true, out, tok);
}

ld_status ld_lm_load_gguf(ld_ctx *ctx, const char *path, ld_lm **out, ld_tokenizer **tok) {
    ld_lm_load_params p = {.trainable = true};
    return ld_lm_load_gguf_ex(ctx, path, &p, out, tok);
}

ld_status ld_lm_load_gguf_memory(ld_ctx *ctx, const char *name, const void *data, size_t size,
                                 const ld_lm_load_params *p, ld_lm **out, ld_tokenizer **tok) {
    if (!data || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_load_gguf_memory: NULL argument");
    *out = NULL;
    if (tok) *tok = NULL;
    if (!name) name = "GGUF";
    ld_lm_load_params dp = ld_lm_load_default_params();
    ld_gguf *g = NULL;
    ld_status st = ld_gguf_open_memory(ctx, name, data, size, &g);
    return st ? st : load_from(ctx, g, name, p ? p : &dp, false, out, tok);
}

bool lm_frozen_form(const ld_lm *m, const ld_tensor *w, ld_frozen_matrix *out) {
    if (w->data || (w->flags & LD_TENSOR_TRAINABLE) || w->ndim != 2) return false;
    const lm_form *f = lm_form_of(m, w);
    if (!f || f->kn || f->rope_perm) return false; /* lm_forms_hf_order puts q/k rows back first */
    bool kn = m->cfg.arch == LD_ARCH_GPT2 && w != m->wte; /* Conv1D parameters are [K, N]; forms [N, K] */
    int64_t N = kn ? w->shape[1] : w->shape[0], K = kn ? w->shape[0] : w->shape[1];
    size_t rb;
    if (ld_dtype_row_bytes(f->dtype, K, &rb)) return false;
    *out = (ld_frozen_matrix){.dtype = f->dtype, .data = f->data, .N = N, .K = K, .row_bytes = rb,
                              .decode = ld_dequantize, .name = w->name};
    return true;
}

ld_status lm_forms_hf_order(ld_lm *m) {
    const int64_t D = xf_head_dim(&m->cfg);
    for (int i = 0; i < m->n_forms; i++) {
        const lm_form f = m->forms[i];
        if (!f.rope_perm || f.kn) continue;
        int64_t N = f.w->shape[0], K = f.w->shape[1];
        size_t rb;
        ld_status st = ld_dtype_row_bytes(f.dtype, K, &rb);
        if (st) return st;
        void *rows = ld_alloc(m->ctx, (size_t)N * rb);
        if (!rows) return ld_ctx_status(m->ctx);
        lm_rope_permute(rows, f.data, N / D, D, rb, false);
        if ((st = lm_set_form(m, f.w, f.dtype, rows, false, false, true))) {
            ld_free(m->ctx, rows);
            return st;
        }
    }
    return LD_OK;
}

bool ld_lm_gguf_sniff(const char *path) {
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    bool yes = f && fread(magic, 1, 4, f) == 4 && !memcmp(magic, "GGUF", 4);
    if (f) fclose(f);
    return yes;
}

bool ld_lm_is_quantized(const ld_lm *m) {
    for (int i = 0; m && i < m->n_forms; i++)
        if (ld_dtype_traits(m->forms[i].dtype)->block_size > 1) return true;
    return false;
}

bool lm_gguf_export_rows(const ld_lm *m, const char *param, char *name, size_t cap, const char **arch,
                         int64_t *rope_head_dim) {
    const lm_family_info *a = lm_family(m->cfg.family);
    lm_xform xf;
    if (!a || !gguf_name_of(a, param, name, cap, &xf)) return false;
    *arch = a->gguf_arch;
    *rope_head_dim = xf == XF_ROPE_Q || xf == XF_ROPE_K ? xf_head_dim(&m->cfg) : 0;
    return true;
}

void lm_gguf_rope_rows(void *dst, const void *src, int64_t rows, int64_t head_dim, size_t row_bytes) {
    lm_rope_permute(dst, src, rows / head_dim, head_dim, row_bytes, true);
}

bool ld_lm_gguf_tensor_name(const ld_lm *m, const char *param, char *out, size_t cap) {
    lm_xform xf;
    return m && param && out && gguf_name_of(lm_family(m->cfg.family), param, out, cap, &xf);
}

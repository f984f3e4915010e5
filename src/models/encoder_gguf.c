/* models/encoder_gguf.c — the bert encoder as a GGUF file the way llama.cpp's "bert"
 * architecture reads it (its embedding path: token, position and type embeddings, post-LN
 * layers, pooling by bert.pooling_type). Names come from the tables of encoder.c; matrices
 * keep the nn.Linear [N, K] layout that GGUF uses. llama.cpp's bert has no MLM head, so the
 * file holds the encoder only. */
#include <stdio.h>
#include <string.h>

#include "liandan/io.h"
#include "liandan/quant.h"
#include "models/encoder_internal.h"

ld_encoder_gguf_params ld_encoder_gguf_default_params(void) {
    return (ld_encoder_gguf_params){.type = LD_F32, .pooling = LD_POOL_MEAN, .name = NULL};
}

/* One tensor into the writer as `type` (matrices) or F32 (vectors); the converted data goes
 * to *keep, which the caller frees after the write. */
static ld_status add_tensor(ld_ctx *ctx, ld_gguf_writer *w, const ld_tensor *t, const char *name, ld_dtype type,
                            void **keep) {
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, K = t->shape[t->ndim - 1], n = rows * K;
    if (t->ndim != 2) type = LD_F32;
    if (type != LD_F32 && K % ld_dtype_traits(type)->block_size) type = LD_F16; /* rows that do not fit the blocks */
    size_t bytes;
    if (ld_dtype_row_bytes(type, n, &bytes)) return ld_error(ctx, LD_ERR_SHAPE, "GGUF export: %s does not fit %s", name, ld_dtype_traits(type)->name);
    if (!(*keep = ld_alloc(ctx, bytes))) return ld_ctx_status(ctx);
    ld_status st;
    if (type == LD_F32) memcpy(*keep, t->data, bytes), st = LD_OK;
    else if (ld_dtype_traits(type)->is_float) st = ld_convert(ctx, type, *keep, LD_F32, t->data, n);
    else st = ld_quantize(ctx, type, *keep, t->data, rows, K, NULL);
    if (st) return ld_error_wrap(ctx, st, "GGUF export: tensor %s: ", name);
    return ld_gguf_writer_add_tensor(w, name, ld_dtype_traits(type)->ggml_type, t->ndim, t->shape, *keep, bytes);
}

ld_status ld_encoder_save_gguf(ld_encoder *m, const ld_tokenizer *tok, const char *path, const ld_encoder_gguf_params *p) {
    if (!m || !tok || !path) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    const ld_encoder_config *c = &m->cfg;
    ld_encoder_gguf_params dp = ld_encoder_gguf_default_params();
    if (!p) p = &dp;
    if (c->arch != LD_ENCODER_BERT)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF export: llama.cpp has no architecture for esm encoders (bert only)");
    if (c->quick_gelu || c->causal)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF export: llama.cpp's bert has no %s",
                        c->quick_gelu ? "quick_gelu activation" : "causal attention");
    if (!(p->type == LD_F32 || p->type == LD_F16 || p->type == LD_BF16 || ld_quant_type_supported(p->type)))
        return ld_error(ctx, LD_ERR_DTYPE, "GGUF export: cannot write tensors of type %s",
                        ld_dtype_traits(p->type) ? ld_dtype_traits(p->type)->name : "?");
    if (ld_tokenizer_vocab_size(tok) > c->vocab_size)
        return ld_error(ctx, LD_ERR_SHAPE, "GGUF export: the tokenizer has %lld tokens, the model's vocabulary %lld",
                        (long long)ld_tokenizer_vocab_size(tok), (long long)c->vocab_size);
    int n_max = ld_params_count(m->params);
    void **bufs = ld_calloc(ctx, (size_t)n_max, sizeof *bufs);
    if (!bufs) return ld_ctx_status(ctx);
    ld_gguf_writer *w = NULL;
    ld_status st = ld_gguf_writer_new(ctx, &w);
    int nb = 0;
#define U32(key, v) (st ? st : (st = ld_gguf_writer_set_u32(w, key, (uint32_t)(v))))
    if (!st) st = ld_gguf_writer_set_str(w, "general.architecture", "bert");
    if (!st) st = ld_gguf_writer_set_str(w, "general.name", p->name ? p->name : "liandan encoder");
    U32("general.file_type", p->type == LD_F16 ? 1 : p->type == LD_Q8_0 ? 7 : p->type == LD_BF16 ? 32 : 0);
    U32("bert.context_length", c->max_position);
    U32("bert.embedding_length", c->hidden_size);
    U32("bert.feed_forward_length", c->intermediate_size);
    U32("bert.block_count", c->n_layers);
    U32("bert.attention.head_count", c->n_heads);
    if (!st) st = ld_gguf_writer_set_f32(w, "bert.attention.layer_norm_epsilon", c->norm_eps);
    if (!st) st = ld_gguf_writer_set_bool(w, "bert.attention.causal", false);
    U32("bert.pooling_type", p->pooling == LD_POOL_CLS ? 2 : 1); /* llama_pooling_type: 1 mean, 2 cls */
    if (!st) st = ld_tokenizer_to_gguf(tok, w, c->vocab_size);
    U32("tokenizer.ggml.token_type_count", c->type_vocab_size);
#undef U32
    for (const enc_top_param *tp = enc_top_params(c->arch); !st && tp->hf; tp++) {
        if (!tp->gguf) continue; /* the MLM head */
        st = add_tensor(ctx, w, ENC_FIELD(m, tp->field), tp->gguf, p->type, &bufs[nb++]);
    }
    for (int l = 0; !st && l < c->n_layers; l++)
        for (int i = 0; !st && i < enc_n_layer_params; i++) {
            char name[LD_TENSOR_NAME_MAX];
            snprintf(name, sizeof name, "blk.%d.%s", l, enc_layer_params[i].gguf);
            const ld_tensor *t = ENC_FIELD(&m->layers[l], enc_layer_params[i].field);
            if (nb == n_max) break;
            st = add_tensor(ctx, w, t, name, p->type, &bufs[nb++]);
        }
    if (!st) st = ld_gguf_writer_write(w, path);
    ld_gguf_writer_free(w);
    for (int i = 0; i < nb; i++) ld_free(ctx, bufs[i]);
    ld_free(ctx, bufs);
    return st;
}

/* ---- import -------------------------------------------------------------------------- */

static ld_status get_dim(ld_ctx *ctx, const ld_gguf *g, const char *key, int64_t *out) {
    return ld_gguf_get_int(ctx, g, key, 1, 1 << 24, out);
}

/* Copies the file's tensor `name` (any type ld_dequantize reads) into parameter t, checking
 * the shape. */
static ld_status load_tensor(ld_ctx *ctx, const ld_gguf *g, const char *path, const char *name, ld_tensor *t) {
    const ld_tensor_info *info = ld_gguf_find_tensor(g, name);
    if (!info) return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: tensor '%s' is missing", path, name);
    bool same = info->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = info->shape[d] == t->shape[d];
    if (!same) {
        char want[64];
        return ld_error(ctx, LD_ERR_SHAPE, "%s: tensor '%s' does not have the shape %s the keys imply", path, name,
                        ld_tensor_shape_str(t, want, sizeof want));
    }
    if (info->dtype == LD_DTYPE_COUNT)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which liandan does not read", path, name,
                        info->dtype_name);
    ld_status st = ld_dequantize(ctx, info->dtype, info->data, t->data, ld_tensor_numel(t));
    return st ? ld_error_wrap(ctx, st, "%s: tensor '%s': ", path, name) : LD_OK;
}

ld_status ld_encoder_load_gguf(ld_ctx *ctx, const char *path, ld_encoder **out, ld_tokenizer **tok) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_encoder_load_gguf: NULL argument");
    *out = NULL;
    if (tok) *tok = NULL;
    ld_gguf *g = NULL;
    ld_status st = ld_gguf_open(ctx, path, &g);
    if (st) return st;
    const char *arch = NULL;
    ld_encoder_config c = ld_encoder_default_config(LD_ENCODER_BERT);
    c.gelu_tanh = true, c.dropout = 0; /* llama.cpp's bert computes the tanh GELU */
    const ld_tensor_info *emb = ld_gguf_find_tensor(g, "token_embd.weight"), *types = ld_gguf_find_tensor(g, "token_types.weight");
    if ((st = ld_gguf_get_str(ctx, g, "general.architecture", &arch))) goto out;
    if (strcmp(arch, "bert")) {
        st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: architecture '%.40s' is not an encoder liandan reads (bert)", path, arch);
        goto out;
    }
    if ((st = get_dim(ctx, g, "bert.context_length", &c.max_position)) ||
        (st = get_dim(ctx, g, "bert.embedding_length", &c.hidden_size)) ||
        (st = get_dim(ctx, g, "bert.feed_forward_length", &c.intermediate_size)) ||
        (st = get_dim(ctx, g, "bert.block_count", &c.n_layers)) ||
        (st = get_dim(ctx, g, "bert.attention.head_count", &c.n_heads)) ||
        (st = ld_gguf_get_f32(ctx, g, "bert.attention.layer_norm_epsilon", &c.norm_eps)))
        goto out;
    if (!emb || emb->ndim != 2 || !types || types->ndim != 2) {
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: token_embd.weight and token_types.weight must be matrices", path);
        goto out;
    }
    c.vocab_size = emb->shape[0], c.type_vocab_size = types->shape[0];
    int64_t pad = 0;
    if (ld_gguf_find(g, "tokenizer.ggml.padding_token_id") &&
        (st = ld_gguf_get_int(ctx, g, "tokenizer.ggml.padding_token_id", 0, c.vocab_size - 1, &pad)))
        goto out;
    c.pad_token_id = (int32_t)pad;
    ld_encoder *m = NULL;
    if ((st = ld_encoder_new(ctx, &c, 0, &m))) goto out;
    for (const enc_top_param *tp = enc_top_params(c.arch); !st && tp->hf; tp++)
        if (tp->gguf) st = load_tensor(ctx, g, path, tp->gguf, ENC_FIELD(m, tp->field));
    for (int l = 0; !st && l < c.n_layers; l++)
        for (int i = 0; !st && i < enc_n_layer_params; i++) {
            char name[LD_TENSOR_NAME_MAX];
            snprintf(name, sizeof name, "blk.%d.%s", l, enc_layer_params[i].gguf);
            st = load_tensor(ctx, g, path, name, ENC_FIELD(&m->layers[l], enc_layer_params[i].field));
        }
    if (!st && tok) st = ld_tokenizer_from_gguf(ctx, g, path, tok);
    if (st) ld_encoder_free(m);
    else {
        ld_log(ctx, LD_LOG_INFO, "%s: a bert encoder without an MLM head (GGUF holds the encoder only)", path);
        *out = m;
    }
out:
    ld_gguf_close(g);
    return st;
}

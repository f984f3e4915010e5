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

/* models/encoder_infer.c — using a trained encoder: opening a model directory with its
 * tokenizer, encoding text into input rows, embeddings (pooled hidden states), hidden states
 * per token, fill-mask predictions and the held-out masked-LM evaluation with its unigram
 * baseline. Every forward here runs on a tape that records nothing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/team.h"
#include "liandan/io.h"
#include "models/encoder_internal.h"

#define TRY(call)               \
    do {                        \
        ld_status st_ = (call); \
        if (st_) return st_;    \
    } while (0)

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

ld_status ld_encoder_open(ld_ctx *ctx, const char *dir, ld_encoder **m, ld_tokenizer **tok) {
    if (!dir || !m || !tok) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_encoder_open: NULL argument");
    *m = NULL, *tok = NULL;
    if (file_exists(dir)) return ld_encoder_load_gguf(ctx, dir, m, tok);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ld_status st;
    if (file_exists(path)) st = ld_tokenizer_load(ctx, path, tok);
    else {
        snprintf(path, sizeof path, "%s/vocab.txt", dir);
        if (!file_exists(path))
            return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no tokenizer.json or vocab.txt in the model directory", dir);
        st = ld_tokenizer_load_vocab_txt(ctx, path, tok);
    }
    if (!st) st = ld_encoder_load(ctx, dir, m);
    if (!st && ld_tokenizer_vocab_size(*tok) > (*m)->cfg.vocab_size)
        st = ld_error(ctx, LD_ERR_MISMATCH, "%s: the tokenizer has %lld tokens, the model's vocabulary %lld", dir,
                      (long long)ld_tokenizer_vocab_size(*tok), (long long)(*m)->cfg.vocab_size);
    if (st) {
        ld_encoder_free(*m), ld_tokenizer_free(*tok);
        *m = NULL, *tok = NULL;
    }
    return st;
}

static ld_status write_text(ld_ctx *ctx, const char *dir, const char *name, const char *text, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return ld_file_write_atomic(ctx, path, text, len);
}

ld_status ld_encoder_save_tokenizer(ld_encoder *m, const ld_tokenizer *tok, const char *dir) {
    if (!m || !tok || !dir) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    /* a vocabulary of single characters and specials is a vocab.txt (BertTokenizer / EsmTokenizer) */
    int64_t V = ld_tokenizer_vocab_size(tok);
    size_t cap = 64, len = 0;
    char *text = ld_alloc(ctx, cap);
    bool chars = text != NULL;
    for (int64_t id = 0; id < V && chars; id++) {
        const char *b;
        size_t bl;
        if (ld_tokenizer_token_bytes(tok, (int32_t)id, &b, &bl) || memchr(b, '\n', bl) || bl == 0) {
            chars = false;
            break;
        }
        unsigned char c0 = (unsigned char)b[0];
        size_t one = c0 < 0x80 ? 1 : c0 >= 0xf0 ? 4 : c0 >= 0xe0 ? 3 : 2;
        bool special = bl >= 3 && ((b[0] == '[' && b[bl - 1] == ']') || (b[0] == '<' && b[bl - 1] == '>'));
        if (bl != one && !special) chars = false;
        if (len + bl + 2 > cap) {
            char *t = ld_alloc(ctx, cap * 2 + bl);
            if (!t) break;
            memcpy(t, text, len);
            ld_free(ctx, text);
            text = t, cap = cap * 2 + bl;
        }
        memcpy(text + len, b, bl), len += bl, text[len++] = '\n';
    }
    ld_status st;
    if (!chars) {
        ld_free(ctx, text);
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        return ld_tokenizer_save(tok, path);
    }
    st = write_text(ctx, dir, "vocab.txt", text, len);
    ld_free(ctx, text);
    if (st) return st;
    bool esm = m->cfg.arch == LD_ENCODER_ESM;
    ld_mlm_specials sp;
    if (ld_mlm_specials_of(ctx, tok, &sp)) ld_ctx_clear_error(ctx), sp = (ld_mlm_specials){0, 0, 0, 0, 0};
    const char *names[5];
    int32_t ids[5] = {sp.cls, sp.sep, sp.pad, sp.mask, sp.unk};
    for (int i = 0; i < 5; i++) {
        const char *b = "";
        size_t bl = 0;
        if (ids[i] < 0 || ld_tokenizer_token_bytes(tok, ids[i], &b, &bl)) b = "";
        names[i] = b;
    }
    char cfg[1024], map[512];
    int n = snprintf(cfg, sizeof cfg,
                     "{\n  \"tokenizer_class\": \"%s\",\n  \"cls_token\": \"%s\",\n  \"%s\": \"%s\",\n"
                     "  \"pad_token\": \"%s\",\n  \"mask_token\": \"%s\",\n  \"unk_token\": \"%s\",\n"
                     "  \"model_max_length\": %lld%s\n}\n",
                     esm ? "EsmTokenizer" : "BertTokenizer", names[0], esm ? "eos_token" : "sep_token", names[1],
                     names[2], names[3], names[4], (long long)m->cfg.max_position,
                     esm ? "" : ",\n  \"do_lower_case\": false,\n  \"tokenize_chinese_chars\": true");
    if ((st = write_text(ctx, dir, "tokenizer_config.json", cfg, (size_t)n))) return st;
    n = snprintf(map, sizeof map,
                 "{\n  \"cls_token\": \"%s\",\n  \"%s\": \"%s\",\n  \"pad_token\": \"%s\",\n  \"mask_token\": \"%s\",\n"
                 "  \"unk_token\": \"%s\"\n}\n",
                 names[0], esm ? "eos_token" : "sep_token", names[1], names[2], names[3], names[4]);
    return write_text(ctx, dir, "special_tokens_map.json", map, (size_t)n);
}

ld_status ld_encoder_encode_text(const ld_encoder *m, const ld_tokenizer *tok, const char *text, size_t len,
                                 int32_t **ids, int64_t *n) {
    if (!m || !tok || !text || !ids || !n) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    ld_mlm_specials sp;
    TRY(ld_mlm_specials_of(ctx, tok, &sp));
    size_t need = 0;
    ld_status st = ld_tokenizer_encode(tok, text, len, 0, NULL, 0, &need);
    if (st && st != LD_ERR_LIMIT) return st;
    ld_ctx_clear_error(ctx);
    int32_t *out = ld_alloc(ctx, (need + 2) * sizeof *out);
    if (!out) return ld_ctx_status(ctx);
    if ((st = ld_tokenizer_encode(tok, text, len, 0, out + 1, need, &need))) {
        ld_free(ctx, out);
        return st;
    }
    int64_t max = m->cfg.max_position, k = (int64_t)need + 2;
    if (k > max) {
        ld_log(ctx, LD_LOG_WARN, "input of %lld tokens cut to the model's %lld positions", (long long)k, (long long)max);
        k = max;
    }
    out[0] = sp.cls, out[k - 1] = sp.sep;
    *ids = out, *n = k;
    return LD_OK;
}

/* Runs rows [first, first + B) of seqs, padded to the longest, through the encoder on an
 * inference tape; *hidden is [B, T, C] on that tape, lengths[B] the real lengths. */
static ld_status forward_rows(ld_encoder *m, ld_tape *t, const int32_t *const *seqs, const int64_t *lens, int64_t B,
                              int32_t **ids_out, int32_t *lengths, int64_t *T_out, ld_tensor **hidden) {
    int64_t T = 1;
    for (int64_t r = 0; r < B; r++) {
        if (lens[r] < 1 || lens[r] > m->cfg.max_position)
            return ld_error(m->ctx, LD_ERR_INVALID_ARG, "encoder input %lld has %lld tokens (1..%lld)", (long long)r,
                            (long long)lens[r], (long long)m->cfg.max_position);
        if (lens[r] > T) T = lens[r];
    }
    int32_t *ids = ld_arena_alloc(t->act, (size_t)(B * T) * sizeof *ids);
    if (!ids) return ld_ctx_status(m->ctx);
    for (int64_t r = 0; r < B; r++) {
        for (int64_t i = 0; i < T; i++) ids[r * T + i] = i < lens[r] ? seqs[r][i] : m->cfg.pad_token_id;
        lengths[r] = (int32_t)lens[r];
    }
    *ids_out = ids, *T_out = T;
    return ld_encoder_forward(m, t, ids, NULL, lengths, B, T, hidden);
}

static ld_status inference_tape(ld_encoder *m, ld_tape **t) {
    TRY(ld_tape_new(m->ctx, t));
    ld_tape_set_grad_enabled(*t, false);
    return LD_OK;
}

enum { EMBED_BATCH = 16 };

ld_status ld_encoder_embed(ld_encoder *m, const int32_t *const *seqs, const int64_t *lens, int64_t n, ld_pooling mode,
                           bool normalize, float *out) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !seqs || !lens || !out || n < 0) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_embed: bad argument");
    ld_tape *t;
    TRY(inference_tape(m, &t));
    int64_t C = m->cfg.hidden_size;
    ld_status st = LD_OK;
    for (int64_t first = 0; first < n && !st; first += EMBED_BATCH) {
        int64_t B = n - first < EMBED_BATCH ? n - first : EMBED_BATCH, T;
        int32_t lengths[EMBED_BATCH], *ids;
        ld_tensor *h, *pooled;
        ld_tape_reset(t);
        if ((st = forward_rows(m, t, seqs + first, lens + first, B, &ids, lengths, &T, &h)) ||
            (st = ld_encoder_pool(m, t, h, lengths, mode, &pooled)))
            break;
        for (int64_t r = 0; r < B; r++) {
            float *dst = out + (first + r) * C;
            memcpy(dst, (const float *)pooled->data + r * C, (size_t)C * sizeof(float));
            double ss = 0;
            for (int64_t j = 0; normalize && j < C; j++) ss += (double)dst[j] * dst[j];
            for (int64_t j = 0; normalize && ss > 0 && j < C; j++) dst[j] = (float)(dst[j] / sqrt(ss));
        }
    }
    ld_tape_free(t);
    return st;
}

ld_status ld_encoder_hidden(ld_encoder *m, const int32_t *ids, int64_t n, float *out) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !ids || !out) return LD_ERR_INVALID_ARG;
    ld_tape *t;
    TRY(inference_tape(m, &t));
    int32_t len, *pad;
    int64_t T;
    ld_tensor *h;
    ld_status st = forward_rows(m, t, &ids, &n, 1, &pad, &len, &T, &h);
    if (!st) memcpy(out, h->data, (size_t)(n * m->cfg.hidden_size) * sizeof(float));
    ld_tape_free(t);
    return st;
}

/* Checks a layer selection: non-zero, no bit above the model's layer count; *k = its size. */
static ld_status check_layers(ld_encoder *m, uint64_t layers, int *k) {
    int L = (int)m->cfg.n_layers;
    if (layers == 0) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "encoder layers: no layer chosen");
    if (L < 63 && (layers >> (L + 1)) != 0)
        return ld_error(m->ctx, LD_ERR_INVALID_ARG, "encoder layers: layer %d chosen, the model has layers 0..%d",
                        63 - __builtin_clzll(layers), L);
    *k = __builtin_popcountll(layers);
    return LD_OK;
}

/* One forward of rows (as forward_rows) that records the chosen layers' states in taps. */
static ld_status forward_tapped(ld_encoder *m, ld_tape *t, const int32_t *const *seqs, const int64_t *lens, int64_t B,
                                int32_t **ids, int32_t *lengths, int64_t *T, ld_tensor **taps) {
    ld_tensor *h;
    for (int l = 0; l <= m->cfg.n_layers; l++) taps[l] = NULL;
    m->taps = taps;
    ld_status st = forward_rows(m, t, seqs, lens, B, ids, lengths, T, &h);
    m->taps = NULL;
    for (int l = 0; !st && l <= m->cfg.n_layers; l++)
        if (!taps[l]) st = ld_error(m->ctx, LD_ERR_INTERNAL, "encoder layers: layer %d was not recorded", l);
    return st;
}

ld_status ld_encoder_embed_layers(ld_encoder *m, const int32_t *const *seqs, const int64_t *lens, int64_t n,
                                  ld_pooling mode, uint64_t layers, float *out) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !seqs || !lens || !out || n < 0)
        return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_embed_layers: bad argument");
    int k;
    TRY(check_layers(m, layers, &k));
    ld_tensor **taps = ld_alloc(m->ctx, (size_t)(m->cfg.n_layers + 1) * sizeof *taps);
    if (!taps) return ld_ctx_status(m->ctx);
    ld_tape *t = NULL;
    ld_status st = inference_tape(m, &t);
    int64_t C = m->cfg.hidden_size, D = k * C;
    for (int64_t first = 0; first < n && !st; first += EMBED_BATCH) {
        int64_t B = n - first < EMBED_BATCH ? n - first : EMBED_BATCH, T;
        int32_t lengths[EMBED_BATCH], *ids;
        ld_tape_reset(t);
        st = forward_tapped(m, t, seqs + first, lens + first, B, &ids, lengths, &T, taps);
        for (int l = 0, j = 0; !st && l <= m->cfg.n_layers; l++) {
            if (!(layers >> l & 1)) continue;
            ld_tensor *pooled;
            if ((st = ld_encoder_pool(m, t, taps[l], lengths, mode, &pooled))) break;
            for (int64_t r = 0; r < B; r++)
                memcpy(out + (first + r) * D + j * C, (const float *)pooled->data + r * C, (size_t)C * sizeof(float));
            j++;
        }
    }
    if (t) ld_tape_free(t);
    ld_free(m->ctx, taps);
    return st;
}

ld_status ld_encoder_hidden_layers(ld_encoder *m, const int32_t *ids, int64_t n, uint64_t layers, float *out) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !ids || !out) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_hidden_layers: bad argument");
    int k;
    TRY(check_layers(m, layers, &k));
    ld_tensor **taps = ld_alloc(m->ctx, (size_t)(m->cfg.n_layers + 1) * sizeof *taps);
    if (!taps) return ld_ctx_status(m->ctx);
    ld_tape *t = NULL;
    ld_status st = inference_tape(m, &t);
    int32_t len, *pad;
    int64_t T, C = m->cfg.hidden_size, D = k * C;
    if (!st) st = forward_tapped(m, t, &ids, &n, 1, &pad, &len, &T, taps);
    for (int l = 0, j = 0; !st && l <= m->cfg.n_layers; l++) {
        if (!(layers >> l & 1)) continue;
        for (int64_t i = 0; i < n; i++)
            memcpy(out + i * D + j * C, (const float *)taps[l]->data + i * C, (size_t)C * sizeof(float));
        j++;
    }
    if (t) ld_tape_free(t);
    ld_free(m->ctx, taps);
    return st;
}

ld_status ld_encoder_fill_mask(ld_encoder *m, const int32_t *ids, int64_t n, int32_t mask_id, int k,
                               int64_t cap_masks, int64_t *n_masks, int64_t *positions, int32_t *top_ids,
                               float *top_probs) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !ids || !n_masks || k < 1) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_fill_mask: bad argument");
    int64_t nm = 0, V = m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++) nm += ids[i] == mask_id;
    *n_masks = nm;
    if (nm == 0) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "fill-mask: the input has no mask token");
    if (nm > cap_masks) return ld_error(m->ctx, LD_ERR_LIMIT, "fill-mask: %lld mask tokens, room for %lld", (long long)nm,
                                        (long long)cap_masks);
    if (k > V) k = (int)V;
    ld_tape *t;
    TRY(inference_tape(m, &t));
    int32_t *pos = ld_arena_alloc(t->act, (size_t)nm * sizeof *pos), len, *pad;
    int64_t T;
    ld_tensor *h, *lg;
    ld_status st = pos ? LD_OK : ld_ctx_status(m->ctx);
    for (int64_t i = 0, j = 0; !st && i < n; i++)
        if (ids[i] == mask_id) pos[j] = (int32_t)i, positions[j++] = i;
    if (!st) st = forward_rows(m, t, &ids, &n, 1, &pad, &len, &T, &h);
    if (!st) st = ld_encoder_mlm_logits(m, t, h, pos, nm, &lg);
    for (int64_t j = 0; !st && j < nm; j++) {
        const float *row = (const float *)lg->data + j * V;
        double mx = -INFINITY, sum = 0;
        for (int64_t v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int64_t v = 0; v < V; v++) sum += exp(row[v] - mx);
        /* top k by repeated selection (k is small) */
        for (int r = 0; r < k; r++) {
            int64_t best = -1;
            for (int64_t v = 0; v < V; v++) {
                bool taken = false;
                for (int q = 0; q < r && !taken; q++) taken = top_ids[j * k + q] == v;
                if (!taken && (best < 0 || row[v] > row[best])) best = v;
            }
            top_ids[j * k + r] = (int32_t)best;
            top_probs[j * k + r] = (float)(exp(row[best] - mx) / sum);
        }
    }
    ld_tape_free(t);
    return st;
}

ld_status ld_encoder_mlm_eval(ld_encoder *m, ld_mlm_source *src, int64_t B, int64_t max_batches,
                              const double *unigram, ld_mlm_eval *out) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !src || !out || B <= 0) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_mlm_eval: bad argument");
    ld_ctx *ctx = m->ctx;
    int64_t V = m->cfg.vocab_size, T = ld_mlm_source_row_length(src);
    memset(out, 0, sizeof *out);
    if (T > m->cfg.max_position)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "masked-LM evaluation: rows of %lld tokens, the model takes %lld",
                        (long long)T, (long long)m->cfg.max_position);
    int64_t mode = -1; /* the unigram baseline's constant guess: the most frequent token */
    for (int64_t v = 0; unigram && v < V; v++)
        if (mode < 0 || unigram[v] > unigram[mode]) mode = v;
    int32_t *ids = ld_alloc(ctx, (size_t)(B * T) * sizeof *ids), *tg = ld_alloc(ctx, (size_t)(B * T) * sizeof *tg);
    int32_t *lengths = ld_alloc(ctx, (size_t)B * sizeof *lengths);
    ld_tape *t = NULL;
    ld_status st = ids && tg && lengths ? inference_tape(m, &t) : ld_ctx_status(ctx);
    int64_t docs = ld_mlm_source_docs(src), batches = (docs + B - 1) / B;
    if (max_batches > 0 && max_batches < batches) batches = max_batches;
    double loss_sum = 0, uloss_sum = 0;
    int64_t right = 0, uright = 0, counted = 0;
    for (int64_t i = 0; i < batches && !st; i++) {
        int64_t Tu, n = 0;
        ld_tensor *loss, *lg;
        ld_tape_reset(t);
        if ((st = ld_mlm_source_next(src, B, ids, tg, lengths, &Tu))) break;
        for (int64_t j = 0; j < B * Tu; j++) n += tg[j] != -100;
        if (n == 0) continue;
        if ((st = ld_encoder_mlm_loss(m, t, ids, lengths, tg, B, Tu, &loss, NULL, &lg))) break;
        loss_sum += (double)((float *)loss->data)[0] * (double)n;
        for (int64_t j = 0, r = 0; j < B * Tu; j++) {
            if (tg[j] == -100) continue;
            const float *row = (const float *)lg->data + r++ * V;
            int64_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (row[v] > row[best]) best = v;
            right += best == tg[j];
            if (unigram) {
                uright += mode == tg[j];
                uloss_sum += -log(unigram[tg[j]] > 1e-12 ? unigram[tg[j]] : 1e-12);
            }
        }
        counted += n;
    }
    ld_tape_free(t);
    ld_free(ctx, ids), ld_free(ctx, tg), ld_free(ctx, lengths);
    if (st) return st;
    if (counted == 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "masked-LM evaluation: nothing was predicted");
    out->predicted = counted;
    out->loss = loss_sum / (double)counted;
    out->accuracy = (double)right / (double)counted;
    out->unigram_loss = unigram ? uloss_sum / (double)counted : NAN;
    out->unigram_accuracy = unigram ? (double)uright / (double)counted : NAN;
    return LD_OK;
}

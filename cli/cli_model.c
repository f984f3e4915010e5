/* cli/cli_model.c — what the model commands share: loading a model directory with its
 * tokenizer, decoding tokens to the terminal as they stream, and the sampling options. */
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_model.h"

int ld_cli_load_model(ld_ctx *ctx, const char *dir, ld_lm **m, ld_tokenizer **tok) {
    return ld_cli_load_model_ex(ctx, dir, false, m, tok);
}

int ld_cli_load_model_ex(ld_ctx *ctx, const char *dir, bool trainable, ld_lm **m, ld_tokenizer **tok) {
    *m = NULL, *tok = NULL;
    ld_lm_load_params lp = {.trainable = trainable};
    if (ld_lm_gguf_sniff(dir)) /* a GGUF file holds the model and its tokenizer */
        return ld_lm_load_gguf_ex(ctx, dir, &lp, m, tok) ? ld_cli_fail(ctx, "loading the GGUF model") : 0;
    if (ld_lm_load_ex(ctx, dir, &lp, m)) return ld_cli_fail(ctx, "loading the model");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (ld_tokenizer_load(ctx, path, tok)) {
        ld_lm_free(*m);
        *m = NULL;
        return ld_cli_fail(ctx, "loading the tokenizer");
    }
    int64_t tv = ld_tokenizer_vocab_size(*tok), mv = ld_lm_config_of(*m)->vocab_size;
    if (tv > mv) {
        fprintf(stderr, "liandan: %s: the tokenizer has %lld tokens but the model's vocab_size is %lld\n", dir,
                (long long)tv, (long long)mv);
        ld_tokenizer_free(*tok), ld_lm_free(*m);
        *m = NULL, *tok = NULL;
        return 1;
    }
    return 0;
}

int ld_cli_save_model_dir(ld_ctx *ctx, ld_lm *m, const ld_tokenizer *tok, const char *dir) {
    char path[4200];
    DIR *d = opendir(dir);
    if (d) { /* replace only what is ours to replace */
        struct dirent *e;
        int entries = 0;
        while ((e = readdir(d))) entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        closedir(d);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (entries && access(path, F_OK) != 0) {
            fprintf(stderr, "liandan: %s exists and is not a model directory (no config.json): not replacing it\n", dir);
            return 1;
        }
    }
    ld_dir_txn *tx = NULL;
    if (ld_dir_txn_begin(ctx, dir, &tx)) return ld_cli_fail(ctx, "writing the model directory");
    snprintf(path, sizeof path, "%s/tokenizer.json", ld_dir_txn_path(tx));
    if (ld_lm_save(m, ld_dir_txn_path(tx)) || ld_tokenizer_save(tok, path)) {
        ld_dir_txn_abort(tx);
        return ld_cli_fail(ctx, "writing the model directory");
    }
    if (ld_dir_txn_commit(tx)) return ld_cli_fail(ctx, "writing the model directory");
    return 0;
}

int ld_cli_merge_adapter(ld_ctx *ctx, ld_lm *m, const char *dir) {
    ld_adapter *a = NULL;
    if (ld_adapter_load(m, dir, &a)) return ld_cli_fail(ctx, "loading the adapter");
    int rc = 0;
    if (ld_adapter_config_of(a)->method != LD_ADAPTER_LORA)
        rc = (fprintf(stderr, "liandan: %s is a %s adapter: generation merges LoRA adapters only (`liandan eval tasks "
                              "--adapter` runs the others)\n",
                      dir, ld_adapter_method_name(ld_adapter_config_of(a)->method)), 1);
    else if (ld_adapter_merge(a)) rc = ld_cli_fail(ctx, "merging the adapter");
    ld_adapter_free(a); /* merged weights stay */
    return rc;
}

int32_t ld_cli_start_token(const ld_tokenizer *tok, const ld_lm *m) {
    if (ld_tokenizer_bos_id(tok) >= 0) return ld_tokenizer_bos_id(tok);
    if (ld_tokenizer_eos_id(tok) >= 0) return ld_tokenizer_eos_id(tok); /* documents are EOS-separated */
    return ld_lm_config_of(m)->bos_token_id;
}

int64_t ld_cli_context(const ld_lm *m, int64_t cap) {
    int64_t n = ld_lm_config_of(m)->max_position;
    return n < cap ? n : cap;
}

int ld_cli_encode(ld_ctx *ctx, const ld_tokenizer *tok, const char *text, int32_t **ids, int64_t *n) {
    size_t len = strlen(text), need = 0, cap = len + 16;
    *ids = malloc(cap * sizeof(int32_t));
    if (!*ids) return fprintf(stderr, "liandan: out of memory\n"), 1;
    ld_status st = ld_tokenizer_encode(tok, text, len, LD_ENCODE_SPECIAL_AS_TEXT, *ids, cap, &need);
    if (st == LD_ERR_LIMIT) {
        free(*ids);
        *ids = malloc(need * sizeof(int32_t));
        if (!*ids) return fprintf(stderr, "liandan: out of memory\n"), 1;
        st = ld_tokenizer_encode(tok, text, len, LD_ENCODE_SPECIAL_AS_TEXT, *ids, need, &need);
    }
    if (st) {
        free(*ids);
        *ids = NULL;
        return ld_cli_fail(ctx, "encoding the prompt");
    }
    *n = (int64_t)need;
    return 0;
}

void ld_cli_text_init(ld_cli_text *t, const ld_tokenizer *tok, FILE *out) {
    t->tok = tok;
    t->out = out;
    t->len = t->printed = 0;
    t->oom = false;
    if (t->buf) t->buf[0] = 0;
}

const char *ld_cli_text_str(const ld_cli_text *t) {
    return t->buf ? t->buf : "";
}

void ld_cli_text_free(ld_cli_text *t) {
    free(t->buf);
    t->buf = NULL;
    t->len = t->cap = t->printed = 0;
}

/* Length of the longest prefix of s[0..n) that ends on a UTF-8 character boundary. */
static size_t complete_utf8(const char *s, size_t n) {
    size_t i = n;
    int back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--, back++;
    if (i == 0) return n;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    return (size_t)back + 1 >= want ? n : i - 1;
}

bool ld_cli_text_add(ld_cli_text *t, int32_t id, const char *const *stops, int n_stops) {
    const char *b;
    size_t len;
    if (ld_tokenizer_token_bytes(t->tok, id, &b, &len)) return false;
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + len + 1) cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb) return t->oom = true, false;
        t->buf = nb, t->cap = cap;
    }
    memcpy(t->buf + t->len, b, len);
    t->len += len;
    t->buf[t->len] = 0;
    for (int i = 0; i < n_stops; i++) {
        char *hit = strstr(t->buf + (t->printed > 64 ? t->printed - 64 : 0), stops[i]);
        if (hit) {
            size_t end = (size_t)(hit - t->buf);
            if (t->out && end > t->printed) fwrite(t->buf + t->printed, 1, end - t->printed, t->out);
            t->printed = t->len = end;
            t->buf[end] = 0;
            if (t->out) fflush(t->out);
            return false;
        }
    }
    /* hold back a possible stop-string prefix and incomplete UTF-8 */
    size_t safe = complete_utf8(t->buf, t->len), hold = 0;
    for (int i = 0; i < n_stops; i++) {
        size_t sl = strlen(stops[i]);
        for (size_t k = sl - 1; k > hold && k > 0; k--)
            if (k <= safe && !memcmp(t->buf + safe - k, stops[i], k)) hold = k;
    }
    if (t->out && safe - hold > t->printed) {
        fwrite(t->buf + t->printed, 1, safe - hold - t->printed, t->out);
        fflush(t->out);
        t->printed = safe - hold;
    }
    return true;
}

void ld_cli_text_flush(ld_cli_text *t) {
    if (t->out && t->len > t->printed) fwrite(t->buf + t->printed, 1, t->len - t->printed, t->out);
    t->printed = t->len;
    if (t->out) fflush(t->out);
}

void ld_cli_sample_opts(ld_generate_params *g, ld_cli_opt t[LD_CLI_SAMPLE_OPTS]) {
    const ld_cli_opt rows[LD_CLI_SAMPLE_OPTS] = {
        LD_CLI_INT64("max-tokens", 0, &g->max_tokens, 1, 1 << 24, "N", "new tokens per prompt"),
        LD_CLI_FLOAT("temperature", 0, &g->sample.temperature, 0, 100, 0, "T", "0 = greedy"),
        LD_CLI_INT("top-k", 0, &g->sample.top_k, 0, INT32_MAX, "K", "keep the K most likely tokens (0 = off)"),
        LD_CLI_FLOAT("top-p", 0, &g->sample.top_p, 0, 1, LD_CLI_OPEN_MIN, "P", "nucleus sampling (1 = off)"),
        LD_CLI_FLOAT("min-p", 0, &g->sample.min_p, 0, 1, LD_CLI_OPEN_MAX, "P",
                     "drop tokens below P x the most likely one's probability (0 = off)"),
        LD_CLI_FLOAT("repetition-penalty", 0, &g->sample.repetition_penalty, 0, 100, LD_CLI_OPEN_MIN, "R",
                     "penalise the recent tokens (1 = off)"),
        LD_CLI_UINT64("seed", 0, &g->seed, "S", "random seed"),
        LD_CLI_END,
    };
    memcpy(t, rows, sizeof rows);
}

void ld_cli_model_defaults(const ld_lm *m, const ld_tokenizer *tok, ld_generate_params *g) {
    const ld_lm_config *c = ld_lm_config_of(m);
    g->eos_id = ld_tokenizer_eos_id(tok);
    g->stop_ids = c->n_eos_token_ids ? c->eos_token_ids : NULL, g->n_stop_ids = c->n_eos_token_ids;
    const ld_lm_generation_config *gc = ld_lm_generation_config_of(m);
    const ld_sample_params d = ld_sample_default_params();
    ld_sample_params *s = &g->sample;
    if (gc->temperature >= 0 && s->temperature == d.temperature) s->temperature = gc->temperature;
    if (gc->top_p > 0 && s->top_p == d.top_p) s->top_p = gc->top_p;
    if (gc->top_k >= 0 && s->top_k == d.top_k) s->top_k = gc->top_k;
    if (gc->repetition_penalty > 0 && s->repetition_penalty == d.repetition_penalty)
        s->repetition_penalty = gc->repetition_penalty;
}

const ld_chat_template *ld_cli_chat_template(ld_ctx *ctx, const ld_lm *m, const char *name, const char *cmd) {
    if (name) {
        const ld_chat_template *t = ld_chat_template_find(name);
        if (t) return t;
        fprintf(stderr, "liandan %s: --chat-template: no template family '%s' (", cmd, name);
        for (size_t i = 0; i < ld_chat_template_count(); i++)
            fprintf(stderr, "%s%s", i ? ", " : "", ld_chat_template_name(ld_chat_template_at(i)));
        fprintf(stderr, ")\n");
        return NULL;
    }
    const char *jinja = ld_lm_chat_template(m);
    if (!jinja) return ld_chat_template_find("plain");
    const ld_chat_template *t = NULL;
    if (ld_chat_template_detect(ctx, jinja, &t)) {
        fprintf(stderr, "liandan %s: the model's %s (or --chat-template plain for none)\n", cmd, ld_ctx_error(ctx));
        return NULL;
    }
    return t;
}

int ld_cli_encode_corpus(ld_ctx *ctx, const ld_tokenizer *tok, const char *path, const ld_corpus_params *cp,
                         int32_t **out, size_t *n_out, double *bytes_out) {
    ld_corpus *c = NULL;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    double bytes = 0;
    int rc = 0;
    ld_status st = LD_OK;
    if (ld_corpus_open(ctx, path, cp, &c)) rc = ld_cli_fail(ctx, "reading the data");
    const char *doc;
    size_t len;
    int32_t eos = ld_tokenizer_eos_id(tok);
    while (!rc && (st = ld_corpus_next(c, &doc, &len)) == LD_OK) {
        size_t need = 0;
        if (n + len + 2 > cap) {
            cap = 2 * (n + len + 2);
            int32_t *ni = realloc(ids, cap * sizeof *ids);
            if (!ni) {
                rc = fprintf(stderr, "liandan: out of memory\n") > 0;
                break;
            }
            ids = ni;
        }
        if (ld_tokenizer_encode(tok, doc, len, LD_ENCODE_SPECIAL_AS_TEXT, ids + n, cap - n - 1, &need)) {
            rc = ld_cli_fail(ctx, "encoding");
            break;
        }
        n += need;
        if (eos >= 0) ids[n++] = eos; /* documents are EOS-separated, as in training */
        bytes += (double)len;
    }
    if (!rc && st != LD_ERR_NOT_FOUND) rc = ld_cli_fail(ctx, "reading the data");
    ld_corpus_close(c);
    if (rc) free(ids), ids = NULL, n = 0;
    *out = ids, *n_out = n;
    if (bytes_out) *bytes_out = bytes;
    return rc;
}

static bool writable_type(ld_dtype t) {
    return t == LD_F32 || t == LD_F16 || t == LD_BF16 || ld_quant_type_supported(t);
}

const char *ld_cli_type_names(void) {
    static char names[512];
    if (!names[0]) {
        size_t n = 0;
        for (int t = 0; t < LD_DTYPE_COUNT && n + 1 < sizeof names; t++) {
            if (!writable_type((ld_dtype)t)) continue;
            n += (size_t)snprintf(names + n, sizeof names - n, "%s", n ? ", " : "");
            for (const char *c = ld_dtype_traits((ld_dtype)t)->name; *c && n + 1 < sizeof names; c++)
                names[n++] = (char)tolower((unsigned char)*c);
            names[n] = 0;
        }
    }
    return names;
}

bool ld_cli_kv_type_opt(void *user, const char *opt, const char *value) {
    char up[8];
    size_t n = strlen(value);
    ld_dtype t = LD_DTYPE_COUNT;
    if (n > 0 && n < sizeof up) {
        for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)value[i]);
        t = ld_dtype_from_name(up);
    }
    if (t == LD_DTYPE_COUNT || !ld_lm_kv_type_ok(t)) {
        fprintf(stderr, "liandan: %s: a KV cache holds f32, f16 or q8_0, not '%s'\n", opt, value);
        return false;
    }
    *(ld_dtype *)user = t;
    return true;
}

bool ld_cli_type_opt(void *user, const char *opt, const char *value) {
    char up[16];
    size_t n = strlen(value);
    ld_dtype t = LD_DTYPE_COUNT;
    if (n > 0 && n < sizeof up) {
        for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)value[i]);
        if (n > 2 && (!strcmp(up + n - 2, "_M") || !strcmp(up + n - 2, "_S"))) up[n - 2] = 0; /* mix names */
        t = ld_dtype_from_name(up);
    }
    if (t == LD_DTYPE_COUNT || !writable_type(t)) {
        fprintf(stderr, "liandan: %s: unknown type '%s' (types: %s)\n", opt, value, ld_cli_type_names());
        return false;
    }
    *(ld_dtype *)user = t;
    return true;
}

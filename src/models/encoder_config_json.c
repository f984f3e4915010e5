/* models/encoder_config_json.c — the encoder config as Hugging Face config.json: the keys of
 * BertConfig (model_type "bert") and EsmConfig (model_type "esm"), read and written. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/encoder.h"
#include "io/json.h"
#include "liandan/io.h"

/* Keys read (or knowingly ignored) per architecture; anything else gets a warning. */
static const char *const bert_keys[] = {
    "architectures", "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id", "position_embedding_type", "use_cache",
    "classifier_dropout", "torch_dtype", "transformers_version", "gradient_checkpointing", "directionality",
    "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type",
    "id2label", "label2id", "tokenizer_class", "output_past", "bos_token_id", "eos_token_id", "tie_word_embeddings",
    "is_decoder", "add_cross_attention", "problem_type", "_name_or_path", "liandan", NULL};
static const char *const esm_keys[] = {
    "architectures", "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
    "initializer_range", "layer_norm_eps", "pad_token_id", "mask_token_id", "position_embedding_type", "use_cache",
    "emb_layer_norm_before", "token_dropout", "is_folding_model", "esmfold_config", "vocab_list", "classifier_dropout",
    "torch_dtype", "transformers_version", "id2label", "label2id", "tie_word_embeddings", "is_decoder",
    "add_cross_attention", "problem_type", "_name_or_path", "liandan", NULL};

static size_t count_keys(const char *const *k) {
    size_t n = 0;
    while (k[n]) n++;
    return n;
}

#define TRY(call)               \
    do {                        \
        ld_status st_ = (call); \
        if (st_) return st_;    \
    } while (0)

static ld_status get_i64(ld_ctx *ctx, const ld_json_ref *r, const char *key, bool required, int64_t min, int64_t max,
                         int64_t *out) {
    return ld_json_get_int(ctx, r, key, required, min, max, out);
}

static ld_status get_f32(ld_ctx *ctx, const ld_json_ref *r, const char *key, double min, double max, float *out) {
    double v = *out;
    TRY(ld_json_get_float(ctx, r, key, false, min, max, &v));
    *out = (float)v;
    return LD_OK;
}

static ld_status get_id(ld_ctx *ctx, const ld_json_ref *r, const char *key, int32_t *out) {
    int64_t v = *out;
    TRY(ld_json_get_int(ctx, r, key, false, -1, INT32_MAX, &v));
    *out = (int32_t)v;
    return LD_OK;
}

/* hidden_act: "gelu" (erf), the tanh forms or CLIP's quick_gelu. */
static ld_status get_act(ld_ctx *ctx, const ld_json_ref *r, bool *tanh_form, bool *quick) {
    const char *act = NULL;
    TRY(ld_json_get_string(ctx, r, "hidden_act", false, &act));
    *quick = act && !strcmp(act, "quick_gelu");
    if (!act || !strcmp(act, "gelu") || *quick) *tanh_form = false;
    else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh")) *tanh_form = true;
    else
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: hidden_act '%.40s' is not supported (gelu, gelu_new, quick_gelu)",
                        r->doc, act);
    return LD_OK;
}

static ld_status expect_string(ld_ctx *ctx, const ld_json_ref *r, const char *key, const char *want) {
    const char *s = NULL;
    TRY(ld_json_get_string(ctx, r, key, false, &s));
    if (s && strcmp(s, want))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: %s '%.40s' is not supported (only '%s')", r->doc, key, s, want);
    return LD_OK;
}

static ld_status parse(ld_ctx *ctx, const ld_json_ref *r, ld_encoder_config *c) {
    const char *mt = NULL;
    TRY(ld_json_get_string(ctx, r, "model_type", true, &mt));
    bool esm = !strcmp(mt, "esm");
    if (!esm && strcmp(mt, "bert"))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model_type '%.40s' is not an encoder (bert, esm)", r->doc, mt);
    *c = ld_encoder_default_config(esm ? LD_ENCODER_ESM : LD_ENCODER_BERT);
    c->dropout = 0.1f;
    TRY(get_i64(ctx, r, "vocab_size", true, 1, 1 << 24, &c->vocab_size));
    TRY(get_i64(ctx, r, "hidden_size", true, 1, 65536, &c->hidden_size));
    TRY(get_i64(ctx, r, "num_hidden_layers", true, 1, 1024, &c->n_layers));
    TRY(get_i64(ctx, r, "num_attention_heads", true, 1, 65536, &c->n_heads));
    TRY(get_i64(ctx, r, "intermediate_size", true, 1, 1 << 20, &c->intermediate_size));
    TRY(get_i64(ctx, r, "max_position_embeddings", true, 1, 1 << 20, &c->max_position));
    TRY(get_f32(ctx, r, "layer_norm_eps", 0, 1, &c->norm_eps));
    TRY(get_f32(ctx, r, "initializer_range", 0, 10, &c->init_std));
    TRY(get_f32(ctx, r, "hidden_dropout_prob", 0, 0.999, &c->dropout));
    TRY(get_id(ctx, r, "pad_token_id", &c->pad_token_id));
    if (c->pad_token_id < 0) c->pad_token_id = 0;
    bool flag = false;
    TRY(ld_json_get_bool(ctx, r, "is_decoder", false, &flag));
    if (flag) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: is_decoder = true is not supported (encoders only)", r->doc);
    flag = true;
    TRY(ld_json_get_bool(ctx, r, "tie_word_embeddings", false, &flag));
    if (!flag)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: tie_word_embeddings = false is not supported (the MLM decoder is "
                        "the word embedding matrix)", r->doc);
    if (esm) {
        /* ESM's layers and head use the exact GELU whatever hidden_act says */
        TRY(expect_string(ctx, r, "position_embedding_type", "rotary"));
        const char *pe = NULL;
        TRY(ld_json_get_string(ctx, r, "position_embedding_type", false, &pe));
        if (!pe)
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: position_embedding_type is missing (only 'rotary', ESM-2, is "
                            "supported)", r->doc);
        TRY(get_id(ctx, r, "mask_token_id", &c->mask_token_id));
        c->token_dropout = false;
        TRY(ld_json_get_bool(ctx, r, "token_dropout", false, &c->token_dropout));
        flag = false;
        TRY(ld_json_get_bool(ctx, r, "emb_layer_norm_before", false, &flag));
        if (flag)
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: emb_layer_norm_before = true (ESM-1b) is not supported", r->doc);
        flag = false;
        TRY(ld_json_get_bool(ctx, r, "is_folding_model", false, &flag));
        if (flag) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: ESMFold models are not supported", r->doc);
    } else {
        TRY(get_act(ctx, r, &c->gelu_tanh, &c->quick_gelu));
        TRY(expect_string(ctx, r, "position_embedding_type", "absolute"));
        TRY(get_i64(ctx, r, "type_vocab_size", false, 1, 1024, &c->type_vocab_size));
        /* not a BertConfig key: liandan's record of the mask token, for fill-mask and MLM */
        ld_json_ref lk;
        TRY(ld_json_get_object(ctx, r, "liandan", false, &lk));
        if (lk.node) TRY(get_id(ctx, &lk, "mask_token_id", &c->mask_token_id));
    }
    ld_json_check_keys(ctx, r, esm ? esm_keys : bert_keys, count_keys(esm ? esm_keys : bert_keys), NULL, NULL);
    return LD_OK;
}

ld_status ld_encoder_config_from_json(ld_ctx *ctx, const char *text, size_t len, const char *path,
                                      ld_encoder_config *out) {
    if (!text || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_encoder_config_from_json: NULL argument");
    if (!path) path = "config.json";
    cJSON *root = NULL;
    ld_status st = ld_json_parse(ctx, path, text, len, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) {
        ld_json_free(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    ld_json_ref r = ld_json_root(path, root);
    ld_encoder_config c;
    st = parse(ctx, &r, &c);
    ld_json_free(root);
    if (st) return st;
    if ((st = ld_encoder_config_validate(ctx, &c))) return ld_error_wrap(ctx, st, "%s: ", path);
    *out = c;
    return LD_OK;
}

char *ld_encoder_config_to_json(const ld_encoder_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    bool esm = c->arch == LD_ENCODER_ESM;
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(esm ? "EsmForMaskedLM" : "BertForMaskedLM"));
    cJSON_AddStringToObject(o, "model_type", esm ? "esm" : "bert");
    cJSON_AddNumberToObject(o, "vocab_size", (double)c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", (double)c->hidden_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", (double)c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", (double)c->n_heads);
    cJSON_AddNumberToObject(o, "intermediate_size", (double)c->intermediate_size);
    cJSON_AddStringToObject(o, "hidden_act", c->quick_gelu ? "quick_gelu" : c->gelu_tanh ? "gelu_new" : "gelu");
    cJSON_AddNumberToObject(o, "hidden_dropout_prob", c->dropout);
    cJSON_AddNumberToObject(o, "attention_probs_dropout_prob", 0.0);
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)c->max_position);
    cJSON_AddNumberToObject(o, "initializer_range", c->init_std);
    cJSON_AddNumberToObject(o, "layer_norm_eps", c->norm_eps);
    cJSON_AddNumberToObject(o, "pad_token_id", c->pad_token_id);
    if (esm) {
        cJSON_AddNumberToObject(o, "mask_token_id", c->mask_token_id);
        cJSON_AddStringToObject(o, "position_embedding_type", "rotary");
        cJSON_AddBoolToObject(o, "emb_layer_norm_before", false);
        cJSON_AddBoolToObject(o, "token_dropout", c->token_dropout);
    } else {
        cJSON_AddNumberToObject(o, "type_vocab_size", (double)c->type_vocab_size);
        cJSON_AddStringToObject(o, "position_embedding_type", "absolute");
        if (c->mask_token_id >= 0) {
            cJSON *lk = cJSON_AddObjectToObject(o, "liandan");
            cJSON_AddNumberToObject(lk, "mask_token_id", c->mask_token_id);
        }
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", true);
    cJSON_AddBoolToObject(o, "use_cache", true);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

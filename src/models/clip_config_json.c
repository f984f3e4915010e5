/* models/clip_config_json.c — the image-text model's config.json (transformers' CLIPConfig) in
 * its two layouts: liandan's (text_config a BertConfig, the model_type "bert" inside says so)
 * and transformers' CLIPModel (text_config a CLIPTextConfig, vision_config a CLIPVisionConfig;
 * keys a config leaves out take transformers' defaults, as save_pretrained writes only the
 * keys that differ from them). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "liandan/clip.h"

#define TRY(call)               \
    do {                        \
        ld_status st_ = (call); \
        if (st_) return st_;    \
    } while (0)

/* PretrainedConfig's generic keys, which transformers writes into every sub-config of older
 * CLIP checkpoints (generation settings, labels, ...): known, not used. */
#define GENERIC_KEYS                                                                                                  \
    "_name_or_path", "add_cross_attention", "architectures", "bad_words_ids", "begin_suppress_tokens",               \
        "chunk_size_feed_forward", "cross_attention_hidden_size", "decoder_start_token_id", "diversity_penalty",    \
        "do_sample", "early_stopping", "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty",           \
        "finetuning_task", "forced_bos_token_id", "forced_eos_token_id", "id2label", "is_decoder",                   \
        "is_encoder_decoder", "label2id", "length_penalty", "max_length", "min_length", "no_repeat_ngram_size",       \
        "num_beam_groups", "num_beams", "num_return_sequences", "output_attentions", "output_hidden_states",         \
        "output_scores", "prefix", "problem_type", "pruned_heads", "remove_invalid_values", "repetition_penalty",    \
        "return_dict", "return_dict_in_generate", "sep_token_id", "suppress_tokens", "task_specific_params",         \
        "temperature", "tf_legacy_loss", "tie_encoder_decoder", "tie_word_embeddings", "tokenizer_class", "top_k",   \
        "top_p", "torch_dtype", "torchscript", "transformers_version", "typical_p", "use_bfloat16", "dropout",       \
        "attention_dropout", "initializer_factor", "initializer_range", "projection_dim", "model_type", "hidden_act", \
        "layer_norm_eps", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"

static const char *const top_keys[] = {"architectures", "model_type", "projection_dim", "logit_scale_init_value",
                                       "text_config", "vision_config", "torch_dtype", "transformers_version",
                                       "initializer_factor", "liandan", "text_config_dict", "vision_config_dict",
                                       "_name_or_path", "_commit_hash", NULL};
static const char *const vision_keys[] = {GENERIC_KEYS, "image_size", "patch_size", "num_channels", NULL};
static const char *const hf_text_keys[] = {GENERIC_KEYS,     "vocab_size",   "max_position_embeddings",
                                           "bos_token_id",   "eos_token_id", "pad_token_id",
                                           NULL};

static size_t count_keys(const char *const *k) {
    size_t n = 0;
    while (k[n]) n++;
    return n;
}

/* hidden_act of a tower: quick_gelu (CLIP's), gelu (erf) or the tanh GELU. */
static ld_status get_act(ld_ctx *ctx, const ld_json_ref *r, const char *tower, bool *quick, bool *tanh_form) {
    const char *act = NULL;
    TRY(ld_json_get_string(ctx, r, "hidden_act", false, &act));
    if (!act) return LD_OK;
    *quick = !strcmp(act, "quick_gelu");
    *tanh_form = !strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh");
    if (!*quick && !*tanh_form && strcmp(act, "gelu"))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: %s hidden_act '%.40s' is not supported (quick_gelu, gelu, gelu_new)",
                        r->doc, tower, act);
    return LD_OK;
}

static ld_status get_i32(ld_ctx *ctx, const ld_json_ref *r, const char *key, int32_t *out) {
    int64_t v = *out;
    TRY(ld_json_get_int(ctx, r, key, false, 0, INT32_MAX, &v));
    *out = (int32_t)v;
    return LD_OK;
}

static ld_status get_f(ld_ctx *ctx, const ld_json_ref *r, const char *key, double lo, double hi, float *out) {
    double v = *out;
    TRY(ld_json_get_float(ctx, r, key, false, lo, hi, &v));
    *out = (float)v;
    return LD_OK;
}

/* vision_config; required = false takes CLIPVisionConfig's defaults for missing keys. */
static ld_status parse_vision(ld_ctx *ctx, const char *path, ld_json_ref *vr, bool required, ld_clip_config *c) {
    if (!vr->node) return LD_OK;
    const char *mt = NULL;
    TRY(ld_json_get_string(ctx, vr, "model_type", false, &mt));
    if (mt && strcmp(mt, "clip_vision_model"))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: vision_config model_type '%.40s' is not clip_vision_model", path, mt);
    TRY(ld_json_get_int(ctx, vr, "hidden_size", required, 1, 65536, &c->vision_width));
    TRY(ld_json_get_int(ctx, vr, "intermediate_size", required, 1, 1 << 20, &c->vision_mlp));
    TRY(ld_json_get_int(ctx, vr, "num_hidden_layers", required, 1, 1024, &c->vision_layers));
    TRY(ld_json_get_int(ctx, vr, "num_attention_heads", required, 1, 65536, &c->vision_heads));
    TRY(ld_json_get_int(ctx, vr, "image_size", required, 1, 4096, &c->image_size));
    TRY(ld_json_get_int(ctx, vr, "patch_size", required, 1, 4096, &c->patch_size));
    int64_t ch = 3;
    TRY(ld_json_get_int(ctx, vr, "num_channels", false, 1, 16, &ch));
    if (ch != 3) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: vision_config num_channels %lld (only 3, RGB)", path, (long long)ch);
    TRY(get_f(ctx, vr, "layer_norm_eps", 0, 1, &c->vision_eps));
    TRY(get_act(ctx, vr, "vision_config", &c->vision_quick_gelu, &c->vision_gelu_tanh));
    ld_json_check_keys(ctx, vr, vision_keys, count_keys(vision_keys), NULL, NULL);
    return LD_OK;
}

/* text_config as a CLIPTextConfig. */
static ld_status parse_hf_text(ld_ctx *ctx, const char *path, ld_json_ref *tr, ld_clip_config *c) {
    if (!tr->node) return LD_OK;
    ld_encoder_config *t = &c->text;
    const char *mt = NULL;
    TRY(ld_json_get_string(ctx, tr, "model_type", false, &mt));
    if (mt && strcmp(mt, "clip_text_model"))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: text_config model_type '%.40s' is not clip_text_model (or bert)", path,
                        mt);
    TRY(ld_json_get_int(ctx, tr, "vocab_size", false, 1, 1 << 24, &t->vocab_size));
    TRY(ld_json_get_int(ctx, tr, "hidden_size", false, 1, 65536, &t->hidden_size));
    TRY(ld_json_get_int(ctx, tr, "intermediate_size", false, 1, 1 << 20, &t->intermediate_size));
    TRY(ld_json_get_int(ctx, tr, "num_hidden_layers", false, 1, 1024, &t->n_layers));
    TRY(ld_json_get_int(ctx, tr, "num_attention_heads", false, 1, 65536, &t->n_heads));
    TRY(ld_json_get_int(ctx, tr, "max_position_embeddings", false, 1, 1 << 20, &t->max_position));
    TRY(get_f(ctx, tr, "layer_norm_eps", 0, 1, &t->norm_eps));
    TRY(get_f(ctx, tr, "initializer_range", 0, 10, &t->init_std));
    TRY(get_act(ctx, tr, "text_config", &t->quick_gelu, &t->gelu_tanh));
    TRY(get_i32(ctx, tr, "bos_token_id", &c->bos_token_id));
    TRY(get_i32(ctx, tr, "eos_token_id", &c->eos_token_id));
    TRY(get_i32(ctx, tr, "pad_token_id", &t->pad_token_id));
    ld_json_check_keys(ctx, tr, hf_text_keys, count_keys(hf_text_keys), NULL, NULL);
    return LD_OK;
}

static ld_status parse_config(ld_ctx *ctx, const char *path, cJSON *root, ld_clip_config *c) {
    ld_json_ref r = ld_json_root(path, root), tr = {0}, vr = {0}, lr = {0};
    const char *mt = NULL, *tmt = NULL;
    TRY(ld_json_get_string(ctx, &r, "model_type", true, &mt));
    if (strcmp(mt, "clip")) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model_type '%.40s' is not clip", path, mt);
    TRY(ld_json_get_object(ctx, &r, "text_config", false, &tr));
    TRY(ld_json_get_object(ctx, &r, "vision_config", false, &vr));
    if (tr.node) TRY(ld_json_get_string(ctx, &tr, "model_type", false, &tmt));
    /* liandan's layout says its text tower is a BertConfig; anything else is a CLIPTextConfig */
    bool bert = tmt && (!strcmp(tmt, "bert") || !strcmp(tmt, "esm"));
    *c = bert ? ld_clip_default_config() : ld_clip_hf_config();
    TRY(ld_json_get_int(ctx, &r, "projection_dim", bert, 1, 65536, &c->embed_dim));
    TRY(get_f(ctx, &r, "logit_scale_init_value", -100, 100, &c->logit_scale_init));
    TRY(ld_json_get_object(ctx, &r, "liandan", false, &lr));
    if (lr.node) TRY(get_f(ctx, &lr, "logit_scale_max", -100, 100, &c->logit_scale_max));
    ld_json_check_keys(ctx, &r, top_keys, count_keys(top_keys), NULL, NULL);
    if (!bert) {
        TRY(parse_hf_text(ctx, path, &tr, c));
        return parse_vision(ctx, path, &vr, false, c);
    }
    if (!vr.node) return ld_error(ctx, LD_ERR_FORMAT, "%s: key 'vision_config': missing", path);
    char *ttext = cJSON_PrintUnformatted(tr.node);
    if (!ttext) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", path);
    char tpath[300];
    snprintf(tpath, sizeof tpath, "%s: text_config", path);
    ld_status st = ld_encoder_config_from_json(ctx, ttext, strlen(ttext), tpath, &c->text);
    free(ttext);
    if (st) return st;
    return parse_vision(ctx, path, &vr, true, c);
}

ld_status ld_clip_config_from_json(ld_ctx *ctx, const char *text, size_t len, const char *path, ld_clip_config *out) {
    if (!text || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_config_from_json: NULL argument");
    if (!path) path = "config.json";
    cJSON *root = NULL;
    TRY(ld_json_parse(ctx, path, text, len, &root));
    ld_clip_config c;
    ld_status st = cJSON_IsObject(root) ? parse_config(ctx, path, root, &c)
                                        : ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    ld_json_free(root);
    if (!st && (st = ld_clip_config_validate(ctx, &c))) st = ld_error_wrap(ctx, st, "%s: ", path);
    if (!st) *out = c;
    return st;
}

static const char *act_name(bool quick, bool tanh_form) {
    return quick ? "quick_gelu" : tanh_form ? "gelu_new" : "gelu";
}

/* text_config of the CLIPModel layout (a CLIPTextConfig). */
static cJSON *hf_text_json(const ld_clip_config *c) {
    const ld_encoder_config *t = &c->text;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "model_type", "clip_text_model");
    cJSON_AddNumberToObject(o, "vocab_size", (double)t->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", (double)t->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", (double)t->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", (double)t->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", (double)t->n_heads);
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)t->max_position);
    cJSON_AddStringToObject(o, "hidden_act", act_name(t->quick_gelu, t->gelu_tanh));
    cJSON_AddNumberToObject(o, "layer_norm_eps", t->norm_eps);
    cJSON_AddNumberToObject(o, "projection_dim", (double)c->embed_dim);
    cJSON_AddNumberToObject(o, "bos_token_id", c->bos_token_id);
    cJSON_AddNumberToObject(o, "eos_token_id", c->eos_token_id);
    cJSON_AddNumberToObject(o, "pad_token_id", t->pad_token_id);
    cJSON_AddNumberToObject(o, "initializer_range", t->init_std);
    cJSON_AddNumberToObject(o, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(o, "dropout", 0.0);
    return o;
}

char *ld_clip_config_to_json(const ld_clip_config *c) {
    bool hf = c->layout == LD_CLIP_LAYOUT_HF;
    cJSON *o = cJSON_CreateObject(), *t = NULL;
    if (hf) t = hf_text_json(c);
    else {
        char *text = ld_encoder_config_to_json(&c->text);
        t = text ? cJSON_Parse(text) : NULL;
        free(text);
    }
    if (!o || !t) {
        cJSON_Delete(o), cJSON_Delete(t);
        return NULL;
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "architectures"), cJSON_CreateString("CLIPModel"));
    cJSON_AddStringToObject(o, "model_type", "clip");
    cJSON_AddNumberToObject(o, "projection_dim", (double)c->embed_dim);
    cJSON_AddNumberToObject(o, "logit_scale_init_value", c->logit_scale_init);
    cJSON_AddItemToObject(o, "text_config", t);
    cJSON *v = cJSON_AddObjectToObject(o, "vision_config");
    cJSON_AddStringToObject(v, "model_type", "clip_vision_model");
    cJSON_AddNumberToObject(v, "hidden_size", (double)c->vision_width);
    cJSON_AddNumberToObject(v, "intermediate_size", (double)c->vision_mlp);
    cJSON_AddNumberToObject(v, "num_hidden_layers", (double)c->vision_layers);
    cJSON_AddNumberToObject(v, "num_attention_heads", (double)c->vision_heads);
    cJSON_AddNumberToObject(v, "image_size", (double)c->image_size);
    cJSON_AddNumberToObject(v, "patch_size", (double)c->patch_size);
    cJSON_AddNumberToObject(v, "num_channels", 3);
    cJSON_AddNumberToObject(v, "layer_norm_eps", c->vision_eps);
    cJSON_AddStringToObject(v, "hidden_act", act_name(c->vision_quick_gelu, c->vision_gelu_tanh));
    if (hf) cJSON_AddNumberToObject(v, "projection_dim", (double)c->embed_dim);
    cJSON *lk = cJSON_AddObjectToObject(o, "liandan");
    if (!hf) {
        cJSON_AddStringToObject(lk, "text_tower", "bert");
        cJSON_AddStringToObject(lk, "vision_blocks", "pre-LN encoder layers (esm names, no rotary)");
    }
    cJSON_AddNumberToObject(lk, "logit_scale_max", c->logit_scale_max);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

bool ld_clip_config_sniff(const char *text, size_t len) {
    if (!text) return false;
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    bool yes = cJSON_IsString(mt) && !strcmp(mt->valuestring, "clip");
    cJSON_Delete(root);
    return yes;
}

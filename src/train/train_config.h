/* train/train_config.h — the training config file: everything `liandan pretrain` and
 * `liandan distill` need. */
#ifndef LD_TRAIN_CONFIG_H
#define LD_TRAIN_CONFIG_H

#include "liandan/causal_lm.h"
#include "liandan/encoder.h"
#include "liandan/train.h"

#define LD_TRAIN_MAX_PROMPTS 8
/* Distillation defaults (docs/training.md, "Distillation", has the measurement behind them). */
#define LD_DISTILL_DEFAULT_TEMPERATURE 1.0f
#define LD_DISTILL_DEFAULT_ALPHA 0.9f

typedef struct ld_train_config {
    ld_train_params train;
    ld_lm_config model;
    bool has_model;             /* "model" was given */
    bool model_bos, model_eos;  /* "model" gave bos_token_id / eos_token_id (else: the tokenizer's) */
    char tokenizer[1024], train_data[1024], val_data[1024], init_from[1024], out_dir[1024];
    char precision[8];          /* "fp32" or "bf16" */
    char teacher[1024];         /* distillation: the teacher model (directory or GGUF); "" = none */
    float temperature, alpha;   /* distillation: softmax temperature, weight of the soft loss */
    int64_t sample_every, sample_tokens;
    char sample_prompts[LD_TRAIN_MAX_PROMPTS][256];
    int n_sample_prompts;
    int threads;
    /* "objective": "clm" (next token, causal LMs) or "mlm" (masked LM, encoders: "model" then
     * holds BertConfig / EsmConfig keys, "train_data" / "val_data" are corpus files such as
     * FASTA, "tokenizer" is "esm", "amino", a vocab.txt or a tokenizer.json) */
    bool mlm;
    ld_encoder_config encoder;
    ld_mlm_params mlm_params; /* "mask_prob", "whole_word", "bucket" */
} ld_train_config;

ld_train_config ld_train_config_default(void);
/* Parses the config text (NULL = empty config) with `overrides` ("key=value", dotted keys
 * reach into objects: "model.hidden_size=512") applied first. */
ld_status ld_train_config_parse(ld_ctx *ctx, const char *text, size_t len, const char *path,
                                const char *const *overrides, int n_overrides, ld_train_config *out);

#endif

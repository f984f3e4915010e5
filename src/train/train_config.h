/* train/train_config.h — the training config file: everything `liandan pretrain`,
 * `liandan distill` and `liandan finetune` need (docs/training.md lists the keys). */
#ifndef LD_TRAIN_CONFIG_H
#define LD_TRAIN_CONFIG_H

#include "liandan/adapter.h"
#include "liandan/causal_lm.h"
#include "liandan/encoder.h"
#include "liandan/train.h"
#include "train/ft_data.h"

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
    char precision[8];          /* "auto" (the default), "fp32" or "bf16": see ld_train_config_bf16 */
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
    double peak_gflops;         /* the machine's FMA peak for MFU (0 = not reported) */
    /* fine-tuning */
    char base[1024];            /* the pretrained model (directory or GGUF) */
    char method[16];            /* "full", "lora", "prompt" */
    ld_adapter_config adapter;  /* LoRA / prompt / head settings (method and n_labels set by the job) */
    ld_ft_data_config data;
    char data_train[1024], data_val[1024];
    double val_fraction;        /* held out of data.train when there is no data.val */
    bool packing;               /* text / chat rows packed back to back (default: text yes, chat no) */
    bool has_packing;
    ld_ft_labels labels;        /* classification labels given by the config (fixed), or none */
    double epochs;              /* > 0: max_steps from the training set's size */
    bool has_max_steps, has_warmup, has_decay, has_eval_batches; /* given by the config (not defaults) */
    /* continual learning ("stages" are split off by the job; these apply between them) */
    char name[64];              /* a stage's name */
    double replay;              /* share of each batch's rows from earlier stages' training data */
    char regularizer[8];        /* "none", "l2sp", "ewc" */
    float reg_lambda;
    int64_t fisher_batches;     /* EWC: batches of the previous stage's data for the Fisher information */
    bool adapter_per_stage;     /* a new adapter for every stage (earlier ones are kept, not trained) */
} ld_train_config;

ld_train_config ld_train_config_default(void);
/* Whether c's products run in bf16: "bf16"; "fp32" never; "auto" (the default) only for the
 * frozen base of a fine-tune with an adapter (method lora or prompt: the adapter, its
 * optimizer and full fine-tuning stay fp32) on a machine whose bf16 products are at least
 * LD_TRAIN_BF16_BASE_MIN_SPEEDUP times faster than fp32 (ld_bf16_gemm_speedup). */
#define LD_TRAIN_BF16_BASE_MIN_SPEEDUP 1.8
bool ld_train_config_bf16(const ld_train_config *c, bool finetune);
/* The same rule for a given speedup (tests). */
bool ld_train_config_bf16_at(const ld_train_config *c, bool finetune, double speedup);
/* Frees what a parsed config holds (label names). */
void ld_train_config_clear(ld_train_config *c);
/* Parses the config text (NULL = empty config) with `overrides` ("key=value", dotted keys
 * reach into objects: "model.hidden_size=512") applied first. */
ld_status ld_train_config_parse(ld_ctx *ctx, const char *text, size_t len, const char *path,
                                const char *const *overrides, int n_overrides, ld_train_config *out);

#endif

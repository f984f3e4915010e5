/* train/job.c — a training job: from a config to a trained model. Builds (or loads) the
 * causal LM, its tokenizer and, for fine-tuning, the adapter (LoRA, prompt, head); opens
 * the data (token shards for pretraining and distillation, example files for fine-tuning);
 * runs the trainer with checkpoints, validation, early stopping and cancellation; writes
 * the model directory or the adapter. The CLI commands and the server only call this. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "liandan/data.h"
#include "liandan/io.h"
#include "train/ckpt_tensors.h"
#include "train/train_config.h"
#include "train/trainer_internal.h"

/* One fine-tuning stage: its effective config and data. A config without "stages" is one
 * stage writing to out_dir itself; with stages, stage i writes to out_dir/stage-i. */
typedef struct job_stage {
    ld_train_config cfg;
    char out_dir[1100];
    ld_ft_data *train_d, *val_d;
    ld_ft_source *train_src, *val_src;
    bool packed;
} job_stage;

#define JOB_MAX_STAGES 16

struct ld_train_job {
    ld_ctx *ctx;
    ld_job_kind kind;
    ld_train_config cfg; /* pretraining, distillation; fine-tuning: stage 1's */
    char name[1024];
    ld_lm *m;
    ld_tokenizer *tok;
    ld_teacher *teacher;
    ld_adapter *adapter;
    /* masked-LM pretraining ("objective": "mlm"): the encoder and its batch sources */
    ld_encoder *enc;
    ld_mlm_source *mlm_train, *mlm_val;
    /* pretraining / distillation: windows of token shards */
    ld_batch_sampler *train_s, *val_s;
    int32_t *window;
    /* fine-tuning: examples, per stage */
    job_stage stages[JOB_MAX_STAGES];
    int n_stages;
    ld_ft_source *replay_src[JOB_MAX_STAGES]; /* the current stage's view of earlier stages' data */
    ld_ft_mix *mix;
    ld_trainer *t;
    ld_comm *comm;  /* the ranks of a data-parallel run (one without a launcher) */
    int t_stage; /* the stage t trains */
    float *initial; /* with stages: the trainable values before training (row 0 of the stage matrix) */
    volatile int stop;
    ld_train_job_info info;
    const char *prompts[LD_TRAIN_MAX_PROMPTS];
    char output[1100];
};

static const char *const kind_names[] = {"pretrain", "distill", "finetune"};

/* ---- batches of token-shard windows ------------------------------------------------------ */
static ld_status sampler_window(void *u, int32_t *tokens, int64_t B, int64_t T) {
    return ld_batch_sampler_next(u, tokens, B, T);
}
static ld_status win_next_train(void *u, ld_batch *b) {
    ld_train_job *j = u;
    return ld_batch_from_windows(b, j->window, sampler_window, j->train_s);
}
static ld_status win_next_val(void *u, ld_batch *b) {
    ld_train_job *j = u;
    return ld_batch_from_windows(b, j->window, sampler_window, j->val_s);
}
static ld_status win_save_train(void *u, char **out) {
    return ld_batch_sampler_save(((ld_train_job *)u)->train_s, out);
}
static ld_status win_restore_train(void *u, const char *json) {
    return ld_batch_sampler_restore(((ld_train_job *)u)->train_s, json);
}
static ld_status win_save_val(void *u, char **out) {
    return ld_batch_sampler_save(((ld_train_job *)u)->val_s, out);
}
static ld_status win_restore_val(void *u, const char *json) {
    return ld_batch_sampler_restore(((ld_train_job *)u)->val_s, json);
}

/* ---- building the parts ------------------------------------------------------------------ */

/* The teacher named by the config: loaded frozen, and checked to share the student's
 * tokenizer (the same vocabulary, merges and specials: the logits must mean the same
 * tokens). A config without a tokenizer takes the teacher's. */
static ld_status load_teacher(ld_train_job *j) {
    ld_ctx *ctx = j->ctx;
    ld_lm *tm = NULL;
    ld_tokenizer *ttok = NULL;
    ld_status st = ld_lm_open(ctx, j->cfg.teacher, &tm, &ttok);
    if (st) return ld_error_wrap(ctx, st, "could not load the teacher '%s': ", j->cfg.teacher);
    if (!j->tok) {
        j->tok = ttok, ttok = NULL;
    } else if (ld_tokenizer_hash(j->tok) != ld_tokenizer_hash(ttok)) {
        st = ld_error(ctx, LD_ERR_MISMATCH,
                      "the teacher '%s' uses another tokenizer than the student's '%s' (%lld vs %lld tokens): "
                      "distillation needs teacher and student to share one tokenizer",
                      j->cfg.teacher, j->cfg.tokenizer, (long long)ld_tokenizer_vocab_size(ttok),
                      (long long)ld_tokenizer_vocab_size(j->tok));
    }
    ld_tokenizer_free(ttok);
    if (!st && !(st = ld_teacher_new(tm, &j->teacher))) tm = NULL; /* owned by the teacher */
    ld_lm_free(tm);
    return st;
}

static bool is_fasta(const char *p) {
    size_t l = strlen(p);
    return (l > 3 && !strcmp(p + l - 3, ".fa")) || (l > 6 && !strcmp(p + l - 6, ".fasta")) ||
           (l > 4 && !strcmp(p + l - 4, ".faa"));
}

/* Masked-LM training of an encoder: the tokenizer ("esm", "amino", a vocab.txt or a
 * tokenizer.json), the encoder from "model" (BertConfig / EsmConfig keys) or "init_from", the
 * masked-LM batch sources over "train_data" / "val_data" (corpus files; FASTA read as
 * proteins), the trainer. */
static ld_status setup_mlm(ld_train_job *j) {
    ld_ctx *ctx = j->ctx;
    ld_train_config *c = &j->cfg;
    ld_status st = LD_OK;
    if (j->kind == LD_JOB_DISTILL || c->teacher[0])
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: distillation of masked LMs is not supported", j->name);
    size_t tl = strlen(c->tokenizer);
    if (!strcmp(c->tokenizer, "esm")) st = ld_tokenizer_new_esm(ctx, &j->tok);
    else if (!strcmp(c->tokenizer, "amino")) st = ld_tokenizer_new_amino(ctx, &j->tok);
    else if (tl > 4 && !strcmp(c->tokenizer + tl - 4, ".txt")) st = ld_tokenizer_load_vocab_txt(ctx, c->tokenizer, &j->tok);
    else if (tl) st = ld_tokenizer_load(ctx, c->tokenizer, &j->tok);
    if (st) return ld_error_wrap(ctx, st, "loading the tokenizer: ");
    if (!j->tok || !c->train_data[0])
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: 'tokenizer' and 'train_data' are required", j->name);
    if (c->init_from[0]) st = ld_encoder_load(ctx, c->init_from, &j->enc);
    else if (!c->has_model) st = ld_error(ctx, LD_ERR_INVALID_ARG, "%s: give 'model' or 'init_from'", j->name);
    else st = ld_encoder_new(ctx, &c->encoder, c->train.seed, &j->enc);
    if (st) return ld_error_wrap(ctx, st, "building the model: ");
    const ld_encoder_config *ec = ld_encoder_config_of(j->enc);
    if (ld_tokenizer_vocab_size(j->tok) > ec->vocab_size)
        return ld_error(ctx, LD_ERR_MISMATCH, "the tokenizer has %lld tokens but the model's vocab_size is %lld",
                        (long long)ld_tokenizer_vocab_size(j->tok), (long long)ec->vocab_size);
    ld_mlm_params mp = c->mlm_params;
    mp.seed = c->train.seed;
    mp.corpus.protein = is_fasta(c->train_data);
    ld_mlm_params vp = mp;
    vp.eval = true, vp.corpus.protein = c->val_data[0] && is_fasta(c->val_data);
    const char *tp = c->train_data, *vpath = c->val_data;
    if ((st = ld_mlm_source_open(ctx, &tp, 1, j->tok, c->train.seq_len, &mp, &j->mlm_train)) ||
        (vpath[0] && (st = ld_mlm_source_open(ctx, &vpath, 1, j->tok, c->train.seq_len, &vp, &j->mlm_val))))
        return ld_error_wrap(ctx, st, "opening the training data: ");
    if ((st = ld_trainer_new_mlm(j->enc, &c->train, j->mlm_train, j->mlm_val, c->peak_gflops * 1e9, &j->t))) return st;
    j->info.mlm = true;
    j->info.encoder = *ec;
    j->info.base = c->init_from;
    j->info.train_examples = ld_mlm_source_docs(j->mlm_train);
    j->info.train_tokens = ld_mlm_source_tokens(j->mlm_train);
    j->info.max_steps = c->train.max_steps;
    return LD_OK;
}

/* Pretraining and distillation: the model from "model" (or "init_from"), shards of tokens. */
static ld_status setup_pretrain(ld_train_job *j) {
    ld_ctx *ctx = j->ctx;
    ld_train_config *c = &j->cfg;
    ld_status st;
    if (c->mlm) return setup_mlm(j);
    if (j->kind == LD_JOB_DISTILL && !c->teacher[0])
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "%s: distillation needs a teacher: give --teacher MODEL, or \"teacher\" in the config", j->name);
    if (j->kind == LD_JOB_PRETRAIN && c->teacher[0])
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s names a teacher: distil with `liandan distill`", j->name);
    if (c->tokenizer[0] && (st = ld_tokenizer_load(ctx, c->tokenizer, &j->tok)))
        return ld_error_wrap(ctx, st, "loading the tokenizer: ");
    if (j->kind == LD_JOB_DISTILL && (st = load_teacher(j))) return st;
    if (!j->tok || !c->train_data[0])
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: 'tokenizer' and 'train_data' are required", j->name);
    /* special ids the model config leaves out are the tokenizer's (the data was encoded with it) */
    int32_t tok_bos = ld_tokenizer_bos_id(j->tok), tok_eos = ld_tokenizer_eos_id(j->tok);
    if (!c->model_eos && tok_eos >= 0) c->model.eos_token_id = tok_eos;
    if (!c->model_bos && (tok_bos >= 0 || tok_eos >= 0)) c->model.bos_token_id = tok_bos >= 0 ? tok_bos : tok_eos;
    /* expert parallelism over groups of P ranks: this rank holds only experts [p E / P, (p + 1) E / P)
     * of every layer, p its place in its group (the others are never built or read here) */
    const int P = (int)c->train.expert_parallel, W = ld_comm_size(j->comm);
    const bool split = P > 1 && W > 1 && W % P == 0;
    const int part = split ? ld_comm_rank(j->comm) % P : 0, parts = split ? P : 0;
    if (c->init_from[0]) { /* loaded models start frozen: every weight held trains here */
        st = lm_load_part(ctx, c->init_from, part, parts, &j->m);
    } else if (!c->has_model) st = ld_error(ctx, LD_ERR_INVALID_ARG, "%s: give 'model' or 'init_from'", j->name);
    else st = lm_build_part(ctx, &c->model, c->train.seed, LM_INIT_RANDOM, part, parts, &j->m);
    if (st) return ld_error_wrap(ctx, st, "building the model: ");
    const ld_lm_config *mc = ld_lm_config_of(j->m);
    if (ld_tokenizer_vocab_size(j->tok) > mc->vocab_size)
        return ld_error(ctx, LD_ERR_MISMATCH, "the tokenizer has %lld tokens but the model's vocab_size is %lld",
                        (long long)ld_tokenizer_vocab_size(j->tok), (long long)mc->vocab_size);
    ld_sampler_params sp = ld_sampler_default_params();
    sp.seed = c->train.seed;
    ld_sampler_params vp = sp;
    vp.mode = LD_SAMPLE_SEQUENTIAL; /* validation reads the same windows every time */
    if ((st = ld_batch_sampler_open(ctx, c->train_data, j->tok, &sp, &j->train_s)) ||
        (c->val_data[0] && (st = ld_batch_sampler_open(ctx, c->val_data, j->tok, &vp, &j->val_s))))
        return ld_error_wrap(ctx, st, "opening the training data: ");
    if (!(j->window = ld_alloc(ctx, (size_t)(c->train.batch_size * (c->train.seq_len + 1)) * sizeof(int32_t))))
        return ld_ctx_status(ctx);
    j->info.base = c->init_from;
    return LD_OK;
}

static const char *const task_names[] = {[LD_FT_TEXT] = "lm", [LD_FT_CHAT] = "chat", [LD_FT_CLASSIFY] = "classification"};

/* The classification labels of every stage's training file, sorted (unless the config fixed
 * them): one head serves all stages. */
static ld_status collect_labels(ld_train_job *j, ld_ft_labels *labels) {
    if (labels->fixed) return LD_OK;
    for (int s = 0; s < j->n_stages; s++) {
        ld_ft_data *d = NULL;
        ld_status st = ld_ft_data_load(j->ctx, j->tok, &j->stages[s].cfg.data, j->stages[s].cfg.data_train, labels, 1, &d);
        ld_ft_data_free(d);
        if (st) return st;
    }
    ld_ft_labels_sort(labels);
    labels->fixed = true;
    if (labels->n < 2)
        return ld_error(j->ctx, LD_ERR_FORMAT, "%s: classification needs at least 2 labels, the data has %d",
                        j->stages[0].cfg.data_train, labels->n);
    return LD_OK;
}

/* A stage's examples and batch sources; its step counts from the data. */
static ld_status setup_stage(ld_train_job *j, job_stage *sg, const ld_ft_labels *labels) {
    ld_ctx *ctx = j->ctx;
    ld_train_config *c = &sg->cfg;
    ld_ft_format fmt = c->data.format;
    bool classify = fmt == LD_FT_CLASSIFY;
    int64_t T = c->train.seq_len, B = c->train.batch_size, A = c->train.grad_accum;
    if (!c->data_train[0])
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: 'data.train' (the training examples) is required", j->name);
    if (fmt != j->stages[0].cfg.data.format)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: every stage's data.format must be the first stage's", j->name);
    sg->packed = c->has_packing ? c->packing : fmt == LD_FT_TEXT;
    if (classify && sg->packed)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: classification examples cannot be packed", j->name);
    int64_t max_len = sg->packed ? 0 : classify ? T : T + 1;
    ld_ft_labels *lb = (ld_ft_labels *)labels;
    ld_status st = ld_ft_data_load(ctx, j->tok, &c->data, c->data_train, lb, max_len, &sg->train_d);
    if (!st && c->data_val[0]) st = ld_ft_data_load(ctx, j->tok, &c->data, c->data_val, lb, max_len, &sg->val_d);
    else if (!st && c->val_fraction > 0) st = ld_ft_data_split(sg->train_d, c->val_fraction, &sg->val_d);
    if (st) return st;
    int32_t pad = ld_tokenizer_pad_id(j->tok) >= 0 ? ld_tokenizer_pad_id(j->tok) : ld_tokenizer_eos_id(j->tok);
    if ((st = ld_ft_source_new(ctx, sg->train_d, sg->packed, true, c->train.seed, pad, &sg->train_src)) ||
        (sg->val_d && (st = ld_ft_source_new(ctx, sg->val_d, sg->packed, false, 0, pad, &sg->val_src))))
        return st;
    if (c->epochs > 0 && !c->has_max_steps) { /* an explicit max_steps wins */
        int64_t per_epoch = ld_ft_source_batches_per_epoch(sg->train_src, B, T);
        int64_t steps = (int64_t)ceil(c->epochs * (double)per_epoch / (double)A);
        ld_train_params *p = &c->train;
        p->max_steps = p->schedule.max_steps = steps < 1 ? 1 : steps;
        if (!c->has_warmup) p->schedule.warmup_steps = p->max_steps / 20;
        if (!c->has_decay) p->schedule.decay_steps = p->max_steps / 5;
    }
    if (sg->val_src && !c->has_eval_batches) c->train.eval_batches = ld_ft_source_batches_per_epoch(sg->val_src, B, T);
    c->train.out_dir = sg->out_dir;
    c->train.bf16 = ld_train_config_bf16(c, true);
    return LD_OK;
}

/* The adapter of stage s (a new one per stage with adapter_per_stage). */
static ld_status make_adapter(ld_train_job *j, int s) {
    const ld_train_config *c = &j->stages[s].cfg;
    ld_adapter_config ac = c->adapter;
    ld_adapter_method_from_name(!strcmp(c->method, "full") ? "none" : c->method, &ac.method);
    const ld_ft_labels *labels = &j->stages[0].cfg.labels;
    ac.n_labels = c->data.format == LD_FT_CLASSIFY ? labels->n : 0;
    if (ac.method == LD_ADAPTER_NONE && !ac.n_labels) return LD_OK;
    ld_status st = ld_adapter_new(j->m, &ac, c->train.seed + (uint64_t)s, &j->adapter);
    if (!st && ac.n_labels) st = ld_adapter_set_labels(j->adapter, (const char *const *)labels->names, labels->n);
    return st;
}

/* Fine-tuning: the base model, every stage's examples, the adapter for the method. */
static ld_status setup_finetune(ld_train_job *j) {
    ld_ctx *ctx = j->ctx;
    ld_train_config *c = &j->stages[0].cfg;
    ld_status st;
    const char *base = c->base[0] ? c->base : c->init_from;
    if (!base[0]) return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: 'base' (the pretrained model) is required", j->name);
    if (!c->data_train[0])
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: 'data.train' (the training examples) is required", j->name);
    if (c->teacher[0]) return ld_error(ctx, LD_ERR_INVALID_ARG, "%s names a teacher: distil with `liandan distill`", j->name);
    for (int s = 1; s < j->n_stages; s++)
        if (strcmp(j->stages[s].cfg.base, c->base) || strcmp(j->stages[s].cfg.method, c->method))
            return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: stage %d changes 'base' or 'method' (stages share them)", j->name,
                            s + 1);
    /* under an adapter a GGUF base is read in place: quantized matrices stay quantized (QLoRA) */
    ld_lm_load_params lp = ld_lm_load_default_params();
    lp.trainable = !strcmp(c->method, "full") || !ld_lm_gguf_sniff(base);
    if ((st = ld_lm_open_ex(ctx, base, &lp, &j->m, &j->tok)))
        return ld_error_wrap(ctx, st, "loading the base model '%s': ", base);
    if (!strcmp(c->method, "full") && ld_params_set_trainable(ld_lm_params(j->m), NULL, true) < 0)
        return ld_ctx_status(ctx); /* loaded models start frozen; an adapter freezes the base again */
    if (c->tokenizer[0]) { /* a tokenizer of the config's own must be the base's */
        ld_tokenizer *other = NULL;
        if ((st = ld_tokenizer_load(ctx, c->tokenizer, &other))) return ld_error_wrap(ctx, st, "loading the tokenizer: ");
        bool same = ld_tokenizer_hash(other) == ld_tokenizer_hash(j->tok);
        ld_tokenizer_free(other);
        if (!same)
            return ld_error(ctx, LD_ERR_MISMATCH, "%s: tokenizer '%s' is not the base model's tokenizer", j->name,
                            c->tokenizer);
    }
    j->info.base = base;
    ld_ft_format fmt = c->data.format;
    if (fmt == LD_FT_CLASSIFY && (st = collect_labels(j, &c->labels))) return st;
    for (int s = 0; s < j->n_stages; s++)
        if ((st = setup_stage(j, &j->stages[s], &c->labels))) return st;
    ld_adapter_method method;
    ld_adapter_method_from_name(!strcmp(c->method, "full") ? "none" : c->method, &method);
    int64_t P = method == LD_ADAPTER_PROMPT ? c->adapter.virtual_tokens : 0, maxpos = ld_lm_config_of(j->m)->max_position;
    for (int s = 0; s < j->n_stages; s++)
        if (j->stages[s].cfg.train.seq_len + P > maxpos)
            return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: seq_len %lld%s exceeds the base model's max_position %lld", j->name,
                            (long long)j->stages[s].cfg.train.seq_len, P ? " plus the prompt's virtual tokens" : "",
                            (long long)maxpos);
    if (j->n_stages > 1 && c->regularizer[0] && strcmp(c->regularizer, "none") && c->adapter_per_stage)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: a new adapter per stage has nothing to anchor (no regularizer with it)",
                        j->name);
    if ((st = make_adapter(j, 0))) return st;
    j->info.quantized_base = method != LD_ADAPTER_NONE && ld_lm_is_quantized(j->m); /* QLoRA (ld_adapter_new) */
    j->info.task = task_names[fmt];
    for (int s = 0; s < j->n_stages; s++) {
        j->info.train_examples += ld_ft_data_count(j->stages[s].train_d);
        j->info.val_examples += ld_ft_data_count(j->stages[s].val_d);
        j->info.truncated += ld_ft_data_truncated(j->stages[s].train_d) + ld_ft_data_truncated(j->stages[s].val_d);
        j->info.max_steps += j->stages[s].cfg.train.max_steps;
    }
    j->info.n_labels = fmt == LD_FT_CLASSIFY ? c->labels.n : 0;
    j->info.n_stages = j->n_stages;
    return LD_OK;
}

/* A trainer for stage s: its data, with earlier stages' rows mixed in (replay) from fresh
 * sources of their own, so a stage started after a restart sees the same batches. */
static ld_status stage_trainer(ld_train_job *j, int s) {
    ld_ctx *ctx = j->ctx;
    job_stage *sg = &j->stages[s];
    ld_trainer_free(j->t), j->t = NULL;
    ld_ft_mix_free(j->mix), j->mix = NULL;
    for (int k = 0; k < JOB_MAX_STAGES; k++) ld_ft_source_free(j->replay_src[k]), j->replay_src[k] = NULL;
    ld_batch_source tsrc = ld_ft_source_batches(sg->train_src), vsrc, old[JOB_MAX_STAGES];
    ld_status st = LD_OK;
    if (s > 0 && sg->cfg.replay > 0) {
        int32_t pad = ld_tokenizer_pad_id(j->tok) >= 0 ? ld_tokenizer_pad_id(j->tok) : ld_tokenizer_eos_id(j->tok);
        for (int k = 0; k < s && !st; k++) {
            st = ld_ft_source_new(ctx, j->stages[k].train_d, j->stages[k].packed, true, sg->cfg.train.seed * 31 + (uint64_t)k,
                                  pad, &j->replay_src[k]);
            if (!st) old[k] = ld_ft_source_batches(j->replay_src[k]);
        }
        if (!st) st = ld_ft_mix_new(ctx, tsrc, old, s, sg->cfg.replay, sg->cfg.train.seed + 977, &j->mix);
        if (!st) tsrc = ld_ft_mix_batches(j->mix);
    }
    if (sg->val_src) vsrc = ld_ft_source_batches(sg->val_src);
    if (!st) st = ld_trainer_new(j->m, &sg->cfg.train, &tsrc, sg->val_src ? &vsrc : NULL, sg->cfg.peak_gflops * 1e9, &j->t);
    if (!st) st = ld_trainer_set_comm(j->t, j->comm);
    if (!st) j->t_stage = s;
    return st;
}

/* Deep-merges src's keys into dst (objects key by key, other values replaced). */
static void merge_json(cJSON *dst, const cJSON *src) {
    for (const cJSON *it = src->child; it; it = it->next) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, it->string);
        if (cJSON_IsObject(d) && cJSON_IsObject(it)) merge_json(d, it);
        else if (d) cJSON_ReplaceItemInObjectCaseSensitive(dst, it->string, cJSON_Duplicate(it, true));
        else cJSON_AddItemToObject(dst, it->string, cJSON_Duplicate(it, true));
    }
}

/* The fine-tuning stages: a config with "stages" gives stage i the config with the stage's
 * keys merged in and out_dir/stage-i; one without is a single stage writing to out_dir. */
static ld_status parse_stages(ld_train_job *j, const char *text, size_t len, const char *const *overrides, int n_over) {
    ld_ctx *ctx = j->ctx;
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *stages = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "stages") : NULL;
    ld_status st = LD_OK;
    if (!stages) {
        cJSON_Delete(root);
        j->n_stages = 1;
        j->stages[0].cfg = j->cfg;
        memset(&j->cfg.labels, 0, sizeof j->cfg.labels); /* owned by the stage now */
        snprintf(j->stages[0].out_dir, sizeof j->stages[0].out_dir, "%s", j->stages[0].cfg.out_dir);
        return LD_OK;
    }
    int n = cJSON_GetArraySize(stages);
    if (!cJSON_IsArray(stages) || n < 1 || n > JOB_MAX_STAGES)
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: 'stages' must be a list of 1..%d objects", j->name, JOB_MAX_STAGES);
    cJSON *rest = st ? NULL : cJSON_Duplicate(root, true);
    if (rest) cJSON_DeleteItemFromObjectCaseSensitive(rest, "stages");
    for (int i = 0; !st && i < n; i++) {
        const cJSON *sg = cJSON_GetArrayItem(stages, i);
        if (!cJSON_IsObject(sg)) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: stages[%d] must be an object", j->name, i);
            break;
        }
        cJSON *merged = cJSON_Duplicate(rest, true);
        merge_json(merged, sg);
        char *t = cJSON_PrintUnformatted(merged);
        cJSON_Delete(merged);
        char where[1100];
        snprintf(where, sizeof where, "%s: stages[%d]", j->name, i);
        st = t ? ld_train_config_parse(ctx, t, strlen(t), where, overrides, n_over, &j->stages[i].cfg)
               : ld_error(ctx, LD_ERR_NOMEM, "out of memory");
        free(t);
        if (st) break;
        j->n_stages = i + 1;
        snprintf(j->stages[i].out_dir, sizeof j->stages[i].out_dir, "%s/stage-%d", j->cfg.out_dir, i + 1);
    }
    cJSON_Delete(rest);
    cJSON_Delete(root);
    return st;
}

ld_status ld_train_job_new(ld_ctx *ctx, ld_job_kind kind, const char *text, size_t len, const char *name,
                           const char *const *overrides, int n_overrides, ld_train_job **out) {
    if (!out || (unsigned)kind > LD_JOB_FINETUNE) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_train_job_new: bad argument");
    *out = NULL;
    ld_train_job *j = ld_calloc(ctx, 1, sizeof *j);
    if (!j) return ld_ctx_status(ctx);
    j->ctx = ctx, j->kind = kind;
    snprintf(j->name, sizeof j->name, "%s", name ? name : "config");
    ld_status st = ld_train_config_parse(ctx, text, len, j->name, overrides, n_overrides, &j->cfg);
    if (st) {
        ld_free(ctx, j);
        return st;
    }
    ld_train_config *c = &j->cfg;
    if ((st = ld_comm_world(ctx, &j->comm))) {
        ld_train_config_clear(&j->cfg);
        ld_free(ctx, j);
        return ld_error_wrap(ctx, st, "data parallel: ");
    }
    if (c->threads) ld_ctx_set_threads(ctx, c->threads);
    else if (ld_comm_size(j->comm) > 1) { /* ranks on one node share its cores */
        const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        if (!local) local = getenv("SLURM_NTASKS_PER_NODE");
        int per = local && atoi(local) > 0 ? atoi(local) : ld_comm_size(j->comm);
        ld_ctx_set_threads(ctx, ld_cpu_count() / per > 0 ? ld_cpu_count() / per : 1);
    }
    j->info.kind = kind;
    j->info.method = kind == LD_JOB_FINETUNE ? c->method : kind_names[kind];
    j->info.task = "lm";
    j->info.base = j->info.teacher = "";
    j->info.n_stages = 1;
    c->train.out_dir = c->out_dir;
    c->train.bf16 = ld_train_config_bf16(c, kind == LD_JOB_FINETUNE);
    if (kind == LD_JOB_FINETUNE) {
        st = parse_stages(j, text, len, overrides, n_overrides);
        if (!st) st = setup_finetune(j);
        if (!st) st = stage_trainer(j, 0);
        if (!st) c = &j->stages[0].cfg;
        if (!st && j->n_stages > 1) {
            if (!(j->initial = ld_alloc(ctx, (size_t)j->t->n_trainable * sizeof(float)))) st = ld_ctx_status(ctx);
            else ld_trainer_copy_trainable(j->t, j->initial, false);
        }
    } else if (!(st = setup_pretrain(j)) && !c->mlm) {
        ld_batch_source tsrc = {win_next_train, win_save_train, win_restore_train, j};
        ld_batch_source vsrc = {win_next_val, win_save_val, win_restore_val, j};
        st = ld_trainer_new(j->m, &c->train, &tsrc, j->val_s ? &vsrc : NULL, c->peak_gflops * 1e9, &j->t);
        if (!st && j->teacher) st = ld_trainer_set_teacher(j->t, j->teacher, c->temperature, c->alpha);
        if (!st) j->info.max_steps = c->train.max_steps;
    }
    if (!st && kind != LD_JOB_FINETUNE) st = ld_trainer_set_comm(j->t, j->comm); /* fine-tuning: per stage */
    if (!st && j->t->ep_comm && c->sample_every > 0) /* a rank holds only its own experts */
        st = ld_error(ctx, LD_ERR_UNSUPPORTED, "sample_every %lld: no text samples during an expert-parallel run (each "
                      "rank holds only its own experts); generate from a checkpoint's model instead",
                      (long long)c->sample_every);
    if (st) {
        ld_train_job_free(j);
        return st;
    }
    ld_train_job_info *in = &j->info;
    if (j->m) in->model = *ld_lm_config_of(j->m);
    in->params = j->m ? ld_lm_config_num_params(&in->model) : ld_encoder_config_num_params(&in->encoder);
    in->trainable = j->t->n_trainable;
    in->batch_size = c->train.batch_size, in->seq_len = c->train.seq_len, in->grad_accum = c->train.grad_accum;
    in->flops_per_token = j->m ? ld_lm_train_flops_per_token(&in->model, c->train.seq_len)
                               : ld_encoder_train_flops_per_token(&in->encoder, c->train.seq_len, 0.15);
    in->threads = ld_ctx_threads(ctx);
    in->rank = ld_comm_rank(j->comm), in->ranks = ld_comm_size(j->comm);
    in->expert_parallel = j->t->ep_comm ? (int)c->train.expert_parallel : 0;
    in->held = in->params;
    if (j->m && j->t->ep_comm) { /* an expert-parallel rank's model lacks the other ranks' experts */
        in->held = 0;
        for (int i = 0; i < ld_params_count(ld_lm_params(j->m)); i++) {
            const ld_tensor *x = ld_params_at(ld_lm_params(j->m), i);
            if (x->data) in->held += ld_tensor_numel(x);
        }
    }
    in->bf16 = c->train.bf16;
    in->out_dir = j->cfg.out_dir;
    if (j->teacher) {
        in->teacher = c->teacher;
        in->teacher_model = *ld_lm_config_of(ld_teacher_model(j->teacher));
        in->temperature = c->temperature, in->alpha = c->alpha;
    }
    for (int i = 0; i < c->n_sample_prompts; i++) j->prompts[i] = c->sample_prompts[i];
    in->sample_prompts = j->prompts, in->n_sample_prompts = c->n_sample_prompts;
    in->sample_every = c->sample_every, in->sample_tokens = c->sample_tokens;
    *out = j;
    return LD_OK;
}

void ld_train_job_free(ld_train_job *j) {
    if (!j) return;
    ld_trainer_free(j->t);
    ld_comm_free(j->comm);
    ld_ft_mix_free(j->mix);
    ld_adapter_free(j->adapter);
    ld_teacher_free(j->teacher);
    ld_batch_sampler_free(j->train_s);
    ld_batch_sampler_free(j->val_s);
    for (int k = 0; k < JOB_MAX_STAGES; k++) ld_ft_source_free(j->replay_src[k]);
    for (int s = 0; s < j->n_stages; s++) {
        job_stage *sg = &j->stages[s];
        ld_ft_source_free(sg->train_src);
        ld_ft_source_free(sg->val_src);
        ld_ft_data_free(sg->train_d);
        ld_ft_data_free(sg->val_d);
        ld_train_config_clear(&sg->cfg);
    }
    ld_free(j->ctx, j->window);
    ld_free(j->ctx, j->initial);
    ld_lm_free(j->m);
    ld_encoder_free(j->enc);
    ld_mlm_source_free(j->mlm_train);
    ld_mlm_source_free(j->mlm_val);
    ld_tokenizer_free(j->tok);
    ld_train_config_clear(&j->cfg);
    ld_free(j->ctx, j);
}

const ld_train_job_info *ld_train_job_info_of(const ld_train_job *j) {
    return j ? &j->info : NULL;
}
ld_lm *ld_train_job_model(ld_train_job *j) {
    return j ? j->m : NULL;
}
const ld_tokenizer *ld_train_job_tokenizer(const ld_train_job *j) {
    return j ? j->tok : NULL;
}
const char *ld_train_job_output(const ld_train_job *j) {
    return j ? j->output : "";
}
void ld_train_job_cancel(ld_train_job *j) {
    if (j) j->stop = 1;
}

/* OUT/model: the model directory with the tokenizer, written as a whole (a temporary sibling
 * swapped into place: a failure never leaves a mix of old and new files). An existing
 * directory is replaced only when it is empty or a model directory (holds config.json).
 * Rank 0 writes it; under expert parallelism every rank calls this (collective): rank 0 opens
 * the directory, the first group's ranks write their experts' files into it (a sharded
 * model directory), and rank 0 commits it when every rank's part was written. */
static ld_status save_model(ld_train_job *j, const char *dir) {
    ld_ctx *ctx = j->ctx;
    const bool ep = j->t && j->t->ep_comm;
    const int rank = ld_comm_rank(j->comm);
    char path[1300], tmp[1300] = "";
    ld_status st = LD_OK;
    DIR *d = rank == 0 ? opendir(dir) : NULL;
    if (d) {
        struct dirent *e;
        int entries = 0;
        while ((e = readdir(d))) entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        closedir(d);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (entries && access(path, F_OK) != 0)
            st = ld_error(ctx, LD_ERR_IO, "%s exists and is not a model directory (no config.json): not replacing it",
                          dir);
    }
    ld_dir_txn *tx = NULL;
    if (!st && rank == 0 && !(st = ld_dir_txn_begin(ctx, dir, &tx))) snprintf(tmp, sizeof tmp, "%s", ld_dir_txn_path(tx));
    if (ep && !(st = ld_dist_agree(j->t, st, "opening the model directory")))
        st = ld_comm_bcast(j->comm, tmp, sizeof tmp, LD_COMM_BYTE, 0);
    if (st) {
        if (tx) ld_dir_txn_abort(tx);
        return ld_error_wrap(ctx, st, "saving the model: ");
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", tmp);
    if (ep) st = ld_dist_write_model(j->t, tmp, true);
    else if (j->enc) st = ld_encoder_save(j->enc, tmp);
    else st = ld_lm_save(j->m, tmp);
    if (!st && rank == 0) st = j->enc ? ld_encoder_save_tokenizer(j->enc, j->tok, tmp) : ld_tokenizer_save(j->tok, path);
    if (ep) st = ld_dist_agree(j->t, st, "writing the model directory");
    if (st) {
        if (tx) ld_dir_txn_abort(tx);
        return ld_error_wrap(ctx, st, "saving the model: ");
    }
    return tx ? ld_dir_txn_commit(tx) : LD_OK;
}

/* The trained weights into dir: the model directory (full fine-tuning, pretraining) and/or
 * the adapter. *main (may be NULL) receives the main one's path. */
static ld_status save_outputs(ld_train_job *j, const char *dir, char *main, size_t cap) {
    char model_dir[1200], adapter_dir[1200];
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    snprintf(adapter_dir, sizeof adapter_dir, "%s/adapter", dir);
    bool full = !j->adapter || ld_adapter_config_of(j->adapter)->method == LD_ADAPTER_NONE;
    ld_status st = LD_OK;
    if (main) snprintf(main, cap, "%s", full ? model_dir : adapter_dir);
    if (j->t && j->t->ep_comm) { /* expert parallelism: each rank writes its experts (no adapters here) */
        st = save_model(j, model_dir);
    } else if (ld_comm_rank(j->comm) == 0) { /* data parallel: every rank holds the same weights; rank 0 writes them */
        if (full) st = save_model(j, model_dir);
        if (!st && j->adapter && (st = ld_adapter_save(j->adapter, adapter_dir)))
            st = ld_error_wrap(j->ctx, st, "saving the adapter: ");
    }
    return ld_dist_agree(j->t, st, "saving the outputs");
}

/* The weights a finished stage wrote, into the model and the adapter. */
static ld_status load_outputs(ld_train_job *j, int s) {
    char path[1200];
    ld_status st = LD_OK;
    bool full = !j->adapter || ld_adapter_config_of(j->adapter)->method == LD_ADAPTER_NONE;
    if (full) {
        snprintf(path, sizeof path, "%s/model", j->stages[s].out_dir);
        if ((st = ld_ckpt_read_model(j->ctx, path, ld_lm_params(j->m)))) return st;
        ld_params_refresh_bf16(ld_lm_params(j->m));
    }
    if (j->adapter) {
        snprintf(path, sizeof path, "%s/adapter", j->stages[s].out_dir);
        st = lm_adapter_read_weights(j->adapter, path);
    }
    return st;
}

static bool stage_done(const ld_train_job *j, int s) {
    char path[1200];
    snprintf(path, sizeof path, "%s/done", j->stages[s].out_dir);
    return j->n_stages > 1 && access(path, F_OK) == 0;
}

/* Progress of a stage: the trainer's, with the stage added. */
typedef struct stage_cb {
    ld_train_progress_fn cb;
    void *user;
    int stage, n_stages;
} stage_cb;
static void stage_progress(void *user, const ld_train_progress *p) {
    stage_cb *sc = user;
    ld_train_progress q = *p;
    q.stage = sc->stage, q.n_stages = sc->n_stages;
    if (sc->cb) sc->cb(sc->user, &q);
}

/* Before stage s (> 0): a fresh adapter when each stage has its own, the trainer over the
 * stage's data (with replay), and the regularizer's anchor at the weights stage s starts
 * from (EWC weighs it by the Fisher information of stage s-1's data). */
static ld_status begin_stage(ld_train_job *j, int s) {
    const ld_train_config *c = &j->stages[s].cfg;
    ld_status st;
    if (c->adapter_per_stage && j->adapter) {
        ld_adapter_free(j->adapter);
        j->adapter = NULL;
        if ((st = make_adapter(j, s))) return st;
    }
    if ((st = stage_trainer(j, s))) return st;
    if (!strcmp(c->regularizer, "none") || !c->regularizer[0]) return LD_OK;
    size_t bytes = (size_t)j->t->n_trainable * sizeof(float);
    float *anchor = ld_alloc(j->ctx, bytes), *fisher = NULL;
    ld_ft_source *fs = NULL;
    if (!anchor) return ld_ctx_status(j->ctx);
    ld_trainer_copy_trainable(j->t, anchor, false);
    if (!strcmp(c->regularizer, "ewc")) {
        const job_stage *prev = &j->stages[s - 1];
        int32_t pad = ld_tokenizer_pad_id(j->tok) >= 0 ? ld_tokenizer_pad_id(j->tok) : ld_tokenizer_eos_id(j->tok);
        if (!(fisher = ld_alloc(j->ctx, bytes))) st = ld_ctx_status(j->ctx);
        if (!st) st = ld_ft_source_new(j->ctx, prev->train_d, prev->packed, true, c->train.seed + 4099, pad, &fs);
        ld_batch_source src;
        if (!st) src = ld_ft_source_batches(fs), st = ld_trainer_fisher(j->t, &src, c->fisher_batches, fisher);
        /* the Fisher information's scale follows the loss: normalised to mean 1, lambda means what it does for L2-SP */
        double mean = 0;
        for (int64_t i = 0; !st && i < j->t->n_trainable; i++) mean += fisher[i];
        mean /= (double)(j->t->n_trainable ? j->t->n_trainable : 1);
        for (int64_t i = 0; !st && mean > 0 && i < j->t->n_trainable; i++) fisher[i] = (float)(fisher[i] / mean);
    }
    if (!st) st = ld_trainer_set_anchor(j->t, c->reg_lambda, anchor, fisher);
    ld_ft_source_free(fs);
    ld_free(j->ctx, anchor);
    ld_free(j->ctx, fisher);
    return st;
}

ld_status ld_train_job_run(ld_train_job *j, bool resume, ld_train_progress_fn cb, void *user) {
    if (!j) return LD_ERR_INVALID_ARG;
    ld_status st = LD_OK;
    j->stop = 0;
    if (j->kind != LD_JOB_FINETUNE) {
        bool found = false;
        if (resume && (st = ld_trainer_resume(j->t, &found))) return ld_error_wrap(j->ctx, st, "resuming: ");
        j->info.start_step = ld_trainer_step(j->t);
        if ((st = ld_trainer_run(j->t, cb, user, &j->stop))) return st;
        return save_outputs(j, j->cfg.out_dir, j->output, sizeof j->output);
    }
    int64_t before = 0; /* steps of the stages before the one running */
    bool started = false;
    for (int s = 0; s < j->n_stages && !st; s++) {
        job_stage *sg = &j->stages[s];
        if (resume && stage_done(j, s)) { /* finished in an earlier run: its weights are the next stage's start */
            if ((st = load_outputs(j, s))) return ld_error_wrap(j->ctx, st, "stage %d's outputs: ", s + 1);
            before += sg->cfg.train.max_steps;
            continue;
        }
        if ((s > 0 || j->t_stage != 0) && (st = begin_stage(j, s))) return st;
        bool found = false;
        if (resume && (st = ld_trainer_resume(j->t, &found))) return ld_error_wrap(j->ctx, st, "resuming: ");
        if (!started) j->info.start_step = before + ld_trainer_step(j->t), started = true;
        stage_cb sc = {cb, user, s + 1, j->n_stages};
        if ((st = ld_trainer_run(j->t, stage_progress, &sc, &j->stop))) return st;
        ld_trainer_restore_best(j->t);
        if ((st = save_outputs(j, sg->out_dir, j->output, sizeof j->output))) return st;
        if (j->n_stages > 1) {
            char path[1200];
            snprintf(path, sizeof path, "%s/done", sg->out_dir);
            st = ld_comm_rank(j->comm) == 0 ? ld_file_write_atomic(j->ctx, path, "done\n", 5) : LD_OK;
            if ((st = ld_dist_agree(j->t, st, "marking a stage done"))) return st;
        }
        before += sg->cfg.train.max_steps;
    }
    return st;
}

ld_status ld_train_job_eval_stages(ld_train_job *j, ld_stage_matrix *out) {
    if (!j || !out) return LD_ERR_INVALID_ARG;
    if (j->kind != LD_JOB_FINETUNE) return ld_error(j->ctx, LD_ERR_STATE, "only fine-tuning jobs have stages");
    memset(out, 0, sizeof *out);
    int S = j->n_stages;
    out->n_stages = S;
    out->classify = j->stages[0].cfg.data.format == LD_FT_CLASSIFY;
    for (int k = 0; k < S; k++) {
        if (!j->stages[k].val_src)
            return ld_error(j->ctx, LD_ERR_STATE, "stage %d has no validation split (give data.val or data.val_fraction)", k + 1);
        snprintf(out->name[k], sizeof out->name[k], "%s", j->stages[k].cfg.name[0] ? j->stages[k].cfg.name : "");
        if (!out->name[k][0]) snprintf(out->name[k], sizeof out->name[k], "stage %d", k + 1);
    }
    for (int k = 0; k < S; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", j->stages[k].out_dir, j->adapter && ld_adapter_config_of(j->adapter)->method != LD_ADAPTER_NONE ? "adapter" : "model");
        if (access(path, F_OK) != 0) return ld_error(j->ctx, LD_ERR_NOT_FOUND, "%s is missing: run the stages first", path);
    }
    bool per_stage = j->stages[0].cfg.adapter_per_stage;
    ld_status st = stage_trainer(j, 0);
    if (!st && j->initial) ld_trainer_copy_trainable(j->t, j->initial, true); /* row 0: before training */
    for (int i = 0; i <= S && !st; i++) {
        for (int k = 0; k < S && !st; k++) {
            /* with an adapter per stage, stage k's data meets stage k's adapter once trained */
            int use = per_stage && i > 0 ? (k < i ? k : i - 1) : i - 1;
            if (i > 0 && (k == 0 || per_stage) && (st = load_outputs(j, use))) break; /* once per row, or per column */
            const job_stage *sg = &j->stages[k];
            ld_batch_source v = ld_ft_source_batches(sg->val_src);
            int64_t n = ld_ft_source_batches_per_epoch(sg->val_src, j->t->p.batch_size, j->t->p.seq_len);
            if (sg->cfg.has_eval_batches && sg->cfg.train.eval_batches < n) n = sg->cfg.train.eval_batches;
            st = ld_trainer_evaluate(j->t, &v, "{\"epoch\":0,\"pos\":0,\"off\":0}", n, &out->loss[i][k], &out->accuracy[i][k]);
        }
    }
    if (st) return st;
    /* scores: accuracy, or minus the loss */
    double R[LD_MAX_STAGES + 1][LD_MAX_STAGES];
    for (int i = 0; i <= S; i++)
        for (int k = 0; k < S; k++) R[i][k] = out->classify ? out->accuracy[i][k] : -out->loss[i][k];
    double bwt = 0, fwt = 0;
    for (int k = 0; k + 1 < S; k++) bwt += R[S][k] - R[k + 1][k];
    for (int k = 1; k < S; k++) fwt += R[k][k] - R[0][k];
    out->bwt = S > 1 ? bwt / (S - 1) : 0;
    out->fwt = S > 1 ? fwt / (S - 1) : 0;
    for (int k = 0; k < S; k++) {
        double best = R[k + 1][k];
        for (int i = k + 1; i < S; i++)
            if (R[i][k] > best) best = R[i][k];
        out->forgetting[k] = best - R[S][k];
    }
    return LD_OK;
}

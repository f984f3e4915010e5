/* tests/unit/test_finetune.c — fine-tuning data and training jobs:
 *   - examples: chat turns count only the assistant's tokens, classification labels get
 *     sorted ids, text is cut into packed rows that predict every token once;
 *   - a table of bad example files, each error naming file:line;
 *   - the validation split by hash, and its refusal to leave a side empty;
 *   - a training job from config text: LoRA + head on a tiny model, the outputs it writes,
 *     exact resume after a cancel (per-step losses bit-identical), and config errors;
 *   - an adapter (LoRA, prompt) trains without weight decay unless the config sets it. */
#include <sys/stat.h>
#include <unistd.h>

#include "ld_test.h"
#include "train/ft_data.h"
#include "train/train_config.h"

static char dir_[256];
static const char *tmp(const char *name) {
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    if (!dir_[0]) {
        snprintf(dir_, sizeof dir_, "/tmp/liandan-test-ft-%d", (int)getpid());
        mkdir(dir_, 0755);
    }
    snprintf(path, 512, "%s/%s", dir_, name);
    return path;
}
__attribute__((destructor)) static void cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir_);
    if (dir_[0] && system(cmd)) {}
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

/* A byte-level tokenizer made by training on a little text. */
static ld_tokenizer *tokenizer(ld_ctx *ctx) {
    write_file(tmp("corpus.txt"), "床前明月光\n疑是地上霜\n举头望明月\n低头思故乡\nhello world\n");
    ld_tokenizer *tok = NULL;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s tokenizer train %s --vocab-size 300 -o %s 2>/dev/null",
             getenv("LD_BIN") ? getenv("LD_BIN") : "build/liandan", tmp("corpus.txt"), tmp("tok.json"));
    CHECK(system(cmd) == 0);
    CHECK(ld_tokenizer_load(ctx, tmp("tok.json"), &tok) == LD_OK);
    return tok;
}

TEST(chat_counts_only_assistant_tokens) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = tokenizer(ctx);
    write_file(tmp("chat.jsonl"), "{\"messages\": [{\"role\": \"user\", \"content\": \"hello\"}, "
                                  "{\"role\": \"assistant\", \"content\": \"world\"}]}\n");
    ld_ft_data_config c = ld_ft_data_default_config();
    c.format = LD_FT_CHAT;
    ld_ft_data *d = NULL;
    CHECK(ld_ft_data_load(ctx, tok, &c, tmp("chat.jsonl"), NULL, 0, &d) == LD_OK);
    if (d) {
        const int32_t *ids;
        const uint8_t *counted;
        int64_t n;
        int32_t label;
        ld_ft_data_example(d, 0, &ids, &counted, &n, &label, NULL);
        /* the counted tokens decode to the assistant's text and its end marker */
        int32_t mine[64];
        size_t k = 0;
        for (int64_t i = 0; i < n && k < 64; i++)
            if (counted[i]) mine[k++] = ids[i];
        char text[256];
        size_t len = 0;
        CHECK(ld_tokenizer_decode(tok, mine, k, false, text, sizeof text - 1, &len) == LD_OK);
        text[len < sizeof text ? len : sizeof text - 1] = 0;
        CHECK_MSG(!strcmp(text, "world<|im_end|>"), "counted text '%s'", text);
        CHECK(label == -100);
    }
    ld_ft_data_free(d);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

TEST(classification_labels_and_packed_rows) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = tokenizer(ctx);
    write_file(tmp("cls.tsv"), "label\ttext_a\n10\t床前\n2\t明月\n10\t地上霜\n");
    ld_ft_data_config c = ld_ft_data_default_config();
    c.format = LD_FT_CLASSIFY;
    snprintf(c.text_fields[0], sizeof c.text_fields[0], "text_a");
    c.n_text_fields = 1;
    ld_ft_labels labels = {0};
    ld_ft_data *d = NULL;
    CHECK(ld_ft_data_load(ctx, tok, &c, tmp("cls.tsv"), &labels, 16, &d) == LD_OK);
    ld_ft_labels_sort(&labels);
    CHECK(labels.n == 2 && !strcmp(labels.names[0], "2") && !strcmp(labels.names[1], "10")); /* numeric order */
    ld_ft_data_free(d);
    ld_ft_labels_clear(&labels);

    /* packed text: every token after the first is the target of exactly one input */
    write_file(tmp("text.txt"), "床前明月光\n疑是地上霜\n举头望明月\n");
    c = ld_ft_data_default_config();
    d = NULL;
    CHECK(ld_ft_data_load(ctx, tok, &c, tmp("text.txt"), NULL, 0, &d) == LD_OK);
    ld_ft_source *s = NULL;
    if (d) CHECK(ld_ft_source_new(ctx, d, true, false, 0, 0, &s) == LD_OK);
    if (s) {
        enum { Bm = 2, Tm = 4 };
        int32_t in[Bm * Tm], tg[Bm * Tm], lab[Bm], len[Bm];
        ld_batch b = {Bm, Tm, in, tg, lab, len};
        ld_batch_source src = ld_ft_source_batches(s);
        int64_t total = ld_ft_data_tokens(d), predicted = 0;
        int32_t stream[256];
        int64_t ns = 0;
        for (int64_t i = 0; i < ld_ft_data_count(d); i++) {
            const int32_t *ids;
            int64_t n;
            ld_ft_data_example(d, i, &ids, NULL, &n, NULL, NULL);
            for (int64_t j = 0; j < n; j++) stream[ns++] = ids[j];
        }
        CHECK(ns == total);
        int64_t pos = 1; /* the stream token each target must be */
        for (int it = 0; it < 8; it++) {
            CHECK(src.next(src.user, &b) == LD_OK);
            for (int r = 0; r < Bm; r++)
                for (int k = 0; k < Tm; k++)
                    if (tg[r * Tm + k] != -100) {
                        CHECK_MSG(pos < ns && tg[r * Tm + k] == stream[pos], "target %lld", (long long)pos);
                        pos++, predicted++;
                    }
        }
        CHECK(predicted == total - 1); /* then the unshuffled pass ends: padding */
        /* the cursor restores exactly */
        char *cur = NULL;
        CHECK(src.restore(src.user, "{\"epoch\":0,\"pos\":1,\"off\":2}") == LD_OK);
        CHECK(src.save(src.user, &cur) == LD_OK && cur && !strcmp(cur, "{\"epoch\":0,\"pos\":1,\"off\":2}"));
        free(cur);
        CHECK(src.restore(src.user, "{\"epoch\":0,\"pos\":1,\"off\":999}") == LD_ERR_FORMAT);
        CHECK(src.restore(src.user, "nonsense") == LD_ERR_FORMAT);
    }
    ld_ft_source_free(s);
    ld_ft_data_free(d);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

TEST(bad_example_files_name_file_and_line) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = tokenizer(ctx);
    static const struct {
        const char *name, *text;
        ld_ft_format format;
        bool fixed_labels;
        const char *error;
    } cases[] = {
        {"a.jsonl", "{\"text\": \"ok\", \"label\": \"x\"}\n{not json\n", LD_FT_CLASSIFY, false, "a.jsonl:2: not a JSON object"},
        {"b.jsonl", "{\"text\": \"ok\", \"label\": \"x\"}\n\n{\"text\": \"ok\", \"label\": \"z\"}\n", LD_FT_CLASSIFY, true,
         "b.jsonl:3: unknown label 'z' (the labels are: 'x', 'y')"},
        {"c.jsonl", "{\"txt\": \"ok\", \"label\": \"x\"}\n", LD_FT_CLASSIFY, false, "c.jsonl:1: no string field \"text\""},
        {"d.jsonl", "{\"text\": \"ok\"}\n", LD_FT_CLASSIFY, false, "d.jsonl:1: no label field \"label\""},
        {"e.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", LD_FT_CHAT, false,
         "e.jsonl:1: the chat has no assistant turn"},
        {"f.jsonl", "{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}\n", LD_FT_CHAT, false, "unknown role 'robot'"},
        {"g.jsonl", "{\"messages\": []}\n", LD_FT_CHAT, false, "g.jsonl:1: \"messages\" is empty"},
        {"h.jsonl", "{\"messages\": \"hi\"}\n", LD_FT_CHAT, false, "h.jsonl:1: no \"messages\" array"},
        {"i.tsv", "label\ttext\n1\tok\n2\tok\textra\n", LD_FT_CLASSIFY, false, "i.tsv:3: 3 columns, the header has 2"},
        {"j.tsv", "lab\ttext\n1\tok\n", LD_FT_CLASSIFY, false, "j.tsv:1: no label column 'label'"},
        {"k.jsonl", "\n\n", LD_FT_TEXT, false, "k.jsonl: no examples"},
        {"l.txt", "x\n", LD_FT_CLASSIFY, false, "classification data comes in .jsonl or .tsv files"},
        {"m.tsv", "x\n", LD_FT_CHAT, false, "chat data comes in .jsonl files"},
        {"n.jsonl", "{\"text\": 5, \"label\": 1}\n", LD_FT_CLASSIFY, false, "n.jsonl:1: no string field \"text\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(tmp(cases[i].name), cases[i].text);
        ld_ft_data_config c = ld_ft_data_default_config();
        c.format = cases[i].format;
        ld_ft_labels labels = {0};
        if (cases[i].fixed_labels) labels.names[0] = strdup("x"), labels.names[1] = strdup("y"), labels.n = 2, labels.fixed = true;
        ld_ft_data *d = NULL;
        ld_status st = ld_ft_data_load(ctx, tok, &c, tmp(cases[i].name), &labels, 0, &d);
        CHECK_MSG(st != LD_OK && d == NULL && strstr(ld_ctx_error(ctx), cases[i].error), "case %s: got '%s', want '%s'",
                  cases[i].name, ld_ctx_error(ctx), cases[i].error);
        ld_ft_data_free(d);
        ld_ft_labels_clear(&labels);
    }
    /* a split that would leave a side empty */
    write_file(tmp("one.txt"), "床前明月光\n");
    ld_ft_data_config c = ld_ft_data_default_config();
    ld_ft_data *d = NULL, *v = NULL;
    CHECK(ld_ft_data_load(ctx, tok, &c, tmp("one.txt"), NULL, 0, &d) == LD_OK);
    if (d) CHECK(ld_ft_data_split(d, 0.5, &v) == LD_ERR_FORMAT && strstr(ld_ctx_error(ctx), "give a validation file"));
    ld_ft_data_free(d);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* ---- jobs ---- */

/* A tiny base model directory (random weights) with the test tokenizer. */
static void make_base(ld_ctx *ctx, const ld_tokenizer *tok) {
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = ld_tokenizer_vocab_size(tok), c.hidden_size = 32, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 2;
    c.intermediate_size = 48, c.max_position = 32;
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &c, 1, &m) == LD_OK);
    CHECK(ld_lm_save(m, tmp("base")) == LD_OK);
    char p[600];
    snprintf(p, sizeof p, "%s/tokenizer.json", tmp("base"));
    CHECK(ld_tokenizer_save(tok, p) == LD_OK);
    ld_lm_free(m);
    FILE *f = fopen(tmp("sent.jsonl"), "w");
    for (int i = 0; f && i < 60; i++)
        fprintf(f, "{\"sentence\": \"%s%d%s\", \"label\": \"%s\"}\n", i % 2 ? "明月" : "地上", i, i % 3 ? "光" : "霜",
                i % 2 ? "pos" : "neg");
    if (f) fclose(f);
}

static const char *job_config(const char *out) {
    static char buf[2048];
    char base[512], data[512];
    snprintf(base, sizeof base, "%s", tmp("base"));
    snprintf(data, sizeof data, "%s", tmp("sent.jsonl"));
    snprintf(buf, sizeof buf,
             "{\"base\": \"%s\", \"method\": \"lora\", \"out_dir\": \"%s\", \"lora\": {\"rank\": 2, \"targets\": [\"q_proj\", \"o_proj\"]},"
             " \"data\": {\"format\": \"classification\", \"train\": \"%s\", \"text_field\": \"sentence\", \"val_fraction\": 0.2},"
             " \"batch_size\": 4, \"seq_len\": 8, \"max_steps\": 10, \"lr\": 0.01, \"eval_every\": 5, \"checkpoint_every\": 2,"
             " \"early_stopping\": 3, \"seed\": 7}",
             base, out, data);
    return buf;
}

typedef struct losses {
    double loss[16];
    int n;
    ld_train_job *cancel_at_4;
} losses;

static void record(void *user, const ld_train_progress *p) {
    losses *l = user;
    if (p->step >= 1 && p->step <= 16) l->loss[p->step - 1] = p->loss;
    if (p->step > l->n) l->n = (int)p->step;
    if (l->cancel_at_4 && p->step == 3) ld_train_job_cancel(l->cancel_at_4);
}

TEST(job_trains_writes_and_resumes_exactly) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_ctx_set_threads(ctx, 1);
    ld_tokenizer *tok = tokenizer(ctx);
    make_base(ctx, tok);
    char out1[600], out2[600];
    snprintf(out1, sizeof out1, "%s", tmp("run1"));
    snprintf(out2, sizeof out2, "%s", tmp("run2"));
    /* uninterrupted */
    ld_train_job *j = NULL;
    const char *cfg = job_config(out1);
    CHECK_MSG(ld_train_job_new(ctx, LD_JOB_FINETUNE, cfg, strlen(cfg), "cfg", NULL, 0, &j) == LD_OK, "%s", ld_ctx_error(ctx));
    losses a, b;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    if (j) {
        const ld_train_job_info *in = ld_train_job_info_of(j);
        CHECK(in->n_labels == 2 && in->train_examples + in->val_examples == 60 && in->val_examples > 0);
        CHECK(in->trainable > 0 && in->trainable < in->params / 5);
        CHECK(!strcmp(in->method, "lora") && !strcmp(in->task, "classification"));
        /* precision auto: the frozen base in bf16 exactly where bf16 products are fast */
        CHECK(in->bf16 == (ld_bf16_gemm_speedup() >= LD_TRAIN_BF16_BASE_MIN_SPEEDUP));
        CHECK(ld_train_job_run(j, false, record, &a) == LD_OK);
        CHECK(strstr(ld_train_job_output(j), "/adapter") != NULL);
        char p[700];
        snprintf(p, sizeof p, "%s/adapter/adapter_model.safetensors", out1);
        CHECK(access(p, F_OK) == 0);
        snprintf(p, sizeof p, "%s/model", out1);
        CHECK(access(p, F_OK) != 0); /* LoRA writes no model copy */
    }
    ld_train_job_free(j);
    /* cancelled after step 3, then resumed */
    j = NULL;
    cfg = job_config(out2);
    CHECK_MSG(ld_train_job_new(ctx, LD_JOB_FINETUNE, cfg, strlen(cfg), "cfg", NULL, 0, &j) == LD_OK, "%s", ld_ctx_error(ctx));
    if (j) {
        b.cancel_at_4 = j;
        CHECK(ld_train_job_run(j, false, record, &b) == LD_ERR_INTERRUPTED);
        CHECK(b.n == 4); /* the cancel lands during step 4, which then checkpoints */
    }
    ld_train_job_free(j);
    j = NULL;
    CHECK_MSG(ld_train_job_new(ctx, LD_JOB_FINETUNE, cfg, strlen(cfg), "cfg", NULL, 0, &j) == LD_OK, "%s", ld_ctx_error(ctx));
    if (j) {
        b.cancel_at_4 = NULL;
        CHECK(ld_train_job_run(j, true, record, &b) == LD_OK);
        CHECK(ld_train_job_info_of(j)->start_step == 4);
    }
    ld_train_job_free(j);
    CHECK(a.n == b.n && a.n >= 5);
    for (int i = 0; i < a.n; i++) CHECK_MSG(a.loss[i] == b.loss[i], "step %d: %.9g vs %.9g", i + 1, a.loss[i], b.loss[i]);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* Two text stages (poems, then numbers) with replay and EWC; a run cancelled in stage 2 and
 * resumed gives the uninterrupted run's losses; the stage matrix has the model before and
 * after each stage on each stage's validation data. */
static const char *stages_config(const char *out) {
    static char buf[3072];
    char a[512], b[512], base[512];
    snprintf(a, sizeof a, "%s", tmp("poems.txt"));
    snprintf(b, sizeof b, "%s", tmp("numbers.txt"));
    snprintf(base, sizeof base, "%s", tmp("base"));
    snprintf(buf, sizeof buf,
             "{\"base\": \"%s\", \"method\": \"lora\", \"out_dir\": \"%s\", \"lora\": {\"rank\": 2},"
             " \"batch_size\": 2, \"seq_len\": 16, \"max_steps\": 4, \"lr\": 0.01, \"eval_every\": 4, \"checkpoint_every\": 1, \"seed\": 3,"
             " \"continual\": {\"replay\": 0.5, \"regularizer\": \"ewc\", \"lambda\": 0.5, \"fisher_batches\": 2},"
             " \"stages\": [{\"name\": \"poems\", \"data\": {\"format\": \"text\", \"train\": \"%s\", \"val_fraction\": 0.3}},"
             "              {\"name\": \"numbers\", \"data\": {\"format\": \"text\", \"train\": \"%s\", \"val_fraction\": 0.3}}]}",
             base, out, a, b);
    return buf;
}

typedef struct stage_losses {
    double loss[2][8];
    ld_train_job *cancel;
} stage_losses;

static void record_stage(void *user, const ld_train_progress *p) {
    stage_losses *l = user;
    if (p->stage >= 1 && p->stage <= 2 && p->step >= 1 && p->step <= 8) l->loss[p->stage - 1][p->step - 1] = p->loss;
    if (l->cancel && p->stage == 2 && p->step == 1) ld_train_job_cancel(l->cancel);
}

TEST(continual_stages_resume_and_their_matrix) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_ctx_set_threads(ctx, 1);
    ld_tokenizer *tok = tokenizer(ctx);
    make_base(ctx, tok);
    FILE *f = fopen(tmp("poems.txt"), "w"), *g = fopen(tmp("numbers.txt"), "w");
    for (int i = 0; f && g && i < 30; i++) {
        fprintf(f, "床前明月光%d疑是地上霜\n", i);
        fprintf(g, "%d hello %d world %d\n", i, i * 7, i * 13);
    }
    if (f) fclose(f);
    if (g) fclose(g);
    char out1[600], out2[600];
    snprintf(out1, sizeof out1, "%s", tmp("cl1"));
    snprintf(out2, sizeof out2, "%s", tmp("cl2"));
    stage_losses a, b;
    memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
    ld_train_job *j = NULL;
    const char *cfg = stages_config(out1);
    CHECK_MSG(ld_train_job_new(ctx, LD_JOB_FINETUNE, cfg, strlen(cfg), "cl", NULL, 0, &j) == LD_OK, "%s", ld_ctx_error(ctx));
    if (j) {
        CHECK(ld_train_job_info_of(j)->n_stages == 2 && ld_train_job_info_of(j)->max_steps == 8);
        CHECK(ld_train_job_run(j, false, record_stage, &a) == LD_OK);
        ld_stage_matrix mx;
        CHECK(ld_train_job_eval_stages(j, &mx) == LD_OK);
        CHECK(mx.n_stages == 2 && !mx.classify && !strcmp(mx.name[1], "numbers"));
        /* every row is its own model: the stages' weights, not the base's */
        CHECK(mx.loss[1][0] != mx.loss[0][0] && mx.loss[2][1] != mx.loss[1][1] && mx.loss[2][1] != mx.loss[0][1]);
        CHECK(mx.accuracy[0][0] != mx.accuracy[0][0]); /* NAN without a head */
    }
    ld_train_job_free(j);
    char p[700];
    snprintf(p, sizeof p, "%s/stage-2/adapter/adapter_model.safetensors", out1);
    CHECK(access(p, F_OK) == 0);
    /* cancelled in stage 2, resumed: stage 1 is not redone, every loss is the same */
    cfg = stages_config(out2);
    j = NULL;
    CHECK(ld_train_job_new(ctx, LD_JOB_FINETUNE, cfg, strlen(cfg), "cl", NULL, 0, &j) == LD_OK);
    if (j) {
        b.cancel = j;
        CHECK(ld_train_job_run(j, false, record_stage, &b) == LD_ERR_INTERRUPTED);
    }
    ld_train_job_free(j);
    j = NULL;
    b.cancel = NULL;
    CHECK(ld_train_job_new(ctx, LD_JOB_FINETUNE, cfg, strlen(cfg), "cl", NULL, 0, &j) == LD_OK);
    if (j) CHECK(ld_train_job_run(j, true, record_stage, &b) == LD_OK && ld_train_job_info_of(j)->start_step == 6);
    ld_train_job_free(j);
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 4; i++)
            CHECK_MSG(a.loss[s][i] == b.loss[s][i] && a.loss[s][i] > 0, "stage %d step %d: %.9g vs %.9g", s + 1, i + 1,
                      a.loss[s][i], b.loss[s][i]);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

TEST(job_config_errors_name_the_key) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct {
        const char *config, *error;
    } cases[] = {
        {"{\"method\": \"lora\"}", "'base' (the pretrained model) is required"},
        {"{\"base\": \"x\", \"method\": \"adapterz\"}", "method 'adapterz' is not one of full, lora, prompt"},
        {"{\"base\": \"x\", \"lora\": {\"rank\": 0}}", "'lora.rank' must be an integer in 1..4096"},
        {"{\"base\": \"x\", \"data\": {\"format\": \"audio\"}}", "data.format 'audio' is not one of text, chat, classification"},
        {"{\"base\": \"x\", \"data\": {\"labels\": [\"a\"]}}", "data.labels must be an array of 2..256"},
        {"{\"base\": \"x\", \"head\": {\"pooling\": \"max\"}}", "head.pooling 'max' is not last or mean"},
        {"{\"base\": \"x\"}", "'data.train' (the training examples) is required"},
        {"{\"base\": \"/nonexistent-liandan\", \"data\": {\"train\": \"t.jsonl\"}}", "loading the base model '/nonexistent-liandan'"},
        {"[]", "expected a JSON object"},
        {"{\"base\": \"x\", \"continual\": {\"regularizer\": \"si\"}}", "continual.regularizer 'si' is not none, l2sp or ewc"},
        {"{\"base\": \"x\", \"stages\": []}", "'stages' must be a list of 1..16 objects"},
        {"{\"base\": \"x\", \"expert_parallel\": -1}", "'expert_parallel' must be an integer in 0..4096"},
        {"{\"base\": \"x\", \"stages\": [{\"lora\": {\"rank\": -1}}]}", "stages[0]: 'lora.rank' must be an integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_train_job *j = NULL;
        ld_status st = ld_train_job_new(ctx, LD_JOB_FINETUNE, cases[i].config, strlen(cases[i].config), "ft.json", NULL, 0, &j);
        CHECK_MSG(st != LD_OK && !j && strstr(ld_ctx_error(ctx), cases[i].error), "case %zu: got '%s', want '%s'", i,
                  ld_ctx_error(ctx), cases[i].error);
        ld_train_job_free(j);
    }
    ld_ctx_free(ctx);
}

/* PEFT / HF Trainer train adapters without weight decay; full fine-tuning keeps the trainer's
 * 0.1; a weight_decay in the config always wins (with --method on the command line too). */
TEST(adapters_default_to_no_weight_decay) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct {
        const char *config, *override;
        float wd;
    } cases[] = {
        {"{\"base\": \"x\", \"method\": \"lora\"}", NULL, 0.0f},
        {"{\"base\": \"x\", \"method\": \"prompt\"}", NULL, 0.0f},
        {"{\"base\": \"x\", \"method\": \"full\"}", NULL, 0.1f},
        {"{\"base\": \"x\"}", NULL, 0.1f},
        {"{\"base\": \"x\"}", "method=lora", 0.0f},
        {"{\"base\": \"x\", \"method\": \"lora\", \"weight_decay\": 0.05}", NULL, 0.05f},
        {"{\"base\": \"x\", \"method\": \"full\"}", "weight_decay=0.02", 0.02f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_train_config c;
        const char *ov[1] = {cases[i].override};
        ld_status st = ld_train_config_parse(ctx, cases[i].config, strlen(cases[i].config), "ft.json", ov,
                                             cases[i].override ? 1 : 0, &c);
        CHECK_MSG(st == LD_OK, "case %zu: %s", i, ld_ctx_error(ctx));
        if (st) continue;
        CHECK_MSG(c.train.optim.weight_decay == cases[i].wd, "case %zu: weight_decay %g, want %g", i,
                  (double)c.train.optim.weight_decay, (double)cases[i].wd);
        ld_train_config_clear(&c);
    }
    ld_ctx_free(ctx);
}

/* precision: "auto" (the default) is bf16 only for an adapter's frozen base (lora, prompt)
 * and only where bf16 products are >= LD_TRAIN_BF16_BASE_MIN_SPEEDUP x fp32; fp32 and bf16
 * force it; pretraining (finetune = false) stays fp32 under auto; other values are refused. */
TEST(precision_auto_is_bf16_only_for_an_adapters_base_on_fast_bf16) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct {
        const char *config, *override;
        bool finetune;
        double speedup;
        bool bf16;
    } cases[] = {
        {"{\"base\": \"x\", \"method\": \"lora\"}", NULL, true, 2.0, true},
        {"{\"base\": \"x\", \"method\": \"lora\"}", NULL, true, 1.79, false},
        {"{\"base\": \"x\", \"method\": \"lora\"}", NULL, true, 1.0, false},
        {"{\"base\": \"x\", \"method\": \"prompt\"}", NULL, true, 1.8, true},
        {"{\"base\": \"x\", \"method\": \"full\"}", NULL, true, 2.0, false},
        {"{\"base\": \"x\"}", "method=lora", true, 2.0, true},
        {"{\"base\": \"x\", \"method\": \"lora\", \"precision\": \"fp32\"}", NULL, true, 2.0, false},
        {"{\"base\": \"x\", \"method\": \"lora\"}", "precision=fp32", true, 2.0, false},
        {"{\"base\": \"x\", \"method\": \"full\", \"precision\": \"bf16\"}", NULL, true, 0.5, true},
        {"{\"precision\": \"auto\"}", NULL, false, 2.0, false},
        {"{\"precision\": \"bf16\"}", NULL, false, 1.0, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_train_config c;
        const char *ov[1] = {cases[i].override};
        ld_status st = ld_train_config_parse(ctx, cases[i].config, strlen(cases[i].config), "ft.json", ov,
                                             cases[i].override ? 1 : 0, &c);
        CHECK_MSG(st == LD_OK, "case %zu: %s", i, ld_ctx_error(ctx));
        if (st) continue;
        CHECK_MSG(ld_train_config_bf16_at(&c, cases[i].finetune, cases[i].speedup) == cases[i].bf16, "case %zu", i);
        ld_train_config_clear(&c);
    }
    ld_train_config c;
    const char *bad = "{\"precision\": \"fp16\"}";
    CHECK(ld_train_config_parse(ctx, bad, strlen(bad), "ft.json", NULL, 0, &c) == LD_ERR_FORMAT);
    CHECK_MSG(strstr(ld_ctx_error(ctx), "ft.json: precision 'fp16' is not auto, fp32 or bf16"), "%s", ld_ctx_error(ctx));
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* tests/unit/test_tasks.c — evaluation tasks:
 *   - metrics on hand-worked cases: macro-F1, CMRC2018 EM/F1 (normalisation, longest common
 *     substring), GEC F0.5 edit counts (several references), SIGHAN detection/correction;
 *   - a table of bad task files and data, each error naming the file (and line);
 *   - running choice and generate tasks on a tiny model: deterministic, sizes and chance
 *     right, calibration and few-shot run, a classification head predicts what
 *     ld_lm_classify's argmax says; the report names model, tokenizer and data hashes. */
#include <sys/stat.h>
#include <unistd.h>

#include "eval/task_internal.h"
#include "ld_test.h"

static char dir_[256];
static const char *tmp(const char *name) {
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    if (!dir_[0]) {
        snprintf(dir_, sizeof dir_, "/tmp/liandan-test-tasks-%d", (int)getpid());
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

TEST(metrics_on_worked_cases) {
    int pred[] = {0, 0, 1, 2, 2, 2}, gold[] = {0, 1, 1, 2, 2, 0};
    /* class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 1 fp 0 fn 1 -> 2/3; class 2: tp 2 fp 1 fn 0 -> 0.8 */
    CHECK_NEAR(ld_metric_macro_f1(pred, gold, 6, 3), (0.5 + 2.0 / 3 + 0.8) / 3, 1e-12);
    double em, f1;
    const char *refs[] = {"光荣和ω-force", "光荣"};
    ld_metric_qa("光荣和ω-Force。", refs, 2, &em, &f1);
    CHECK(em == 1 && f1 == 1); /* case and punctuation do not count */
    ld_metric_qa("光荣公司", refs, 1, &em, &f1);
    /* lcs "光荣" = 2: precision 2/4, recall 2/9 ("光荣和ωforce" is 9 characters) */
    CHECK(em == 0);
    CHECK_NEAR(f1, 2 * 0.5 * (2.0 / 9) / (0.5 + 2.0 / 9), 1e-12);
    ld_metric_qa("完全不对", refs, 2, &em, &f1);
    CHECK(em == 0 && f1 == 0);
    /* GEC: src -> ref has 2 edits (a substitution and an insertion); the hypothesis gets one */
    int64_t tp = 0, fp = 0, fn = 0;
    const char *gref[] = {"我们去学校了", "我去了学校"};
    ld_metric_gec("我门去学校", "我们去学校", gref, 1, &tp, &fp, &fn);
    CHECK(tp == 1 && fp == 0 && fn == 1);
    tp = fp = fn = 0;
    ld_metric_gec("我门去学校", "我们去学校", gref, 2, &tp, &fp, &fn); /* still the first reference is best */
    CHECK(tp == 1 && fp == 0 && fn == 1);
    tp = fp = fn = 0;
    ld_metric_gec("今天天气很好", "今天天气很好", (const char *[]){"今天天气很好"}, 1, &tp, &fp, &fn);
    CHECK(tp == 0 && fp == 0 && fn == 0); /* nothing to correct, nothing changed */
    /* spelling: detection right and correction right; then a false alarm */
    int64_t c[6] = {0};
    ld_metric_csc("我门去", "我们去", "我们去", &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]);
    CHECK(c[0] == 1 && c[1] == 0 && c[2] == 0 && c[3] == 1 && c[4] == 0 && c[5] == 0);
    ld_metric_csc("你好吗", "你号吗", "你好吗", &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]);
    CHECK(c[1] == 1 && c[4] == 1 && c[2] == 0);
    ld_metric_csc("我门去", "我们去", "我门去", &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]); /* wrong detection */
    CHECK(c[1] == 2);
}

TEST(bad_task_files_name_the_problem) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    write_file(tmp("d.tsv"), "label\ttext\n1\t好\n0\t差\n");
    write_file(tmp("bad.jsonl"), "{\"text\": \"a\", \"label\": \"1\"}\n{oops\n");
    write_file(tmp("cols.tsv"), "label\ttext\n1\t好\t多\n");
    static const struct {
        const char *task, *error;
    } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"format\": \"tsv\", \"template\": \"x\"}", "'name' is required"},
        {"{\"name\": \"t\", \"format\": \"csv\", \"template\": \"x\"}", "format 'csv' is not one of"},
        {"{\"name\": \"t\", \"kind\": \"rank\", \"format\": \"tsv\", \"template\": \"x\"}", "kind 'rank' is not choice or generate"},
        {"{\"name\": \"t\", \"format\": \"tsv\", \"template\": \"{text}{candidate}\", \"answer\": \"label\"}", "gives either 'labels' or 'candidates'"},
        {"{\"name\": \"t\", \"format\": \"tsv\", \"template\": \"{text}\", \"labels\": {\"0\": \"a\", \"1\": \"b\"}, \"answer\": \"label\"}", "no {candidate}"},
        {"{\"name\": \"t\", \"format\": \"tsv\", \"template\": \"{text}{candidate}\", \"labels\": {\"0\": \"a\"}, \"answer\": \"label\"}", "must map 2..256"},
        {"{\"name\": \"t\", \"format\": \"tsv\", \"template\": \"{text}{candidate}\", \"labels\": {\"0\": \"a\", \"1\": \"b\"}, \"answer\": \"label\", \"files\": {\"test\": \"nowhere.tsv\"}}", "nowhere.tsv"},
        {"{\"name\": \"t\", \"format\": \"tsv\", \"template\": \"{text}{candidate}\", \"labels\": {\"0\": \"a\", \"1\": \"b\"}, \"answer\": \"label\", \"files\": {\"dev\": \"d.tsv\"}}", "no 'test' split"},
        {"{\"name\": \"t\", \"format\": \"jsonl\", \"template\": \"{text}{candidate}\", \"labels\": {\"0\": \"a\", \"1\": \"b\"}, \"answer\": \"label\", \"files\": {\"test\": \"bad.jsonl\"}}", "bad.jsonl:2: not a JSON object"},
        {"{\"name\": \"t\", \"format\": \"tsv\", \"template\": \"{text}{candidate}\", \"labels\": {\"0\": \"a\", \"1\": \"b\"}, \"answer\": \"label\", \"files\": {\"test\": \"cols.tsv\"}}", "cols.tsv:2: 3 columns, the header has 2"},
        {"{\"name\": \"t\", \"kind\": \"generate\", \"format\": \"tsv\", \"template\": \"{text}\"}", "gives 'answers' (QA) or 'source' and 'references'"},
        {"{\"name\": \"t\", \"format\": \"pairs\", \"template\": \"{source}{candidate}\", \"labels\": {\"0\": \"a\", \"1\": \"b\"}, \"answer\": \"x\", \"files\": {\"test\": \"d.tsv\"}}", "a list of two line-aligned files"},
        {"{\"name\": \"t\", \"format\": \"tsv\", \"template\": \"{text}{candidate}\", \"labels\": {\"0\": \"a\", \"1\": \"b\"}, \"answer\": \"label\", \"metrics\": [\"bleu\"]}", "metrics are up to 4 of"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(tmp("task.json"), cases[i].task);
        ld_task *t = NULL;
        ld_status st = ld_task_load(ctx, tmp("task.json"), dir_, NULL, &t);
        CHECK_MSG(st != LD_OK && !t && strstr(ld_ctx_error(ctx), cases[i].error), "case %zu: got '%s', want '%s'", i,
                  ld_ctx_error(ctx), cases[i].error);
        ld_task_free(t);
    }
    ld_ctx_free(ctx);
}

/* A tiny model and byte-level tokenizer for running tasks. */
static void tiny(ld_ctx *ctx, ld_lm **m, ld_tokenizer **tok) {
    write_file(tmp("corpus.txt"), "好评差评这是好的评论\n床前明月光\n今天天气很好\n");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s tokenizer train %s --vocab-size 300 -o %s 2>/dev/null",
             getenv("LD_BIN") ? getenv("LD_BIN") : "build/liandan", tmp("corpus.txt"), tmp("tok.json"));
    CHECK(system(cmd) == 0);
    CHECK(ld_tokenizer_load(ctx, tmp("tok.json"), tok) == LD_OK);
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = ld_tokenizer_vocab_size(*tok), c.hidden_size = 32, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 2;
    c.intermediate_size = 48, c.max_position = 64, c.init_std = 0.3f;
    CHECK(ld_lm_new(ctx, &c, 2, m) == LD_OK);
}

TEST(running_tasks_on_a_tiny_model) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_ctx_set_threads(ctx, 1);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    tiny(ctx, &m, &tok);
    write_file(tmp("s.tsv"), "label\ttext\n1\t很好\n0\t太差\n1\t不错\n0\t很差\n1\t好\n");
    write_file(tmp("cls.json"), "{\"name\": \"senti\", \"format\": \"tsv\", \"files\": {\"train\": \"s.tsv\", \"test\": \"s.tsv\"},"
                                " \"template\": \"评论：{text}\\n{candidate}\", \"labels\": {\"0\": \"差评\", \"1\": \"好评\"},"
                                " \"answer\": \"label\", \"head_input\": \"{text}\", \"metrics\": [\"accuracy\", \"macro_f1\"]}");
    write_file(tmp("mc.jsonl"), "{\"q\": \"床前#b#\", \"choices\": [\"明月光\", \"天气好\", \"差评\"], \"answer\": 0}\n"
                                "{\"c\": \"x\", \"q\": \"今天#b#很好\", \"choices\": [\"天气\", \"明月\"], \"answer\": \"天气\"}\n");
    write_file(tmp("mc.json"), "{\"name\": \"mc\", \"format\": \"jsonl\", \"files\": {\"test\": \"mc.jsonl\"}, \"template\": \"{q}\","
                               " \"blank\": \"#b#\", \"candidates\": \"choices\", \"answer\": \"answer\"}");
    write_file(tmp("qa.json"), "{\"name\": \"qa\", \"kind\": \"generate\", \"format\": \"jsonl\", \"files\": {\"test\": \"qa.jsonl\"},"
                               " \"template\": \"{q}：\", \"answers\": \"a\", \"max_new_tokens\": 4}");
    write_file(tmp("qa.jsonl"), "{\"q\": \"床前\", \"a\": [\"明月光\"]}\n{\"q\": \"天气\", \"a\": [\"很好\", \"好\"]}\n");
    const char *files[] = {"cls.json", "mc.json", "qa.json"};
    ld_task_result r[4], again;
    for (int i = 0; i < 3; i++) {
        ld_task *t = NULL;
        CHECK_MSG(ld_task_load(ctx, tmp(files[i]), dir_, NULL, &t) == LD_OK, "%s", ld_ctx_error(ctx));
        if (!t) continue;
        ld_task_params p = ld_task_default_params();
        p.batch = 2;
        CHECK_MSG(ld_task_run(t, m, tok, &p, NULL, NULL, &r[i]) == LD_OK, "%s: %s", files[i], ld_ctx_error(ctx));
        CHECK(ld_task_run(t, m, tok, &p, NULL, NULL, &again) == LD_OK);
        CHECK(r[i].n == ld_task_size(t) && r[i].n_metrics >= 1);
        for (int k = 0; k < r[i].n_metrics; k++) CHECK(r[i].value[k] == again.value[k]); /* deterministic */
        if (i == 0) {
            CHECK(r[0].n == 5 && fabs(r[0].chance - 0.5) < 1e-12 && !strcmp(r[0].metric[1], "macro_f1"));
            p.calibrate = true, p.shots = 2;
            CHECK(ld_task_run(t, m, tok, &p, NULL, NULL, &again) == LD_OK && strstr(again.mode, "2-shot, calibrated"));
        }
        if (i == 1) CHECK(fabs(r[1].chance - (1.0 / 3 + 1.0 / 2) / 2) < 1e-12);
        if (i == 2) CHECK(!strcmp(r[2].metric[0], "em") && !strcmp(r[2].metric[1], "f1"));
        if (i == 1) { /* few-shot needs a train split */
            ld_task_params q = p;
            q.shots = 1;
            CHECK(ld_task_run(t, m, tok, &q, NULL, NULL, &again) == LD_ERR_INVALID_ARG && strstr(ld_ctx_error(ctx), "no train split"));
        }
        ld_task_free(t);
    }
    /* a classification head: the task's prediction is ld_lm_classify's argmax */
    ld_adapter_config ac = ld_adapter_default_config();
    ac.n_labels = 2;
    ld_adapter *a = NULL;
    CHECK(ld_adapter_new(m, &ac, 3, &a) == LD_OK);
    CHECK(ld_adapter_set_labels(a, (const char *[]){"0", "1"}, 2) == LD_OK);
    ld_task *t = NULL;
    CHECK(ld_task_load(ctx, tmp("cls.json"), dir_, NULL, &t) == LD_OK);
    if (t && a) {
        CHECK(ld_task_run(t, m, tok, NULL, NULL, NULL, &r[3]) == LD_OK && !strcmp(r[3].mode, "fine-tuned head"));
        const char *texts[] = {"很好", "太差", "不错", "很差", "好"};
        int gold[] = {1, 0, 1, 0, 1}, right = 0;
        ld_tape *tape = NULL;
        ld_tape_new(ctx, &tape);
        ld_tape_set_grad_enabled(tape, false);
        for (int i = 0; i < 5; i++) {
            int32_t ids[64];
            size_t n = 0;
            CHECK(ld_tokenizer_encode(tok, texts[i], strlen(texts[i]), LD_ENCODE_SPECIAL_AS_TEXT, ids, 63, &n) == LD_OK);
            ids[n++] = ld_tokenizer_eos_id(tok);
            int32_t len = (int32_t)n;
            ld_tensor *lg = NULL;
            ld_tape_reset(tape);
            CHECK(ld_lm_classify(m, tape, ids, &len, 1, (int64_t)n, &lg) == LD_OK);
            if (lg) right += (((float *)lg->data)[1] > ((float *)lg->data)[0]) == gold[i];
        }
        CHECK_NEAR(r[3].value[0], right / 5.0, 1e-12);
        ld_tape_free(tape);
        /* a head whose labels the task lacks */
        CHECK(ld_adapter_set_labels(a, (const char *[]){"neg", "pos"}, 2) == LD_OK);
        CHECK(ld_task_run(t, m, tok, NULL, NULL, NULL, &again) == LD_ERR_MISMATCH && strstr(ld_ctx_error(ctx), "'neg'"));
    }
    ld_task_free(t);
    char *json = NULL, *md = NULL;
    CHECK(ld_task_report(ctx, "tiny", m, tok, r, 4, &json, &md) == LD_OK);
    CHECK(json && strstr(json, "\"weights_hash\"") && strstr(json, "\"tokenizer\"") && strstr(json, "s.tsv"));
    CHECK(md && strstr(md, "| senti | test | 5 |"));
    free(json);
    free(md);
    ld_adapter_free(a);
    ld_lm_free(m);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* A prompt-tuning head reads texts cut to the context minus its virtual tokens (a text as
 * long as the whole context failed: "length must be in 1..48"). */
TEST(a_prompt_head_leaves_room_for_its_virtual_tokens) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_ctx_set_threads(ctx, 1);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    tiny(ctx, &m, &tok);
    char longtext[1024] = "";
    for (int i = 0; i < 60; i++) strcat(longtext, "很好");
    char tsv[1200];
    snprintf(tsv, sizeof tsv, "label\ttext\n1\t%s\n0\t太差\n", longtext);
    write_file(tmp("long.tsv"), tsv);
    write_file(tmp("long.json"), "{\"name\": \"long\", \"format\": \"tsv\", \"files\": {\"test\": \"long.tsv\"},"
                                 " \"template\": \"{text}{candidate}\", \"labels\": {\"0\": \"差\", \"1\": \"好\"},"
                                 " \"answer\": \"label\", \"head_input\": \"{text}\"}");
    ld_adapter_config ac = ld_adapter_default_config();
    ac.method = LD_ADAPTER_PROMPT, ac.virtual_tokens = 16, ac.n_labels = 2;
    ld_adapter *a = NULL;
    ld_task *t = NULL;
    CHECK(ld_adapter_new(m, &ac, 3, &a) == LD_OK);
    CHECK(ld_adapter_set_labels(a, (const char *[]){"0", "1"}, 2) == LD_OK);
    CHECK(ld_task_load(ctx, tmp("long.json"), dir_, NULL, &t) == LD_OK);
    ld_task_result r;
    if (t && a) CHECK_MSG(ld_task_run(t, m, tok, NULL, NULL, NULL, &r) == LD_OK && r.n == 2, "%s", ld_ctx_error(ctx));
    ld_task_free(t);
    ld_adapter_free(a);
    ld_lm_free(m);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* --limit takes examples spread over the split, not its head (TNEWS's test file is sorted by
 * label: its first 200 were all one class, and zero-shot accuracy read 0 %). */
TEST(a_limit_spreads_over_the_split) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_ctx_set_threads(ctx, 1);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    tiny(ctx, &m, &tok);
    write_file(tmp("sorted.jsonl"), "{\"q\": \"床前\", \"c\": [\"明月\", \"天气\"], \"a\": 0}\n"
                                    "{\"q\": \"今天\", \"c\": [\"明月\", \"天气\"], \"a\": 1}\n"
                                    "{\"q\": \"好\", \"c\": [\"明月\", \"天气\"], \"a\": 1}\n"
                                    "{\"q\": \"床前\", \"c\": [\"明月\", \"天气\", \"好评\", \"差评\"], \"a\": 0}\n"
                                    "{\"q\": \"今天\", \"c\": [\"明月\", \"天气\", \"好评\", \"差评\"], \"a\": 1}\n"
                                    "{\"q\": \"好\", \"c\": [\"明月\", \"天气\", \"好评\", \"差评\"], \"a\": 2}\n");
    write_file(tmp("sorted.json"), "{\"name\": \"sorted\", \"format\": \"jsonl\", \"files\": {\"test\": \"sorted.jsonl\"},"
                                   " \"template\": \"{q}{candidate}\", \"candidates\": \"c\", \"answer\": \"a\"}");
    ld_task *t = NULL;
    CHECK(ld_task_load(ctx, tmp("sorted.json"), dir_, NULL, &t) == LD_OK);
    ld_task_params p = ld_task_default_params();
    p.limit = 2;
    ld_task_result r, again;
    if (t) {
        /* examples 0 and 3: one with 2 candidates, one with 4 (the head would be 2 and 2) */
        CHECK(ld_task_run(t, m, tok, &p, NULL, NULL, &r) == LD_OK && r.n == 2 && fabs(r.chance - 0.375) < 1e-12);
        CHECK(ld_task_run(t, m, tok, &p, NULL, NULL, &again) == LD_OK && again.value[0] == r.value[0] &&
              fabs(again.chance - 0.375) < 1e-12); /* the split is back in its order */
        p.limit = 3; /* examples 0, 2, 4 */
        CHECK(ld_task_run(t, m, tok, &p, NULL, NULL, &r) == LD_OK && fabs(r.chance - (0.5 + 0.5 + 0.25) / 3) < 1e-12);
    }
    ld_task_free(t);
    ld_lm_free(m);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

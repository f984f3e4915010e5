/* tests/unit/test_train.c — model directories and training checkpoints:
 *   - save then load gives bit-identical logits, and the directory has the HF names;
 *   - broken model directories give errors naming the problem;
 *   - exact resume: a run stopped at step k (or killed with SIGKILL at a random moment, also
 *     during a checkpoint write) and resumed gives per-step losses identical, bit for bit, to
 *     an uninterrupted run; a partial checkpoint is never loaded;
 *   - distillation: the student learns the teacher's distribution, the teacher stays frozen,
 *     and mismatched teachers / bad temperature or alpha are refused with a clear error;
 *   - learning-rate schedules. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ld_test.h"

static ld_lm_config tiny(void) {
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 61, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.intermediate_size = 48;
    c.max_position = 32, c.tie_embeddings = false;
    return c;
}

/* Every directory a test made, removed when the test program ends. */
static char made[32][256];
static int n_made;
__attribute__((destructor)) static void remove_made(void) {
    for (int i = 0; i < n_made; i++) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", made[i]);
        if (system(cmd)) {}
    }
}

static char *tmpdir(const char *tag) {
    if (n_made == 32) abort();
    char *b = made[n_made++];
    snprintf(b, 256, "/tmp/liandan-test-%s-%d", tag, (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", b);
    if (system(cmd)) {}
    return b;
}

static void logits_of(ld_lm *m, ld_tape *t, const int32_t *ids, float *out, int64_t n) {
    ld_tensor *lg = NULL;
    ld_tape_reset(t);
    CHECK(ld_lm_forward(m, t, ids, NULL, 1, 8, &lg, NULL) == LD_OK);
    if (lg) memcpy(out, lg->data, (size_t)n * sizeof(float));
}

TEST(save_then_load_gives_bit_identical_logits) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int a = 0; a < 2; a++) {
        ld_lm_config c = a ? ld_lm_default_config(LD_ARCH_GPT2) : tiny();
        if (a) c.vocab_size = 61, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 4,
               c.intermediate_size = 128, c.max_position = 32;
        ld_lm *m = NULL, *m2 = NULL;
        ld_tape *t = NULL;
        CHECK(ld_lm_new(ctx, &c, 9, &m) == LD_OK);
        ld_tape_new(ctx, &t);
        ld_tape_set_grad_enabled(t, false);
        char *dir = tmpdir(a ? "gpt2" : "llama");
        CHECK(ld_lm_save(m, dir) == LD_OK);
        CHECK(ld_lm_load(ctx, dir, &m2) == LD_OK);
        int32_t ids[8] = {1, 5, 9, 60, 0, 3, 3, 7};
        float l1[8 * 61], l2[8 * 61];
        logits_of(m, t, ids, l1, 8 * 61);
        if (m2) logits_of(m2, t, ids, l2, 8 * 61);
        CHECK(m2 && memcmp(l1, l2, sizeof l1) == 0);
        /* names in the file are exactly the HF ones */
        char path[512];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        ld_safetensors *sf = NULL;
        CHECK(ld_safetensors_open(ctx, path, &sf) == LD_OK);
        if (sf) {
            CHECK(ld_safetensors_count(sf) == (size_t)ld_params_count(ld_lm_params(m)));
            CHECK(ld_safetensors_find(sf, a ? "transformer.h.1.mlp.c_fc.weight" : "model.layers.1.mlp.gate_proj.weight"));
            CHECK(ld_safetensors_find(sf, a ? "transformer.wpe.weight" : "lm_head.weight"));
            ld_safetensors_close(sf);
        }
        ld_lm_free(m2);
        ld_lm_free(m);
        ld_tape_free(t);
    }
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(broken_model_directories_name_the_problem) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config c = tiny();
    ld_lm *m = NULL, *out = NULL;
    ld_lm_new(ctx, &c, 1, &m);
    char *dir = tmpdir("broken");
    CHECK(ld_lm_save(m, dir) == LD_OK);
    char path[512], cmd[1024];
    /* config says a wider model than the weights */
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cfg = ld_lm_config_to_json(&c);
    ld_lm_config wide = c;
    wide.intermediate_size = 64;
    char *cfg2 = ld_lm_config_to_json(&wide);
    ld_file_write_atomic(ctx, path, cfg2, strlen(cfg2));
    CHECK_STATUS(ctx, ld_lm_load(ctx, dir, &out), LD_ERR_SHAPE, "mlp.gate_proj.weight");
    ld_file_write_atomic(ctx, path, cfg, strlen(cfg));
    CHECK(ld_lm_load(ctx, dir, &out) == LD_OK);
    ld_lm_free(out);
    out = NULL;
    /* truncated weights */
    snprintf(cmd, sizeof cmd, "truncate -s -100 %s/model.safetensors", dir);
    CHECK(system(cmd) == 0);
    CHECK_STATUS(ctx, ld_lm_load(ctx, dir, &out), LD_ERR_FORMAT, "model.safetensors");
    /* no weights at all */
    snprintf(cmd, sizeof cmd, "rm %s/model.safetensors", dir);
    CHECK(system(cmd) == 0);
    CHECK(ld_lm_load(ctx, dir, &out) != LD_OK && strstr(ld_ctx_error(ctx), "model.safetensors"));
    /* missing config */
    CHECK(ld_lm_load(ctx, "/nonexistent-liandan-dir", &out) != LD_OK && strstr(ld_ctx_error(ctx), "config.json"));
    CHECK(out == NULL);
    free(cfg), free(cfg2);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

/* ---- a deterministic synthetic batch source with a saveable cursor ---- */
typedef struct synth {
    uint64_t cursor;
    int64_t V;
} synth;

static ld_status synth_window(void *user, int32_t *tokens, int64_t B, int64_t T) {
    synth *s = user;
    for (int64_t i = 0; i < B * (T + 1); i++) {
        /* a learnable pattern: next = (prev * 7 + 3) mod V, with a random start per row */
        int64_t row = i / (T + 1), col = i % (T + 1);
        int64_t start = (int64_t)(ld_rng_at(42, s->cursor * 1000 + (uint64_t)row) % (uint64_t)s->V);
        int64_t v = start;
        for (int64_t k = 0; k < col; k++) v = (v * 7 + 3) % s->V;
        tokens[i] = (int32_t)v;
    }
    s->cursor++;
    return LD_OK;
}
static ld_status synth_next(void *user, ld_batch *b) {
    int32_t *scratch = malloc((size_t)(b->B * (b->T + 1)) * sizeof(int32_t));
    ld_status st = ld_batch_from_windows(b, scratch, synth_window, user);
    free(scratch);
    return st;
}
static ld_status synth_save(void *user, char **out) {
    synth *s = user;
    *out = malloc(64);
    snprintf(*out, 64, "{\"cursor\":%llu}", (unsigned long long)s->cursor);
    return LD_OK;
}
static ld_status synth_restore(void *user, const char *json) {
    synth *s = user;
    unsigned long long c;
    if (sscanf(json, "{\"cursor\":%llu}", &c) != 1) return LD_ERR_FORMAT;
    s->cursor = c;
    return LD_OK;
}

static ld_train_params tparams(const char *dir, int64_t steps) {
    ld_train_params p = ld_train_default_params();
    p.batch_size = 2, p.seq_len = 16, p.grad_accum = 2, p.max_steps = steps;
    p.schedule.max_steps = steps, p.schedule.warmup_steps = 3, p.schedule.lr = 3e-3f, p.schedule.min_lr = 3e-4f;
    p.eval_every = 0, p.checkpoint_every = 1, p.keep_last = 2, p.spike_factor = 3.0f, p.out_dir = dir;
    return p;
}

/* Runs (or resumes) training in dir up to `steps`; returns the final status. */
static ld_status train(const char *dir, int64_t steps, bool resume, volatile int *stop) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config c = tiny();
    ld_lm *m = NULL;
    ld_trainer *t = NULL;
    synth s = {0, c.vocab_size};
    ld_batch_source src = {synth_next, synth_save, synth_restore, &s};
    ld_train_params p = tparams(dir, steps);
    ld_status st = ld_lm_new(ctx, &c, 5, &m);
    if (!st) st = ld_trainer_new(m, &p, &src, NULL, 0, &t);
    bool found = false;
    if (!st && resume) st = ld_trainer_resume(t, &found);
    if (!st) st = ld_trainer_run(t, NULL, NULL, stop);
    if (st && st != LD_ERR_INTERRUPTED) fprintf(stderr, "  train: %s\n", ld_ctx_error(ctx));
    ld_trainer_free(t);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return st;
}

/* The "loss" values of metrics.jsonl, by step. */
static int read_losses(const char *dir, char losses[][32], int max) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        int step;
        char loss[32];
        if (sscanf(line, "{\"step\":%d,\"loss\":%31[^,]", &step, loss) == 2 && step >= 1 && step <= max) {
            snprintf(losses[step - 1], 32, "%s", loss);
            if (step > n) n = step;
        }
    }
    fclose(f);
    return n;
}

TEST(resume_from_step_5_is_bit_identical) {
    enum { STEPS = 12 };
    char *ref = tmpdir("ref"), *res = tmpdir("resumed");
    CHECK(train(ref, STEPS, false, NULL) == LD_OK);
    /* a run killed with SIGKILL once its step-5 checkpoint is complete... */
    pid_t pid = fork();
    if (pid == 0) _exit(train(res, STEPS, false, NULL) == LD_OK ? 0 : 1);
    char ckpt[600];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/step-0000005", res);
    struct stat sb;
    for (int i = 0; i < 20000 && stat(ckpt, &sb) != 0; i++) usleep(500);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    /* ...and resumed gives the uninterrupted run's losses, bit for bit */
    CHECK(train(res, STEPS, true, NULL) == LD_OK);
    char a[STEPS][32] = {{0}}, b[STEPS][32] = {{0}};
    CHECK(read_losses(ref, a, STEPS) == STEPS);
    CHECK(read_losses(res, b, STEPS) == STEPS);
    for (int i = 0; i < STEPS; i++) CHECK_MSG(!strcmp(a[i], b[i]), "step %d: %s vs %s", i + 1, a[i], b[i]);
}

TEST(stop_flag_checkpoints_and_returns_interrupted) {
    char *dir = tmpdir("stop");
    volatile int stop = 1; /* already set: the first step checkpoints and returns */
    CHECK(train(dir, 5, false, &stop) == LD_ERR_INTERRUPTED);
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoints/step-0000001/trainer_state.json", dir);
    CHECK(access(path, F_OK) == 0);
}

TEST(sigkill_at_random_moments_then_resume_is_bit_identical) {
    enum { STEPS = 10 };
    char *ref = tmpdir("kref");
    CHECK(train(ref, STEPS, false, NULL) == LD_OK);
    char a[STEPS][32] = {{0}};
    CHECK(read_losses(ref, a, STEPS) == STEPS);
    ld_rng r = ld_rng_init((uint64_t)getpid());
    for (int trial = 0; trial < 4; trial++) {
        char *dir = tmpdir("kill");
        /* kill at a random moment, possibly several times, then finish */
        for (int kills = 0; kills < 2; kills++) {
            pid_t pid = fork();
            if (pid == 0) _exit(train(dir, STEPS, true, NULL) == LD_OK ? 0 : 1);
            usleep((useconds_t)(ld_rng_below(&r, 60000)));
            kill(pid, SIGKILL);
            int status;
            waitpid(pid, &status, 0);
        }
        CHECK(train(dir, STEPS, true, NULL) == LD_OK);
        char b[STEPS][32] = {{0}};
        CHECK(read_losses(dir, b, STEPS) == STEPS);
        for (int i = 0; i < STEPS; i++) CHECK_MSG(!strcmp(a[i], b[i]), "trial %d step %d: %s vs %s", trial, i + 1, a[i], b[i]);
        /* no partial checkpoint survives under a final name; at most keep_last remain */
        char cmd[600];
        snprintf(cmd, sizeof cmd, "test $(ls %s/checkpoints | grep -c '^step-[0-9]*$') -le 2", dir);
        CHECK(system(cmd) == 0);
    }
}

/* Lines of dir's metrics.jsonl. */
static int metrics_lines(const char *dir) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n++;
    if (f) fclose(f);
    return n;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

TEST(resume_falls_back_to_the_newest_checkpoint_that_loads) {
    enum { STEPS = 8 };
    char *ref = tmpdir("fbref");
    CHECK(train(ref, STEPS, false, NULL) == LD_OK);
    char a[STEPS][32] = {{0}};
    CHECK(read_losses(ref, a, STEPS) == STEPS);
    /* each case damages a finished run (checkpoints step-7 and step-8, latest -> step-8) */
    for (int c = 0; c < 4; c++) {
        char *dir = tmpdir("fb"), path[600], cmd[700];
        CHECK(train(dir, STEPS, false, NULL) == LD_OK);
        snprintf(path, sizeof path, "%s/checkpoints/latest", dir);
        if (c == 0) write_text(path, "../../etc\n");      /* not a checkpoint name */
        if (c == 1) unlink(path);                         /* no pointer at all */
        if (c >= 2) {                                     /* the newest checkpoint is damaged: step 8 is redone */
            snprintf(cmd, sizeof cmd, "truncate -s -100 %s/checkpoints/step-0000008/model.safetensors", dir);
            CHECK(system(cmd) == 0);
        }
        if (c == 3) { /* ... and so is the older one: no silent restart, an error */
            snprintf(path, sizeof path, "%s/checkpoints/step-0000007/trainer_state.json", dir);
            write_text(path, "{\"step\": -1}");
            CHECK(train(dir, STEPS, true, NULL) != LD_OK);
            CHECK(metrics_lines(dir) == STEPS); /* nothing was trimmed or added */
            continue;
        }
        CHECK_MSG(train(dir, STEPS, true, NULL) == LD_OK, "case %d", c);
        char b[STEPS][32] = {{0}};
        CHECK(read_losses(dir, b, STEPS) == STEPS);
        CHECK_MSG(metrics_lines(dir) == STEPS, "case %d: %d metrics lines", c, metrics_lines(dir));
        for (int i = 0; i < STEPS; i++) CHECK_MSG(!strcmp(a[i], b[i]), "case %d step %d: %s vs %s", c, i + 1, a[i], b[i]);
        /* the damaged checkpoint was written again, whole */
        snprintf(cmd, sizeof cmd, "cmp -s %s/checkpoints/step-0000008/model.safetensors %s/checkpoints/step-0000008/model.safetensors",
                 dir, ref);
        CHECK(system(cmd) == 0);
    }
}

TEST(resume_before_the_first_checkpoint_starts_over_and_a_fresh_run_refuses_an_old_one) {
    enum { STEPS = 6 };
    char *ref = tmpdir("s0ref"), *dir = tmpdir("s0"), path[600], cmd[700];
    CHECK(train(ref, STEPS, false, NULL) == LD_OK);
    char a[STEPS][32] = {{0}}, b[STEPS][32] = {{0}};
    CHECK(read_losses(ref, a, STEPS) == STEPS);
    /* a run killed before its first checkpoint: metrics lines, no checkpoint */
    CHECK(train(dir, 3, false, NULL) == LD_OK);
    snprintf(cmd, sizeof cmd, "rm -rf %s/checkpoints && mkdir %s/checkpoints", dir, dir);
    CHECK(system(cmd) == 0);
    CHECK(metrics_lines(dir) == 3);
    /* starting afresh there would append a second step 1: refused */
    CHECK(train(dir, STEPS, false, NULL) == LD_ERR_STATE);
    /* a finished run directory is refused too */
    CHECK(train(ref, STEPS, false, NULL) == LD_ERR_STATE);
    /* --resume with nothing to resume starts over from step 0 with the metrics cleared */
    CHECK(train(dir, STEPS, true, NULL) == LD_OK);
    CHECK(read_losses(dir, b, STEPS) == STEPS && metrics_lines(dir) == STEPS);
    for (int i = 0; i < STEPS; i++) CHECK_MSG(!strcmp(a[i], b[i]), "step %d: %s vs %s", i + 1, a[i], b[i]);
    snprintf(path, sizeof path, "%s/checkpoints/latest", dir);
    CHECK(access(path, F_OK) == 0);
}

/* The mean training loss of steps [from, to) in dir's metrics.jsonl. */
static double mean_loss(const char *dir, int from, int to) {
    char l[64][32] = {{0}};
    int n = read_losses(dir, l, 64);
    double s = 0;
    for (int i = from; i < to && i < n; i++) s += atof(l[i]);
    return s / (double)(to - from);
}

TEST(distillation_learns_the_teacher_and_checks_its_inputs) {
    char *dir = tmpdir("distill");
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config sc = tiny(), tc = tiny(), other = tiny();
    tc.hidden_size = 48, tc.n_layers = 3;
    other.vocab_size = 60;
    ld_lm *student = NULL, *tm = NULL, *om = NULL;
    ld_teacher *teacher = NULL, *wrong = NULL;
    ld_trainer *t = NULL;
    synth s = {0, sc.vocab_size};
    ld_batch_source src = {synth_next, synth_save, synth_restore, &s};
    ld_train_params p = tparams(dir, 40);
    p.checkpoint_every = 0, p.spike_factor = 0, p.schedule.warmup_steps = 0, p.schedule.lr = 1e-2f;
    CHECK(ld_lm_new(ctx, &sc, 5, &student) == LD_OK);
    CHECK(ld_lm_new(ctx, &tc, 9, &tm) == LD_OK && ld_teacher_new(tm, &teacher) == LD_OK);
    CHECK(ld_lm_new(ctx, &other, 9, &om) == LD_OK && ld_teacher_new(om, &wrong) == LD_OK);
    CHECK(ld_params_numel(ld_lm_params(tm), true) == 0); /* frozen: nothing to train */
    CHECK(ld_trainer_new(student, &p, &src, NULL, 0, &t) == LD_OK);
    CHECK(ld_trainer_set_teacher(t, wrong, 1, 1) == LD_ERR_INVALID_ARG);
    CHECK(strstr(ld_ctx_error(ctx), "the teacher's vocab_size is 60 but the student's is 61") != NULL);
    CHECK(ld_trainer_set_teacher(t, teacher, 0, 1) == LD_ERR_INVALID_ARG);
    CHECK(strstr(ld_ctx_error(ctx), "temperature") != NULL);
    CHECK(ld_trainer_set_teacher(t, teacher, 1, 1.5f) == LD_ERR_INVALID_ARG);
    CHECK(strstr(ld_ctx_error(ctx), "alpha") != NULL);
    /* alpha = 1, T = 1: the loss is KL(teacher || student), which training drives down */
    ld_tensor *w = ld_params_at(ld_lm_params(tm), 1);
    float *w0 = malloc(ld_tensor_nbytes(w));
    memcpy(w0, w->data, ld_tensor_nbytes(w));
    CHECK(ld_trainer_set_teacher(t, teacher, 1, 1) == LD_OK);
    CHECK(ld_trainer_run(t, NULL, NULL, NULL) == LD_OK);
    double first = mean_loss(dir, 0, 5), last = mean_loss(dir, 35, 40);
    printf("  KL(teacher || student): %.4f over the first 5 steps, %.4f over the last 5\n", first, last);
    CHECK(last < 0.5 * first);
    CHECK(memcmp(w0, w->data, ld_tensor_nbytes(w)) == 0); /* the teacher did not move */
    free(w0);
    ld_trainer_free(t);
    ld_teacher_free(teacher);
    ld_teacher_free(wrong);
    ld_lm_free(student);
    ld_ctx_free(ctx);
}

TEST(learning_rate_schedules) {
    ld_lr_schedule s = {.kind = LD_LR_COSINE, .lr = 1.0f, .min_lr = 0.1f, .warmup_steps = 10, .max_steps = 110};
    CHECK_NEAR(ld_lr_at(&s, 0), 0.1, 1e-6);
    CHECK_NEAR(ld_lr_at(&s, 9), 1.0, 1e-6);
    CHECK_NEAR(ld_lr_at(&s, 10), 1.0, 1e-6);
    CHECK_NEAR(ld_lr_at(&s, 60), 0.55, 1e-6);
    CHECK_NEAR(ld_lr_at(&s, 110), 0.1, 1e-6);
    s.kind = LD_LR_WSD, s.decay_steps = 20;
    CHECK_NEAR(ld_lr_at(&s, 89), 1.0, 1e-6);
    CHECK_NEAR(ld_lr_at(&s, 99), 0.55, 1e-6);
    CHECK_NEAR(ld_lr_at(&s, 109), 0.1, 1e-6);
    s.kind = LD_LR_CONSTANT;
    CHECK_NEAR(ld_lr_at(&s, 1000), 1.0, 1e-6);
    ld_lr_kind k;
    CHECK(ld_lr_kind_from_name("wsd", &k) && k == LD_LR_WSD);
    CHECK(!ld_lr_kind_from_name("linear", &k));
}

LD_TEST_MAIN()

/* tests/unit/test_serve_jobs.c — the fine-tuning service's pieces below HTTP: the check of
 * uploaded JSONL against a table of bad files (each error names its line), and the
 * registry's files, jobs (status moves only from the states they allow), events,
 * checkpoints and models with lineage. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ld_test.h"
#include "liandan/registry.h"
#include "serve/ft_file.h"

#define CHAT "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}"

TEST(ft_file_good) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_ft_file_info info;
    const char chat[] = CHAT "\n\n" CHAT "\r\n" CHAT;
    CHECK(ld_ft_file_check(ctx, chat, sizeof chat - 1, 0, &info) == LD_OK);
    CHECK(info.examples == 3 && !strcmp(info.format, "chat"));
    const char text[] = "{\"text\": \"春眠不覺曉\"}\n  \n{\"text\": \"b\"}\n";
    CHECK(ld_ft_file_check(ctx, text, sizeof text - 1, 0, &info) == LD_OK);
    CHECK(info.examples == 2 && !strcmp(info.format, "text"));
    ld_ctx_free(ctx);
}

TEST(ft_file_bad_input_table) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct {
        const char *data;
        int64_t max;
        ld_status st;
        const char *msg;
    } cases[] = {
        {"", 0, LD_ERR_FORMAT, "no examples"},
        {"\n \n\r\n", 0, LD_ERR_FORMAT, "no examples"},
        {CHAT "\n{\"messages\": [}\n", 0, LD_ERR_FORMAT, "line 2, column"},
        {"[1, 2]\n", 0, LD_ERR_FORMAT, "line 1: an example is a JSON object"},
        {"{\"prompt\": \"p\", \"completion\": \"c\"}", 0, LD_ERR_FORMAT, "line 1: no \"messages\""},
        {"{\"text\": \"\"}", 0, LD_ERR_FORMAT, "line 1: \"text\" must be a non-empty string"},
        {"{\"text\": 3}", 0, LD_ERR_FORMAT, "non-empty string"},
        {"{\"text\": \"a\", \"messages\": []}", 0, LD_ERR_FORMAT, "both"},
        {"{\"messages\": []}", 0, LD_ERR_FORMAT, "non-empty list"},
        {"{\"messages\": {}}", 0, LD_ERR_FORMAT, "non-empty list"},
        {"{\"messages\": [{\"role\": \"user\"}]}", 0, LD_ERR_FORMAT, "messages[0] needs string"},
        {"{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}", 0, LD_ERR_FORMAT, "unknown role 'bot'"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", 0, LD_ERR_FORMAT, "no assistant message"},
        {"{\"messages\": [{\"role\": \"assistant\", \"content\": \"\"}]}", 0, LD_ERR_FORMAT, "no assistant message"},
        {CHAT "\n" CHAT "\n{\"text\": \"t\"}", 0, LD_ERR_FORMAT, "line 3: a text example in a file of chat"},
        {CHAT "\n{\"text\": \"\xff\"}", 0, LD_ERR_FORMAT, "line 2: not valid UTF-8"},
        {CHAT " " CHAT, 0, LD_ERR_FORMAT, "line 1: one JSON object per line"},
        {CHAT "\n" CHAT "\n" CHAT, 2, LD_ERR_LIMIT, "line 3: more than 2 examples"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_ft_file_info info;
        ld_status st = ld_ft_file_check(ctx, cases[i].data, strlen(cases[i].data), cases[i].max, &info);
        CHECK_MSG(st == cases[i].st && strstr(ld_ctx_error(ctx), cases[i].msg), "case %zu: %s (%s)", i,
                  ld_status_name(st), ld_ctx_error(ctx));
    }
    /* a NUL inside a line is not text */
    const char nul[] = "{\"text\": \"a\"}\n{\"text\": \"b\0\"}";
    ld_ft_file_info info;
    CHECK(ld_ft_file_check(ctx, nul, sizeof nul - 1, 0, &info) == LD_ERR_FORMAT && strstr(ld_ctx_error(ctx), "line 2"));
    ld_ctx_free(ctx);
}

static void count_file(void *user, const ld_file_info *f) {
    (void)f;
    ++*(int *)user;
}
static void job_status(void *user, const ld_job_row *j) {
    snprintf(user, 32, "%s", j->status);
}
static void job_attempts(void *user, const ld_job_row *j) {
    *(int64_t *)user = j->attempts;
}
static void count_event(void *user, const ld_job_event *e) {
    (void)e;
    ++*(int *)user;
}
static void count_job(void *user, const ld_job_row *j) {
    (void)j;
    ++*(int *)user;
}
static void model_base(void *user, const ld_model_row *m) {
    snprintf(user, 64, "%s/%s", m->base, m->kind);
}

TEST(registry_files_jobs_events) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    char path[] = "/tmp/ld_reg_jobs_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    ld_registry *r = NULL;
    CHECK(ld_registry_open(ctx, path, &r) == LD_OK);
    /* files: the same bytes twice are one record */
    ld_file_info f = {.id = "file-0123456789abcdef01234567", .filename = "a.jsonl", .purpose = "fine-tune",
                      .sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", .bytes = 10, .lines = 2};
    bool existed = true;
    CHECK(ld_registry_file_add(r, &f, &existed) == LD_OK && !existed);
    CHECK(ld_registry_file_add(r, &f, &existed) == LD_OK && existed);
    int n = 0;
    CHECK(ld_registry_file_list(r, "fine-tune", count_file, &n) == LD_OK && n == 1);
    n = 0;
    CHECK(ld_registry_file_list(r, "assistants", count_file, &n) == LD_OK && n == 0);
    CHECK(ld_registry_file_get(r, "file-nope", count_file, &n) == LD_ERR_NOT_FOUND);
    /* jobs: moves happen only from the states named */
    ld_job_row j = {.id = "ftjob-1", .model = "poet", .training_file = f.id, .method = "lora",
                    .hyperparameters = "{}", .status = "validating_files"};
    CHECK(ld_registry_job_add(r, &j) == LD_OK);
    CHECK(ld_registry_job_add(r, &j) == LD_ERR_IO); /* the id is taken */
    bool moved = true;
    CHECK(ld_registry_job_start(r, "ftjob-1", 42, &moved) == LD_OK && !moved); /* not queued yet */
    CHECK(ld_registry_job_set_status(r, "ftjob-1", "validating_files", "queued", NULL, &moved) == LD_OK && moved);
    CHECK(ld_registry_job_start(r, "ftjob-1", 42, &moved) == LD_OK && moved);
    char st[32];
    CHECK(ld_registry_job_get(r, "ftjob-1", job_status, st) == LD_OK && !strcmp(st, "running"));
    /* a restart puts it back in the queue; the second start counts a second attempt */
    CHECK(ld_registry_job_set_status(r, "ftjob-1", "running", "queued", NULL, &moved) == LD_OK && moved);
    CHECK(ld_registry_job_start(r, "ftjob-1", 43, &moved) == LD_OK && moved);
    int64_t attempts = 0;
    CHECK(ld_registry_job_get(r, "ftjob-1", job_attempts, &attempts) == LD_OK && attempts == 2);
    /* cancelled wins over a late success, and a final state stays */
    CHECK(ld_registry_job_set_status(r, "ftjob-1", "queued|running", "cancelled", NULL, &moved) == LD_OK && moved);
    CHECK(ld_registry_job_succeed(r, "ftjob-1", "poet:x", 100, &moved) == LD_OK && !moved);
    CHECK(ld_registry_job_set_status(r, "ftjob-1", "queued|running", "failed", "late", &moved) == LD_OK && !moved);
    CHECK(ld_registry_job_get(r, "ftjob-1", job_status, st) == LD_OK && !strcmp(st, "cancelled"));
    CHECK(ld_registry_job_get(r, "ftjob-2", job_status, st) == LD_ERR_NOT_FOUND);
    /* listing pages newest first */
    ld_job_row j2 = j;
    j2.id = "ftjob-2", j2.created = (double)time(NULL) + 10;
    CHECK(ld_registry_job_add(r, &j2) == LD_OK);
    n = 0;
    CHECK(ld_registry_job_list(r, NULL, 1, NULL, count_job, &n) == LD_OK && n == 1);
    n = 0;
    CHECK(ld_registry_job_list(r, "ftjob-2", 0, NULL, count_job, &n) == LD_OK && n == 1);
    n = 0;
    CHECK(ld_registry_job_list(r, NULL, 0, "cancelled", count_job, &n) == LD_OK && n == 1);
    /* events and checkpoints */
    for (int i = 0; i < 5; i++) CHECK(ld_registry_event_add(r, "ftjob-1", "info", "step", "{\"step\": 1}") == LD_OK);
    n = 0;
    CHECK(ld_registry_event_list(r, "ftjob-1", 0, 3, count_event, &n) == LD_OK && n == 3);
    CHECK(ld_registry_checkpoint_add(r, "ftjob-1", 10, "jobs/ftjob-1/checkpoints/step-0000010", 2.5) == LD_OK);
    /* models with lineage */
    ld_model_row m = {.id = "poet:ft-a", .base = "poet", .kind = "lora", .path = "ft-a", .training_file = f.id,
                      .job = "ftjob-1"};
    CHECK(ld_registry_model_add(r, &m) == LD_OK);
    char lineage[64];
    CHECK(ld_registry_model_get(r, "poet:ft-a", model_base, lineage) == LD_OK && !strcmp(lineage, "poet/lora"));
    CHECK(ld_registry_file_delete(r, f.id) == LD_OK);
    CHECK(ld_registry_file_delete(r, f.id) == LD_ERR_NOT_FOUND);
    ld_registry_close(r);
    unlink(path);
    char side[64];
    snprintf(side, sizeof side, "%s-wal", path), unlink(side);
    snprintf(side, sizeof side, "%s-shm", path), unlink(side);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

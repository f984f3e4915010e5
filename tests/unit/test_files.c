/* test_files.c — outputs written whole, under injected failures: an atomic file whose write
 * fails (the file size limit, RLIMIT_FSIZE, stands in for a full disk) or whose directory cannot
 * take it never leaves a half file under the final name nor touches the good file there; a
 * directory written with ld_dir_txn replaces an existing one whole or not at all (also when a
 * write inside it fails), leaves no temporary sibling behind, and removes those of dead
 * processes. */
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ld_test.h"

static ld_ctx *new_ctx(void) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    return ctx;
}

static char *tmpdir(const char *tag) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "/tmp/liandan-files-%s-%d-XXXXXX", tag, (int)getpid());
    return mkdtemp(p);
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* Entries of dir (other than . and ..) whose name contains `part`. */
static int count_entries(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, part)) n++;
    if (d) closedir(d);
    return n;
}

/* Runs with writes past `bytes` failing (EFBIG), as on a full disk. */
static struct rlimit limit_writes(size_t bytes) {
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = bytes;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    return old;
}

TEST(atomic_file_failed_write_keeps_the_old_file) {
    ld_ctx *ctx = new_ctx();
    char *dir = tmpdir("atomic"), path[512];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    static char big[300000];
    memset(big, 'n', sizeof big);
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, path, "good", 4), LD_OK, "");
    struct rlimit old = limit_writes(100000);
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, path, big, sizeof big), LD_ERR_IO, "write failed at byte");
    setrlimit(RLIMIT_FSIZE, &old);
    size_t n = 0;
    char *got = slurp(path, &n);
    CHECK(got && n == 4 && !memcmp(got, "good", 4));
    free(got);
    CHECK(count_entries(dir, ".tmp-") == 0);
    /* a directory that cannot take the file: the error names it */
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, "/proc/liandan-cannot-write", "x", 1), LD_ERR_IO,
                 "/proc/liandan-cannot-write: cannot create temporary file");
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, "/nonexistent-dir/x.gguf", "x", 1), LD_ERR_IO, "/nonexistent-dir/x.gguf");
    ld_remove_tree(ctx, dir);
    ld_ctx_free(ctx);
}

/* Writes a "model directory" (two files) through a transaction; `big` bytes in the second. */
static ld_status write_dir(ld_ctx *ctx, const char *dir, const char *tag, size_t big) {
    ld_dir_txn *tx = NULL;
    ld_status st = ld_dir_txn_begin(ctx, dir, &tx);
    if (st) return st;
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", ld_dir_txn_path(tx));
    st = ld_file_write_atomic(ctx, path, tag, strlen(tag));
    char *data = calloc(1, big + 1);
    memset(data, tag[0], big);
    snprintf(path, sizeof path, "%s/model.safetensors", ld_dir_txn_path(tx));
    if (!st) st = ld_file_write_atomic(ctx, path, data, big);
    free(data);
    if (st) {
        ld_dir_txn_abort(tx);
        return st;
    }
    return ld_dir_txn_commit(tx);
}

static bool dir_is(const char *dir, const char *tag, size_t big) {
    char path[600];
    size_t n = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *a = slurp(path, &n);
    bool ok = a && n == strlen(tag) && !memcmp(a, tag, n);
    free(a);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char *b = slurp(path, &n);
    ok = ok && b && n == big && (big == 0 || b[0] == tag[0]);
    free(b);
    return ok && count_entries(dir, "") == 2;
}

TEST(dir_txn_replaces_whole_or_not_at_all) {
    ld_ctx *ctx = new_ctx();
    char *root = tmpdir("txn"), dir[512];
    snprintf(dir, sizeof dir, "%s/model", root);
    CHECK_STATUS(ctx, write_dir(ctx, dir, "old", 1000), LD_OK, ""); /* a new directory */
    CHECK(dir_is(dir, "old", 1000));
    CHECK_STATUS(ctx, write_dir(ctx, dir, "new", 2000), LD_OK, ""); /* replaced whole */
    CHECK(dir_is(dir, "new", 2000));
    /* the disk fills while writing the big file: the complete old directory stays */
    struct rlimit old = limit_writes(100000);
    CHECK_STATUS(ctx, write_dir(ctx, dir, "bad", 300000), LD_ERR_IO, "write failed");
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(dir_is(dir, "new", 2000));
    CHECK(count_entries(root, "") == 1); /* no temporary sibling left */
    /* abort leaves nothing; a trailing slash names the same directory */
    ld_dir_txn *tx = NULL;
    char slash[520];
    snprintf(slash, sizeof slash, "%s/", dir);
    CHECK_STATUS(ctx, ld_dir_txn_begin(ctx, slash, &tx), LD_OK, "");
    CHECK(tx && !strncmp(ld_dir_txn_path(tx), dir, strlen(dir)) && strstr(ld_dir_txn_path(tx), "model.tmp-"));
    ld_dir_txn_abort(tx);
    CHECK(count_entries(root, "") == 1 && dir_is(dir, "new", 2000));
    /* a file where the directory should be is refused */
    char file[520];
    snprintf(file, sizeof file, "%s/plain", root);
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, file, "x", 1), LD_OK, "");
    CHECK_STATUS(ctx, ld_dir_txn_begin(ctx, file, &tx), LD_ERR_IO, "exists and is not a directory");
    ld_remove_tree(ctx, root);
    ld_ctx_free(ctx);
}

TEST(dir_txn_removes_temporaries_of_dead_processes) {
    ld_ctx *ctx = new_ctx();
    char *root = tmpdir("stale"), path[600];
    pid_t child = fork(); /* a pid that certainly no longer runs */
    if (child == 0) _exit(0);
    int status;
    waitpid(child, &status, 0);
    snprintf(path, sizeof path, "%s/model.tmp-%d-abcdef", root, (int)child);
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/model.tmp-%d-abcdef/config.json", root, (int)child);
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, path, "{}", 2), LD_OK, "");
    snprintf(path, sizeof path, "%s/model.tmp-%d-ghijkl", root, (int)getpid()); /* ours: kept */
    CHECK(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/model", root);
    CHECK_STATUS(ctx, write_dir(ctx, path, "x", 10), LD_OK, "");
    CHECK(count_entries(root, "model.tmp-") == 1 && count_entries(root, "-ghijkl") == 1);
    ld_remove_tree(ctx, root);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

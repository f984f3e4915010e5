/* tests/unit/test_registry.c — SHA-256 against FIPS 180-4's examples; the name and path
 * checks against a table of hostile names (.., absolute paths, NUL, symlinks out of the
 * directory); API keys: created, found only by their secret, scoped, revoked, never stored. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ld_test.h"
#include "liandan/registry.h"

TEST(sha256_known_answers) {
    char hex[65];
    ld_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    ld_sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ld_sha256_hex(two, strlen(two), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    /* a million 'a' fed in odd pieces */
    ld_sha256 s;
    uint8_t d[32];
    char a[1000];
    memset(a, 'a', sizeof a);
    ld_sha256_init(&s);
    for (size_t done = 0, k = 1; done < 1000000; k = k % 997 + 1) {
        size_t n = 1000000 - done < k ? 1000000 - done : k;
        ld_sha256_update(&s, a, n);
        done += n;
    }
    ld_sha256_final(&s, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
}

TEST(hostile_names_table) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct {
        const char *name;
        const char *msg; /* NULL: accepted */
    } names[] = {
        {"poet", NULL},           {"qwen2-0.5b.q4_k", NULL}, {"A_b-9.gguf", NULL},
        {"", "empty"},            {"..", "starts with '.'"}, {"../x", "starts with '.'"},
        {".hidden", "starts with '.'"}, {"/etc/passwd", "0x2f"}, {"a/b", "0x2f"},
        {"a\\b", "0x5c"},         {"a b", "0x20"},           {"a:b", "0x3a"},
        {"x\n", "0x0a"},          {"\xe5\xba\x8a", "0xe5"},   {"%2e%2e", "0x25"},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "longer than 128"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ld_status st = ld_name_check(ctx, "model", names[i].name);
        if (!names[i].msg) CHECK_MSG(st == LD_OK, "'%s' refused: %s", names[i].name, ld_ctx_error(ctx));
        else CHECK_MSG(st == LD_ERR_INVALID_ARG && strstr(ld_ctx_error(ctx), names[i].msg), "'%s': %s", names[i].name,
                       ld_ctx_error(ctx));
    }
    /* a NUL ends a C string: "ok\0../x" is just "ok" — the HTTP layer refuses \u0000 first */
    CHECK(ld_name_check(ctx, "model", "ok\0../x") == LD_OK);
    /* paths: inside, a symlink inside, a symlink out, a dangling one */
    char root[] = "/tmp/ld_reg_XXXXXX", path[4096], out[4096];
    CHECK(mkdtemp(root) != NULL);
    snprintf(path, sizeof path, "%s/models", root);
    mkdir(path, 0700);
    snprintf(out, sizeof out, "%s/models/real", root);
    mkdir(out, 0700);
    snprintf(out, sizeof out, "%s/outside", root);
    mkdir(out, 0700);
    char link[4096];
    snprintf(link, sizeof link, "%s/models/inside", root);
    CHECK(symlink("real", link) == 0);
    snprintf(link, sizeof link, "%s/models/escape", root);
    CHECK(symlink(out, link) == 0);
    snprintf(link, sizeof link, "%s/models/up", root);
    CHECK(symlink("..", link) == 0);
    snprintf(link, sizeof link, "%s/models/dangling", root);
    CHECK(symlink("/nonexistent/x", link) == 0);
    bool exists;
    char got[4096];
    CHECK(ld_path_inside(ctx, path, "real", got, sizeof got, &exists) == LD_OK && exists);
    CHECK(ld_path_inside(ctx, path, "inside", got, sizeof got, &exists) == LD_OK && exists);
    CHECK(ld_path_inside(ctx, path, "new", got, sizeof got, &exists) == LD_OK && !exists);
    CHECK_STATUS(ctx, ld_path_inside(ctx, path, "escape", got, sizeof got, &exists), LD_ERR_INVALID_ARG, "escapes");
    CHECK_STATUS(ctx, ld_path_inside(ctx, path, "up", got, sizeof got, &exists), LD_ERR_INVALID_ARG, "escapes");
    CHECK_STATUS(ctx, ld_path_inside(ctx, path, "dangling", got, sizeof got, &exists), LD_ERR_INVALID_ARG, "leads nowhere");
    CHECK_STATUS(ctx, ld_path_inside(ctx, path, "../outside", got, sizeof got, &exists), LD_ERR_INVALID_ARG, "'.'");
    CHECK_STATUS(ctx, ld_path_inside(ctx, "/nonexistent/dir", "x", got, sizeof got, &exists), LD_ERR_NOT_FOUND, NULL);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    ld_ctx_free(ctx);
}

typedef struct listed {
    int n, revoked;
    char prefix[16];
} listed;
static void on_key(void *user, const ld_key_info *k) {
    listed *l = user;
    l->n++, l->revoked += k->revoked;
    snprintf(l->prefix, sizeof l->prefix, "%s", k->prefix);
}

TEST(api_keys) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    char dir[] = "/tmp/ld_keys_XXXXXX", path[4096];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/registry.db", dir);
    ld_registry *r = NULL;
    CHECK(ld_registry_open(ctx, path, &r) == LD_OK);
    CHECK(ld_registry_key_count(r, true) == 0);
    char k1[64], k2[64];
    int64_t id1, id2;
    CHECK(ld_registry_key_create(r, "app", LD_SCOPE_INFERENCE, k1, sizeof k1, &id1) == LD_OK);
    CHECK(ld_registry_key_create(r, "trainer", LD_SCOPE_FINETUNE, k2, sizeof k2, &id2) == LD_OK);
    CHECK(strlen(k1) == 43 && !strncmp(k1, "ld-", 3) && strcmp(k1, k2));
    CHECK_STATUS(ctx, ld_registry_key_create(r, "x", "root", k1 + 50, 14, NULL), LD_ERR_INVALID_ARG, "scope");
    CHECK_STATUS(ctx, ld_registry_key_create(r, "", LD_SCOPE_ADMIN, k1 + 50, 14, NULL), LD_ERR_INVALID_ARG, "name");
    char scope[32];
    CHECK(ld_registry_key_check(r, k1, LD_SCOPE_INFERENCE, scope, sizeof scope) == LD_KEY_OK && !strcmp(scope, "inference"));
    CHECK(ld_registry_key_check(r, k1, LD_SCOPE_FINETUNE, scope, sizeof scope) == LD_KEY_WRONG_SCOPE);
    CHECK(ld_registry_key_check(r, k2, LD_SCOPE_INFERENCE, scope, sizeof scope) == LD_KEY_OK);
    CHECK(ld_registry_key_check(r, k2, LD_SCOPE_ADMIN, scope, sizeof scope) == LD_KEY_WRONG_SCOPE);
    char wrong[64];
    snprintf(wrong, sizeof wrong, "%s", k1);
    wrong[10] = wrong[10] == 'a' ? 'b' : 'a';
    CHECK(ld_registry_key_check(r, wrong, LD_SCOPE_INFERENCE, scope, sizeof scope) == LD_KEY_INVALID);
    CHECK(ld_registry_key_check(r, "", LD_SCOPE_INFERENCE, scope, sizeof scope) == LD_KEY_INVALID);
    listed l = {0};
    CHECK(ld_registry_key_list(r, on_key, &l) == LD_OK && l.n == 2 && l.revoked == 0 && !strncmp(l.prefix, k2, 10));
    CHECK(ld_registry_key_revoke(r, "app") == LD_OK);
    CHECK_STATUS(ctx, ld_registry_key_revoke(r, "app"), LD_ERR_NOT_FOUND, "no active key");
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)id2);
    CHECK(ld_registry_key_revoke(r, id) == LD_OK);
    CHECK(ld_registry_key_check(r, k1, LD_SCOPE_INFERENCE, scope, sizeof scope) == LD_KEY_INVALID);
    CHECK(ld_registry_key_count(r, false) == 0 && ld_registry_key_count(r, true) == 2);
    ld_registry_close(r);
    /* the secret is nowhere in the file */
    FILE *f = fopen(path, "rb");
    char *buf = calloc(1, 1 << 20);
    size_t n = f ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    bool leaked = false;
    for (size_t i = 0; i + 43 <= n; i++) leaked |= !memcmp(buf + i, k1 + 10, 30) || !memcmp(buf + i, k2 + 10, 30);
    CHECK(n > 0 && !leaked);
    free(buf);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

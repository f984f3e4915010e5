/* test_json.c — JSON accessors: values, ranges, paths in messages, syntax errors with line and
 * column, duplicate keys, unknown-key hook; file helpers: read caps, atomic writes, mmap. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json.h"
#include "ld_test.h"

static ld_ctx *new_ctx(void) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    return ctx;
}

static const char *CONFIG =
    "{\"hidden_size\": 768, \"bad\": \"abc\", \"eps\": 1e-5, \"tie\": true, \"name\": \"gpt2\",\n"
    " \"frac\": 2.5, \"neg\": -3, \"vision_config\": {\"hidden_size\": \"x\", \"layers\": [1, 2, {\"k\": 0}]},\n"
    " \"nothing\": null, \"big\": 1e300}";

TEST(json_typed_getters) {
    ld_ctx *ctx = new_ctx();
    cJSON *root = NULL;
    CHECK_STATUS(ctx, ld_json_parse(ctx, "config.json", CONFIG, strlen(CONFIG), &root), LD_OK, "");
    ld_json_ref r = ld_json_root("config.json", root);
    int64_t v = -1;
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "hidden_size", true, 1, INT64_MAX, &v), LD_OK, "");
    CHECK(v == 768);
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "bad", true, 1, INT64_MAX, &v), LD_ERR_FORMAT,
                 "config.json: key 'bad': expected a positive integer, got \"abc\"");
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "frac", true, 1, INT64_MAX, &v), LD_ERR_FORMAT, "got 2.5");
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "neg", true, 0, INT64_MAX, &v), LD_ERR_FORMAT, "non-negative integer, got -3");
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "big", true, INT64_MIN, INT64_MAX, &v), LD_ERR_FORMAT, "expected an integer");
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "hidden_size", true, 1, 512, &v), LD_ERR_FORMAT, "an integer in 1..512, got 768");
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "missing", true, 1, 5, &v), LD_ERR_FORMAT, "key 'missing': missing");
    v = 42;
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "missing", false, 1, 5, &v), LD_OK, "");
    CHECK(v == 42);
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "nothing", false, 1, 5, &v), LD_OK, "");
    CHECK(v == 42);
    double d = 0;
    CHECK_STATUS(ctx, ld_json_get_float(ctx, &r, "eps", true, 0, 1, &d), LD_OK, "");
    CHECK(d == 1e-5);
    CHECK_STATUS(ctx, ld_json_get_float(ctx, &r, "name", true, 0, 1, &d), LD_ERR_FORMAT, "expected a number");
    bool b = false;
    CHECK_STATUS(ctx, ld_json_get_bool(ctx, &r, "tie", true, &b), LD_OK, "");
    CHECK(b);
    CHECK_STATUS(ctx, ld_json_get_bool(ctx, &r, "hidden_size", true, &b), LD_ERR_FORMAT, "expected true or false, got 768");
    const char *s = NULL;
    CHECK_STATUS(ctx, ld_json_get_string(ctx, &r, "name", true, &s), LD_OK, "");
    CHECK(s && !strcmp(s, "gpt2"));
    CHECK_STATUS(ctx, ld_json_get_string(ctx, &r, "tie", true, &s), LD_ERR_FORMAT, "expected a string, got true");
    ld_json_ref vc, layers, item;
    CHECK_STATUS(ctx, ld_json_get_object(ctx, &r, "vision_config", true, &vc), LD_OK, "");
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &vc, "hidden_size", true, 1, INT64_MAX, &v), LD_ERR_FORMAT,
                 "config.json: key 'vision_config.hidden_size': expected a positive integer, got \"x\"");
    size_t n = 0;
    CHECK_STATUS(ctx, ld_json_get_array(ctx, &vc, "layers", true, &layers, &n), LD_OK, "");
    CHECK(n == 3);
    CHECK_STATUS(ctx, ld_json_array_item(ctx, &layers, 2, &item), LD_OK, "");
    CHECK_STATUS(ctx, ld_json_get_bool(ctx, &item, "k", true, &b), LD_ERR_FORMAT, "key 'vision_config.layers[2].k'");
    CHECK_STATUS(ctx, ld_json_array_item(ctx, &layers, 3, &item), LD_ERR_FORMAT, "has no element 3");
    CHECK_STATUS(ctx, ld_json_array_item(ctx, &layers, 0, &item), LD_OK, "");
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &item, "x", true, 0, 1, &v), LD_ERR_FORMAT, "'vision_config.layers[0]': expected an object, got 1");
    CHECK_STATUS(ctx, ld_json_get_object(ctx, &r, "name", true, &vc), LD_ERR_FORMAT, "expected an object, got \"gpt2\"");
    ld_json_free(root);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(json_syntax_errors) {
    ld_ctx *ctx = new_ctx();
    static const struct { const char *text; size_t len; const char *msg; } bad[] = {
        {"{\"a\": 1,\n \"b\": }", 0, "config.json: line 2, column 7"},
        {"{\"a\": 1", 0, "ends unexpectedly"},
        {"", 0, "ends unexpectedly"},
        {"{} x", 0, "line 1, column 4"},
        {"{\"a\":1}\0{", 9, "NUL byte"},
        {"{\"a\": 1, \"a\": 2}", 0, "key 'a': appears more than once"},
        {"{\"o\": {\"x\": [{\"k\":1, \"k\":2}]}}", 0, "key 'o.x[0].k': appears more than once"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *root = (cJSON *)1;
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].text);
        CHECK_STATUS(ctx, ld_json_parse(ctx, "config.json", bad[i].text, len, &root), LD_ERR_FORMAT, bad[i].msg);
        CHECK(root == NULL);
    }
    cJSON *root = NULL;
    CHECK_STATUS(ctx, ld_json_parse(ctx, "a.json", "[1]", 3, &root), LD_OK, "");
    ld_json_ref r = ld_json_root("a.json", root);
    int64_t v;
    CHECK_STATUS(ctx, ld_json_get_int(ctx, &r, "x", true, 0, 1, &v), LD_ERR_FORMAT, "a.json: expected a JSON object at the top level, got an array");
    ld_json_free(root);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

static int n_unknown_;
static char last_unknown_[64];
static void on_unknown(void *user, const char *doc, const char *path, const char *key) {
    (void)user; (void)doc; (void)path;
    n_unknown_++;
    snprintf(last_unknown_, sizeof last_unknown_, "%s", key);
}
static char logged_[512];
static void log_sink(void *user, ld_log_level level, const char *msg) {
    (void)user; (void)level;
    snprintf(logged_, sizeof logged_, "%s", msg);
}

TEST(json_unknown_keys) {
    ld_ctx_params p = ld_ctx_default_params();
    p.log = log_sink;
    ld_ctx *ctx = NULL;
    ld_ctx_new(&p, &ctx);
    const char *t = "{\"a\": 1, \"b\": 2, \"zz\": 3}";
    cJSON *root = NULL;
    CHECK_STATUS(ctx, ld_json_parse(ctx, "c.json", t, strlen(t), &root), LD_OK, "");
    ld_json_ref r = ld_json_root("c.json", root);
    static const char *const known[] = {"a", "b"};
    CHECK(ld_json_check_keys(ctx, &r, known, 2, on_unknown, NULL) == 1);
    CHECK(n_unknown_ == 1 && !strcmp(last_unknown_, "zz"));
    CHECK(ld_json_check_keys(ctx, &r, known, 2, NULL, NULL) == 1);
    CHECK(strstr(logged_, "c.json: unknown key 'zz' (ignored)") != NULL);
    CHECK(ld_json_check_keys(ctx, &r, known, 1, NULL, NULL) == 2);
    ld_json_free(root);
    ld_ctx_free(ctx);
}

TEST(file_atomic_write_read_map) {
    ld_ctx *ctx = new_ctx();
    char dir[] = "/tmp/ld_test_json_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/f.json", dir);
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, path, "{\"x\": 5}", 8), LD_OK, "");
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, path, "{\"x\": 6}", 8), LD_OK, ""); /* replaces */
    char *buf = NULL;
    size_t n = 0;
    CHECK_STATUS(ctx, ld_file_read(ctx, path, 100, &buf, &n), LD_OK, "");
    CHECK(n == 8 && buf && !strcmp(buf, "{\"x\": 6}"));
    ld_free(ctx, buf);
    CHECK_STATUS(ctx, ld_file_read(ctx, path, 7, &buf, &n), LD_ERR_LIMIT, "larger than the limit of 7 bytes");
    cJSON *root = NULL;
    CHECK_STATUS(ctx, ld_json_load(ctx, path, 0, &root), LD_OK, "");
    CHECK(cJSON_GetObjectItem(root, "x")->valueint == 6);
    ld_json_free(root);
    ld_mapping m;
    CHECK_STATUS(ctx, ld_file_map(ctx, path, &m), LD_OK, "");
    CHECK(m.size == 8 && !memcmp(m.data, "{\"x\": 6}", 8));
    ld_file_unmap(&m);
    CHECK(m.data == NULL);
    /* an aborted write leaves the old file and no temporary */
    ld_atomic_file *f = NULL;
    CHECK_STATUS(ctx, ld_atomic_file_open(ctx, path, &f), LD_OK, "");
    CHECK_STATUS(ctx, ld_atomic_file_write(f, "garbage", 7), LD_OK, "");
    ld_atomic_file_abort(f);
    CHECK_STATUS(ctx, ld_file_read(ctx, path, 100, &buf, &n), LD_OK, "");
    CHECK(!strcmp(buf, "{\"x\": 6}"));
    ld_free(ctx, buf);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    CHECK(system(cmd) == 0);
    /* empty file maps */
    char empty[256];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    CHECK_STATUS(ctx, ld_file_write_atomic(ctx, empty, "", 0), LD_OK, "");
    CHECK_STATUS(ctx, ld_file_map(ctx, empty, &m), LD_OK, "");
    CHECK(m.size == 0 && m.data != NULL);
    ld_file_unmap(&m);
    CHECK_STATUS(ctx, ld_file_map(ctx, "/nonexistent/x", &m), LD_ERR_NOT_FOUND, "/nonexistent/x: cannot open");
    CHECK_STATUS(ctx, ld_file_map(ctx, dir, &m), LD_ERR_IO, "not a regular file");
    CHECK_STATUS(ctx, ld_json_load(ctx, "/nonexistent/c.json", 0, &root), LD_ERR_NOT_FOUND, "c.json");
    unlink(path);
    unlink(empty);
    rmdir(dir);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

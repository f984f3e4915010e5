/* registry/registry.c — the SQLite catalogue (liandan/registry.h): schema, opening in WAL
 * mode, and API keys (random secrets, stored only as SHA-256 hashes). */
#include "registry/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "liandan/io.h"

static const char *const schema[] = {
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '1')",
    "CREATE TABLE IF NOT EXISTS api_keys(id INTEGER PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, "
    "hash TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, created REAL NOT NULL, last_used REAL, revoked REAL)",
    /* uploaded files, content-addressed: the id is derived from the sha256 of the bytes */
    "CREATE TABLE IF NOT EXISTS files(id TEXT PRIMARY KEY, filename TEXT NOT NULL, purpose TEXT NOT NULL, "
    "bytes INTEGER NOT NULL, sha256 TEXT NOT NULL, lines INTEGER NOT NULL, created REAL NOT NULL)",
    /* models made here (adapters, fine-tuned copies) and their lineage */
    "CREATE TABLE IF NOT EXISTS models(id TEXT PRIMARY KEY, base TEXT, kind TEXT NOT NULL, path TEXT NOT NULL, "
    "training_file TEXT, training_sha256 TEXT, hyperparameters TEXT, eval TEXT, job TEXT, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jobs(id TEXT PRIMARY KEY, model TEXT NOT NULL, training_file TEXT NOT NULL, "
    "validation_file TEXT, method TEXT NOT NULL, hyperparameters TEXT NOT NULL, suffix TEXT, status TEXT NOT NULL, "
    "fine_tuned_model TEXT, error TEXT, created REAL NOT NULL, started REAL, finished REAL, trained_tokens INTEGER, "
    "worker_pid INTEGER, attempts INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS job_events(id INTEGER PRIMARY KEY, job TEXT NOT NULL REFERENCES jobs(id), "
    "created REAL NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, data TEXT)",
    "CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events(job, id)",
    "CREATE TABLE IF NOT EXISTS job_checkpoints(id INTEGER PRIMARY KEY, job TEXT NOT NULL REFERENCES jobs(id), "
    "step INTEGER NOT NULL, path TEXT NOT NULL, train_loss REAL, created REAL NOT NULL)",
};

double ld_registry_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *ld_registry_error(const ld_registry *r) {
    return r ? sqlite3_errmsg(r->db) : "no registry";
}

ld_status ld_registry_fail(ld_registry *r, const char *what) {
    return ld_error(r->ctx, LD_ERR_IO, "registry %s: %s: %s", r->path, what, sqlite3_errmsg(r->db));
}

ld_status ld_registry_open(ld_ctx *ctx, const char *path, ld_registry **out) {
    *out = NULL;
    ld_registry *r = calloc(1, sizeof *r);
    if (!r) return ld_error(ctx, LD_ERR_NOMEM, "registry: out of memory");
    r->ctx = ctx;
    snprintf(r->path, sizeof r->path, "%s", path);
    int rc = sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "registry %s: cannot open: %s", path,
                                r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
        sqlite3_close(r->db);
        free(r);
        return st;
    }
    sqlite3_busy_timeout(r->db, 5000);
    for (size_t i = 0; i < sizeof schema / sizeof schema[0]; i++)
        if (sqlite3_exec(r->db, schema[i], NULL, NULL, NULL) != SQLITE_OK) {
            ld_status st = ld_error(ctx, LD_ERR_IO, "registry %s: %s", path, sqlite3_errmsg(r->db));
            sqlite3_close(r->db);
            free(r);
            return st;
        }
    *out = r;
    return LD_OK;
}

void ld_registry_close(ld_registry *r) {
    if (!r) return;
    sqlite3_close(r->db);
    free(r);
}

/* ---- API keys ----------------------------------------------------------------------------- */

static const char *const scopes[] = {LD_SCOPE_INFERENCE, LD_SCOPE_FINETUNE, LD_SCOPE_ADMIN};

static int scope_rank(const char *s) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, scopes[i])) return i;
    return -1;
}

bool ld_scope_allows(const char *have, const char *need) {
    int h = scope_rank(have), n = scope_rank(need);
    return h >= 0 && n >= 0 && h >= n;
}

ld_status ld_registry_key_create(ld_registry *r, const char *name, const char *scope, char *key, size_t cap,
                                 int64_t *id) {
    if (!name || !name[0] || strlen(name) > 64)
        return ld_error(r->ctx, LD_ERR_INVALID_ARG, "key name must be 1..64 characters");
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return ld_error(r->ctx, LD_ERR_INVALID_ARG, "key name has a control character");
    if (scope_rank(scope) < 0)
        return ld_error(r->ctx, LD_ERR_INVALID_ARG, "key scope '%s': use inference, fine-tune or admin",
                        scope ? scope : "");
    if (cap < 48) return ld_error(r->ctx, LD_ERR_INVALID_ARG, "key buffer too small");
    uint8_t rnd[20];
    size_t got = 0;
    while (got < sizeof rnd) {
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0 && errno != EINTR) return ld_error(r->ctx, LD_ERR_IO, "no random numbers: %s", strerror(errno));
        if (n > 0) got += (size_t)n;
    }
    strcpy(key, "ld-");
    for (size_t i = 0; i < sizeof rnd; i++) snprintf(key + 3 + 2 * i, 3, "%02x", rnd[i]);
    char hash[65], prefix[16];
    ld_sha256_hex(key, strlen(key), hash);
    snprintf(prefix, sizeof prefix, "%.10s", key);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(r->db, "INSERT INTO api_keys(name, prefix, hash, scope, created) VALUES(?,?,?,?,?)", -1, &q,
                           NULL) != SQLITE_OK)
        return ld_registry_fail(r, "adding a key");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 4, scope, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(q, 5, ld_registry_now());
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return ld_registry_fail(r, "adding a key");
    if (id) *id = sqlite3_last_insert_rowid(r->db);
    return LD_OK;
}

ld_status ld_registry_key_list(ld_registry *r, void (*fn)(void *user, const ld_key_info *k), void *user) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(r->db, "SELECT id, name, prefix, scope, created, last_used, revoked FROM api_keys ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK)
        return ld_registry_fail(r, "listing keys");
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        ld_key_info k = {.id = sqlite3_column_int64(q, 0), .name = (const char *)sqlite3_column_text(q, 1),
                         .prefix = (const char *)sqlite3_column_text(q, 2), .scope = (const char *)sqlite3_column_text(q, 3),
                         .created = sqlite3_column_double(q, 4), .last_used = sqlite3_column_double(q, 5),
                         .revoked = sqlite3_column_type(q, 6) != SQLITE_NULL};
        fn(user, &k);
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? LD_OK : ld_registry_fail(r, "listing keys");
}

ld_status ld_registry_key_revoke(ld_registry *r, const char *id_or_name) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(r->db, "UPDATE api_keys SET revoked = ? WHERE revoked IS NULL AND (CAST(id AS TEXT) = ? OR name = ?)",
                           -1, &q, NULL) != SQLITE_OK)
        return ld_registry_fail(r, "revoking a key");
    sqlite3_bind_double(q, 1, ld_registry_now());
    sqlite3_bind_text(q, 2, id_or_name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 3, id_or_name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return ld_registry_fail(r, "revoking a key");
    if (sqlite3_changes(r->db) == 0) return ld_error(r->ctx, LD_ERR_NOT_FOUND, "no active key with id or name '%s'", id_or_name);
    return LD_OK;
}

int64_t ld_registry_key_count(ld_registry *r, bool revoked) {
    sqlite3_stmt *q;
    int64_t n = -1;
    const char *sql = revoked ? "SELECT count(*) FROM api_keys" : "SELECT count(*) FROM api_keys WHERE revoked IS NULL";
    if (!r || sqlite3_prepare_v2(r->db, sql, -1, &q, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

ld_key_check ld_registry_key_check(ld_registry *r, const char *key, const char *scope, char *granted, size_t cap) {
    if (granted && cap) granted[0] = 0;
    if (!r || !key || strlen(key) > 256) return LD_KEY_INVALID;
    char hash[65];
    ld_sha256_hex(key, strlen(key), hash);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(r->db, "SELECT id, scope FROM api_keys WHERE hash = ? AND revoked IS NULL", -1, &q, NULL) !=
        SQLITE_OK)
        return LD_KEY_INVALID;
    sqlite3_bind_text(q, 1, hash, -1, SQLITE_TRANSIENT);
    ld_key_check res = LD_KEY_INVALID;
    int64_t id = 0;
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *have = (const char *)sqlite3_column_text(q, 1);
        id = sqlite3_column_int64(q, 0);
        if (granted) snprintf(granted, cap, "%s", have ? have : "");
        res = ld_scope_allows(have, scope) ? LD_KEY_OK : LD_KEY_WRONG_SCOPE;
    }
    sqlite3_finalize(q);
    if (res == LD_KEY_OK && sqlite3_prepare_v2(r->db, "UPDATE api_keys SET last_used = ? WHERE id = ?", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_double(q, 1, ld_registry_now());
        sqlite3_bind_int64(q, 2, id);
        sqlite3_step(q);
        sqlite3_finalize(q);
    }
    return res;
}

/* registry/registry_jobs.c — the fine-tuning service's tables (liandan/registry.h): uploaded
 * files, jobs and their status moves, job events and checkpoints, and the models jobs made
 * with their lineage. Rows reach callers through callbacks with borrowed strings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry/registry.h"

/* ---- small helpers ---------------------------------------------------------------------------- */

typedef void (*any_fn)(void); /* a row callback of any type, cast back by its row function */

static ld_status prepare(ld_registry *r, const char *sql, sqlite3_stmt **q, const char *what) {
    return sqlite3_prepare_v2(r->db, sql, -1, q, NULL) == SQLITE_OK ? LD_OK : ld_registry_fail(r, what);
}

static void bind_text(sqlite3_stmt *q, int i, const char *s) {
    if (s) sqlite3_bind_text(q, i, s, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(q, i);
}

static const char *col_text(sqlite3_stmt *q, int i) {
    return (const char *)sqlite3_column_text(q, i);
}

/* Steps a statement that changes rows; *changed (may be NULL) = rows changed > 0. */
static ld_status run_change(ld_registry *r, sqlite3_stmt *q, const char *what, bool *changed) {
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return ld_registry_fail(r, what);
    if (changed) *changed = sqlite3_changes(r->db) > 0;
    return LD_OK;
}

/* Steps a query, calling row(q, fn, user) for each row; LD_ERR_NOT_FOUND when `one` and none. */
static ld_status run_rows(ld_registry *r, sqlite3_stmt *q, const char *what, bool one, const char *id,
                          void (*row)(sqlite3_stmt *q, any_fn fn, void *user), any_fn fn, void *user) {
    int rc, n = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) row(q, fn, user), n++;
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) return ld_registry_fail(r, what);
    if (one && !n) return ld_error(r->ctx, LD_ERR_NOT_FOUND, "no %s '%s'", what, id);
    return LD_OK;
}

/* ---- files ------------------------------------------------------------------------------------- */

#define FILE_COLS "id, filename, purpose, bytes, sha256, lines, created"

static void file_row(sqlite3_stmt *q, any_fn fn, void *user) {
    ld_file_info f = {.id = col_text(q, 0), .filename = col_text(q, 1), .purpose = col_text(q, 2),
                      .bytes = sqlite3_column_int64(q, 3), .sha256 = col_text(q, 4), .lines = sqlite3_column_int64(q, 5),
                      .created = sqlite3_column_double(q, 6)};
    ((void (*)(void *, const ld_file_info *))fn)(user, &f);
}

ld_status ld_registry_file_add(ld_registry *r, const ld_file_info *f, bool *existed) {
    sqlite3_stmt *q;
    if (prepare(r, "INSERT OR IGNORE INTO files(" FILE_COLS ") VALUES(?,?,?,?,?,?,?)", &q, "adding a file")) return LD_ERR_IO;
    bind_text(q, 1, f->id), bind_text(q, 2, f->filename), bind_text(q, 3, f->purpose);
    sqlite3_bind_int64(q, 4, f->bytes), bind_text(q, 5, f->sha256), sqlite3_bind_int64(q, 6, f->lines);
    sqlite3_bind_double(q, 7, f->created > 0 ? f->created : ld_registry_now());
    bool added = false;
    ld_status st = run_change(r, q, "adding a file", &added);
    if (existed) *existed = !added;
    return st;
}

ld_status ld_registry_file_get(ld_registry *r, const char *id, void (*fn)(void *user, const ld_file_info *f), void *user) {
    sqlite3_stmt *q;
    if (prepare(r, "SELECT " FILE_COLS " FROM files WHERE id = ?", &q, "reading a file")) return LD_ERR_IO;
    bind_text(q, 1, id);
    return run_rows(r, q, "file", true, id, file_row, (any_fn)fn, user);
}

ld_status ld_registry_file_list(ld_registry *r, const char *purpose, void (*fn)(void *user, const ld_file_info *f),
                                void *user) {
    sqlite3_stmt *q;
    if (prepare(r, "SELECT " FILE_COLS " FROM files WHERE ?1 IS NULL OR purpose = ?1 ORDER BY created DESC, id", &q,
                "listing files"))
        return LD_ERR_IO;
    bind_text(q, 1, purpose);
    return run_rows(r, q, "files", false, NULL, file_row, (any_fn)fn, user);
}

ld_status ld_registry_file_delete(ld_registry *r, const char *id) {
    sqlite3_stmt *q;
    if (prepare(r, "DELETE FROM files WHERE id = ?", &q, "deleting a file")) return LD_ERR_IO;
    bind_text(q, 1, id);
    bool gone = false;
    ld_status st = run_change(r, q, "deleting a file", &gone);
    if (!st && !gone) return ld_error(r->ctx, LD_ERR_NOT_FOUND, "no file '%s'", id);
    return st;
}

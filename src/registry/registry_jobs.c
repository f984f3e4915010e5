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

/* ---- jobs ---------------------------------------------------------------------------------------- */

#define JOB_COLS                                                                                                  \
    "id, model, training_file, validation_file, method, hyperparameters, suffix, status, fine_tuned_model, error, " \
    "created, started, finished, trained_tokens, worker_pid, attempts"

static void job_row(sqlite3_stmt *q, any_fn fn, void *user) {
    ld_job_row j = {.id = col_text(q, 0), .model = col_text(q, 1), .training_file = col_text(q, 2),
                    .validation_file = col_text(q, 3), .method = col_text(q, 4), .hyperparameters = col_text(q, 5),
                    .suffix = col_text(q, 6), .status = col_text(q, 7), .fine_tuned_model = col_text(q, 8),
                    .error = col_text(q, 9), .created = sqlite3_column_double(q, 10),
                    .started = sqlite3_column_double(q, 11), .finished = sqlite3_column_double(q, 12),
                    .trained_tokens = sqlite3_column_int64(q, 13), .worker_pid = sqlite3_column_int64(q, 14),
                    .attempts = sqlite3_column_int64(q, 15)};
    ((void (*)(void *, const ld_job_row *))fn)(user, &j);
}

ld_status ld_registry_job_add(ld_registry *r, const ld_job_row *j) {
    if (!j->id || !j->model || !j->training_file || !j->method || !j->hyperparameters || !j->status)
        return ld_error(r->ctx, LD_ERR_INVALID_ARG, "registry: a job needs id, model, training_file, method, "
                                                   "hyperparameters and status");
    sqlite3_stmt *q;
    if (prepare(r, "INSERT INTO jobs(id, model, training_file, validation_file, method, hyperparameters, suffix, status, "
                   "created) VALUES(?,?,?,?,?,?,?,?,?)",
                &q, "adding a job"))
        return LD_ERR_IO;
    bind_text(q, 1, j->id), bind_text(q, 2, j->model), bind_text(q, 3, j->training_file);
    bind_text(q, 4, j->validation_file), bind_text(q, 5, j->method), bind_text(q, 6, j->hyperparameters);
    bind_text(q, 7, j->suffix), bind_text(q, 8, j->status);
    sqlite3_bind_double(q, 9, j->created > 0 ? j->created : ld_registry_now());
    return run_change(r, q, "adding a job", NULL);
}

ld_status ld_registry_job_get(ld_registry *r, const char *id, void (*fn)(void *user, const ld_job_row *j), void *user) {
    sqlite3_stmt *q;
    if (prepare(r, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", &q, "reading a job")) return LD_ERR_IO;
    bind_text(q, 1, id);
    return run_rows(r, q, "fine-tuning job", true, id, job_row, (any_fn)fn, user);
}

ld_status ld_registry_job_list(ld_registry *r, const char *after, int64_t limit, const char *status,
                               void (*fn)(void *user, const ld_job_row *j), void *user) {
    sqlite3_stmt *q;
    /* newest first by (created, rowid); `after` pages on from that job */
    if (prepare(r, "SELECT " JOB_COLS " FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR "
                   "(created, rowid) < (SELECT created, rowid FROM jobs WHERE id = ?2)) ORDER BY created DESC, rowid DESC "
                   "LIMIT ?3",
                &q, "listing jobs"))
        return LD_ERR_IO;
    bind_text(q, 1, status), bind_text(q, 2, after), sqlite3_bind_int64(q, 3, limit > 0 ? limit : -1);
    return run_rows(r, q, "jobs", false, NULL, job_row, (any_fn)fn, user);
}

static bool is_final(const char *status) {
    return !strcmp(status, "succeeded") || !strcmp(status, "failed") || !strcmp(status, "cancelled");
}

ld_status ld_registry_job_set_status(ld_registry *r, const char *id, const char *from, const char *to,
                                     const char *error, bool *changed) {
    sqlite3_stmt *q;
    /* from: '|'-separated; matched as '|' || status || '|' inside '|' || from || '|' */
    if (prepare(r, "UPDATE jobs SET status = ?2, error = coalesce(?3, error), finished = CASE WHEN ?4 THEN ?5 ELSE "
                   "finished END WHERE id = ?1 AND (?6 IS NULL OR instr('|' || ?6 || '|', '|' || status || '|') > 0)",
                &q, "updating a job"))
        return LD_ERR_IO;
    bind_text(q, 1, id), bind_text(q, 2, to), bind_text(q, 3, error);
    sqlite3_bind_int(q, 4, is_final(to)), sqlite3_bind_double(q, 5, ld_registry_now()), bind_text(q, 6, from);
    return run_change(r, q, "updating a job", changed);
}

ld_status ld_registry_job_start(ld_registry *r, const char *id, int64_t pid, bool *changed) {
    sqlite3_stmt *q;
    if (prepare(r, "UPDATE jobs SET status = 'running', started = coalesce(started, ?2), worker_pid = ?3, "
                   "attempts = attempts + 1 WHERE id = ?1 AND status = 'queued'",
                &q, "starting a job"))
        return LD_ERR_IO;
    bind_text(q, 1, id), sqlite3_bind_double(q, 2, ld_registry_now()), sqlite3_bind_int64(q, 3, pid);
    return run_change(r, q, "starting a job", changed);
}

ld_status ld_registry_job_set_pid(ld_registry *r, const char *id, int64_t pid) {
    sqlite3_stmt *q;
    if (prepare(r, "UPDATE jobs SET worker_pid = ?2 WHERE id = ?1", &q, "updating a job")) return LD_ERR_IO;
    bind_text(q, 1, id), sqlite3_bind_int64(q, 2, pid);
    return run_change(r, q, "updating a job", NULL);
}

ld_status ld_registry_job_succeed(ld_registry *r, const char *id, const char *fine_tuned_model, int64_t trained_tokens,
                                  bool *changed) {
    sqlite3_stmt *q;
    if (prepare(r, "UPDATE jobs SET status = 'succeeded', fine_tuned_model = ?2, trained_tokens = ?3, finished = ?4 "
                   "WHERE id = ?1 AND status = 'running'",
                &q, "finishing a job"))
        return LD_ERR_IO;
    bind_text(q, 1, id), bind_text(q, 2, fine_tuned_model), sqlite3_bind_int64(q, 3, trained_tokens);
    sqlite3_bind_double(q, 4, ld_registry_now());
    return run_change(r, q, "finishing a job", changed);
}

/* ---- events and checkpoints ------------------------------------------------------------------------- */

static void event_row(sqlite3_stmt *q, any_fn fn, void *user) {
    ld_job_event e = {.id = sqlite3_column_int64(q, 0), .job = col_text(q, 1), .created = sqlite3_column_double(q, 2),
                      .level = col_text(q, 3), .message = col_text(q, 4), .data = col_text(q, 5)};
    ((void (*)(void *, const ld_job_event *))fn)(user, &e);
}

ld_status ld_registry_event_add(ld_registry *r, const char *job, const char *level, const char *message,
                                const char *data) {
    sqlite3_stmt *q;
    if (prepare(r, "INSERT INTO job_events(job, created, level, message, data) VALUES(?,?,?,?,?)", &q, "adding an event"))
        return LD_ERR_IO;
    bind_text(q, 1, job), sqlite3_bind_double(q, 2, ld_registry_now()), bind_text(q, 3, level ? level : "info");
    bind_text(q, 4, message ? message : ""), bind_text(q, 5, data);
    return run_change(r, q, "adding an event", NULL);
}

ld_status ld_registry_event_list(ld_registry *r, const char *job, int64_t before, int64_t limit,
                                 void (*fn)(void *user, const ld_job_event *e), void *user) {
    sqlite3_stmt *q;
    if (prepare(r, "SELECT id, job, created, level, message, data FROM job_events WHERE job = ?1 AND (?2 = 0 OR id < ?2) "
                   "ORDER BY id DESC LIMIT ?3",
                &q, "listing events"))
        return LD_ERR_IO;
    bind_text(q, 1, job), sqlite3_bind_int64(q, 2, before), sqlite3_bind_int64(q, 3, limit > 0 ? limit : -1);
    return run_rows(r, q, "events", false, NULL, event_row, (any_fn)fn, user);
}

static void checkpoint_row(sqlite3_stmt *q, any_fn fn, void *user) {
    ld_job_checkpoint c = {.id = sqlite3_column_int64(q, 0), .job = col_text(q, 1), .step = sqlite3_column_int64(q, 2),
                           .path = col_text(q, 3), .train_loss = sqlite3_column_double(q, 4),
                           .created = sqlite3_column_double(q, 5)};
    ((void (*)(void *, const ld_job_checkpoint *))fn)(user, &c);
}

ld_status ld_registry_checkpoint_add(ld_registry *r, const char *job, int64_t step, const char *path,
                                     double train_loss) {
    sqlite3_stmt *q;
    if (prepare(r, "INSERT INTO job_checkpoints(job, step, path, train_loss, created) VALUES(?,?,?,?,?)", &q,
                "adding a checkpoint"))
        return LD_ERR_IO;
    bind_text(q, 1, job), sqlite3_bind_int64(q, 2, step), bind_text(q, 3, path);
    sqlite3_bind_double(q, 4, train_loss), sqlite3_bind_double(q, 5, ld_registry_now());
    return run_change(r, q, "adding a checkpoint", NULL);
}

ld_status ld_registry_checkpoint_list(ld_registry *r, const char *job, void (*fn)(void *user, const ld_job_checkpoint *c),
                                      void *user) {
    sqlite3_stmt *q;
    if (prepare(r, "SELECT id, job, step, path, train_loss, created FROM job_checkpoints WHERE job = ? ORDER BY id DESC",
                &q, "listing checkpoints"))
        return LD_ERR_IO;
    bind_text(q, 1, job);
    return run_rows(r, q, "checkpoints", false, NULL, checkpoint_row, (any_fn)fn, user);
}

/* ---- models ------------------------------------------------------------------------------------------ */

#define MODEL_COLS "id, base, kind, path, training_file, training_sha256, hyperparameters, eval, job, created"

static void model_row(sqlite3_stmt *q, any_fn fn, void *user) {
    ld_model_row m = {.id = col_text(q, 0), .base = col_text(q, 1), .kind = col_text(q, 2), .path = col_text(q, 3),
                      .training_file = col_text(q, 4), .training_sha256 = col_text(q, 5),
                      .hyperparameters = col_text(q, 6), .eval = col_text(q, 7), .job = col_text(q, 8),
                      .created = sqlite3_column_double(q, 9)};
    ((void (*)(void *, const ld_model_row *))fn)(user, &m);
}

ld_status ld_registry_model_add(ld_registry *r, const ld_model_row *m) {
    if (!m->id || !m->kind || !m->path) return ld_error(r->ctx, LD_ERR_INVALID_ARG, "registry: a model needs id, kind and path");
    sqlite3_stmt *q;
    if (prepare(r, "INSERT OR REPLACE INTO models(" MODEL_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?)", &q, "adding a model"))
        return LD_ERR_IO;
    bind_text(q, 1, m->id), bind_text(q, 2, m->base), bind_text(q, 3, m->kind), bind_text(q, 4, m->path);
    bind_text(q, 5, m->training_file), bind_text(q, 6, m->training_sha256), bind_text(q, 7, m->hyperparameters);
    bind_text(q, 8, m->eval), bind_text(q, 9, m->job);
    sqlite3_bind_double(q, 10, m->created > 0 ? m->created : ld_registry_now());
    return run_change(r, q, "adding a model", NULL);
}

ld_status ld_registry_model_get(ld_registry *r, const char *id, void (*fn)(void *user, const ld_model_row *m), void *user) {
    sqlite3_stmt *q;
    if (prepare(r, "SELECT " MODEL_COLS " FROM models WHERE id = ?", &q, "reading a model")) return LD_ERR_IO;
    bind_text(q, 1, id);
    return run_rows(r, q, "model", true, id, model_row, (any_fn)fn, user);
}

ld_status ld_registry_model_list(ld_registry *r, void (*fn)(void *user, const ld_model_row *m), void *user) {
    sqlite3_stmt *q;
    if (prepare(r, "SELECT " MODEL_COLS " FROM models ORDER BY id", &q, "listing models")) return LD_ERR_IO;
    return run_rows(r, q, "models", false, NULL, model_row, (any_fn)fn, user);
}

/* liandan/registry.h — the model cloud's catalogue in one SQLite file (WAL journal, so the
 * server and command-line tools can use it at once): API keys (stored as SHA-256 hashes,
 * scoped), and the tables the fine-tuning service keeps (models with lineage, files, jobs,
 * job events; docs/serving.md). One handle may be used from several threads. */
#ifndef LIANDAN_REGISTRY_H
#define LIANDAN_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_registry ld_registry;

/* Opens (creating it and its tables if needed) the registry at path. Errors name the file. */
ld_status ld_registry_open(ld_ctx *ctx, const char *path, ld_registry **out);
void ld_registry_close(ld_registry *r);
/* The message of the registry's last error (the handle's own, thread-local). */
const char *ld_registry_error(const ld_registry *r);

/* ---- API keys ------------------------------------------------------------------------ */
/* Scopes: a key scoped "inference" may call the models, "fine-tune" may also upload files
 * and run fine-tuning jobs, "admin" may do everything. */
#define LD_SCOPE_INFERENCE "inference"
#define LD_SCOPE_FINETUNE "fine-tune"
#define LD_SCOPE_ADMIN "admin"

typedef struct ld_key_info {
    int64_t id;
    const char *name;
    const char *prefix;  /* the key's first characters, to recognise it ("ld-3f9a…") */
    const char *scope;
    double created, last_used; /* unix seconds; last_used 0 = never */
    bool revoked;
} ld_key_info;

/* Creates a key; the secret (printed once, never stored) goes to key[cap] (cap >= 48).
 * name: 1..64 printable characters. */
ld_status ld_registry_key_create(ld_registry *r, const char *name, const char *scope, char *key, size_t cap,
                                 int64_t *id);
/* Calls fn for each key (revoked ones too), oldest first. */
ld_status ld_registry_key_list(ld_registry *r, void (*fn)(void *user, const ld_key_info *k), void *user);
/* Revokes the key with this id or name (LD_ERR_NOT_FOUND when none is active). */
ld_status ld_registry_key_revoke(ld_registry *r, const char *id_or_name);
/* Keys ever created (revoked ones too, when `revoked`) or active ones; -1 on error. */
int64_t ld_registry_key_count(ld_registry *r, bool revoked);

typedef enum ld_key_check { LD_KEY_OK, LD_KEY_INVALID, LD_KEY_WRONG_SCOPE } ld_key_check;
/* Whether `key` is an active key allowed `scope`; granted[cap] receives its scope. */
ld_key_check ld_registry_key_check(ld_registry *r, const char *key, const char *scope, char *granted, size_t cap);
/* Whether a key of scope `have` may use a route that needs `need`. */
bool ld_scope_allows(const char *have, const char *need);

/* ---- files (uploaded fine-tuning data, content-addressed) ------------------------------ */
typedef struct ld_file_info {
    const char *id;        /* "file-" + the first 24 hex digits of sha256 */
    const char *filename;  /* as uploaded (shown only, never used as a path) */
    const char *purpose;   /* "fine-tune" */
    const char *sha256;    /* of the bytes; the file is stored as files/<sha256>.jsonl */
    int64_t bytes, lines;  /* lines: examples (non-empty lines) */
    double created;
} ld_file_info;
/* Adds a file's record; *existed (may be NULL) is set when a file with the same id was there
 * (the record is kept as it was: the bytes are the same). */
ld_status ld_registry_file_add(ld_registry *r, const ld_file_info *f, bool *existed);
/* Calls fn with the file `id` (LD_ERR_NOT_FOUND when there is none). */
ld_status ld_registry_file_get(ld_registry *r, const char *id, void (*fn)(void *user, const ld_file_info *f), void *user);
/* Calls fn for each file, newest first (purpose NULL: all). */
ld_status ld_registry_file_list(ld_registry *r, const char *purpose, void (*fn)(void *user, const ld_file_info *f),
                                void *user);
/* Removes the record (LD_ERR_NOT_FOUND when there is none). */
ld_status ld_registry_file_delete(ld_registry *r, const char *id);

/* ---- fine-tuning jobs ------------------------------------------------------------------ */
/* A job's status: validating_files -> queued -> running -> succeeded | failed | cancelled. */
typedef struct ld_job_row {
    const char *id, *model, *training_file, *validation_file, *method;
    const char *hyperparameters;  /* JSON object text */
    const char *suffix, *status, *fine_tuned_model, *error;
    double created, started, finished; /* 0 = not yet */
    int64_t trained_tokens, worker_pid, attempts;
} ld_job_row;
/* Adds a job (id, model, training_file, method, hyperparameters, status required). */
ld_status ld_registry_job_add(ld_registry *r, const ld_job_row *j);
ld_status ld_registry_job_get(ld_registry *r, const char *id, void (*fn)(void *user, const ld_job_row *j), void *user);
/* Jobs newest first; after: a job id to list from (exclusive; NULL = the newest); limit <= 0
 * = all; status: only jobs with this status (NULL = any). */
ld_status ld_registry_job_list(ld_registry *r, const char *after, int64_t limit, const char *status,
                               void (*fn)(void *user, const ld_job_row *j), void *user);
/* Moves job id to status `to` when its status is one of `from` ('|'-separated, NULL = any);
 * sets error (NULL keeps it), finished for a final status. *changed (may be NULL) says
 * whether it moved. */
ld_status ld_registry_job_set_status(ld_registry *r, const char *id, const char *from, const char *to,
                                     const char *error, bool *changed);
/* queued -> running in worker pid (started is kept from an earlier attempt; attempts + 1). */
ld_status ld_registry_job_start(ld_registry *r, const char *id, int64_t pid, bool *changed);
/* Records the worker process of a running job. */
ld_status ld_registry_job_set_pid(ld_registry *r, const char *id, int64_t pid);
/* running -> succeeded with its model and the tokens it trained on. */
ld_status ld_registry_job_succeed(ld_registry *r, const char *id, const char *fine_tuned_model, int64_t trained_tokens,
                                  bool *changed);

typedef struct ld_job_event {
    int64_t id;
    const char *job, *level, *message, *data; /* data: JSON text or NULL */
    double created;
} ld_job_event;
ld_status ld_registry_event_add(ld_registry *r, const char *job, const char *level, const char *message,
                                const char *data);
/* Events of a job, newest first, older than id `before` (0 = from the newest); limit <= 0 = all. */
ld_status ld_registry_event_list(ld_registry *r, const char *job, int64_t before, int64_t limit,
                                 void (*fn)(void *user, const ld_job_event *e), void *user);

typedef struct ld_job_checkpoint {
    int64_t id, step;
    const char *job, *path;
    double train_loss, created;
} ld_job_checkpoint;
ld_status ld_registry_checkpoint_add(ld_registry *r, const char *job, int64_t step, const char *path,
                                     double train_loss);
/* Checkpoints of a job, newest first. */
ld_status ld_registry_checkpoint_list(ld_registry *r, const char *job, void (*fn)(void *user, const ld_job_checkpoint *c),
                                      void *user);

/* ---- models made here, with lineage ---------------------------------------------------- */
typedef struct ld_model_row {
    const char *id;              /* the name it is served under ("base:adapter" for a LoRA) */
    const char *base, *kind;     /* kind: "lora" or "full" */
    const char *path;            /* relative to the models directory */
    const char *training_file, *training_sha256, *hyperparameters, *eval, *job;
    double created;
} ld_model_row;
/* Adds or replaces the model's record. */
ld_status ld_registry_model_add(ld_registry *r, const ld_model_row *m);
ld_status ld_registry_model_get(ld_registry *r, const char *id, void (*fn)(void *user, const ld_model_row *m), void *user);
ld_status ld_registry_model_list(ld_registry *r, void (*fn)(void *user, const ld_model_row *m), void *user);

#ifdef __cplusplus
}
#endif
#endif

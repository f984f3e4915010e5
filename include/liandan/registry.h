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

#ifdef __cplusplus
}
#endif
#endif

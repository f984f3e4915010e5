/* registry/registry.h — the registry's internals shared by its files (the public API is
 * liandan/registry.h). */
#ifndef LD_REGISTRY_INTERNAL_H
#define LD_REGISTRY_INTERNAL_H

#include <sqlite3.h>

#include "liandan/registry.h"

struct ld_registry {
    sqlite3 *db;   /* opened FULLMUTEX: usable from several threads */
    ld_ctx *ctx;   /* errors of the thread that opened it (callers on other threads read
                      ld_registry_error) */
    char path[4096];
};

/* Unix time in seconds. */
double ld_registry_now(void);
/* LD_ERR_IO "registry PATH: what: sqlite's message" on r's context. */
ld_status ld_registry_fail(ld_registry *r, const char *what);

#endif

/* serve/ui_assets.h — the web UI's files, compiled into the library from src/serve/ui by
 * cmake/embed_files.cmake (a generated C file). */
#ifndef LD_SERVE_UI_ASSETS_H
#define LD_SERVE_UI_ASSETS_H

#include <stddef.h>

typedef struct ld_ui_asset {
    const char *path;         /* "/index.html" */
    const char *content_type;
    const unsigned char *data;
    size_t len;
} ld_ui_asset;

extern const ld_ui_asset ld_ui_assets[];
extern const int ld_ui_n_assets;

#endif

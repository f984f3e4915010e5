/* serve/routes_ui.c — GET / and GET /ui/...: the embedded web UI (serve/ui_assets.h). */
#include <string.h>

#include "serve/serve_internal.h"
#include "serve/ui_assets.h"

int ld_route_ui(ld_http *h) {
    const char *path = !strcmp(h->url, "/") ? "/index.html" : h->url + 3; /* "/ui/x" -> "/x" */
    for (int i = 0; i < ld_ui_n_assets; i++)
        if (!strcmp(ld_ui_assets[i].path, path))
            return ld_http_static(h, ld_ui_assets[i].content_type, ld_ui_assets[i].data, ld_ui_assets[i].len);
    ld_api_error e;
    memset(&e, 0, sizeof e);
    ld_api_fail(&e, 404, NULL, "no such page: %.200s", h->url);
    return ld_http_error(h, &e);
}

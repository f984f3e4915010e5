/* cli/cmd_plot.c — `liandan plot RUN_DIR`: an SVG of train/validation loss and learning
 * rate from RUN_DIR/metrics.jsonl. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct series {
    double *x, *y;
    size_t n, cap;
} series;

static int push(series *s, double x, double y) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        double *nx = realloc(s->x, cap * sizeof *nx), *ny;
        if (!nx) return -1;
        s->x = nx;
        if (!(ny = realloc(s->y, cap * sizeof *ny))) return -1;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x, s->y[s->n] = y, s->n++;
    return 0;
}

static void range(const series *s, int n, double *lo, double *hi, bool y) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int k = 0; k < n; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            double v = y ? s[k].y[i] : s[k].x[i];
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
        }
    if (!(*hi > *lo)) *hi = *lo + 1;
}

/* One panel: polylines of the given series in a box at (ox, oy) of size w x h. */
static void panel(FILE *f, const char *title, series *s, const char *const *names, const char *const *colors, int n,
                  double ox, double oy, double w, double h) {
    double x0, x1, y0, y1;
    range(s, n, &x0, &x1, false);
    range(s, n, &y0, &y1, true);
    fprintf(f, "<rect x='%g' y='%g' width='%g' height='%g' fill='none' stroke='#888'/>\n", ox, oy, w, h);
    fprintf(f, "<text x='%g' y='%g' font-size='14'>%s</text>\n", ox, oy - 8, title);
    for (int t = 0; t <= 4; t++) {
        double yv = y0 + (y1 - y0) * t / 4, py = oy + h - h * t / 4;
        fprintf(f, "<text x='%g' y='%g' font-size='10' text-anchor='end'>%.3g</text>\n", ox - 4, py + 3, yv);
        double xv = x0 + (x1 - x0) * t / 4, px = ox + w * t / 4;
        fprintf(f, "<text x='%g' y='%g' font-size='10' text-anchor='middle'>%.0f</text>\n", px, oy + h + 14, xv);
    }
    for (int k = 0; k < n; k++) {
        if (!s[k].n) continue;
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.2' points='", colors[k]);
        for (size_t i = 0; i < s[k].n; i++)
            fprintf(f, "%.1f,%.1f ", ox + w * (s[k].x[i] - x0) / (x1 - x0), oy + h - h * (s[k].y[i] - y0) / (y1 - y0));
        fprintf(f, "'/>\n<text x='%g' y='%g' font-size='11' fill='%s'>%s</text>\n", ox + w - 90, oy + 16 + 14 * k,
                colors[k], names[k]);
    }
}

static int cmd_plot(int argc, char **argv) {
    const char *out = NULL;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {LD_CLI_STRING("output", 'o', &out, "FILE.svg", "where to write (default: RUN_DIR/loss.svg)"),
                               LD_CLI_END};
    const ld_cli_spec spec = {.cmd = "plot", .args = "RUN_DIR", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
                              .about = "Draws train and validation loss and the learning rate from RUN_DIR/metrics.jsonl\n"
                                       "into an SVG."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *dir = pos.v[0];
    char path[4096], outpath[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(outpath, sizeof outpath, "%s", out ? out : "");
    if (!out) snprintf(outpath, sizeof outpath, "%s/loss.svg", dir);
    ld_cli_parse_free(&spec); /* dir and out point into argv */
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "liandan plot: cannot open %s\n", path);
        return 1;
    }
    series s[3] = {{0}};
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        cJSON *j = cJSON_Parse(line);
        cJSON *step = j ? cJSON_GetObjectItem(j, "step") : NULL;
        if (!cJSON_IsNumber(step)) {
            if (bad++ < 3) fprintf(stderr, "liandan plot: %s:%ld: not a metrics record, skipped\n", path, lineno);
            cJSON_Delete(j);
            continue;
        }
        const char *keys[3] = {"loss", "val_loss", "lr"};
        for (int k = 0; k < 3; k++) {
            cJSON *v = cJSON_GetObjectItem(j, keys[k]);
            if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) push(&s[k], step->valuedouble, v->valuedouble);
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    if (!s[0].n && !s[1].n) {
        fprintf(stderr, "liandan plot: %s has no loss records\n", path);
        return 1;
    }
    char *svg = NULL;
    size_t svg_len = 0;
    FILE *o = open_memstream(&svg, &svg_len); /* the whole SVG, then one atomic write */
    if (!o) {
        fprintf(stderr, "liandan plot: out of memory\n");
        return 1;
    }
    fprintf(o, "<svg xmlns='http://www.w3.org/2000/svg' width='760' height='560' font-family='sans-serif'>\n"
               "<rect width='100%%' height='100%%' fill='white'/>\n");
    const char *names[] = {"train loss", "val loss"}, *colors[] = {"#1f77b4", "#d62728"};
    panel(o, "loss", s, names, colors, 2, 60, 40, 670, 300);
    const char *lrn[] = {"learning rate"}, *lrc[] = {"#2ca02c"};
    panel(o, "learning rate", &s[2], lrn, lrc, 1, 60, 400, 670, 120);
    fprintf(o, "</svg>\n");
    fclose(o);
    for (int k = 0; k < 3; k++) free(s[k].x), free(s[k].y);
    ld_ctx *ctx = ld_cli_ctx(1);
    rc = ld_file_write_atomic(ctx, outpath, svg, svg_len) ? ld_cli_fail(ctx, "plot") : 0;
    if (!rc) printf("wrote %s (%zu train, %zu validation points)\n", outpath, s[0].n, s[1].n);
    free(svg);
    ld_ctx_free(ctx);
    return rc;
}

const ld_cli_command ld_cmd_plot = {"plot", "draw loss and learning-rate curves of a run as SVG", cmd_plot};

/* cli/progress.c — a progress bar on stderr: redrawn in place on a terminal (at most 10
 * times a second), a plain line every few seconds otherwise (logs, CI). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

void ld_cli_progress(ld_cli_bar *b, const char *phase, double done, double total, const char *unit, double scale) {
    double now = ld_time_now();
    if (b->start == 0) b->start = now;
    bool finished = total > 0 && done >= total;
    bool phase_changed = !b->phase || strcmp(b->phase, phase);
    double min_gap = ld_cli_isatty() ? 0.1 : 5.0;
    if (!finished && !phase_changed && now - b->last < min_gap) return;
    if (phase_changed && b->phase && ld_cli_isatty()) fputc('\n', stderr);
    if (phase_changed) b->phase_start = now;
    b->phase = phase;
    b->last = now;
    double el = now - b->phase_start, rate = el > 0 ? done / el : 0;
    char line[256];
    int n;
    if (total > 0) {
        double f = done / total;
        if (f > 1) f = 1;
        int w = 30, fill = (int)(f * w);
        char bar[64];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        double eta = rate > 0 ? (total - done) / rate : 0;
        n = snprintf(line, sizeof line, "%-10s [%s] %5.1f%% %8.2f %s/s  ETA %3.0fs", phase, bar, 100 * f, rate / scale, unit, eta);
    } else {
        n = snprintf(line, sizeof line, "%-10s %10.1f %s  %8.2f %s/s", phase, done / scale, unit, rate / scale, unit);
    }
    (void)n;
    if (ld_cli_isatty()) fprintf(stderr, "\r\033[K%s%s", line, finished ? "\n" : "");
    else fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

/* fuzz/fuzz_probe_data.c — libFuzzer harness: the protein probe's task files (DeepLoc,
 * DeepLoc membrane, FLIP SS3 TSVs; eval/probe.c) over arbitrary bytes. The first byte picks
 * the task (mod 3), a short cut (max_len 5) and caps on the rows; every accepted example must
 * have residues A-Z within the cut, a label of its task, and SS3 states and mask of its length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/probe_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++, size--;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx) != LD_OK) return 0;
    ld_probe_task_params p = ld_probe_task_default_params((ld_protein_task)(sel % 3));
    if (sel & 4) p.max_len = 5;
    if (sel & 8) p.max_train = 2, p.max_test = 1;
    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = 0;
    probe_data d = {0};
    if (probe_data_parse(ctx, "fuzz", text, size, &p, &d) == LD_OK) {
        if (d.n_train < 1 || d.n_test < 1 || d.n != d.n_train + d.n_test) abort();
        if ((p.max_train && d.n_train > p.max_train) || (p.max_test && d.n_test > p.max_test)) abort();
        int64_t k = p.task == LD_PROBE_SS3 ? 0 : p.task == LD_PROBE_DEEPLOC_MEMBRANE ? 2 : 10;
        for (int64_t i = 0; i < d.n; i++) {
            const probe_example *e = &d.ex[i];
            if (e->len < 1 || e->len > p.max_len - 2 || (int64_t)strlen(e->seq) < e->len) abort();
            for (int64_t j = 0; j < e->len; j++)
                if (e->seq[j] < 'A' || e->seq[j] > 'Z') abort();
            if (k && (e->label < 0 || e->label >= k)) abort();
            if (!k) {
                if ((int64_t)strlen(e->ss3) < e->len || (int64_t)strlen(e->mask) < e->len) abort();
                for (int64_t j = 0; j < e->len; j++)
                    if (!strchr("HEC", e->ss3[j]) || !strchr("01", e->mask[j]) || !e->ss3[j] || !e->mask[j]) abort();
            }
        }
    }
    probe_data_free(ctx, &d);
    free(text);
    ld_ctx_free(ctx);
    return 0;
}

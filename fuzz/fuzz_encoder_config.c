/* fuzz/fuzz_encoder_config.c — encoder config.json (BertConfig / EsmConfig) parsing and the
 * protein FASTA reader from arbitrary bytes: errors, never crashes or leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_encoder_config c;
    if (ld_encoder_config_from_json(ctx, (const char *)data, size, "config.json", &c) == LD_OK) {
        char *s = ld_encoder_config_to_json(&c); /* what parses must write and parse back */
        ld_encoder_config back;
        if (s && ld_encoder_config_from_json(ctx, s, strlen(s), "config.json", &back) != LD_OK) __builtin_trap();
        free(s);
    }
    ld_corpus_params p = ld_corpus_default_params();
    p.format = LD_CORPUS_FASTA, p.protein = true;
    ld_corpus *cp = NULL;
    if (size && ld_corpus_open_memory(ctx, "fuzz.fasta", (const char *)data, size, &p, &cp) == LD_OK) {
        const char *doc;
        size_t len;
        while (ld_corpus_next(cp, &doc, &len) == LD_OK)
            for (size_t i = 0; i < len; i++)
                if (doc[i] < 'A' || doc[i] > 'Z' || doc[i] == 'J') __builtin_trap(); /* only mapped letters */
        ld_corpus_close(cp);
    }
    ld_ctx_free(ctx);
    return 0;
}

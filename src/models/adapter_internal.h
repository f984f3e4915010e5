/* models/adapter_internal.h — the adapter's layout, shared by its forward hooks
 * (adapter.c) and its files (adapter_io.c). */
#ifndef LD_ADAPTER_INTERNAL_H
#define LD_ADAPTER_INTERNAL_H

#include "liandan/adapter.h"
#include "models/causal_lm_internal.h"

/* One LoRA: base matrix w ([N, K] in nn.Linear terms; gpt2 Conv1D parameters are stored
 * [K, N]) with A [r, K] and B [N, r]. */
typedef struct lora_pair {
    ld_tensor *w;
    ld_tensor *a, *b;
    int64_t N, K;
    bool w_kn;
} lora_pair;

struct ld_adapter {
    ld_ctx *ctx;
    ld_lm *m;
    ld_adapter_config cfg;
    ld_params *params;
    lora_pair *lora;
    int n_lora;
    float scale;              /* alpha / r */
    bool merged;
    ld_tensor *prompt;        /* [P, C] */
    ld_tensor **layer_prompt; /* [n_layers]: [P, C] for layers >= 1 when per_layer, else NULL */
    ld_tensor *score;         /* [n_labels, C] */
    char **labels;            /* n_labels names, or NULL */
};

/* Creates the adapter's parameters without initialising them (zeros): for loading. */
ld_status lm_adapter_create(ld_lm *m, const ld_adapter_config *c, ld_adapter **out);
/* LoRA and prompt tuning: every base parameter frozen, and a quantized base's frozen
 * matrices read in their block type by the training forward. */
void lm_adapter_freeze_base(ld_adapter *a);
/* The base matrices the config's target patterns select, in parameter order: calls fn for
 * each. Returns how many matched, or < 0 on error (message set). */
int lm_adapter_targets(ld_lm *m, const char *patterns, void (*fn)(void *user, ld_tensor *w), void *user);

/* Reads the tensors of an adapter directory written for the same configuration into a's
 * parameters (a stage's adapter into the job's). */
ld_status lm_adapter_read_weights(ld_adapter *a, const char *dir);
/* adapter_config.json (text[0..len), `path` for messages) -> *c, and the head's label names
 * into *labels (malloc'd array of n_labels malloc'd strings, or NULL). */
ld_status lm_adapter_parse_config(ld_ctx *ctx, const char *path, const char *text, size_t len, ld_adapter_config *c,
                                  char ***labels, int64_t *n_labels);

#endif

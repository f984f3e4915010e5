/* quant/quant_mix.c — llama.cpp's quantization mixes ("ftypes": Q2_K, Q3_K_M, IQ4_XS, ...):
 * which type each matrix of a model gets, by its role (attn_v, ffn_down, output, ...) and
 * layer. One table row per mix gives its llama_ftype id, the body type and the output type;
 * one row per rule gives a role, a condition and the type it picks (the first matching rule
 * of the mix wins; no match = the body type). The rules are those of llama.cpp's
 * llama_tensor_get_type for dense (non-MoE) models, so a file written with a mix has the
 * types llama.cpp's quantizer gives the same model (except for rows that are not whole
 * blocks, where liandan falls back to types it can write: ld_quant_mix_fallback). */
#include <ctype.h>
#include <string.h>

#include "quant/quant_mix.h"

struct ld_quant_mix {
    const char *name;
    uint32_t ftype; /* llama_ftype */
    ld_dtype body;
    ld_dtype output; /* LM head (and a tied embedding); body = keep */
};

/* Mixes liandan can write (every type they name has a quantizer here). */
static const ld_quant_mix MIXES[] = {
    {"Q2_K", 10, LD_Q2_K, LD_Q6_K},    {"Q2_K_S", 21, LD_Q2_K, LD_Q6_K},  {"Q3_K_S", 11, LD_Q3_K, LD_Q6_K},
    {"Q3_K_M", 12, LD_Q3_K, LD_Q6_K},  {"Q3_K_L", 13, LD_Q3_K, LD_Q6_K},  {"Q4_K_S", 14, LD_Q4_K, LD_Q6_K},
    {"Q4_K_M", 15, LD_Q4_K, LD_Q6_K},  {"Q5_K_S", 16, LD_Q5_K, LD_Q6_K},  {"Q5_K_M", 17, LD_Q5_K, LD_Q6_K},
    {"IQ4_NL", 25, LD_IQ4_NL, LD_Q6_K}, {"IQ4_XS", 30, LD_IQ4_XS, LD_Q6_K},
    /* the i-quants and the ternary types (IQ2_S's body is IQ2_XS, IQ2_M's IQ2_S, as in llama.cpp) */
    {"IQ3_M", 27, LD_IQ3_S, LD_Q6_K},    {"IQ3_S", 26, LD_IQ3_S, LD_Q6_K},    {"IQ3_XS", 22, LD_IQ3_S, LD_Q6_K},
    {"IQ3_XXS", 23, LD_IQ3_XXS, LD_Q5_K}, {"IQ2_M", 29, LD_IQ2_S, LD_Q5_K},   {"IQ2_S", 28, LD_IQ2_XS, LD_Q5_K},
    {"IQ2_XS", 20, LD_IQ2_XS, LD_Q5_K},  {"IQ2_XXS", 19, LD_IQ2_XXS, LD_Q5_K}, {"IQ1_M", 31, LD_IQ1_M, LD_Q5_K},
    {"IQ1_S", 24, LD_IQ1_S, LD_Q5_K},    {"TQ1_0", 36, LD_TQ1_0, LD_Q6_K},    {"TQ2_0", 37, LD_TQ2_0, LD_Q6_K},
};
#define NMIXES (int)(sizeof MIXES / sizeof MIXES[0])

typedef enum {
    WHEN_ALWAYS,
    WHEN_GQA4,         /* n_heads / n_kv_heads >= 4 */
    WHEN_FIRST_8TH,    /* layer < n_layers / 8 */
    WHEN_FIRST_16TH,   /* layer < n_layers / 16 */
    WHEN_FIRST_2,      /* layer < 2 */
    WHEN_FIRST_4,      /* layer < 4 */
    WHEN_MORE_BITS,    /* the first and last eighth and every third layer between */
    WHEN_FIRST_8TH_NO_IMATRIX,
    WHEN_NO_IMATRIX,
    WHEN_MIDDLE, /* n_layers / 8 <= layer < 7 n_layers / 8 */
} mix_when;

typedef struct mix_rule {
    uint32_t ftype;
    ld_tensor_role role; /* LD_ROLE_ATTN_V also matches attn_qkv, as in llama.cpp */
    mix_when when;
    ld_dtype type;
} mix_rule;

static const mix_rule RULES[] = {
    {10, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q4_K},
    {10, LD_ROLE_ATTN_V, WHEN_ALWAYS, LD_Q3_K},
    {10, LD_ROLE_FFN_DOWN, WHEN_ALWAYS, LD_Q3_K},
    {10, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_Q3_K},
    {21, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q4_K},
    {21, LD_ROLE_FFN_DOWN, WHEN_FIRST_8TH, LD_Q4_K},
    {12, LD_ROLE_ATTN_V, WHEN_FIRST_2, LD_Q5_K},
    {12, LD_ROLE_ATTN_V, WHEN_ALWAYS, LD_Q4_K},
    {12, LD_ROLE_FFN_DOWN, WHEN_FIRST_16TH, LD_Q5_K},
    {12, LD_ROLE_FFN_DOWN, WHEN_ALWAYS, LD_Q4_K},
    {12, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_Q4_K},
    {13, LD_ROLE_ATTN_V, WHEN_ALWAYS, LD_Q5_K},
    {13, LD_ROLE_FFN_DOWN, WHEN_ALWAYS, LD_Q5_K},
    {13, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_Q5_K},
    {14, LD_ROLE_ATTN_V, WHEN_FIRST_4, LD_Q5_K},
    {14, LD_ROLE_FFN_DOWN, WHEN_FIRST_8TH, LD_Q5_K},
    {15, LD_ROLE_ATTN_V, WHEN_MORE_BITS, LD_Q6_K},
    {15, LD_ROLE_FFN_DOWN, WHEN_MORE_BITS, LD_Q6_K},
    {17, LD_ROLE_ATTN_V, WHEN_MORE_BITS, LD_Q6_K},
    {17, LD_ROLE_FFN_DOWN, WHEN_MORE_BITS, LD_Q6_K},
    {25, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q5_K},
    {25, LD_ROLE_FFN_DOWN, WHEN_FIRST_8TH_NO_IMATRIX, LD_Q5_K},
    {30, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q5_K},
    {30, LD_ROLE_FFN_DOWN, WHEN_FIRST_8TH_NO_IMATRIX, LD_Q5_K},
    /* IQ2_XXS, IQ2_XS, IQ1_S, IQ1_M (19, 20, 24, 31); IQ2_S, IQ2_M (28, 29) take IQ3_S where
     * those take Q2_K, and IQ3_S for attn_output; IQ1_* take IQ2_XXS for attn_output */
#define IQ2_RULES(ft, lo)                                                                                  \
    {ft, LD_ROLE_TOKEN_EMBD, WHEN_ALWAYS, lo}, {ft, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q4_K},                   \
        {ft, LD_ROLE_ATTN_V, WHEN_ALWAYS, lo}, {ft, LD_ROLE_FFN_DOWN, WHEN_FIRST_8TH, lo}
    IQ2_RULES(19, LD_Q2_K),
    IQ2_RULES(20, LD_Q2_K),
    IQ2_RULES(24, LD_Q2_K),
    IQ2_RULES(31, LD_Q2_K),
    IQ2_RULES(28, LD_IQ3_S),
    IQ2_RULES(29, LD_IQ3_S),
#undef IQ2_RULES
    {24, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_IQ2_XXS},
    {31, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_IQ2_XXS},
    {28, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_IQ3_S},
    {29, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_IQ3_S},
    /* IQ3_XXS */
    {23, LD_ROLE_TOKEN_EMBD, WHEN_ALWAYS, LD_IQ3_S},
    {23, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q4_K},
    {23, LD_ROLE_ATTN_V, WHEN_NO_IMATRIX, LD_IQ3_S},
    {23, LD_ROLE_ATTN_K, WHEN_ALWAYS, LD_IQ2_S},
    {23, LD_ROLE_ATTN_Q, WHEN_ALWAYS, LD_IQ2_S},
    {23, LD_ROLE_FFN_DOWN, WHEN_FIRST_8TH_NO_IMATRIX, LD_Q4_K},
    {23, LD_ROLE_FFN_DOWN, WHEN_NO_IMATRIX, LD_Q3_K},
    {23, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_IQ3_S},
    /* IQ3_XS, IQ3_S, IQ3_M */
    {22, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q4_K},
    {22, LD_ROLE_ATTN_K, WHEN_ALWAYS, LD_IQ3_XXS},
    {22, LD_ROLE_ATTN_Q, WHEN_ALWAYS, LD_IQ3_XXS},
    {22, LD_ROLE_FFN_GATE, WHEN_MIDDLE, LD_IQ3_XXS},
    {22, LD_ROLE_FFN_UP, WHEN_MIDDLE, LD_IQ3_XXS},
    {26, LD_ROLE_ATTN_V, WHEN_GQA4, LD_Q4_K},
    {27, LD_ROLE_ATTN_V, WHEN_ALWAYS, LD_Q4_K},
    {27, LD_ROLE_FFN_DOWN, WHEN_FIRST_8TH, LD_Q4_K},
    {27, LD_ROLE_ATTN_OUTPUT, WHEN_ALWAYS, LD_Q4_K},
    /* TQ1_0, TQ2_0: an untied token embedding at Q4_K */
    {36, LD_ROLE_TOKEN_EMBD, WHEN_ALWAYS, LD_Q4_K},
    {37, LD_ROLE_TOKEN_EMBD, WHEN_ALWAYS, LD_Q4_K},
};

static bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool holds(mix_when w, const ld_mix_tensor *t) {
    switch (w) {
    case WHEN_ALWAYS: return true;
    case WHEN_GQA4: return t->n_gqa >= 4;
    case WHEN_FIRST_8TH: return t->layer < t->n_layers / 8;
    case WHEN_FIRST_16TH: return t->layer < t->n_layers / 16;
    case WHEN_FIRST_2: return t->layer < 2;
    case WHEN_FIRST_4: return t->layer < 4;
    case WHEN_MORE_BITS: return use_more_bits(t->layer, t->n_layers);
    case WHEN_FIRST_8TH_NO_IMATRIX: return !t->has_imatrix && t->layer < t->n_layers / 8;
    case WHEN_NO_IMATRIX: return !t->has_imatrix;
    case WHEN_MIDDLE: return t->layer >= t->n_layers / 8 && t->layer < 7 * t->n_layers / 8;
    }
    return false;
}

const ld_quant_mix *ld_quant_mix_get(const char *name) {
    if (!name) return NULL;
    for (int i = 0; i < NMIXES; i++) {
        const char *a = MIXES[i].name, *b = name;
        while (*a && toupper((unsigned char)*b) == *a) a++, b++;
        if (!*a && !*b) return &MIXES[i];
    }
    return NULL;
}

int ld_quant_mix_count(void) {
    return NMIXES;
}
const ld_quant_mix *ld_quant_mix_at(int i) {
    return i >= 0 && i < NMIXES ? &MIXES[i] : NULL;
}
const char *ld_quant_mix_name(const ld_quant_mix *m) {
    return m->name;
}
ld_dtype ld_quant_mix_body(const ld_quant_mix *m) {
    return m->body;
}
uint32_t ld_quant_mix_ftype(const ld_quant_mix *m) {
    return m->ftype;
}

ld_tensor_role ld_tensor_role_of(const char *gguf_name) {
    static const struct {
        const char *part;
        ld_tensor_role role;
    } ROLES[] = {
        {"attn_qkv.weight", LD_ROLE_ATTN_QKV}, {"attn_v.weight", LD_ROLE_ATTN_V},      {"attn_k.weight", LD_ROLE_ATTN_K},
        {"attn_q.weight", LD_ROLE_ATTN_Q},     {"attn_output.weight", LD_ROLE_ATTN_OUTPUT}, {"ffn_up", LD_ROLE_FFN_UP},
        {"ffn_gate", LD_ROLE_FFN_GATE},        {"ffn_down", LD_ROLE_FFN_DOWN},
    };
    if (!strcmp(gguf_name, "output.weight")) return LD_ROLE_OUTPUT;
    if (!strcmp(gguf_name, "token_embd.weight")) return LD_ROLE_TOKEN_EMBD;
    for (size_t i = 0; i < sizeof ROLES / sizeof ROLES[0]; i++)
        if (strstr(gguf_name, ROLES[i].part)) return ROLES[i].role;
    return LD_ROLE_OTHER;
}

ld_dtype ld_quant_mix_type(const ld_quant_mix *m, const ld_mix_tensor *t) {
    if (t->role == LD_ROLE_OUTPUT || (t->role == LD_ROLE_TOKEN_EMBD && t->tied)) {
        /* rows that are not whole blocks of the body type get Q8_0, as in llama.cpp */
        return t->K % ld_dtype_traits(m->body)->block_size ? LD_Q8_0 : m->output;
    }
    const ld_tensor_role role = t->role == LD_ROLE_ATTN_QKV ? LD_ROLE_ATTN_V : t->role;
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++)
        if (RULES[i].ftype == m->ftype && RULES[i].role == role && holds(RULES[i].when, t)) return RULES[i].type;
    return m->body;
}

/* Types for rows that are not whole blocks of the wanted type: llama.cpp's fallbacks where
 * liandan can write them (the i-quants -> IQ4_NL; Q2_K, Q3_K, TQ1_0, TQ2_0 -> Q4_0), else
 * Q8_0 for 32-wide blocks; F16 when even 32 does not divide the row. */
ld_dtype ld_quant_mix_fallback(ld_dtype want, int64_t K) {
    static const struct {
        ld_dtype want, use;
    } FALLBACK[] = {
        {LD_IQ1_S, LD_IQ4_NL},  {LD_IQ1_M, LD_IQ4_NL}, {LD_IQ2_XXS, LD_IQ4_NL}, {LD_IQ2_XS, LD_IQ4_NL},
        {LD_IQ2_S, LD_IQ4_NL},  {LD_IQ3_XXS, LD_IQ4_NL}, {LD_IQ3_S, LD_IQ4_NL}, {LD_IQ4_XS, LD_IQ4_NL},
        {LD_Q2_K, LD_Q4_0},     {LD_Q3_K, LD_Q4_0},    {LD_TQ1_0, LD_Q4_0},    {LD_TQ2_0, LD_Q4_0},
    };
    const ld_dtype_info *ti = ld_dtype_traits(want);
    if (K % ti->block_size == 0) return want;
    if (K % 32) return LD_F16;
    for (size_t i = 0; i < sizeof FALLBACK / sizeof FALLBACK[0]; i++)
        if (FALLBACK[i].want == want) return FALLBACK[i].use;
    return LD_Q8_0;
}

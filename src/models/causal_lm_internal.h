/* models/causal_lm_internal.h — the causal LM's layout, shared by the training forward
 * (causal_lm.c), inference (infer/) and the model-directory loader/saver. */
#ifndef LD_CAUSAL_LM_INTERNAL_H
#define LD_CAUSAL_LM_INTERNAL_H

#include "liandan/causal_lm.h"
#include "nn/nn_internal.h"

/* Per-layer parameters (NULL where the family lacks them). */
typedef struct lm_layer {
    ld_tensor *ln1_w, *ln1_b, *ln2_w, *ln2_b;     /* before attention / before the MLP */
    ld_tensor *q, *k, *v, *qkv, *qkv_b, *o, *o_b; /* qkv: gpt2's c_attn [C, 3C], phi3's qkv_proj */
    ld_tensor *q_b, *k_b, *v_b;                   /* qwen2 */
    ld_tensor *q_norm, *k_norm;                   /* qwen3: [head_dim] */
    ld_tensor *post_attn_norm, *post_mlp_norm;    /* gemma2's sandwich */
    ld_tensor *gate, *up, *gate_up, *down, *up_b, *down_b; /* gpt2: up = c_fc, down = c_proj */
    ld_tensor *router;                            /* mixture of experts: [E, C] */
    ld_tensor **exp_gate, **exp_up, **exp_down;   /* E each: [I, C], [I, C], [C, I] */
    ld_tensor *sh_gate, *sh_up, *sh_down, *sh_inp; /* Qwen2-MoE's shared expert and its gate [1, C] */
} lm_layer;

/* ---- families (models/lm_family.c) ------------------------------------------------------ */

/* How a tensor is laid out differently in GGUF (see lm_gguf.c). */
typedef enum lm_xform { XF_NONE = 0, XF_ROPE_Q, XF_ROPE_K, XF_TRANSPOSE } lm_xform;

typedef struct lm_name_map {
    const char *hf, *gguf; /* "%d" = the layer */
    lm_xform xf;
} lm_name_map;

/* One model family: names, and the blocks it is built from. */
typedef struct lm_family_info {
    ld_lm_family family;
    const char *model_type, *hf_class, *gguf_arch;
    ld_lm_arch arch;
    bool qkv_bias;        /* q/k/v projection biases (Qwen2) */
    bool qk_norm;         /* RMSNorm over each head of q and k before RoPE (Qwen3) */
    bool fused_qkv;       /* q, k, v rows in one [(H + 2 Hkv) D, C] matrix (Phi-3) */
    bool fused_gate_up;   /* gate and up rows in one [2 I, C] matrix, gate first (Phi-3) */
    bool sandwich_norms;  /* RMSNorm after attention and after the MLP too (Gemma 2) */
    bool geglu;           /* gelu(gate) * up instead of silu(gate) * up (Gemma) */
    bool embed_scale;     /* embeddings times sqrt(hidden_size) (Gemma) */
    bool norm_plus_one;   /* HF stores RMSNorm weights as w - 1 (Gemma; GGUF stores w) */
    bool always_tied;     /* the LM head is the embedding (GPT-2, Gemma) */
    bool rope_interleave; /* llama.cpp's GGUF interleaves q/k rows per head (llama) */
    int swa_pattern;      /* layers with the sliding window: 0/1 every one, 2 every other (Gemma 2) */
    const lm_name_map *names[5]; /* NULL-terminated list of name tables */
    /* the experts' matrices: HF "..%d..experts.%d.." (layer, expert) -> one GGUF tensor of all
     * experts per layer [E, N, K] ("blk.%d.ffn_gate_exps.weight"); NULL = none */
    const lm_name_map *experts;
    const char *router;    /* HF name of the router ("%d" = the layer) */
    const char *shared[4]; /* the shared expert's gate, up, down and its gate's row ("%d"), or NULL */
} lm_family_info;

/* Width of each expert. */
static inline int64_t lm_expert_width(const ld_lm_config *c) {
    return c->moe_intermediate_size > 0 ? c->moe_intermediate_size : c->intermediate_size;
}

const lm_family_info *lm_family(ld_lm_family f);
const lm_family_info *lm_family_by_model_type(const char *model_type);
const lm_family_info *lm_family_by_gguf_arch(const char *arch);
/* "llama, mistral, ..." (config model_types, or GGUF architectures once each) into buf. */
const char *lm_family_list(bool gguf, char *buf, size_t cap);
/* The GGUF name of parameter `hf` and its layout change; false when the family lacks it. */
bool lm_gguf_name(const lm_family_info *f, const char *hf, char *out, size_t cap, lm_xform *xf);

/* The GGUF tensor of expert matrix `hf` (all of a layer's experts in one [E, N, K] tensor)
 * and which expert it is; false when hf is not an expert matrix of the family. */
bool lm_gguf_expert_name(const lm_family_info *f, const char *hf, char *out, size_t cap, int *expert);

/* The E experts' matrices of the same kind as expert 0's matrix t (its layer's exp_gate,
 * exp_up or exp_down), or NULL when t is not one. */
ld_tensor *const *lm_expert_list(const ld_lm *m, const ld_tensor *t);

/* How inference reads a matrix (and the token embedding): its values in `dtype` at
 * `data`, rows of K elements in nn.Linear order [N, K], or with `kn` the [K, N] order of
 * GPT-2's Conv1D (F32 only). rope_perm: q/k rows are in llama.cpp's interleaved RoPE order
 * (lm_gguf.c), so the projection's outputs are permuted back per head (lm_rope_unpermute).
 * A trainable model's forms are its F32 parameters; a model loaded in place reads the
 * file's bytes, with copies only where a type or alignment needs one (owned). */
typedef struct lm_form {
    const ld_tensor *w; /* the parameter it is */
    ld_dtype dtype;
    const void *data;
    bool kn, rope_perm, owned;
} lm_form;

struct ld_lm {
    ld_ctx *ctx;
    ld_lm_config cfg;
    ld_params *params;
    ld_tensor *wte, *wpe, *lnf_w, *lnf_b, *lm_head;
    lm_layer *layers;
    bool in_place;  /* matrices have no F32 values (data NULL): forms point into the file */
    lm_form *forms; /* one per matrix: 2-D parameters but the learned positions */
    int n_forms;
    struct ld_gguf *gguf;     /* kept open (mmapped) while forms point into it */
    struct ld_st_set *st_set; /* the same for a model directory's safetensors */
    bool file_backed;         /* the mapping is a file's: pages may be given back (lm_release) */
    char *chat_template;      /* the file's Jinja chat template, or NULL */
    struct ld_adapter *adapter; /* attached adapter (models/adapter.c), or NULL */
    float *rope_factors;      /* GGUF rope_freqs.weight: inv_freq[i] /= factor[i] (head_dim / 2), or NULL */
    ld_lm_generation_config gen; /* generation_config.json's sampling defaults */
    struct lm_lazy *lazy;        /* ld_lm_new_lazy: matrices' values generated when read (causal_lm.c) */
    ld_lm_moe_stats moe_stats;   /* the routers in the last training forward */
    ld_tensor *moe_loss;         /* that forward's weighted router losses ([1], on its tape), or NULL */
    /* expert parallelism (lm_set_expert_parallel): the training forward sends each routed row
     * to the rank of ep that holds its expert, and this rank computes experts [ep_lo, ep_hi) */
    struct ld_comm *ep;
    int64_t ep_lo, ep_hi;
    /* the experts whose values this model holds (lm_build_part): [0, E) but on a rank of an
     * expert-parallel run, whose other experts are parameters without values or gradient */
    int64_t held_lo, held_hi;
};

/* Expert parallelism over the ranks of c (NULL: off): rank p of c computes experts
 * [p E / P, (p + 1) E / P) of every layer for the rows every rank routes to them (docs/moe.md).
 * E must be a multiple of P. Every rank's forward then takes part in two all-to-alls per MoE
 * layer (four with backward), so the ranks of c run their forwards in lockstep. */
ld_status lm_set_expert_parallel(ld_lm *m, struct ld_comm *c);
/* Which expert x is a matrix of (0..E-1), or -1 when it is not an expert's matrix. */
int64_t lm_expert_index(const ld_lm *m, const ld_tensor *x);
/* Whether m holds every expert's values (false for a model built with lm_build_part). */
bool lm_holds_all(const ld_lm *m);
/* Writes m's part of a sharded model directory into dir under expert parallelism (m->ep set):
 * rank p of the group writes model-(p+1)-of-P.safetensors with experts [p E / P, (p + 1) E / P)
 * of every layer, rank 0's file also every other parameter; with index, also
 * model.safetensors.index.json (Hugging Face's weight_map) naming every parameter's file.
 * Together the P files are the whole model (ld_lm_load reads them as one). */
ld_status lm_save_ep_part(ld_lm *m, const char *dir, bool index);
/* config.json, generation_config.json and the chat template of m into dir (created). */
ld_status lm_save_meta(ld_lm *m, const char *dir);

/* Whether t is an RMSNorm / LayerNorm weight (Gemma's are stored as w - 1 in HF files). */
bool lm_is_norm_weight(const ld_lm *m, const ld_tensor *t);

/* The model's rotation frequencies for sequences of up to seq_len tokens (the config's, and
 * a GGUF file's per-frequency factors), *mscale the cos/sin scale. inv_freq: head_dim / 2. */
void lm_rope_freqs(const ld_lm *m, int64_t seq_len, float *inv_freq, float *mscale);

/* How parameters are created (lm_build). */
typedef enum lm_init {
    LM_INIT_RANDOM = 0, /* GPT-2/Llama initialisation (new models) */
    LM_INIT_ZERO,       /* F32, zeroed: values come from a file */
    LM_INIT_IN_PLACE,   /* matrices without values (forms added by the loader); the rest F32 */
    LM_INIT_SHAPES,     /* no values at all: names and shapes, to check a file against */
    LM_INIT_LAZY,       /* LM_INIT_RANDOM's values, the matrices' generated when lm_values reads them */
} lm_init;
ld_status lm_build(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, lm_init init, ld_lm **out);
/* lm_build holding only part `part` of `parts` of every MoE layer's experts (experts
 * [part E / parts, (part + 1) E / parts)): the others are parameters without values or
 * gradient (views of NULL), and a random initialisation skips their values in the stream, so
 * the experts held and every other parameter get the whole model's values for that seed.
 * parts <= 1, a model without experts or E not a multiple of parts: the whole model. */
ld_status lm_build_part(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, lm_init init, int part, int parts,
                        ld_lm **out);
/* ld_lm_load for training (every parameter held trainable), holding part `part` of `parts`
 * of the experts as lm_build_part does; the file's other experts are checked, not read. */
ld_status lm_load_part(ld_ctx *ctx, const char *dir, int part, int parts, ld_lm **out);
/* false (with the error on the context, naming `what`) for a model that cannot compute: one
 * from ld_lm_new_lazy, whose values exist only as it is written. */
bool lm_can_compute(const ld_lm *m, const char *what);

/* Whether parameter t is a matrix inference reads through a form. */
bool lm_is_matrix(const ld_lm *m, const ld_tensor *t);
/* The form of matrix w, or NULL. */
const lm_form *lm_form_of(const ld_lm *m, const ld_tensor *w);
/* Records the form of w (the loaders); owned data is freed with the model. */
ld_status lm_set_form(ld_lm *m, const ld_tensor *w, ld_dtype dtype, const void *data, bool kn, bool rope_perm,
                      bool owned);
/* The values of parameter t in F32 into dst (numel floats): as the parameter is laid out
 * (nk false: GPT-2's Conv1D weights [K, N]) or as [N, K] rows (nk true), rows in HF order. */
ld_status lm_values(const ld_lm *m, const ld_tensor *t, bool nk, float *dst);
/* Moves groups of D elements (each elem bytes: a row, or a float) between HF's rotate-half
 * order and llama.cpp's interleaved order: interleaved element 2i + j is HF element
 * j * D/2 + i. to_gguf: HF -> interleaved. */
void lm_rope_permute(void *dst, const void *src, int64_t groups, int64_t D, size_t elem, bool to_gguf);
/* Rows of x [M, n_heads * D] from llama.cpp's interleaved RoPE order back to HF's, in place
 * (tmp: D floats). */
void lm_rope_unpermute(float *x, int64_t M, int64_t n_heads, int64_t D, float *tmp);
/* Gives the pages of [p, p + bytes) back to the file (they are read again if touched):
 * called once a session holds a weight in another form. No-op unless file-backed. */
void lm_release(const ld_lm *m, const void *p, size_t bytes);

/* true (and *out filled) when the training forward reads frozen parameter w from its form:
 * w has no F32 values of its own (a base loaded in place, e.g. a quantized GGUF under an
 * adapter: QLoRA) and its form is [N, K] rows of a type the codecs decode. */
bool lm_frozen_form(const ld_lm *m, const ld_tensor *w, ld_frozen_matrix *out);
/* Forms whose q/k rows are in llama.cpp's interleaved RoPE order get owned copies in HF's
 * order (the training forward and LoRA work in HF's order; inference reads either). */
ld_status lm_forms_hf_order(ld_lm *m);

/* For writing tensors that act on parameter `param` in m's GGUF export (LoRA adapters): its
 * GGUF name, the GGUF architecture, and when its output rows are reordered for llama.cpp's
 * RoPE layout (q/k of llama) the head size (else 0). False when the export has no such
 * tensor. lm_gguf_rope_rows applies that reordering to `rows` rows of row_bytes. */
bool lm_gguf_export_rows(const ld_lm *m, const char *param, char *name, size_t cap, const char **arch,
                         int64_t *rope_head_dim);
void lm_gguf_rope_rows(void *dst, const void *src, int64_t rows, int64_t head_dim, size_t row_bytes);

/* The forward up to the final norm: hidden [B, T, C] for ids [B * T] (an attached prompt
 * adapter's virtual positions already dropped). */
ld_status lm_forward_hidden(ld_lm *m, ld_tape *t, const int32_t *ids, int64_t B, int64_t T, ld_tensor **hidden);

/* What the forward asks of an attached adapter (models/adapter.c). */
struct ld_adapter;
/* Adds the LoRA branch of base matrix w (if it has one and is not merged) to *y, the base
 * product of x. */
ld_status lm_adapter_lora(struct ld_adapter *a, ld_tape *t, const ld_tensor *x, const ld_tensor *w, ld_tensor **y);
/* The model is going away: the adapter forgets it (ld_adapter_free then only frees). */
void lm_adapter_detach(struct ld_adapter *a);
/* Virtual tokens P (0 without prompt tuning). */
int64_t lm_adapter_prompt_len(const struct ld_adapter *a);
/* layer < 0: x [B, T, C] -> [B, P + T, C] with the prompt in front; layer >= 1: x with its
 * first P positions replaced by that layer's prompt (unchanged without per-layer prompts). */
ld_status lm_adapter_prompt(struct ld_adapter *a, ld_tape *t, ld_tensor *x, int layer, ld_tensor **y);

#endif

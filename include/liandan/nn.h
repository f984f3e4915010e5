/* liandan/nn.h — parameters, the autograd tape, differentiable ops, optimizers.
 *
 * A forward pass records each op on an ld_tape; ld_tape_backward() then runs the ops'
 * backward passes in reverse order. Activations and their gradients live in the tape's
 * arenas, which ld_tape_reset() rewinds (keeping the memory), so a training step allocates
 * nothing from the system after the first one.
 *
 * Parameters live in an ld_params set (one arena each for values, gradients and optimizer
 * state). A parameter with LD_TENSOR_TRAINABLE has a gradient buffer; a frozen one has none
 * and no gradient work is done for it (LoRA and prompt tuning rely on this). Names follow the
 * Hugging Face tensor names of the model ("model.layers.0.self_attn.q_proj.weight").
 *
 * Shapes: ops take row-major F32 tensors; "rows" means all leading dimensions flattened. */
#ifndef LIANDAN_NN_H
#define LIANDAN_NN_H

#include "liandan/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- parameters ------------------------------------------------------------------- */
typedef struct ld_params ld_params;

ld_status ld_params_new(ld_ctx *ctx, ld_params **out);
void ld_params_free(ld_params *p);
/* Adds a zero-initialised F32 parameter; trainable ones get a zeroed gradient. The tensor is
 * owned by the set. Errors: duplicate name, bad shape, out of memory. */
ld_status ld_params_add(ld_params *p, const char *name, int ndim, const int64_t *shape, bool trainable,
                        ld_tensor **out);
/* Adds a frozen parameter whose values are borrowed: data (the caller's, may be NULL when
 * the values are held in another form, e.g. a quantized file's blocks). Flags
 * LD_TENSOR_PARAM | LD_TENSOR_VIEW; it can never be made trainable. */
ld_status ld_params_add_view(ld_params *p, const char *name, int ndim, const int64_t *shape, void *data,
                             ld_tensor **out);
int ld_params_count(const ld_params *p);
ld_tensor *ld_params_at(const ld_params *p, int i); /* in the order added */
ld_tensor *ld_params_find(const ld_params *p, const char *name);
int64_t ld_params_numel(const ld_params *p, bool trainable_only);
/* Freezes or unfreezes every parameter whose name contains `substr` (NULL = all). A
 * parameter made trainable gets a gradient buffer. Returns how many matched, or < 0 on error
 * (out of memory; a view parameter cannot be made trainable). */
int ld_params_set_trainable(ld_params *p, const char *substr, bool trainable);
void ld_params_zero_grad(ld_params *p);
/* Mixed precision: keeps a bf16 copy of every 2-D parameter (matrix), refreshed by the
 * optimizer after each update. A tape given these params (ld_tape_set_bf16) runs its matrix
 * products in bf16 with fp32 accumulation; the fp32 values stay the master weights. */
ld_status ld_params_enable_bf16(ld_params *p);
/* Recomputes the bf16 copies from the fp32 values (after loading parameters). */
void ld_params_refresh_bf16(ld_params *p);
/* How many times faster this machine's bf16 matrix products (ld_tape_set_bf16) are than
 * fp32 ones, per flop: the CPU kernels' measurement at first use (about 1 ms), 1 where bf16
 * is widened to fp32 and multiplied at the fp32 rate (no avx512_bf16, or LD_ISA below avx512). */
double ld_bf16_gemm_speedup(void);

/* ---- the tape --------------------------------------------------------------------- */
typedef struct ld_tape ld_tape;

ld_status ld_tape_new(ld_ctx *ctx, ld_tape **out);
void ld_tape_free(ld_tape *t);
/* Forgets all recorded ops and activations (memory is kept for the next step). */
void ld_tape_reset(ld_tape *t);
/* Whether ops record themselves (off for inference: no saved state, no gradients). */
void ld_tape_set_grad_enabled(ld_tape *t, bool enabled);
/* Use the bf16 copies of p's matrices in linear ops (NULL = fp32 everywhere). */
void ld_tape_set_bf16(ld_tape *t, const ld_params *p);
/* Seed for dropout; each dropout op draws from (seed, running offset). */
void ld_tape_set_seed(ld_tape *t, uint64_t seed);
ld_ctx *ld_tape_ctx(const ld_tape *t);
/* A new zeroed F32 activation tensor in the tape's arena (e.g. for inputs). */
ld_status ld_tape_tensor(ld_tape *t, int ndim, const int64_t *shape, ld_tensor **out);
/* Runs backward from `loss` (a one-element tensor; its gradient is seeded with 1), adding
 * into the gradients of every trainable parameter that contributed. */
ld_status ld_tape_backward(ld_tape *t, ld_tensor *loss);
/* Bytes the tape's arenas hold (activation memory report). */
size_t ld_tape_memory(const ld_tape *t);

/* ---- ops (each validates shapes and returns LD_ERR_SHAPE with both shapes named) ---- */
/* y[.., N] = x[.., K] · W^T + b, with W [N, K] (nn.Linear). If w_kn, W is [K, N] instead
 * (GPT-2's Conv1D layout). b may be NULL. */
ld_status ld_op_linear(ld_tape *t, const ld_tensor *x, ld_tensor *w, ld_tensor *b, bool w_kn, ld_tensor **y);
/* out[n, :] = table[ids[n], :]; ids has n_ids entries each < table rows (checked). out is
 * [n_ids, C]. ids must stay valid until backward. */
ld_status ld_op_embedding(ld_tape *t, const int32_t *ids, int64_t n_ids, ld_tensor *table, ld_tensor **out);
ld_status ld_op_layernorm(ld_tape *t, const ld_tensor *x, ld_tensor *w, ld_tensor *b, float eps, ld_tensor **y);
ld_status ld_op_rmsnorm(ld_tape *t, const ld_tensor *x, ld_tensor *w, float eps, ld_tensor **y);
/* x is [B, T, H*D] viewed as [B, T, H, D]; positions pos0 + t. */
ld_status ld_op_rope(ld_tape *t, const ld_tensor *x, int64_t n_heads, int64_t pos0, float theta, ld_tensor **y);
/* The same with explicit rotation frequencies (RoPE scaling): pair i turns by position *
 * inv_freq[i] (D/2 values, which must stay valid until backward), cos and sin times mscale. */
ld_status ld_op_rope_freqs(ld_tape *t, const ld_tensor *x, int64_t n_heads, int64_t pos0, const float *inv_freq,
                           float mscale, ld_tensor **y);
/* q [B, T, Hq*D], k and v [B, T, Hkv*D] -> out [B, T, Hq*D]. key_len may be NULL. */
ld_status ld_op_attention(ld_tape *t, const ld_tensor *q, const ld_tensor *k, const ld_tensor *v, int64_t n_heads,
                          int64_t n_kv_heads, bool causal, const int32_t *key_len, ld_tensor **out);
typedef struct ld_attn_opts {
    int64_t n_heads, n_kv_heads;
    bool causal;
    const int32_t *key_len; /* per batch row, or NULL; must stay valid until backward */
    int64_t window;         /* sliding window (causal only): keys p - window + 1 .. p; 0 = all */
    float softcap;          /* scores become softcap * tanh(s / softcap); 0 = off */
    float scale;            /* 0 = 1 / sqrt(D) */
} ld_attn_opts;
ld_attn_opts ld_attn_default_opts(int64_t n_heads, int64_t n_kv_heads); /* causal, the rest off */
ld_status ld_op_attention_ex(ld_tape *t, const ld_tensor *q, const ld_tensor *k, const ld_tensor *v,
                             const ld_attn_opts *o, ld_tensor **out);
/* GELU, tanh approximation (GPT-2's "gelu_new"). */
ld_status ld_op_gelu(ld_tape *t, const ld_tensor *x, ld_tensor **y);
/* GELU, exact: x Phi(x) with the normal CDF via erf (BERT's and ESM's "gelu"). */
ld_status ld_op_gelu_erf(ld_tape *t, const ld_tensor *x, ld_tensor **y);
ld_status ld_op_silu(ld_tape *t, const ld_tensor *x, ld_tensor **y);
/* CLIP's quick_gelu: x sigmoid(1.702 x) (OpenAI CLIP's towers, hidden_act "quick_gelu"). */
ld_status ld_op_quick_gelu(ld_tape *t, const ld_tensor *x, ld_tensor **y);
ld_status ld_op_swiglu(ld_tape *t, const ld_tensor *gate, const ld_tensor *up, ld_tensor **y);
/* GeGLU: gelu(gate) * up (tanh GELU). */
ld_status ld_op_geglu(ld_tape *t, const ld_tensor *gate, const ld_tensor *up, ld_tensor **y);
/* y = cap * tanh(x / cap), cap > 0 (logit soft-capping). */
ld_status ld_op_softcap(ld_tape *t, const ld_tensor *x, float cap, ld_tensor **y);
ld_status ld_op_add(ld_tape *t, const ld_tensor *a, const ld_tensor *b, ld_tensor **y);
ld_status ld_op_scale(ld_tape *t, const ld_tensor *x, float alpha, ld_tensor **y);
/* y[r, :] = s[r] x[r, :] for each row r of x (all leading dimensions flattened); s has one
 * constant per row (no gradient) and must stay valid until backward. */
ld_status ld_op_scale_rows(ld_tape *t, const ld_tensor *x, const float *s, ld_tensor **y);
ld_status ld_op_dropout(ld_tape *t, const ld_tensor *x, float p, ld_tensor **y);
ld_status ld_op_softmax(ld_tape *t, const ld_tensor *x, ld_tensor **y);
/* The same elements with a new shape (a copy; its gradient flows back to x). */
ld_status ld_op_reshape(ld_tape *t, const ld_tensor *x, int ndim, const int64_t *shape, ld_tensor **y);
/* Columns [start, start+len) of x's last dimension, as a new contiguous tensor. */
ld_status ld_op_slice_cols(ld_tape *t, const ld_tensor *x, int64_t start, int64_t len, ld_tensor **y);
/* Mean cross-entropy over rows whose target != ignore_index; logits [N, V] (any leading
 * dims), targets has N entries. loss is a [1] tensor; *n_counted (may be NULL) receives the
 * number of rows that counted. targets must stay valid until backward. */
ld_status ld_op_cross_entropy(ld_tape *t, const ld_tensor *logits, const int32_t *targets, int32_t ignore_index,
                              ld_tensor **loss, int64_t *n_counted);
/* Knowledge-distillation loss of student logits against a teacher's (both [N, V], any
 * leading dims, same shape): per row whose target != ignore_index,
 *   alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, target),
 * and loss is the mean over those rows ([1] tensor; *n_counted as for cross_entropy). The
 * teacher is a constant (no gradient flows into it); it may live on another tape, but its
 * data and targets must stay valid until backward. Needs temperature > 0, 0 <= alpha <= 1.
 * alpha = 0 is ld_op_cross_entropy. */
ld_status ld_op_distill_xent(ld_tape *t, const ld_tensor *student, const ld_tensor *teacher, const int32_t *targets,
                             int32_t ignore_index, float temperature, float alpha, ld_tensor **loss,
                             int64_t *n_counted);

/* Each row of x divided by its Euclidean norm (a zero row stays zero). */
ld_status ld_op_l2_normalize(ld_tape *t, const ld_tensor *x, ld_tensor **y);
/* Symmetric InfoNCE (CLIP's loss) of a [B, E] against b [B + n_queue, E] (L2-normalised
 * embeddings; row i of a pairs with row i of b, the n_queue rows after the first B are extra
 * negatives with no gradient, e.g. a MoCo queue): logits = exp(min(log_scale, max_log_scale)) a b^T,
 * loss = (mean over a's rows of the cross-entropy against all of b + mean over b's first B rows
 * of the cross-entropy against a) / 2. log_scale is a one-element tensor (CLIP's learnable
 * logit_scale, the log of the inverse temperature); it gets no gradient while above the clamp. */
ld_status ld_op_infonce(ld_tape *t, const ld_tensor *a, const ld_tensor *b, int64_t n_queue, ld_tensor *log_scale,
                        float max_log_scale, ld_tensor **loss);
/* The same with a queue on each side (MoCo / BriVL): a, b [B, E]; a's rows are scored against
 * b's and the n_qb rows of qb [n_qb, E] (e.g. a momentum text encoder's recent embeddings),
 * b's rows against a's and the n_qa rows of qa [n_qa, E]; loss = (mean over a's rows of the
 * cross-entropy + mean over b's rows) / 2. The queues are extra negatives with no gradient;
 * qa and qb (NULL when their count is 0) must stay valid until backward. */
ld_status ld_op_infonce_queues(ld_tape *t, const ld_tensor *a, const ld_tensor *b, const float *qa, int64_t n_qa,
                               const float *qb, int64_t n_qb, ld_tensor *log_scale, float max_log_scale,
                               ld_tensor **loss);

/* ---- ops for adapting a model ------------------------------------------------------ */
/* LoRA: out = y + s (x A^T) B^T with x [.., K], y [.., N] (the frozen product's output),
 * A [r, K], B [N, r]. One op, so the branch keeps only s x A^T [.., r] besides out (no
 * [.., N] intermediates), and y's gradient is out's buffer, not a copy. */
ld_status ld_op_lora(ld_tape *t, const ld_tensor *x, const ld_tensor *y, ld_tensor *A, ld_tensor *B, float s,
                     ld_tensor **out);
/* Rows of a prompt for every sequence: x [B, T, C], rows [P, C]. add = false:
 * y [B, P + T, C] = rows then x (prompt tuning's virtual tokens); add = true (T >= P):
 * y [B, T, C] = x with rows added to positions 0..P-1 (per-layer prompts). */
ld_status ld_op_rows_insert(ld_tape *t, const ld_tensor *x, ld_tensor *rows, bool add, ld_tensor **y);
/* x [B, T, C] without its first P positions: y [B, T - P, C]. */
ld_status ld_op_rows_drop(ld_tape *t, const ld_tensor *x, int64_t P, ld_tensor **y);
/* Pools x [B, T, C] over each row's first lengths[b] positions (1..T): last = the position
 * lengths[b] - 1, mean = their average. y is [B, C]. lengths must stay valid until backward. */
ld_status ld_op_pool(ld_tape *t, const ld_tensor *x, const int32_t *lengths, bool mean, ld_tensor **y);

/* A frozen matrix kept in a block format (F16, BF16, Q8_0, Q4_K, ...: what a GGUF file
 * holds), rows of K elements in nn.Linear order [N, K]. decode turns n elements (whole
 * rows) at src into floats; it is the quantization layer's ld_dequantize, passed in by
 * whoever owns the data (the tape does not depend on the codecs). */
typedef struct ld_frozen_matrix {
    ld_dtype dtype;
    const void *data;
    int64_t N, K;
    size_t row_bytes;
    ld_status (*decode)(ld_ctx *ctx, ld_dtype type, const void *src, float *dst, int64_t n);
    const char *name;
} ld_frozen_matrix;
/* y[.., N] = x[.., K] W^T + b with W frozen in its block format: rows are decoded a slice
 * at a time into one scratch buffer the tape reuses (at most 16 MiB), never kept; backward
 * decodes them again for dx (W gets no gradient; b may be trainable or NULL). */
ld_status ld_op_linear_frozen(ld_tape *t, const ld_tensor *x, const ld_frozen_matrix *w, ld_tensor *b,
                              ld_tensor **y);
/* out[n, :] = table[ids[n], :] with the table frozen in its block format (rows decoded one
 * at a time; no gradient). */
ld_status ld_op_embedding_frozen(ld_tape *t, const int32_t *ids, int64_t n_ids, const ld_frozen_matrix *table,
                                 ld_tensor **out);

/* ---- mixture of experts (nn/ops_moe.c has the block's data flow) ---------------------- */
#define LD_MOE_MAX_K 8
typedef struct ld_moe_route_opts {
    int64_t k;             /* experts per token, 1..min(E, LD_MOE_MAX_K) */
    bool norm_topk;        /* gates = softmax over the k chosen logits (Mixtral); false: the chosen
                              probabilities of the softmax over all experts (Switch, Qwen2-MoE) */
    float capacity_factor; /* each expert takes at most ceil(factor M k / E) choices; 0 = no limit */
} ld_moe_route_opts;
/* Which expert and dispatched row each (token, choice) went to. Arrays live in the tape's
 * arena until ld_tape_reset. Dispatched rows are grouped by expert: expert e's are
 * [offset[e], offset[e + 1]), first choices of all tokens before second choices, tokens in
 * order within each. */
typedef struct ld_moe_route {
    int64_t M, E, k;
    bool norm_topk;
    int64_t capacity;  /* per expert (0 = no limit) */
    int64_t dropped;   /* choices beyond their expert's capacity (they add nothing) */
    int32_t *expert;   /* [M k] */
    int32_t *row;      /* [M k]: the dispatched row, or -1 when dropped */
    int64_t *offset;   /* [E + 1] */
    int64_t *chosen;   /* [E]: choices of each expert before dropping (the balance loss's counts) */
    int32_t *token;    /* [offset[E]]: the token of each dispatched row */
} ld_moe_route;
/* The router's top-k on logits [.., E] (rows = tokens M): gates [M, k] (differentiable in the
 * logits; a dropped choice keeps its gate but adds nothing) and *route. */
ld_status ld_op_moe_route(ld_tape *t, const ld_tensor *logits, const ld_moe_route_opts *o, ld_tensor **gates,
                          ld_moe_route *route);
/* xs [A, C]: the rows of x [.., C] (rows = the route's tokens) in dispatch order (A = kept
 * choices; A = 0 gives one unused row). */
ld_status ld_op_moe_dispatch(ld_tape *t, const ld_tensor *x, const ld_moe_route *route, ld_tensor **xs);
/* ys [A, N] = per expert e, its rows of xs [A, K] times w[e]^T (w[e]: [N, K], nn.Linear),
 * one matrix product per expert; w holds route->E weights and must stay valid until backward. */
ld_status ld_op_moe_linear(ld_tape *t, const ld_tensor *xs, const ld_moe_route *route, ld_tensor *const *w,
                           ld_tensor **ys);
/* y [M, C]: y[m] = sum over m's kept choices j of gates[m, j] ys[row(m, j)]. */
ld_status ld_op_moe_combine(ld_tape *t, const ld_tensor *ys, const ld_tensor *gates, const ld_moe_route *route,
                            ld_tensor **y);
/* The load-balancing loss (Switch / HF Mixtral): E sum_e f_e P_e, f_e = choices of e / M,
 * P_e = the mean router probability of e; 1 when perfectly balanced (k = 1). [1] tensor. */
ld_status ld_op_moe_aux_loss(ld_tape *t, const ld_tensor *logits, const ld_moe_route *route, ld_tensor **loss);
/* y[r, :] = sigmoid(s[r]) x[r, :]: x [.., N], s [.., 1] (one gate per row; Qwen2-MoE's shared
 * expert). Gradients flow to both. */
ld_status ld_op_sigmoid_gate(ld_tape *t, const ld_tensor *x, const ld_tensor *s, ld_tensor **y);
/* The router z-loss (ST-MoE): the mean over tokens of logsumexp(logits)^2. [1] tensor. */
ld_status ld_op_moe_z_loss(ld_tape *t, const ld_tensor *logits, ld_tensor **loss);

/* ---- optimizer -------------------------------------------------------------------- */
typedef struct ld_adamw_config {
    float lr, beta1, beta2, eps, weight_decay;
    float max_grad_norm; /* <= 0: no clipping */
} ld_adamw_config;
ld_adamw_config ld_adamw_default_config(void);

typedef struct ld_adamw ld_adamw;
/* Optimizer state (m, v) for every trainable parameter of p, allocated now. */
ld_status ld_adamw_new(ld_params *p, const ld_adamw_config *cfg, ld_adamw **out);
void ld_adamw_free(ld_adamw *opt);
/* Adds another parameter set (e.g. an adapter's) to the optimizer: its trainable parameters
 * get state, and the gradient norm and clipping are global over all sets. At most 4 sets. */
ld_status ld_adamw_add_params(ld_adamw *opt, ld_params *p);
/* Global gradient norm of the trainable parameters (after multiplying by grad_scale). */
double ld_params_grad_norm(ld_params *p, float grad_scale);
/* One step at learning rate lr: gradients are multiplied by grad_scale (e.g. 1/accum
 * steps) and clipped to max_grad_norm; weight decay applies to parameters with ndim >= 2
 * (never to norms and biases). *grad_norm (may be NULL) receives the pre-clip norm.
 * Returns LD_ERR_NUMERIC without touching any parameter if the norm is not finite. */
ld_status ld_adamw_step(ld_adamw *opt, float lr, float grad_scale, double *grad_norm);
int64_t ld_adamw_steps(const ld_adamw *opt);
/* m and v of a parameter (for checkpoints); NULL if it has no state. */
ld_tensor *ld_adamw_state(ld_adamw *opt, const ld_tensor *param, int which /* 0 = m, 1 = v */);
void ld_adamw_set_steps(ld_adamw *opt, int64_t steps);
/* ZeRO-1. The optimizer's flat order: its sets in order, each set's trainable parameters in
 * order, each parameter's elements row-major; ld_adamw_numel of them. ld_adamw_shard keeps state
 * only for the flat range [lo, hi) (zeroed; the earlier state is freed): a step then computes
 * the global gradient norm over every gradient as before but updates only the parameter
 * elements of that range (the caller gathers the rest from the other ranks). ld_adamw_state of
 * a parameter is then its slice's state (1-D), NULL for a parameter outside the range. */
int64_t ld_adamw_numel(const ld_adamw *opt);
ld_status ld_adamw_shard(ld_adamw *opt, int64_t lo, int64_t hi);
/* The flat range with state: [0, numel) unless sharded. */
void ld_adamw_range(const ld_adamw *opt, int64_t *lo, int64_t *hi);
/* Copies m and v of the flat range [at, at + n) (inside ld_adamw_range) out of the state into
 * m[0..n), v[0..n), or into the state from them when to_state. */
ld_status ld_adamw_state_io(ld_adamw *opt, int64_t at, int64_t n, float *m, float *v, bool to_state);

#ifdef __cplusplus
}
#endif
#endif

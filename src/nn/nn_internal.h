/* nn/nn_internal.h — layouts of the parameter set, the tape and its recorded nodes. */
#ifndef LD_NN_INTERNAL_H
#define LD_NN_INTERNAL_H

#include "kernels/kernels.h"
#include "liandan/nn.h"

/* Activation flag: this tensor's gradient is wanted (some trainable parameter is upstream). */
#define LD_TENSOR_NEEDS_GRAD (1u << 3)

struct ld_params {
    ld_ctx *ctx;
    ld_arena *values, *grads;
    ld_tensor **list;
    uint16_t **bf16; /* per parameter: its bf16 copy (2-D parameters, once enabled) or NULL */
    int count, cap;
};

/* The bf16 copy of a parameter of p, or NULL. */
const uint16_t *ld_params_bf16_of(const ld_params *p, const ld_tensor *t);

struct ld_node;
typedef ld_status (*ld_tape_node_done_fn)(void *user, int node);
typedef void (*ld_backward_fn)(ld_tape *t, struct ld_node *n);

/* One recorded op: what backward needs, nothing more. */
typedef struct ld_node {
    ld_backward_fn backward;
    const char *op;          /* for error messages and debugging */
    ld_tensor *in[3];
    ld_tensor *out;
    void *saved[2];          /* e.g. mean/rstd, lse; bf16 copies for mixed-precision linear */
    const int32_t *ids;      /* embedding ids, cross-entropy targets, attention key lengths */
    int64_t i[4];
    float f[2];
    bool flag;
} ld_node;

struct ld_tape {
    ld_ctx *ctx;
    const ld_kernels *k;
    ld_arena *act, *grads;
    ld_node *nodes;
    int n_nodes, cap_nodes;
    bool grad_enabled;
    const ld_params *bf16_params; /* mixed precision: matrices come from here in bf16 */
    uint64_t seed, dropout_offset;
    float *wscratch;              /* frozen block-format weights decoded for one product (ops_adapt.c) */
    size_t wscratch_cap;          /* floats */
    ld_tape_node_done_fn node_done; /* ld_tape_set_node_done (NULL: none) */
    void *node_done_user;
};

/* Backward calls fn(user, i) after node i's backward (nodes run from the last recorded down to
 * 0; every node is reported, also one that had nothing to do), until the hook is removed
 * (fn NULL). Once node i is reported, the gradient of a parameter whose first use in the
 * forward pass is node i is final: data-parallel training starts reducing it then
 * (train/grad_sync.c). A nonzero status from fn ends backward with it. */
void ld_tape_set_node_done(ld_tape *t, ld_tape_node_done_fn fn, void *user);
/* Recorded nodes and their inputs (for the hook's user to find each parameter's first use). */
int ld_tape_node_count(const ld_tape *t);
const ld_tensor *ld_tape_node_input(const ld_tape *t, int node, int k /* 0..2 */);

/* Shared by the files of ops (ops.c has the comments): dtype/contiguity check, a new
 * activation that needs a gradient when an input does, and recording a node (NULL when the
 * output needs no gradient, or on out-of-memory: then the output has NEEDS_GRAD set). */
ld_status ld_nn_check_f32(ld_tape *t, const char *op, const char *what, const ld_tensor *x);
ld_status ld_nn_new_out(ld_tape *t, int ndim, const int64_t *shape, const ld_tensor *i0, const ld_tensor *i1,
                        const ld_tensor *i2, ld_tensor **out);
ld_node *ld_nn_record(ld_tape *t, const char *op, ld_backward_fn bw, ld_tensor *out, ld_tensor *i0, ld_tensor *i1,
                      ld_tensor *i2);

/* Expert parallelism (docs/moe.md): out = the rows every rank of c sends this rank. x [.., C]
 * holds send_rows[q] rows for each rank q of c, in rank order (more rows may follow, unused);
 * out [sum of recv_rows, C] holds recv_rows[q] rows from each rank q in rank order (one zero
 * row when nothing arrives). One MPI_Alltoallv; backward sends the rows' gradients back the
 * same way (a collective too: with gradients on, every rank records the node). Every rank of
 * c calls it alike; c must outlive the tape's backward. */
struct ld_comm;
ld_status ld_op_moe_exchange(ld_tape *t, const ld_tensor *x, struct ld_comm *c, const int64_t *send_rows,
                             const int64_t *recv_rows, ld_tensor **out);

/* Test hook: run a tape on a specific backend (ref or cpu). */
void ld_tape_set_kernels(ld_tape *t, const ld_kernels *k);

/* The gradient buffer of x if x's gradient is wanted (allocating it, zeroed, for
 * activations), else NULL. Parameters: only when trainable. */
float *ld_tape_grad(ld_tape *t, ld_tensor *x);
bool ld_tape_needs_grad(const ld_tensor *x);

#endif

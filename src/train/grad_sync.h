/* train/grad_sync.h — data-parallel gradient all-reduce in buckets, overlapped with backward,
 * and the parameter all-gather of ZeRO-1 (docs/scale-out.md).
 *
 * The trainable parameters of the optimized sets, in the optimizer's order (sets in order, each
 * set's trainable parameters in order, elements row-major), are "the flat order": element k of
 * it is at flat[k] of one buffer of n_trainable floats. Buckets are runs of whole parameters
 * taken from the end of the flat order (the last layers finish backward first) until a bucket
 * holds bucket_bytes. During the backward of a step's last micro-batch the tape reports each
 * finished node; a parameter's gradient is final once the node of its first use in the forward
 * pass is done, and a bucket whose parameters are all final is copied into the flat buffer and
 * its all-reduce (sum) started, while backward goes on with earlier layers. finish() starts what
 * is left, waits, and writes the sums back into the gradients. */
#ifndef LD_GRAD_SYNC_H
#define LD_GRAD_SYNC_H

#include "core/comm.h"
#include "liandan/nn.h"

typedef struct ld_grad_sync ld_grad_sync;

typedef struct ld_grad_sync_stats {
    int n_buckets;
    int64_t n_trainable;   /* floats in the flat order */
    double exposed_s;      /* seconds waiting for all-reduces after backward ended (the part not overlapped) */
    double reduce_s;       /* seconds from the first bucket's start to the last one's end */
    double gather_s;       /* ZeRO-1: seconds in the parameter all-gather */
    int64_t steps;
} ld_grad_sync_stats;

/* Buckets over the trainable parameters of sets[0..n_sets) for comm (size > 1). overlap false:
 * every bucket is reduced after backward (the baseline that shows what overlap gains). The
 * sets must outlive it. */
ld_status ld_grad_sync_new(ld_ctx *ctx, ld_comm *comm, ld_params *const *sets, int n_sets, size_t bucket_bytes,
                           bool overlap, ld_grad_sync **out);
/* The same over only the trainable parameters for which keep(keep_user, x) is true (expert
 * parallelism: the dense parameters over every rank, the experts over the ranks that hold the
 * same ones). */
ld_status ld_grad_sync_new_only(ld_ctx *ctx, ld_comm *comm, ld_params *const *sets, int n_sets, size_t bucket_bytes,
                                bool overlap, bool (*keep)(void *user, const ld_tensor *x), void *keep_user,
                                ld_grad_sync **out);
void ld_grad_sync_free(ld_grad_sync *g);
/* Sum the gradients as bfloat16 from now on (on: each rank's gradient rounded to bfloat16, the
 * sum rounded at every addition, the result widened back; half the bytes of F32), or as F32. */
ld_status ld_grad_sync_set_bf16(ld_grad_sync *g, bool on);
/* Before the backward of a step's last micro-batch (the forward is on tape): finds each
 * parameter's first use and hooks the tape (with overlap). */
ld_status ld_grad_sync_arm(ld_grad_sync *g, ld_tape *tape);
/* After that backward: reduces what is left, waits for everything, writes the sums into the
 * parameters' gradients and unhooks the tape. Every rank calls it once per step. */
ld_status ld_grad_sync_finish(ld_grad_sync *g, ld_tape *tape);
/* ZeRO-1's split of the flat order: rank r owns [lo[r], lo[r + 1]) (size + 1 entries of
 * *bounds, a multiple of 16 floats apart except at the end). */
const int64_t *ld_grad_sync_bounds(const ld_grad_sync *g);
/* ZeRO-1 after each rank updated its own range: every rank gets every range's parameter
 * values (all-gather through the flat buffer) and the bf16 copies are refreshed. */
ld_status ld_grad_sync_gather_params(ld_grad_sync *g);
ld_grad_sync_stats ld_grad_sync_stats_get(const ld_grad_sync *g);
void ld_grad_sync_stats_reset(ld_grad_sync *g);

#endif

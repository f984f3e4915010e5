/* core/comm.h — the communicator of a multi-process run: rank, size and the collectives that
 * data-parallel training, ZeRO-1 and expert parallelism need (all-reduce, non-blocking
 * all-reduce, all-gather, all-to-all, broadcast, barrier, split into process groups).
 *
 * MPI sits behind it when the build found MPI (LD_HAVE_MPI, docs/scale-out.md) and the process
 * was started by a launcher (mpirun / mpiexec, or Slurm's srun): ld_comm_world initializes MPI
 * on its first call and finalizes it at process exit. Otherwise — a build without MPI, or a
 * plain `liandan ...` — the world is one rank and every collective is a local copy, so callers
 * never branch on MPI. A build without MPI started by a launcher as one of several ranks
 * refuses (ld_comm_world: LD_ERR_UNSUPPORTED) rather than run the job once per rank.
 *
 * Rules for callers:
 *   - Collectives are called by every rank of the communicator in the same order (the usual
 *     MPI contract); only the thread that made the communicator calls into it (the library's
 *     thread teams never do).
 *   - Errors are returned (MPI_ERRORS_RETURN), never an abort inside the library. A process
 *     that exits with a nonzero status while it is part of a world of more than one rank
 *     calls MPI_Abort on its way out, so the other ranks end too instead of waiting in a
 *     collective forever (a killed rank is noticed by the launcher, which ends the job).
 *   - Counts are elements of `type`; displacements likewise. */
#ifndef LD_COMM_H
#define LD_COMM_H

#include <stdbool.h>
#include <stdint.h>

#include "liandan/core.h"

typedef struct ld_comm ld_comm;

/* LD_COMM_BF16: bfloat16 values (uint16_t, the top half of an F32); a SUM adds each pair in
 * F32 and rounds the result to bfloat16 (nearest, ties to even) at every addition. */
typedef enum { LD_COMM_F32, LD_COMM_F64, LD_COMM_I64, LD_COMM_BYTE, LD_COMM_BF16 } ld_comm_type;
typedef enum { LD_COMM_SUM, LD_COMM_MAX, LD_COMM_MIN } ld_comm_op;

/* bfloat16 conversions of the gradient reduction (LD_COMM_BF16): F32 to bfloat16 rounds to
 * nearest, ties to even (NaN stays NaN, overflow gives infinity); acc[i] = bf16(acc[i] + x[i])
 * in F32, the sum the reduction computes at each step. */
void ld_comm_to_bf16(uint16_t *dst, const float *src, int64_t n);
void ld_comm_from_bf16(float *dst, const uint16_t *src, int64_t n);
void ld_comm_bf16_add(uint16_t *acc, const uint16_t *x, int64_t n);

/* Most non-blocking operations a communicator keeps in flight at once. */
#define LD_COMM_MAX_PENDING 256

/* Whether this build can run on more than one rank (it was built with MPI). */
bool ld_comm_mpi_built(void);
/* Whether the process was started by an MPI launcher (mpirun/mpiexec/srun environment), i.e.
 * whether ld_comm_world will be more than a local single rank (when MPI is built). */
bool ld_comm_launched(void);

/* A new handle on the world (every process of the job); *out is the caller's (ld_comm_free).
 * Errors (the context's message) go to ctx, which must outlive the handle. */
ld_status ld_comm_world(ld_ctx *ctx, ld_comm **out);
/* A new communicator of the ranks of c that pass the same color, ordered by key (then by rank
 * in c): process groups, e.g. the data-parallel and the expert-parallel groups. Collective. */
ld_status ld_comm_split(ld_comm *c, int color, int key, ld_comm **out);
/* Waits for c's pending operations and frees it. NULL is fine. */
void ld_comm_free(ld_comm *c);

int ld_comm_rank(const ld_comm *c);
int ld_comm_size(const ld_comm *c);

ld_status ld_comm_barrier(ld_comm *c);
/* buf[0..n) = op over every rank's buf[0..n), on every rank (in place). */
ld_status ld_comm_allreduce(ld_comm *c, void *buf, int64_t n, ld_comm_type type, ld_comm_op op);
/* Starts an in-place all-reduce (SUM) of buf[0..n); *req names it for ld_comm_test/wait. buf
 * must stay untouched until the request is complete. */
ld_status ld_comm_iallreduce(ld_comm *c, void *buf, int64_t n, ld_comm_type type, int *req);
/* Drives pending operations forward (MPI progresses only inside its calls) and sets *done
 * when request req has completed (it is then released). */
ld_status ld_comm_test(ld_comm *c, int req, bool *done);
/* Waits until request req completes (and releases it). */
ld_status ld_comm_wait(ld_comm *c, int req);
/* recv[displs[r] .. displs[r] + counts[r]) = rank r's send[0 .. counts[r]) for every rank r
 * (this rank sends counts[rank] elements). send may lie inside recv at its own place. */
ld_status ld_comm_allgatherv(ld_comm *c, const void *send, void *recv, const int64_t *counts, const int64_t *displs,
                             ld_comm_type type);
/* Rank r sends send[send_displs[q] ..+ send_counts[q]) to every rank q and receives rank q's
 * block for it at recv[recv_displs[q] ..+ recv_counts[q]) (all arrays have size(c) entries). */
ld_status ld_comm_alltoallv(ld_comm *c, const void *send, const int64_t *send_counts, const int64_t *send_displs,
                            void *recv, const int64_t *recv_counts, const int64_t *recv_displs, ld_comm_type type);
/* buf[0..n) = root's buf[0..n) on every rank. */
ld_status ld_comm_bcast(ld_comm *c, void *buf, int64_t n, ld_comm_type type, int root);

/* What the communicator did so far (for benchmarks): operations started, payload bytes handed
 * to them (per rank, before the algorithm's own traffic), seconds blocked inside blocking
 * calls and waits. */
typedef struct ld_comm_stats {
    int64_t calls, bytes;
    double wait_s;
} ld_comm_stats;
ld_comm_stats ld_comm_stats_get(const ld_comm *c);
void ld_comm_stats_reset(ld_comm *c);

#endif

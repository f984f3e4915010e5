/* core/comm.c — the communicator (core/comm.h): MPI collectives when the build has MPI and the
 * process was launched by mpirun/srun, a single local rank otherwise. */
#include "core/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LD_HAVE_MPI
#include <mpi.h>
#endif

struct ld_comm {
    ld_ctx *ctx;
    int rank, size;
    ld_comm_stats stats;
#ifdef LD_HAVE_MPI
    bool mpi;         /* backed by an MPI communicator (else: one local rank) */
    MPI_Comm comm;
    MPI_Request reqs[LD_COMM_MAX_PENDING];
    bool used[LD_COMM_MAX_PENDING];
#else
    bool used[LD_COMM_MAX_PENDING];
#endif
};

static const size_t type_size[] = {[LD_COMM_F32] = 4, [LD_COMM_F64] = 8, [LD_COMM_I64] = 8, [LD_COMM_BYTE] = 1,
                                   [LD_COMM_BF16] = 2};

bool ld_comm_launched(void) {
    /* Open MPI's mpirun, MPICH/Hydra and PMI-1/2 launchers, PMIx (srun --mpi=pmix) */
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

static bool valid_type(ld_comm_type type) {
    return (unsigned)type <= LD_COMM_BF16;
}

/* Shapes of the arguments every implementation checks alike. */
static ld_status check_counts(ld_comm *c, const char *what, const int64_t *counts, const int64_t *displs) {
    for (int r = 0; r < c->size; r++)
        if (counts[r] < 0 || displs[r] < 0)
            return ld_error(c->ctx, LD_ERR_INVALID_ARG, "comm %s: rank %d's count %lld or displacement %lld is negative",
                            what, r, (long long)counts[r], (long long)displs[r]);
    return LD_OK;
}

static int free_slot(const ld_comm *c) {
    for (int i = 0; i < LD_COMM_MAX_PENDING; i++)
        if (!c->used[i]) return i;
    return -1;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays a (quiet) NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);                /* nearest, ties to even */
}
static float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void ld_comm_bf16_add(uint16_t *acc, const uint16_t *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) acc[i] = f32_to_bf16(bf16_to_f32(acc[i]) + bf16_to_f32(x[i]));
}

void ld_comm_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

void ld_comm_from_bf16(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}

#ifdef LD_HAVE_MPI

static MPI_Datatype mpi_type(ld_comm_type t) {
    switch (t) {
    case LD_COMM_F32: return MPI_FLOAT;
    case LD_COMM_F64: return MPI_DOUBLE;
    case LD_COMM_I64: return MPI_INT64_T;
    case LD_COMM_BF16: return MPI_UINT16_T;
    default: return MPI_BYTE;
    }
}

/* MPI has no bfloat16: its sum is a user operation on 16-bit words (ld_comm_bf16_add). */
static void bf16_sum_fn(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    ld_comm_bf16_add(inout, in, *len);
}
static MPI_Op g_bf16_sum = MPI_OP_NULL;

static MPI_Op mpi_op(ld_comm_op op, ld_comm_type t) {
    if (t == LD_COMM_BF16) return g_bf16_sum;
    return op == LD_COMM_MAX ? MPI_MAX : op == LD_COMM_MIN ? MPI_MIN : MPI_SUM;
}

/* At exit: a clean exit finalizes MPI; a failing one (status != 0) aborts the whole job, so
 * that no other rank waits in a collective for this one. */
static void mpi_at_exit(int status, void *arg) {
    (void)arg;
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (status != 0 && size > 1) {
        fprintf(stderr, "liandan: rank exiting with status %d: aborting the MPI job\n", status);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    MPI_Finalize();
}

static ld_status mpi_fail(ld_comm *c, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return ld_error(c->ctx, LD_ERR_IO, "MPI %s on rank %d of %d: %s", what, c->rank, c->size, msg);
}

static ld_status mpi_init(ld_ctx *ctx) {
    int inited = 0, fin = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&fin);
    if (fin) return ld_error(ctx, LD_ERR_STATE, "MPI was already finalized in this process");
    if (inited) return LD_OK;
    int provided = 0;
    /* only the thread that made a communicator calls MPI (the thread teams never do) */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ld_error(ctx, LD_ERR_IO, "MPI_Init_thread failed (is the launcher's environment complete?)");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (MPI_Op_create(bf16_sum_fn, 1, &g_bf16_sum) != MPI_SUCCESS) g_bf16_sum = MPI_OP_NULL;
    on_exit(mpi_at_exit, NULL);
    return LD_OK;
}

static ld_status wrap_mpi(ld_comm *c, MPI_Comm comm, ld_comm **out) {
    c->mpi = true, c->comm = comm;
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, &c->rank);
    MPI_Comm_size(comm, &c->size);
    *out = c;
    return LD_OK;
}
#endif

bool ld_comm_mpi_built(void) {
#ifdef LD_HAVE_MPI
    return true;
#else
    return false;
#endif
}

ld_status ld_comm_world(ld_ctx *ctx, ld_comm **out) {
    if (!out) return LD_ERR_INVALID_ARG;
    *out = NULL;
    ld_comm *c = ld_calloc(ctx, 1, sizeof *c);
    if (!c) return ld_ctx_status(ctx);
    c->ctx = ctx, c->rank = 0, c->size = 1;
#ifdef LD_HAVE_MPI
    if (ld_comm_launched()) {
        ld_status st = mpi_init(ctx);
        MPI_Comm dup = MPI_COMM_NULL;
        int rc = st ? MPI_SUCCESS : MPI_Comm_dup(MPI_COMM_WORLD, &dup);
        if (!st && rc != MPI_SUCCESS) st = mpi_fail(c, rc, "Comm_dup");
        if (st) {
            ld_free(ctx, c);
            return st;
        }
        return wrap_mpi(c, dup, out);
    }
#else
    /* a launcher started several copies of a build without MPI: each would run the whole job
     * alone (and write the same files) */
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!n) n = getenv("PMI_SIZE");
    if (n && atoi(n) > 1) {
        ld_free(ctx, c);
        return ld_error(ctx, LD_ERR_UNSUPPORTED,
                        "started as one of %d ranks, but this liandan was built without MPI (install libopenmpi-dev "
                        "and rebuild: docs/scale-out.md)", atoi(n));
    }
#endif
    *out = c;
    return LD_OK;
}

ld_status ld_comm_split(ld_comm *c, int color, int key, ld_comm **out) {
    if (!c || !out || color < 0) return LD_ERR_INVALID_ARG;
    *out = NULL;
    ld_comm *n = ld_calloc(c->ctx, 1, sizeof *n);
    if (!n) return ld_ctx_status(c->ctx);
    n->ctx = c->ctx, n->rank = 0, n->size = 1;
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        MPI_Comm sub = MPI_COMM_NULL;
        int rc = MPI_Comm_split(c->comm, color, key, &sub);
        if (rc != MPI_SUCCESS) {
            ld_free(c->ctx, n);
            return mpi_fail(c, rc, "Comm_split");
        }
        return wrap_mpi(n, sub, out);
    }
#else
    (void)key;
#endif
    *out = n;
    return LD_OK;
}

void ld_comm_free(ld_comm *c) {
    if (!c) return;
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        for (int i = 0; i < LD_COMM_MAX_PENDING; i++)
            if (c->used[i]) MPI_Wait(&c->reqs[i], MPI_STATUS_IGNORE);
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Comm_free(&c->comm);
    }
#endif
    ld_free(c->ctx, c);
}

int ld_comm_rank(const ld_comm *c) {
    return c ? c->rank : 0;
}
int ld_comm_size(const ld_comm *c) {
    return c ? c->size : 1;
}

ld_comm_stats ld_comm_stats_get(const ld_comm *c) {
    return c ? c->stats : (ld_comm_stats){0};
}
void ld_comm_stats_reset(ld_comm *c) {
    if (c) c->stats = (ld_comm_stats){0};
}

#ifdef LD_HAVE_MPI
/* Accounts one operation of `bytes` payload that blocked from t0 until now (t0 < 0: did not block). */
static void account(ld_comm *c, size_t bytes, double t0) {
    c->stats.calls++;
    c->stats.bytes += (int64_t)bytes;
    if (t0 >= 0) c->stats.wait_s += ld_time_now() - t0;
}
#endif

ld_status ld_comm_barrier(ld_comm *c) {
    if (!c) return LD_ERR_INVALID_ARG;
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        double t0 = ld_time_now();
        int rc = MPI_Barrier(c->comm);
        account(c, 0, t0);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "Barrier");
    }
#endif
    return LD_OK;
}

ld_status ld_comm_allreduce(ld_comm *c, void *buf, int64_t n, ld_comm_type type, ld_comm_op op) {
    if (!c || n < 0 || (n > 0 && !buf) || !valid_type(type) || (unsigned)op > LD_COMM_MIN) return LD_ERR_INVALID_ARG;
    if (type == LD_COMM_BYTE) return ld_error(c->ctx, LD_ERR_INVALID_ARG, "comm allreduce: bytes cannot be reduced");
    if (type == LD_COMM_BF16 && op != LD_COMM_SUM)
        return ld_error(c->ctx, LD_ERR_INVALID_ARG, "comm allreduce: bfloat16 values are only summed");
#ifdef LD_HAVE_MPI
    if (type == LD_COMM_BF16 && c->mpi && g_bf16_sum == MPI_OP_NULL)
        return ld_error(c->ctx, LD_ERR_UNSUPPORTED, "comm allreduce: MPI did not create the bfloat16 sum");
#endif
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        double t0 = ld_time_now();
        size_t es = type_size[type];
        for (int64_t off = 0; off < n;) { /* MPI counts are ints: chunks of at most 2^30 elements */
            int k = (int)(n - off < ((int64_t)1 << 30) ? n - off : ((int64_t)1 << 30));
            int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)off * es, k, mpi_type(type), mpi_op(op, type), c->comm);
            if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "Allreduce");
            off += k;
        }
        account(c, (size_t)n * es, t0);
    }
#endif
    return LD_OK;
}

ld_status ld_comm_iallreduce(ld_comm *c, void *buf, int64_t n, ld_comm_type type, int *req) {
    if (!c || !req || n < 0 || (n > 0 && !buf) || !valid_type(type) || type == LD_COMM_BYTE) return LD_ERR_INVALID_ARG;
    *req = -1;
    int slot = free_slot(c);
    if (slot < 0)
        return ld_error(c->ctx, LD_ERR_LIMIT, "comm: more than %d non-blocking operations in flight", LD_COMM_MAX_PENDING);
    if (n > INT32_MAX)
        return ld_error(c->ctx, LD_ERR_LIMIT, "comm iallreduce: %lld elements (at most 2^31-1 per request)", (long long)n);
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        if (type == LD_COMM_BF16 && g_bf16_sum == MPI_OP_NULL)
            return ld_error(c->ctx, LD_ERR_UNSUPPORTED, "comm iallreduce: MPI did not create the bfloat16 sum");
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, mpi_type(type), mpi_op(LD_COMM_SUM, type), c->comm,
                                &c->reqs[slot]);
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "Iallreduce");
        account(c, (size_t)n * type_size[type], -1);
    }
#endif
    c->used[slot] = true;
    *req = slot;
    return LD_OK;
}

static ld_status check_req(ld_comm *c, int req) {
    if (!c || req < 0 || req >= LD_COMM_MAX_PENDING || !c->used[req])
        return c ? ld_error(c->ctx, LD_ERR_INVALID_ARG, "comm: %d names no pending request", req) : LD_ERR_INVALID_ARG;
    return LD_OK;
}

ld_status ld_comm_test(ld_comm *c, int req, bool *done) {
    ld_status st = check_req(c, req);
    if (st || !done) return st ? st : LD_ERR_INVALID_ARG;
    *done = true;
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        int flag = 0;
        int rc = MPI_Test(&c->reqs[req], &flag, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            c->used[req] = false;
            return mpi_fail(c, rc, "Test");
        }
        *done = flag != 0;
    }
#endif
    if (*done) c->used[req] = false;
    return LD_OK;
}

ld_status ld_comm_wait(ld_comm *c, int req) {
    ld_status st = check_req(c, req);
    if (st) return st;
    c->used[req] = false;
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        double t0 = ld_time_now();
        int rc = MPI_Wait(&c->reqs[req], MPI_STATUS_IGNORE);
        c->stats.wait_s += ld_time_now() - t0;
        if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "Wait");
    }
#endif
    return LD_OK;
}

#ifdef LD_HAVE_MPI
/* counts/displs as MPI ints, or an error naming the operation when one does not fit. */
static ld_status to_ints(ld_comm *c, const char *what, const int64_t *a, int *out) {
    for (int r = 0; r < c->size; r++) {
        if (a[r] > INT32_MAX)
            return ld_error(c->ctx, LD_ERR_LIMIT, "comm %s: rank %d's count or displacement %lld exceeds 2^31-1", what, r,
                            (long long)a[r]);
        out[r] = (int)a[r];
    }
    return LD_OK;
}
#endif

ld_status ld_comm_allgatherv(ld_comm *c, const void *send, void *recv, const int64_t *counts, const int64_t *displs,
                             ld_comm_type type) {
    if (!c || !recv || !counts || !displs || !valid_type(type)) return LD_ERR_INVALID_ARG;
    ld_status st = check_counts(c, "allgatherv", counts, displs);
    if (st) return st;
    size_t es = type_size[type];
    char *own = (char *)recv + (size_t)displs[c->rank] * es;
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        int *ic = ld_alloc(c->ctx, 2 * sizeof(int) * (size_t)c->size);
        if (!ic) return ld_ctx_status(c->ctx);
        int *id = ic + c->size;
        if (!(st = to_ints(c, "allgatherv", counts, ic)) && !(st = to_ints(c, "allgatherv", displs, id))) {
            double t0 = ld_time_now();
            int rc = MPI_Allgatherv(send == own ? MPI_IN_PLACE : send, ic[c->rank], mpi_type(type), recv, ic, id,
                                    mpi_type(type), c->comm);
            int64_t total = 0;
            for (int r = 0; r < c->size; r++) total += counts[r];
            account(c, (size_t)total * es, t0);
            if (rc != MPI_SUCCESS) st = mpi_fail(c, rc, "Allgatherv");
        }
        ld_free(c->ctx, ic);
        return st;
    }
#endif
    if (send && send != own && counts[0]) memmove(own, send, (size_t)counts[0] * es);
    return LD_OK;
}

ld_status ld_comm_alltoallv(ld_comm *c, const void *send, const int64_t *send_counts, const int64_t *send_displs,
                            void *recv, const int64_t *recv_counts, const int64_t *recv_displs, ld_comm_type type) {
    if (!c || !send_counts || !send_displs || !recv_counts || !recv_displs || !valid_type(type)) return LD_ERR_INVALID_ARG;
    ld_status st = check_counts(c, "alltoallv (send)", send_counts, send_displs);
    if (!st) st = check_counts(c, "alltoallv (receive)", recv_counts, recv_displs);
    if (st) return st;
    size_t es = type_size[type];
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        int *a = ld_alloc(c->ctx, 4 * sizeof(int) * (size_t)c->size);
        if (!a) return ld_ctx_status(c->ctx);
        int *sc = a, *sd = a + c->size, *rc_ = a + 2 * c->size, *rd = a + 3 * c->size;
        if (!(st = to_ints(c, "alltoallv", send_counts, sc)) && !(st = to_ints(c, "alltoallv", send_displs, sd)) &&
            !(st = to_ints(c, "alltoallv", recv_counts, rc_)) && !(st = to_ints(c, "alltoallv", recv_displs, rd))) {
            double t0 = ld_time_now();
            int rc = MPI_Alltoallv(send, sc, sd, mpi_type(type), recv, rc_, rd, mpi_type(type), c->comm);
            int64_t total = 0;
            for (int r = 0; r < c->size; r++) total += send_counts[r];
            account(c, (size_t)total * es, t0);
            if (rc != MPI_SUCCESS) st = mpi_fail(c, rc, "Alltoallv");
        }
        ld_free(c->ctx, a);
        return st;
    }
#endif
    if (send_counts[0] != recv_counts[0])
        return ld_error(c->ctx, LD_ERR_INVALID_ARG, "comm alltoallv: one rank sends %lld elements to itself but expects %lld",
                        (long long)send_counts[0], (long long)recv_counts[0]);
    if (send_counts[0])
        memmove((char *)recv + (size_t)recv_displs[0] * es, (const char *)send + (size_t)send_displs[0] * es,
                (size_t)send_counts[0] * es);
    return LD_OK;
}

ld_status ld_comm_bcast(ld_comm *c, void *buf, int64_t n, ld_comm_type type, int root) {
    if (!c || n < 0 || (n > 0 && !buf) || !valid_type(type)) return LD_ERR_INVALID_ARG;
    if (root < 0 || root >= c->size)
        return ld_error(c->ctx, LD_ERR_INVALID_ARG, "comm bcast: root %d is not a rank of %d", root, c->size);
#ifdef LD_HAVE_MPI
    if (c->mpi) {
        double t0 = ld_time_now();
        size_t es = type_size[type];
        for (int64_t off = 0; off < n;) {
            int k = (int)(n - off < ((int64_t)1 << 30) ? n - off : ((int64_t)1 << 30));
            int rc = MPI_Bcast((char *)buf + (size_t)off * es, k, mpi_type(type), root, c->comm);
            if (rc != MPI_SUCCESS) return mpi_fail(c, rc, "Bcast");
            off += k;
        }
        account(c, (size_t)n * es, t0);
    }
#endif
    return LD_OK;
}

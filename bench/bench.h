/* bench/bench.h — `liandan bench`: machine limits measured in the same run as the engine's
 * throughput, and the helpers every benchmark shares. */
#ifndef LD_BENCH_H
#define LD_BENCH_H

#include <stdbool.h>
#include <stdio.h>

#include "kernels/kernels.h"
#include "liandan/liandan.h"

typedef struct ld_machine_limits {
    int threads;
    double fma_f32_gflops;   /* fp32 FMA peak, GFLOP/s (2 flops per FMA lane) */
    double dot_bf16_gflops;  /* vdpbf16ps peak, GFLOP/s (0 if the kernels' level lacks it) */
    double dot_i8_gops;      /* int8 dot peak, GOP/s, of the instructions the int8 kernels of the
                              * active level use: vpdpbusd zmm / ymm (AVX-VNNI), or AVX2's
                              * vpmaddubsw + vpmaddwd + vpaddd */
    double bw_triad_gbs;     /* a[i] = b[i] + s*c[i] with non-temporal stores, GB/s counting 3 streams */
    double bw_read_gbs;      /* read-only sum, GB/s */
    /* spread of the warmed trials behind each limit: (best - worst) / best */
    double fma_spread, bf16_spread, i8_spread, triad_spread, read_spread;
    double llc_bytes;        /* the last-level cache the bandwidth working sets are sized against */
    double bw_bytes;         /* bytes the bandwidth trials touch (>= LD_BENCH_LLC_FACTOR x llc) */
    bool noisy;              /* some spread above LD_BENCH_NOISY: the machine was busy */
} ld_machine_limits;

/* Limits are the best of LD_BENCH_TRIALS warmed trials; a spread above LD_BENCH_NOISY
 * between them flags the run. Bandwidth is measured on at least LD_BENCH_LLC_FACTOR times
 * the last-level cache, and decode rows whose weights are smaller than that are reported
 * as cache-resident. */
#define LD_BENCH_TRIALS 7
#define LD_BENCH_NOISY 0.10
#define LD_BENCH_LLC_FACTOR 4

/* Measures the limits on `threads` OpenMP threads (a few seconds). */
void ld_bench_measure_limits(int threads, ld_machine_limits *out);
/* The last-level cache in bytes: the larger of what sysfs lists (one cache per distinct
 * shared_cpu_list) and sysconf(_SC_LEVEL3_CACHE_SIZE); 32 MiB when neither says. */
double ld_bench_llc_bytes(void);
/* The fp32 FMA peak alone, in GFLOP/s (about 0.1 s; for MFU lines during training). */
double ld_bench_quick_fma_peak(int threads);
/* Raw peak and streaming loops for one ISA (bench/limits_avx512.c, bench/limits_avx2.c).
 * Each peak loop returns seconds for `iters` iterations on the calling thread and does
 * *_per_iter operations per iteration (2 per multiply-add); a NULL loop means the ISA has no
 * such instruction. */
typedef struct ld_bench_loops {
    const char *isa;
    double (*fma)(long iters);
    double (*dot_bf16)(long iters);
    double (*dot_i8)(long iters);
    double fma_per_iter, bf16_per_iter, i8_per_iter;
    /* a[i] = b[i] + s * c[i] with non-temporal stores (a 64-byte aligned; sfence at the end) */
    void (*triad)(float *a, const float *b, const float *c, float s, size_t n);
    float (*read)(const float *a, size_t n);
} ld_bench_loops;
extern const ld_bench_loops ld_bench_loops_avx512, ld_bench_loops_avx2;
/* vpdpbusd on ymm (bench/limits_avxvnni.c): the AVX2 level's int8 loop on AVX-VNNI CPUs. */
double ld_bench_i8_loop_avxvnni(long iters);
#define LD_BENCH_I8_AVXVNNI_PER_ITER (12 * 32 * 2)
/* The NEON fp32 FMA loop (bench/limits_neon.c): 16 accumulators of 4 lanes per iteration. */
double ld_bench_fma_loop_neon(long iters);
#define LD_BENCH_FMA_NEON_PER_ITER (16 * 4 * 2)
/* The loops of ISA level isa (kernels/kernels.h; scalar: streams only, no peak loop). */
const ld_bench_loops *ld_bench_loops_at(ld_isa isa);
/* Peak loops: the kernels' level (ld_isa_active(), so LD_ISA=avx2 measures the AVX2 peaks
 * the AVX2 kernels are held to). */
const ld_bench_loops *ld_bench_loops_get(void);
/* Streaming loops: the CPU's widest (bandwidth is the machine's whatever the kernels' level). */
const ld_bench_loops *ld_bench_stream_loops(void);

/* Runs fn(arg) `reps` times and returns the median seconds of one run (after one warm-up). */
double ld_bench_median(void (*fn)(void *), void *arg, int reps);
/* The median of v[0..n) (n <= 64; v is not reordered). */
double ld_bench_median_of(const double *v, int n);

/* The GPT-2-124M shape (12 layers, 768 wide, 12 heads, vocab 50304, tied head, context
 * 1024) that `bench train` and `bench infer` build with random weights. */
ld_lm_config ld_bench_gpt2_124m(void);

/* The train suite's workloads, for other suites (contention): a training step (forward,
 * backward, AdamW) at batch B x T, and 32 decode steps at batch 1 from an empty cache.
 * Each records its first failure in st and then does nothing. */
typedef struct ld_bench_train_run {
    ld_lm *m;
    ld_tape *tape;
    ld_adamw *opt;
    int32_t *ids, *targets;
    int64_t B, T;
    ld_status st;
} ld_bench_train_run;
ld_status ld_bench_train_setup(ld_ctx *ctx, const ld_lm_config *cfg, bool bf16, int64_t B, int64_t T,
                               ld_bench_train_run *r);
void ld_bench_train_step(void *arg); /* ld_bench_train_run * */
void ld_bench_train_teardown(ld_bench_train_run *r);
typedef struct ld_bench_gen_run {
    ld_lm_session *s;
    int32_t tok;
    int64_t n;
    ld_status st;
} ld_bench_gen_run;
void ld_bench_decode_steps(void *arg); /* ld_bench_gen_run *: 32 steps, n = 32 */

/* A result line: printed as a table row, or collected as JSON when json is set. */
typedef struct ld_bench_report {
    bool json;
    int rows;
    FILE *out;
    int failures; /* rows a suite could not measure (it printed why); `liandan bench` exits 1 */
} ld_bench_report;
void ld_bench_report_begin(ld_bench_report *r, const ld_machine_limits *lim);
/* value in `unit`; ratio to the relevant limit (0..1, or negative when not applicable) */
void ld_bench_report_row(ld_bench_report *r, const char *group, const char *name, double value,
                         const char *unit, double ratio, const char *limit_name);
void ld_bench_report_end(ld_bench_report *r);

#define LD_BENCH_MAX_TYPES 8

/* Options shared by the benchmark suites. */
typedef struct ld_bench_opts {
    int threads;
    int reps;
    bool json;
    const char *filter; /* run only rows whose group contains it, NULL = all */
    const char *model;  /* bench infer: a model directory or GGUF file, NULL = built in memory */
    ld_dtype types[LD_BENCH_MAX_TYPES]; /* bench infer: weight forms, n_types = 0: defaults */
    int n_types;
    bool all_types;     /* bench infer --type all: F32, F16 and every type ld_quant_type_supported */
    bool mpi;           /* bench train --mpi: data-parallel steps under mpirun (bench_train_mpi.c) */
    int64_t depth;               /* bench infer: decode after this many tokens of context (0: an 8-token prompt) */
    ld_dtype kv_type_k, kv_type_v; /* bench infer / serve: KV cache types (LD_F32 default) */
} ld_bench_opts;


/* A group of rows for `liandan bench kernels` (one file each: bench_matmul.c, ...). */
typedef void (*ld_bench_suite_fn)(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
/* Runs fn with the team of a context of o->threads threads current, as the library's own
 * calls do: for suites that call kernels directly (bench_team.c). */
void ld_bench_on_team(ld_bench_suite_fn fn, const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
/* `bench train --mpi` (bench_train_mpi.c): run by every rank; rank 0's report is printed.
 * ld_bench_mpi_rank: this process's rank in the world (MPI is initialised when a launcher
 * started the process), 0 without one, -1 on an error (the context's message). */
int ld_bench_mpi_rank(ld_ctx *ctx);
void ld_bench_train_mpi(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
void ld_bench_suite_matmul(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);

/* Causal attention forward/backward and a decode step (bench_attention.c). */
void ld_bench_suite_attention(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);

/* Top-level suites with their own rows (bench_train.c, ...). */
void ld_bench_train(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
void ld_bench_contention(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
/* KV-cached inference of a whole model: decode vs the bandwidth limit, prefill vs the FMA
 * peak, per weight form (bench_infer.c). */
void ld_bench_infer(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
/* Continuous batching: aggregate decode tokens/s at 1, 4, 16 streams (bench_serve.c). */
void ld_bench_serve(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
void ld_bench_tokenizer(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
/* Masked-LM training step of the encoder at the BERT-base shape, fp32 and bf16 (bench_mlm.c). */
void ld_bench_mlm(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
ld_encoder_config ld_bench_bert_base(void);
/* The image-text model: training step pairs/s and MFU at the emoji_clip and ViT-B/32 shapes,
 * the image pipeline's images/s against each step's, text -> image search ms/query
 * (bench_clip.c). */
void ld_bench_clip(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
/* Full fine-tuning vs LoRA step time, and peak memory of full / LoRA / QLoRA (bench_finetune.c). */
void ld_bench_finetune(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
/* Norms, AdamW, cross-entropy, GELU in GB/s against triad bandwidth (bench_ops.c). */
void ld_bench_suite_ops(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);
void ld_bench_suite_quant(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r);

#endif

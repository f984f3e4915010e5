/* quant/qgemm.h — the blocked int8 GEMM on block-quantized weights (library-internal):
 * used by ld_qmatmul for products of many rows. See qgemm.c for the arithmetic. */
#ifndef LD_QGEMM_H
#define LD_QGEMM_H

#include "quant/quant_blocks.h"

/* Rows from which ld_qmatmul uses this GEMM rather than the row-dot kernels (which read
 * each weight block once per 4 rows; measured with `liandan bench kernels --filter quant`). */
#define LD_QGEMM_MIN_M 16

/* Products smaller than this many multiply-adds (M x N x K) run on the calling thread: waking
 * the team costs more than they do (a small model's decode step is dozens of them). */
#define LD_QMM_PAR_MIN ((int64_t)1 << 18)
/* Likewise for quantizing M x K activations (a few rows take microseconds). */
#define LD_QACT_PAR_MIN ((int64_t)1 << 16)

/* The forms a weight panel takes (every form is LD_QGEMM_NR columns wide; see below). */
typedef enum ld_qpanel_form {
    LD_QPANEL_BYTES = 0, /* one byte per level (any type; ld_qgemm_isa.pack) */
    LD_QPANEL_Q4_K,      /* compact forms (quant/qgemm_pack.c): levels at their own width */
    LD_QPANEL_Q5_K,
    LD_QPANEL_Q6_K,
    LD_QPANEL_Q4_0,
    LD_QPANEL_COUNT
} ld_qpanel_form;
/* A compact form is a run of units along K, each `bytes` long for `k` of K and a panel's
 * LD_QGEMM_NR columns (layouts: quant/qgemm_pack.c). */
typedef struct ld_qpanel_unit {
    int k;
    int bytes;
} ld_qpanel_unit;
extern const ld_qpanel_unit LD_QPANEL_UNITS[LD_QPANEL_COUNT];
#define LD_QGEMM_K4_SB_BYTES (960 + 8 * 768)
#define LD_QGEMM_K5_SB_BYTES (960 + 8 * 960)
#define LD_QGEMM_K6_SB_BYTES (864 + 16 * 576)
#define LD_QGEMM_Q40_BYTES (768 + 96)

typedef struct ld_qgemm_format {
    ld_dtype type;
    int group;      /* elements per scale: 32, or 16 (Q6_K) */
    int zp;         /* zero point of the levels */
    bool has_min;   /* per-group offsets o (Q4_K, Q5_K) */
    ld_levels_fn levels;
    ld_qpanel_form packed; /* the form ld_qpack keeps */
    bool packable;         /* ld_qpack takes this type (its packed form costs few extra bits) */
    int maxl;              /* the largest level: the AVX2 byte kernels' int16 sums are sized by it */
} ld_qgemm_format;
/* NULL when type t has no GEMM form. */
const ld_qgemm_format *ld_qgemm_format_get(ld_dtype t);

/* Per activation group: its scale, -zp * (sum of its int8 values), and scale * sum (the
 * factor of the offsets). 16 bytes so one load broadcasts each field. */
typedef struct ld_qgemm_agroup {
    float d;
    int32_t zsum;
    float dsum;
    float pad_;
} ld_qgemm_agroup;
/* Quantizes n activations (a multiple of f->group) to int8 q[n] and groups g[n / group]:
 * d = max|x| / 127, q = round-to-nearest-even(x / d) clamped to +-127. */
typedef void (*ld_qgemm_quantize_fn)(const ld_qgemm_format *f, const float *x, int64_t n, int8_t *q, ld_qgemm_agroup *g);
void ld_qgemm_quantize_act_ref(const ld_qgemm_format *f, const float *x, int64_t n, int8_t *q, ld_qgemm_agroup *g);
void ld_qgemm_quantize_act_avx512(const ld_qgemm_format *f, const float *x, int64_t n, int8_t *q, ld_qgemm_agroup *g);

/* The packed weight panel the AVX-512 kernel reads: LD_QGEMM_NR columns; per group of K,
 * the levels interleaved as [group/4][NR/16][16 columns][4 bytes] (one vpdpbusd operand
 * per 64 bytes), then NR scales and, with mins, NR offsets. Padding columns are zero. */
#define LD_QGEMM_NR 48
#define LD_QGEMM_MR 4
size_t ld_qgemm_group_bytes(const ld_qgemm_format *f);
/* C[mr rows, NR cols] (row stride ldc; column c stored only where bit c of `cmask` is set)
 * = the product of ngroups groups of the panel with activations q (rows `qs` bytes apart)
 * and their groups g (rows `gs` entries apart), 1 <= mr <= MR. */
void ld_qgemm_kernel_avx512(const ld_qgemm_format *f, int mr, int64_t ngroups, const uint8_t *panel, const int8_t *q,
                            size_t qs, const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask);

/* Packs columns [n0, n0 + nc) of W (rows of `wrow` bytes, K wide) into a byte panel with
 * `tmp` (ld_qgemm_prepack_tmp_bytes: the levels of LD_QGEMM_PACK_ROWS rows). */
typedef void (*ld_qgemm_pack_fn)(const ld_qgemm_format *f, const uint8_t *W, size_t wrow, int64_t n0, int nc,
                                 int64_t K, uint8_t *panel, uint8_t *tmp);
/* C[mr rows, NR cols] (row stride ldc; column c stored only where bit c of `cmask` is set)
 * = the product of a panel (K deep, of the form the kernel is registered for) with
 * activations q (rows `qs` bytes apart) and their groups g (rows `gs` entries apart),
 * 1 <= mr <= MR. */
typedef void (*ld_qgemm_kernel_fn)(const ld_qgemm_format *f, int mr, int64_t K, const uint8_t *panel, const int8_t *q,
                                   size_t qs, const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask);
/* A kernel (ld_qgemm_kernel_fn) that also prefetches pf_lines 64-byte lines per group of K
 * from pf on (group b: lines [b * pf_lines, (b + 1) * pf_lines)) into L2 while it computes:
 * the driver hands it a share of the next prepacked panel, so that reading the weights from
 * memory overlaps the products of several row tiles. Same results as the kernel. */
typedef void (*ld_qgemm_kernel_pf_fn)(const ld_qgemm_format *f, int mr, int64_t K, const uint8_t *panel, const int8_t *q,
                                      size_t qs, const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc,
                                      uint64_t cmask, const uint8_t *pf, int pf_lines);
/* One ISA's int8 GEMM: activation quantizer, byte-panel packer, a kernel per panel form
 * (NULL: that form is not computed at this level), and optionally the same kernel with a
 * prefetch (kernel_pf, NULL: kernel is used). Each gives the reference's bits. */
typedef struct ld_qgemm_isa {
    ld_qgemm_quantize_fn quantize_act;
    ld_qgemm_pack_fn pack;
    ld_qgemm_kernel_fn kernel[LD_QPANEL_COUNT];
    ld_qgemm_kernel_pf_fn kernel_pf[LD_QPANEL_COUNT];
} ld_qgemm_isa;
/* The int8 GEMM of level isa (each part from the highest level up to isa that has it and
 * whose instructions this CPU runs), or NULL when that level has none (LD_ISA_SCALAR). */
const ld_qgemm_isa *ld_qgemm_isa_at(ld_isa isa);
/* The int8 GEMM of level isa when it computes format f (every level's byte kernel takes every
 * format), else NULL. */
const ld_qgemm_isa *ld_qgemm_isa_for(ld_isa isa, const ld_qgemm_format *f);
extern const ld_qgemm_isa ld_qgemm_isa_avx2;    /* qgemm_avx2.c */
extern const ld_qgemm_isa ld_qgemm_isa_avxvnni; /* qgemm_avxvnni.c (AVX2 level, AVX-VNNI CPUs) */
extern const ld_qgemm_isa ld_qgemm_isa_avx512;  /* qgemm_avx512.c + qgemm_k4_avx512.c (VNNI) */

/* Scratch for ld_qgemm_run (includes 64 bytes of alignment slack). */
size_t ld_qgemm_scratch_bytes(const ld_qgemm_format *f, int64_t M, int64_t K, int threads);
/* y[M, N] = x[M, K] . W^T for W of format f (N rows of `wrow` bytes) with the int8 GEMM of
 * `isa` (NULL: the scalar reference, no packing). Same result either way. */
void ld_qgemm_run(const ld_qgemm_format *f, const uint8_t *W, size_t wrow, int64_t N, int64_t K, const float *x,
                  int64_t M, float *y, void *scratch, int threads, const ld_qgemm_isa *isa);

/* Packs columns [n0, n0 + nc) of W (rows of `wrow` bytes of the form's type, K wide) into a
 * panel of compact form `form` (K / unit.k units; columns past nc zero). */
void ld_qgemm_pack_compact(ld_qpanel_form form, const uint8_t *W, size_t wrow, int64_t n0, int nc, int64_t K,
                           uint8_t *panel);
/* The AVX-512 kernel of Q4_K panels (qgemm_k4_avx512.c): as ld_qgemm_kernel_avx512 over nsb
 * super-blocks (activation groups of 32). */
void ld_qgemm_k4_kernel_avx512(int mr, int64_t nsb, const uint8_t *panel, const int8_t *q, size_t qs,
                               const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask);

/* Prepacked weights: all panels of W, packed once (ld_qgemm_packed_bytes, 64-byte aligned)
 * and multiplied with any number of rows by the same microkernel, with no unpacking per
 * call, in the type's packed form (byte panels for Q8_0, a compact form for the others).
 * tmp: threads x ld_qgemm_prepack_tmp_bytes. Same results as ld_qgemm_run.
 * Scratch of ld_qgemm_run_packed: ld_qgemm_scratch_bytes(f, M, K, 0). */
/* Weight rows whose levels the byte-panel packers hold at once (the AVX2 packer transposes
 * 8 columns at a time), each in ld_qgemm_levels_row_bytes: K levels, then K / group scales
 * and as many offsets. */
#define LD_QGEMM_PACK_ROWS 8
static inline size_t ld_qgemm_levels_row_bytes(const ld_qgemm_format *f, int64_t K) {
    return ((size_t)K + 8 * (size_t)(K / f->group) + 63) & ~(size_t)63;
}
size_t ld_qgemm_packed_bytes(const ld_qgemm_format *f, int64_t N, int64_t K);
size_t ld_qgemm_prepack_tmp_bytes(const ld_qgemm_format *f, int64_t K);
void ld_qgemm_prepack(const ld_qgemm_format *f, const uint8_t *W, size_t wrow, int64_t N, int64_t K, uint8_t *P,
                      uint8_t *tmp, int threads, const ld_qgemm_isa *isa);
void ld_qgemm_run_packed(const ld_qgemm_format *f, const uint8_t *P, int64_t N, int64_t K, const float *x, int64_t M,
                         float *y, void *scratch, int threads, const ld_qgemm_isa *isa);

#endif

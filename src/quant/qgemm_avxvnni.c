/* quant/qgemm_avxvnni.c — the int8 GEMM at the AVX2 level (quant/qgemm_avx2_impl.h) with
 * AVX-VNNI integer steps (vpdpbusd on ymm), for CPUs that have it: ld_qgemm_isa_avxvnni. */
#define LD_I8_VNNI 1
#include "quant/qgemm_avx2_impl.h"

/* quant/qdot_avxvnni.c — the AVX2 level's quantized dot kernels (quant/qdot_avx2_impl.h)
 * with AVX-VNNI integer steps (vpdpbusd on ymm), for CPUs that have it:
 * ld_quant_rows_avxvnni. */
#define LD_I8_VNNI 1
#include "quant/qdot_avx2_impl.h"

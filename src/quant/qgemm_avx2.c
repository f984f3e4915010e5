/* quant/qgemm_avx2.c — the int8 GEMM at the AVX2 level (quant/qgemm_avx2_impl.h) with
 * vpmaddubsw + vpmaddwd integer steps: ld_qgemm_isa_avx2. */
#include "quant/qgemm_avx2_impl.h"

/* quant/qdot_avx2.c — the AVX2 level's quantized dot kernels (quant/qdot_avx2_impl.h) with
 * vpmaddubsw + vpmaddwd integer steps: ld_quant_rows_avx2. */
#include "quant/qdot_avx2_impl.h"

/* liandan/liandan.h — the whole public API of libliandan. Include this one header. */
#ifndef LIANDAN_H
#define LIANDAN_H

#include "liandan/status.h"
#include "liandan/core.h"
#include "liandan/tensor.h"
#include "liandan/io.h"
#include "liandan/nn.h"
#include "liandan/causal_lm.h"
#include "liandan/adapter.h"
#include "liandan/encoder.h"
#include "liandan/probe.h"
#include "liandan/infer.h"
#include "liandan/chat.h"
#include "liandan/batch.h"
#include "liandan/grammar.h"
#include "liandan/train.h"
#include "liandan/eval.h"
#include "liandan/tokenizer.h"
#include "liandan/data.h"
#include "liandan/quant.h"
#include "liandan/image.h"
#include "liandan/clip.h"
#include "liandan/clip_train.h"
#include "liandan/clip_eval.h"

#endif

/* liandan/liandan.h — the whole public API of libliandan. Include this one header. */
#ifndef LIANDAN_H
#define LIANDAN_H

#include "liandan/status.h"
#include "liandan/core.h"
#include "liandan/tensor.h"
#include "liandan/quant.h"

#endif

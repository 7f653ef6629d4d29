#pragma once
// Scalar references for the float kernels of the table (norms, RoPE, SwiGLU,
// attention, MicroLoRA), written to follow ggml's order of arithmetic so
// results agree with llama.cpp to rounding.
#include "cpu/kernels/kernels.h"

namespace quarrel::cpu {

void add_scalar_float_kernels(Kernels& k);

}  // namespace quarrel::cpu

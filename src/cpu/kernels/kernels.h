#pragma once
// The CPU kernel table. Every entry has a scalar reference (kernels_scalar());
// each ISA file (x86_avx2.cpp, x86_avx512.cpp, arm_neon.cpp) fills in the
// entries it speeds up, and kernels_best() picks the table for this CPU once.
#include <cstdint>
#include <string_view>

#include "tensor/dtype.h"

namespace quarrel::cpu {

constexpr int kMaxDType = 32;

// Dot product of one weight row with an activation row in vec_dot_type(t).
using VecDotFn = float (*)(const void* w, const void* a, int64_t n);
// Converts n floats to an activation format (Q8_0, Q8_1, Q8_K, F16, BF16, F32).
using QuantizeFn = void (*)(const float* x, void* y, int64_t n);
// Rows [r0, r1) of W times n_cols activation rows: out[c * out_stride + r] = dot(W[r], a[c]).
// Backends call this for GEMV (n_cols = 1) and prefill GEMM alike.
using MatmulFn = void (*)(const uint8_t* w, int64_t w_stride, int64_t r0, int64_t r1, int64_t n,
                          const uint8_t* a, int64_t a_stride, int64_t n_cols, float* out, int64_t out_stride);

struct Kernels {
  std::string_view isa = "scalar";
  VecDotFn vec_dot[kMaxDType] = {};
  QuantizeFn quantize[kMaxDType] = {};
  MatmulFn matmul[kMaxDType] = {};
  float (*dot_f32)(const float* x, const float* y, int64_t n) = nullptr;
  void (*axpy_f32)(float a, const float* x, float* y, int64_t n) = nullptr;  // y += a * x
};

const Kernels& kernels_scalar();
const Kernels& kernels_best();

// Filled by each ISA file; returns false when the CPU lacks the ISA.
bool kernels_init_avx2(Kernels& k);
bool kernels_init_avx512(Kernels& k);
bool kernels_init_neon(Kernels& k);

inline int dtype_index(tensor::DType t) { return static_cast<int>(t) % kMaxDType; }

}  // namespace quarrel::cpu

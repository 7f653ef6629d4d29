#pragma once
// The CUDA backend's entry points, in plain C++ so the CPU-side library can
// call them without CUDA headers.
#include <memory>

#include "runtime/backend.h"

namespace quarrel::cuda {

int device_count();  // 0 when there is no usable device or driver
std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts);

// Decodes rows of type t on the device (copying in and out), so tests can hold
// every device decoder against the CPU reference.
void dequantize_on_device(tensor::DType t, const uint8_t* src, int64_t row_bytes, int rows, int k, float* dst);

// Dot products of rows of quantized type t with the float vector x (k
// elements), computed on the device the way prefill computes them: x is
// quantized for t, then integer dot products in the CPU kernels' order.
void dot_rows_on_device(tensor::DType t, const uint8_t* rows, int64_t row_bytes, int n_rows, int k, const float* x,
                        float* out);

}  // namespace quarrel::cuda

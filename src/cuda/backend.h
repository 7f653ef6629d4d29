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

}  // namespace quarrel::cuda

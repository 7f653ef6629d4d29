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

// Prefill attention of T queries (q: T x n_head x head_dim) at positions
// pos[t] of one sequence, over an F32 cache k, v (n_ctx x n_head_kv x
// head_dim), on the device: by tiles of tokens (tiled) or one block per
// (query, head). Returns false when the tiled kernel cannot take the shape.
bool attention_on_device(int n_head, int n_head_kv, int head_dim, int n_ctx, int T, const float* q, const float* k,
                         const float* v, const int32_t* pos, bool tiled, float* out);

}  // namespace quarrel::cuda

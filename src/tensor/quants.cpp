// The run-time entry points of the reference codecs: one table row per type,
// and the argument checks, done once here so that the per-type functions in
// quants_legacy.cpp and quants_k.cpp can trust n.
#include "tensor/quants.h"

#include "common/error.h"

namespace quarrel::tensor {

namespace {

struct Codec {
  void (*dequantize_row)(const void* src, float* dst, int64_t n) = nullptr;
  void (*quantize_row)(const float* src, void* dst, int64_t n) = nullptr;
  float (*vec_dot)(const void* w, const void* a, int64_t n) = nullptr;
};

// nullptr where ggml has no such function either: the K-quant weight formats
// are produced by llama-quantize's search, not by a reference quantizer we
// mirror, and Q8_1/Q8_K only ever hold activations.
Codec codec(DType t) {
  switch (t) {
    case DType::F32:
      return {ref::dequantize_row_f32, ref::quantize_row_f32, ref::vec_dot_f32};
    case DType::F16:
      return {ref::dequantize_row_f16, ref::quantize_row_f16, ref::vec_dot_f16};
    case DType::BF16:
      return {ref::dequantize_row_bf16, ref::quantize_row_bf16, ref::vec_dot_bf16};
    case DType::Q4_0:
      return {ref::dequantize_row_q4_0, ref::quantize_row_q4_0, ref::vec_dot_q4_0_q8_0};
    case DType::Q4_1:
      return {ref::dequantize_row_q4_1, ref::quantize_row_q4_1, ref::vec_dot_q4_1_q8_1};
    case DType::Q5_0:
      return {ref::dequantize_row_q5_0, ref::quantize_row_q5_0, ref::vec_dot_q5_0_q8_0};
    case DType::Q5_1:
      return {ref::dequantize_row_q5_1, ref::quantize_row_q5_1, ref::vec_dot_q5_1_q8_1};
    case DType::Q8_0:
      return {ref::dequantize_row_q8_0, ref::quantize_row_q8_0, ref::vec_dot_q8_0_q8_0};
    case DType::Q8_1:
      return {ref::dequantize_row_q8_1, ref::quantize_row_q8_1, nullptr};
    case DType::Q2_K:
      return {ref::dequantize_row_q2_k, nullptr, ref::vec_dot_q2_k_q8_k};
    case DType::Q3_K:
      return {ref::dequantize_row_q3_k, nullptr, ref::vec_dot_q3_k_q8_k};
    case DType::Q4_K:
      return {ref::dequantize_row_q4_k, nullptr, ref::vec_dot_q4_k_q8_k};
    case DType::Q5_K:
      return {ref::dequantize_row_q5_k, nullptr, ref::vec_dot_q5_k_q8_k};
    case DType::Q6_K:
      return {ref::dequantize_row_q6_k, nullptr, ref::vec_dot_q6_k_q8_k};
    case DType::Q8_K:
      return {ref::dequantize_row_q8_k, ref::quantize_row_q8_k, nullptr};
  }
  fail("unknown tensor type id {}", static_cast<uint32_t>(t));
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  row_bytes(t, n);  // throws unless n is a whole number of blocks
  codec(t).dequantize_row(src, dst, n);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const Codec c = codec(t);
  if (c.quantize_row == nullptr) fail("quantizing to {} is not supported", dtype_name(t));
  row_bytes(t, n);
  c.quantize_row(src, dst, n);
}

float vec_dot(DType t, const void* w, const void* a, int64_t n) {
  const Codec c = codec(t);
  if (c.vec_dot == nullptr) fail("{} is not a weight format: it has no dot product", dtype_name(t));
  row_bytes(t, n);
  return c.vec_dot(w, a, n);
}

}  // namespace quarrel::tensor

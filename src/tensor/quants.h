#pragma once
// Scalar reference codecs for every tensor type: decode a row to floats,
// encode floats into a type, and the dot product of a weight row with an
// activation row. They follow ggml's reference code (ggml-quants.c and the
// *_generic dot products in ggml-cpu/quants.c) operation for operation, in the
// same float evaluation order, so they are the oracle the SIMD and CUDA
// kernels are tested against.
//
// Bit-exactness with ggml assumes no FMA contraction of a*b+c (true for the
// x86-64 baseline this file is built for; ARM builds need -ffp-contract=off
// to keep it). All inputs must be finite.
#include <cstdint>

#include "tensor/dtype.h"

namespace quarrel::tensor {

// Decodes n elements (a whole number of blocks) of type t into floats.
// Supported for every type. Throws quarrel::Error when n is not a whole
// number of blocks.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Encodes n floats as type t. Supported t: F32, F16, BF16 and the activation
// formats Q8_0, Q8_1, Q8_K with ggml's rounding, and the weight formats Q4_0,
// Q4_1, Q5_0, Q5_1 with ggml's reference quantizers (quantize_row_q4_0_ref and
// so on: byte-identical to llama-quantize without an imatrix). Throws
// quarrel::Error for the K-quant weight formats, and when n is not a whole
// number of blocks.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// Dot product of a row of n weights of type t with an activation row already
// in vec_dot_type(t) format. Throws quarrel::Error for Q8_1 and Q8_K (not
// weight formats) and when n is not a whole number of blocks.
float vec_dot(DType t, const void* w, const void* a, int64_t n);

// The per-type references behind the three functions above. They take the
// element count n and trust it to be a whole number of blocks: call them
// directly only from code (a kernel table, a test) that checked it.
namespace ref {

void dequantize_row_f32(const void* src, float* dst, int64_t n);
void dequantize_row_f16(const void* src, float* dst, int64_t n);
void dequantize_row_bf16(const void* src, float* dst, int64_t n);
void dequantize_row_q4_0(const void* src, float* dst, int64_t n);
void dequantize_row_q4_1(const void* src, float* dst, int64_t n);
void dequantize_row_q5_0(const void* src, float* dst, int64_t n);
void dequantize_row_q5_1(const void* src, float* dst, int64_t n);
void dequantize_row_q8_0(const void* src, float* dst, int64_t n);
void dequantize_row_q8_1(const void* src, float* dst, int64_t n);
void dequantize_row_q2_k(const void* src, float* dst, int64_t n);
void dequantize_row_q3_k(const void* src, float* dst, int64_t n);
void dequantize_row_q4_k(const void* src, float* dst, int64_t n);
void dequantize_row_q5_k(const void* src, float* dst, int64_t n);
void dequantize_row_q6_k(const void* src, float* dst, int64_t n);
void dequantize_row_q8_k(const void* src, float* dst, int64_t n);

void quantize_row_f32(const float* src, void* dst, int64_t n);
void quantize_row_f16(const float* src, void* dst, int64_t n);
void quantize_row_bf16(const float* src, void* dst, int64_t n);
void quantize_row_q4_0(const float* src, void* dst, int64_t n);
void quantize_row_q4_1(const float* src, void* dst, int64_t n);
void quantize_row_q5_0(const float* src, void* dst, int64_t n);
void quantize_row_q5_1(const float* src, void* dst, int64_t n);
void quantize_row_q8_0(const float* src, void* dst, int64_t n);
void quantize_row_q8_1(const float* src, void* dst, int64_t n);
void quantize_row_q8_k(const float* src, void* dst, int64_t n);

float vec_dot_f32(const void* w, const void* a, int64_t n);
float vec_dot_f16(const void* w, const void* a, int64_t n);
float vec_dot_bf16(const void* w, const void* a, int64_t n);
float vec_dot_q4_0_q8_0(const void* w, const void* a, int64_t n);
float vec_dot_q4_1_q8_1(const void* w, const void* a, int64_t n);
float vec_dot_q5_0_q8_0(const void* w, const void* a, int64_t n);
float vec_dot_q5_1_q8_1(const void* w, const void* a, int64_t n);
float vec_dot_q8_0_q8_0(const void* w, const void* a, int64_t n);
float vec_dot_q2_k_q8_k(const void* w, const void* a, int64_t n);
float vec_dot_q3_k_q8_k(const void* w, const void* a, int64_t n);
float vec_dot_q4_k_q8_k(const void* w, const void* a, int64_t n);
float vec_dot_q5_k_q8_k(const void* w, const void* a, int64_t n);
float vec_dot_q6_k_q8_k(const void* w, const void* a, int64_t n);

}  // namespace ref

}  // namespace quarrel::tensor

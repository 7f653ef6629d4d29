#pragma once
// The batched (prefill) path: activations are normalised and rounded as the
// CPU rounds them; cuBLAS does the GEMMs of float weights (F32, F16, BF16),
// and qgemm the quantized ones with the CPU's integer dot products
// (qdot.cuh); small kernels do RoPE, the KV write and SwiGLU in between.
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/dtype.h"

namespace quarrel::cuda {

// x[t] = row tokens[t] of the embedding table (any weight type), t < T.
void embed_rows(tensor::DType t, const uint8_t* table, int64_t row_bytes, int k, const int32_t* tokens, int T,
                float* x, cudaStream_t s);

// The element type a cuBLAS GEMM with float weights of type t runs in: F16
// and BF16 weights meet activations rounded to their own type, so the
// products are exact.
enum class GemmType { F16, BF16, F32 };
GemmType gemm_type_for(tensor::DType t);
size_t gemm_type_size(GemmType g);

enum class RowOp { Norm, Plain, Swiglu };
// For each of T rows: optional RMSNorm (norm_w) or SwiGLU (x = gate, x2 = up),
// then the activation rounding of weight type wtype, written in that weight
// type's GEMM type, or quantized (qacts_bytes(k) bytes per row) for quantized
// weights. Rows come from x with stride `stride`; out holds row after row.
void rows_for_gemm(tensor::DType wtype, RowOp op, const float* x, const float* x2, int64_t stride, const float* norm_w,
                   float eps, int T, int k, void* out, cudaStream_t s);
// out[r] = the index of the first largest of the n logits of row r.
void argmax_rows(const float* logits, int n_rows, int n, int32_t* out, cudaStream_t s);
// Same rows gathered by index: rows idx[i] of x (for the output head).
void gather_rows(const float* x, const int32_t* idx, int n, int k, float* out, cudaStream_t s);

// out[t][0..rows) = beta * out + W x[t]: W is rows x k, x is T x k, both of type g.
void gemm(cublasHandle_t h, GemmType g, const void* w, int rows, int k, const void* x, int T, float* out,
          int64_t ld_out, float beta);
// The same for quantized weights of type t and x from rows_for_gemm; beta is
// 0 or 1.
void qgemm(tensor::DType t, const uint8_t* w, int64_t row_bytes, int rows, int k, const void* x, int T, float* out,
           int64_t ld_out, float beta, cudaStream_t s);

struct RopeArgs {
  int n_head, n_head_kv, head_dim, n_ctx;
  bool neox;
  const float* rope_cos;  // [n_ctx][head_dim / 2]
  const float* rope_sin;
  const float* bias;      // q_dim + 2 kv_dim or null
};
// A batch's q, k and v rows: row t of q at q + t * q_stride, of k and v at
// k / v + t * kv_stride (separate arrays, or views into one [q | k | v] row).
struct QkvRows {
  const float* q;
  const float* k;
  const float* v;
  int64_t q_stride, kv_stride;
};
// Adds the bias, rotates q and k, writes q to q_out[T][q_dim] (may be
// in.q when q_stride is q_dim) and k and v to the cache at (seq[t], pos[t]).
void rope_and_store(const RopeArgs& a, int T, const QkvRows& in, float* q_out, const int32_t* pos, const int32_t* seq,
                    void* k_cache, void* v_cache, bool kv_f32, cudaStream_t s);

}  // namespace quarrel::cuda

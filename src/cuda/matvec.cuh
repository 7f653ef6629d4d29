#pragma once
// Fused decode matvec: one kernel reads its input (with RMSNorm or as it is),
// rounds it like the CPU backend, multiplies by a
// weight matrix and applies an epilogue (RoPE + KV write, residual add,
// SwiGLU, or logits with argmax), so decode needs five kernels per layer.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/dtype.h"

namespace quarrel::cuda {

enum class MatvecInput { Norm, Plain };
enum class MatvecOutput { Qkv, Residual, Swiglu, Logits };

struct MatvecArgs {
  // Weights: rows of `k` elements; w2 is the second matrix of SwiGLU (up).
  const uint8_t* w = nullptr;
  const uint8_t* w2 = nullptr;
  int64_t row_bytes = 0;
  int rows = 0;  // output rows (for Qkv: q_dim + 2 * kv_dim)
  int row_base = 0;  // Qkv: index of this matrix's first row among q|k|v rows
  int k = 0;

  // Input.
  const float* x = nullptr;       // Norm / Plain: k floats
  const float* norm_w = nullptr;  // Norm: k floats
  float eps = 0;

  // Output.
  float* out = nullptr;  // Residual: += ; Swiglu: h ; Logits: logits ; Qkv: q
  // Qkv epilogue.
  const float* bias = nullptr;  // q_dim + 2 * kv_dim, or null
  const float* rope_cos = nullptr;  // [n_ctx][head_dim / 2], made by the CPU backend's rope_table
  const float* rope_sin = nullptr;
  const int32_t* step = nullptr;    // device {token, pos, seq}
  void* k_cache = nullptr;          // this layer's, [seq][pos][kv_dim], F32 or F16
  void* v_cache = nullptr;
  bool kv_f32 = true;
  int n_ctx = 0;
  int n_head = 0, n_head_kv = 0, head_dim = 0;
  bool neox = false;
  // Logits epilogue: packed (value, index) maximum for greedy sampling.
  unsigned long long* argmax = nullptr;
  // The persistent kernel's hand-off (common.cuh, handoff_store): the input as
  // (value, epoch) words of x_epoch instead of x; the outputs (Qkv: every
  // q, k and v row, at its row index; Swiglu; Residual) as words of
  // out_epoch, Residual's unless out_words is null (then plain floats to
  // out); Residual's current values from res_words, of res_epoch.
  const uint64_t* x_words = nullptr;
  uint64_t* out_words = nullptr;
  const uint64_t* res_words = nullptr;
  unsigned x_epoch = 0, out_epoch = 0, res_epoch = 0;
  // Float weights' SwiGLU and residual stages in narrow units
  // (matvec_device.cuh, stage_unit_lanes): set by narrow_units for both
  // decode paths alike, whose sums must agree to the bit.
  bool narrow = false;
};

// Whether a model's decode takes narrow units: when its stages have fewer
// units than a grid of n_sm blocks has warps (the SwiGLU stage's n_ff rows
// fit twice the warps, the residual stages' n_embd rows fit them), as
// SmolLM2-135M's do. Measured on an H200 (docs/PERF.md): SmolLM2 F16 tg128
// 2,064-2,072 -> 2,104-2,128 t/s; Llama-3.2-1B F16, whose stages fill the
// grid, went from 1,052 to 1,006 t/s with narrow units, so it keeps wide ones.
bool narrow_units(int n_embd, int n_ff, int n_sm);

// Launches on stream; the weight type and the activation type pick the
// template instance. Throws quarrel::Error for a type without a kernel.
void matvec(tensor::DType wtype, MatvecInput in, MatvecOutput out, const MatvecArgs& a, int n_sm, cudaStream_t s);

// Decodes n_rows rows of any supported type into floats (tests compare this
// with the CPU reference).
void dequantize_rows(tensor::DType t, const uint8_t* src, int64_t row_bytes, int n_rows, int k, float* dst,
                     cudaStream_t s);

}  // namespace quarrel::cuda

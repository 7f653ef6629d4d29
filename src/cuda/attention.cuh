#pragma once
// Attention over the F16 KV cache: split-KV decode (flash-decoding; the
// partial softmaxes are combined by the next matvec) and a prefill kernel
// with one block per (query, head).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace quarrel::cuda {

struct AttentionShape {
  int n_head, n_head_kv, head_dim, n_ctx;
  float scale;
};

constexpr int kAttentionSplit = 256;  // positions per split in decode

// Decode one query (step = {token, pos, seq} on the device): writes the
// partial (max, sum, weighted V) of each of n_split chunks of positions.
void attention_decode(const AttentionShape& sh, const float* q, const __half* k_cache, const __half* v_cache,
                      const int32_t* step, int n_split, float* part_m, float* part_l, float* part_acc,
                      cudaStream_t s);

// T queries at positions pos[t] of sequences seq[t] (device arrays); their K/V
// are already in the cache. Writes out[t][n_head * head_dim].
void attention_prefill(const AttentionShape& sh, int T, const float* q, const __half* k_cache, const __half* v_cache,
                       const int32_t* pos, const int32_t* seq, float* out, cudaStream_t s);

}  // namespace quarrel::cuda

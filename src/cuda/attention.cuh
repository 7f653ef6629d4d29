#pragma once
// Attention over the KV cache, one block per (query, head) or per tile of
// prefill tokens and KV head (attention_prefill), computed like the
// CPU backend: all scores, their maximum, exponentials summed in double, then
// the weighted sum of V. Quantized models amplify any difference here through
// the next layer's activation rounding, so the arithmetic follows the CPU's.
#include <cuda_runtime.h>

#include <cstdint>

namespace quarrel::cuda {

struct AttentionShape {
  int n_head, n_head_kv, head_dim, n_ctx;
  float scale;
};

// T queries: q[t][n_head * head_dim] at position pos[t * index_stride] of slot
// seq[t * index_stride] (device arrays; decode passes its step {token, pos, seq}
// with stride 3). Their K/V are already in the
// cache, which holds F32 (kv_f32) or F16. Writes out[t][n_head * head_dim].
// programmatic: launched to overlap the previous kernel (decode graph).
void attention(const AttentionShape& sh, int T, const float* q, const void* k_cache, const void* v_cache, bool kv_f32,
               const int32_t* pos, const int32_t* seq, int index_stride, float* out, bool programmatic,
               cudaStream_t s);

// The same attention for a prefill batch whose T tokens all belong to one
// sequence (seq[0]) and whose positions are below max_pos: tiles of tokens
// share each staged K/V row, with bit-identical results. Returns false (and
// launches nothing) when the shape does not fit; call attention() then.
bool attention_prefill(const AttentionShape& sh, int T, int max_pos, const float* q, const void* k_cache,
                       const void* v_cache, bool kv_f32, const int32_t* pos, const int32_t* seq, float* out,
                       cudaStream_t s);

}  // namespace quarrel::cuda

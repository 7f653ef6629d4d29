#pragma once
// The whole decode step of every layer in one persistent kernel: one block
// per multiprocessor, all resident at once (a cooperative launch), with a
// hand-off between the stages of a layer (each value carries the epoch of the
// stage that wrote it, so a block waits for exactly the values it reads, not
// for a grid barrier): QKV + RoPE + KV write;
// attention (one stage for short contexts, scores then softmax + weighted V
// for long ones); output projection + residual; RMSNorm + gate/up + SwiGLU;
// down projection + residual. The
// matvec stages run the same device code as the one-kernel-per-stage path
// (matvec_device.cuh) and attention the same arithmetic as its kernel
// (attention_device.cuh), so both paths give bit-identical logits. What goes
// away is the launch and drain of 150 kernels per token; at the end of each
// stage every block also pulls the weights it will read a stage later into
// L2, and the K/V of the next layer.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/matvec.cuh"
#include "tensor/dtype.h"

namespace quarrel::cuda {

struct FusedLayer {
  const uint8_t* wqkv = nullptr;  // q, k and v rows stacked
  const uint8_t* wo = nullptr;
  const uint8_t* w_gate = nullptr;
  const uint8_t* w_up = nullptr;
  const uint8_t* w_down = nullptr;
  int64_t rb_qkv = 0, rb_o = 0, rb_ffn = 0, rb_down = 0;  // bytes per row
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float* bias_qkv = nullptr;  // or null
  void* k_cache = nullptr;          // this layer's, [seq][pos][kv_dim]
  void* v_cache = nullptr;
};

struct FusedStep {
  const FusedLayer* layers = nullptr;  // device array of n_layer
  int n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, n_ctx = 0;
  float eps = 0, scale = 0;
  bool neox = false, kv_f32 = true;
  bool narrow = false;  // narrow_units (matvec.cuh), for both decode paths
  const float* rope_cos = nullptr;  // [n_ctx][head_dim / 2]
  const float* rope_sin = nullptr;
  const int32_t* step = nullptr;  // device {token, pos, seq, epoch}
  float* x = nullptr;             // n_embd: the residual stream, in and out
  float* q = nullptr;             // n_head * head_dim
  float* attn = nullptr;          // n_head * head_dim
  float* h = nullptr;             // n_ff
  float* scores = nullptr;        // n_head * n_ctx: attention scores
  unsigned int* barrier = nullptr;  // one counter, zero at launch
  // The stages' hand-off words (common.cuh, handoff_store): the residual
  // (n_embd), q|k|v (n_head * head_dim + 2 * kv_dim), the attention output
  // (n_head * head_dim) and the SwiGLU output (n_ff). step[3] is the
  // launch's first epoch; each launch needs kEpochsPerLayer * n_layer + 1.
  uint64_t* handoff = nullptr;
  // Set by decode_layers: the weight slots (matvec_device.cuh) after the
  // first slot_offset bytes of dynamic shared memory; slot_bytes 0: none.
  int slot_offset = 0, slot_bytes = 0;
  // Set by decode_layers: where the copy of `layers` goes, after the slots.
  int table_offset = 0;
  // Set by decode_layers: contexts of up to slice_max_pos positions take
  // attention in one stage (attend_slice, slice_dims output dimensions per
  // block); longer ones in two (score_chunk, softmax_values).
  // One-stage attention's shared memory starts slice_offset bytes in: past
  // the matvec input where it fits beside the weight slots (always for float
  // weights), and then the blocks copy the next layer's cache rows there
  // while the matvec stages run (stage_slice), for contexts of up to
  // slice_ahead_pos positions (0: never).
  int slice_dims = 0, slice_max_pos = 0, slice_offset = 0, slice_ahead_pos = 0;
  // Diagnostics (QUARREL_CUDA_STAGE_TIMES=1): block 0 writes %globaltimer
  // at the start and at the end of each stage and barrier wait of every
  // layer, kStageClocks per layer, then the start at n_layer * kStageClocks.
  unsigned long long* stage_clock = nullptr;
};

constexpr int kStageClocks = 12;
constexpr int kEpochsPerLayer = 5;

// Hand-off words the persistent kernel needs (FusedStep::handoff).
inline int64_t fused_handoff_words(const FusedStep& a) {
  const int64_t qd = static_cast<int64_t>(a.n_head) * a.head_dim, kvd = static_cast<int64_t>(a.n_head_kv) * a.head_dim;
  return a.n_embd + (qd + 2 * kvd) + qd + a.n_ff;
}

// The arguments of a layer's four matvec stages, shared by the persistent
// kernel and the five-kernels-per-layer path. qkv uses L.wqkv (the staged
// path swaps in wq, wk and wv one at a time when their types differ).
struct LayerArgs {
  MatvecArgs qkv, o, ffn, down;
};

__host__ __device__ inline LayerArgs layer_args(const FusedStep& a, const FusedLayer& L) {
  LayerArgs r;
  const int qd = a.n_head * a.head_dim, kvd = a.n_head_kv * a.head_dim;
  MatvecArgs& q = r.qkv;
  q.w = L.wqkv;
  q.row_bytes = L.rb_qkv;
  q.rows = qd + 2 * kvd;
  q.k = a.n_embd;
  q.x = a.x;
  q.norm_w = L.attn_norm;
  q.eps = a.eps;
  q.out = a.q;
  q.bias = L.bias_qkv;
  q.rope_cos = a.rope_cos;
  q.rope_sin = a.rope_sin;
  q.step = a.step;
  q.k_cache = L.k_cache;
  q.v_cache = L.v_cache;
  q.kv_f32 = a.kv_f32;
  q.n_ctx = a.n_ctx;
  q.n_head = a.n_head;
  q.n_head_kv = a.n_head_kv;
  q.head_dim = a.head_dim;
  q.neox = a.neox;
  MatvecArgs& o = r.o;
  o.w = L.wo;
  o.row_bytes = L.rb_o;
  o.rows = a.n_embd;
  o.k = qd;
  o.x = a.attn;
  o.out = a.x;
  o.narrow = a.narrow;
  MatvecArgs& g = r.ffn;
  g.w = L.w_gate;
  g.w2 = L.w_up;
  g.row_bytes = L.rb_ffn;
  g.rows = a.n_ff;
  g.k = a.n_embd;
  g.x = a.x;
  g.norm_w = L.ffn_norm;
  g.eps = a.eps;
  g.out = a.h;
  g.narrow = a.narrow;
  MatvecArgs& d = r.down;
  d.w = L.w_down;
  d.row_bytes = L.rb_down;
  d.rows = a.n_embd;
  d.k = a.n_ff;
  d.x = a.h;
  d.out = a.x;
  d.narrow = a.narrow;
  return r;
}

// The most query heads per KV head the kernel's attention handles.
constexpr int kMaxFusedGroup = 8;

// Whether there is a persistent kernel for layers whose matrices all have
// weight type t.
bool fused_decode_supported(tensor::DType t);

// Dynamic shared memory the kernel needs for this shape, before the weight
// slots and the layers' table (fused_table_bytes); the slots take what is
// left up to kMaxDynamicSmem (the backend falls back to five kernels per
// layer when the two alone are more).
size_t fused_smem_bytes(tensor::DType t, const FusedStep& a);
inline size_t fused_table_bytes(const FusedStep& a) {
  return (static_cast<size_t>(a.n_layer) * sizeof(FusedLayer) + 15) & ~size_t{15};
}

// Runs every layer for one token: x (after the embedding) in, x (before the
// output norm) out. Zeroes the barrier counter first. Capturable in a graph.
// layer0 is the host copy of the first layer, whose row sizes size the
// weight slots.
void decode_layers(tensor::DType t, const FusedStep& a, const FusedLayer& layer0, int n_sm, cudaStream_t s);

}  // namespace quarrel::cuda

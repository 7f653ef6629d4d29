#pragma once
// The device side of the decode matvec, shared by the one-kernel-per-stage
// path (matvec.cu) and the whole-step persistent kernel (decode_fused.cu), so
// both compute bit-identical values: read the input (RMS-normalised or as
// it is), round it like the CPU backend, then one warp per unit of rows with
// an epilogue (RoPE + KV write, residual add, SwiGLU, or logits + argmax).
//
// Everything the previous stage wrote (the input, the residual) is read with
// __ldcg, from L2: in the persistent kernel another block wrote it a moment
// ago, and the L1 of this multiprocessor may hold a stale copy.
#include <cuda_pipeline.h>

#include "cuda/common.cuh"
#include "cuda/dequant.cuh"
#include "cuda/matvec.cuh"
#include "cuda/qdot.cuh"

namespace quarrel::cuda {

constexpr int kMatvecThreads = 256;
constexpr int kMatvecWarps = kMatvecThreads / kWarp;

// Shared memory the input of a row length k needs: the padded input, then
// (for Norm) the norm weights staged beside it.
__host__ __device__ constexpr int matvec_smem_floats(int k) { return padded_size(k) + k; }

// Where load_input leaves a quantized input row: after the padded floats.
__device__ __forceinline__ QActs input_qacts(const float* xs, int k) { return qacts_at(xs + padded_size(k), k); }

// Fills xs (padded shared memory, k floats; matvec_smem_floats(k) in all)
// with the input, rounded as the CPU backend rounds activations for weights
// of vec-dot type VT. The input and the norm weights are loaded in the same
// pass, so the whole input costs one memory round trip. For quantized
// weights the rounded row is kept as integers (qdot.cuh) where the norm
// weights were, at input_qacts(). Every thread of the block calls it.
// kHandOff: the input is the hand-off vector a.x_words (common.cuh).
template <MatvecInput IN, DType VT, bool kHandOff = false>
__device__ void load_input(const MatvecArgs& a, float* xs, double* red) {
  constexpr bool kNorm = IN == MatvecInput::Norm;
  const int k = a.k;
  float* ws = xs + padded_size(k);
  double ss = 0;
  // Float activations are rounded as they are stored (each thread writes
  // and rescales the same elements), quantized ones after the barrier.
  auto put = [&](int i, float v, float w) {
    if constexpr (kNorm) {
      xs[padded(i)] = v;
      ws[i] = w;
      ss += static_cast<double>(v * v);
    } else {
      xs[padded(i)] = round_activation<VT>(v);
    }
  };
  if constexpr (kHandOff)
    for_each_batched<kNorm>(HandOff{a.x_words, a.x_epoch}, a.norm_w, k, put);
  else
    for_each_batched<kNorm>(a.x, a.norm_w, k, put);
  if constexpr (IN == MatvecInput::Norm) {
    const float scale = rms_scale(block_sum_double<kMatvecWarps>(ss, red), k, a.eps);
    for (int i = threadIdx.x; i < k; i += blockDim.x)
      xs[padded(i)] = round_activation<VT>((xs[padded(i)] * scale) * ws[i]);
  }
  __syncthreads();
  if constexpr (is_quantized_act(VT)) quantize_row<VT>(xs, k, input_qacts(xs, k));
}

// Lanes that compute one unit (two rows): a warp for float weights; half a
// warp for quantized ones, whose rows take kQGroup lanes each (qdot.cuh).
template <DType WT>
constexpr int unit_lanes() {
  return is_quantized(WT) ? 2 * kQGroup : kWarp;
}

// Narrow units (kNarrow, float weights, for models whose stages have fewer
// rows than the grid has warps, as SmolLM2-135M): SwiGLU units (a gate row
// and its up row) take half a warp, so that SmolLM2's 1,536 units take one
// round of an H200's 2,112 half-warps instead of two rounds on some of its
// 1,056 warps (a stage waits for its slowest warp); and residual units are
// one row (single_row_units). Lanes per unit of stage OUT:
template <DType WT, MatvecOutput OUT, bool kNarrow>
constexpr int stage_unit_lanes() {
  return kNarrow && !is_quantized(WT) && OUT == MatvecOutput::Swiglu ? kWarp / 2 : unit_lanes<WT>();
}

// Sum over the G lanes of a group (G a power of two up to 32; mask names them).
template <int G>
__device__ __forceinline__ float group_sum(float v, unsigned mask) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(mask, v, o);
  return v;
}

// Rows of 16-bit floats (F16, BF16) times the input, in groups of 8 elements
// (16 bytes): lane `lane` takes groups lane, lane + 32, ... in order, one FMA
// chain per row, adding to sa and sb. A warp's loads of one round cover 512
// contiguous bytes of a row, and every lane has work once a row has 256
// elements (a lane taking 32-element chunks left 14 of 32 lanes idle on
// SmolLM2's 576).
template <DType WT, int G, bool kTwo>
__device__ __forceinline__ void half_dot_groups(const uint4* ra, const uint4* rb, const float* xs, int n_groups,
                                                int lane, float& sa, float& sb) {
  // Groups loaded before the first FMA: enough that a narrow unit's lanes
  // load all of SmolLM2's rows in one round (72 groups a row over 16 lanes;
  // 192 for the down projection over 32), where the registers allow.
  constexpr int kBatch = !kTwo ? 8 : G < kWarp ? 5 : 4;
  QUARREL_DEVICE_NO_UNROLL
  for (int j0 = lane; j0 < n_groups; j0 += kBatch * G) {
    uint4 wa[kBatch] = {}, wb[kBatch] = {};
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
      if (j0 + u * G < n_groups) {
        wa[u] = ra[j0 + u * G];
        if constexpr (kTwo) wb[u] = rb[j0 + u * G];
      }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (j0 + u * G >= n_groups) break;
      const float* xc = xs + padded(8 * (j0 + u * G));  // 8 elements never straddle a padding gap
      const uint32_t* ua = reinterpret_cast<const uint32_t*>(&wa[u]);
      const uint32_t* ub = reinterpret_cast<const uint32_t*>(&wb[u]);
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        float2 fa, fb;
        if constexpr (WT == DType::F16) {
          fa = __half22float2(*reinterpret_cast<const __half2*>(&ua[t]));
          fb = __half22float2(*reinterpret_cast<const __half2*>(&ub[t]));
        } else {
          fa = make_float2(__uint_as_float(ua[t] << 16), __uint_as_float(ua[t] & 0xffff0000u));
          fb = make_float2(__uint_as_float(ub[t] << 16), __uint_as_float(ub[t] & 0xffff0000u));
        }
        sa = fmaf(fa.x, xc[2 * t], sa);
        if constexpr (kTwo) sb = fmaf(fb.x, xc[2 * t], sb);
        sa = fmaf(fa.y, xc[2 * t + 1], sa);
        if constexpr (kTwo) sb = fmaf(fb.y, xc[2 * t + 1], sb);
      }
    }
  }
}

// Rows ra and rb times the input, by the G lanes of a unit (glane is the
// lane's index among them, mask names them); the results are valid in
// glane 0. Without kTwo, only ra (float weights; sb is left 0).
template <DType WT, int G, bool kTwo = true>
__device__ __forceinline__ void dot2(const uint8_t* ra, const uint8_t* rb, const float* xs, int k, int glane,
                                     unsigned mask, float& sa, float& sb) {
  if constexpr (is_quantized(WT)) {
    const float v = qdot<WT>(glane < kQGroup ? ra : rb, input_qacts(xs, k), k, glane % kQGroup, mask);
    sa = v;
    sb = __shfl_down_sync(mask, v, kQGroup, 2 * kQGroup);
  } else if constexpr (WT == DType::F16 || WT == DType::BF16) {
    sa = 0;
    sb = 0;
    half_dot_groups<WT, G, kTwo>(reinterpret_cast<const uint4*>(ra), reinterpret_cast<const uint4*>(rb), xs, k / 8,
                                 glane, sa, sb);
    sa = group_sum<G>(sa, mask);
    if constexpr (kTwo) sb = group_sum<G>(sb, mask);
  } else {
    float wa[32], wb[32];
    sa = 0;
    sb = 0;
    QUARREL_DEVICE_NO_UNROLL
    for (int c = glane; c < k / 32; c += G) {
      dequant32<WT>(ra, c, wa);
      if constexpr (kTwo) dequant32<WT>(rb, c, wb);
      const float* xc = xs + 33 * c;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        sa = fmaf(wa[j], xc[j], sa);
        if constexpr (kTwo) sb = fmaf(wb[j], xc[j], sb);
      }
    }
    sa = group_sum<G>(sa, mask);
    if constexpr (kTwo) sb = group_sum<G>(sb, mask);
  }
}

__device__ __forceinline__ unsigned long long pack_argmax(float v, int idx) {
  // Order floats as unsigned integers; ties go to the lower index, as on the CPU.
  uint32_t u = __float_as_uint(v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<unsigned long long>(u) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(idx));
}

// Rows one warp's unit covers: SwiGLU pairs a gate row with an up row, the
// other outputs take two rows of one matrix.
template <MatvecOutput OUT>
constexpr int rows_per_unit() {
  return OUT == MatvecOutput::Swiglu ? 1 : 2;
}

// Whether a unit of stage OUT is one row of one matrix: narrow residual
// stages (the output and down projections), whose 576 rows in SmolLM2
// would otherwise make 288 units, each two rows deep, while most of an
// H200's 1,056 warps wait.
template <DType WT, MatvecOutput OUT, bool kNarrow>
constexpr bool single_row_units() {
  return kNarrow && !is_quantized(WT) && OUT == MatvecOutput::Residual;
}

template <DType WT, MatvecOutput OUT, bool kNarrow = false>
__host__ __device__ inline int matvec_units(int rows) {
  return OUT == MatvecOutput::Swiglu || single_row_units<WT, OUT, kNarrow>() ? rows : (rows + 1) / 2;
}

// Pulls the rows warp `warp` of `n_warps` will read into L2, without waiting
// for them: issued before the input is ready, it overlaps the weight reads
// with whatever comes before.
template <MatvecOutput OUT>
__device__ __forceinline__ void prefetch_units(const MatvecArgs& a, int warp, int n_warps) {
  const int lane = threadIdx.x % kWarp;
  constexpr int per_unit = rows_per_unit<OUT>();
  for (int first = warp * per_unit; first < a.rows; first += n_warps * per_unit) {
    const int n_rows = min(per_unit, a.rows - first);
    for (const uint8_t* w : {a.w, a.w2}) {
      if (!w) continue;
      const uint8_t* p = w + first * a.row_bytes;
      const int64_t bytes = n_rows * a.row_bytes;
      QUARREL_DEVICE_NO_UNROLL
      for (int64_t off = lane * 128; off < bytes; off += kWarp * 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
    }
  }
}

// A matrix is prefetched into L2 ahead of its stage only when it fits well
// inside L2 (50 MB on an H100/H200); larger ones stream from memory at full
// speed anyway, and prefetching them evicts rows before their use, which are
// then read twice (Llama-3.2-1B's 525 MB logits head: 4% of a token).
constexpr int64_t kPrefetchBytes = 16 << 20;

template <MatvecOutput OUT>
__device__ __forceinline__ void maybe_prefetch(const MatvecArgs& m, int warp, int n_warps) {
  const int64_t bytes = static_cast<int64_t>(m.rows) * m.row_bytes * (m.w2 ? 2 : 1);
  if (bytes <= kPrefetchBytes) prefetch_units<OUT>(m, warp, n_warps);
}

// A unit: its two output rows and where their weights are.
struct Unit {
  int ra, rb;
  const uint8_t* pa;
  const uint8_t* pb;
};

template <DType WT, MatvecOutput OUT, bool kNarrow = false>
__device__ __forceinline__ Unit unit_at(const MatvecArgs& a, int u) {
  Unit r;
  if constexpr (OUT == MatvecOutput::Qkv) {
    // One rotated pair of rows of one head of q, k or v.
    const int half = a.head_dim / 2, i = u % half;
    const int base = (a.row_base + 2 * u) / a.head_dim * a.head_dim;
    r.ra = base + (a.neox ? i : 2 * i);
    r.rb = base + (a.neox ? i + half : 2 * i + 1);
    r.pa = a.w + (r.ra - a.row_base) * a.row_bytes;
    r.pb = a.w + (r.rb - a.row_base) * a.row_bytes;
  } else if constexpr (OUT == MatvecOutput::Swiglu) {  // a gate row and its up row
    r.ra = r.rb = u;
    r.pa = a.w + u * a.row_bytes;
    r.pb = a.w2 + u * a.row_bytes;
  } else if constexpr (single_row_units<WT, OUT, kNarrow>()) {
    r.ra = r.rb = u;
    r.pa = r.pb = a.w + u * a.row_bytes;
  } else {  // two rows of one matrix
    r.ra = 2 * u;
    r.rb = min(2 * u + 1, a.rows - 1);
    r.pa = a.w + r.ra * a.row_bytes;
    r.pb = a.w + r.rb * a.row_bytes;
  }
  return r;
}

// Weight slots: shared memory where the persistent kernel copies a unit's
// rows (cp.async) before it computes them, for quantized weights. Each unit
// processor (a half-warp) owns two slots and works one unit ahead: while it
// computes unit j from one slot, unit j + 1 is arriving in the other (units
// too large for one slot take both, one at a time: slot_depth). The first
// units of a stage are started as soon as the block's units of the stage
// before are done (stage_first_units), so their weights arrive while the
// block waits for the stage's input. Float weights stay on global loads: through slots
// they measured slower on an H200, both where the weights sit
// in L2 (SmolLM2 F16, 1,325 against 1,402 t/s) and where they stream from
// HBM (Llama-3.2-1B F16, 781 against 813); docs/PERF.md.
struct WeightSlots {
  uint8_t* base = nullptr;  // the block's slots, two per unit processor
  int bytes = 0;            // one slot; 0: read the weights from global memory
};

// What a row of row_bytes takes in a slot: the row as it is, from the
// 16-byte boundary at or below its start.
__host__ __device__ constexpr int64_t staged_row_bytes(int64_t row_bytes) { return (row_bytes + 31) / 16 * 16; }

// How a stage uses the slots, for quantized weights: 2 when a unit fits one
// slot (two units in flight), 1 when it fits only the processor's two slots
// together (one unit at a time, as Llama-3.2-1B's down projection: its
// processors have one unit each anyway), 0 to read global memory.
template <DType WT>
__host__ __device__ inline int slot_depth(int64_t row_bytes, int slot_bytes) {
  if (!is_quantized(WT)) return 0;
  const int64_t need = 2 * staged_row_bytes(row_bytes);
  return slot_bytes >= need ? 2 : 2 * static_cast<int64_t>(slot_bytes) >= need ? 1 : 0;
}

// Where unit j of this lane's processor goes, for a stage of slot depth 1 or 2.
template <DType WT>
__device__ __forceinline__ uint8_t* slot_at(const WeightSlots& s, int j, int depth) {
  const int proc = threadIdx.x / unit_lanes<WT>();
  return s.base + static_cast<int64_t>(2 * proc + (depth == 2 ? (j & 1) : 0)) * s.bytes;
}

// Where the copy of the row at src starts in the slot area dst.
__device__ __forceinline__ const uint8_t* staged_row(const uint8_t* dst, const uint8_t* src) {
  return dst + (reinterpret_cast<uintptr_t>(src) & 15);
}

// Starts the copy of one row into dst, by the unit_lanes() lanes of a unit,
// in aligned 16-byte pieces: it may read up to 15 bytes either side of the
// row, inside the allocation's padding (DeviceArena).
template <DType WT>
__device__ __forceinline__ void stage_row(uint8_t* dst, const uint8_t* src, int64_t n, int glane) {
  constexpr int G = unit_lanes<WT>();
  const uintptr_t s = reinterpret_cast<uintptr_t>(src);
  const uint8_t* lo = reinterpret_cast<const uint8_t*>(s & ~uintptr_t{15});
  const int64_t span = static_cast<int64_t>(((s + n + 15) & ~uintptr_t{15}) - (s & ~uintptr_t{15}));
  for (int64_t off = 16 * glane; off < span; off += 16 * G) __pipeline_memcpy_async(dst + off, lo + off, 16);
}

// Starts copying unit u (when there is one) into slot j, and commits the
// copies as one group, empty or not, so that every processor counts groups
// alike.
template <DType WT, MatvecOutput OUT>
__device__ __forceinline__ void stage_unit(const MatvecArgs& a, const WeightSlots& s, int u, int j, int depth,
                                           int glane) {
  if (u < matvec_units<WT, OUT>(a.rows)) {
    const Unit r = unit_at<WT, OUT>(a, u);
    uint8_t* dst = slot_at<WT>(s, j, depth);
    stage_row<WT>(dst, r.pa, a.row_bytes, glane);
    stage_row<WT>(dst + staged_row_bytes(a.row_bytes), r.pb, a.row_bytes, glane);
  }
  __pipeline_commit();
}

// This lane's unit processor of G lanes: its first unit and the stride
// between its units.
template <int G>
__device__ __forceinline__ void unit_walk(int warp, int n_warps, int& first, int& stride) {
  first = warp * (kWarp / G) + (threadIdx.x % kWarp) / G;
  stride = n_warps * (kWarp / G);
}

// Starts the copies of this processor's first units of the stage `a`
// describes (two, or one at slot depth 1). Every thread calls it, after its
// last read of the slots in the stage before.
template <DType WT, MatvecOutput OUT>
__device__ __forceinline__ void stage_first_units(const MatvecArgs& a, const WeightSlots& s, int warp, int n_warps) {
  const int depth = slot_depth<WT>(a.row_bytes, s.bytes);
  if (depth == 0) return;
  int first, stride;
  unit_walk<unit_lanes<WT>()>(warp, n_warps, first, stride);
  const int glane = threadIdx.x % unit_lanes<WT>();
  stage_unit<WT, OUT>(a, s, first, 0, depth, glane);
  if (depth == 2) stage_unit<WT, OUT>(a, s, first + stride, 1, depth, glane);
}

// Whether this block has any unit of the stage (warps are numbered across
// the blocks first, so its lowest is warp blockIdx.x). In the persistent
// kernel a block without units must not wait for the stage's input: the
// vector may already hold a later stage's values.
template <DType WT, MatvecOutput OUT, bool kNarrow>
__device__ __forceinline__ bool block_has_units(const MatvecArgs& a) {
  constexpr int per_warp = kWarp / stage_unit_lanes<WT, OUT, kNarrow>();
  return static_cast<int>(blockIdx.x) * per_warp < matvec_units<WT, OUT, kNarrow>(a.rows);
}

// The units of warp `warp` of `n_warps`, on the input already in xs. For
// Logits, `best` collects this lane's packed (value, index) maximum.
// With slots (the persistent kernel), the stage's first units must have been
// started by stage_first_units.
// kHandOff: outputs and Residual's current values go through the hand-off
// words (MatvecArgs::out_words, res_words).
template <DType WT, MatvecOutput OUT, bool kHandOff = false, bool kNarrow = false>
__device__ void matvec_rows(const MatvecArgs& a, const float* xs, int warp, int n_warps, unsigned long long& best,
                            const WeightSlots& slots = {}) {
  constexpr int G = stage_unit_lanes<WT, OUT, kNarrow>();
  const int lane = threadIdx.x % kWarp, glane = lane % G;
  const unsigned mask = (0xffffffffu >> (kWarp - G)) << (lane - glane);
  int first, stride;
  unit_walk<G>(warp, n_warps, first, stride);
  const int depth = slot_depth<WT>(a.row_bytes, slots.bytes);
  const int64_t srb = staged_row_bytes(a.row_bytes);
  const int half = a.head_dim / 2;
  int pos = 0, seq = 0;
  if constexpr (OUT == MatvecOutput::Qkv) {
    pos = a.step[1];
    seq = a.step[2];
  }
  // A Swiglu or Residual output row: a hand-off word, or a plain float
  // (always without hand-off words; with them, for a Residual whose
  // out_words is null).
  auto emit = [&](int row, float v) {
    if (kHandOff && (OUT != MatvecOutput::Residual || a.out_words))
      handoff_store(a.out_words + row, v, a.out_epoch);
    else
      a.out[row] = v;
  };
  int j = 0;  // the unit's index among this processor's (slot_at)
  for (int u = first; u < matvec_units<WT, OUT, kNarrow>(a.rows); u += stride, ++j) {
    const Unit r = unit_at<WT, OUT, kNarrow>(a, u);
    // The epilogue's loads first, so they overlap the weights'.
    float e0 = 0, e1 = 0, ba = 0, bb = 0;
    uint64_t w0 = 0, w1 = 0;  // kHandOff Residual: the words of e0 and e1, waited for after the dot
    if constexpr (kHandOff && OUT == MatvecOutput::Residual) {
      w0 = handoff_load(a.res_words + r.ra);
      w1 = handoff_load(a.res_words + r.rb);
    } else if constexpr (OUT == MatvecOutput::Qkv) {
      e0 = a.rope_cos[pos * half + u % half];
      e1 = a.rope_sin[pos * half + u % half];
      if (a.bias) {
        ba = a.bias[r.ra];
        bb = a.bias[r.rb];
      }
    } else if constexpr (OUT == MatvecOutput::Residual) {
      e0 = __ldcg(a.out + r.ra);
      e1 = __ldcg(a.out + r.rb);
    }
    const uint8_t* pa = r.pa;
    const uint8_t* pb = r.pb;
    if (depth != 0) {
      // Unit j has arrived (at depth 2, unit j + 1 may still be in flight) ...
      if (depth == 2)
        __pipeline_wait_prior(1);
      else
        __pipeline_wait_prior(0);
      __syncwarp(mask);  // ... for the copies of every lane of the processor
      const uint8_t* dst = slot_at<WT>(slots, j, depth);
      pa = staged_row(dst, r.pa);
      pb = staged_row(dst + srb, r.pb);
    }
    float va, vb;
    dot2<WT, G, !single_row_units<WT, OUT, kNarrow>()>(pa, pb, xs, a.k, glane, mask, va, vb);
    if (depth != 0) {
      __syncwarp(mask);  // every lane is done with unit j's slot: refill it `depth` units ahead
      stage_unit<WT, OUT>(a, slots, u + depth * stride, j, depth, glane);
    }
    if (glane != 0) continue;
    if constexpr (kHandOff && OUT == MatvecOutput::Residual) {
      e0 = handoff_value(w0, a.res_words + r.ra, a.res_epoch);
      e1 = handoff_value(w1, a.res_words + r.rb, a.res_epoch);
    }
    if constexpr (OUT == MatvecOutput::Qkv) {
      const int q_dim = a.n_head * a.head_dim, kv_dim = a.n_head_kv * a.head_dim;
      if (a.bias) {
        va += ba;
        vb += bb;
      }
      if (r.ra < q_dim + kv_dim) {  // q and k are rotated
        tensor::rope_pair(va, vb, e0, e1, &va, &vb);
      }
      if constexpr (kHandOff) {
        handoff_store(a.out_words + r.ra, va, a.out_epoch);
        handoff_store(a.out_words + r.rb, vb, a.out_epoch);
      }
      if (r.ra < q_dim) {
        if constexpr (!kHandOff) {
          a.out[r.ra] = va;
          a.out[r.rb] = vb;
        }
      } else {
        const bool is_k = r.ra < q_dim + kv_dim;
        const int off = r.ra - q_dim - (is_k ? 0 : kv_dim), offb = r.rb - q_dim - (is_k ? 0 : kv_dim);
        const int64_t at = (static_cast<int64_t>(seq) * a.n_ctx + pos) * kv_dim;
        void* cache = is_k ? a.k_cache : a.v_cache;
        if (a.kv_f32) {
          static_cast<float*>(cache)[at + off] = va;
          static_cast<float*>(cache)[at + offb] = vb;
        } else {
          static_cast<__half*>(cache)[at + off] = __float2half_rn(va);
          static_cast<__half*>(cache)[at + offb] = __float2half_rn(vb);
        }
      }
    } else if constexpr (OUT == MatvecOutput::Swiglu) {
      emit(r.ra, swiglu_cpu(va, vb, r.ra, a.rows));
    } else if constexpr (OUT == MatvecOutput::Residual) {
      emit(r.ra, e0 + va);
      if (r.rb != r.ra) emit(r.rb, e1 + vb);
    } else {
      a.out[r.ra] = va;
      a.out[r.rb] = vb;
      best = max(best, max(pack_argmax(va, r.ra), pack_argmax(vb, r.rb)));
    }
  }
  if constexpr (OUT == MatvecOutput::Logits && G < kWarp) {
    // The callers read lane 0's maximum: fold in the other half-warp's.
    __syncwarp();
    best = max(best, __shfl_xor_sync(0xffffffffu, best, G));
  }
}

}  // namespace quarrel::cuda

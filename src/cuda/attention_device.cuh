#pragma once
// The device side of decode/prefill attention for one (query, head), shared
// by the attention kernel (attention.cu) and the whole-step persistent kernel
// (decode_fused.cu). The arithmetic follows the CPU kernels: each score sums
// its products in dimension order (a multiply, then an add), the softmax sums
// its exponentials in double, and V is accumulated position by position.
// Everything is read with __ldcg (L2), because in the persistent kernel q and
// the cache rows were written by other blocks a moment ago; the one-stage
// attention's cp.async copies read rows written by earlier launches (the new
// position's comes from the hand-off words).
#include <cuda_pipeline.h>

#include "cuda/attention.cuh"
#include "cuda/common.cuh"

namespace quarrel::cuda {

// Four consecutive cache elements (16-byte or 8-byte aligned), as loaded
// (load4_raw) and as floats (to_float4). Staging loops load a batch of raw
// pieces before converting any: a conversion next to its load would make
// each load wait for the one before.
__device__ __forceinline__ float4 load4_raw(const float* p) { return __ldcg(reinterpret_cast<const float4*>(p)); }
__device__ __forceinline__ uint2 load4_raw(const __half* p) { return __ldcg(reinterpret_cast<const uint2*>(p)); }
__device__ __forceinline__ float4 to_float4(float4 x) { return x; }
__device__ __forceinline__ float4 to_float4(uint2 u) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}

// Shared memory one call needs: scores for every position, the query, and a
// staging buffer that holds a chunk of K or V rows.
struct AttendSmem {
  float* scores;  // n_pos floats
  float* q;       // head_dim floats
  float* chunk;   // kAttendChunkFloats floats
  double* red;    // blockDim.x / 32
  float* red_max; // blockDim.x / 32
};

constexpr int kAttendChunkFloats = 8192;  // 32 KB

// Walks the flat indices start, start + step, ... of a grid with `cols`
// columns as (row, column) pairs without a division per step: an integer
// division costs dozens of instructions, and a lone warp staging a chunk
// would spend longer on them than on its loads.
struct GridWalk {
  int row, col, step_rows, step_cols, cols;
  __device__ GridWalk(int start, int step, int n_cols)
      : row(start / n_cols), col(start % n_cols), step_rows(step / n_cols), step_cols(step % n_cols), cols(n_cols) {}
  __device__ void next() {
    row += step_rows;
    col += step_cols;
    if (col >= cols) {
      col -= cols;
      ++row;
    }
  }
};

// Copies a grid of np rows by `cols` pieces of four elements into shared
// memory: load(row, col) fetches a piece, store(row, col, piece) puts it
// away. Each thread issues up to kBatch loads before its first store, so a
// batch costs about one memory round trip. Every thread of the block calls it.
template <int kBatch, typename Load, typename Store>
__device__ __forceinline__ void stage_pieces(int np, int cols, Load&& load, Store&& store) {
  GridWalk at(threadIdx.x, blockDim.x, cols);
  while (at.row < np) {
    decltype(load(0, 0)) r[kBatch];
    GridWalk ld = at;
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (ld.row < np) r[u] = load(ld.row, ld.col);
      ld.next();
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (at.row < np) store(at.row, at.col, r[u]);
      at.next();
    }
  }
}

// Four floats at d, which rows of odd pitch leave unaligned.
__device__ __forceinline__ void store4(float* d, float4 v) {
  d[0] = v.x;
  d[1] = v.y;
  d[2] = v.z;
  d[3] = v.w;
}

// Copies rows [p0, p0 + np) of `width` elements (`stride` apart in src; width
// a multiple of 4) into dst, row p at dst + p * pitch, as floats.
template <typename KV>
__device__ __forceinline__ void stage_rows(const KV* src, int64_t stride, int p0, int np, int width, float* dst,
                                           int pitch) {
  stage_pieces<8>(
      np, width / 4, [&](int p, int c) { return load4_raw(src + (p0 + p) * stride + 4 * c); },
      [&](int p, int c, auto x) { store4(dst + p * pitch + 4 * c, to_float4(x)); });
}

// The CPU attention's arithmetic (cpu/kernels/scalar_float.cpp attend_ref,
// llama.cpp's order): a score is tensor::score_dot times the scale; the
// exponentials go in groups of eight positions, each group's horizontal sum
// added into a double; a probability is exp times the float inverse of that
// sum; and each output sums v * p in eight chains by position mod 8, added
// at the end as tensor::hsum8 adds lanes.
__device__ __forceinline__ float score_of(const float* q, const float* kp, int hd, float scale) {
  return __fmul_rn(tensor::score_dot(q, kp, 1, hd), scale);
}

// exp(s[p] - m) in place for positions [8 g, 8 g + 8) below n; returns the
// group's horizontal sum (positions past n count as exp(-inf) = 0).
// The eight loads go first and the exponentials are computed for every lane
// (those past n then dropped), so that they overlap.
__device__ __forceinline__ float exp_group(float* s, int g, int n, float m) {
  float x[8], e[8];
#pragma unroll
  for (int l = 0; l < 8; ++l) x[l] = 8 * g + l < n ? s[8 * g + l] : m;
#pragma unroll
  for (int l = 0; l < 8; ++l) e[l] = 8 * g + l < n ? tensor::exp_poly(__fsub_rn(x[l], m)) : 0.0f;
#pragma unroll
  for (int l = 0; l < 8; ++l)
    if (8 * g + l < n) s[8 * g + l] = e[l];
  return tensor::hsum8(e);
}

// Adds positions [0, np) of a staged chunk (first position p0, a multiple of
// 8) to the eight chains: chain u takes the positions with p % 8 == u.
// v[p * pitch] is the value, e[p] the exponential, times inv.
__device__ __forceinline__ void add_chains(float* acc, const float* v, int pitch, const float* e, float inv, int np) {
  QUARREL_DEVICE_NO_UNROLL
  for (int p = 0; p < np; p += 8) {
#pragma unroll
    for (int u = 0; u < 8; ++u)
      if (p + u < np) acc[u] = fmaf(v[(p + u) * pitch], __fmul_rn(e[p + u], inv), acc[u]);
  }
}

// out[0..head_dim) = softmax(q . K^T * scale) V over positions [0, n_pos).
// k and v point at position 0 of this KV head; rows are `stride` elements
// apart. head_dim must be a multiple of 4. Every thread of the block calls it.
//
// K and V are staged through shared memory a chunk of positions at a time,
// every thread loading a share of the chunk at once, so a chunk costs one
// memory round trip; each score and each output element is then summed from
// shared memory in the CPU's order.
template <typename KV>
__device__ void attend_head(const float* q, const KV* k, const KV* v, int64_t stride, int n_pos, int hd, float scale,
                            float* out, const AttendSmem& sm) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, n_warps = blockDim.x / kWarp;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) sm.q[d] = __ldcg(q + d);

  // Scores. K rows sit hd + 1 floats apart in the chunk, so the threads of a
  // warp (one position each) read different banks.
  const int kpitch = hd + 1;
  const int kchunk = kAttendChunkFloats / kpitch;
  float local_max = -INFINITY;
  for (int p0 = 0; p0 < n_pos; p0 += kchunk) {
    const int np = min(kchunk, n_pos - p0);
    stage_rows(k, stride, p0, np, hd, sm.chunk, kpitch);
    __syncthreads();
    for (int p = threadIdx.x; p < np; p += blockDim.x) {
      const float sc = score_of(sm.q, sm.chunk + p * kpitch, hd, scale);
      sm.scores[p0 + p] = sc;
      local_max = fmaxf(local_max, sc);
    }
    __syncthreads();
  }
  local_max = warp_max(local_max);
  if (lane == 0) sm.red_max[warp] = local_max;
  __syncthreads();
  float m = sm.red_max[0];
  for (int w = 1; w < n_warps; ++w) m = fmaxf(m, sm.red_max[w]);

  // Exponentials by groups of eight, the groups' sums added in double.
  double sum = 0;
  for (int g = threadIdx.x; 8 * g < n_pos; g += blockDim.x) sum += exp_group(sm.scores, g, n_pos, m);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) sm.red[warp] = sum;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < n_warps; ++w) total += sm.red[w];
  const float inv = static_cast<float>(1.0 / total);

  // Weighted sum of V: one dimension per thread, eight chains.
  const int vchunk = (kAttendChunkFloats / hd) & ~7;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // dimension threadIdx.x (hd <= blockDim.x)
  for (int p0 = 0; p0 < n_pos; p0 += vchunk) {
    const int np = min(vchunk, n_pos - p0);
    stage_rows(v, stride, p0, np, hd, sm.chunk, hd);
    __syncthreads();
    if (threadIdx.x < hd) add_chains(acc, sm.chunk + threadIdx.x, hd, sm.scores + p0, inv, np);
    __syncthreads();
  }
  if (threadIdx.x < hd) out[threadIdx.x] = tensor::hsum8(acc);
}

// ---------------------------------------------------------------------
// Decode attention in one stage of the persistent kernel, for short
// contexts: a block takes one query head and the output dimensions
// [d0, d0 + nd), loads every K row of its KV head and the nd columns of
// every V row in one round trip, then computes all the head's scores itself
// (the blocks of one head repeat that work, which is cheaper than a grid
// barrier), the softmax and its slice of the weighted sum. The arithmetic is
// attend_head's, element for element. Shared memory: slice_bytes().
//
// kHandOff (decode_fused.cu): the query and the new position's K and V rows come
// from the QKV stage's hand-off words (common.cuh, epoch in_epoch: q_words,
// k_new and v_new at this head's and KV head's first element), the cache
// holds the earlier positions, and the output goes out as hand-off words of
// out_epoch. Otherwise q, the cache and out, behind a grid barrier: no
// caller takes that branch now, but removing it moved the persistent
// kernel's code and cost SmolLM2 F16 1.5% (docs/PERF.md), so it stays.

// Its layout: n_pos scores (floats, padded to 4); the query (hd floats); 32
// floats for the block's maxima; then the cache rows as the cache holds them
// (element type KV): K rows of hd + 4 elements, so that the lanes of a warp,
// one position each, read four elements at a time from different banks;
// then V's nd columns per row. Byte offsets; kv_bytes = sizeof(KV).
__host__ __device__ constexpr int64_t slice_k_offset(int n_pos, int hd) {
  return 4 * (((n_pos + 3) & ~3) + hd + 32);
}
__host__ __device__ constexpr int64_t slice_bytes(int n_pos, int hd, int nd, int kv_bytes) {
  return slice_k_offset(n_pos, hd) + static_cast<int64_t>(n_pos) * (hd + 4 + nd) * kv_bytes;
}

// A value as the cache of element type KV holds it, and back to float.
template <typename KV>
__device__ __forceinline__ KV to_cached(float v) {
  if constexpr (sizeof(KV) == 2)
    return __float2half_rn(v);
  else
    return v;
}
__device__ __forceinline__ float cached_float(float v) { return v; }
__device__ __forceinline__ float cached_float(__half v) { return __half2float(v); }

// Starts copying the cache rows [0, np) of one (query head, output slice)
// into its layout above (cp.async, 4 elements a copy), and commits them as a
// group; attend_slice waits for them. k and v point at position 0 of the KV
// head, and v at the slice's first dimension. Every thread of the block
// calls it.
template <typename KV>
__device__ __forceinline__ void stage_slice(uint8_t* smem, const KV* k, const KV* v, int64_t stride, int n_pos, int np,
                                            int hd, int nd) {
  KV* krows = reinterpret_cast<KV*>(smem + slice_k_offset(n_pos, hd));
  KV* vrows = krows + n_pos * (hd + 4);
  const int kc = hd / 4;
  GridWalk at(threadIdx.x, blockDim.x, kc + nd / 4);
  for (; at.row < np; at.next()) {
    const int p = at.row, c = at.col;
    if (c < kc)
      __pipeline_memcpy_async(krows + p * (hd + 4) + 4 * c, k + p * stride + 4 * c, 4 * sizeof(KV));
    else
      __pipeline_memcpy_async(vrows + p * nd + 4 * (c - kc), v + p * stride + 4 * (c - kc), 4 * sizeof(KV));
  }
  __pipeline_commit();
}

// Four consecutive cache elements in shared memory (8- or 16-byte aligned)
// as floats.
__device__ __forceinline__ float4 smem4_float(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 smem4_float(const __half* p) {
  return to_float4(*reinterpret_cast<const uint2*>(p));
}

// score_of over a staged K row (hd a multiple of 4): tensor::score_dot's
// chains, four elements loaded at a time.
template <typename KV>
__device__ __forceinline__ float score_of_staged(const float* q, const KV* kp, int hd, float scale) {
  const int n32 = hd & ~31;
  float chain[4][8] = {};
  QUARREL_DEVICE_NO_UNROLL
  for (int i = 0; i < n32; i += 32) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float4 kv = smem4_float(kp + i + 8 * c + 4 * h);
        const float4 qv = smem4_float(q + i + 8 * c + 4 * h);
        float* ch = chain[c] + 4 * h;
        ch[0] = fmaf(kv.x, qv.x, ch[0]);
        ch[1] = fmaf(kv.y, qv.y, ch[1]);
        ch[2] = fmaf(kv.z, qv.z, ch[2]);
        ch[3] = fmaf(kv.w, qv.w, ch[3]);
      }
    }
  }
  float s = tensor::add_score_chains(chain);
  QUARREL_DEVICE_NO_UNROLL
  for (int d = n32; d < hd; ++d) s = s + cached_float(kp[d]) * q[d];
  return __fmul_rn(s, scale);
}

// staged: stage_slice has already started this call's copies (rows
// [0, n_pos - 1) with hand-off words, as the persistent kernel does a stage
// ahead); otherwise they start here.
// kBlockWarps: the block's warps (blockDim.x / 32), a constant so that the
// sums and maxima over the warps unroll and their loads go out together.
template <bool kHandOff, int kBlockWarps, typename KV>
__device__ void attend_slice(const float* q, const uint64_t* q_words, const uint64_t* k_new, const uint64_t* v_new,
                             unsigned in_epoch, const KV* k, const KV* v, int64_t stride, int n_pos, int hd,
                             float scale, int d0, int nd, float* out, uint64_t* out_words, unsigned out_epoch,
                             uint8_t* smem, double* red, bool staged) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  float* scores = reinterpret_cast<float*>(smem);
  float* sq = scores + ((n_pos + 3) & ~3);
  float* red_max = sq + hd;
  const int kpitch = hd + 4;
  KV* krows = reinterpret_cast<KV*>(smem + slice_k_offset(n_pos, hd));
  KV* vrows = krows + n_pos * kpitch;
  // With hand-off words (kHandOff), the query and the new position's K row and
  // V slice come from them, polled while the cache rows' copies are in
  // flight; otherwise everything from memory the grid barrier made visible.
  const int last = n_pos - 1;
  const int t = threadIdx.x;
  if (!staged) stage_slice(smem, k, v + d0, stride, n_pos, kHandOff ? last : n_pos, hd, nd);
  if constexpr (kHandOff) {
    const uint64_t* src = t < hd ? k_new + t : t < hd + nd ? v_new + d0 + (t - hd) : nullptr;
    uint64_t wq = 0, wkv = 0;
    if (t < hd) wq = handoff_load(q_words + t);
    if (src) wkv = handoff_load(src);
    // Both words polled together (one round trip after their writers).
    for (bool ready = false; !ready;) {
      ready = true;
      if (t < hd && !handoff_ready(wq, in_epoch)) {
        ready = false;
        wq = handoff_load(q_words + t);
      }
      if (src && !handoff_ready(wkv, in_epoch)) {
        ready = false;
        wkv = handoff_load(src);
      }
    }
    const KV kv_new = to_cached<KV>(handoff_float(wkv));
    if (t < hd) {
      sq[t] = handoff_float(wq);
      krows[last * kpitch + t] = kv_new;
    } else if (src) {
      vrows[last * nd + (t - hd)] = kv_new;
    }
    for (int e = t + blockDim.x; e < hd + nd; e += blockDim.x) {  // past the block size
      if (e < hd) {
        sq[e] = handoff_wait(q_words + e, in_epoch);
        krows[last * kpitch + e] = to_cached<KV>(handoff_wait(k_new + e, in_epoch));
      } else {
        vrows[last * nd + (e - hd)] = to_cached<KV>(handoff_wait(v_new + d0 + (e - hd), in_epoch));
      }
    }
  } else {
    for (int d = t; d < hd; d += blockDim.x) sq[d] = __ldcg(q + d);
  }
  __pipeline_wait_prior(0);
  __syncthreads();
  float local_max = -INFINITY;
  for (int p = threadIdx.x; p < n_pos; p += blockDim.x) {
    const float sc = score_of_staged(sq, krows + p * kpitch, hd, scale);
    scores[p] = sc;
    local_max = fmaxf(local_max, sc);
  }
  local_max = warp_max(local_max);
  if (lane == 0) red_max[warp] = local_max;
  __syncthreads();
  float m = red_max[0];
#pragma unroll
  for (int w = 1; w < kBlockWarps; ++w) m = fmaxf(m, red_max[w]);
  double sum = 0;
  for (int g = threadIdx.x; 8 * g < n_pos; g += blockDim.x) sum += exp_group(scores, g, n_pos, m);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) red[warp] = sum;
  __syncthreads();
  double total = 0;
#pragma unroll
  for (int w = 0; w < kBlockWarps; ++w) total += red[w];
  const float inv = static_cast<float>(1.0 / total);
  // Eight threads per output dimension, thread u of them holding the chain
  // of the positions p % 8 == u; the chains meet in the first of the eight
  // and are added as tensor::hsum8 adds them.
  const int d = threadIdx.x / 8, u = threadIdx.x % 8;
  if (threadIdx.x < ((8 * nd + kWarp - 1) & ~(kWarp - 1))) {
    float acc = 0;
    // Unrolled so that the loads of four positions go out together (the
    // multiply-adds stay one chain, in position order).
    if (d < nd)
#pragma unroll 4
      for (int p = u; p < n_pos; p += 8) acc = fmaf(cached_float(vrows[p * nd + d]), __fmul_rn(scores[p], inv), acc);
    float c[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) c[j] = __shfl_sync(0xffffffffu, acc, (lane & ~7) + j);
    if (u == 0 && d < nd) {
      if constexpr (kHandOff)
        handoff_store(out_words + d0 + d, tensor::hsum8(c), out_epoch);
      else
        out[d0 + d] = tensor::hsum8(c);
    }
  }
  __syncthreads();  // the next call reuses the shared memory
}

// ---------------------------------------------------------------------
// Decode attention spread over the whole grid (the persistent kernel), in
// two steps with a grid barrier between them. The arithmetic is the same as
// attend_head's, element for element.

// Step 1: the scores of positions [32 c, 32 c + 32) for the `group` (at most
// 8) query heads that share KV head g, written to scores[h * n_pos + p] (a
// dense [n_head][n_pos] array for this step). q_all is the whole query
// vector in shared memory, rows 32 * (hd + 1) more floats of it. The block
// loads the 32 K rows together (coalesced, one round trip); then warp j sums
// head j's products, one position per lane, in dimension order. Every thread
// of the block calls it.
template <typename KV>
__device__ void score_chunk(const float* q_all, const KV* k, int64_t stride, int g, int group, int c, int n_pos,
                            int hd, float scale, float* scores, float* rows) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, n_warps = blockDim.x / kWarp;
  const int p0 = 32 * c, np = min(32, n_pos - p0);
  const int pitch = hd + 1;
  stage_rows(k + g * hd, stride, p0, np, hd, rows, pitch);
  __syncthreads();
  if (lane < np) {
    const float* kp = rows + lane * pitch;
    for (int j = warp; j < group; j += n_warps) {
      const float* qh = q_all + (g * group + j) * hd;
      const float acc = tensor::score_dot(qh, kp, 1, hd);
      scores[(g * group + j) * n_pos + p0 + lane] = __fmul_rn(acc, scale);
    }
  }
  __syncthreads();
}

// Step 2: for KV head g and dimensions [d0, d0 + nd), the softmax of each
// of the group's heads over all positions and the weighted sum of V, written
// to out[h * hd + d]. Every thread of the block calls it. Shared memory:
// group * n_pos floats for the probabilities, group floats for the inverse
// sums, and a chunk of kAttendChunkFloats floats for V.
// With out_words, the output goes out as hand-off words of out_epoch
// (common.cuh) instead of to out.
template <typename KV>
__device__ void softmax_values(const float* scores, const KV* v, int64_t stride, int g, int group, int d0, int nd,
                               int n_pos, int hd, float* out, uint64_t* out_words, unsigned out_epoch, float* probs,
                               float* inv_sum, float* chunk) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, n_warps = blockDim.x / kWarp;
  // The group's scores are contiguous: one batched copy.
  {
    constexpr int kBatch = 8;
    const float* src = scores + g * group * n_pos;
    const int total = group * n_pos;
    for (int base = threadIdx.x; base < total; base += kBatch * blockDim.x) {
      float r[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (base + u * blockDim.x < total) r[u] = __ldcg(src + base + u * blockDim.x);
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (base + u * blockDim.x < total) probs[base + u * blockDim.x] = r[u];
    }
  }
  __syncthreads();
  // Each warp takes whole heads: maximum, exponentials, their sum in double.
  for (int j = warp; j < group; j += n_warps) {
    float* pr = probs + j * n_pos;
    float m = -INFINITY;
    for (int p = lane; p < n_pos; p += kWarp) m = fmaxf(m, pr[p]);
    m = warp_max(m);
    double sum = 0;
    for (int gr = lane; 8 * gr < n_pos; gr += kWarp) sum += exp_group(pr, gr, n_pos, m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) inv_sum[j] = static_cast<float>(1.0 / sum);
  }
  __syncthreads();
  // V restricted to the block's dimensions, a chunk of positions at a time;
  // thread (j, d) keeps the eight chains of its output.
  const int vchunk = (kAttendChunkFloats / nd) & ~7;
  const int j = threadIdx.x / nd, d = threadIdx.x % nd;
  const bool mine = j < group;
  const float inv = mine ? inv_sum[j] : 0.0f;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int p0 = 0; p0 < n_pos; p0 += vchunk) {
    const int np = min(vchunk, n_pos - p0);
    stage_rows(v + g * hd + d0, stride, p0, np, nd, chunk, nd);
    __syncthreads();
    if (mine) add_chains(acc, chunk + d, nd, probs + j * n_pos + p0, inv, np);
    __syncthreads();
  }
  const int at = (g * group + j) * hd + d0 + d;
  if (mine && out_words)
    handoff_store(out_words + at, tensor::hsum8(acc), out_epoch);
  else if (mine)
    out[at] = tensor::hsum8(acc);
}

}  // namespace quarrel::cuda

#pragma once
// Quantized dot products on the GPU, computed exactly as the CPU backend's
// AVX2 kernels compute them (see src/cpu/kernels/x86_avx2*.cpp and
// src/tensor/quants_k.cpp):
//   - the activation row is quantized once into ggml's blocks (Q8_0, Q8_1 or
//     Q8_K) with ggml's rounding, and kept as integers;
//   - each weight block's integer dot product is exact (dp4a);
//   - the float steps that follow happen in the CPU's order, with the CPU's
//     roundings (this file is compiled with --fmad=false, so a * b + c is two
//     roundings unless it says fmaf).
// Why the order matters: these models round activations to 8 bits before
// every matrix, so a last-bit difference in one value can move a rounding,
// and on small random-weight models one moved rounding shifts the logits by
// up to 1e-2. Multiplying decoded weights by float activations (what this
// backend did before) differed from the CPU and llama.cpp by 1.1-1.4e-2.
//
// A row's dot product is the work of one group of 8 threads (kQGroup), the
// eight 32-bit lanes of the CPU's ymm accumulators:
//   - Q8_0, Q5_0, Q4_1, Q5_1 (the AVX2 block tile): lane l holds elements
//     4l..4l+3 of every block, accumulates fma(dw * da, lane sum, acc) over
//     the blocks in order, and the lanes are added as the CPU's hsum adds
//     them; Q4_1/Q5_1 add the minimum's share m * s in a separate sum.
//   - Q4_0 (the AVX2 packed kernel): one chain, fma(block sum, dw * da, acc).
//   - Q4_K, Q6_K (ggml's AVX2 order): lane l holds elements 32 r + 4 l + t of
//     each block, fma(d, lane sum, acc) per block, the CPU's hsum at the end
//     (Q4_K's mins: four float sums of fma(-dmin, mins times Q8_K sums));
//   - Q3_K, Q5_K (ggml's generic K-quant order): lane l holds elements e with
//     e % 8 == l times their sub-block scale, scaled by d into its own running
//     float sum; the eight sums are added at the end after the mins' sum.
//   - Q2_K: one integer per block, scaled once.
#include "cuda/common.cuh"
#include "cuda/dequant.cuh"

namespace quarrel::cuda {

constexpr int kQGroup = 8;

__host__ __device__ constexpr bool is_quantized(DType t) {
  return t != DType::F32 && t != DType::F16 && t != DType::BF16;
}

// True for the K-quants (256-element super-blocks, Q8_K activations).
__host__ __device__ constexpr bool is_kquant(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

// True for the activation formats of quantized weights.
__host__ __device__ constexpr bool is_quantized_act(DType vt) {
  return vt == DType::Q8_0 || vt == DType::Q8_1 || vt == DType::Q8_K;
}

// An activation row quantized for one vec-dot type, in shared or global
// memory: q[k], one scale per block (32 elements; 256 for Q8_K), Q8_1's s per
// block, Q8_K's sums of 16 quants.
struct QActs {
  int8_t* q;
  float* d;
  float* s;
  int* bsum;
};

// Bytes a quantized row of k elements takes (k a multiple of 256 or of 32).
__host__ __device__ constexpr int qacts_bytes(int k) { return k + 4 * (k / 32) * 2 + 4 * (k / 16) + 16; }

// Carves a QActs out of `bytes` (16-byte aligned) for a row of k elements.
__host__ __device__ inline QActs qacts_at(const void* bytes, int k) {
  auto* p = static_cast<uint8_t*>(const_cast<void*>(bytes));
  const int qb = (k + 15) & ~15;
  QActs a;
  a.q = reinterpret_cast<int8_t*>(p);
  a.d = reinterpret_cast<float*>(p + qb);
  a.s = a.d + k / 32;
  a.bsum = reinterpret_cast<int*>(a.s + k / 32);
  return a;
}

// Quantizes one Q8_K block (256 elements) of the padded float row xs (see
// padded()). Called by one whole warp.
__device__ __forceinline__ void quantize_block_q8k(const float* xs, int base, int lane, const QActs& out) {
  // The scale comes from the element of largest magnitude, with its sign
  // (the first such element on ties).
  float best = 0.0f, best_abs = -1.0f;
  int best_idx = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const int idx = base + k * 32 + lane;
    const float v = xs[padded(idx)];
    if (fabsf(v) > best_abs) {
      best_abs = fabsf(v);
      best = v;
      best_idx = idx;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const float oa = __shfl_xor_sync(0xffffffffu, best_abs, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best_idx, o);
    if (oa > best_abs || (oa == best_abs && oi < best_idx)) {
      best = ob;
      best_abs = oa;
      best_idx = oi;
    }
  }
  const float iscale = best_abs == 0.0f ? 0.0f : -127.0f / best;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const int idx = base + k * 32 + lane;
    const int q = best_abs == 0.0f ? 0 : min(127, __float2int_rn(iscale * xs[padded(idx)]));
    out.q[idx] = static_cast<int8_t>(q);
    // Sum of 16 quants: the half-warp that holds them.
    int sum = q;
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane % 16 == 0) out.bsum[idx / 16] = sum;
  }
  if (lane == 0) out.d[base / 256] = best_abs == 0.0f ? 0.0f : 1.0f / iscale;
}

// Quantizes a whole row of n elements held in padded shared memory. Every
// thread of the block calls it; it ends with a barrier. A Q8_0 or Q8_1 block
// (32 elements) takes eight lanes, four elements a lane, so that a
// 576-element row is one round of three shuffles (the decode stages wait for
// it); a Q8_K block (256) takes a warp.
template <DType VT>
__device__ void quantize_row(const float* xs, int n, const QActs& out) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, n_warps = blockDim.x / kWarp;
  if constexpr (VT == DType::Q8_0 || VT == DType::Q8_1) {
    const int sub = lane / 8, l8 = lane % 8, n_blocks = n / 32;
    for (int b0 = 4 * warp; b0 < n_blocks; b0 += 4 * n_warps) {
      const int blk = b0 + sub;
      const bool mine = blk < n_blocks;
      float v[4] = {0, 0, 0, 0};
      float amax = 0;
      if (mine) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          v[j] = xs[padded(32 * blk + 4 * l8 + j)];
          amax = fmaxf(amax, fabsf(v[j]));
        }
      }
#pragma unroll
      for (int o = 4; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      const float d = amax / 127.0f;
      const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
      int q[4], sum = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        q[j] = __float2int_rn(v[j] * id);
        sum += q[j];
      }
      if (mine)
        *reinterpret_cast<char4*>(out.q + 32 * blk + 4 * l8) =
            make_char4(static_cast<signed char>(q[0]), static_cast<signed char>(q[1]),
                       static_cast<signed char>(q[2]), static_cast<signed char>(q[3]));
      if constexpr (VT == DType::Q8_1) {
#pragma unroll
        for (int o = 4; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        // s uses the float d, not its F16 rounding, as ggml does.
        if (mine && l8 == 0) out.s[blk] = __half2float(__float2half_rn(static_cast<float>(sum) * d));
      }
      if (mine && l8 == 0) out.d[blk] = __half2float(__float2half_rn(d));
    }
  } else {
    static_assert(VT == DType::Q8_K);
    for (int base = warp * 256; base < n; base += n_warps * 256) quantize_block_q8k(xs, base, lane, out);
  }
  __syncthreads();
}

__device__ __forceinline__ int load_u16x2(const uint8_t* p) {  // p 2-byte aligned
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<int>(static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16));
}

// The four weight quants of lane l (elements 4l..4l+3) of a 32-element block,
// as signed bytes ready for dp4a, and the block's scale (and min).
template <DType WT>
__device__ __forceinline__ int block_quads(const uint8_t* b, int l) {
  if constexpr (WT == DType::Q8_0) {
    return load_u16x2(b + 2 + 4 * l);
  } else if constexpr (WT == DType::Q4_1) {
    const int w = load_u16x2(b + 4 + 4 * (l & 3));
    return (l < 4 ? w : w >> 4) & 0x0f0f0f0f;
  } else {  // Q5_0, Q5_1: a fifth bit from qh
    constexpr int off = WT == DType::Q5_0 ? 2 : 4;
    const uint32_t qh = static_cast<uint32_t>(load_u16x2(b + off));
    const int w = load_u16x2(b + off + 4 + 4 * (l & 3));
    const int nib = (l < 4 ? w : w >> 4) & 0x0f0f0f0f;
    // Bits 4l..4l+3 of qh, one to the fifth bit of each byte.
    const uint32_t h = (qh >> (4 * l)) & 0xf;
    const uint32_t hb = ((h & 1) << 4) | ((h & 2) << 11) | ((h & 4) << 18) | ((h & 8) << 25);
    const int q = nib | static_cast<int>(hb);
    return WT == DType::Q5_0 ? static_cast<int>(__vsub4(q, 0x10101010)) : q;
  }
}

template <DType WT>
constexpr int block_bytes() {
  switch (WT) {
    case DType::Q8_0: return 34;
    case DType::Q4_0: return 18;
    case DType::Q4_1: return 20;
    case DType::Q5_0: return 22;
    case DType::Q5_1: return 24;
    case DType::Q2_K: return 84;
    case DType::Q3_K: return 110;
    case DType::Q4_K: return 144;
    case DType::Q5_K: return 176;
    case DType::Q6_K: return 210;
    default: return 0;
  }
}

// Integer quant of element e (0..255) of a K-quant super-block, and the
// scale (and min) of the sub-block it falls in, as the CPU unpacks them.
template <DType WT>
__device__ __forceinline__ int kquant(const uint8_t* b, int e) {
  if constexpr (WT == DType::Q2_K || WT == DType::Q3_K) {
    const int half = e / 128, shift = (e % 128) / 32, l = e % 32;
    const uint8_t* qs = b + (WT == DType::Q2_K ? 16 : 32);
    const int low = (qs[32 * half + l] >> (2 * shift)) & 3;
    if constexpr (WT == DType::Q2_K) return low;
    return low - (((b[l] >> (4 * half + shift)) & 1) ? 0 : 4);
  } else if constexpr (WT == DType::Q4_K || WT == DType::Q5_K) {
    const int g = e / 64, within = e % 64, l = within % 32;
    const uint8_t* qs = b + (WT == DType::Q4_K ? 16 : 48);
    int q = within < 32 ? qs[32 * g + l] & 0x0f : qs[32 * g + l] >> 4;
    if constexpr (WT == DType::Q5_K) q |= ((b[16 + l] >> (2 * g + (within < 32 ? 0 : 1))) & 1) << 4;
    return q;
  } else {  // Q6_K
    const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    const uint8_t* ql = b + 64 * half;
    const uint8_t* qh = b + 128 + 32 * half;
    const int byte = ql[l + 32 * (quarter & 1)];
    const int low = quarter >= 2 ? byte >> 4 : byte & 0x0f;
    return (low | ((qh[l] >> (2 * quarter)) & 3) << 4) - 32;
  }
}

// Scale and min of sub-block j.
template <DType WT>
__device__ __forceinline__ void kscale(const uint8_t* b, int j, int& sc, int& m) {
  if constexpr (WT == DType::Q2_K) {
    sc = b[j] & 0x0f;
    m = b[j] >> 4;
  } else if constexpr (WT == DType::Q3_K) {
    const uint8_t* s = b + 96;
    const int low = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
    const int high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    sc = (low | high << 4) - 32;
    m = 0;
  } else if constexpr (WT == DType::Q4_K || WT == DType::Q5_K) {
    tensor::get_scale_min_k4(j, b + 4, sc, m);
  } else {  // Q6_K
    sc = static_cast<int8_t>(b[192 + j]);
    m = 0;
  }
}

template <DType WT>
constexpr int ksub_size() {
  return (WT == DType::Q4_K || WT == DType::Q5_K) ? 32 : 16;
}

// Offsets of d and dmin in a K-quant super-block.
template <DType WT>
constexpr int kd_offset() {
  return WT == DType::Q2_K ? 80 : WT == DType::Q3_K ? 108 : WT == DType::Q6_K ? 208 : 0;
}

// Sum over the 8 threads of a group, all of which get it (integers: exact).
__device__ __forceinline__ int group_isum(int v, unsigned mask) {
  v += __shfl_xor_sync(mask, v, 4, kQGroup);
  v += __shfl_xor_sync(mask, v, 2, kQGroup);
  v += __shfl_xor_sync(mask, v, 1, kQGroup);
  return v;
}

// A Q4_0 block's 32 quants minus 8, as signed bytes in element order (four
// per int), for dp4a against the activation block's eight ints.
__device__ __forceinline__ void q4_0_quants(const uint8_t* b, int (&w)[8]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int q = load_u16x2(b + 2 + 4 * j);
    w[j] = static_cast<int>(__vsub4(q & 0x0f0f0f0f, 0x08080808));
    w[j + 4] = static_cast<int>(__vsub4((q >> 4) & 0x0f0f0f0f, 0x08080808));
  }
}

__device__ __forceinline__ int block_isum(const int (&w)[8], const int8_t* xq) {
  const int* x = reinterpret_cast<const int*>(xq);
  int sum = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) sum = __dp4a(w[j], x[j], sum);
  return sum;
}

// The CPU's horizontal sum of its eight lanes (one per thread of a group):
// ((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7)), valid in lane 0.
__device__ __forceinline__ float lane_hsum(float v, unsigned mask) {
  v = v + __shfl_down_sync(mask, v, 4, kQGroup);
  v = v + __shfl_down_sync(mask, v, 2, kQGroup);
  return v + __shfl_down_sync(mask, v, 1, kQGroup);
}

// The dot product of one weight row (k elements of type WT) with a quantized
// activation row, computed by the kQGroup threads of a group (l = 0..7, all
// in `mask`). The result is valid in lane l == 0.
template <DType WT>
__device__ __forceinline__ float qdot(const uint8_t* row, const QActs& a, int k, int l, unsigned mask) {
  if constexpr (WT == DType::Q4_0) {
    // One chain of whole-block sums: each lane sums whole blocks (c0 + l and
    // c0 + 8 + l) on its own, then every lane runs the chain over the
    // group's blocks in order, taking each block's sum by shuffle.
    const int nb = k / 32;
    const int base = (threadIdx.x % kWarp) & ~(kQGroup - 1);
    float acc = 0.0f;
    for (int c0 = 0; c0 < nb; c0 += 2 * kQGroup) {
      int isum[2];
      float dd[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c = min(c0 + h * kQGroup + l, nb - 1);
        const uint8_t* b = row + 18 * c;
        int w[8];
        q4_0_quants(b, w);
        isum[h] = block_isum(w, a.q + 32 * c);
        dd[h] = load_half(b) * a.d[c];
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int j = 0; j < kQGroup; ++j) {
          const int sum = __shfl_sync(mask, isum[h], base + j);
          const float d = __shfl_sync(mask, dd[h], base + j);
          if (c0 + h * kQGroup + j < nb) acc = fmaf(static_cast<float>(sum), d, acc);
        }
      }
    }
    return acc;
  } else if constexpr (WT == DType::Q8_0 || WT == DType::Q5_0 || WT == DType::Q4_1 || WT == DType::Q5_1) {
    constexpr int BB = block_bytes<WT>();
    constexpr bool kMin = WT == DType::Q4_1 || WT == DType::Q5_1;
    const int nb = k / 32;
    float acc = 0.0f, accm = 0.0f;
    // kUnroll blocks' loads are issued before their arithmetic, so a
    // thread waits on memory once per kUnroll blocks, not once per block.
    constexpr int kUnroll = 16;
    for (int c0 = 0; c0 < nb; c0 += kUnroll) {
      int wq[kUnroll];
      float dw[kUnroll], mw[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const uint8_t* b = row + BB * min(c0 + u, nb - 1);
        wq[u] = block_quads<WT>(b, l);
        dw[u] = load_half(b);
        if constexpr (kMin) mw[u] = load_half(b + 2);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = c0 + u;
        if (c >= nb) break;
        const int p = __dp4a(wq[u], *reinterpret_cast<const int*>(a.q + 32 * c + 4 * l), 0);
        acc = fmaf(dw[u] * a.d[c], static_cast<float>(p), acc);
        if constexpr (kMin) accm = accm + mw[u] * a.s[c];
      }
    }
    acc = lane_hsum(acc, mask);
    return kMin ? acc + accm : acc;
  } else {
    constexpr int BB = block_bytes<WT>(), SUB = ksub_size<WT>(), DO = kd_offset<WT>();
    const int nb = k / 256;
    float sums = 0.0f, sumf = 0.0f, quads = 0.0f, mins = 0.0f;
    for (int i = 0; i < nb; ++i) {
      const uint8_t* b = row + static_cast<int64_t>(BB) * i;
      const int8_t* q8 = a.q + 256 * i;
      int lane_sum = 0;
      if constexpr (WT == DType::Q2_K) {
        for (int e = l; e < 256; e += kQGroup) {
          int sc, m;
          kscale<WT>(b, e / 16, sc, m);
          lane_sum += sc * (q8[e] * kquant<WT>(b, e));
        }
        const int isum = group_isum(lane_sum, mask);
        int summs = 0;
        for (int j = 0; j < 16; ++j) {
          int sc, m;
          kscale<WT>(b, j, sc, m);
          summs += a.bsum[16 * i + j] * m;
        }
        const float dall = a.d[i] * load_half(b + DO), dmin = a.d[i] * load_half(b + DO + 2);
        sumf = sumf + (dall * static_cast<float>(isum) - dmin * static_cast<float>(summs));
      } else if constexpr (WT == DType::Q4_K || WT == DType::Q6_K) {
        // ggml's AVX2 order: lane l holds elements 32 r + 4 l + t.
        for (int r = 0; r < 8; ++r)
          for (int t = 0; t < 4; ++t) {
            const int e = 32 * r + 4 * l + t;
            int sc, m;
            kscale<WT>(b, e / SUB, sc, m);
            lane_sum += sc * (q8[e] * kquant<WT>(b, e));
          }
        quads = fmaf(a.d[i] * load_half(b + DO), static_cast<float>(lane_sum), quads);
        if constexpr (WT == DType::Q4_K) {
          if (l < 4) {
            int sc0, m0, sc1, m1;
            kscale<WT>(b, 2 * l, sc0, m0);
            kscale<WT>(b, 2 * l + 1, sc1, m1);
            const int* bs = a.bsum + 16 * i + 4 * l;
            const int prod = m0 * (bs[0] + bs[1]) + m1 * (bs[2] + bs[3]);
            mins = fmaf(-a.d[i] * load_half(b + 2), static_cast<float>(prod), mins);
          }
        }
      } else {
        for (int e = l; e < 256; e += kQGroup) {
          int sc, m;
          kscale<WT>(b, e / SUB, sc, m);
          lane_sum += sc * (q8[e] * kquant<WT>(b, e));
        }
        sums = sums + load_half(b + DO) * a.d[i] * static_cast<float>(lane_sum);
        if constexpr (WT == DType::Q5_K) {
          int sumi = 0;
          for (int j = 0; j < 16; ++j) {
            int sc, m;
            kscale<WT>(b, j / 2, sc, m);
            sumi += a.bsum[16 * i + j] * m;
          }
          const float dmin = load_half(b + 2) * a.d[i];
          sumf = sumf - dmin * static_cast<float>(sumi);
        }
      }
    }
    if constexpr (WT == DType::Q2_K) return sumf;
    if constexpr (WT == DType::Q4_K || WT == DType::Q6_K) {
      // The lanes' horizontal sum, plus (Q4_K) the four min sums (0 + 2) + (1 + 3).
      const float q = lane_hsum(quads, mask);
      if constexpr (WT == DType::Q6_K) return q;
      float mm = mins + __shfl_down_sync(mask, mins, 2, kQGroup);
      mm = mm + __shfl_down_sync(mask, mm, 1, kQGroup);
      return q + mm;
    }
    // total = sumf + sums[0] + ... + sums[7], in that order.
    const int base = (threadIdx.x % kWarp) & ~(kQGroup - 1);
    float total = sumf;
#pragma unroll
    for (int j = 0; j < kQGroup; ++j) total = total + __shfl_sync(mask, sums, base + j);
    return total;
  }
}

// The same dot products for NT activation rows at once (n of them valid), in
// the same order per row as qdot, so each weight block is loaded once for
// all of them: the batched (prefill) path. 32-element types only; results
// in out[] are valid in lane l == 0.
template <DType WT, int NT>
__device__ __forceinline__ void qdot_rows(const uint8_t* row, const QActs* a, int n, int k, int l, unsigned mask,
                                          float (&out)[NT]) {
  static_assert(is_quantized(WT) && !is_kquant(WT));
  const int nb = k / 32;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  if constexpr (WT == DType::Q4_0) {
    const int base = (threadIdx.x % kWarp) & ~(kQGroup - 1);
    for (int c0 = 0; c0 < nb; c0 += kQGroup) {
      // This lane's whole block c0 + l, for every row; then the chains.
      const int c = min(c0 + l, nb - 1);
      const uint8_t* b = row + 18 * c;
      int w[8];
      q4_0_quants(b, w);
      const float dw = load_half(b);
      int isum[NT];
      float dd[NT];
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        isum[t] = block_isum(w, a[t].q + 32 * c);
        dd[t] = dw * a[t].d[c];
      }
#pragma unroll
      for (int j = 0; j < kQGroup; ++j) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          const int sum = __shfl_sync(mask, isum[t], base + j);
          const float d = __shfl_sync(mask, dd[t], base + j);
          if (c0 + j < nb) acc[t] = fmaf(static_cast<float>(sum), d, acc[t]);
        }
      }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) out[t] = acc[t];
  } else {
    constexpr int BB = block_bytes<WT>();
    constexpr bool kMin = WT == DType::Q4_1 || WT == DType::Q5_1;
    float accm[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) accm[t] = 0.0f;
    for (int c = 0; c < nb; ++c) {
      const uint8_t* b = row + BB * c;
      const int wq = block_quads<WT>(b, l);
      const float dw = load_half(b);
      const float mw = kMin ? load_half(b + 2) : 0.0f;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t >= n) break;
        const int p = __dp4a(wq, *reinterpret_cast<const int*>(a[t].q + 32 * c + 4 * l), 0);
        acc[t] = fmaf(dw * a[t].d[c], static_cast<float>(p), acc[t]);
        if constexpr (kMin) accm[t] = accm[t] + mw * a[t].s[c];
      }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      const float v = lane_hsum(acc[t], mask);
      out[t] = kMin ? v + accm[t] : v;
    }
  }
}

}  // namespace quarrel::cuda

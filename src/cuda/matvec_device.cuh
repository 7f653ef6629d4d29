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
template <MatvecInput IN, DType VT>
__device__ void load_input(const MatvecArgs& a, float* xs, double* red) {
  constexpr int kBatch = 8;  // loads in flight per thread
  const int k = a.k;
  float* ws = xs + padded_size(k);
  double ss = 0;
  for (int base = threadIdx.x; base < k; base += kBatch * blockDim.x) {
    float v[kBatch], w[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + u * blockDim.x;
      if (i < k) {
        v[u] = __ldcg(a.x + i);
        if constexpr (IN == MatvecInput::Norm) w[u] = a.norm_w[i];
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + u * blockDim.x;
      if (i >= k) break;
      xs[padded(i)] = v[u];
      if constexpr (IN == MatvecInput::Norm) {
        ws[i] = w[u];
        ss += static_cast<double>(v[u] * v[u]);
      }
    }
  }
  if constexpr (IN == MatvecInput::Norm) {
    const float scale = rms_scale(block_sum_double(ss, red), k, a.eps);
    for (int i = threadIdx.x; i < k; i += blockDim.x) xs[padded(i)] = (xs[padded(i)] * scale) * ws[i];
  }
  __syncthreads();
  if constexpr (is_quantized_act(VT)) {
    quantize_row<VT>(xs, k, input_qacts(xs, k));
  } else {
    round_activations<VT>(xs, a.k);
  }
}

// Lanes that compute one unit (two rows): a warp for float weights; half a
// warp for quantized ones, whose rows take kQGroup lanes each (qdot.cuh).
template <DType WT>
constexpr int unit_lanes() {
  return is_quantized(WT) ? 2 * kQGroup : kWarp;
}

// Rows ra and rb times the input, by the unit_lanes() lanes of a unit
// (glane is the lane's index among them, mask names them); the results are
// valid in glane 0.
template <DType WT>
__device__ __forceinline__ void dot2(const uint8_t* ra, const uint8_t* rb, const float* xs, int k, int glane,
                                     unsigned mask, float& sa, float& sb) {
  if constexpr (is_quantized(WT)) {
    const float v = qdot<WT>(glane < kQGroup ? ra : rb, input_qacts(xs, k), k, glane % kQGroup, mask);
    sa = v;
    sb = __shfl_down_sync(mask, v, kQGroup, 2 * kQGroup);
  } else if constexpr (WT == DType::F16 || WT == DType::BF16) {
    // Software-pipelined: the next chunk's 64 bytes per row are loaded before
    // this chunk's FMAs, so a lane keeps two chunks in flight. The FMAs run
    // in element order, as in the generic loop below.
    const int nc = k / 32;
    uint4 cur[2][4], nxt[2][4];
    auto load = [&](int c, uint4 (&dst)[2][4]) {
      const uint4* pa = reinterpret_cast<const uint4*>(ra + 64 * c);
      const uint4* pb = reinterpret_cast<const uint4*>(rb + 64 * c);
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        dst[0][i] = pa[i];
        dst[1][i] = pb[i];
      }
    };
    sa = 0;
    sb = 0;
    int c = glane;
    if (c < nc) load(c, cur);
    for (; c < nc; c += kWarp) {
      if (c + kWarp < nc) load(c + kWarp, nxt);
      const float* xc = xs + 33 * c;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint32_t* ua = reinterpret_cast<const uint32_t*>(&cur[0][i]);
        const uint32_t* ub = reinterpret_cast<const uint32_t*>(&cur[1][i]);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float2 wa, wb;
          if constexpr (WT == DType::F16) {
            wa = __half22float2(*reinterpret_cast<const __half2*>(&ua[j]));
            wb = __half22float2(*reinterpret_cast<const __half2*>(&ub[j]));
          } else {
            wa = make_float2(__uint_as_float(ua[j] << 16), __uint_as_float(ua[j] & 0xffff0000u));
            wb = make_float2(__uint_as_float(ub[j] << 16), __uint_as_float(ub[j] & 0xffff0000u));
          }
          const int e = 8 * i + 2 * j;
          sa = fmaf(wa.x, xc[e], sa);
          sb = fmaf(wb.x, xc[e], sb);
          sa = fmaf(wa.y, xc[e + 1], sa);
          sb = fmaf(wb.y, xc[e + 1], sb);
        }
      }
#pragma unroll
      for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) cur[r][i] = nxt[r][i];
    }
    sa = warp_sum(sa);
    sb = warp_sum(sb);
  } else {
    float wa[32], wb[32];
    sa = 0;
    sb = 0;
    for (int c = glane; c < k / 32; c += kWarp) {
      dequant32<WT>(ra, c, wa);
      dequant32<WT>(rb, c, wb);
      const float* xc = xs + 33 * c;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        sa = fmaf(wa[j], xc[j], sa);
        sb = fmaf(wb[j], xc[j], sb);
      }
    }
    sa = warp_sum(sa);
    sb = warp_sum(sb);
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

template <MatvecOutput OUT>
__host__ __device__ inline int matvec_units(int rows) {
  return OUT == MatvecOutput::Swiglu ? rows : (rows + 1) / 2;
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
      for (int64_t off = lane * 128; off < bytes; off += kWarp * 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
    }
  }
}

// The units of warp `warp` of `n_warps`, on the input already in xs. For
// Logits, `best` collects this lane's packed (value, index) maximum.
template <DType WT, MatvecOutput OUT>
__device__ void matvec_rows(const MatvecArgs& a, const float* xs, int warp, int n_warps, unsigned long long& best) {
  constexpr int G = unit_lanes<WT>();
  const int lane = threadIdx.x % kWarp, glane = lane % G;
  const unsigned mask = (0xffffffffu >> (kWarp - G)) << (lane - glane);
  // Unit processors: warps, or half-warps for quantized weights.
  const int first = warp * (kWarp / G) + lane / G, stride = n_warps * (kWarp / G);
  if constexpr (OUT == MatvecOutput::Qkv) {
    // A unit is one rotated pair of rows of one head of q, k or v.
    const int half = a.head_dim / 2;
    const int q_dim = a.n_head * a.head_dim, kv_dim = a.n_head_kv * a.head_dim;
    const int pos = a.step[1], seq = a.step[2];
    for (int u = first; u < a.rows / 2; u += stride) {
      const int head = (a.row_base + 2 * u) / a.head_dim, i = u % half;
      const int base = head * a.head_dim;
      const int ra = base + (a.neox ? i : 2 * i), rb = base + (a.neox ? i + half : 2 * i + 1);
      // The epilogue's loads first, so they overlap the weights'.
      const float cs = a.rope_cos[pos * half + i], sn = a.rope_sin[pos * half + i];
      const float ba = a.bias ? a.bias[ra] : 0.0f, bb = a.bias ? a.bias[rb] : 0.0f;
      float va, vb;
      dot2<WT>(a.w + (ra - a.row_base) * a.row_bytes, a.w + (rb - a.row_base) * a.row_bytes, xs, a.k, glane, mask,
               va, vb);
      if (glane != 0) continue;
      if (a.bias) {
        va += ba;
        vb += bb;
      }
      if (ra < q_dim + kv_dim) {  // q and k are rotated
        const float x0 = va, x1 = vb;
        va = x0 * cs - x1 * sn;
        vb = x0 * sn + x1 * cs;
      }
      if (ra < q_dim) {
        a.out[ra] = va;
        a.out[rb] = vb;
      } else {
        const bool is_k = ra < q_dim + kv_dim;
        const int off = ra - q_dim - (is_k ? 0 : kv_dim), offb = rb - q_dim - (is_k ? 0 : kv_dim);
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
    }
  } else if constexpr (OUT == MatvecOutput::Swiglu) {
    for (int r = first; r < a.rows; r += stride) {
      float g, u;
      dot2<WT>(a.w + r * a.row_bytes, a.w2 + r * a.row_bytes, xs, a.k, glane, mask, g, u);
      if (glane == 0) a.out[r] = swiglu_cpu(g, u, r, a.rows);
    }
  } else {
    for (int u = first; u < (a.rows + 1) / 2; u += stride) {
      const int ra = 2 * u, rb = min(2 * u + 1, a.rows - 1);
      float res_a = 0, res_b = 0;
      if constexpr (OUT == MatvecOutput::Residual) {  // loaded first, to overlap the weights
        res_a = __ldcg(a.out + ra);
        res_b = __ldcg(a.out + rb);
      }
      float va, vb;
      dot2<WT>(a.w + ra * a.row_bytes, a.w + rb * a.row_bytes, xs, a.k, glane, mask, va, vb);
      if (glane != 0) continue;
      if constexpr (OUT == MatvecOutput::Residual) {
        a.out[ra] = res_a + va;
        if (rb != ra) a.out[rb] = res_b + vb;
      } else {
        a.out[ra] = va;
        a.out[rb] = vb;
        best = max(best, max(pack_argmax(va, ra), pack_argmax(vb, rb)));
      }
    }
    if constexpr (OUT == MatvecOutput::Logits && G < kWarp) {
      // The callers read lane 0's maximum: fold in the other half-warp's.
      __syncwarp();
      best = max(best, __shfl_xor_sync(0xffffffffu, best, G));
    }
  }
}

}  // namespace quarrel::cuda

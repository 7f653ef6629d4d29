#pragma once
// Device-side decoding of every weight type, 32 elements at a time, and the
// activation rounding the CPU backend applies before float weights' dot
// products (so the two backends compute the same function; see
// tensor/quants.h).
#include "cuda/common.cuh"
#include "tensor/blocks.h"
#include "tensor/dtype.h"

namespace quarrel::cuda {

using tensor::DType;

__device__ __forceinline__ float load_half(const uint8_t* p) {
  uint16_t h = static_cast<uint16_t>(p[0] | (p[1] << 8));
  return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ uint32_t load_u32_unaligned(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

// The one table from run-time weight types to template instances: X(weight
// type, the activation type the CPU backend rounds its input to).
#define QUARREL_WEIGHT_TYPES(X) \
  X(F32, F32) X(F16, F16) X(BF16, BF16) X(Q8_0, Q8_0) X(Q4_0, Q8_0) X(Q5_0, Q8_0) X(Q4_1, Q8_1) X(Q5_1, Q8_1) \
  X(Q2_K, Q8_K) X(Q3_K, Q8_K) X(Q4_K, Q8_K) X(Q5_K, Q8_K) X(Q6_K, Q8_K)

// Writes elements [32c, 32c + 32) of a row of type T to out.
template <DType T>
__device__ __forceinline__ void dequant32(const uint8_t* row, int c, float* out) {
  if constexpr (T == DType::F32) {
    const float4* p = reinterpret_cast<const float4*>(row + 128 * c);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      float4 v = p[i];
      out[4 * i] = v.x; out[4 * i + 1] = v.y; out[4 * i + 2] = v.z; out[4 * i + 3] = v.w;
    }
  } else if constexpr (T == DType::F16) {
    const uint4* p = reinterpret_cast<const uint4*>(row + 64 * c);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint4 v = p[i];
      const __half2* h = reinterpret_cast<const __half2*>(&v);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        float2 f = __half22float2(h[j]);
        out[8 * i + 2 * j] = f.x;
        out[8 * i + 2 * j + 1] = f.y;
      }
    }
  } else if constexpr (T == DType::BF16) {
    const uint4* p = reinterpret_cast<const uint4*>(row + 64 * c);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint4 v = p[i];
      const uint32_t* u = reinterpret_cast<const uint32_t*>(&v);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        out[8 * i + 2 * j] = __uint_as_float(u[j] << 16);
        out[8 * i + 2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
      }
    }
  } else if constexpr (T == DType::Q8_0) {
    const uint8_t* b = row + 34 * c;
    const float d = load_half(b);
    const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
#pragma unroll
    for (int j = 0; j < 32; ++j) out[j] = d * q[j];
  } else if constexpr (T == DType::Q4_0) {
    const uint8_t* b = row + 18 * c;
    const float d = load_half(b);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      uint8_t q = b[2 + j];
      out[j] = d * (static_cast<int>(q & 0xF) - 8);
      out[j + 16] = d * (static_cast<int>(q >> 4) - 8);
    }
  } else if constexpr (T == DType::Q4_1) {
    const uint8_t* b = row + 20 * c;
    const float d = load_half(b), m = load_half(b + 2);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      uint8_t q = b[4 + j];
      out[j] = d * (q & 0xF) + m;
      out[j + 16] = d * (q >> 4) + m;
    }
  } else if constexpr (T == DType::Q5_0) {
    const uint8_t* b = row + 22 * c;
    const float d = load_half(b);
    const uint32_t qh = load_u32_unaligned(b + 2);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      uint8_t q = b[6 + j];
      int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
      out[j] = d * (static_cast<int>((q & 0xF) | h0) - 16);
      out[j + 16] = d * (static_cast<int>((q >> 4) | h1) - 16);
    }
  } else if constexpr (T == DType::Q5_1) {
    const uint8_t* b = row + 24 * c;
    const float d = load_half(b), m = load_half(b + 2);
    const uint32_t qh = load_u32_unaligned(b + 4);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      uint8_t q = b[8 + j];
      int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
      out[j] = d * ((q & 0xF) | h0) + m;
      out[j + 16] = d * ((q >> 4) | h1) + m;
    }
  } else if constexpr (T == DType::Q2_K) {
    const uint8_t* b = row + 84 * (c / 8);
    const int sub = c % 8, h = sub / 4, j = sub % 4, shift = 2 * j;
    const float d = load_half(b + 80), dmin = load_half(b + 82);
    const uint8_t* q = b + 16 + 32 * h;
#pragma unroll
    for (int half16 = 0; half16 < 2; ++half16) {
      const uint8_t sc = b[8 * h + 2 * j + half16];
      const float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
#pragma unroll
      for (int l = 0; l < 16; ++l) out[16 * half16 + l] = dl * ((q[16 * half16 + l] >> shift) & 3) - ml;
    }
  } else if constexpr (T == DType::Q3_K) {
    const uint8_t* b = row + 110 * (c / 8);
    const int sub = c % 8, h = sub / 4, j = sub % 4, shift = 2 * j;
    const float d = load_half(b + 108);
    const uint8_t* hm = b;
    const uint8_t* q = b + 32 + 32 * h;
    const uint8_t* s = b + 96;
    const uint8_t m = static_cast<uint8_t>(1u << (4 * h + j));
#pragma unroll
    for (int half16 = 0; half16 < 2; ++half16) {
      // The 16 six-bit scales: low 4 bits from s[0..7] nibbles, high 2 bits from s[8..11].
      const int is = 8 * h + 2 * j + half16;
      const int lo = is < 8 ? (s[is] & 0xF) : (s[is - 8] >> 4);
      const int hi = (s[8 + is % 4] >> (2 * (is / 4))) & 3;
      const float dl = d * ((lo | (hi << 4)) - 32);
#pragma unroll
      for (int l = 0; l < 16; ++l) {
        const int idx = 16 * half16 + l;
        out[idx] = dl * (static_cast<int>((q[idx] >> shift) & 3) - ((hm[idx] & m) ? 0 : 4));
      }
    }
  } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
    constexpr int kBytes = T == DType::Q4_K ? 144 : 176;
    const uint8_t* b = row + kBytes * (c / 8);
    const int sub = c % 8;
    const float d = load_half(b), dmin = load_half(b + 2);
    int sc, mn;
    tensor::get_scale_min_k4(sub, b + 4, sc, mn);
    const float dl = d * sc, ml = dmin * mn;
    const uint8_t* qs = b + (T == DType::Q4_K ? 16 : 48) + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      int q = (qs[l] >> shift) & 0xF;
      if constexpr (T == DType::Q5_K) q |= (b[16 + l] >> sub) & 1 ? 16 : 0;
      out[l] = dl * q - ml;
    }
  } else if constexpr (T == DType::Q6_K) {
    const uint8_t* b = row + 210 * (c / 8);
    const int sub = c % 8, h = sub / 4, qd = sub % 4;
    const float d = load_half(b + 208);
    const uint8_t* ql = b + 64 * h + (qd % 2) * 32;
    const uint8_t* qh = b + 128 + 32 * h;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192 + 8 * h);
    const int lshift = qd >= 2 ? 4 : 0, hshift = 2 * qd;
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
      out[l] = d * sc[l / 16 + 2 * qd] * q;
    }
  }
}

// One activation rounded the way the CPU backend rounds activations for float
// weights of vec-dot type VT (F32, and the quantized types, whose rows are
// quantized afterwards: not at all).
template <DType VT>
__device__ __forceinline__ float round_activation(float x) {
  if constexpr (VT == DType::F16) return __half2float(__float2half_rn(x));
  if constexpr (VT == DType::BF16) return __bfloat162float(__float2bfloat16_rn(x));
  return x;
}

}  // namespace quarrel::cuda

// Reference codecs for the float types and ggml's 32-element block formats
// (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1). Each function mirrors its ggml
// counterpart, including the order of float operations, which decides the
// last bit of the results.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "tensor/ref_math.h"

namespace quarrel::tensor::ref {

namespace {

uint16_t load_u16(const void* row, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const uint8_t*>(row) + 2 * i, sizeof(v));
  return v;
}

void store_u16(void* row, int64_t i, uint16_t v) { std::memcpy(static_cast<uint8_t*>(row) + 2 * i, &v, sizeof(v)); }

float load_f32(const void* row, int64_t i) {
  float v;
  std::memcpy(&v, static_cast<const uint8_t*>(row) + 4 * i, sizeof(v));
  return v;
}

uint32_t load_qh(const uint8_t (&qh)[4]) {
  return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
}

void store_qh(uint8_t (&qh)[4], uint32_t v) {
  for (int k = 0; k < 4; ++k) qh[k] = uint8_t(v >> (8 * k));
}

// The 5-bit values of a Q5_0/Q5_1 block, unsigned (0..31): low nibbles give
// elements 0..15 and high nibbles 16..31; bit j of qh is element j's top bit.
void unpack_q5(const uint8_t (&qs)[16], const uint8_t (&qh_bytes)[4], int (&q)[32]) {
  const uint32_t qh = load_qh(qh_bytes);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0f) | int((qh >> j) & 1u) << 4;
    q[j + 16] = (qs[j] >> 4) | int((qh >> (j + 16)) & 1u) << 4;
  }
}

// Largest |x| of a block and the signed value it came from; the first one
// wins a tie, as in ggml's loop with a strict comparison.
void signed_absmax(const float* x, int n, float& amax, float& max) {
  amax = 0.0f;
  max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
}

void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
}

// Q8_0 and Q8_1 share their rounding. ggml's x86 quantize_row_q8_0/q8_1 (the
// path llama.cpp runs on x86, and what its CUDA quantizer computes too) take
// id = 127 / amax and round to nearest even (_mm256_round_ps). The portable
// quantize_row_q8_0_ref instead uses id = 1 / d and roundf (ties away from
// zero); both can differ from the x86 path in the last step, so we follow x86.
// std::nearbyint rounds to nearest even in the default rounding mode.
struct Q8Block {
  float d;
  int8_t qs[32];
};

Q8Block quantize_q8_block(const float* x) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  Q8Block b;
  b.d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  for (int j = 0; j < 32; ++j) b.qs[j] = int8_t(std::nearbyint(x[j] * id));
  return b;
}

}  // namespace

// ---------------------------------------------------------------- float types

void dequantize_row_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(load_u16(src, i));
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(load_u16(src, i));
}

void quantize_row_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, size_t(n) * sizeof(float));
}

void quantize_row_f16(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(dst, i, fp32_to_fp16(src[i]));
}

void quantize_row_bf16(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(dst, i, fp32_to_bf16(src[i]));
}

// Float weights as llama.cpp's batched matmul (llamafile's tinyBLAS, AVX2)
// sums them: eight lanes, element k into lane k % 8 by multiply-adds, the
// lanes added as an x86 horizontal sum (halves, then (0+2) + (1+3)); the last
// n % 8 elements (tinyBLAS takes none) are added one by one.
namespace {

template <float (*Load)(const void*, int64_t)>
float vec_dot_lanes(const void* w, const void* a, int64_t n) {
  const int64_t n8 = n & ~int64_t(7);
  float lane[8] = {};
  for (int64_t k = 0; k < n8; ++k) lane[k % 8] = std::fma(Load(w, k), Load(a, k), lane[k % 8]);
  float s = hsum8(lane);
  for (int64_t k = n8; k < n; ++k) s += Load(w, k) * Load(a, k);
  return s;
}

float load_f16(const void* p, int64_t i) { return fp16_to_fp32(load_u16(p, i)); }
float load_bf16(const void* p, int64_t i) { return bf16_to_fp32(load_u16(p, i)); }

// ggml's AVX2 order for the 32-element formats against Q8_0/Q8_1 (Q4_0
// aside): eight lanes, lane j multiply-adding dw * da times the integer sum
// of elements 4j..4j+3 of each block; the lanes' horizontal sum at the end,
// plus (Q4_1, Q5_1) the minimum's share m * s, summed block by block.
struct QuadSums {
  float lanes[8] = {};
  float mins = 0.0f;

  void add(const int* q, const int8_t* a, float d) {
    for (int j = 0; j < 8; ++j) {
      int s = 0;
      for (int t = 4 * j; t < 4 * j + 4; ++t) s += q[t] * a[t];
      lanes[j] = std::fma(d, float(s), lanes[j]);
    }
  }

  float total() const { return hsum8(lanes) + mins; }
};

}  // namespace

float vec_dot_f32(const void* w, const void* a, int64_t n) { return vec_dot_lanes<load_f32>(w, a, n); }
float vec_dot_f16(const void* w, const void* a, int64_t n) { return vec_dot_lanes<load_f16>(w, a, n); }
float vec_dot_bf16(const void* w, const void* a, int64_t n) { return vec_dot_lanes<load_bf16>(w, a, n); }

// ----------------------------------------------------------------------- Q4_0

void dequantize_row_q4_0(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const auto b = block_load<BlockQ4_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    float* y = dst + i * kQK4_0;
    for (int j = 0; j < 16; ++j) {
      y[j] = float((b.qs[j] & 0x0f) - 8) * d;
      y[j + 16] = float((b.qs[j] >> 4) - 8) * d;
    }
  }
}

// quantize_row_q4_0_ref: the signed extreme maps to -8, so the full range
// [-8, 7] is used on the side of the larger magnitude.
void quantize_row_q4_0(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float* x = src + i * kQK4_0;
    float amax, max;
    signed_absmax(x, kQK4_0, amax, max);
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      // Truncation after +8.5 is ggml's rounding (half away from -8).
      const int q0 = std::min(15, int(x[j] * id + 8.5f));
      const int q1 = std::min(15, int(x[j + 16] * id + 8.5f));
      b.qs[j] = uint8_t(q0 | q1 << 4);
    }
    block_store(dst, i, b);
  }
}

// Q4_0 in the order of llama.cpp's repacked Q4_0 kernels (what its CPU
// backend runs on x86): one chain of fma(block's integer sum, dw * da).
float vec_dot_q4_0_q8_0(const void* w, const void* a, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const auto x = block_load<BlockQ4_0>(w, i);
    const auto y = block_load<BlockQ8_0>(a, i);
    int sumi = 0;
    for (int j = 0; j < 16; ++j) {
      sumi += ((x.qs[j] & 0x0f) - 8) * y.qs[j];
      sumi += ((x.qs[j] >> 4) - 8) * y.qs[j + 16];
    }
    sum = std::fma(float(sumi), fp16_to_fp32(x.d) * fp16_to_fp32(y.d), sum);
  }
  return sum;
}

// ----------------------------------------------------------------------- Q4_1

void dequantize_row_q4_1(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const auto b = block_load<BlockQ4_1>(src, i);
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    float* y = dst + i * kQK4_1;
    for (int j = 0; j < 16; ++j) {
      y[j] = float(b.qs[j] & 0x0f) * d + m;
      y[j + 16] = float(b.qs[j] >> 4) * d + m;
    }
  }
}

void quantize_row_q4_1(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const float* x = src + i * kQK4_1;
    float min, max;
    min_max(x, kQK4_1, min, max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, int((x[j] - min) * id + 0.5f));
      const int q1 = std::min(15, int((x[j + 16] - min) * id + 0.5f));
      b.qs[j] = uint8_t(q0 | q1 << 4);
    }
    block_store(dst, i, b);
  }
}

float vec_dot_q4_1_q8_1(const void* w, const void* a, int64_t n) {
  QuadSums acc;
  for (int64_t i = 0; i < n / kQK4_1; ++i) {
    const auto x = block_load<BlockQ4_1>(w, i);
    const auto y = block_load<BlockQ8_1>(a, i);
    int q[32];
    for (int j = 0; j < 16; ++j) {
      q[j] = x.qs[j] & 0x0f;
      q[j + 16] = x.qs[j] >> 4;
    }
    acc.add(q, y.qs, fp16_to_fp32(x.d) * fp16_to_fp32(y.d));
    acc.mins += fp16_to_fp32(x.m) * fp16_to_fp32(y.s);
  }
  return acc.total();
}

// ----------------------------------------------------------------------- Q5_0

void dequantize_row_q5_0(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const auto b = block_load<BlockQ5_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    int q[32];
    unpack_q5(b.qs, b.qh, q);
    float* y = dst + i * kQK5_0;
    for (int j = 0; j < 32; ++j) y[j] = float(q[j] - 16) * d;
  }
}

void quantize_row_q5_0(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const float* x = src + i * kQK5_0;
    float amax, max;
    signed_absmax(x, kQK5_0, amax, max);
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_0 b;
    b.d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(31, int(x[j] * id + 16.5f));
      const int q1 = std::min(31, int(x[j + 16] * id + 16.5f));
      b.qs[j] = uint8_t((q0 & 0x0f) | (q1 & 0x0f) << 4);
      qh |= uint32_t(q0 >> 4) << j;
      qh |= uint32_t(q1 >> 4) << (j + 16);
    }
    store_qh(b.qh, qh);
    block_store(dst, i, b);
  }
}

float vec_dot_q5_0_q8_0(const void* w, const void* a, int64_t n) {
  QuadSums acc;
  for (int64_t i = 0; i < n / kQK5_0; ++i) {
    const auto x = block_load<BlockQ5_0>(w, i);
    const auto y = block_load<BlockQ8_0>(a, i);
    int q[32];
    unpack_q5(x.qs, x.qh, q);
    for (int& v : q) v -= 16;
    acc.add(q, y.qs, fp16_to_fp32(x.d) * fp16_to_fp32(y.d));
  }
  return acc.total();
}

// ----------------------------------------------------------------------- Q5_1

void dequantize_row_q5_1(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const auto b = block_load<BlockQ5_1>(src, i);
    const float d = fp16_to_fp32(b.d);
    const float m = fp16_to_fp32(b.m);
    int q[32];
    unpack_q5(b.qs, b.qh, q);
    float* y = dst + i * kQK5_1;
    for (int j = 0; j < 32; ++j) y[j] = float(q[j]) * d + m;
  }
}

void quantize_row_q5_1(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const float* x = src + i * kQK5_1;
    float min, max;
    min_max(x, kQK5_1, min, max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
      // No clamp here, unlike Q4_1: ggml relies on (x - min) * id <= 31.
      const int q0 = int((x[j] - min) * id + 0.5f);
      const int q1 = int((x[j + 16] - min) * id + 0.5f);
      b.qs[j] = uint8_t((q0 & 0x0f) | (q1 & 0x0f) << 4);
      qh |= uint32_t((q0 & 0x10) >> 4) << j;
      qh |= uint32_t((q1 & 0x10) >> 4) << (j + 16);
    }
    store_qh(b.qh, qh);
    block_store(dst, i, b);
  }
}

float vec_dot_q5_1_q8_1(const void* w, const void* a, int64_t n) {
  QuadSums acc;
  for (int64_t i = 0; i < n / kQK5_1; ++i) {
    const auto x = block_load<BlockQ5_1>(w, i);
    const auto y = block_load<BlockQ8_1>(a, i);
    int q[32];
    unpack_q5(x.qs, x.qh, q);
    acc.add(q, y.qs, fp16_to_fp32(x.d) * fp16_to_fp32(y.d));
    acc.mins += fp16_to_fp32(x.m) * fp16_to_fp32(y.s);
  }
  return acc.total();
}

// ------------------------------------------------------------------ Q8_0/Q8_1

void dequantize_row_q8_0(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const auto b = block_load<BlockQ8_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK8_0; ++j) dst[i * kQK8_0 + j] = float(b.qs[j]) * d;
  }
}

// ggml has no Q8_1 decoder; this is Q8_0's, ignoring s.
void dequantize_row_q8_1(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    const auto b = block_load<BlockQ8_1>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK8_1; ++j) dst[i * kQK8_1 + j] = float(b.qs[j]) * d;
  }
}

void quantize_row_q8_0(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const Q8Block q = quantize_q8_block(src + i * kQK8_0);
    BlockQ8_0 b;
    b.d = fp32_to_fp16(q.d);
    std::memcpy(b.qs, q.qs, sizeof(b.qs));
    block_store(dst, i, b);
  }
}

void quantize_row_q8_1(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_1; ++i) {
    const Q8Block q = quantize_q8_block(src + i * kQK8_1);
    BlockQ8_1 b;
    b.d = fp32_to_fp16(q.d);
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) sum += q.qs[j];
    // s uses the float d, not its F16 rounding, as ggml does.
    b.s = fp32_to_fp16(float(sum) * q.d);
    std::memcpy(b.qs, q.qs, sizeof(b.qs));
    block_store(dst, i, b);
  }
}

float vec_dot_q8_0_q8_0(const void* w, const void* a, int64_t n) {
  QuadSums acc;
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const auto x = block_load<BlockQ8_0>(w, i);
    const auto y = block_load<BlockQ8_0>(a, i);
    int q[32];
    for (int j = 0; j < 32; ++j) q[j] = x.qs[j];
    acc.add(q, y.qs, fp16_to_fp32(x.d) * fp16_to_fp32(y.d));
  }
  return acc.total();
}

}  // namespace quarrel::tensor::ref

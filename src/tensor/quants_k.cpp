// Reference codecs for ggml's K-quants (Q2_K..Q6_K, 256-element super-blocks)
// and their activation format Q8_K. Each weight block is first unpacked into
// plain integers (quants and per-sub-block scales and mins); decoding and the
// dot product then follow ggml's dequantize_row_q*_K and
// ggml_vec_dot_q*_K_q8_K_generic, with the same float evaluation order. The
// unpacking is integer work, so doing it in a separate step changes no bit.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"
#include "tensor/ref_math.h"

namespace quarrel::tensor::ref {

namespace {

// A K-quant super-block as integers: element e is q[e], in sub-block
// e / (256 / n_sub) with scale sc[] and min m[] (m unused for Q3_K and Q6_K).
struct KBlock {
  int q[kQK_K];
  int sc[16];
  int m[16];
};

// ggml's rounding helper: adding 1.5 * 2^23 leaves the integer part of f in
// the low mantissa bits, rounded to nearest even. Valid for |f| <= 2^22 - 1.
int nearest_int(float f) {
  const float v = f + 12582912.0f;
  return int(std::bit_cast<uint32_t>(v) & 0x007fffffu) - 0x00400000;
}

// 2-bit quants: byte l of each 32-byte group holds four elements, 32 apart.
KBlock unpack_q2_k(const BlockQ2_K& b) {
  KBlock k;
  for (int half = 0; half < 2; ++half) {
    for (int shift = 0; shift < 4; ++shift) {
      for (int l = 0; l < 32; ++l) {
        k.q[128 * half + 32 * shift + l] = (b.qs[32 * half + l] >> (2 * shift)) & 3;
      }
    }
  }
  for (int j = 0; j < 16; ++j) {
    k.sc[j] = b.scales[j] & 0x0f;
    k.m[j] = b.scales[j] >> 4;
  }
  return k;
}

// Q2_K's layout for the low bits, plus bit (element / 32) of hmask[element % 32]
// as the high bit: clear means subtract 4. Scales: sub-block j keeps its low
// four bits in a nibble of bytes 0..7 (low nibbles for j < 8, high for j >= 8)
// and its top two bits in byte 8 + j % 4, at bit 2 * (j / 4).
KBlock unpack_q3_k(const BlockQ3_K& b) {
  KBlock k;
  for (int half = 0; half < 2; ++half) {
    for (int shift = 0; shift < 4; ++shift) {
      const int hbit = 4 * half + shift;
      for (int l = 0; l < 32; ++l) {
        const int low = (b.qs[32 * half + l] >> (2 * shift)) & 3;
        k.q[128 * half + 32 * shift + l] = low - (((b.hmask[l] >> hbit) & 1) != 0 ? 0 : 4);
      }
    }
  }
  for (int j = 0; j < 16; ++j) {
    const int low = j < 8 ? b.scales[j] & 0x0f : b.scales[j - 8] >> 4;
    const int high = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    k.sc[j] = (low | high << 4) - 32;
    k.m[j] = 0;
  }
  return k;
}

// 4-bit quants: each 32-byte group holds 64 elements, low nibbles first.
KBlock unpack_q4_k(const BlockQ4_K& b) {
  KBlock k;
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) {
      k.q[64 * g + l] = b.qs[32 * g + l] & 0x0f;
      k.q[64 * g + 32 + l] = b.qs[32 * g + l] >> 4;
    }
  }
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, b.scales, k.sc[j], k.m[j]);
  return k;
}

// Q4_K plus a fifth bit: bit (element / 32) of qh[element % 32].
KBlock unpack_q5_k(const BlockQ5_K& b) {
  KBlock k;
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) {
      k.q[64 * g + l] = (b.qs[32 * g + l] & 0x0f) | ((b.qh[l] >> (2 * g)) & 1) << 4;
      k.q[64 * g + 32 + l] = (b.qs[32 * g + l] >> 4) | ((b.qh[l] >> (2 * g + 1)) & 1) << 4;
    }
  }
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, b.scales, k.sc[j], k.m[j]);
  return k;
}

// 6-bit quants, per 128 elements: ql holds the low nibbles of elements
// l and l+32 (bytes 0..63, low then high nibble for l+64, l+96), qh their top
// two bits, four to a byte.
KBlock unpack_q6_k(const BlockQ6_K& b) {
  KBlock k;
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    int* q = k.q + 128 * half;
    for (int l = 0; l < 32; ++l) {
      q[l] = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
      q[l + 32] = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
      q[l + 64] = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
      q[l + 96] = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
    }
  }
  for (int j = 0; j < 16; ++j) {
    k.sc[j] = b.scales[j];
    k.m[j] = 0;
  }
  return k;
}

// ggml's generic K-quant dot products keep eight integer lanes per block
// (lane l gets the elements e with e % 8 == l, each times its sub-block
// scale), scale each lane by d in float into eight running float sums, and
// add those sums at the very end. The lanes are what make the float result
// bit-exact, so they are kept here.
struct LaneSums {
  float sums[8] = {};
  float sumf = 0.0f;

  void add_block(const KBlock& k, int sub_size, const int8_t* q8, float d) {
    int32_t lanes[8] = {};
    for (int e = 0; e < kQK_K; ++e) lanes[e % 8] += k.sc[e / sub_size] * (q8[e] * k.q[e]);
    for (int l = 0; l < 8; ++l) sums[l] += d * float(lanes[l]);
  }

  float total() const {
    float s = sumf;
    for (int l = 0; l < 8; ++l) s += sums[l];
    return s;
  }
};

// ggml's AVX2 kernels for Q4_K and Q6_K (what llama.cpp's reference runs
// used) order the sums differently: eight integer lanes per block, lane m
// holding the elements e with (e % 32) / 4 == m (times their scale), each
// lane multiply-added with d into its own float sum, and the eight sums added
// at the end as an x86 horizontal sum: halves, then (0 + 2) + (1 + 3).
struct QuadLaneSums {
  float sums[8] = {};

  void add_block(const KBlock& k, int sub_size, const int8_t* q8, float d) {
    int32_t lanes[8] = {};
    for (int e = 0; e < kQK_K; ++e) lanes[(e % 32) / 4] += k.sc[e / sub_size] * (q8[e] * k.q[e]);
    for (int l = 0; l < 8; ++l) sums[l] = std::fma(d, float(lanes[l]), sums[l]);
  }

  float total() const { return hsum8(sums); }
};

// Sum over the sixteen 16-element groups of Q8_K's bsums times the min of
// the weight sub-block each group falls in.
int min_term(const KBlock& k, const BlockQ8_K& y, int sub_size) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) sum += y.bsums[j] * k.m[j * 16 / sub_size];
  return sum;
}

}  // namespace

// ----------------------------------------------------------------------- Q8_K

void dequantize_row_q8_k(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = block_load<BlockQ8_K>(src, i);
    for (int j = 0; j < kQK_K; ++j) dst[i * kQK_K + j] = b.d * float(b.qs[j]);
  }
}

// quantize_row_q8_K_ref: the signed extreme maps to -127 (not -128, which
// keeps ggml's IQ AVX kernels simple), so every quant fits in [-127, 127].
void quantize_row_q8_k(const float* src, void* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float* x = src + i * kQK_K;
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    BlockQ8_K b;
    if (amax == 0.0f) {
      // ggml leaves bsums unwritten here; zero is their true value.
      std::memset(&b, 0, sizeof(b));
      block_store(dst, i, b);
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) b.qs[j] = int8_t(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b.qs[16 * j + l];
      b.bsums[j] = int16_t(sum);
    }
    b.d = 1.0f / iscale;
    block_store(dst, i, b);
  }
}

// ----------------------------------------------------------------------- Q2_K

void dequantize_row_q2_k(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = block_load<BlockQ2_K>(src, i);
    const KBlock k = unpack_q2_k(b);
    const float d = fp16_to_fp32(b.d);
    const float dmin = fp16_to_fp32(b.dmin);
    float* y = dst + i * kQK_K;
    for (int e = 0; e < kQK_K; ++e) {
      const float dl = d * float(k.sc[e / 16]);
      const float ml = dmin * float(k.m[e / 16]);
      y[e] = dl * float(k.q[e]) - ml;
    }
  }
}

// Unlike the other K-quants, ggml's generic Q2_K dot product sums one integer
// per block and scales it once; no lanes.
float vec_dot_q2_k_q8_k(const void* w, const void* a, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto x = block_load<BlockQ2_K>(w, i);
    const auto y = block_load<BlockQ8_K>(a, i);
    const KBlock k = unpack_q2_k(x);
    const int summs = min_term(k, y, 16);
    int isum = 0;
    for (int e = 0; e < kQK_K; ++e) isum += k.sc[e / 16] * (y.qs[e] * k.q[e]);
    const float dall = y.d * fp16_to_fp32(x.d);
    const float dmin = y.d * fp16_to_fp32(x.dmin);
    sum += dall * float(isum) - dmin * float(summs);
  }
  return sum;
}

// ----------------------------------------------------------------------- Q3_K

void dequantize_row_q3_k(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = block_load<BlockQ3_K>(src, i);
    const KBlock k = unpack_q3_k(b);
    const float d = fp16_to_fp32(b.d);
    float* y = dst + i * kQK_K;
    for (int e = 0; e < kQK_K; ++e) y[e] = d * float(k.sc[e / 16]) * float(k.q[e]);
  }
}

float vec_dot_q3_k_q8_k(const void* w, const void* a, int64_t n) {
  LaneSums acc;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto x = block_load<BlockQ3_K>(w, i);
    const auto y = block_load<BlockQ8_K>(a, i);
    acc.add_block(unpack_q3_k(x), 16, y.qs, fp16_to_fp32(x.d) * y.d);
  }
  return acc.total();
}

// ------------------------------------------------------------------ Q4_K/Q5_K

namespace {

void dequantize_kblock_with_mins(const KBlock& k, float d, float dmin, float* y) {
  for (int e = 0; e < kQK_K; ++e) {
    const float dl = d * float(k.sc[e / 32]);
    const float ml = dmin * float(k.m[e / 32]);
    y[e] = dl * float(k.q[e]) - ml;
  }
}

template <typename Block, KBlock (*unpack)(const Block&)>
float vec_dot_kblock_with_mins(const void* w, const void* a, int64_t n) {
  LaneSums acc;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto x = block_load<Block>(w, i);
    const auto y = block_load<BlockQ8_K>(a, i);
    const KBlock k = unpack(x);
    const int sumi = min_term(k, y, 32);
    acc.add_block(k, 32, y.qs, fp16_to_fp32(x.d) * y.d);
    const float dmin = fp16_to_fp32(x.dmin) * y.d;
    acc.sumf -= dmin * float(sumi);
  }
  return acc.total();
}

}  // namespace

void dequantize_row_q4_k(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = block_load<BlockQ4_K>(src, i);
    dequantize_kblock_with_mins(unpack_q4_k(b), fp16_to_fp32(b.d), fp16_to_fp32(b.dmin), dst + i * kQK_K);
  }
}

void dequantize_row_q5_k(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = block_load<BlockQ5_K>(src, i);
    dequantize_kblock_with_mins(unpack_q5_k(b), fp16_to_fp32(b.d), fp16_to_fp32(b.dmin), dst + i * kQK_K);
  }
}

// In ggml's AVX2 order (QuadLaneSums), plus the mins: per block four float
// sums, sum j multiply-adding -dmin times the two sub-blocks 2j, 2j + 1's
// mins times their Q8_K sums, added (0 + 2) + (1 + 3) at the end.
float vec_dot_q4_k_q8_k(const void* w, const void* a, int64_t n) {
  QuadLaneSums acc;
  float mins[4] = {};
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto x = block_load<BlockQ4_K>(w, i);
    const auto y = block_load<BlockQ8_K>(a, i);
    const KBlock k = unpack_q4_k(x);
    acc.add_block(k, 32, y.qs, y.d * fp16_to_fp32(x.d));
    const float dmin = -y.d * fp16_to_fp32(x.dmin);
    for (int j = 0; j < 4; ++j) {
      const int prod = k.m[2 * j] * (y.bsums[4 * j] + y.bsums[4 * j + 1]) +
                       k.m[2 * j + 1] * (y.bsums[4 * j + 2] + y.bsums[4 * j + 3]);
      mins[j] = std::fma(dmin, float(prod), mins[j]);
    }
  }
  return acc.total() + ((mins[0] + mins[2]) + (mins[1] + mins[3]));
}

float vec_dot_q5_k_q8_k(const void* w, const void* a, int64_t n) {
  return vec_dot_kblock_with_mins<BlockQ5_K, unpack_q5_k>(w, a, n);
}

// ----------------------------------------------------------------------- Q6_K

void dequantize_row_q6_k(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto b = block_load<BlockQ6_K>(src, i);
    const KBlock k = unpack_q6_k(b);
    const float d = fp16_to_fp32(b.d);
    float* y = dst + i * kQK_K;
    for (int e = 0; e < kQK_K; ++e) y[e] = d * float(k.sc[e / 16]) * float(k.q[e]);
  }
}

float vec_dot_q6_k_q8_k(const void* w, const void* a, int64_t n) {
  QuadLaneSums acc;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const auto x = block_load<BlockQ6_K>(w, i);
    const auto y = block_load<BlockQ8_K>(a, i);
    acc.add_block(unpack_q6_k(x), 16, y.qs, y.d * fp16_to_fp32(x.d));
  }
  return acc.total();
}

}  // namespace quarrel::tensor::ref

#pragma once
// The byte layouts of the quantized blocks, field for field as ggml's
// ggml-common.h has them, so a block read from a GGUF file can be copied into
// one of these structs. Every F16 scale is kept as its raw bits (uint16_t);
// decode it with fp16_to_fp32 (tensor/fp16.h). All multi-byte fields are
// little-endian, as GGUF is.
//
// The layouts have no padding: each struct's members fall on their natural
// alignment, and the static_asserts pin the sizes to the GGUF block sizes.
// Rows in a file are only 2-byte aligned for some types (an 18-byte Q4_0
// block), so the reference codecs memcpy blocks in and out rather than cast
// pointers.
#include <cstddef>
#include <cstdint>
#include <cstring>

// Helpers below that the CUDA kernels call too.
#if defined(__CUDACC__)
#define QUARREL_HOST_DEVICE __host__ __device__
#else
#define QUARREL_HOST_DEVICE
#endif
// Keeps a loop rolled in device code. The persistent decode kernel runs each
// stage's code once per layer, so its speed depends on how much code there
// is to fetch, and nvcc unrolls loops with a runtime trip count several times.
#if defined(__CUDA_ARCH__)
#define QUARREL_DEVICE_NO_UNROLL _Pragma("unroll 1")
#else
#define QUARREL_DEVICE_NO_UNROLL
#endif

namespace quarrel::tensor {

constexpr int kQK4_0 = 32;
constexpr int kQK4_1 = 32;
constexpr int kQK5_0 = 32;
constexpr int kQK5_1 = 32;
constexpr int kQK8_0 = 32;
constexpr int kQK8_1 = 32;
constexpr int kQK_K = 256;  // the K-quant super-block
constexpr int kKScaleBytes = 12;  // 8 six-bit scales + 8 six-bit mins of Q4_K/Q5_K

// Element j of the block is (qs[j] & 15) - 8 for j < 16 and
// (qs[j - 16] >> 4) - 8 above, times d.
struct BlockQ4_0 {
  uint16_t d;              // scale, F16
  uint8_t qs[kQK4_0 / 2];  // nibbles
};

// Element = nibble * d + m, nibbles packed as in Q4_0.
struct BlockQ4_1 {
  uint16_t d;  // scale, F16
  uint16_t m;  // minimum, F16
  uint8_t qs[kQK4_1 / 2];
};

// Q4_0 with a fifth bit: bit j of the little-endian uint32 in qh is the high
// bit of element j. Element = (nibble | high << 4) - 16, times d.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK5_0 / 2];
};

// Q4_1 with the fifth bit of Q5_0: element = 5-bit value * d + m.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};

struct BlockQ8_0 {
  uint16_t d;  // F16
  int8_t qs[kQK8_0];
};

// Activation format for Q4_1/Q5_1: s = d * sum(qs) carries the term those
// weights' minimum multiplies.
struct BlockQ8_1 {
  uint16_t d;  // F16
  uint16_t s;  // F16, d * sum(qs)
  int8_t qs[kQK8_1];
};

// 16 sub-blocks of 16 elements with 2-bit quants. scales[j] low nibble is
// sub-block j's scale, high nibble its min: element = d * sc * q - dmin * m.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;     // F16, scale of the scales
  uint16_t dmin;  // F16, scale of the mins
};

// 16 sub-blocks of 16 with 3-bit quants: two low bits in qs, the high bit in
// hmask (set means +0, clear means -4). Sixteen 6-bit signed scales (offset
// 32) packed in 12 bytes. Element = d * (scale - 32) * q.
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};

// 8 sub-blocks of 32 with 4-bit quants; 6-bit scales and mins packed in 12
// bytes (see get_scale_min_k4). Element = d * sc * q - dmin * m.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};

// Scale and min of sub-block j (0..7) of Q4_K/Q5_K from its 12 packed bytes
// q: the first four pairs are the low six bits of bytes 0..7; the last four
// keep their low four bits in bytes 8..11 and their top two bits in the spare
// top bits of bytes 0..7.
QUARREL_HOST_DEVICE inline void get_scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K plus a fifth bit per element in qh.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};

// 16 sub-blocks of 16 with 6-bit quants (low 4 bits in ql, high 2 in qh,
// offset 32) and signed 8-bit scales. Element = d * scale * (q - 32).
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

// Activation format for the K-quants. d is a full float, and bsums hold the
// sum of each 16 quants so that the weights' min terms cost one multiply per
// sub-block.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(offsetof(BlockQ3_K, d) == 108 && offsetof(BlockQ6_K, d) == 208 && offsetof(BlockQ8_K, bsums) == 260);

// Block i of a row, copied out: rows may be less aligned than the struct.
template <typename Block>
Block block_load(const void* row, int64_t i) {
  Block b;
  std::memcpy(&b, static_cast<const uint8_t*>(row) + i * int64_t(sizeof(Block)), sizeof(Block));
  return b;
}

template <typename Block>
void block_store(void* row, int64_t i, const Block& b) {
  std::memcpy(static_cast<uint8_t*>(row) + i * int64_t(sizeof(Block)), &b, sizeof(Block));
}

}  // namespace quarrel::tensor

// The scalar reference codecs of src/tensor: type geometry, the 16-bit float
// conversions, hand-computed blocks (encoded here the way ggml's quantizers
// pack them, so the decoders are checked against an independent packing),
// round-trip error bounds, and every dot product against a plain double sum
// over the decoded rows. Random inputs are fresh each run; a failure prints
// its seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <random>
#include <vector>

#include "common/error.h"
#include "tensor/blocks.h"
#include "tensor/dtype.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace quarrel::tensor {
namespace {

struct Rng {
  uint32_t seed = std::random_device{}();
  std::mt19937 gen{seed};

  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(gen); }
  uint32_t bits() { return static_cast<uint32_t>(gen()); }
  std::vector<uint8_t> bytes(size_t n) {
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(gen());
    return v;
  }
};

std::string seed_message(const Rng& rng) { return "random seed " + std::to_string(rng.seed); }

std::string type_param_name(const testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); }

std::vector<float> dequantized(DType t, const void* row, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(t, row, y.data(), n);
  return y;
}

std::vector<uint8_t> quantized(DType t, const std::vector<float>& x) {
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(row_bytes(t, n)));
  quantize_row(t, x.data(), q.data(), n);
  return q;
}

// ------------------------------------------------------------------- dtype

TEST(DType, TableMatchesGgml) {
  struct Row {
    uint32_t id;
    const char* name;
    int block_size;
    int type_size;
  };
  const Row rows[] = {
      {0, "f32", 1, 4},       {1, "f16", 1, 2},       {2, "q4_0", 32, 18},    {3, "q4_1", 32, 20},
      {6, "q5_0", 32, 22},    {7, "q5_1", 32, 24},    {8, "q8_0", 32, 34},    {9, "q8_1", 32, 36},
      {10, "q2_K", 256, 84},  {11, "q3_K", 256, 110}, {12, "q4_K", 256, 144}, {13, "q5_K", 256, 176},
      {14, "q6_K", 256, 210}, {15, "q8_K", 256, 292}, {30, "bf16", 1, 2},
  };
  for (const Row& r : rows) {
    const DTypeInfo* info = dtype_find(r.id);
    ASSERT_NE(info, nullptr) << r.name;
    EXPECT_EQ(static_cast<uint32_t>(info->type), r.id);
    EXPECT_EQ(info->name, r.name);
    EXPECT_EQ(info->block_size, r.block_size) << r.name;
    EXPECT_EQ(info->type_size, r.type_size) << r.name;
    EXPECT_EQ(&dtype_info(info->type), info);
  }
}

TEST(DType, UnknownIdsAreNull) {
  EXPECT_EQ(dtype_find(99), nullptr);
  EXPECT_EQ(dtype_find(4), nullptr);  // ggml's retired Q4_2
  EXPECT_THROW(dtype_info(static_cast<DType>(99)), Error);
}

TEST(DType, FromNameIgnoresCase) {
  EXPECT_EQ(dtype_from_name("f16"), DType::F16);
  EXPECT_EQ(dtype_from_name("Q8_0"), DType::Q8_0);
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_THROW(dtype_from_name("q4_2"), Error);
  EXPECT_THROW(dtype_from_name(""), Error);
}

TEST(DType, RowBytes) {
  EXPECT_EQ(row_bytes(DType::F32, 3), 12);
  EXPECT_EQ(row_bytes(DType::F16, 3), 6);
  EXPECT_EQ(row_bytes(DType::Q4_0, 64), 36);
  EXPECT_EQ(row_bytes(DType::Q6_K, 512), 420);
  EXPECT_EQ(row_bytes(DType::Q8_K, 0), 0);
  EXPECT_THROW(row_bytes(DType::Q4_0, 33), Error);
  EXPECT_THROW(row_bytes(DType::Q4_K, 255), Error);
  EXPECT_THROW(row_bytes(DType::Q8_0, -32), Error);
}

TEST(DType, VecDotType) {
  const std::pair<DType, DType> pairs[] = {
      {DType::F32, DType::F32},   {DType::F16, DType::F16},   {DType::BF16, DType::BF16},
      {DType::Q4_0, DType::Q8_0}, {DType::Q5_0, DType::Q8_0}, {DType::Q8_0, DType::Q8_0},
      {DType::Q4_1, DType::Q8_1}, {DType::Q5_1, DType::Q8_1}, {DType::Q2_K, DType::Q8_K},
      {DType::Q3_K, DType::Q8_K}, {DType::Q4_K, DType::Q8_K}, {DType::Q5_K, DType::Q8_K},
      {DType::Q6_K, DType::Q8_K},
  };
  for (auto [w, a] : pairs) EXPECT_EQ(vec_dot_type(w), a) << dtype_name(w);
  EXPECT_THROW(vec_dot_type(DType::Q8_1), Error);
  EXPECT_THROW(vec_dot_type(DType::Q8_K), Error);
}

TEST(Quants, RejectsUnsupportedCalls) {
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> buf(1024);
  EXPECT_THROW(quantize_row(DType::Q4_K, x.data(), buf.data(), 256), Error);
  EXPECT_THROW(quantize_row(DType::Q4_0, x.data(), buf.data(), 48), Error);
  EXPECT_THROW(dequantize_row(DType::Q4_0, buf.data(), x.data(), 31), Error);
  EXPECT_THROW(vec_dot(DType::Q8_K, buf.data(), buf.data(), 256), Error);
  EXPECT_THROW(vec_dot(DType::Q4_0, buf.data(), buf.data(), 48), Error);
}

// --------------------------------------------------------------- fp16/bf16

// The value of a half, computed without the code under test.
double half_value(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exp == 0x1f) return sign * std::numeric_limits<double>::infinity();
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(Fp16, ExhaustiveRoundTrip) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = fp16_to_fp32(h);
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (nan) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << i;
      // Signaling NaNs come back quiet; the payload is kept.
      ASSERT_EQ(fp32_to_fp16(f), h | 0x0200) << std::hex << i;
    } else {
      ASSERT_EQ(static_cast<double>(f), half_value(h)) << std::hex << i;
      ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << i;
      ASSERT_EQ(fp32_to_fp16(f), h) << std::hex << i;
    }
  }
}

// Between every two neighbouring finite halves: the midpoint goes to the even
// one, and a float either side of it goes to the nearer one.
TEST(Fp16, RoundsToNearestEven) {
  for (uint16_t h = 0; h < 0x7bff; ++h) {
    for (uint16_t sign : {uint16_t(0), uint16_t(0x8000)}) {
      const float lo = fp16_to_fp32(uint16_t(h | sign));
      const float hi = fp16_to_fp32(uint16_t((h + 1) | sign));
      const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);  // exact: 12 bits
      const uint16_t even = (h & 1) == 0 ? h : uint16_t(h + 1);
      ASSERT_EQ(fp32_to_fp16(mid), even | sign) << std::hex << h;
      ASSERT_EQ(fp32_to_fp16(std::nextafter(mid, lo)), h | sign) << std::hex << h;
      ASSERT_EQ(fp32_to_fp16(std::nextafter(mid, hi)), (h + 1) | sign) << std::hex << h;
    }
  }
}

TEST(Fp16, EdgeValues) {
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(std::nextafter(65520.0f, 0.0f)), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // the tie rounds to even: infinity
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and the least subnormal
  EXPECT_EQ(fp32_to_fp16(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(-1e-10f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1023.0f, -24) + std::ldexp(1.0f, -25)), 0x0400);  // carries into normal
  EXPECT_EQ(fp32_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(fp32_to_fp16(-2.0f), 0xc000);
  EXPECT_EQ(fp32_to_fp16(std::bit_cast<float>(0x7fa00000u)), 0x7f00);  // signaling NaN made quiet
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) uint16_t f16c_from_float(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, 0));
}
__attribute__((target("f16c"))) float f16c_to_float(uint16_t h) { return _cvtsh_ss(h); }

bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
}

// The portable code must agree bit for bit with the instruction ggml uses.
TEST(Fp16, MatchesF16C) {
  if (!cpu_has_f16c()) GTEST_SKIP() << "no F16C on this CPU";
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    ASSERT_EQ(std::bit_cast<uint32_t>(fp16_to_fp32(h)), std::bit_cast<uint32_t>(f16c_to_float(h))) << std::hex << i;
  }
  Rng rng;
  SCOPED_TRACE(seed_message(rng));
  for (int i = 0; i < (1 << 22); ++i) {
    // Random bit patterns, and as many again in the range halves cover.
    const uint32_t bits = (i & 1) != 0 ? rng.bits() : 0x33000000u + rng.bits() % 0x14800000u;
    const float f = std::bit_cast<float>(bits ^ (rng.bits() & 0x80000000u));
    ASSERT_EQ(fp32_to_fp16(f), f16c_from_float(f)) << std::hex << std::bit_cast<uint32_t>(f);
  }
}
#endif

TEST(Bf16, ExhaustiveRoundTrip) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<uint16_t>(i);
    const float f = bf16_to_fp32(h);
    ASSERT_EQ(std::bit_cast<uint32_t>(f), i << 16);
    const bool nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0;
    ASSERT_EQ(fp32_to_bf16(f), nan ? (h | 0x40) : h) << std::hex << i;
  }
}

TEST(Bf16, RoundsToNearestEven) {
  for (uint16_t h = 0; h < 0x7f7f; ++h) {
    const float lo = bf16_to_fp32(h);
    const float hi = bf16_to_fp32(uint16_t(h + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);  // exact: 9 bits
    const uint16_t even = (h & 1) == 0 ? h : uint16_t(h + 1);
    ASSERT_EQ(fp32_to_bf16(mid), even) << std::hex << h;
    ASSERT_EQ(fp32_to_bf16(-mid), even | 0x8000) << std::hex << h;
    ASSERT_EQ(fp32_to_bf16(std::nextafter(mid, lo)), h) << std::hex << h;
    ASSERT_EQ(fp32_to_bf16(std::nextafter(mid, hi)), h + 1) << std::hex << h;
  }
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);  // kept, rounds to 0
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x00018000u)), 0x0002);         // subnormal tie to even
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0xff800001u)), 0xffc0);         // NaN kept quiet, not inf
}

// ------------------------------------------------- hand-computed encodings

template <typename Block>
Block bytes_as(const std::vector<uint8_t>& bytes) {
  EXPECT_EQ(bytes.size(), sizeof(Block));
  Block b;
  std::memcpy(&b, bytes.data(), sizeof(Block));
  return b;
}

TEST(Quants, Q4_0EncodesExpectedBytes) {
  // Integers in [-8, 7] with -8 the extreme: d = -8 / -8 = 1, quant = x + 8.
  std::vector<float> x(32);
  for (int j = 0; j < 16; ++j) {
    x[j] = float(j - 8);
    x[j + 16] = float(7 - j);
  }
  std::vector<uint8_t> expected = {0x00, 0x3c};  // d = 1.0 in F16
  for (int j = 0; j < 16; ++j) expected.push_back(uint8_t(j | (15 - j) << 4));
  EXPECT_EQ(quantized(DType::Q4_0, x), expected);

  // A positive extreme of 4 gives d = -0.5: quant = trunc(-2x + 8.5), capped
  // at 15.
  std::vector<float> y(32, 0.0f);
  y[0] = 4.0f;     // -8 + 8.5 -> 0
  y[1] = -4.0f;    // 16.5 -> 16 -> capped 15
  y[2] = 1.25f;    // 6.0 -> 6
  y[3] = 1.75f;    // 5.0 -> 5
  y[4] = -0.25f;   // 9.0 -> 9
  y[5] = 0.2f;     // 8.1 -> 8
  y[16] = -1.25f;  // 11.0 -> 11
  y[17] = 0.3f;    // 7.9 -> 7
  std::vector<uint8_t> expected2 = {0x00, 0xb8};  // d = -0.5
  const int low[16] = {0, 15, 6, 5, 9, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
  const int high[16] = {11, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
  for (int j = 0; j < 16; ++j) expected2.push_back(uint8_t(low[j] | high[j] << 4));
  EXPECT_EQ(quantized(DType::Q4_0, y), expected2);
}

TEST(Quants, Q4_1AndQ5EncodeExpectedBytes) {
  // 1..16 twice: min 1, d = 15 / 15 = 1, quant = x - 1.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = float(1 + j % 16);
  std::vector<uint8_t> q4_1 = {0x00, 0x3c, 0x00, 0x3c};  // d = 1, m = 1
  for (int j = 0; j < 16; ++j) q4_1.push_back(uint8_t(j * 17));
  EXPECT_EQ(quantized(DType::Q4_1, x), q4_1);

  // -16..15: d = -16 / -16 = 1, quant = x + 16; the fifth bits are those of
  // elements 16..31.
  std::vector<float> z(32);
  for (int j = 0; j < 32; ++j) z[j] = float(j - 16);
  std::vector<uint8_t> q5_0 = {0x00, 0x3c, 0x00, 0x00, 0xff, 0xff};
  for (int j = 0; j < 16; ++j) q5_0.push_back(uint8_t(j * 17));
  EXPECT_EQ(quantized(DType::Q5_0, z), q5_0);

  // 0..31: min 0, d = 31 / 31 = 1, quant = x.
  std::vector<float> u(32);
  for (int j = 0; j < 32; ++j) u[j] = float(j);
  std::vector<uint8_t> q5_1 = {0x00, 0x3c, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff};
  for (int j = 0; j < 16; ++j) q5_1.push_back(uint8_t(j * 17));
  EXPECT_EQ(quantized(DType::Q5_1, u), q5_1);
}

TEST(Quants, Q8ActivationsRoundTiesToEven) {
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;  // amax: d = 1
  x[1] = 2.5f;
  x[2] = -3.5f;
  x[3] = 0.5f;
  x[4] = -0.5f;
  x[5] = 1.5f;
  const auto q8_0 = bytes_as<BlockQ8_0>(quantized(DType::Q8_0, x));
  EXPECT_EQ(q8_0.d, 0x3c00);
  const int8_t expected[6] = {127, 2, -4, 0, 0, 2};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(q8_0.qs[j], expected[j]) << j;

  const auto q8_1 = bytes_as<BlockQ8_1>(quantized(DType::Q8_1, x));
  EXPECT_EQ(std::memcmp(q8_1.qs, q8_0.qs, 32), 0);
  EXPECT_EQ(q8_1.d, 0x3c00);
  EXPECT_EQ(q8_1.s, fp32_to_fp16(127.0f));  // 127 + 2 - 4 + 2

  // s comes from the float d = 90 / 127, not from its F16 rounding (which
  // would give 0x675f here). Value checked against ggml's AVX2 quantizer.
  std::vector<float> r(32);
  for (int j = 0; j < 32; ++j) r[j] = 90.0f - 2.0f * float(j);
  EXPECT_EQ(bytes_as<BlockQ8_1>(quantized(DType::Q8_1, r)).s, 0x6760);

  // Q8_K: the signed extreme maps to -127, so d carries the sign.
  std::vector<float> k(256, 0.0f);
  k[0] = 127.0f;
  k[1] = 2.5f;
  k[2] = -3.5f;
  k[17] = 1.5f;
  const auto q8_k = bytes_as<BlockQ8_K>(quantized(DType::Q8_K, k));
  EXPECT_EQ(q8_k.d, -1.0f);
  EXPECT_EQ(q8_k.qs[0], -127);
  EXPECT_EQ(q8_k.qs[1], -2);
  EXPECT_EQ(q8_k.qs[2], 4);
  EXPECT_EQ(q8_k.qs[17], -2);
  EXPECT_EQ(q8_k.bsums[0], -125);
  EXPECT_EQ(q8_k.bsums[1], -2);
  for (int j = 2; j < 16; ++j) EXPECT_EQ(q8_k.bsums[j], 0);

  const auto zero = bytes_as<BlockQ8_K>(quantized(DType::Q8_K, std::vector<float>(256, 0.0f)));
  EXPECT_EQ(zero.d, 0.0f);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(zero.bsums[j], 0);
}

TEST(Quants, Q4_0DecodesHandBuiltBlock) {
  BlockQ4_0 b;
  b.d = 0x3800;  // 0.5
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | (15 - j) << 4);
  const auto y = dequantized(DType::Q4_0, &b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * float(j - 8)) << j;
    EXPECT_EQ(y[j + 16], 0.5f * float(7 - j)) << j;
  }
}

TEST(Quants, Q5_1DecodesHandBuiltBlock) {
  BlockQ5_1 b;
  b.d = 0x3400;  // 0.25
  b.m = 0xc000;  // -2
  const uint32_t qh = 0x80000001u;  // high bits of elements 0 and 31
  std::memcpy(b.qh, &qh, 4);
  for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | (15 - j) << 4);
  const auto y = dequantized(DType::Q5_1, &b, 32);
  EXPECT_EQ(y[0], 0.25f * 16 - 2);
  EXPECT_EQ(y[1], 0.25f * 1 - 2);
  EXPECT_EQ(y[16], 0.25f * 15 - 2);
  EXPECT_EQ(y[31], 0.25f * (0 + 16) - 2);
}

// The K-quant blocks below are packed with the bit layout ggml's
// quantize_row_q*_K_ref writes, element values chosen so every expected
// float is exact.

TEST(Quants, Q2_KDecodesHandBuiltBlock) {
  BlockQ2_K b{};
  b.d = 0x3400;     // 0.25
  b.dmin = 0x3000;  // 0.125
  for (int j = 0; j < 16; ++j) b.scales[j] = uint8_t(j | (15 - j) << 4);
  auto q = [](int e) { return (e * 5 + e / 64) % 4; };
  for (int half = 0; half < 256; half += 128) {
    for (int l = 0; l < 32; ++l) {
      b.qs[half / 4 + l] = uint8_t(q(half + l) | q(half + l + 32) << 2 | q(half + l + 64) << 4 | q(half + l + 96) << 6);
    }
  }
  const auto y = dequantized(DType::Q2_K, &b, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.25f * float((e / 16) * q(e)) - 0.125f * float(15 - e / 16)) << e;
}

TEST(Quants, Q3_KDecodesHandBuiltBlock) {
  BlockQ3_K b{};
  b.d = 0x3000;  // 0.125
  auto scale = [](int j) { return j * 4 - 32 + (j % 3); };  // -32..31
  for (int j = 0; j < 16; ++j) {
    const int l = scale(j) + 32;
    if (j < 8) {
      b.scales[j] = uint8_t(l & 0xf);
    } else {
      b.scales[j - 8] |= uint8_t((l & 0xf) << 4);
    }
    b.scales[j % 4 + 8] |= uint8_t((l >> 4) << (2 * (j / 4)));
  }
  auto q = [](int e) { return (e * 3 + e / 32) % 8 - 4; };  // -4..3
  int L[256];
  for (int e = 0; e < 256; ++e) {
    L[e] = q(e) + 4;
    if (L[e] > 3) {
      b.hmask[e % 32] |= uint8_t(1 << (e / 32));
      L[e] -= 4;
    }
  }
  for (int half = 0; half < 256; half += 128) {
    for (int l = 0; l < 32; ++l) {
      b.qs[half / 4 + l] = uint8_t(L[half + l] | L[half + l + 32] << 2 | L[half + l + 64] << 4 | L[half + l + 96] << 6);
    }
  }
  const auto y = dequantized(DType::Q3_K, &b, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], 0.125f * float(scale(e / 16) * q(e))) << e;
}

// The 12-byte 6-bit scale/min packing shared by Q4_K and Q5_K.
void pack_k4_scales(uint8_t (&scales)[12], const int (&ls)[8], const int (&lm)[8]) {
  std::memset(scales, 0, 12);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      scales[j] = uint8_t(ls[j]);
      scales[j + 4] = uint8_t(lm[j]);
    } else {
      scales[j + 4] = uint8_t((ls[j] & 0xf) | (lm[j] & 0xf) << 4);
      scales[j - 4] |= uint8_t((ls[j] >> 4) << 6);
      scales[j] |= uint8_t((lm[j] >> 4) << 6);
    }
  }
}

TEST(Quants, Q4_KAndQ5_KDecodeHandBuiltBlocks) {
  const int ls[8] = {3, 11, 19, 27, 35, 43, 51, 63};
  const int lm[8] = {60, 53, 46, 39, 32, 25, 18, 1};
  auto q = [](int e) { return (e * 7 + e / 32) % 32; };  // 5 bits; Q4_K keeps the low 4

  BlockQ4_K b4{};
  b4.d = 0x3400;     // 0.25
  b4.dmin = 0x3000;  // 0.125
  pack_k4_scales(b4.scales, ls, lm);
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) b4.qs[32 * g + l] = uint8_t((q(64 * g + l) & 15) | (q(64 * g + 32 + l) & 15) << 4);
  }
  const auto y4 = dequantized(DType::Q4_K, &b4, 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y4[e], 0.25f * float(ls[e / 32] * (q(e) & 15)) - 0.125f * float(lm[e / 32])) << e;
  }

  BlockQ5_K b5{};
  b5.d = 0x3400;
  b5.dmin = 0x3000;
  pack_k4_scales(b5.scales, ls, lm);
  std::memcpy(b5.qs, b4.qs, sizeof(b5.qs));
  for (int e = 0; e < 256; ++e) {
    if (q(e) > 15) b5.qh[e % 32] |= uint8_t(1 << (e / 32));
  }
  const auto y5 = dequantized(DType::Q5_K, &b5, 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y5[e], 0.25f * float(ls[e / 32] * q(e)) - 0.125f * float(lm[e / 32])) << e;
  }
}

TEST(Quants, Q6_KDecodesHandBuiltBlock) {
  BlockQ6_K b{};
  b.d = 0x2400;  // 2^-6
  auto scale = [](int j) { return j * 9 - 70; };
  for (int j = 0; j < 16; ++j) b.scales[j] = int8_t(scale(j));
  auto q = [](int e) { return (e * 7 + e / 64) % 64 - 32; };
  int L[256];
  for (int e = 0; e < 256; ++e) L[e] = q(e) + 32;
  for (int half = 0; half < 2; ++half) {
    uint8_t* ql = b.ql + 64 * half;
    uint8_t* qh = b.qh + 32 * half;
    const int* Lh = L + 128 * half;
    for (int l = 0; l < 32; ++l) {
      ql[l] = uint8_t((Lh[l] & 0xf) | (Lh[l + 64] & 0xf) << 4);
      ql[l + 32] = uint8_t((Lh[l + 32] & 0xf) | (Lh[l + 96] & 0xf) << 4);
      qh[l] = uint8_t((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
    }
  }
  const auto y = dequantized(DType::Q6_K, &b, 256);
  for (int e = 0; e < 256; ++e) EXPECT_EQ(y[e], std::ldexp(float(scale(e / 16) * q(e)), -6)) << e;
}

// -------------------------------------------------------------- round trips

// Per-block inputs of varied scale, with the awkward cases: all zeros, a
// constant, all positive.
std::vector<float> round_trip_input(Rng& rng, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t b = 0; b < n / 32; ++b) {
    const float scale = std::exp(rng.uniform(-4.0f, 4.0f));
    const int kind = static_cast<int>(b % 8);
    for (int64_t j = 32 * b; j < 32 * (b + 1); ++j) {
      x[j] = kind == 1 ? 0.0f : kind == 2 ? scale : kind == 3 ? scale * std::fabs(rng.normal()) : scale * rng.normal();
    }
  }
  return x;
}

// Largest error the encoding may make on element x of a block. The F16 scale
// adds up to 2^-11 of each decoded value to the rounding of the quant itself.
double error_bound(DType t, const float* block, int size, float x) {
  float amax = 0.0f, lo = block[0], hi = block[0];
  for (int j = 0; j < size; ++j) {
    amax = std::max(amax, std::fabs(block[j]));
    lo = std::min(lo, block[j]);
    hi = std::max(hi, block[j]);
  }
  const double f16 = 1.0 / 2048;
  switch (t) {
    case DType::F32: return 0.0;
    case DType::F16: return std::max(std::fabs(x) * f16, std::ldexp(1.0, -25));
    case DType::BF16: return std::fabs(x) / 256;
    // The quant on the side away from the extreme can be capped a full step short.
    case DType::Q4_0: return amax / 8.0 * (1.0 + 8 * f16 + 1e-4);
    case DType::Q5_0: return amax / 16.0 * (1.0 + 16 * f16 + 1e-4);
    case DType::Q4_1: return (hi - lo) / 15.0 * (0.5 + 15 * f16 + 1e-4) + std::fabs(lo) * f16;
    case DType::Q5_1: return (hi - lo) / 31.0 * (0.5 + 31 * f16 + 1e-4) + std::fabs(lo) * f16;
    case DType::Q8_0:
    case DType::Q8_1: return amax / 127.0 * (0.5 + 127 * f16 + 1e-4);
    case DType::Q8_K: return amax / 127.0 * (0.5 + 1e-4);
    default: ADD_FAILURE() << "no bound for " << dtype_name(t); return 0.0;
  }
}

class RoundTrip : public testing::TestWithParam<DType> {};

TEST_P(RoundTrip, ErrorWithinBound) {
  const DType t = GetParam();
  Rng rng;
  SCOPED_TRACE(seed_message(rng));
  const int64_t n = 8 * 256;
  const std::vector<float> x = round_trip_input(rng, n);
  const auto y = dequantized(t, quantized(t, x).data(), n);
  const int bs = std::max(32, dtype_info(t).block_size);  // float types: judge by element
  for (int64_t i = 0; i < n; ++i) {
    const float* block = x.data() + i / bs * bs;
    ASSERT_LE(std::fabs(double(y[i]) - x[i]), error_bound(t, block, bs, x[i])) << "element " << i << " x " << x[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Quants, RoundTrip,
                         testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                         DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q8_K),
                         type_param_name);

// ------------------------------------------------------------- dot products

// Puts a small random finite F16 at byte offset `at` of every block.
void set_random_f16(std::vector<uint8_t>& row, Rng& rng, size_t block_bytes, size_t at) {
  for (size_t off = at; off < row.size(); off += block_bytes) {
    const uint16_t h = fp32_to_fp16(rng.uniform(-0.01f, 0.01f));
    std::memcpy(row.data() + off, &h, 2);
  }
}

// A weight row of random blocks: random bytes everywhere, with the F16 scales
// replaced by small finite ones. Float types come from random floats.
std::vector<uint8_t> random_weights(DType t, Rng& rng, int64_t n) {
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = rng.normal();
    return quantized(t, x);
  }
  std::vector<uint8_t> row = rng.bytes(static_cast<size_t>(row_bytes(t, n)));
  const size_t bytes = static_cast<size_t>(dtype_info(t).type_size);
  switch (t) {
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0: set_random_f16(row, rng, bytes, 0); break;
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q4_K:
    case DType::Q5_K:
      set_random_f16(row, rng, bytes, 0);
      set_random_f16(row, rng, bytes, 2);
      break;
    case DType::Q2_K:
      set_random_f16(row, rng, bytes, offsetof(BlockQ2_K, d));
      set_random_f16(row, rng, bytes, offsetof(BlockQ2_K, dmin));
      break;
    case DType::Q3_K: set_random_f16(row, rng, bytes, offsetof(BlockQ3_K, d)); break;
    case DType::Q6_K: set_random_f16(row, rng, bytes, offsetof(BlockQ6_K, d)); break;
    default: ADD_FAILURE() << "not a weight type: " << dtype_name(t);
  }
  return row;
}

// The dot product over decoded rows, in double. For Q8_1 activations the
// weights' min multiplies the block's stored s, which is d * sum(q) rounded to
// F16; the decoded rows know nothing of that rounding, so add it back.
double reference_dot(DType t, const std::vector<uint8_t>& w, const std::vector<uint8_t>& a, int64_t n,
                     double* magnitude) {
  const DType at = vec_dot_type(t);
  const auto wf = dequantized(t, w.data(), n);
  const auto af = dequantized(at, a.data(), n);
  double sum = 0.0, wmax = 0.0, asum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += double(wf[i]) * af[i];
    wmax = std::max(wmax, std::fabs(double(wf[i])));
    asum += std::fabs(double(af[i]));
  }
  if (at == DType::Q8_1) {
    for (int64_t b = 0; b < n / 32; ++b) {
      BlockQ8_1 y;
      std::memcpy(&y, a.data() + b * sizeof(BlockQ8_1), sizeof(y));
      uint16_t m;  // the min is the second F16 of both Q4_1 and Q5_1
      std::memcpy(&m, w.data() + b * dtype_info(t).type_size + 2, 2);
      int qsum = 0;
      for (int8_t q : y.qs) qsum += q;
      sum += double(fp16_to_fp32(m)) * (double(fp16_to_fp32(y.s)) - double(fp16_to_fp32(y.d)) * qsum);
    }
  }
  // Every term, and so the float rounding of each partial sum, is at most this.
  *magnitude = wmax * asum;
  return sum;
}

class VecDot : public testing::TestWithParam<DType> {};

TEST_P(VecDot, MatchesDoubleSumOverDecodedRows) {
  const DType t = GetParam();
  Rng rng;
  SCOPED_TRACE(seed_message(rng));
  const int64_t n = 3 * 256;
  for (int trial = 0; trial < 20; ++trial) {
    // Legacy types also from their own quantizer, which has no out-of-range
    // quants; random bytes reach every bit pattern.
    const bool from_quantizer = trial % 2 == 1 && t != DType::Q2_K && t != DType::Q3_K && t != DType::Q4_K &&
                                t != DType::Q5_K && t != DType::Q6_K;
    std::vector<float> wx(static_cast<size_t>(n)), ax(static_cast<size_t>(n));
    for (auto& v : wx) v = rng.normal();
    for (auto& v : ax) v = rng.normal() * std::exp(rng.uniform(-2.0f, 2.0f));
    const auto w = from_quantizer ? quantized(t, wx) : random_weights(t, rng, n);
    const auto a = quantized(vec_dot_type(t), ax);
    double magnitude = 0.0;
    const double expected = reference_dot(t, w, a, n, &magnitude);
    const float got = vec_dot(t, w.data(), a.data(), n);
    ASSERT_NEAR(got, expected, 1e-5 * magnitude + 1e-30) << "trial " << trial;
  }
}

TEST(Quants, Q4_0DotOfHandBuiltBlocks) {
  BlockQ4_0 w[2];
  BlockQ8_0 a[2];
  for (int b = 0; b < 2; ++b) {
    w[b].d = b == 0 ? 0x3800 : 0x4000;  // 0.5, 2
    a[b].d = b == 0 ? 0x3c00 : 0x3400;  // 1, 0.25
    for (int j = 0; j < 16; ++j) w[b].qs[j] = uint8_t(9 | 6 << 4);  // +1 low, -2 high
    for (int j = 0; j < 32; ++j) a[b].qs[j] = int8_t(j - 10);
  }
  // Per block: sum_j<16 (j - 10) * 1 + sum_j<16 (j + 6) * -2 = -40 - 432 = -472.
  EXPECT_EQ(vec_dot(DType::Q4_0, w, a, 64), -472.0f * 0.5f * 1.0f + -472.0f * 2.0f * 0.25f);
}

INSTANTIATE_TEST_SUITE_P(Quants, VecDot,
                         testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                         DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                                         DType::Q6_K),
                         type_param_name);

}  // namespace
}  // namespace quarrel::tensor

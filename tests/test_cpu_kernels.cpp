// Every ISA kernel table this CPU can run, against the scalar reference, on
// fresh random inputs. The seed is printed with any failure; set it back in
// seed_for() to replay one.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/packed.h"
#include "tensor/blocks.h"
#include "tensor/fp16.h"
#include "tensor/quants.h"

namespace quarrel::cpu {
namespace {

using tensor::DType;

uint64_t seed_for() { return std::random_device{}(); }

std::vector<float> random_floats(std::mt19937_64& rng, int64_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// The ISA tables to test: every one but the scalar reference itself.
std::vector<const Kernels*> isa_tables() {
  auto all = kernels_available();
  return {all.begin() + 1, all.end()};
}

// Random weight rows of type t. Types with a reference quantizer are encoded
// from floats; the K-quants get random bytes with sane F16 scales.
std::vector<uint8_t> random_weights(std::mt19937_64& rng, DType t, int64_t rows, int64_t n) {
  const int64_t rb = tensor::row_bytes(t, n);
  std::vector<uint8_t> w(rows * rb);
  const bool k_quant = t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K ||
                       t == DType::Q6_K;
  if (!k_quant) {
    for (int64_t r = 0; r < rows; ++r) tensor::quantize_row(t, random_floats(rng, n).data(), w.data() + r * rb, n);
    return w;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : w) b = static_cast<uint8_t>(byte(rng));
  // Byte offsets of the F16 scale fields within each block.
  std::vector<int> scale_fields;
  int block = 0;
  switch (t) {
    case DType::Q2_K: scale_fields = {80, 82}; block = sizeof(tensor::BlockQ2_K); break;
    case DType::Q3_K: scale_fields = {108}; block = sizeof(tensor::BlockQ3_K); break;
    case DType::Q4_K: scale_fields = {0, 2}; block = sizeof(tensor::BlockQ4_K); break;
    case DType::Q5_K: scale_fields = {0, 2}; block = sizeof(tensor::BlockQ5_K); break;
    default: scale_fields = {208}; block = sizeof(tensor::BlockQ6_K); break;
  }
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  for (int64_t off = 0; off < static_cast<int64_t>(w.size()); off += block)
    for (int f : scale_fields) {
      const uint16_t h = tensor::fp32_to_fp16(scale(rng));
      std::memcpy(w.data() + off + f, &h, 2);
    }
  return w;
}

// Sum of |w_i * a_i| of one row pair, the scale a float error is measured on.
double abs_dot(DType wt, const uint8_t* w, DType at, const uint8_t* a, int64_t n) {
  std::vector<float> wf(n), af(n);
  tensor::dequantize_row(wt, w, wf.data(), n);
  tensor::dequantize_row(at, a, af.data(), n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(wf[i]) * af[i]);
  return s;
}

struct MatmulCase {
  DType type;
  std::vector<int64_t> sizes;
};

const std::vector<MatmulCase>& matmul_cases() {
  static const std::vector<MatmulCase> cases = {
      {DType::F32, {7, 33, 576}},       {DType::F16, {5, 64, 100, 1536}}, {DType::BF16, {9, 64, 576}},
      {DType::Q4_0, {32, 96, 576}},     {DType::Q4_1, {32, 576}},         {DType::Q5_0, {32, 576}},
      {DType::Q5_1, {32, 576}},         {DType::Q8_0, {32, 96, 1536}},    {DType::Q2_K, {256, 512}},
      {DType::Q3_K, {256, 512}},        {DType::Q4_K, {256, 1536}},       {DType::Q5_K, {256, 1536}},
      {DType::Q6_K, {256, 1536}},
  };
  return cases;
}

TEST(CpuKernels, MatmulMatchesScalar) {
  const Kernels& ref = kernels_scalar();
  for (const Kernels* k : isa_tables()) {
    for (const MatmulCase& mc : matmul_cases()) {
      for (int64_t n : mc.sizes) {
        for (int64_t n_cols : {1, 2, 3, 4, 5, 7, 9}) {
          const uint64_t seed = seed_for();
          SCOPED_TRACE(::testing::Message() << k->isa << " " << tensor::dtype_name(mc.type) << " n=" << n
                                            << " cols=" << n_cols << " seed=" << seed);
          std::mt19937_64 rng(seed);
          const int64_t rows = 13, r0 = 1, r1 = 12, os = rows + 3;
          const DType at = tensor::vec_dot_type(mc.type);
          const int64_t wrb = tensor::row_bytes(mc.type, n), arb = tensor::row_bytes(at, n);
          const auto w = random_weights(rng, mc.type, rows, n);
          std::vector<uint8_t> a(n_cols * arb);
          for (int64_t c = 0; c < n_cols; ++c)
            ref.quantize[dtype_index(at)](random_floats(rng, n).data(), a.data() + c * arb, n);
          std::vector<float> want(n_cols * os, -1.0f), got(n_cols * os, -1.0f);
          ref.matmul[dtype_index(mc.type)](w.data(), wrb, r0, r1, n, a.data(), arb, n_cols, want.data(), os);
          k->matmul[dtype_index(mc.type)](w.data(), wrb, r0, r1, n, a.data(), arb, n_cols, got.data(), os);
          for (int64_t c = 0; c < n_cols; ++c)
            for (int64_t r = 0; r < rows; ++r) {
              const int64_t i = c * os + r;
              if (r < r0 || r >= r1) {
                EXPECT_EQ(got[i], -1.0f) << "wrote outside rows at r=" << r;
                continue;
              }
              const double tol = 1e-5 * abs_dot(mc.type, w.data() + r * wrb, at, a.data() + c * arb, n) + 1e-6;
              ASSERT_NEAR(got[i], want[i], tol) << "r=" << r << " c=" << c;
            }
          const float vd = k->vec_dot[dtype_index(mc.type)](w.data() + 2 * wrb, a.data(), n);
          EXPECT_NEAR(vd, want[2], 1e-5 * abs_dot(mc.type, w.data() + 2 * wrb, at, a.data(), n) + 1e-6);
        }
      }
    }
  }
}

// The K-quant kernels rebuild ggml's eight integer lanes and float steps, so
// they must agree with the reference to the bit.
TEST(CpuKernels, KQuantDotIsBitExact) {
  const Kernels& ref = kernels_scalar();
  for (const Kernels* k : isa_tables()) {
    for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      const uint64_t seed = seed_for();
      SCOPED_TRACE(::testing::Message() << k->isa << " " << tensor::dtype_name(t) << " seed=" << seed);
      std::mt19937_64 rng(seed);
      const int64_t n = 2048;
      const auto w = random_weights(rng, t, 4, n);
      std::vector<uint8_t> a(tensor::row_bytes(DType::Q8_K, n));
      ref.quantize[dtype_index(DType::Q8_K)](random_floats(rng, n).data(), a.data(), n);
      for (int r = 0; r < 4; ++r) {
        const uint8_t* row = w.data() + r * tensor::row_bytes(t, n);
        EXPECT_EQ(k->vec_dot[dtype_index(t)](row, a.data(), n), ref.vec_dot[dtype_index(t)](row, a.data(), n));
      }
    }
  }
}

TEST(CpuKernels, PackRoundTrips) {
  std::mt19937_64 rng(seed_for());
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::F16, DType::F32}) {
    const int64_t rows = 32, n = 96, rb = tensor::row_bytes(t, n);
    const auto w = random_weights(rng, t, rows, n);
    std::vector<uint8_t> packed(rows / kPackRows * packed_group_bytes(t, n)), row(rb);
    pack_rows(t, w.data(), rb, rows, n, packed.data());
    for (int64_t r = 0; r < rows; ++r) {
      unpack_row(t, packed.data(), n, r, row.data());
      ASSERT_EQ(0, std::memcmp(row.data(), w.data() + r * rb, rb)) << tensor::dtype_name(t) << " row " << r;
    }
  }
}

// One packed-matmul case: rows [r0, rows) of random weights of type t
// (changed by `tweak` before packing) times n_cols random activation rows,
// through the scalar table's plain kernel (want) and table k's packed one
// (got); both start at -1, so that writes outside the rows show.
struct PackedCase {
  std::vector<uint8_t> w, a;
  std::vector<float> want, got;
};

template <class Tweak>
PackedCase run_packed_case(const Kernels& k, DType t, int64_t rows, int64_t r0, int64_t n, int64_t n_cols,
                           int64_t os, std::mt19937_64& rng, Tweak&& tweak) {
  const Kernels& ref = kernels_scalar();
  const DType at = tensor::vec_dot_type(t);
  const int64_t wrb = tensor::row_bytes(t, n), arb = tensor::row_bytes(at, n);
  PackedCase pc;
  pc.w = random_weights(rng, t, rows, n);
  tweak(pc.w);
  std::vector<uint8_t> packed(rows / kPackRows * packed_group_bytes(t, n));
  pack_rows(t, pc.w.data(), wrb, rows, n, packed.data());
  pc.a.resize(n_cols * arb);
  for (int64_t c = 0; c < n_cols; ++c)
    ref.quantize[dtype_index(at)](random_floats(rng, n).data(), pc.a.data() + c * arb, n);
  pc.want.assign(n_cols * os, -1.0f);
  pc.got.assign(n_cols * os, -1.0f);
  ref.matmul[dtype_index(t)](pc.w.data(), wrb, r0, rows, n, pc.a.data(), arb, n_cols, pc.want.data(), os);
  k.matmul_packed[dtype_index(t)](packed.data(), packed_group_bytes(t, n), r0, rows, n, pc.a.data(), arb, n_cols,
                                  pc.got.data(), os);
  return pc;
}

TEST(CpuKernels, PackedMatmulMatchesScalar) {
  for (const Kernels* k : kernels_available()) {
    for (DType t : {DType::Q4_0, DType::Q8_0, DType::F16, DType::F32}) {
      if (!k->matmul_packed[dtype_index(t)]) continue;
      // 8256 elements: more blocks than the AVX-512 kernel summarizes at once,
      // and more F16 elements than it widens at once.
      for (int64_t n : {32, 576, 8256}) {
        for (int64_t n_cols : {1, 2, 3, 4, 5, 9, 13, 27}) {
          const uint64_t seed = seed_for();
          SCOPED_TRACE(::testing::Message() << k->isa << " " << tensor::dtype_name(t) << " n=" << n
                                            << " cols=" << n_cols << " seed=" << seed);
          std::mt19937_64 rng(seed);
          const int64_t rows = 48, r0 = 16, os = rows + 5;
          const DType at = tensor::vec_dot_type(t);
          const int64_t wrb = tensor::row_bytes(t, n), arb = tensor::row_bytes(at, n);
          const PackedCase pc = run_packed_case(*k, t, rows, r0, n, n_cols, os, rng, [](std::vector<uint8_t>&) {});
          for (int64_t c = 0; c < n_cols; ++c)
            for (int64_t r = 0; r < rows; ++r) {
              const int64_t i = c * os + r;
              if (r < r0) {
                EXPECT_EQ(pc.got[i], -1.0f) << "wrote outside rows at r=" << r;
                continue;
              }
              const double tol = 1e-5 * abs_dot(t, pc.w.data() + r * wrb, at, pc.a.data() + c * arb, n) + 1e-6;
              ASSERT_NEAR(pc.got[i], pc.want[i], tol) << "r=" << r << " c=" << c;
            }
        }
      }
    }
  }
}

// The float panel kernels sum in the reference's order (eight chains, their
// horizontal sum, then the last n % 8 one by one), so they must agree with it
// to the bit: the model-level tests compare logits with llama.cpp's. Row
// lengths below eight, with a tail, and longer than a chain's prefetch
// distance; every column-tile width and its remainders.
TEST(CpuKernels, PackedFloatMatmulIsBitExact) {
  for (const Kernels* k : kernels_available()) {
    for (DType t : {DType::F16, DType::F32}) {
      if (!k->matmul_packed[dtype_index(t)]) continue;
      for (int64_t n : {5, 64, 100, 579, 4103}) {
        for (int64_t n_cols : {1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 25}) {
          const uint64_t seed = seed_for();
          SCOPED_TRACE(::testing::Message() << k->isa << " " << tensor::dtype_name(t) << " n=" << n
                                            << " cols=" << n_cols << " seed=" << seed);
          std::mt19937_64 rng(seed);
          const int64_t rows = 64, os = rows + 3;
          const PackedCase pc = run_packed_case(*k, t, rows, 16, n, n_cols, os, rng, [](std::vector<uint8_t>&) {});
          for (int64_t i = 0; i < n_cols * os; ++i)
            ASSERT_EQ(pc.got[i], pc.want[i]) << "r=" << i % os << " c=" << i / os;
        }
      }
    }
  }
}

// Activation converters must give the reference's bytes exactly: the same
// rounding is what keeps the integer dot products identical.
// Q8_0 on packed weights keeps ggml's AVX2 order (eight chains per row, then
// their horizontal sum), so it must agree with the reference to the bit, for
// any tile of columns; weights of -128 (which no quantizer makes, but a file
// may hold) included.
TEST(CpuKernels, PackedQ8_0IsBitExact) {
  const DType t = DType::Q8_0;
  for (const Kernels* k : isa_tables()) {
    if (!k->matmul_packed[dtype_index(t)]) continue;
    for (int64_t n : {32, 576, 1536, 8256}) {
      for (int64_t n_cols : {1, 2, 3, 4, 5, 8, 9, 13, 17}) {
        const uint64_t seed = seed_for();
        SCOPED_TRACE(::testing::Message() << k->isa << " n=" << n << " cols=" << n_cols << " seed=" << seed);
        std::mt19937_64 rng(seed);
        const int64_t rows = 48, os = rows + 5;
        const int64_t wrb = tensor::row_bytes(t, n);
        // Quants of -128, whose sign the AVX2 kernel's sign trick must handle.
        auto plant = [&](std::vector<uint8_t>& w) {
          std::uniform_int_distribution<int64_t> pick(0, rows * (n / 32) - 1);
          for (int i = 0; i < 8; ++i) {
            const int64_t blk = pick(rng);
            w[blk / (n / 32) * wrb + blk % (n / 32) * sizeof(tensor::BlockQ8_0) + 2 + i % 32] = 0x80;
          }
        };
        const PackedCase pc = run_packed_case(*k, t, rows, 16, n, n_cols, os, rng, plant);
        for (int64_t c = 0; c < n_cols; ++c)
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t i = c * os + r;
            ASSERT_EQ(std::memcmp(&pc.got[i], &pc.want[i], sizeof(float)), 0)
                << "r=" << r << " c=" << c << " got " << pc.got[i] << " want " << pc.want[i];
          }
      }
    }
  }
}

TEST(CpuKernels, QuantizeIsBitExact) {
  const Kernels& ref = kernels_scalar();
  for (const Kernels* k : isa_tables()) {
    for (DType t : {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::F16, DType::BF16, DType::F32}) {
      for (int64_t n : {256, 512, 4096}) {
        const uint64_t seed = seed_for();
        SCOPED_TRACE(::testing::Message() << k->isa << " " << tensor::dtype_name(t) << " n=" << n << " seed=" << seed);
        std::mt19937_64 rng(seed);
        auto x = random_floats(rng, n, 3.0f);
        // Edge cases: an all-zero block, and a block whose extremes tie in
        // magnitude with opposite signs (Q8_K must keep the first).
        std::fill_n(x.begin(), 32, 0.0f);
        if (n >= 512) {
          std::fill_n(x.begin() + 256, 256, 0.5f);
          x[300] = -9.0f;
          x[301] = 9.0f;
        }
        x[n - 1] = 1e-30f;  // a value that rounds to zero or subnormal
        const int64_t rb = tensor::row_bytes(t, n);
        std::vector<uint8_t> want(rb), got(rb);
        ref.quantize[dtype_index(t)](x.data(), want.data(), n);
        k->quantize[dtype_index(t)](x.data(), got.data(), n);
        ASSERT_EQ(0, std::memcmp(want.data(), got.data(), rb));
      }
    }
    // F16 and BF16 rows of any length (block size 1).
    for (DType t : {DType::F16, DType::BF16}) {
      std::mt19937_64 rng(seed_for());
      auto x = random_floats(rng, 13);
      std::vector<uint8_t> want(26), got(26);
      ref.quantize[dtype_index(t)](x.data(), want.data(), 13);
      k->quantize[dtype_index(t)](x.data(), got.data(), 13);
      EXPECT_EQ(0, std::memcmp(want.data(), got.data(), 26)) << k->isa << " " << tensor::dtype_name(t);
    }
  }
}

// |got - want| <= rel * (|want| + floor): floor is the size of the terms a
// result is summed from, so cancellation does not make the test flaky.
void expect_close(const std::vector<float>& want, const std::vector<float>& got, double rel, double floor,
                  const char* what) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * (std::fabs(want[i]) + floor)) << what << " i=" << i;
}

// RMSNorm walks its row backwards when the output sits a little above an
// input modulo 4 KiB: place the output above, below and on the input (in
// place) within one allocation, with a tail that is not a multiple of 16.
TEST(CpuKernels, RmsNormMatchesScalarWhereverTheOutputLies) {
  const Kernels& ref = kernels_scalar();
  for (const Kernels* k : isa_tables()) {
    for (int64_t n : {13, 4096 + 5}) {
      const uint64_t seed = seed_for();
      std::mt19937_64 rng(seed);
      const auto x0 = random_floats(rng, n), w = random_floats(rng, n);
      std::vector<float> want(n);
      ref.rms_norm(x0.data(), w.data(), 1e-5f, n, want.data());
      // The output starts whole 4 KiB pages past the input's end, then 8
      // floats above (backwards), 8 below (forwards), or on the input.
      const int64_t pages = n / 1024 + 2;
      for (int64_t shift : {int64_t{8}, int64_t{-8}, int64_t{0}}) {
        SCOPED_TRACE(::testing::Message() << k->isa << " n=" << n << " shift=" << shift << " seed=" << seed);
        std::vector<float> buf(1024 * (pages + 1) + n + 16, -7.0f);
        float* x = buf.data() + 16;
        float* out = shift == 0 ? x : x + 1024 * pages + shift;
        std::copy(x0.begin(), x0.end(), x);
        k->rms_norm(x, w.data(), 1e-5f, n, out);
        expect_close(want, std::vector<float>(out, out + n), 1e-6, 1.0, "rms_norm");
      }
    }
  }
}

TEST(CpuKernels, FloatOpsMatchScalar) {
  const Kernels& ref = kernels_scalar();
  for (const Kernels* k : isa_tables()) {
    for (int64_t n : {8, 13, 64, 576, 4096}) {
      const uint64_t seed = seed_for();
      SCOPED_TRACE(::testing::Message() << k->isa << " n=" << n << " seed=" << seed);
      std::mt19937_64 rng(seed);
      auto x = random_floats(rng, n), y = random_floats(rng, n), w = random_floats(rng, n), b = random_floats(rng, n);

      EXPECT_NEAR(k->dot_f32(x.data(), y.data(), n), ref.dot_f32(x.data(), y.data(), n), 1e-5 * n);
      auto y1 = y, y2 = y;
      ref.axpy_f32(0.37f, x.data(), y1.data(), n);
      k->axpy_f32(0.37f, x.data(), y2.data(), n);
      expect_close(y1, y2, 1e-6, 1.0, "axpy");
      y1 = y, y2 = y;
      ref.add_f32(y1.data(), x.data(), n);
      k->add_f32(y2.data(), x.data(), n);
      expect_close(y1, y2, 0, 0, "add");

      std::vector<float> o1(n), o2(n);
      ref.rms_norm(x.data(), w.data(), 1e-5f, n, o1.data());
      k->rms_norm(x.data(), w.data(), 1e-5f, n, o2.data());
      expect_close(o1, o2, 1e-6, 1.0, "rms_norm");
      ref.layer_norm(x.data(), w.data(), b.data(), 1e-5f, n, o1.data());
      k->layer_norm(x.data(), w.data(), b.data(), 1e-5f, n, o2.data());
      expect_close(o1, o2, 1e-6, 1.0, "layer_norm");

      // SwiGLU over a wide range, including large |g| where exp saturates.
      auto g = random_floats(rng, n, 8.0f);
      y1 = g, y2 = g;
      ref.swiglu(y1.data(), y.data(), n);
      k->swiglu(y2.data(), y.data(), n);
      expect_close(y1, y2, 1e-6, 1.0, "swiglu");

      if (n % 2 == 0) {
        const int64_t half = n / 2;
        auto cs = random_floats(rng, half), sn = random_floats(rng, half);
        for (bool neox : {false, true}) {
          y1 = x, y2 = x;
          ref.rope_apply(y1.data(), cs.data(), sn.data(), half, neox);
          k->rope_apply(y2.data(), cs.data(), sn.data(), half, neox);
          expect_close(y1, y2, 0, 0, neox ? "rope neox" : "rope");
        }
      }
    }
  }
}

TEST(CpuKernels, AttendMatchesScalar) {
  const Kernels& ref = kernels_scalar();
  for (const Kernels* k : isa_tables()) {
    for (int64_t hd : {64, 128, 40}) {
      for (int64_t n_pos : {1, 5, 67, 300}) {
        for (int64_t n_q : {1, 3, 4}) {
          const uint64_t seed = seed_for();
          SCOPED_TRACE(::testing::Message() << k->isa << " hd=" << hd << " n_pos=" << n_pos << " n_q=" << n_q
                                            << " seed=" << seed);
          std::mt19937_64 rng(seed);
          // K transposed with room for more positions; V rows wider than a head.
          const int64_t k_stride = n_pos + 5, v_stride = hd * 3;
          auto q = random_floats(rng, n_q * hd), kk = random_floats(rng, hd * k_stride),
               vv = random_floats(rng, n_pos * v_stride);
          std::vector<float> scores(n_q * n_pos), o1(n_q * hd), o2(n_q * hd);
          AttendArgs a;
          a.q = q.data();
          a.n_q = n_q;
          a.q_stride = hd;
          a.k = kk.data();
          a.v = vv.data();
          a.k_stride = k_stride;
          a.v_stride = v_stride;
          a.n_pos = n_pos;
          a.head_dim = hd;
          a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
          a.scores = scores.data();
          a.out_stride = hd;
          a.out = o1.data();
          ref.attend(a);
          a.out = o2.data();
          k->attend(a);
          // Scores and the weighted sum of V follow the reference's order
          // exactly; only exp differs (by an ulp or two).
          expect_close(o1, o2, 1e-5, 1.0, "attend");
        }
      }
    }
  }
}

TEST(CpuKernels, LoraMatchesScalar) {
  const Kernels& ref = kernels_scalar();
  for (const Kernels* k : isa_tables()) {
    for (int64_t rank : {1, 2, 3, 5}) {
      for (int64_t dim : {768, 2048, 100}) {
        const uint64_t seed = seed_for();
        SCOPED_TRACE(::testing::Message() << k->isa << " rank=" << rank << " dim=" << dim << " seed=" << seed);
        std::mt19937_64 rng(seed);
        auto a = random_floats(rng, rank * dim), b = random_floats(rng, rank * dim);
        auto x = random_floats(rng, dim), g = random_floats(rng, dim), y = random_floats(rng, dim);
        LoraArgs l;
        l.a = a.data();
        l.b = b.data();
        l.rank = rank;
        l.d_in = dim;
        l.d_out = dim;
        l.scale = 0.5f;
        auto y1 = y, y2 = y;
        ref.lora_forward(l, x.data(), y1.data());
        k->lora_forward(l, x.data(), y2.data());
        expect_close(y1, y2, 1e-5, std::sqrt(static_cast<double>(dim)), "lora forward");
        auto da1 = random_floats(rng, rank * dim), db1 = random_floats(rng, rank * dim);
        auto da2 = da1, db2 = db1;
        ref.lora_grad(l, x.data(), g.data(), da1.data(), db1.data());
        k->lora_grad(l, x.data(), g.data(), da2.data(), db2.data());
        expect_close(da1, da2, 1e-5, std::sqrt(static_cast<double>(dim)), "lora dA");
        expect_close(db1, db2, 1e-5, std::sqrt(static_cast<double>(dim)), "lora dB");
      }
    }
  }
}

// The reference MicroLoRA gradient against finite differences of the
// forward pass, so the scalar oracle itself is checked.
TEST(CpuKernels, LoraGradientIsExact) {
  const Kernels& ref = kernels_scalar();
  std::mt19937_64 rng(7);
  const int64_t rank = 2, dim = 16;
  auto a = random_floats(rng, rank * dim), b = random_floats(rng, rank * dim);
  auto x = random_floats(rng, dim), g = random_floats(rng, dim);
  LoraArgs l{a.data(), b.data(), rank, dim, dim, 0.5f};
  // loss = g . y(x) with y = scale * B (A x): linear in each weight, so a
  // central difference is exact up to rounding.
  auto loss = [&] {
    std::vector<float> y(dim, 0.0f);
    ref.lora_forward(l, x.data(), y.data());
    double s = 0;
    for (int64_t i = 0; i < dim; ++i) s += static_cast<double>(g[i]) * y[i];
    return s;
  };
  std::vector<float> da(rank * dim, 0.0f), db(rank * dim, 0.0f);
  ref.lora_grad(l, x.data(), g.data(), da.data(), db.data());
  const float h = 1e-2f;
  for (int64_t i = 0; i < rank * dim; ++i) {
    const float a0 = a[i];
    a[i] = a0 + h;
    const double lp = loss();
    a[i] = a0 - h;
    const double lm = loss();
    a[i] = a0;
    EXPECT_NEAR(da[i], (lp - lm) / (2 * h), 1e-3) << "dA " << i;
    const float b0 = b[i];
    b[i] = b0 + h;
    const double bp = loss();
    b[i] = b0 - h;
    const double bm = loss();
    b[i] = b0;
    EXPECT_NEAR(db[i], (bp - bm) / (2 * h), 1e-3) << "dB " << i;
  }
}

TEST(CpuKernels, BestTableIsTheLast) {
  auto all = kernels_available();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front()->isa, "scalar");
  EXPECT_EQ(&kernels_best(), all.back());
}

}  // namespace
}  // namespace quarrel::cpu

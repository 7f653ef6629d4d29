// AVX2 matmul on packed Q4_0 weights (packed.h), for CPUs without AVX-512
// VNNI: a group of 16 rows is two halves of 8, each a ymm with one row per
// 32-bit lane. maddubs multiplies a half's nibbles by four broadcast
// activation bytes; the eight pair sums of a block stay within 16 bits
// (8 x 2 x 15 x 127 < 32768), so one madd per block turns them into the
// rows' integer dot products (activations from our quantizer are within
// [-127, 127]). Q8_0 gains little from packing on AVX2 (its
// products fill 16 bits, so every group needs its own madd) and keeps the
// plain kernel.
#include <algorithm>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/packed.h"
#include "cpu/kernels/x86_avx2_common.h"
#include "tensor/blocks.h"

namespace quarrel::cpu::avx2 {

namespace {

using tensor::DType;

inline int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

struct ActBlock {
  float d;
  int32_t corr;  // 8 * sum(quants): the nibbles' offset
};

void summarize(const uint8_t* a, int64_t b0, int64_t b1, ActBlock* out) {
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = a + b * sizeof(tensor::BlockQ8_0);
    const __m256i q = load256(blk + 2);
    const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), q), _mm256_set1_epi16(1));
    out[b - b0] = {f16_to_f32(blk), hsum_i32(s)};
  }
}

// Half h (rows 8h..8h+7) of one 16-row group times C columns, blocks [b0, b1).
template <int C>
inline void half_tile(const uint8_t* quants, const uint8_t* scales, int h, int64_t b0, int64_t b1, const uint8_t* a,
                      int64_t as, const ActBlock* sums, int64_t sums_stride, float* out, int64_t os,
                      bool accumulate) {
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* q = quants + b * 256 + 32 * h;
    __m256i w[8];
    for (int k = 0; k < 4; ++k) {
      const __m256i x = load256(q + 64 * k);
      w[k] = _mm256_and_si256(x, m4);
      w[k + 4] = _mm256_and_si256(_mm256_srli_epi16(x, 4), m4);
    }
    const __m256 dw = _mm256_cvtph_ps(load128(scales + b * 32 + 16 * h));
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = a + c * as + b * sizeof(tensor::BlockQ8_0) + 2;
      __m256i p = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(load_i32(ab)));
      for (int j = 1; j < 8; ++j) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[j], _mm256_set1_epi32(load_i32(ab + 4 * j))));
      const ActBlock& s = sums[c * sums_stride + (b - b0)];
      const __m256i isum = _mm256_sub_epi32(_mm256_madd_epi16(p, ones), _mm256_set1_epi32(s.corr));
      acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw, _mm256_set1_ps(s.d)), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) {
    float* o = out + c * os + 8 * h;
    _mm256_storeu_ps(o, accumulate ? _mm256_add_ps(_mm256_loadu_ps(o), acc[c]) : acc[c]);
  }
}

void matmul_packed_q4_0(const uint8_t* w, int64_t gs, int64_t r0, int64_t r1, int64_t n, const uint8_t* a,
                        int64_t as, int64_t n_cols, float* out, int64_t os) {
  constexpr int kCols = 3;             // 8 weight + 3 accumulator ymm, and temporaries, of 16
  constexpr int64_t kMaxBlocks = 512;  // activation summaries per column held at once
  ActBlock sums[kCols * kMaxBlocks];
  const int64_t nb = n / 32, quant_bytes = nb * 4 * 64;
  const int64_t g0 = r0 / kPackRows, g1 = r1 / kPackRows;
  const int64_t per_pass = n_cols == 1 ? g1 - g0 : std::max<int64_t>(1, (256 << 10) / gs);
  for (int64_t gp = g0; gp < g1; gp += per_pass) {
    const int64_t ge = std::min(g1, gp + per_pass);
    for (int64_t c0 = 0; c0 < n_cols; c0 += kCols) {
      const int cc = static_cast<int>(std::min<int64_t>(kCols, n_cols - c0));
      for (int64_t kb = 0; kb < nb; kb += kMaxBlocks) {
        const int64_t ke = std::min(nb, kb + kMaxBlocks);
        for (int c = 0; c < cc; ++c) summarize(a + (c0 + c) * as, kb, ke, sums + c * kMaxBlocks);
        for (int64_t g = gp; g < ge; ++g) {
          const uint8_t* q = w + g * gs;
          float* o = out + c0 * os + g * kPackRows;
          for (int h = 0; h < 2; ++h) {
            const uint8_t* ac = a + c0 * as;
            switch (cc) {
              case 3: half_tile<3>(q, q + quant_bytes, h, kb, ke, ac, as, sums, kMaxBlocks, o, os, kb > 0); break;
              case 2: half_tile<2>(q, q + quant_bytes, h, kb, ke, ac, as, sums, kMaxBlocks, o, os, kb > 0); break;
              default: half_tile<1>(q, q + quant_bytes, h, kb, ke, ac, as, sums, kMaxBlocks, o, os, kb > 0); break;
            }
          }
        }
      }
    }
  }
}

}  // namespace

void add_packed_kernels(Kernels& k) {
  k.matmul_packed[dtype_index(DType::Q4_0)] = matmul_packed_q4_0;
  k.pack_weights[dtype_index(DType::Q4_0)] = true;
}

}  // namespace quarrel::cpu::avx2

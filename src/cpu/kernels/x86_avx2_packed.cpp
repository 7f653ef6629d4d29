// AVX2 matmuls on packed Q4_0 and Q8_0 weights (packed.h), for CPUs without
// AVX-512 VNNI: a group of 16 rows is two halves of 8, each a ymm with one
// row per 32-bit lane, multiplied by four broadcast activation bytes.
//   - Q4_0: maddubs on a half's nibbles; the eight pair sums of a block stay
//     within 16 bits (8 x 2 x 15 x 127 < 32768), so one madd per block turns
//     them into the rows' integer dot products (activations from our
//     quantizer are within [-127, 127]).
//   - Q8_0: its products fill 16 bits, so each run of four quants takes its
//     own madd, convert and FMA, which is what its reference order (eight
//     chains per row) asks for anyway. Packing saves the unpacked kernel's
//     per-row scale broadcasts and register spills, and lets one weight
//     register serve several columns (prefill).
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
inline void half_tile(const uint8_t* quants, int h, int64_t b0, int64_t b1, const uint8_t* a, int64_t as,
                      const ActBlock* sums, int64_t sums_stride, float* out, int64_t os, bool accumulate,
                      const uint8_t* next, int64_t quant_bytes) {
  const uint8_t* scales = quants + quant_bytes;
  __m256 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  for (int64_t b = b0; b < b1; ++b) {
    // Half 1 reads the lines half 0 brought in, so the memory would idle
    // then: each half asks for half of the next group's lines (and scales).
    if (next) {
      for (int t = 0; t < 2; ++t)
        _mm_prefetch(reinterpret_cast<const char*>(next + b * 256 + 128 * h + 64 * t), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(next + quant_bytes + b * 32), _MM_HINT_T0);
    }
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
      for (int j = 1; j < 8; ++j)
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[j], _mm256_set1_epi32(load_i32(ab + 4 * j))));
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
          // Only the first column tile reads the pass from memory; the
          // others find it in L2.
          const uint8_t* next = c0 == 0 && g + 1 < ge ? q + gs : nullptr;
          for (int h = 0; h < 2; ++h) {
            const uint8_t* ac = a + c0 * as;
            switch (cc) {
              case 3: half_tile<3>(q, h, kb, ke, ac, as, sums, kMaxBlocks, o, os, kb > 0, next, quant_bytes); break;
              case 2: half_tile<2>(q, h, kb, ke, ac, as, sums, kMaxBlocks, o, os, kb > 0, next, quant_bytes); break;
              default: half_tile<1>(q, h, kb, ke, ac, as, sums, kMaxBlocks, o, os, kb > 0, next, quant_bytes); break;
            }
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------ Q8_0
//
// The sums follow ggml's AVX2 Q8_0 order (the reference's): per row eight
// chains, chain j multiply-adding dw * da times the integer sum of quants
// 4j..4j+3 of each block, then the chains added as a horizontal sum adds
// lanes. In the packed layout chunk j of a block is exactly chain j's quants
// for 16 rows, so a ymm of one half's chunk gives eight rows' chain-j sums in
// its lanes: sign trick (|w| times a with w's sign, pairs within 16 bits as
// |w| <= 128 and |a| <= 127), one madd to 32 bits, one convert, one FMA.
// Chains are independent, so a tile may run J of them at a time for C
// columns (J * C accumulators), parking the others' partial sums: the order
// within each chain is unchanged, so the result is bit-identical whatever the
// tile.

// Eight rows' chain sums of one chunk w (four quants of each row; aw = |w|)
// with the four activation bytes at a4.
inline __m256 q8_quad(__m256i w, __m256i aw, const uint8_t* a4) {
  const __m256i p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(load_i32(a4)), w));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

// One group of 16 rows times C columns. The blocks go in ranges; for each
// range and each half of the rows, dw * da of its blocks first (read by the
// FMAs from memory), then J chains at a time over the range, the partial
// sums of all chains parked between runs. A range's quants stay in L1 while
// both halves read them.
template <int J, int C>
inline void q8_tile(const uint8_t* quants, int64_t nb, const uint8_t* a, int64_t as, float* out, int64_t os,
                    const uint8_t* next) {
  constexpr int64_t kMaxRange = 16;  // blocks at a time: 8 KiB of quants
  // Equal ranges (18 blocks as 9 + 9, not 16 + 2): a short range pays the
  // parking of all chains for a few blocks.
  const int64_t n_ranges = (nb + kMaxRange - 1) / kMaxRange;
  const int64_t range = (nb + n_ranges - 1) / n_ranges;
  const uint8_t* scales = quants + nb * 8 * 64;
  alignas(32) float d[kMaxRange][C][8];
  __m256 park[2][8][C];
  for (auto& half : park)
    for (auto& chain : half)
      for (auto& v : chain) v = _mm256_setzero_ps();
  for (int64_t b0 = 0; b0 < nb; b0 += range) {
    const int64_t n_b = std::min(range, nb - b0);
    for (int h = 0; h < 2; ++h) {
      for (int64_t i = 0; i < n_b; ++i) {
        // The chains read a group in runs that the hardware prefetchers do
        // not follow: ask for the next group's lines ahead.
        if (next) {
          for (int t = 0; t < 4; ++t)
            _mm_prefetch(reinterpret_cast<const char*>(next + (b0 + i) * 8 * 64 + 256 * h + 64 * t), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(next + nb * 8 * 64 + (b0 + i) * 32), _MM_HINT_T0);
        }
        const __m256 dw = _mm256_cvtph_ps(load128(scales + (b0 + i) * 32 + 16 * h));
        for (int c = 0; c < C; ++c) {
          const uint8_t* ab = a + c * as + (b0 + i) * sizeof(tensor::BlockQ8_0);
          _mm256_store_ps(d[i][c], _mm256_mul_ps(dw, _mm256_set1_ps(f16_to_f32(ab))));
        }
      }
      for (int j0 = 0; j0 < 8; j0 += J) {
        __m256 acc[J][C];
        for (int j = 0; j < J; ++j)
          for (int c = 0; c < C; ++c) acc[j][c] = park[h][j0 + j][c];
        for (int64_t i = 0; i < n_b; ++i) {
          const int64_t b = b0 + i;
          const uint8_t* q = quants + b * 8 * 64 + 32 * h;
          for (int j = 0; j < J; ++j) {
            const __m256i w = load256(q + 64 * (j0 + j)), aw = _mm256_sign_epi8(w, w);
            for (int c = 0; c < C; ++c) {
              const uint8_t* a4 = a + c * as + b * sizeof(tensor::BlockQ8_0) + 2 + 4 * (j0 + j);
              acc[j][c] = _mm256_fmadd_ps(_mm256_load_ps(d[i][c]), q8_quad(w, aw, a4), acc[j][c]);
            }
          }
        }
        for (int j = 0; j < J; ++j)
          for (int c = 0; c < C; ++c) park[h][j0 + j][c] = acc[j][c];
      }
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int c = 0; c < C; ++c) {
      __m256 chains[8];
      for (int j = 0; j < 8; ++j) chains[j] = park[h][j][c];
      _mm256_storeu_ps(out + c * os + 8 * h, add_chains(chains));
    }
}

// One group times one column (decode), all eight chains of a half at once
// in registers, dw * da computed in place; both halves per range of blocks,
// so that a range's lines are read from memory once.
inline void q8_gemv(const uint8_t* quants, int64_t nb, const uint8_t* a, float* out, const uint8_t* next) {
  constexpr int64_t kRange = 16;
  const uint8_t* scales = quants + nb * 8 * 64;
  __m256 park[2][8];
  for (auto& half : park)
    for (auto& v : half) v = _mm256_setzero_ps();
  for (int64_t b0 = 0; b0 < nb; b0 += kRange) {
    const int64_t b1 = std::min(nb, b0 + kRange);
    for (int h = 0; h < 2; ++h) {
      __m256 acc[8];
      for (int j = 0; j < 8; ++j) acc[j] = park[h][j];
      for (int64_t b = b0; b < b1; ++b) {
        if (next) {
          for (int t = 0; t < 4; ++t)
            _mm_prefetch(reinterpret_cast<const char*>(next + b * 8 * 64 + 256 * h + 64 * t), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(next + nb * 8 * 64 + b * 32), _MM_HINT_T0);
        }
        const uint8_t* q = quants + b * 8 * 64 + 32 * h;
        const uint8_t* ab = a + b * sizeof(tensor::BlockQ8_0);
        const __m256 dw = _mm256_cvtph_ps(load128(scales + b * 32 + 16 * h));
        const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(f16_to_f32(ab)));
        for (int j = 0; j < 8; ++j) {
          const __m256i w = load256(q + 64 * j);
          acc[j] = _mm256_fmadd_ps(d, q8_quad(w, _mm256_sign_epi8(w, w), ab + 2 + 4 * j), acc[j]);
        }
      }
      for (int j = 0; j < 8; ++j) park[h][j] = acc[j];
    }
  }
  for (int h = 0; h < 2; ++h) _mm256_storeu_ps(out + 8 * h, add_chains(park[h]));
}

void matmul_packed_q8_0(const uint8_t* w, int64_t gs, int64_t r0, int64_t r1, int64_t n, const uint8_t* a,
                        int64_t as, int64_t n_cols, float* out, int64_t os) {
  const int64_t nb = n / 32;
  const int64_t g0 = r0 / kPackRows, g1 = r1 / kPackRows;
  constexpr int kCols = 8;
  // Groups per pass: about 256 KiB of weights, reused by every column from L2.
  const int64_t per_pass = n_cols == 1 ? g1 - g0 : std::max<int64_t>(1, (256 << 10) / gs);
  for (int64_t gp = g0; gp < g1; gp += per_pass) {
    const int64_t ge = std::min(g1, gp + per_pass);
    for (int64_t c0 = 0; c0 < n_cols;) {
      const int64_t left = n_cols - c0;
      const int cc = static_cast<int>(left >= kCols ? kCols : left >= 4 ? 4 : left);
      const uint8_t* ac = a + c0 * as;
      for (int64_t g = gp; g < ge; ++g) {
        const uint8_t* q = w + g * gs;
        float* o = out + c0 * os + g * kPackRows;
        // Only the first column tile reads the pass from memory; the others
        // find it in L2.
        const uint8_t* next = c0 == 0 && g + 1 < ge ? q + gs : nullptr;
        switch (cc) {
          case 8: q8_tile<1, 8>(q, nb, ac, as, o, os, next); break;
          case 4: q8_tile<2, 4>(q, nb, ac, as, o, os, next); break;
          case 3: q8_tile<2, 3>(q, nb, ac, as, o, os, next); break;
          // 16 accumulators spill a little, yet beat two passes of 4 chains
          // (4-6% measured): the weights are read once per half.
          case 2: q8_tile<8, 2>(q, nb, ac, as, o, os, next); break;
          default: q8_gemv(q, nb, ac, o, next); break;
        }
      }
      c0 += cc;
    }
  }
}

}  // namespace

void add_packed_kernels(Kernels& k) {
  k.matmul_packed[dtype_index(DType::Q4_0)] = matmul_packed_q4_0;
  k.pack_weights[dtype_index(DType::Q4_0)] = true;
  k.matmul_packed[dtype_index(DType::Q8_0)] = matmul_packed_q8_0;
  k.pack_weights[dtype_index(DType::Q8_0)] = true;
}

}  // namespace quarrel::cpu::avx2

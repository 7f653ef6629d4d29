// AVX-512 kernels (F, BW, VL, DQ, VNNI, BF16), used only when the CPU has all
// of them. The table starts from the AVX2 one and overrides the hot paths:
//   - Q4_0/Q8_0 on packed weights (packed.h): one vpdpbusd multiplies 16
//     rows' quants by four broadcast activation bytes, each lane a row;
//   - F32/F16 with 16-wide FMA tiles, BF16 with vdpbf16ps on the raw halves
//     (products of two bf16 are exact in float, as in the reference).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/packed.h"
#include "tensor/blocks.h"

namespace quarrel::cpu {

namespace avx2 {  // x86_avx2_float.cpp
double softmax_exp(float* s, int64_t n);
void attend(const AttendArgs& a);
}  // namespace avx2

namespace {

using tensor::DType;

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// GCC 12 warns about the unmasked forms of these (its _mm512_undefined_*
// self-initializes); the zero-masked forms with a full mask are the same
// instructions.
inline __m512 cvt_ph(__m256i h) { return _mm512_maskz_cvtph_ps(0xffff, h); }
inline __m512 cvt_i32(__m512i x) { return _mm512_maskz_cvtepi32_ps(0xffff, x); }
inline float hsum(__m512 v) {
  const __m256 s8 = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, v, 0), _mm512_maskz_extractf32x8_ps(0xff, v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t load_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---------------------------------------------------- packed Q4_0 / Q8_0

// Per activation block: its scale, and the offset's share of the integer dot
// product, offset * sum(quants): vpdpbusd wants unsigned weights, so Q4_0
// keeps its nibbles 0..15 (offset 8) and Q8_0 is flipped to w + 128.
struct ActBlock {
  float d;
  int32_t corr;
};

template <int kOffset>
void summarize(const uint8_t* a, int64_t b0, int64_t b1, ActBlock* out) {
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = a + b * sizeof(tensor::BlockQ8_0);
    uint16_t h;
    std::memcpy(&h, blk, 2);
    const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, load256(blk + 2));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    out[b - b0] = {_cvtsh_ss(h), kOffset * _mm_cvtsi128_si32(t)};
  }
}

// One group of 16 rows times C activation columns over blocks [b0, b1).
// Weight register j holds quants 4j..4j+3 of every row, so it pairs with
// activation bytes 4j..4j+3 in both formats.
template <bool kQ4, int C>
inline void packed_tile(const uint8_t* quants, const uint8_t* scales, int64_t b0, int64_t b1, const uint8_t* a,
                        int64_t as, const ActBlock* sums, int64_t sums_stride, float* out, int64_t os,
                        bool accumulate) {
  constexpr int kChunks = kQ4 ? 4 : 8;
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* q = quants + b * kChunks * 64;
    __m512i w[8];
    if constexpr (kQ4) {
      for (int k = 0; k < 4; ++k) {
        const __m512i x = load512(q + 64 * k);
        w[k] = _mm512_and_si512(x, m4);
        w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
      }
    } else {
      for (int g = 0; g < 8; ++g) w[g] = _mm512_xor_si512(load512(q + 64 * g), flip);
    }
    const __m512 dw = cvt_ph(load256(scales + b * 32));
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = a + c * as + b * sizeof(tensor::BlockQ8_0) + 2;
      // Two chains of four so the vpdpbusd latency overlaps.
      __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
      for (int j = 0; j < 8; j += 2) {
        i0 = _mm512_dpbusd_epi32(i0, w[j], _mm512_set1_epi32(load_i32(ab + 4 * j)));
        i1 = _mm512_dpbusd_epi32(i1, w[j + 1], _mm512_set1_epi32(load_i32(ab + 4 * j + 4)));
      }
      const ActBlock& s = sums[c * sums_stride + (b - b0)];
      const __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(i0, i1), _mm512_set1_epi32(s.corr));
      acc[c] = _mm512_fmadd_ps(cvt_i32(isum), _mm512_mul_ps(dw, _mm512_set1_ps(s.d)), acc[c]);
    }
  }
  for (int c = 0; c < C; ++c) {
    float* o = out + c * os;
    _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), acc[c]) : acc[c]);
  }
}

template <bool kQ4>
void matmul_packed(const uint8_t* w, int64_t gs, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                   int64_t n_cols, float* out, int64_t os) {
  constexpr int kCols = 4;           // columns per tile
  constexpr int64_t kMaxBlocks = 256;  // activation summaries per column held at once (8 KiB)
  ActBlock sums[kCols * kMaxBlocks];
  const int64_t nb = n / 32, quant_bytes = nb * (kQ4 ? 4 : 8) * 64;
  const int64_t g0 = r0 / kPackRows, g1 = r1 / kPackRows;
  // Groups per pass: about 256 KiB of weights, reused by every column from L2.
  const int64_t per_pass = n_cols == 1 ? g1 - g0 : std::max<int64_t>(1, (256 << 10) / gs);
  for (int64_t gp = g0; gp < g1; gp += per_pass) {
    const int64_t ge = std::min(g1, gp + per_pass);
    for (int64_t c0 = 0; c0 < n_cols; c0 += kCols) {
      const int cc = static_cast<int>(std::min<int64_t>(kCols, n_cols - c0));
      for (int64_t kb = 0; kb < nb; kb += kMaxBlocks) {
        const int64_t ke = std::min(nb, kb + kMaxBlocks);
        for (int c = 0; c < cc; ++c) summarize<kQ4 ? 8 : 128>(a + (c0 + c) * as, kb, ke, sums + c * kMaxBlocks);
        const uint8_t* ac = a + c0 * as;
        for (int64_t g = gp; g < ge; ++g) {
          const uint8_t* q = w + g * gs;
          float* o = out + c0 * os + g * kPackRows;
          const bool accum = kb > 0;
          switch (cc) {
            case 4: packed_tile<kQ4, 4>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
            case 3: packed_tile<kQ4, 3>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
            case 2: packed_tile<kQ4, 2>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
            default: packed_tile<kQ4, 1>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
          }
        }
      }
    }
  }
}

// ------------------------------------------------------- float weights

// F32 and F16 weights: widened to float in registers, 16 at a time; the tail
// of a row is a masked load (zeros add nothing).
struct F32W {
  static __m512 load(const uint8_t* row, int64_t k) { return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k); }
  static __m512 load(const uint8_t* row, int64_t k, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  }
};
struct F16W {
  static __m512 load(const uint8_t* row, int64_t k) { return cvt_ph(load256(row + 2 * k)); }
  static __m512 load(const uint8_t* row, int64_t k, __mmask16 m) {
    return cvt_ph(_mm256_maskz_loadu_epi16(m, row + 2 * k));
  }
};

inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1); }

// Widens elements [k0, k0 + kl) of cc F16 activation rows (row c at a + c * as)
// into buf, row c at buf + c * kc. The tail is a masked load stored whole, so
// up to 15 zeros may follow a row: the next row overwrites them, and the
// callers' buffers keep that much slack after the last.
inline void widen_f16_rows(const uint8_t* a, int64_t as, int cc, int64_t k0, int64_t kl, float* buf, int64_t kc) {
  for (int c = 0; c < cc; ++c)
    for (int64_t k = 0; k < kl; k += 16)
      _mm512_storeu_ps(buf + c * kc + k, F16W::load(a + c * as, k0 + k, tail_mask(kl - k)));
}

// Elements [k0, k0 + kl) of cc activation rows as floats: F32 rows in place
// (row stride xs), F16 rows widened into buf (row stride kc).
struct FloatRows {
  const float* x;
  int64_t xs;
};
template <bool kActF16>
inline FloatRows float_rows_of(const uint8_t* a, int64_t as, int cc, int64_t k0, int64_t kl, float* buf, int64_t kc) {
  if constexpr (kActF16) {
    widen_f16_rows(a, as, cc, k0, kl, buf, kc);
    return {buf, kc};
  } else {
    return {reinterpret_cast<const float*>(a) + k0, as / static_cast<int64_t>(sizeof(float))};
  }
}

// R rows x C columns over elements [k0, k0 + kl); x holds the columns'
// floats for that range (column c at x + c * xs).
template <class WT, int R, int C>
inline void float_tile(const uint8_t* w, int64_t ws, int64_t k0, int64_t kl, const float* x, int64_t xs, float* out,
                       int64_t os, bool accumulate) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  // Plain loads in the main loop: with masked ones GCC keeps a stack copy of
  // every accumulator, a store per FMA.
  int64_t k = 0;
  for (; k + 16 <= kl; k += 16) {
    __m512 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = _mm512_loadu_ps(x + c * xs + k);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = WT::load(w + r * ws, k0 + k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  if (k < kl) {
    const __mmask16 m = tail_mask(kl - k);
    __m512 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = _mm512_maskz_loadu_ps(m, x + c * xs + k);
    for (int r = 0; r < R; ++r) {
      const __m512 wv = WT::load(w + r * ws, k0 + k, m);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const float s = hsum(acc[r][c]);
      out[c * os + r] = accumulate ? out[c * os + r] + s : s;
    }
}

template <class WT, int R, int C>
inline void float_rows(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t k0, int64_t kl, const float* x,
                       int64_t xs, float* out, int64_t os, bool accumulate) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) float_tile<WT, R, C>(w + r * ws, ws, k0, kl, x, xs, out + r, os, accumulate);
  for (; r < r1; ++r) float_tile<WT, 1, C>(w + r * ws, ws, k0, kl, x, xs, out + r, os, accumulate);
}

template <class WT>
void float_cols(int cc, const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t k0, int64_t kl, const float* x,
                int64_t xs, float* out, int64_t os, bool accumulate) {
  switch (cc) {
    case 5: float_rows<WT, 4, 5>(w, ws, r0, r1, k0, kl, x, xs, out, os, accumulate); break;
    case 4: float_rows<WT, 4, 4>(w, ws, r0, r1, k0, kl, x, xs, out, os, accumulate); break;
    case 3: float_rows<WT, 4, 3>(w, ws, r0, r1, k0, kl, x, xs, out, os, accumulate); break;
    case 2: float_rows<WT, 4, 2>(w, ws, r0, r1, k0, kl, x, xs, out, os, accumulate); break;
    default: float_rows<WT, 8, 1>(w, ws, r0, r1, k0, kl, x, xs, out, os, accumulate); break;
  }
}

// F16 activations are widened once per chunk into a stack buffer; F32 ones
// are read in place.
template <class WT, bool kActF16>
void matmul_float(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                  int64_t n_cols, float* out, int64_t os) {
  // 4 x 5 tiles: 20 accumulators, 5 activation and 1 weight register of 32;
  // a 4 x 6 tile spills.
  constexpr int kCols = 5;
  constexpr int64_t kBuf = 5120;  // 20 KiB of widened activations
  alignas(64) float buf[kBuf];
  const int64_t cols_per_tile = n_cols == 1 ? 1 : kCols;
  const int64_t kc = kActF16 ? std::min<int64_t>(n, (kBuf / cols_per_tile) & ~int64_t(15)) : n;
  const int64_t rows_per_pass = n_cols == 1 ? r1 - r0 : std::max<int64_t>(8, (256 << 10) / std::max<int64_t>(ws, 1));
  for (int64_t rb = r0; rb < r1; rb += rows_per_pass) {
    const int64_t re = std::min(r1, rb + rows_per_pass);
    for (int64_t c0 = 0; c0 < n_cols; c0 += cols_per_tile) {
      const int cc = static_cast<int>(std::min(cols_per_tile, n_cols - c0));
      for (int64_t k0 = 0; k0 < n; k0 += kc) {
        const int64_t kl = std::min(kc, n - k0);
        const auto [x, xs] = float_rows_of<kActF16>(a + c0 * as, as, cc, k0, kl, buf, kc);
        float_cols<WT>(cc, w, ws, rb, re, k0, kl, x, xs, out + c0 * os, os, k0 > 0);
      }
    }
  }
}

// ------------------------------------------------ packed F32/F16 panels
//
// A panel holds, for each element k, the 16 rows' weights at k (packed.h):
// one register is 16 rows, multiplied by one broadcast activation, so each
// lane sums its own row in element order and the results store straight to
// the output. Prefill tiles are 2 panels x 12 columns (24 accumulators).

struct F32Panel {
  static __m512 load(const uint8_t* g, int64_t k) { return _mm512_loadu_ps(reinterpret_cast<const float*>(g) + 16 * k); }
};
struct F16Panel {
  static __m512 load(const uint8_t* g, int64_t k) { return cvt_ph(load256(g + 32 * k)); }
};

// G panels (at w, w + gs, ...) times C columns, elements [k0, k0 + kl); x
// holds the columns' floats for that range (column c at x + c * xs).
template <class P, int G, int C>
inline void panel_tile(const uint8_t* w, int64_t gs, int64_t k0, int64_t kl, const float* x, int64_t xs, float* out,
                       int64_t os, bool accumulate) {
  __m512 acc[G][C];
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) acc[g][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kl; ++k) {
    __m512 wv[G];
    for (int g = 0; g < G; ++g) wv[g] = P::load(w + g * gs, k0 + k);
    for (int c = 0; c < C; ++c) {
      const __m512 xv = _mm512_set1_ps(x[c * xs + k]);
      for (int g = 0; g < G; ++g) acc[g][c] = _mm512_fmadd_ps(wv[g], xv, acc[g][c]);
    }
  }
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) {
      float* o = out + c * os + 16 * g;
      _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), acc[g][c]) : acc[g][c]);
    }
}

// Panels [p0, p1) times C columns: G at a time, then one by one.
template <class P, int G, int C>
inline void panel_rows(const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t k0, int64_t kl, const float* x,
                       int64_t xs, float* out, int64_t os, bool accumulate) {
  int64_t p = p0;
  for (; p + G <= p1; p += G) panel_tile<P, G, C>(w + p * gs, gs, k0, kl, x, xs, out + p * 16, os, accumulate);
  for (; p < p1; ++p) panel_tile<P, 1, C>(w + p * gs, gs, k0, kl, x, xs, out + p * 16, os, accumulate);
}

// Decode: one panel after another, so each thread reads one contiguous
// stream (what the hardware prefetcher follows best; decode is bound by
// memory), with four accumulators over interleaved elements to cover the FMA
// latency.
template <class P>
void panel_gemv(const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t k0, int64_t kl, const float* x,
                float* out, bool accumulate) {
  for (int64_t p = p0; p < p1; ++p) {
    const uint8_t* g = w + p * gs;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t k = 0;
    for (; k + 4 <= kl; k += 4)
      for (int t = 0; t < 4; ++t) acc[t] = _mm512_fmadd_ps(P::load(g, k0 + k + t), _mm512_set1_ps(x[k + t]), acc[t]);
    for (; k < kl; ++k) acc[0] = _mm512_fmadd_ps(P::load(g, k0 + k), _mm512_set1_ps(x[k]), acc[0]);
    const __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    float* o = out + p * 16;
    _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), sum) : sum);
  }
}

template <class P>
void panel_cols(int cc, const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t k0, int64_t kl, const float* x,
                int64_t xs, float* out, int64_t os, bool accumulate) {
  switch (cc) {
    case 12: return panel_rows<P, 2, 12>(w, gs, p0, p1, k0, kl, x, xs, out, os, accumulate);
    case 8: return panel_rows<P, 2, 8>(w, gs, p0, p1, k0, kl, x, xs, out, os, accumulate);
    case 4: return panel_rows<P, 2, 4>(w, gs, p0, p1, k0, kl, x, xs, out, os, accumulate);
    case 2: return panel_rows<P, 4, 2>(w, gs, p0, p1, k0, kl, x, xs, out, os, accumulate);
    default: return panel_gemv<P>(w, gs, p0, p1, k0, kl, x, out, accumulate);
  }
}

template <class P, bool kActF16>
void matmul_panels(const uint8_t* w, int64_t gs, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                   int64_t n_cols, float* out, int64_t os) {
  constexpr int kCols = 12;
  constexpr int64_t kBuf = 6144;  // 24 KiB of widened activations
  alignas(64) float buf[kBuf];
  const int64_t p0 = r0 / kPackRows, p1 = r1 / kPackRows;
  const int64_t cols_per_tile = std::min<int64_t>(kCols, n_cols);
  const int64_t kc = kActF16 ? std::min<int64_t>(n, kBuf / cols_per_tile) : n;
  // Panels per pass: about 256 KiB of weights, reused by every column from L2.
  const int64_t per_pass = n_cols == 1 ? p1 - p0 : std::max<int64_t>(2, (256 << 10) / gs);
  for (int64_t pp = p0; pp < p1; pp += per_pass) {
    const int64_t pe = std::min(p1, pp + per_pass);
    for (int64_t c0 = 0; c0 < n_cols;) {
      const int64_t left = n_cols - c0;
      const int cc = left >= 12 ? 12 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
      for (int64_t k0 = 0; k0 < n; k0 += kc) {
        const int64_t kl = std::min(kc, n - k0);
        const auto [x, xs] = float_rows_of<kActF16>(a + c0 * as, as, cc, k0, kl, buf, kc);
        panel_cols<P>(cc, w, gs, pp, pe, k0, kl, x, xs, out + c0 * os, os, k0 > 0);
      }
      c0 += cc;
    }
  }
}

// BF16: vdpbf16ps multiplies pairs of raw bf16 weights and activations and
// adds both products into a float lane, so nothing is widened.
template <int R, int C>
inline void bf16_tile(const uint8_t* w, int64_t ws, int64_t n, const uint8_t* a, int64_t as, float* out, int64_t os) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n; k += 32) {
    const int64_t left = n - k;
    const __mmask32 m = left >= 32 ? __mmask32(0xffffffff) : __mmask32((1u << left) - 1);
    __m512bh xv[C];
    for (int c = 0; c < C; ++c) xv[c] = (__m512bh)_mm512_maskz_loadu_epi16(m, a + c * as + 2 * k);
    for (int r = 0; r < R; ++r) {
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * ws + 2 * k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], wv, xv[c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[c * os + r] = hsum(acc[r][c]);
}

template <int R, int C>
inline void bf16_rows(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                      float* out, int64_t os) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) bf16_tile<R, C>(w + r * ws, ws, n, a, as, out + r, os);
  for (; r < r1; ++r) bf16_tile<1, C>(w + r * ws, ws, n, a, as, out + r, os);
}

void matmul_bf16(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                 int64_t n_cols, float* out, int64_t os) {
  if (n_cols == 1) return bf16_rows<8, 1>(w, ws, r0, r1, n, a, as, out, os);
  const int64_t rows_per_pass = std::max<int64_t>(8, (256 << 10) / std::max<int64_t>(ws, 1));
  for (int64_t rb = r0; rb < r1; rb += rows_per_pass) {
    const int64_t re = std::min(r1, rb + rows_per_pass);
    int64_t c = 0;
    for (; c + 4 <= n_cols; c += 4) bf16_rows<4, 4>(w, ws, rb, re, n, a + c * as, as, out + c * os, os);
    for (; c < n_cols; ++c) bf16_rows<8, 1>(w, ws, rb, re, n, a + c * as, as, out + c * os, os);
  }
}

template <MatmulFn F>
float vec_dot(const void* w, const void* a, int64_t n) {
  float out = 0;
  F(static_cast<const uint8_t*>(w), 0, 0, 1, n, static_cast<const uint8_t*>(a), 0, 1, &out, 1);
  return out;
}

// ------------------------------------------------------------- row ops

// Float squares widened to double lanes, 8 at a time from a ymm, so no
// extract is needed (the AVX2 version's bottleneck is its shuffle port).
double sum_squares(const float* x, int64_t n, int64_t* done) {
  __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int t = 0; t < 4; ++t) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * t);
      acc[t] = _mm512_add_pd(acc[t], _mm512_maskz_cvtps_pd(0xff, _mm256_mul_ps(v, v)));
    }
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc[0] = _mm512_add_pd(acc[0], _mm512_maskz_cvtps_pd(0xff, _mm256_mul_ps(v, v)));
  }
  *done = i;
  const __m512d s = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
  alignas(64) double lanes[8];
  _mm512_store_pd(lanes, s);
  double t = 0;
  for (double l : lanes) t += l;
  return t;
}

void rms_norm(const float* x, const float* w, float eps, int64_t n, float* out) {
  int64_t i = 0;
  double sum = sum_squares(x, n, &i);
  for (; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  const __m512 vs = _mm512_set1_ps(scale);
  for (i = 0; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), _mm512_loadu_ps(w + i)));
  for (; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

// ------------------------------------------------------------- attention
//
// The AVX2 kernel's structure (see x86_avx2_float.cpp) with 16 lanes: scores
// along positions of the transposed K, each a product then a sum in
// dimension order; V summed in position order, a product then a sum.

template <int G, int V>
inline void score_block(const float* const* q, const float* k, int64_t ks, int64_t j0, int64_t hd, float scale,
                        float* const* s) {
  __m512 acc[G][V];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < V; ++t) acc[g][t] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    const float* kd = k + d * ks + j0;
    __m512 kv[V];
    for (int t = 0; t < V; ++t) kv[t] = _mm512_loadu_ps(kd + 16 * t);
    for (int g = 0; g < G; ++g) {
      const __m512 qd = _mm512_set1_ps(q[g][d]);
      for (int t = 0; t < V; ++t) acc[g][t] = _mm512_add_ps(acc[g][t], _mm512_mul_ps(qd, kv[t]));
    }
  }
  const __m512 vs = _mm512_set1_ps(scale);
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < V; ++t) _mm512_storeu_ps(s[g] + j0 + 16 * t, _mm512_mul_ps(acc[g][t], vs));
}

// The last n % 16 positions: the same sums with masked loads and stores
// (lanes past the end load zeros and are not stored).
template <int G>
inline void score_tail(const float* const* q, const float* k, int64_t ks, int64_t j0, int64_t left, int64_t hd,
                       float scale, float* const* s) {
  const __mmask16 m = static_cast<__mmask16>((1u << left) - 1);
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    const __m512 kv = _mm512_maskz_loadu_ps(m, k + d * ks + j0);
    for (int g = 0; g < G; ++g) acc[g] = _mm512_add_ps(acc[g], _mm512_mul_ps(_mm512_set1_ps(q[g][d]), kv));
  }
  const __m512 vs = _mm512_set1_ps(scale);
  for (int g = 0; g < G; ++g) _mm512_mask_storeu_ps(s[g] + j0, m, _mm512_mul_ps(acc[g], vs));
}

template <int G>
void attend_scores(const float* const* q, const float* k, int64_t ks, int64_t n, int64_t hd, float scale,
                   float* const* s) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) score_block<G, 4>(q, k, ks, j, hd, scale, s);
  for (; j + 16 <= n; j += 16) score_block<G, 1>(q, k, ks, j, hd, scale, s);
  if (j < n) score_tail<G>(q, k, ks, j, n - j, hd, scale, s);
}

// out[g][d0, d0 + 16 V) = sum_j p[g][j] v_j over those dimensions, in one
// pass over the positions: each element is a product then a sum, in position
// order, whatever V is.
template <int G, int V>
void values_pass(const float* const* p, const float* v, int64_t vs, int64_t n, int64_t d0, float* const* out) {
  __m512 acc[G][V];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < V; ++t) acc[g][t] = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; ++j) {
    const float* vj = v + j * vs + d0;
    __m512 vv[V];
    for (int t = 0; t < V; ++t) vv[t] = _mm512_loadu_ps(vj + 16 * t);
    for (int g = 0; g < G; ++g) {
      const __m512 pj = _mm512_set1_ps(p[g][j]);
      for (int t = 0; t < V; ++t) acc[g][t] = _mm512_add_ps(acc[g][t], _mm512_mul_ps(pj, vv[t]));
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < V; ++t) _mm512_storeu_ps(out[g] + d0 + 16 * t, acc[g][t]);
}

// 64 dimensions per pass, and the last 16-48 in one more pass (a head of 48
// took three passes over the positions with G chains each).
template <int G>
void attend_values(const float* const* p, const float* v, int64_t vs, int64_t n, int64_t hd, float* const* out) {
  int64_t d = 0;
  for (; d + 64 <= hd; d += 64) values_pass<G, 4>(p, v, vs, n, d, out);
  switch ((hd - d) / 16) {
    case 3: values_pass<G, 3>(p, v, vs, n, d, out); break;
    case 2: values_pass<G, 2>(p, v, vs, n, d, out); break;
    case 1: values_pass<G, 1>(p, v, vs, n, d, out); break;
    default: break;
  }
}

void attend(const AttendArgs& a) {
  if (a.head_dim % 16 != 0 || a.n_pos == 0) return avx2::attend(a);
  // Heads in groups of up to four: 4 x 4 score accumulators and 4 K vectors.
  for (int64_t h = 0; h < a.n_q; h += 4) {
    const float* q[4];
    float* sc[4];
    float* out[4];
    const int g = static_cast<int>(std::min<int64_t>(4, a.n_q - h));
    for (int t = 0; t < g; ++t) {
      q[t] = a.q + (h + t) * a.q_stride;
      sc[t] = a.scores + (h + t) * a.n_pos;
      out[t] = a.out + (h + t) * a.out_stride;
    }
    switch (g) {
      case 4: attend_scores<4>(q, a.k, a.k_stride, a.n_pos, a.head_dim, a.scale, sc); break;
      case 3: attend_scores<3>(q, a.k, a.k_stride, a.n_pos, a.head_dim, a.scale, sc); break;
      case 2: attend_scores<2>(q, a.k, a.k_stride, a.n_pos, a.head_dim, a.scale, sc); break;
      default: attend_scores<1>(q, a.k, a.k_stride, a.n_pos, a.head_dim, a.scale, sc); break;
    }
    for (int t = 0; t < g; ++t) {
      float* s = sc[t];
      const float inv = static_cast<float>(1.0 / avx2::softmax_exp(s, a.n_pos));
      const __m512 vinv = _mm512_set1_ps(inv);
      int64_t j = 0;
      for (; j + 16 <= a.n_pos; j += 16) _mm512_storeu_ps(s + j, _mm512_mul_ps(_mm512_loadu_ps(s + j), vinv));
      for (; j < a.n_pos; ++j) s[j] *= inv;
    }
    const float* const* p = sc;
    switch (g) {
      case 4: attend_values<4>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
      case 3: attend_values<3>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
      case 2: attend_values<2>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
      default: attend_values<1>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
    }
  }
}

double fma_peak_probe(int64_t n) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = _mm512_fmadd_ps(acc[k], m, c);
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = hsum(s);
  (void)sink;
  return 2.0 * 16 * 12 * static_cast<double>(n);
}

}  // namespace

void kernels_init_avx512(Kernels& k) {
  k.isa = "avx512";
  k.rms_norm = rms_norm;
  k.attend = attend;
  k.matmul_packed[dtype_index(DType::Q4_0)] = matmul_packed<true>;
  k.matmul_packed[dtype_index(DType::Q8_0)] = matmul_packed<false>;
  k.pack_weights[dtype_index(DType::Q4_0)] = true;
  k.pack_weights[dtype_index(DType::Q8_0)] = true;
  k.matmul_packed[dtype_index(DType::F32)] = matmul_panels<F32Panel, false>;
  k.matmul_packed[dtype_index(DType::F16)] = matmul_panels<F16Panel, true>;
  k.pack_weights[dtype_index(DType::F32)] = true;
  k.pack_weights[dtype_index(DType::F16)] = true;
  k.matmul[dtype_index(DType::F32)] = matmul_float<F32W, false>;
  k.matmul[dtype_index(DType::F16)] = matmul_float<F16W, true>;
  k.matmul[dtype_index(DType::BF16)] = matmul_bf16;
  k.vec_dot[dtype_index(DType::F32)] = vec_dot<matmul_float<F32W, false>>;
  k.vec_dot[dtype_index(DType::F16)] = vec_dot<matmul_float<F16W, true>>;
  k.vec_dot[dtype_index(DType::BF16)] = vec_dot<matmul_bf16>;
  k.fma_peak_probe = fma_peak_probe;
}

}  // namespace quarrel::cpu

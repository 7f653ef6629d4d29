// AVX2 float kernels: F32/F16/BF16 weight matmuls, the F16/BF16 activation
// converters, and the row operations of the forward pass (norms, RoPE,
// SwiGLU, attention, MicroLoRA).
//
// Everything that feeds a rounding follows the scalar references (and so
// llama.cpp's AVX2 build) operation for operation: the float matmuls' lane
// order, exp_poly, the RoPE contraction and ggml's attention order.
#include <algorithm>
#include <cmath>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/x86_avx2_common.h"
#include "tensor/ref_math.h"

namespace quarrel::cpu::avx2 {

// Shared with the AVX-512 table (x86_avx512.cpp).
void attend(const AttendArgs& a);
// The F32/F16 kernels on packed panels (x86_avx2_panels.cpp).
void add_panel_kernels(Kernels& k);

namespace {

using tensor::DType;

// ----------------------------------------------------- float weight types
//
// A weight and an activation row are read the same way (F16 and BF16
// activations arrive rounded to the weight type, as ggml rounds them).

struct F32W {
  static __m256 load8(const uint8_t* row, int64_t k) { return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + k); }
  static float load1(const uint8_t* row, int64_t k) { return reinterpret_cast<const float*>(row)[k]; }
};

struct F16W {
  static __m256 load8(const uint8_t* row, int64_t k) { return _mm256_cvtph_ps(load128(row + 2 * k)); }
  static float load1(const uint8_t* row, int64_t k) { return f16_to_f32(row + 2 * k); }
};

struct BF16W {
  static __m256 load8(const uint8_t* row, int64_t k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(row + 2 * k)), 16));
  }
  static float load1(const uint8_t* row, int64_t k) {
    uint16_t h;
    std::memcpy(&h, row + 2 * k, 2);
    const uint32_t bits = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
};

// R weight rows x C activation columns (column c at a + c * as) over all n
// elements, in the reference's order (tensor::vec_dot_f32 and siblings): one
// eight-lane multiply-add chain per output, then its horizontal sum, then the
// last n % 8 elements one by one. The whole row in one pass: splitting it
// would change the order.
template <class WT, int R, int C>
inline void float_tile(const uint8_t* w, int64_t ws, int64_t n, const uint8_t* a, int64_t as, float* out, int64_t os) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = WT::load8(a + c * as, k);
    for (int r = 0; r < R; ++r) {
      const __m256 wv = WT::load8(w + r * ws, k);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float s = hsum(acc[r][c]);
      for (int64_t t = k; t < n; ++t) s += WT::load1(w + r * ws, t) * WT::load1(a + c * as, t);
      out[c * os + r] = s;
    }
}

template <class WT, int R, int C>
inline void float_tile_rows(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a,
                            int64_t as, float* out, int64_t os) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) float_tile<WT, R, C>(w + r * ws, ws, n, a, as, out + r, os);
  for (; r < r1; ++r) float_tile<WT, 1, C>(w + r * ws, ws, n, a, as, out + r, os);
}

template <class WT>
void matmul_float(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                  int64_t n_cols, float* out, int64_t os) {
  // Decode: eight rows for the one column, eight independent FMA chains.
  if (n_cols == 1) return float_tile_rows<WT, 8, 1>(w, ws, r0, r1, n, a, as, out, os);
  // Rows per pass: about 256 KiB of weights, reused by every column from L2.
  const int64_t rows_per_pass = std::max<int64_t>(12, (256 << 10) / std::max<int64_t>(ws, 1));
  for (int64_t rb = r0; rb < r1; rb += rows_per_pass) {
    const int64_t re = std::min(r1, rb + rows_per_pass);
    int64_t c = 0;
    for (; c + 4 <= n_cols; c += 4) float_tile_rows<WT, 3, 4>(w, ws, rb, re, n, a + c * as, as, out + c * os, os);
    for (; c < n_cols; ++c) float_tile_rows<WT, 8, 1>(w, ws, rb, re, n, a + c * as, as, out + c * os, os);
  }
}

template <class WT>
float vec_dot_float(const void* w, const void* a, int64_t n) {
  float out = 0;
  matmul_float<WT>(static_cast<const uint8_t*>(w), 0, 0, 1, n, static_cast<const uint8_t*>(a), 0, 1, &out, 1);
  return out;
}

// ------------------------------------------------------------ converters

void quantize_f16(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<uint8_t*>(vy);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 2 * i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) {
    const uint16_t h = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
    std::memcpy(y + 2 * i, &h, 2);
  }
}

// ggml's BF16 rounding: nearest even on the dropped half, NaNs kept quiet.
inline __m128i f32_to_bf16_8(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  const __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(64));
  r = _mm256_blendv_epi8(r, qnan, nan);
  // Pack the eight 32-bit lanes' low halves to 16 bits (values fit in 16 bits).
  const __m256i p = _mm256_packus_epi32(r, r);
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
}

void quantize_bf16(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<uint8_t*>(vy);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + 2 * i), f32_to_bf16_8(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float tmp[8] = {};
    alignas(16) uint16_t out[8];
    std::copy(x + i, x + n, tmp);
    _mm_store_si128(reinterpret_cast<__m128i*>(out), f32_to_bf16_8(_mm256_load_ps(tmp)));
    std::memcpy(y + 2 * i, out, 2 * (n - i));
  }
}

// --------------------------------------------------------- vector math

// Eight accumulators: two FMAs per cycle with a four-cycle latency.
float dot_f32(const float* x, const float* y, int64_t n) {
  __m256 acc[8];
  for (auto& a : acc) a = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 8; ++k)
      acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * k), _mm256_loadu_ps(y + i + 8 * k), acc[k]);
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc[0]);
  for (int k = 1; k < 8; ++k) acc[0] = _mm256_add_ps(acc[0], acc[k]);
  float s = hsum(acc[0]);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

void axpy_f32(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

void add_f32(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

// Sum of float lanes into double lanes: ggml sums norms' terms in double.
inline __m256d add_to_double(__m256d acc, __m256 v) {
  acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

inline double hsum_pd(__m256d v) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

// Sum of squares (float products, double sum) with four independent double
// accumulators: one chain would wait on the add latency every 4 elements.
// The squares are taken four at a time from 16-byte loads, each converted
// as it is: splitting 8-float products costs an extract per conversion,
// which on Zen 3 competes with the conversions themselves (4096 elements:
// 514-560 ns against 464 alone, docs/PERF.md). Same lanes, same order.
double sum_squares(const float* x, int64_t n, int64_t* done) {
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int c = 0; c < 4; ++c) {
      const __m128 v = _mm_loadu_ps(x + i + 4 * c);
      acc[c] = _mm256_add_pd(acc[c], _mm256_cvtps_pd(_mm_mul_ps(v, v)));
    }
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc[0] = add_to_double(acc[0], _mm256_mul_ps(v, v));
  }
  *done = i;
  return hsum_pd(_mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
}

}  // namespace

// True when a store to `out` a little above `in` (modulo 4 KiB) would be
// followed by loads whose low twelve address bits match it: the core then
// takes the loads as depending on the store (4K aliasing) and waits for it.
// Walking such rows backwards keeps the stores behind the loads.
bool store_runs_ahead(const float* in, const float* out) {
  const auto d = (reinterpret_cast<uintptr_t>(out) - reinterpret_cast<uintptr_t>(in)) & 4095;
  return d != 0 && d < 2048;
}

namespace {

void rms_norm(const float* x, const float* w, float eps, int64_t n, float* out) {
  int64_t i = 0;
  double sum = sum_squares(x, n, &i);
  for (; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  const __m256 vs = _mm256_set1_ps(scale);
  const auto at = [&](int64_t j) {
    _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), vs), _mm256_loadu_ps(w + j)));
  };
  const int64_t body = n & ~int64_t{7};
  for (i = body; i < n; ++i) out[i] = (x[i] * scale) * w[i];
  if (store_runs_ahead(x, out) || store_runs_ahead(w, out))
    for (i = body - 8; i >= 0; i -= 8) at(i);
  else
    for (i = 0; i < body; i += 8) at(i);
}

void layer_norm(const float* x, const float* w, const float* b, float eps, int64_t n, float* out) {
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = add_to_double(acc, _mm256_loadu_ps(x + i));
  double sum = hsum_pd(acc);
  for (; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / n);
  const __m256 vm = _mm256_set1_ps(mean);
  acc = _mm256_setzero_pd();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
    acc = add_to_double(acc, _mm256_mul_ps(d, d));
  }
  double var = hsum_pd(acc);
  for (; i < n; ++i) var += static_cast<double>((x[i] - mean) * (x[i] - mean));
  const float scale = 1.0f / std::sqrt(static_cast<float>(var / n) + eps);
  const __m256 vs = _mm256_set1_ps(scale);
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 y = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vs), _mm256_loadu_ps(w + i));
    if (b) y = _mm256_add_ps(y, _mm256_loadu_ps(b + i));
    _mm256_storeu_ps(out + i, y);
  }
  for (; i < n; ++i) {
    const float y = ((x[i] - mean) * scale) * w[i];
    out[i] = b ? y + b[i] : y;
  }
}

// Products then one add or subtract, as the reference rounds them.
// tensor::rope_pair on every pair: x0 c - x1 s and x0 s + x1 c, each with
// its first product fused into the add.
void rope_apply(float* x, const float* cos_t, const float* sin_t, int64_t half, bool neox) {
  int64_t i = 0;
  if (neox) {
    for (; i + 8 <= half; i += 8) {
      const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + half);
      const __m256 c = _mm256_loadu_ps(cos_t + i), s = _mm256_loadu_ps(sin_t + i);
      _mm256_storeu_ps(x + i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
      _mm256_storeu_ps(x + i + half, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
    }
    for (; i < half; ++i) tensor::rope_pair(x[i], x[i + half], cos_t[i], sin_t[i], &x[i], &x[i + half]);
    return;
  }
  // Four adjacent pairs per vector. Even lanes: v c - (swapped s); odd
  // lanes: swapped s + (v c); fmaddsub subtracts in even lanes, adds in odd.
  const __m256i dup = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  for (; i + 4 <= half; i += 4) {
    const __m256 v = _mm256_loadu_ps(x + 2 * i);
    const __m256 c = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(cos_t + i)), dup);
    const __m256 s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sin_t + i)), dup);
    const __m256 swapped = _mm256_permute_ps(v, 0xb1);
    const __m256 vc = _mm256_mul_ps(v, c), ss = _mm256_mul_ps(swapped, s);
    const __m256 a = _mm256_blend_ps(v, swapped, 0xaa), b = _mm256_blend_ps(c, s, 0xaa);
    _mm256_storeu_ps(x + 2 * i, _mm256_fmaddsub_ps(a, b, _mm256_blend_ps(ss, vc, 0xaa)));
  }
  for (; i < half; ++i) tensor::rope_pair(x[2 * i], x[2 * i + 1], cos_t[i], sin_t[i], &x[2 * i], &x[2 * i + 1]);
}

void swiglu(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// ------------------------------------------------------------- attention
//
// The scalar reference's order (attend_ref in scalar_float.cpp, ggml's
// attention without flash attention), with eight positions or eight output
// dimensions in the lanes.

// Lanes 0..left-1 set, for the last positions of a row.
inline __m256i lanes_below(int64_t left) {
  alignas(32) static constexpr int32_t kLanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLanes + 8 - std::min<int64_t>(left, 8)));
}

// GCC leaves these lambdas out of line otherwise, and their register arrays
// then go through memory.
#define QUARREL_INLINE __attribute__((always_inline))

// Scores of one head against B blocks of eight positions from j0 of a
// transposed K, one position per lane: score_dot's chains and sums (chain c
// of lane l adds dimensions 32 i + 8 c + l). The last block is read through
// mask m (lanes past the end load zeros). Each broadcast query element
// serves the B blocks. Only a kMasked call reads through the mask.
template <int B, bool kMasked>
inline void score_blocks(const float* q, const float* k, int64_t ks, int64_t j0, __m256i m, int64_t hd, __m256* out) {
  const int64_t n32 = hd & ~int64_t(31);
  auto load = [&](int64_t d, int b) QUARREL_INLINE {
    const float* p = k + d * ks + j0 + 8 * b;
    return kMasked && b == B - 1 ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
  };
  auto chain = [&](int64_t first, __m256* acc) QUARREL_INLINE {
    for (int b = 0; b < B; ++b) acc[b] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n32; i += 32) {
      const __m256 qv = _mm256_broadcast_ss(q + i + first);
      for (int b = 0; b < B; ++b) acc[b] = _mm256_fmadd_ps(load(i + first, b), qv, acc[b]);
    }
  };
  auto lane = [&](int l, __m256* r) QUARREL_INLINE {
    __m256 x[B], y[B];
    chain(l, x);
    chain(16 + l, y);
    for (int b = 0; b < B; ++b) x[b] = _mm256_add_ps(x[b], y[b]);
    chain(8 + l, r);
    chain(24 + l, y);
    for (int b = 0; b < B; ++b) r[b] = _mm256_add_ps(x[b], _mm256_add_ps(r[b], y[b]));
  };
  auto half = [&](int l, __m256* r) QUARREL_INLINE {
    __m256 x[B];
    lane(l, r);
    lane(l + 4, x);
    for (int b = 0; b < B; ++b) r[b] = _mm256_add_ps(r[b], x[b]);
  };
  __m256 u[B], v[B];
  half(0, out);
  half(1, u);
  for (int b = 0; b < B; ++b) out[b] = _mm256_add_ps(out[b], u[b]);
  half(2, u);
  half(3, v);
  for (int b = 0; b < B; ++b) out[b] = _mm256_add_ps(out[b], _mm256_add_ps(u[b], v[b]));
  // The rest one by one: the products first, off the adds' chain.
  for (int64_t d = n32; d < hd; d += 8) {
    __m256 pr[8][B];
    const int64_t nd = std::min<int64_t>(8, hd - d);
    for (int64_t e = 0; e < nd; ++e) {
      const __m256 qv = _mm256_broadcast_ss(q + d + e);
      for (int b = 0; b < B; ++b) pr[e][b] = _mm256_mul_ps(load(d + e, b), qv);
    }
    for (int64_t e = 0; e < nd; ++e)
      for (int b = 0; b < B; ++b) out[b] = _mm256_add_ps(out[b], pr[e][b]);
  }
}

// Probability-weighted sums of V for G heads (probabilities p[g]) over
// dimensions [d0, d0 + 8 D): a dimension in each lane, and eight chains by
// position mod 8, added as a horizontal sum adds lanes. One chain at a time
// over every dimension and head of the pass (G x D registers), so each V row
// is read once per pass, whole; the chains wait in `chains`
// (8 x G x 8 D floats) for the final sum.
template <int G, int D>
inline void values_pass(const float* const* p, const float* v, int64_t vs, int64_t n, int64_t d0, float* chains,
                        float* const* out) {
  for (int l = 0; l < 8; ++l) {
    __m256 acc[G][D];
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < D; ++t) acc[g][t] = _mm256_setzero_ps();
    for (int64_t j = l; j < n; j += 8) {
      const float* row = v + j * vs + d0;
      // Rows 8 apart are often 4 KiB apart, where the hardware prefetchers
      // stop: fetch four rows ahead.
      for (int t = 0; t < D; t += 2) _mm_prefetch(reinterpret_cast<const char*>(row + 32 * vs + 8 * t), _MM_HINT_T0);
      __m256 r[D];
      for (int t = 0; t < D; ++t) r[t] = _mm256_loadu_ps(row + 8 * t);
      for (int g = 0; g < G; ++g) {
        const __m256 pj = _mm256_broadcast_ss(p[g] + j);
        for (int t = 0; t < D; ++t) acc[g][t] = _mm256_fmadd_ps(r[t], pj, acc[g][t]);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < D; ++t) _mm256_storeu_ps(chains + ((l * G + g) * D + t) * 8, acc[g][t]);
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < D; ++t) {
      __m256 c[8];
      for (int l = 0; l < 8; ++l) c[l] = _mm256_loadu_ps(chains + ((l * G + g) * D + t) * 8);
      _mm256_storeu_ps(out[g] + d0 + 8 * t, add_chains(c));
    }
}

// All of a head's dimensions for G heads (1 to 4): 8 / G registers per head
// per pass, then two, then one.
template <int G>
void values(const float* const* p, const float* v, int64_t vs, int64_t n, int64_t hd, float* const* out) {
  constexpr int D = 8 / G;
  alignas(32) float chains[8 * 8 * 8];
  int64_t d = 0;
  for (; d + 8 * D <= hd; d += 8 * D) values_pass<G, D>(p, v, vs, n, d, chains, out);
  for (; d + 16 <= hd; d += 16) values_pass<G, 2>(p, v, vs, n, d, chains, out);
  for (; d < hd; d += 8) values_pass<G, 1>(p, v, vs, n, d, chains, out);
}

}  // namespace

void attend(const AttendArgs& a) {
  if (a.head_dim % 8 != 0 || a.n_pos == 0) {
    // Odd head sizes are rare enough to leave to the reference.
    kernels_scalar().attend(a);
    return;
  }
  const __m256 vscale = _mm256_set1_ps(a.scale);
  for (int64_t h = 0; h < a.n_q; ++h) {
    const float* q = a.q + h * a.q_stride;
    float* s = a.scores + h * a.n_pos;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    // Two blocks of eight positions at a time, then the last one or two
    // (the final block through a mask).
    const __m256i all = _mm256_set1_epi32(-1);
    int64_t j = 0;
    __m256 sc[2];
    for (; j + 24 <= a.n_pos; j += 16) {
      score_blocks<2, false>(q, a.k, a.k_stride, j, all, a.head_dim, sc);
      for (int b = 0; b < 2; ++b) {
        sc[b] = _mm256_mul_ps(sc[b], vscale);
        _mm256_storeu_ps(s + j + 8 * b, sc[b]);
        vmax = _mm256_max_ps(vmax, sc[b]);
      }
    }
    for (; j < a.n_pos; j += 8) {
      const __m256i m = lanes_below(a.n_pos - j);
      score_blocks<1, true>(q, a.k, a.k_stride, j, m, a.head_dim, sc);
      sc[0] = _mm256_mul_ps(sc[0], vscale);
      _mm256_maskstore_ps(s + j, m, sc[0]);
      vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), sc[0], _mm256_castsi256_ps(m)));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const __m256 vm = _mm256_set1_ps(_mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4))));
    // exp in groups of eight, each group's sum added in double (lanes past
    // the end are exp(-inf) = 0, as in ggml's padded row). Whole groups use
    // plain loads and stores: a masked store is microcoded on some cores
    // (Zen 3 among them); only the last, partial group goes through a mask.
    const int64_t whole = a.n_pos & ~int64_t(7);
    double sum = 0;
    for (int64_t i = 0; i < whole; i += 8) {
      const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + i), vm));
      _mm256_storeu_ps(s + i, e);
      sum += hsum(e);
    }
    const __m256i tail = lanes_below(a.n_pos - whole);
    if (whole < a.n_pos) {
      const __m256 x = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_maskload_ps(s + whole, tail),
                                        _mm256_castsi256_ps(tail));
      const __m256 e = exp_ps(_mm256_sub_ps(x, vm));
      _mm256_maskstore_ps(s + whole, tail, e);
      sum += hsum(e);
    }
    const __m256 vinv = _mm256_set1_ps(static_cast<float>(1.0 / sum));
    for (int64_t i = 0; i < whole; i += 8) _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_loadu_ps(s + i), vinv));
    if (whole < a.n_pos)
      _mm256_maskstore_ps(s + whole, tail, _mm256_mul_ps(_mm256_maskload_ps(s + whole, tail), vinv));
  }
  // V for the heads together, four at a time: each row read once per pass.
  for (int64_t h = 0; h < a.n_q;) {
    const float* p[4];
    float* out[4];
    const int64_t g = std::min<int64_t>(4, a.n_q - h);
    for (int64_t t = 0; t < g; ++t) {
      p[t] = a.scores + (h + t) * a.n_pos;
      out[t] = a.out + (h + t) * a.out_stride;
    }
    switch (g) {
      case 4: values<4>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
      case 3: values<3>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
      case 2: values<2>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
      default: values<1>(p, a.v, a.v_stride, a.n_pos, a.head_dim, out); break;
    }
    h += g;
  }
}

namespace {

// ------------------------------------------------------------- MicroLoRA

// dots[r] = rows[r] . x for R rows in one pass over x, two accumulators per
// row so the FMA latency is covered.
template <int R>
void multi_dot(const float* const* rows, const float* x, int64_t n, float* dots) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[r] + i), x0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(rows[r] + i + 8), x1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    dots[r] = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
    for (int64_t t = i; t < n; ++t) dots[r] += rows[r][t] * x[t];
  }
}

// y += sum_r c[r] * rows[r] in one pass over y.
template <int R>
void multi_axpy(const float* c, const float* const* rows, float* y, int64_t n) {
  __m256 vc[R];
  for (int r = 0; r < R; ++r) vc[r] = _mm256_set1_ps(c[r]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(y + i);
    for (int r = 0; r < R; ++r) v = _mm256_fmadd_ps(vc[r], _mm256_loadu_ps(rows[r] + i), v);
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; ++i)
    for (int r = 0; r < R; ++r) y[i] += c[r] * rows[r][i];
}

// MicroLoRA ranks are 1 or 2 (up to 4 here); the rank's rows are read
// together so that x, y and g each pass through the cache once.
template <int R>
void lora_forward_r(const LoraArgs& l, const float* x, float* y) {
  const float* a[R];
  const float* b[R];
  float t[R];
  for (int r = 0; r < R; ++r) {
    a[r] = l.a + r * l.d_in;
    b[r] = l.b + r * l.d_out;
  }
  multi_dot<R>(a, x, l.d_in, t);
  for (int r = 0; r < R; ++r) t[r] *= l.scale;
  multi_axpy<R>(t, b, y, l.d_out);
}

template <int R>
void lora_grad_r(const LoraArgs& l, const float* x, const float* g, float* da, float* db) {
  const float* a[R];
  const float* b[R];
  float u[R], v[R];
  for (int r = 0; r < R; ++r) {
    a[r] = l.a + r * l.d_in;
    b[r] = l.b + r * l.d_out;
  }
  multi_dot<R>(a, x, l.d_in, u);  // A x
  multi_dot<R>(b, g, l.d_out, v);  // B^T g
  for (int r = 0; r < R; ++r) {
    u[r] *= l.scale;
    v[r] *= l.scale;
    axpy_f32(v[r], x, da + r * l.d_in, l.d_in);
    axpy_f32(u[r], g, db + r * l.d_out, l.d_out);
  }
}

void lora_forward(const LoraArgs& l, const float* x, float* y) {
  switch (l.rank) {
    case 1: return lora_forward_r<1>(l, x, y);
    case 2: return lora_forward_r<2>(l, x, y);
    case 3: return lora_forward_r<3>(l, x, y);
    case 4: return lora_forward_r<4>(l, x, y);
    default: return kernels_scalar().lora_forward(l, x, y);
  }
}

void lora_grad(const LoraArgs& l, const float* x, const float* g, float* da, float* db) {
  switch (l.rank) {
    case 1: return lora_grad_r<1>(l, x, g, da, db);
    case 2: return lora_grad_r<2>(l, x, g, da, db);
    case 3: return lora_grad_r<3>(l, x, g, da, db);
    case 4: return lora_grad_r<4>(l, x, g, da, db);
    default: return kernels_scalar().lora_grad(l, x, g, da, db);
  }
}

// Twelve independent FMA chains: enough to cover a 4-cycle latency on two ports.
double fma_peak_probe(int64_t n) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < n; ++i)
    for (int k = 0; k < 12; ++k) acc[k] = _mm256_fmadd_ps(acc[k], m, a);
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  volatile float sink = hsum(s);
  (void)sink;
  return 2.0 * 8 * 12 * static_cast<double>(n);
}

}  // namespace

void add_float_kernels(Kernels& k) {
  k.vec_dot[dtype_index(DType::F32)] = vec_dot_float<F32W>;
  k.vec_dot[dtype_index(DType::F16)] = vec_dot_float<F16W>;
  k.vec_dot[dtype_index(DType::BF16)] = vec_dot_float<BF16W>;
  k.matmul[dtype_index(DType::F32)] = matmul_float<F32W>;
  k.matmul[dtype_index(DType::F16)] = matmul_float<F16W>;
  k.matmul[dtype_index(DType::BF16)] = matmul_float<BF16W>;
  k.quantize[dtype_index(DType::F16)] = quantize_f16;
  k.quantize[dtype_index(DType::BF16)] = quantize_bf16;
  k.dot_f32 = dot_f32;
  k.axpy_f32 = axpy_f32;
  k.add_f32 = add_f32;
  k.rms_norm = rms_norm;
  k.layer_norm = layer_norm;
  k.rope_apply = rope_apply;
  k.swiglu = swiglu;
  k.attend = attend;
  k.lora_forward = lora_forward;
  k.lora_grad = lora_grad;
  k.fma_peak_probe = fma_peak_probe;
  add_panel_kernels(k);
}

}  // namespace quarrel::cpu::avx2

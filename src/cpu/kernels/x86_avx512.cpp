// AVX-512 kernels (F, BW, VL, DQ, VNNI, BF16), used only when the CPU has all
// of them. The table starts from the AVX2 one and overrides the hot paths:
//   - Q4_0/Q8_0 on packed weights (packed.h): one vpdpbusd multiplies 16
//     rows' quants by four broadcast activation bytes, each lane a row;
//   - F32/F16 on packed panels, 16 rows a register, summed in the reference
//     order (the other float kernels, BF16 and attention are the AVX2 ones:
//     they follow the reference order and run near the memory's speed).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/packed.h"
#include "cpu/kernels/x86_panel_order.h"
#include "tensor/blocks.h"

namespace quarrel::cpu {

namespace avx2 {
// x86_avx2_float.cpp: whether a row op should walk its row backwards (4K aliasing).
bool store_runs_ahead(const float* in, const float* out);
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

// Eight chains (one register each, 16 rows) added as an x86 horizontal sum
// adds eight lanes: halves, then (0 + 2) + (1 + 3).
inline __m512 add_chains(const __m512* c) {
  const __m512 t0 = _mm512_add_ps(c[4], c[0]), t1 = _mm512_add_ps(c[5], c[1]);
  const __m512 t2 = _mm512_add_ps(c[6], c[2]), t3 = _mm512_add_ps(c[7], c[3]);
  return _mm512_add_ps(_mm512_add_ps(t0, t2), _mm512_add_ps(t1, t3));
}

// ---------------------------------------------------- packed Q4_0 / Q8_0

// Per activation block: its scale, and the offset's share of the integer dot
// product, offset * sum(quants), for the whole block and for each run of
// four quants: vpdpbusd wants unsigned weights, so Q4_0 keeps its nibbles
// 0..15 (offset 8) and Q8_0 is flipped to w + 128.
struct ActBlock {
  float d;
  int32_t corr;
  int32_t neg_quad_corr[8];  // minus each run of four's share
};

template <int kOffset>
void summarize(const uint8_t* a, int64_t b0, int64_t b1, ActBlock* out) {
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = a + b * sizeof(tensor::BlockQ8_0);
    uint16_t h;
    std::memcpy(&h, blk, 2);
    const __m256i s = _mm256_mullo_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, load256(blk + 2)),
                                         _mm256_set1_epi32(kOffset));
    ActBlock& o = out[b - b0];
    o.d = _cvtsh_ss(h);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.neg_quad_corr), _mm256_sub_epi32(_mm256_setzero_si256(), s));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    o.corr = _mm_cvtsi128_si32(t);
  }
}

// Weight register j of a block holds quants 4j..4j+3 of each of 16 rows
// (for Q4_0: low nibbles of bytes 4j.. for j < 4, high nibbles after), so it
// pairs with activation bytes 4j..4j+3 in both formats; Q8_0's are loaded
// one at a time (packed_tile_q8), Q4_0's all at once here.
inline void load_q4_block(const uint8_t* q, __m512i* w) {
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  for (int k = 0; k < 4; ++k) {
    const __m512i x = load512(q + 64 * k);
    w[k] = _mm512_and_si512(x, m4);
    w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(x, 4), m4);
  }
}

// Q4_0: one group of 16 rows times C activation columns over blocks
// [b0, b1), in the order of llama.cpp's repacked Q4_0 kernels (the AVX2
// table's): per row one chain of fma(block's integer sum, dw * da).
template <int C>
inline void packed_tile_q4(const uint8_t* quants, const uint8_t* scales, int64_t b0, int64_t b1, const uint8_t* a,
                           int64_t as, const ActBlock* sums, int64_t sums_stride, float* out, int64_t os,
                           bool accumulate) {
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t b = b0; b < b1; ++b) {
    __m512i w[8];
    load_q4_block(quants + b * 4 * 64, w);
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

// Q8_0, in the order of ggml's AVX2 Q8_0 kernels (the AVX2 table's): per row
// eight chains, chain j multiply-adding dw * da times the integer sum of
// quants 4j..4j+3 of each block, then the chains' horizontal sum.
template <int C>
inline void packed_tile_q8(const uint8_t* quants, const uint8_t* scales, int64_t b0, int64_t b1, const uint8_t* a,
                           int64_t as, const ActBlock* sums, int64_t sums_stride, float* out, int64_t os,
                           bool accumulate) {
  __m512 acc[C][8];
  for (int c = 0; c < C; ++c)
    for (int j = 0; j < 8; ++j) acc[c][j] = _mm512_setzero_ps();
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* q = quants + b * 8 * 64;
    for (int t = 0; t < 8; ++t) _mm_prefetch(reinterpret_cast<const char*>(q + 4 * 8 * 64 + 64 * t), _MM_HINT_T0);
    const __m512 dw = cvt_ph(load256(scales + b * 32));
    __m512 d[C];
    for (int c = 0; c < C; ++c) d[c] = _mm512_mul_ps(dw, _mm512_set1_ps(sums[c * sums_stride + (b - b0)].d));
    // One weight register at a time, so that C x 8 accumulators fit.
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int j = 0; j < 8; ++j) {
      const __m512i w = _mm512_xor_si512(load512(q + 64 * j), flip);
      for (int c = 0; c < C; ++c) {
        const uint8_t* ab = a + c * as + b * sizeof(tensor::BlockQ8_0) + 2;
        const ActBlock& s = sums[c * sums_stride + (b - b0)];
        const __m512i quad =
            _mm512_dpbusd_epi32(_mm512_set1_epi32(s.neg_quad_corr[j]), w, _mm512_set1_epi32(load_i32(ab + 4 * j)));
        acc[c][j] = _mm512_fmadd_ps(d[c], cvt_i32(quad), acc[c][j]);
      }
    }
  }
  for (int c = 0; c < C; ++c) {
    float* o = out + c * os;
    const __m512 sum = add_chains(acc[c]);
    _mm512_storeu_ps(o, accumulate ? _mm512_add_ps(_mm512_loadu_ps(o), sum) : sum);
  }
}

// Rows longer than kMaxBlocks blocks are summed in parts (their order then
// differs from the reference's by the parts' final adds).
template <bool kQ4>
void matmul_packed(const uint8_t* w, int64_t gs, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                   int64_t n_cols, float* out, int64_t os) {
  constexpr int kCols = kQ4 ? 4 : 3;    // columns per tile (Q8_0: 8 accumulators each)
  constexpr int64_t kMaxBlocks = 512;  // activation summaries per column held at once (20 KiB)
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
          if constexpr (kQ4) {
            switch (cc) {
              case 4: packed_tile_q4<4>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
              case 3: packed_tile_q4<3>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
              case 2: packed_tile_q4<2>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
              default: packed_tile_q4<1>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum); break;
            }
          } else if (cc == 3) {
            packed_tile_q8<3>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum);
          } else if (cc == 2) {
            packed_tile_q8<2>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum);
          } else {
            packed_tile_q8<1>(q, q + quant_bytes, kb, ke, ac, as, sums, kMaxBlocks, o, os, accum);
          }
        }
      }
    }
  }
}

// ------------------------------------------------ packed F32/F16 panels
//
// A panel holds, for each element k, the 16 rows' weights at k (packed.h):
// one register is 16 rows, multiplied by one broadcast activation, so each
// lane sums its own row. The sums follow the reference order (the AVX2
// table's and tensor::vec_dot_f32's): per row eight chains, element k in
// chain k % 8, the chains added as a horizontal sum adds lanes, then the last
// n % 8 elements one by one. Panels store each chain's elements together
// (panel_slot), and the activations are copied into the same order, so a
// chain is one contiguous run of both. Prefill tiles are 2 panels x 12
// columns.

struct F32Panel {
  static constexpr int64_t kSlotBytes = 64;  // 16 rows' values of one element
  static __m512 load(const uint8_t* g, int64_t k) { return _mm512_loadu_ps(reinterpret_cast<const float*>(g) + 16 * k); }
};
struct F16Panel {
  static constexpr int64_t kSlotBytes = 32;
  static __m512 load(const uint8_t* g, int64_t k) { return cvt_ph(load256(g + 32 * k)); }
};

// The last n % 8 elements (slots n8.. in order), one product and one add
// each; x holds slot k at x[k * ks].
template <class P>
inline __m512 add_tail(__m512 sum, const uint8_t* g, int64_t n, const float* x, int64_t ks) {
  for (int64_t k = n & ~int64_t(7); k < n; ++k)
    sum = _mm512_add_ps(sum, _mm512_mul_ps(P::load(g, k), _mm512_set1_ps(x[k * ks])));
  return sum;
}

// w * x[0] + acc with x[0] broadcast inside the multiply-add (an embedded
// broadcast, {1to16}). Written out because compilers broadcast a value used
// by several multiply-adds once into a register instead, and on Sapphire
// Rapids that separate broadcast competes with the multiply-adds for their
// ports: a 2 x 12 tile then runs at about 75% of the FMA peak from L1, and
// near 90% with the broadcasts folded in. Same operation, same rounding.
inline __m512 fmadd_bcast(__m512 w, const float* x, __m512 acc) {
  asm("vfmadd231ps %1%{1to16%}, %2, %0" : "+v"(acc) : "m"(*x), "v"(w));
  return acc;
}

// G panels (at w, w + gs, ...) times C columns; x holds the columns' floats
// interleaved in panel order (slot k of column c at x[k * C + c]), so the C
// broadcasts of a step read one run of C floats through one pointer. One
// chain at a time for all G x C outputs, its partial sums parked on the
// stack (four per output, see below) until the last adds.
template <class P, int G, int C>
inline void panel_tile(const uint8_t* w, int64_t gs, int64_t n, const float* x, float* out, int64_t os) {
  const int64_t per = n / 8;
  __m512 part[G][C][4];
  for (int l = 0; l < 8; ++l) {
    __m512 acc[G][C];
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < C; ++c) acc[g][c] = _mm512_setzero_ps();
    for (int64_t k = l * per; k < (l + 1) * per; ++k) {
      __m512 wv[G];
      // Each column tile passes over all the panels, so the weights come
      // from L2: asked for eight steps ahead, they arrive in time more often
      // than through the hardware prefetchers alone (4% on one core at 512).
      for (int g = 0; g < G; ++g) {
        _mm_prefetch(reinterpret_cast<const char*>(w + g * gs + (k + 8) * P::kSlotBytes), _MM_HINT_T0);
        wv[g] = P::load(w + g * gs, k);
      }
      const float* xk = x + k * C;
      for (int c = 0; c < C; ++c)
        for (int g = 0; g < G; ++g) acc[g][c] = fmadd_bcast(wv[g], xk + c, acc[g][c]);
    }
    // Chain l + 4 joins chain l as soon as it is done (add_chains' first
    // four adds), so those adds overlap the next chain's multiply-adds.
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < C; ++c)
        part[g][c][l & 3] = l < 4 ? acc[g][c] : _mm512_add_ps(acc[g][c], part[g][c][l & 3]);
  }
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c) {
      const __m512* t = part[g][c];
      const __m512 sum = _mm512_add_ps(_mm512_add_ps(t[0], t[2]), _mm512_add_ps(t[1], t[3]));
      _mm512_storeu_ps(out + c * os + 16 * g, add_tail<P>(sum, w + g * gs, n, x + c, C));
    }
}

// Panels [p0, p1) times C columns: G at a time, then one by one.
template <class P, int G, int C>
inline void panel_rows(const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t n, const float* x, float* out,
                       int64_t os) {
  int64_t p = p0;
  for (; p + G <= p1; p += G) panel_tile<P, G, C>(w + p * gs, gs, n, x, out + p * 16, os);
  for (; p < p1; ++p) panel_tile<P, 1, C>(w + p * gs, gs, n, x, out + p * 16, os);
}

// Decode: one panel after another, so each thread reads its panels in order
// (decode is bound by memory); the eight chains advance together, eight
// independent accumulators over eight contiguous runs.
template <class P>
void panel_gemv(const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t n, const float* x, float* out) {
  const int64_t per = n / 8;
  for (int64_t p = p0; p < p1; ++p) {
    const uint8_t* g = w + p * gs;
    __m512 acc[8];
    for (auto& a : acc) a = _mm512_setzero_ps();
    // The eight runs are eight streams; the next panel is fetched ahead in
    // one linear sweep, a step's worth (eight slots) per step.
    const char* next = reinterpret_cast<const char*>(g + gs);
    for (int64_t s = 0; s < per; ++s) {
      for (int64_t b = 0; b < 8 * P::kSlotBytes; b += 64) _mm_prefetch(next + s * 8 * P::kSlotBytes + b, _MM_HINT_T0);
      for (int l = 0; l < 8; ++l)
        acc[l] = _mm512_fmadd_ps(P::load(g, l * per + s), _mm512_set1_ps(x[l * per + s]), acc[l]);
    }
    _mm512_storeu_ps(out + p * 16, add_tail<P>(add_chains(acc), g, n, x, 1));
  }
}

template <class P>
void panel_cols(int cc, const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t n, const float* x, float* out,
                int64_t os) {
  switch (cc) {
    case 12: return panel_rows<P, 2, 12>(w, gs, p0, p1, n, x, out, os);
    case 8: return panel_rows<P, 2, 8>(w, gs, p0, p1, n, x, out, os);
    case 4: return panel_rows<P, 2, 4>(w, gs, p0, p1, n, x, out, os);
    case 2: return panel_rows<P, 4, 2>(w, gs, p0, p1, n, x, out, os);
    default: return panel_gemv<P>(w, gs, p0, p1, n, x, out);
  }
}

// Activation rows a, a + as, ... (cc of them) in panel order, interleaved:
// slot k of row c at dst[k * cc + c]. Four rows at a time, elements 8 s..
// 8 s + 7 of each (slots l * per + s for l = 0..7) are transposed into eight
// runs of four floats.
template <bool kActF16>
inline void panel_interleave(const uint8_t* a, int64_t as, int cc, int64_t n, float* dst) {
  const int64_t per = n / 8;
  const int c4 = cc & ~3;
  // Step by step, all the groups of four rows: each step's run of cc
  // floats is written whole before the next.
  for (int64_t s = 0; s < per; ++s)
    for (int c = 0; c < c4; c += 4) {
      const uint8_t* r = a + c * as;
      const __m256 v0 = avx2::act8<kActF16>(r, 8 * s), v1 = avx2::act8<kActF16>(r + as, 8 * s);
      const __m256 v2 = avx2::act8<kActF16>(r + 2 * as, 8 * s), v3 = avx2::act8<kActF16>(r + 3 * as, 8 * s);
      const __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
      const __m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
      // u_l holds element l (low half) and l + 4 (high half) of the four rows.
      const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xee),
                           _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xee)};
      float* d = dst + s * cc + c;
      for (int l = 0; l < 4; ++l) {
        _mm_storeu_ps(d + l * per * cc, _mm256_castps256_ps128(u[l]));
        _mm_storeu_ps(d + (l + 4) * per * cc, _mm256_extractf128_ps(u[l], 1));
      }
    }
  for (int c = c4; c < cc; ++c)
    for (int64_t s = 0; s < per; ++s)
      for (int l = 0; l < 8; ++l) dst[(l * per + s) * cc + c] = avx2::act1<kActF16>(a + c * as, 8 * s + l);
  for (int64_t e = 8 * per; e < n; ++e)
    for (int c = 0; c < cc; ++c) dst[e * cc + c] = avx2::act1<kActF16>(a + c * as, e);
}

// Whole activation rows go into a stack buffer in panel order (a row split
// in parts would change the order of the sums), as many columns at a time as
// fit; rows longer than the buffer are not packed (packable_rows).
template <class P, bool kActF16>
void matmul_panels(const uint8_t* w, int64_t gs, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                   int64_t n_cols, float* out, int64_t os) {
  alignas(64) float buf[kPanelBufFloats];
  const int64_t p0 = r0 / kPackRows, p1 = r1 / kPackRows;
  const int64_t fit = kPanelBufFloats / n;
  const int max_cols = fit >= 12 ? 12 : fit >= 8 ? 8 : fit >= 4 ? 4 : fit >= 2 ? 2 : 1;
  // A tile of columns at a time over all the panels: each panel serves the
  // tile's columns while in L1 (passes over the panels outside the tiles,
  // for L2 reuse across tiles, measured no faster: the activations would be
  // reordered once per pass).
  for (int64_t c0 = 0; c0 < n_cols;) {
    const int64_t left = std::min<int64_t>(n_cols - c0, max_cols);
    const int cc = left >= 12 ? 12 : left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
    if (cc == 1)
      avx2::panel_order<kActF16>(a + c0 * as, n, buf);
    else
      panel_interleave<kActF16>(a + c0 * as, as, cc, n, buf);
    panel_cols<P>(cc, w, gs, p0, p1, n, buf, out + c0 * os, os);
    c0 += cc;
  }
}

// ------------------------------------------------------------- row ops

// Float squares widened to double lanes. Each 16-float load feeds two
// conversions (its low half directly, its high half after an extract), so the
// loads and multiplies are halved; lane t of each 32-float step still goes to
// acc[t], the same order as eight floats at a time.
double sum_squares(const float* x, int64_t n, int64_t* done) {
  __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
  // GCC 12's _mm512_castps512_ps256 goes through an extract of an undefined
  // register (a -Wmaybe-uninitialized warning); a copy of the low half is free.
  const auto widen_lo = [](__m512 v) {
    __m256 lo;
    std::memcpy(&lo, &v, sizeof lo);
    return _mm512_maskz_cvtps_pd(0xff, lo);
  };
  const auto widen_hi = [](__m512 v) {
    return _mm512_maskz_cvtps_pd(0xff, _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xf, _mm512_castps_pd(v), 1)));
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    a = _mm512_mul_ps(a, a);
    b = _mm512_mul_ps(b, b);
    acc[0] = _mm512_add_pd(acc[0], widen_lo(a));
    acc[1] = _mm512_add_pd(acc[1], widen_hi(a));
    acc[2] = _mm512_add_pd(acc[2], widen_lo(b));
    acc[3] = _mm512_add_pd(acc[3], widen_hi(b));
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
  const auto at = [&](int64_t j) {
    _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + j), vs), _mm512_loadu_ps(w + j)));
  };
  const int64_t body = n & ~int64_t{15};
  for (i = body; i < n; ++i) out[i] = (x[i] * scale) * w[i];
  if (avx2::store_runs_ahead(x, out) || avx2::store_runs_ahead(w, out))
    for (i = body - 16; i >= 0; i -= 16) at(i);
  else
    for (i = 0; i < body; i += 16) at(i);
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
  k.matmul_packed[dtype_index(DType::Q4_0)] = matmul_packed<true>;
  k.matmul_packed[dtype_index(DType::Q8_0)] = matmul_packed<false>;
  k.pack_weights[dtype_index(DType::Q4_0)] = true;
  k.pack_weights[dtype_index(DType::Q8_0)] = true;
  k.matmul_packed[dtype_index(DType::F32)] = matmul_panels<F32Panel, false>;
  k.matmul_packed[dtype_index(DType::F16)] = matmul_panels<F16Panel, true>;
  k.pack_weights[dtype_index(DType::F32)] = true;
  k.pack_weights[dtype_index(DType::F16)] = true;
  k.fma_peak_probe = fma_peak_probe;
}

}  // namespace quarrel::cpu

// AVX2 F32/F16 matmuls on packed panels (packed.h): the AVX-512 table's panel
// kernels (x86_avx512.cpp) at eight lanes. A panel slot holds 16 rows' values
// of one element, two registers here (rows 0..7 and 8..15), each lane
// accumulating its own row's dot product: no horizontal sums, and F16
// activations are widened once, not once per row.
//
// The sums follow the reference order (matmul_float in x86_avx2_float.cpp,
// tensor::vec_dot_f32): per row eight chains, element k in chain k % 8, the
// chains added as a horizontal sum adds lanes, then the last n % 8 elements
// one by one (product, then add). Panels store each chain's elements
// together (panel_slot) and the activations are copied into the same order,
// so a chain is one contiguous run of both.
#include <algorithm>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/packed.h"
#include "cpu/kernels/x86_avx2_common.h"
#include "cpu/kernels/x86_panel_order.h"

namespace quarrel::cpu::avx2 {

namespace {

using tensor::DType;

// 16 rows: lo holds rows 0..7, hi rows 8..15.
struct Rows16 {
  __m256 lo, hi;
};

inline Rows16 zero16() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline Rows16 add16(Rows16 a, Rows16 b) { return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
inline Rows16 fmadd16(Rows16 w, __m256 x, Rows16 acc) {
  return {_mm256_fmadd_ps(w.lo, x, acc.lo), _mm256_fmadd_ps(w.hi, x, acc.hi)};
}
inline void store16(float* o, Rows16 v) {
  _mm256_storeu_ps(o, v.lo);
  _mm256_storeu_ps(o + 8, v.hi);
}

struct F32Panel {
  static constexpr int64_t kSlotBytes = 64;  // 16 rows' values of one element
  static Rows16 load(const uint8_t* g, int64_t k) {
    const float* p = reinterpret_cast<const float*>(g) + 16 * k;
    return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)};
  }
};
struct F16Panel {
  static constexpr int64_t kSlotBytes = 32;
  static Rows16 load(const uint8_t* g, int64_t k) {
    return {_mm256_cvtph_ps(load128(g + 32 * k)), _mm256_cvtph_ps(load128(g + 32 * k + 16))};
  }
};

// Eight chains' partial sums added as an x86 horizontal sum adds eight lanes:
// t_l = chain l + chain l + 4, then (t0 + t2) + (t1 + t3).
inline Rows16 add_parts(const Rows16* t) { return add16(add16(t[0], t[2]), add16(t[1], t[3])); }

// The last n % 8 elements (slots n8.. in order), one product and one add
// each; x holds slot k at x[k * ks].
template <class P>
inline Rows16 add_tail(Rows16 sum, const uint8_t* g, int64_t n, const float* x, int64_t ks) {
  for (int64_t k = n & ~int64_t(7); k < n; ++k) {
    const Rows16 w = P::load(g, k);
    const __m256 xk = _mm256_set1_ps(x[k * ks]);
    sum = add16(sum, {_mm256_mul_ps(w.lo, xk), _mm256_mul_ps(w.hi, xk)});
  }
  return sum;
}

// G panels (at w, w + gs, ...) times C columns, 2 G C accumulators (at most
// 12 of the 16 registers: the rest hold a panel's two weight registers and
// one broadcast). x holds the columns' floats interleaved in panel order
// (slot k of column c at x[k * C + c]). One chain at a time for all the
// outputs, its partial sums parked on the stack until the last adds.
template <class P, int G, int C>
inline void panel_tile(const uint8_t* w, int64_t gs, int64_t n, const float* x, float* out, int64_t os) {
  static_assert(2 * G * C <= 12, "accumulators must leave registers for the weights");
  const int64_t per = n / 8;
  Rows16 part[G][C][4];
  for (int l = 0; l < 8; ++l) {
    Rows16 acc[G][C];
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < C; ++c) acc[g][c] = zero16();
    for (int64_t k = l * per; k < (l + 1) * per; ++k) {
      const float* xk = x + k * C;
      for (int g = 0; g < G; ++g) {
        // Every column tile passes over all the panels, so the weights come
        // from L2 or, past 512 KiB a thread, L3: fetched 2 KiB ahead (16
        // slots ahead measured 5-10% slower on one Zen 3 core at pp128).
        _mm_prefetch(reinterpret_cast<const char*>(w + g * gs + k * P::kSlotBytes + 2048), _MM_HINT_T0);
        const Rows16 wv = P::load(w + g * gs, k);
        for (int c = 0; c < C; ++c) acc[g][c] = fmadd16(wv, _mm256_broadcast_ss(xk + c), acc[g][c]);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int c = 0; c < C; ++c) part[g][c][l & 3] = l < 4 ? acc[g][c] : add16(acc[g][c], part[g][c][l & 3]);
  }
  for (int g = 0; g < G; ++g)
    for (int c = 0; c < C; ++c)
      store16(out + c * os + 16 * g, add_tail<P>(add_parts(part[g][c]), w + g * gs, n, x + c, C));
}

// Panels [p0, p1) times C columns: G at a time, then one by one.
template <class P, int G, int C>
inline void panel_rows(const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t n, const float* x, float* out,
                       int64_t os) {
  int64_t p = p0;
  for (; p + G <= p1; p += G) panel_tile<P, G, C>(w + p * gs, gs, n, x, out + p * 16, os);
  for (; p < p1; ++p) panel_tile<P, 1, C>(w + p * gs, gs, n, x, out + p * 16, os);
}

// Decode: bound by memory, so each thread reads its panels in order, and a
// panel from front to back in two streams: chains l and l + 4 (its first and
// second half) advance together, four independent accumulators (one chain
// alone, two accumulators, would wait on the multiply-add latency), and their
// sum is the horizontal sum's first add. Each stream is also fetched 4 KiB
// ahead: without it decode ran about 10% slower on one Zen 3 core (2 KiB:
// about 5%; one sweep over the panel ahead of the second stream, or one
// stream chain by chain, measured no better).
template <class P>
void panel_gemv(const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t n, const float* x, float* out) {
  constexpr int64_t kAhead = 4096;
  const int64_t per = n / 8;
  for (int64_t p = p0; p < p1; ++p) {
    const uint8_t* g = w + p * gs;
    Rows16 t[4];
    for (int l = 0; l < 4; ++l) {
      Rows16 a0 = zero16(), a1 = zero16();
      const uint8_t* s0 = g + l * per * P::kSlotBytes;
      const uint8_t* s1 = g + (l + 4) * per * P::kSlotBytes;
      const float* x0 = x + l * per;
      const float* x1 = x + (l + 4) * per;
      for (int64_t s = 0; s < per; ++s) {
        _mm_prefetch(reinterpret_cast<const char*>(s0 + s * P::kSlotBytes + kAhead), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(s1 + s * P::kSlotBytes + kAhead), _MM_HINT_T0);
        a0 = fmadd16(P::load(s0, s), _mm256_broadcast_ss(x0 + s), a0);
        a1 = fmadd16(P::load(s1, s), _mm256_broadcast_ss(x1 + s), a1);
      }
      t[l] = add16(a0, a1);
    }
    store16(out + p * 16, add_tail<P>(add_parts(t), g, n, x, 1));
  }
}

template <class P>
void panel_cols(int cc, const uint8_t* w, int64_t gs, int64_t p0, int64_t p1, int64_t n, const float* x, float* out,
                int64_t os) {
  switch (cc) {
    case 6: return panel_rows<P, 1, 6>(w, gs, p0, p1, n, x, out, os);
    case 5: return panel_rows<P, 1, 5>(w, gs, p0, p1, n, x, out, os);
    case 4: return panel_rows<P, 1, 4>(w, gs, p0, p1, n, x, out, os);
    case 3: return panel_rows<P, 2, 3>(w, gs, p0, p1, n, x, out, os);
    case 2: return panel_rows<P, 2, 2>(w, gs, p0, p1, n, x, out, os);
    default: return panel_gemv<P>(w, gs, p0, p1, n, x, out);
  }
}

// Activation rows a, a + as, ... (cc of them) in panel order, interleaved:
// slot k of row c at dst[k * cc + c]. Rows in fours, then pairs, then one:
// elements 8 s .. 8 s + 7 of each (slots l * per + s, l = 0..7) transposed
// into eight runs of four, two or one floats.
template <bool kActF16>
inline void panel_interleave(const uint8_t* a, int64_t as, int cc, int64_t n, float* dst) {
  const int64_t per = n / 8;
  const int c4 = cc & ~3, c2 = cc & ~1;
  for (int64_t s = 0; s < per; ++s) {
    float* d = dst + s * cc;
    for (int c = 0; c < c4; c += 4) {
      const uint8_t* r = a + c * as;
      const __m256 v0 = act8<kActF16>(r, 8 * s), v1 = act8<kActF16>(r + as, 8 * s);
      const __m256 v2 = act8<kActF16>(r + 2 * as, 8 * s), v3 = act8<kActF16>(r + 3 * as, 8 * s);
      const __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
      const __m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
      // u_l holds element l (low half) and l + 4 (high half) of the four rows.
      const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xee),
                           _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xee)};
      for (int l = 0; l < 4; ++l) {
        _mm_storeu_ps(d + c + l * per * cc, _mm256_castps256_ps128(u[l]));
        _mm_storeu_ps(d + c + (l + 4) * per * cc, _mm256_extractf128_ps(u[l], 1));
      }
    }
    if (c2 > c4) {
      const uint8_t* r = a + c4 * as;
      const __m256 v0 = act8<kActF16>(r, 8 * s), v1 = act8<kActF16>(r + as, 8 * s);
      // Element l of both rows, as one 64-bit pair: 0, 1 (low half) and 4, 5
      // (high half) of t0; 2, 3 and 6, 7 of t1.
      const __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
      const __m128 q[4] = {_mm256_castps256_ps128(t0), _mm256_castps256_ps128(t1), _mm256_extractf128_ps(t0, 1),
                           _mm256_extractf128_ps(t1, 1)};
      for (int h = 0; h < 4; ++h) {
        _mm_storel_pi(reinterpret_cast<__m64*>(d + c4 + 2 * h * per * cc), q[h]);
        _mm_storeh_pi(reinterpret_cast<__m64*>(d + c4 + (2 * h + 1) * per * cc), q[h]);
      }
    }
    if (cc > c2)
      for (int l = 0; l < 8; ++l) d[c2 + l * per * cc] = act1<kActF16>(a + c2 * as, 8 * s + l);
  }
  for (int64_t e = 8 * per; e < n; ++e)
    for (int c = 0; c < cc; ++c) dst[e * cc + c] = act1<kActF16>(a + c * as, e);
}

// Whole activation rows go into a stack buffer in panel order (a row split
// in parts would change the order of the sums), as many columns at a time as
// fit; rows longer than the buffer are not packed (packable_rows).
template <class P, bool kActF16>
void matmul_panels(const uint8_t* w, int64_t gs, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                   int64_t n_cols, float* out, int64_t os) {
  constexpr int kMaxCols = 6;  // the widest tile (panel_cols)
  alignas(64) float buf[kPanelBufFloats];
  const int64_t p0 = r0 / kPackRows, p1 = r1 / kPackRows;
  const int64_t fit = std::min<int64_t>(kMaxCols, kPanelBufFloats / n);
  for (int64_t c0 = 0; c0 < n_cols;) {
    const int cc = static_cast<int>(std::min(n_cols - c0, fit));
    if (cc == 1)
      panel_order<kActF16>(a + c0 * as, n, buf);
    else
      panel_interleave<kActF16>(a + c0 * as, as, cc, n, buf);
    panel_cols<P>(cc, w, gs, p0, p1, n, buf, out + c0 * os, os);
    c0 += cc;
  }
}

}  // namespace

void add_panel_kernels(Kernels& k) {
  k.matmul_packed[dtype_index(DType::F32)] = matmul_panels<F32Panel, false>;
  k.matmul_packed[dtype_index(DType::F16)] = matmul_panels<F16Panel, true>;
  k.pack_weights[dtype_index(DType::F32)] = true;
  k.pack_weights[dtype_index(DType::F16)] = true;
}

}  // namespace quarrel::cpu::avx2

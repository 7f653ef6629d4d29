#pragma once
// Activation rows in the float panels' order (packed.h, panel_slot), shared
// by the AVX2 and AVX-512 panel kernels. Include only from files built with
// the AVX2 flags (x86_avx2* and x86_avx512.cpp). The functions have internal
// linkage: each ISA file compiles its own copy with its own flags, so the
// linker cannot hand the AVX2 table a copy built for AVX-512.
#include <immintrin.h>

#include <cstdint>

#include "cpu/kernels/x86_avx2_common.h"

namespace quarrel::cpu::avx2 {
namespace {

// Activation element e of a row (F16 or F32) as a float, and eight from e.
template <bool kActF16>
inline float act1(const uint8_t* a, int64_t e) {
  if constexpr (kActF16) return f16_to_f32(a + 2 * e);
  else return reinterpret_cast<const float*>(a)[e];
}
template <bool kActF16>
inline __m256 act8(const uint8_t* a, int64_t e) {
  if constexpr (kActF16) return _mm256_cvtph_ps(load128(a + 2 * e));
  else return _mm256_loadu_ps(reinterpret_cast<const float*>(a) + e);
}

// Activation row a (n elements) as floats in panel order: element 8 s + l
// goes to l * (n / 8) + s, a transpose of (n / 8) x 8, done eight rows by
// eight lanes at a time; the last n % 8 stay at the end.
template <bool kActF16>
inline void panel_order(const uint8_t* a, int64_t n, float* dst) {
  const int64_t per = n / 8;
  int64_t s = 0;
  for (; s + 8 <= per; s += 8) {
    __m256 r[8], t[8], u[8];
    for (int i = 0; i < 8; ++i) r[i] = act8<kActF16>(a, 8 * (s + i));
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
      u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
      u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
      u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
      u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int l = 0; l < 4; ++l) {
      _mm256_storeu_ps(dst + l * per + s, _mm256_permute2f128_ps(u[l], u[l + 4], 0x20));
      _mm256_storeu_ps(dst + (l + 4) * per + s, _mm256_permute2f128_ps(u[l], u[l + 4], 0x31));
    }
  }
  for (; s < per; ++s)
    for (int l = 0; l < 8; ++l) dst[l * per + s] = act1<kActF16>(a, 8 * s + l);
  for (int64_t e = 8 * per; e < n; ++e) dst[e] = act1<kActF16>(a, e);
}

}  // namespace
}  // namespace quarrel::cpu::avx2

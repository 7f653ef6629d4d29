#pragma once
// The AVX2 matmul driver for 32-element block formats: an R x C tile of
// weight rows times activation columns, so that each unpacked weight block
// is used C times and each prepared activation block R times while both sit
// in registers. Rows are walked in blocks that stay in L2 while every column
// passes over them, which is what makes prefill GEMM compute-bound.
#include <algorithm>

#include "cpu/kernels/x86_avx2_common.h"

namespace quarrel::cpu::avx2 {

// The traits type Q gives kWBytes/kABytes (bytes per block), kHasMin, the
// unpacked weight and activation block types W and A, and load_w, load_a and
// idot (see x86_avx2.cpp).
template <class Q, int R, int C>
inline void tile(const uint8_t* w, int64_t ws, const uint8_t* a, int64_t as, int64_t nb, float* out, int64_t os) {
  __m256 acc[R][C];
  float accm[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      acc[r][c] = _mm256_setzero_ps();
      accm[r][c] = 0.0f;
    }
  for (int64_t b = 0; b < nb; ++b) {
    typename Q::A ab[C];
    for (int c = 0; c < C; ++c) ab[c] = Q::load_a(a + c * as + b * Q::kABytes);
    for (int r = 0; r < R; ++r) {
      const typename Q::W wb = Q::load_w(w + r * ws + b * Q::kWBytes);
      for (int c = 0; c < C; ++c) {
        const __m256 p = _mm256_cvtepi32_ps(Q::idot(wb, ab[c]));
        acc[r][c] = _mm256_fmadd_ps(_mm256_mul_ps(wb.d, ab[c].d), p, acc[r][c]);
        if constexpr (Q::kHasMin) accm[r][c] += wb.m * ab[c].s;
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) out[c * os + r] = hsum(acc[r][c]) + accm[r][c];
}

// Rows [r0, r1) with a tile of R rows (and single rows for the remainder).
template <class Q, int R, int C>
inline void tile_rows(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t nb, const uint8_t* a,
                      int64_t as, float* out, int64_t os) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) tile<Q, R, C>(w + r * ws, ws, a, as, nb, out + r, os);
  for (; r < r1; ++r) tile<Q, 1, C>(w + r * ws, ws, a, as, nb, out + r, os);
}

// The tile shapes: 4 rows for one column (decode: four independent sums in
// flight), 3 x 4 when there are columns enough (12 accumulators of 16 ymm).
template <class Q>
void matmul_blocks(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                   int64_t n_cols, float* out, int64_t os) {
  const int64_t nb = n / Q::kBlock;
  if (n_cols == 1) {
    tile_rows<Q, 4, 1>(w, ws, r0, r1, nb, a, as, out, os);
    return;
  }
  // Rows per pass: about 256 KiB of weights, reused by every column from L2.
  const int64_t rows_per_pass = std::max<int64_t>(12, (256 << 10) / std::max<int64_t>(ws, 1));
  for (int64_t rb = r0; rb < r1; rb += rows_per_pass) {
    const int64_t re = std::min(r1, rb + rows_per_pass);
    int64_t c = 0;
    for (; c + 4 <= n_cols; c += 4) tile_rows<Q, 3, 4>(w, ws, rb, re, nb, a + c * as, as, out + c * os, os);
    switch (n_cols - c) {
      case 3: tile_rows<Q, 4, 3>(w, ws, rb, re, nb, a + c * as, as, out + c * os, os); break;
      case 2: tile_rows<Q, 4, 2>(w, ws, rb, re, nb, a + c * as, as, out + c * os, os); break;
      case 1: tile_rows<Q, 4, 1>(w, ws, rb, re, nb, a + c * as, as, out + c * os, os); break;
      default: break;
    }
  }
}

}  // namespace quarrel::cpu::avx2

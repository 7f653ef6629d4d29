#pragma once
// Scalar functions whose exact bits the CPU kernels (every ISA) and the CUDA
// kernels share, so that one input gives one output everywhere. They follow
// what llama.cpp's CPU backend computes in an x86 AVX2 build, which is what
// the reference logits were made with (docs/ARCHITECTURE.md, "Numerics").
#include <cmath>
#include <cstdint>
#include <cstring>

#include "tensor/blocks.h"  // QUARREL_HOST_DEVICE

namespace quarrel::tensor {

// The bits of a float as an integer, or back (memcpy works on the device too).
template <class To, class From>
QUARREL_HOST_DEVICE inline To bit_as(From x) {
  static_assert(sizeof(To) == sizeof(From));
  To y;
  memcpy(&y, &x, sizeof y);
  return y;
}

// exp(x) as ggml's vectorised expf computes it (softmax, SiLU): x = n ln2 + b
// with n rounded by the 1.5 * 2^23 shifter and ln2 in two parts, a degree-5
// polynomial in b, and 2^n built in the exponent bits; |n| > 126 takes two
// scale factors so that the result under- or overflows gracefully. Every
// multiply-add below is one rounding (fmaf), every other step another.
QUARREL_HOST_DEVICE inline float exp_poly(float x) {
  const float shifter = 0x1.8p23f;
  const float z = fmaf(x, 0x1.715476p+0f, shifter);
  const float n = z - shifter;
  const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
  const uint32_t e = bit_as<uint32_t>(z) << 23;
  const float k = bit_as<float>(e + 0x3f800000u);  // 2^n
  const float u = b * b;
  const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)), u,
                       0x1.ffffecp-1f * b);
  // Both ends computed and one selected, without branches, so that a GPU
  // thread's exponentials of a group of eight can overlap.
  const float an = fabsf(n);
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = bit_as<float>(g + 0x7f000000u), s2 = bit_as<float>(e - g);
  const float scaled = an > 192.0f ? s1 * s1 : fmaf(s2, j, s2) * s1;
  return !(an > 126.0f) ? fmaf(j, k, k) : scaled;
}

// silu(g) * u for one SwiGLU element, with exp_poly (elements past the last
// whole group of eight take the C library's expf, as ggml's tail loop does).
QUARREL_HOST_DEVICE inline float swiglu_poly(float g, float u) { return g / (1.0f + exp_poly(0.0f - g)) * u; }

// One RoPE pair: (x0 cos - x1 sin, x0 sin + x1 cos) with the first product
// of each fused into the add, as the compilers contract ggml's rotation.
QUARREL_HOST_DEVICE inline void rope_pair(float x0, float x1, float c, float s, float* y0, float* y1) {
  *y0 = fmaf(x0, c, -(x1 * s));
  *y1 = fmaf(x0, s, x1 * c);
}

// Eight lanes added as an x86 horizontal sum adds them: halves first, then
// (0 + 2) + (1 + 3).
QUARREL_HOST_DEVICE inline float hsum8(const float* v) {
  float t[4];
  for (int l = 0; l < 4; ++l) t[l] = v[l + 4] + v[l];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

// score_dot's four chains of eight lanes added into one sum (also used by
// the CUDA attention, which loads the chains' elements its own way).
QUARREL_HOST_DEVICE inline float add_score_chains(const float (&chain)[4][8]) {
  float lane[8];
  for (int l = 0; l < 8; ++l) lane[l] = (chain[0][l] + chain[2][l]) + (chain[1][l] + chain[3][l]);
  float half[4];
  for (int l = 0; l < 4; ++l) half[l] = lane[l] + lane[l + 4];
  return (half[0] + half[1]) + (half[2] + half[3]);
}

// q . k over n elements (k strided by ks) in the order of ggml's AVX2
// ggml_vec_dot_f32, which makes the attention scores: four chains of eight
// lanes over each 32 elements (multiply-adds), the chains added
// (0 + 2) + (1 + 3), the eight lanes by halves and then pairs, and the last
// n % 32 elements one by one (a product, then an add).
QUARREL_HOST_DEVICE inline float score_dot(const float* q, const float* k, int64_t ks, int64_t n) {
  const int64_t n32 = n & ~int64_t(31);
  float chain[4][8] = {};
  QUARREL_DEVICE_NO_UNROLL
  for (int64_t i = 0; i < n32; i += 32)
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 8; ++l) chain[c][l] = fmaf(k[(i + 8 * c + l) * ks], q[i + 8 * c + l], chain[c][l]);
  float s = add_score_chains(chain);
  QUARREL_DEVICE_NO_UNROLL
  for (int64_t d = n32; d < n; ++d) s = s + k[d * ks] * q[d];
  return s;
}

}  // namespace quarrel::tensor

// NEON kernels for AArch64 with the dot-product extension (sdot), used when
// the CPU reports it (HWCAP_ASIMDDP; dispatch.cpp). A small first set: the
// Q8_0 and Q4_0 dot products on the file layout and the float dot/axpy of
// attention. Built and syntax-checked here, not yet run on an ARM machine;
// the tests in tests/test_cpu_kernels.cpp check it against the reference
// wherever it runs.
#include <arm_neon.h>

#include <cstring>

#include "cpu/kernels/kernels.h"
#include "tensor/blocks.h"
#include "tensor/fp16.h"

namespace quarrel::cpu {

namespace {

using tensor::DType;

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return tensor::fp16_to_fp32(h);
}

// Each block's integer dot product is exact; it is scaled and summed in
// float, as the reference does, in four lanes.
float vec_dot_q8_0(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* x = w + b * sizeof(tensor::BlockQ8_0);
    const uint8_t* y = a + b * sizeof(tensor::BlockQ8_0);
    const int8x16_t x0 = vld1q_s8(reinterpret_cast<const int8_t*>(x + 2));
    const int8x16_t x1 = vld1q_s8(reinterpret_cast<const int8_t*>(x + 18));
    const int8x16_t y0 = vld1q_s8(reinterpret_cast<const int8_t*>(y + 2));
    const int8x16_t y1 = vld1q_s8(reinterpret_cast<const int8_t*>(y + 18));
    const int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), x0, y0), x1, y1);
    acc = vaddq_f32(acc, vmulq_n_f32(vcvtq_f32_s32(p), f16(x) * f16(y)));
  }
  return vaddvq_f32(acc);
}

float vec_dot_q4_0(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  const uint8x16_t m4 = vdupq_n_u8(0x0f);
  const int8x16_t eight = vdupq_n_s8(8);
  float32x4_t acc = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* x = w + b * sizeof(tensor::BlockQ4_0);
    const uint8_t* y = a + b * sizeof(tensor::BlockQ8_0);
    const uint8x16_t q = vld1q_u8(x + 2);
    // Low nibbles are elements 0..15, high nibbles 16..31; both offset by 8.
    const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight);
    const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
    const int8x16_t y0 = vld1q_s8(reinterpret_cast<const int8_t*>(y + 2));
    const int8x16_t y1 = vld1q_s8(reinterpret_cast<const int8_t*>(y + 18));
    const int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo, y0), hi, y1);
    acc = vaddq_f32(acc, vmulq_n_f32(vcvtq_f32_s32(p), f16(x) * f16(y)));
  }
  return vaddvq_f32(acc);
}

template <VecDotFn F>
void matmul_rows(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                 int64_t n_cols, float* out, int64_t os) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < n_cols; ++c) out[c * os + r] = F(w + r * ws, a + c * as, n);
}

float dot_f32(const float* x, const float* y, int64_t n) {
  float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 4; ++k) acc[k] = vfmaq_f32(acc[k], vld1q_f32(x + i + 4 * k), vld1q_f32(y + i + 4 * k));
  float s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

void axpy_f32(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

void kernels_init_neon(Kernels& k) {
  k.isa = "neon";
  k.vec_dot[dtype_index(DType::Q8_0)] = vec_dot_q8_0;
  k.vec_dot[dtype_index(DType::Q4_0)] = vec_dot_q4_0;
  k.matmul[dtype_index(DType::Q8_0)] = matmul_rows<vec_dot_q8_0>;
  k.matmul[dtype_index(DType::Q4_0)] = matmul_rows<vec_dot_q4_0>;
  k.dot_f32 = dot_f32;
  k.axpy_f32 = axpy_f32;
}

}  // namespace quarrel::cpu

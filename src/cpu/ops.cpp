#include "cpu/ops.h"

#include <cmath>

namespace quarrel::cpu {

void rope_table(int32_t pos, int64_t half, float base, float freq_scale, const float* freq_factors, float* cos_out,
                float* sin_out) {
  // ggml steps theta by a constant factor per pair in float; doing the same
  // keeps the rounding identical.
  const float theta_scale = std::pow(base, -2.0f / static_cast<float>(2 * half));
  float theta_base = static_cast<float>(pos);
  for (int64_t i = 0; i < half; ++i) {
    float ff = freq_factors ? freq_factors[i] : 1.0f;
    float theta = freq_scale * (theta_base / ff);
    cos_out[i] = std::cos(theta);
    sin_out[i] = std::sin(theta);
    theta_base *= theta_scale;
  }
}

}  // namespace quarrel::cpu

#include "cpu/ops.h"

#include <cmath>

namespace quarrel::cpu {

void rms_norm(const float* x, const tensor::View& weight, float eps, int64_t n, float* out) {
  double sum = 0;  // ggml accumulates the squares in double
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  const float* w = reinterpret_cast<const float*>(weight.data);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

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

void rope_apply(float* x, const float* cos_t, const float* sin_t, int64_t half, bool neox) {
  for (int64_t i = 0; i < half; ++i) {
    int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float x0 = x[a], x1 = x[b];
    x[a] = x0 * cos_t[i] - x1 * sin_t[i];
    x[b] = x0 * sin_t[i] + x1 * cos_t[i];
  }
}

void add_bias(float* y, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += b[i];
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void attend(const float* q, const float* k, const float* v, int64_t stride, int64_t n_pos, int64_t head_dim,
            float scale, float* scores, float* out, const Kernels& kern) {
  float max = -INFINITY;
  for (int64_t j = 0; j < n_pos; ++j) {
    scores[j] = kern.dot_f32(q, k + j * stride, head_dim) * scale;
    max = std::max(max, scores[j]);
  }
  double sum = 0;
  for (int64_t j = 0; j < n_pos; ++j) {
    scores[j] = std::exp(scores[j] - max);
    sum += scores[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0;
  for (int64_t j = 0; j < n_pos; ++j) kern.axpy_f32(scores[j] * inv, v + j * stride, out, head_dim);
}

}  // namespace quarrel::cpu

#include "cpu/kernels/scalar_float.h"

#include <algorithm>
#include <cmath>

#include "tensor/ref_math.h"

namespace quarrel::cpu {

namespace {

float dot_f32_ref(const float* x, const float* y, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

void axpy_f32_ref(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void add_f32_ref(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void rms_norm_ref(const float* x, const float* w, float eps, int64_t n, float* out) {
  double sum = 0;  // ggml accumulates the float squares in double
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  // ggml scales first (ggml_vec_scale_f32), then multiplies by the weight in a
  // separate op: two roundings, kept.
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}

void layer_norm_ref(const float* x, const float* w, const float* b, float eps, int64_t n, float* out) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  const float mean = static_cast<float>(sum / n);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - mean;
    var += static_cast<double>(d * d);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(var / n) + eps);
  for (int64_t i = 0; i < n; ++i) {
    const float y = ((x[i] - mean) * scale) * w[i];
    out[i] = b ? y + b[i] : y;
  }
}

void rope_apply_ref(float* x, const float* cos_t, const float* sin_t, int64_t half, bool neox) {
  for (int64_t i = 0; i < half; ++i) {
    const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    tensor::rope_pair(x[a], x[b], cos_t[i], sin_t[i], &x[a], &x[b]);
  }
}

void swiglu_ref(float* gate, const float* up, int64_t n) {
  const int64_t n8 = n & ~int64_t(7);
  for (int64_t i = 0; i < n8; ++i) gate[i] = tensor::swiglu_poly(gate[i], up[i]);
  for (int64_t i = n8; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// ggml's attention without flash attention, operation for operation (an AVX2
// build, a batch of prompt tokens): scores by tensor::score_dot, scaled; exp_poly of
// score - max in groups of eight, each group's horizontal sum added to a
// double; probabilities times the float inverse of that sum; and each output
// dimension summed over positions as its batched GEMM does, eight lanes by
// position mod 8 (multiply-adds), then the horizontal sum.
void attend_ref(const AttendArgs& p) {
  for (int64_t h = 0; h < p.n_q; ++h) {
    const float* q = p.q + h * p.q_stride;
    float* scores = p.scores + h * p.n_pos;
    float* out = p.out + h * p.out_stride;
    float max = -INFINITY;
    for (int64_t j = 0; j < p.n_pos; ++j) {
      scores[j] = tensor::score_dot(q, p.k + j, p.k_stride, p.head_dim) * p.scale;
      max = std::max(max, scores[j]);
    }
    double sum = 0;
    for (int64_t j0 = 0; j0 < p.n_pos; j0 += 8) {
      float e[8] = {};  // positions past the end are exp(-inf) = 0 in ggml's padded row
      for (int64_t l = 0; l < 8 && j0 + l < p.n_pos; ++l) e[l] = scores[j0 + l] = tensor::exp_poly(scores[j0 + l] - max);
      sum += tensor::hsum8(e);
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < p.n_pos; ++j) scores[j] *= inv;
    for (int64_t d = 0; d < p.head_dim; ++d) {
      float lanes[8] = {};
      for (int64_t j = 0; j < p.n_pos; ++j) lanes[j % 8] = std::fma(p.v[j * p.v_stride + d], scores[j], lanes[j % 8]);
      out[d] = tensor::hsum8(lanes);
    }
  }
}

void lora_forward_ref(const LoraArgs& l, const float* x, float* y) {
  for (int64_t r = 0; r < l.rank; ++r) {
    const float t = dot_f32_ref(l.a + r * l.d_in, x, l.d_in) * l.scale;
    axpy_f32_ref(t, l.b + r * l.d_out, y, l.d_out);
  }
}

void lora_grad_ref(const LoraArgs& l, const float* x, const float* g, float* da, float* db) {
  for (int64_t r = 0; r < l.rank; ++r) {
    const float u = dot_f32_ref(l.a + r * l.d_in, x, l.d_in) * l.scale;  // scale * (A x)_r
    const float v = dot_f32_ref(l.b + r * l.d_out, g, l.d_out) * l.scale;  // scale * (B^T g)_r
    axpy_f32_ref(v, x, da + r * l.d_in, l.d_in);
    axpy_f32_ref(u, g, db + r * l.d_out, l.d_out);
  }
}

double fma_peak_probe_ref(int64_t n) {
  float acc[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int64_t i = 0; i < n; ++i)
    for (float& a : acc) a = a * 0.999999f + 1e-7f;
  volatile float sink = acc[0] + acc[7];
  (void)sink;
  return 2.0 * 8 * static_cast<double>(n);
}

}  // namespace

void add_scalar_float_kernels(Kernels& k) {
  k.dot_f32 = dot_f32_ref;
  k.axpy_f32 = axpy_f32_ref;
  k.add_f32 = add_f32_ref;
  k.rms_norm = rms_norm_ref;
  k.layer_norm = layer_norm_ref;
  k.rope_apply = rope_apply_ref;
  k.swiglu = swiglu_ref;
  k.attend = attend_ref;
  k.lora_forward = lora_forward_ref;
  k.lora_grad = lora_grad_ref;
  k.fma_peak_probe = fma_peak_probe_ref;
}

}  // namespace quarrel::cpu

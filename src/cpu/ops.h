#pragma once
// Row-level float operations of the forward pass, written to follow ggml's
// order of arithmetic so results agree with llama.cpp to rounding.
#include <cstdint>

#include "cpu/kernels/kernels.h"
#include "tensor/view.h"

namespace quarrel::cpu {

// out = x / sqrt(mean(x^2) + eps) * weight. weight is an F32 view of n elements.
void rms_norm(const float* x, const tensor::View& weight, float eps, int64_t n, float* out);

// cos/sin of each rotated pair at position pos: theta_i = pos * base^(-2i/n_rot)
// * freq_scale / freq_factors[i]. half = n_rot / 2.
void rope_table(int32_t pos, int64_t half, float base, float freq_scale, const float* freq_factors, float* cos_out,
                float* sin_out);
// Rotates one head in place: adjacent pairs (llama) or halves (neox).
void rope_apply(float* x, const float* cos_t, const float* sin_t, int64_t half, bool neox);

void add_bias(float* y, const float* b, int64_t n);  // y += b
void swiglu(float* gate, const float* up, int64_t n); // gate = silu(gate) * up

// One query head over n_pos cached positions: softmax(q.K^T * scale) V.
// k and v point at position 0 of this head; stride is the distance between positions.
void attend(const float* q, const float* k, const float* v, int64_t stride, int64_t n_pos, int64_t head_dim,
            float scale, float* scores, float* out, const Kernels& kern);

}  // namespace quarrel::cpu

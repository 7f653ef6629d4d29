#pragma once
// Forward-pass helpers that are not per-ISA kernels.
#include <cstdint>

namespace quarrel::cpu {

// cos/sin of each rotated pair at position pos: theta_i = pos * base^(-2i/n_rot)
// * freq_scale / freq_factors[i]. half = n_rot / 2.
void rope_table(int32_t pos, int64_t half, float base, float freq_scale, const float* freq_factors, float* cos_out,
                float* sin_out);

}  // namespace quarrel::cpu

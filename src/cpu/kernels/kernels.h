#pragma once
// The CPU kernel table. Every entry has a scalar reference (kernels_scalar(),
// scalar.cpp and scalar_float.cpp); each ISA file (x86_avx2_*.cpp,
// x86_avx512.cpp, arm_neon.cpp) overrides the entries it speeds up, and
// kernels_best() picks the table for this CPU once, by asking the CPU (cpuid),
// so one binary runs on any x86-64.
#include <cstdint>
#include <string_view>
#include <vector>

#include "tensor/dtype.h"

namespace quarrel::cpu {

constexpr int kMaxDType = 32;

// Dot product of one weight row with an activation row in vec_dot_type(t).
using VecDotFn = float (*)(const void* w, const void* a, int64_t n);
// Converts n floats to an activation format (Q8_0, Q8_1, Q8_K, F16, BF16, F32).
using QuantizeFn = void (*)(const float* x, void* y, int64_t n);
// Rows [r0, r1) of W times n_cols activation rows: out[c * out_stride + r] = dot(W[r], a[c]).
// Backends call this for GEMV (n_cols = 1) and prefill GEMM alike. Activation
// rows are in vec_dot_type(t) and start on a 4-byte boundary.
using MatmulFn = void (*)(const uint8_t* w, int64_t w_stride, int64_t r0, int64_t r1, int64_t n,
                          const uint8_t* a, int64_t a_stride, int64_t n_cols, float* out, int64_t out_stride);

// Attention of the query heads that share one KV head (GQA):
// out_h = softmax(q_h . K^T * scale) V over positions [0, n_pos).
// K is stored transposed, dimension-major, so SIMD lanes run over positions
// and each score sums its products in dimension order, as the reference does.
struct AttendArgs {
  const float* q = nullptr;  // [n_q][q_stride], head h at q + h * q_stride
  int64_t n_q = 1;           // query heads sharing this K/V head
  int64_t q_stride = 0;
  const float* k = nullptr;  // dimension d of position j at k[d * k_stride + j]
  int64_t k_stride = 0;      // >= n_pos
  const float* v = nullptr;  // position j at v + j * v_stride
  int64_t v_stride = 0;
  int64_t n_pos = 0;
  int64_t head_dim = 0;
  float scale = 1.0f;
  float* scores = nullptr;  // scratch: n_q * n_pos floats
  float* out = nullptr;     // [n_q][out_stride]
  int64_t out_stride = 0;
};

// MicroLoRA: a rank-r adapter y += scale * B (A x) with A [rank][d_in] and B
// stored transposed, [rank][d_out], so both are read along rows.
struct LoraArgs {
  const float* a = nullptr;
  const float* b = nullptr;
  int64_t rank = 1;
  int64_t d_in = 0;
  int64_t d_out = 0;
  float scale = 1.0f;
};

struct Kernels {
  std::string_view isa = "scalar";
  VecDotFn vec_dot[kMaxDType] = {};
  QuantizeFn quantize[kMaxDType] = {};
  MatmulFn matmul[kMaxDType] = {};
  // The same product on weights repacked by pack_rows (packed.h): w is the
  // packed matrix, w_stride the bytes of one group of 16 rows, and r0, r1 are
  // multiples of 16. Set for the types packable() accepts.
  MatmulFn matmul_packed[kMaxDType] = {};
  // Whether this table's packed kernel beats its plain one, so that a backend
  // should repack weights of that type at load (the scalar references never do).
  bool pack_weights[kMaxDType] = {};

  float (*dot_f32)(const float* x, const float* y, int64_t n) = nullptr;
  void (*axpy_f32)(float a, const float* x, float* y, int64_t n) = nullptr;  // y += a * x
  void (*add_f32)(float* y, const float* x, int64_t n) = nullptr;            // y += x
  // out = x / sqrt(mean(x^2) + eps) * w; squares summed in double, as ggml does.
  void (*rms_norm)(const float* x, const float* w, float eps, int64_t n, float* out) = nullptr;
  // out = (x - mean) / sqrt(var + eps) * w + b (b may be null).
  void (*layer_norm)(const float* x, const float* w, const float* b, float eps, int64_t n, float* out) = nullptr;
  // Rotates one head in place with a precomputed cos/sin table (half pairs):
  // adjacent pairs (llama) or the two halves (neox).
  void (*rope_apply)(float* x, const float* cos_t, const float* sin_t, int64_t half, bool neox) = nullptr;
  // gate = silu(gate) * up.
  void (*swiglu)(float* gate, const float* up, int64_t n) = nullptr;
  void (*attend)(const AttendArgs& args) = nullptr;
  // y += scale * B (A x).
  void (*lora_forward)(const LoraArgs& l, const float* x, float* y) = nullptr;
  // Exact gradients of loss through y = scale * B (A x), given x and g = dL/dy,
  // accumulated: dA += scale * (B^T g) x^T, dB += scale * g (A x)^T (both in
  // the layout of A and B).
  void (*lora_grad)(const LoraArgs& l, const float* x, const float* g, float* da, float* db) = nullptr;
  // Runs n rounds of independent FMAs at the ISA's widest vectors and returns
  // the float operations done: the FMA peak that GEMM efficiency is quoted
  // against (bench/).
  double (*fma_peak_probe)(int64_t n) = nullptr;
};

const Kernels& kernels_scalar();
const Kernels& kernels_best();
// Every table this CPU can run, scalar first and best last (for tests and benchmarks).
std::vector<const Kernels*> kernels_available();

// Each ISA file overrides the entries it speeds up. Call only when the CPU
// has the ISA (the dispatcher in dispatch.cpp checks).
void kernels_init_avx2(Kernels& k);
void kernels_init_avx512(Kernels& k);
void kernels_init_neon(Kernels& k);

inline int dtype_index(tensor::DType t) { return static_cast<int>(t) % kMaxDType; }

}  // namespace quarrel::cpu

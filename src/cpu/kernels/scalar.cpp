// The scalar kernel table: the tensor module's reference codecs, plus plain
// loops for float math. Every ISA kernel is tested against these.
#include <cmath>

#include "cpu/kernels/kernels.h"
#include "tensor/quants.h"

namespace quarrel::cpu {

namespace {

using tensor::DType;

template <DType T>
float vec_dot_ref(const void* w, const void* a, int64_t n) {
  return tensor::vec_dot(T, w, a, n);
}

template <DType T>
void quantize_ref(const float* x, void* y, int64_t n) {
  tensor::quantize_row(T, x, y, n);
}

template <DType T>
void matmul_ref(const uint8_t* w, int64_t w_stride, int64_t r0, int64_t r1, int64_t n, const uint8_t* a,
                int64_t a_stride, int64_t n_cols, float* out, int64_t out_stride) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < n_cols; ++c)
      out[c * out_stride + r] = tensor::vec_dot(T, w + r * w_stride, a + c * a_stride, n);
}

float dot_f32_ref(const float* x, const float* y, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

void axpy_f32_ref(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

template <DType T>
void add_weight_type(Kernels& k) {
  k.vec_dot[dtype_index(T)] = vec_dot_ref<T>;
  k.matmul[dtype_index(T)] = matmul_ref<T>;
}

template <DType T>
void add_act_type(Kernels& k) {
  k.quantize[dtype_index(T)] = quantize_ref<T>;
}

Kernels make_scalar() {
  Kernels k;
  k.isa = "scalar";
  add_weight_type<DType::F32>(k);
  add_weight_type<DType::F16>(k);
  add_weight_type<DType::BF16>(k);
  add_weight_type<DType::Q4_0>(k);
  add_weight_type<DType::Q4_1>(k);
  add_weight_type<DType::Q5_0>(k);
  add_weight_type<DType::Q5_1>(k);
  add_weight_type<DType::Q8_0>(k);
  add_weight_type<DType::Q2_K>(k);
  add_weight_type<DType::Q3_K>(k);
  add_weight_type<DType::Q4_K>(k);
  add_weight_type<DType::Q5_K>(k);
  add_weight_type<DType::Q6_K>(k);
  add_act_type<DType::F32>(k);
  add_act_type<DType::F16>(k);
  add_act_type<DType::BF16>(k);
  add_act_type<DType::Q8_0>(k);
  add_act_type<DType::Q8_1>(k);
  add_act_type<DType::Q8_K>(k);
  k.dot_f32 = dot_f32_ref;
  k.axpy_f32 = axpy_f32_ref;
  return k;
}

Kernels make_best() {
  Kernels k = make_scalar();
  // An ISA table overrides the scalar entries it speeds up and keeps the rest.
#if defined(QUARREL_HAVE_AVX2_KERNELS)
  kernels_init_avx2(k);
#endif
  return k;
}

}  // namespace

const Kernels& kernels_scalar() {
  static const Kernels k = make_scalar();
  return k;
}

const Kernels& kernels_best() {
  static const Kernels k = make_best();
  return k;
}

}  // namespace quarrel::cpu

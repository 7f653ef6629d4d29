// The scalar kernel table: the tensor module's reference codecs for weights
// and activations, plus the float references of scalar_float.cpp. Every ISA
// kernel is tested against these.
#include <vector>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/packed.h"
#include "cpu/kernels/scalar_float.h"
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

// Unpacks each row back to the file layout, then the reference dot product.
template <DType T>
void matmul_packed_ref(const uint8_t* w, int64_t /*w_stride: packed_group_bytes(T, n)*/, int64_t r0, int64_t r1,
                       int64_t n, const uint8_t* a, int64_t a_stride, int64_t n_cols, float* out, int64_t out_stride) {
  std::vector<uint8_t> row(tensor::row_bytes(T, n));
  for (int64_t r = r0; r < r1; ++r) {
    unpack_row(T, w, n, r, row.data());
    for (int64_t c = 0; c < n_cols; ++c) out[c * out_stride + r] = tensor::vec_dot(T, row.data(), a + c * a_stride, n);
  }
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

}  // namespace

Kernels make_scalar_kernels() {
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
  k.matmul_packed[dtype_index(DType::Q4_0)] = matmul_packed_ref<DType::Q4_0>;
  k.matmul_packed[dtype_index(DType::Q8_0)] = matmul_packed_ref<DType::Q8_0>;
  k.matmul_packed[dtype_index(DType::F16)] = matmul_packed_ref<DType::F16>;
  k.matmul_packed[dtype_index(DType::F32)] = matmul_packed_ref<DType::F32>;
  add_act_type<DType::F32>(k);
  add_act_type<DType::F16>(k);
  add_act_type<DType::BF16>(k);
  add_act_type<DType::Q8_0>(k);
  add_act_type<DType::Q8_1>(k);
  add_act_type<DType::Q8_K>(k);
  add_scalar_float_kernels(k);
  return k;
}

}  // namespace quarrel::cpu

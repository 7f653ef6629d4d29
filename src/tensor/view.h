#pragma once
// A read-only view of a 1-D or 2-D tensor stored row by row: `rows` rows of
// `cols` elements of `type`. Views point into a mapped file or a backend's copy.
#include <cstddef>
#include <cstdint>

#include "tensor/dtype.h"

namespace quarrel::tensor {

struct View {
  DType type = DType::F32;
  int64_t cols = 0;  // ne[0], the contiguous dimension
  int64_t rows = 0;  // ne[1]
  const uint8_t* data = nullptr;
  int64_t row_stride = 0;  // bytes between rows

  bool empty() const { return data == nullptr; }
  const uint8_t* row(int64_t r) const { return data + r * row_stride; }
  int64_t n_bytes() const { return rows * row_stride; }
};

}  // namespace quarrel::tensor

#include "tensor/dtype.h"

#include <array>
#include <cctype>

#include "common/error.h"

namespace quarrel::tensor {

namespace {

// Block geometry as ggml defines it (ggml.c type_traits): GGUF row sizes
// depend on these numbers, so they are not ours to change.
constexpr std::array<DTypeInfo, 15> kDTypes = {{
    {DType::F32, "f32", 1, 4},
    {DType::F16, "f16", 1, 2},
    {DType::Q4_0, "q4_0", 32, 18},
    {DType::Q4_1, "q4_1", 32, 20},
    {DType::Q5_0, "q5_0", 32, 22},
    {DType::Q5_1, "q5_1", 32, 24},
    {DType::Q8_0, "q8_0", 32, 34},
    {DType::Q8_1, "q8_1", 32, 36},
    {DType::Q2_K, "q2_K", 256, 84},
    {DType::Q3_K, "q3_K", 256, 110},
    {DType::Q4_K, "q4_K", 256, 144},
    {DType::Q5_K, "q5_K", 256, 176},
    {DType::Q6_K, "q6_K", 256, 210},
    {DType::Q8_K, "q8_K", 256, 292},
    {DType::BF16, "bf16", 1, 2},
}};

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

const DTypeInfo* dtype_find(uint32_t raw) {
  for (const DTypeInfo& info : kDTypes) {
    if (static_cast<uint32_t>(info.type) == raw) return &info;
  }
  return nullptr;
}

const DTypeInfo& dtype_info(DType t) {
  const DTypeInfo* info = dtype_find(static_cast<uint32_t>(t));
  if (info == nullptr) fail("unknown tensor type id {}", static_cast<uint32_t>(t));
  return *info;
}

DType dtype_from_name(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (equal_ignoring_case(info.name, name)) return info.type;
  }
  fail("unknown tensor type '{}'", name);
}

int64_t row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  if (n < 0 || n % info.block_size != 0) {
    fail("a row of {} elements is not a whole number of {} blocks of {}", n, info.name, info.block_size);
  }
  return n / info.block_size * info.type_size;
}

DType vec_dot_type(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return t;
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
      return DType::Q8_0;
    case DType::Q4_1:
    case DType::Q5_1:
      return DType::Q8_1;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return DType::Q8_K;
    case DType::Q8_1:
    case DType::Q8_K:
      break;
  }
  // Q8_1 and Q8_K only ever hold activations; ggml has no dot product with a
  // row of them as weights, and neither do we.
  fail("tensor type {} is not a weight format: it has no dot product", dtype_info(t).name);
}

}  // namespace quarrel::tensor

#pragma once
// Tensor element types with ggml's numeric ids (GGUF stores these ids) and
// block geometry. The block layouts themselves are in tensor/blocks.h.
#include <cstdint>
#include <string_view>

namespace quarrel::tensor {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

struct DTypeInfo {
  DType type;
  std::string_view name;
  int32_t block_size;  // elements per block
  int32_t type_size;   // bytes per block
};

// nullptr when raw is not a type quarrel knows.
const DTypeInfo* dtype_find(uint32_t raw);
const DTypeInfo& dtype_info(DType t);
inline std::string_view dtype_name(DType t) { return dtype_info(t).name; }
// Parses "f16", "Q8_0", ... (case-insensitive). Throws quarrel::Error if unknown.
DType dtype_from_name(std::string_view name);

// Bytes of a row of n elements; throws quarrel::Error when n is not a whole
// number of blocks.
int64_t row_bytes(DType t, int64_t n);

// The format activations are converted to before a dot product with a row of
// weights of type t, as ggml does: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1,
// Q8_K for the K-quants, F16 for F16, BF16 for BF16, F32 for F32.
DType vec_dot_type(DType t);

}  // namespace quarrel::tensor

#pragma once
// gguf::Writer builds a GGUF v3 image: metadata entries in the order they are
// added, then tensor infos, then aligned tensor data. Used by `quarrel synth`,
// `quarrel quantize` and by the tests that build corrupt files.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gguf/file.h"

namespace quarrel::gguf {

class Writer {
 public:
  explicit Writer(uint32_t alignment = 32) : alignment_(alignment) {}

  void set_u32(std::string_view key, uint32_t v);
  void set_i32(std::string_view key, int32_t v);
  void set_u64(std::string_view key, uint64_t v);
  void set_f32(std::string_view key, float v);
  void set_bool(std::string_view key, bool v);
  void set_string(std::string_view key, std::string_view v);
  void set_strings(std::string_view key, std::span<const std::string_view> v);
  void set_f32s(std::string_view key, std::span<const float> v);
  void set_i32s(std::string_view key, std::span<const int32_t> v);
  // Copies one entry of another file, whatever its type.
  void set_value(std::string_view key, const Value& v);

  // ne[0] is the row length. data must hold exactly the tensor's bytes.
  void add_tensor(std::string_view name, tensor::DType type, std::span<const int64_t> ne,
                  std::span<const uint8_t> data);
  // A tensor whose bytes are produced only while writing, row by row, so a
  // multi-gigabyte model never has to sit in memory. fill(row, dst) writes
  // row `row` (ne[0] elements of type) to dst.
  using RowFill = std::function<void(int64_t row, uint8_t* dst)>;
  void add_tensor_rows(std::string_view name, tensor::DType type, std::span<const int64_t> ne, RowFill fill);

  std::vector<uint8_t> to_bytes() const;
  void write(const std::string& path) const;  // throws quarrel::Error on I/O failure

 private:
  void put_key(std::string_view key, ValueType t);
  struct Tensor {
    std::string name;
    tensor::DType type;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data;  // empty when fill is set
    RowFill fill;
    uint64_t n_bytes = 0;
  };
  void emit(const std::function<void(const uint8_t*, size_t)>& out) const;
  uint32_t alignment_;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_bytes_;
  std::vector<Tensor> tensors_;
};

}  // namespace quarrel::gguf

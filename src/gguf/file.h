#pragma once
// gguf::File: a validated, memory-mapped GGUF (v2/v3) file. Opening checks every
// length, offset and shape against the file size; tensor data is never copied.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tensor/dtype.h"

namespace quarrel::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view value_type_name(ValueType t);

// An array value. Scalars of every numeric type are widened into one of the
// vectors below; strings are views into the mapped file.
struct Array {
  ValueType elem_type = ValueType::U8;
  std::vector<int64_t> ints;              // U8..I64 and BOOL
  std::vector<uint64_t> u64s;             // U64 (kept apart: may not fit int64)
  std::vector<double> floats;             // F32, F64
  std::vector<std::string_view> strings;  // STRING
  size_t size() const;
};

struct Value {
  ValueType type = ValueType::U8;
  std::variant<int64_t, uint64_t, double, bool, std::string_view, Array> data;
};

struct TensorInfo {
  std::string name;
  tensor::DType type = tensor::DType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension
  uint64_t offset = 0;           // from the start of the data section
  const uint8_t* data = nullptr; // into the mapping
  uint64_t n_bytes = 0;
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  std::string shape_string() const;  // "[288, 4096]"
};

struct KeyValue {
  std::string key;
  Value value;
};

class File {
 public:
  // Maps and validates path. Throws quarrel::Error naming the field and reason.
  static File open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). The bytes are copied once.
  static File from_bytes(std::span<const uint8_t> bytes);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }
  size_t file_size() const { return size_; }

  std::span<const KeyValue> metadata() const { return kvs_; }
  std::span<const TensorInfo> tensors() const { return tensors_; }

  const Value* find(std::string_view key) const;
  const TensorInfo* find_tensor(std::string_view name) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed getters. The optional is empty when the key is absent; a key that is
  // present with the wrong type throws quarrel::Error ("key 'x': expected ...").
  std::optional<int64_t> get_int(std::string_view key) const;      // any integer type
  std::optional<double> get_float(std::string_view key) const;     // F32/F64 (or integer)
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::string_view> get_string(std::string_view key) const;
  const Array* get_array(std::string_view key) const;  // nullptr when absent

 private:
  File();
  void parse();
  struct Mapping;
  std::unique_ptr<Mapping> map_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
  std::string path_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<KeyValue> kvs_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace quarrel::gguf

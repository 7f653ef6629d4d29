#pragma once
// Builds small valid GGUF models and corrupt variants of them, for the loader
// tests (tests/test_gguf.cpp) and the fuzz seeds (fuzz/seeds/fuzz_gguf/).
//
// A model is described as a GgufSpec: editable metadata and tensor shapes,
// written with gguf::Writer. Edits that a writer can express (wrong types,
// duplicates, shapes) are made on the spec; byte-level damage (truncation,
// bad counts, bad enums) is patched into the written image at offsets found
// by scan_layout().
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gguf/file.h"
#include "tensor/dtype.h"

namespace quarrel::test {

struct GgufSpec {
  struct Tensor {
    std::string name;
    tensor::DType type = tensor::DType::F32;
    std::vector<int64_t> ne;  // ne[0] is the row length
  };
  uint32_t alignment = 32;  // the layout the writer uses, whatever general.alignment says
  std::vector<std::pair<std::string, gguf::Value>> metadata;
  std::vector<Tensor> tensors;
  // Storage behind the string_views inside metadata values; shared so that a
  // copied spec can be edited without dangling views.
  std::shared_ptr<std::deque<std::string>> strings = std::make_shared<std::deque<std::string>>();

  std::string_view keep(std::string s);
  // Replaces the value of key, or appends the key when absent.
  void set(std::string_view key, gguf::Value v);
  void set_u32(std::string_view key, uint32_t v);
  void set_string(std::string_view key, std::string_view v);
  void remove(std::string_view key);
  Tensor& tensor(std::string_view name);  // throws std::out_of_range when absent
  void remove_tensor(std::string_view name);

  // Tensor bytes are a deterministic function of name and shape, so equal
  // specs give equal images.
  std::vector<uint8_t> to_bytes() const;
};

struct TinyModelOptions {
  std::string arch = "llama";  // llama, qwen2 (QKV bias), qwen3 (QK norm)
  std::string tokenizer = "llama";  // llama (SentencePiece) or gpt2 (byte-level BPE)
  int64_t n_layer = 1;
  int64_t n_embd = 8;
  int64_t n_head = 2;
  int64_t n_head_kv = 1;
  int64_t n_ff = 16;
  tensor::DType matrix_type = tensor::DType::F32;  // type of the 2-D weights
  bool tied_output = true;
};

// A complete, loadable model with a tokenizer: Model::from_file and
// Tokenizer::from_gguf accept it.
GgufSpec tiny_model_spec(const TinyModelOptions& o = {});

// Where each field of a GGUF image lies, found by walking a valid image.
struct GgufLayout {
  struct Kv {
    std::string key;
    size_t key_at = 0;    // the key's u64 length
    size_t type_at = 0;   // the u32 value type
    size_t value_at = 0;  // the value; for arrays the u32 element type, then the u64 count
    size_t end = 0;
  };
  struct Tensor {
    std::string name;
    size_t name_at = 0, n_dims_at = 0, dims_at = 0, type_at = 0, offset_at = 0;
    size_t data_at = 0, data_end = 0;  // absolute byte range of the tensor's data
  };
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;
  size_t infos_end = 0;  // end of the last tensor info (before padding)

  const Kv& kv(std::string_view key) const;
  size_t kv_index(std::string_view key) const;
  const Tensor& tensor(std::string_view name) const;
};
GgufLayout scan_layout(const std::vector<uint8_t>& bytes);

// Which loader must reject a case; the ones before it must accept it.
enum class Stage { File, Model, Tokenizer };

struct CorruptCase {
  std::string name;
  Stage stage = Stage::File;
  std::vector<std::string> expect;  // substrings of the error; the first names the field
  std::vector<uint8_t> bytes;
};

// At least 30 named cases covering every class of malformed file that the
// loader must reject with an error naming the field.
std::vector<CorruptCase> corrupt_cases();

}  // namespace quarrel::test

#pragma once
// Synthetic models: GGUF files with seeded random weights in the exact shape
// of a public model, so any shape can be benchmarked without downloading it.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tensor/dtype.h"

namespace quarrel::convert {

struct Shape {
  std::string_view name;
  int64_t n_layer, n_embd, n_head, n_head_kv, n_ff;
  int64_t n_ctx;
  float rope_base;
  bool tied;
  bool llama3_rope;  // writes rope_freqs.weight with Llama-3.1 scaling factors
};

std::span<const Shape> shapes();
const Shape& shape_find(std::string_view name);  // throws quarrel::Error listing the known names

// Writes out_path: the shape's tensors (type F32 or F16 for matrices; norms F32)
// with the vocabulary (every tokenizer.* key) of vocab_path.
void synth(const Shape& shape, const std::string& vocab_path, tensor::DType type, uint64_t seed,
           const std::string& out_path);

}  // namespace quarrel::convert

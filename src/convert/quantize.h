#pragma once
// quarrel quantize: re-encodes the weight matrices of a GGUF model with
// ggml's reference quantizers, so llama.cpp loads the output and computes the
// same logits. Norms, biases and other vectors stay F32.
#include <string>

#include "tensor/dtype.h"

namespace quarrel::convert {

// Supported targets: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16, F32.
void quantize(const std::string& in_path, const std::string& out_path, tensor::DType type);

// llama.cpp's general.file_type value for a model whose matrices are `type`.
uint32_t file_type_of(tensor::DType type);

}  // namespace quarrel::convert

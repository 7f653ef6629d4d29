#include "convert/quantize.h"

#include <vector>

#include "common/error.h"
#include "gguf/file.h"
#include "gguf/writer.h"
#include "tensor/quants.h"

namespace quarrel::convert {

using tensor::DType;

uint32_t file_type_of(DType type) {
  switch (type) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q4_1: return 3;
    case DType::Q8_0: return 7;
    case DType::Q5_0: return 8;
    case DType::Q5_1: return 9;
    case DType::BF16: return 32;
    default: fail("quantize: type {} is not a supported target (q8_0, q4_0, q4_1, q5_0, q5_1, f16, bf16, f32)",
                  tensor::dtype_name(type));
  }
}

void quantize(const std::string& in_path, const std::string& out_path, DType type) {
  const uint32_t ftype = file_type_of(type);
  gguf::File in = gguf::File::open(in_path);
  gguf::Writer w(static_cast<uint32_t>(in.alignment()));
  for (const auto& kv : in.metadata()) {
    if (kv.key == "general.file_type" || kv.key == "general.quantization_version") continue;
    w.set_value(kv.key, kv.value);
  }
  w.set_u32("general.file_type", ftype);
  w.set_u32("general.quantization_version", 2);
  const int block = tensor::dtype_info(type).block_size;
  for (const auto& t : in.tensors()) {
    std::span<const int64_t> ne(t.ne, t.n_dims);
    // Matrices are re-encoded; vectors (norms, biases, rope factors) and rows
    // that are not a whole number of blocks keep their type, as llama-quantize does.
    const bool convert = t.n_dims >= 2 && t.ne[0] % block == 0 && t.name.ends_with(".weight");
    if (!convert || t.type == type) {
      w.add_tensor(t.name, t.type, ne, {t.data, t.n_bytes});
      continue;
    }
    const int64_t cols = t.ne[0];
    const int64_t src_row = tensor::row_bytes(t.type, cols);
    const DType src_type = t.type;
    const uint8_t* src = t.data;
    std::vector<float> buf(cols);
    w.add_tensor_rows(t.name, type, ne, [=](int64_t r, uint8_t* dst) mutable {
      tensor::dequantize_row(src_type, src + r * src_row, buf.data(), cols);
      tensor::quantize_row(type, buf.data(), dst, cols);
    });
  }
  w.write(out_path);
}

}  // namespace quarrel::convert

#include "convert/synth.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "common/error.h"
#include "gguf/file.h"
#include "gguf/writer.h"
#include "tensor/quants.h"

namespace quarrel::convert {

namespace {

constexpr Shape kShapes[] = {
    {"smollm2-135m", 30, 576, 9, 3, 1536, 8192, 100000.0f, true, false},
    {"smollm2-360m", 32, 960, 15, 5, 2560, 8192, 100000.0f, true, false},
    {"llama-3.2-1b", 16, 2048, 32, 8, 8192, 131072, 500000.0f, true, true},
    {"tinyllama-1.1b", 22, 2048, 32, 4, 5632, 2048, 10000.0f, false, false},
    {"llama-2-7b", 32, 4096, 32, 32, 11008, 4096, 10000.0f, false, false},
    {"mistral-7b", 32, 4096, 32, 8, 14336, 32768, 1000000.0f, false, false},
};

// splitmix64: a fast, well-mixed generator; seeding it per row makes every
// row independent of write order.
uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform values with the given standard deviation.
void random_row(uint64_t seed, float stddev, float* out, int64_t n) {
  const float a = stddev * std::sqrt(3.0f);
  for (int64_t i = 0; i < n; ++i) {
    double u = static_cast<double>(splitmix(seed) >> 11) * 0x1.0p-53;
    out[i] = static_cast<float>((2 * u - 1) * a);
  }
}

// Llama 3.1 rope scaling (factor 32, low 1, high 4, original context 8192),
// expressed as per-pair frequency divisors the way GGUF files carry them.
std::vector<float> llama3_rope_factors(int64_t head_dim, float base) {
  const double factor = 32, low = 1, high = 4, orig = 8192;
  const double low_wavelen = orig / low, high_wavelen = orig / high;
  std::vector<float> f;
  for (int64_t i = 0; i < head_dim; i += 2) {
    double freq = 1.0 / std::pow(base, static_cast<double>(i) / head_dim);
    double wavelen = 2 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      f.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      f.push_back(static_cast<float>(factor));
    } else {
      double smooth = (orig / wavelen - low) / (high - low);
      f.push_back(static_cast<float>(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return f;
}

}  // namespace

std::span<const Shape> shapes() { return kShapes; }

const Shape& shape_find(std::string_view name) {
  std::string known;
  for (const auto& s : kShapes) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + std::string(s.name);
  }
  fail("unknown shape '{}' (known: {})", name, known);
}

void synth(const Shape& shape, const std::string& vocab_path, tensor::DType type, uint64_t seed,
           const std::string& out_path) {
  if (type != tensor::DType::F32 && type != tensor::DType::F16 && type != tensor::DType::BF16)
    fail("synth: type {} is not supported (use f32, f16 or bf16, then quantize)", tensor::dtype_name(type));
  gguf::File vocab = gguf::File::open(vocab_path);
  const gguf::Array* tokens = vocab.get_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->size() == 0) fail("'{}' has no tokenizer.ggml.tokens", vocab_path);
  const int64_t n_vocab = static_cast<int64_t>(tokens->size());
  const int64_t head_dim = shape.n_embd / shape.n_head;

  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", std::string("quarrel-synth-") + std::string(shape.name));
  w.set_u32("general.file_type", type == tensor::DType::F32 ? 0 : type == tensor::DType::F16 ? 1 : 32);
  w.set_u32("llama.block_count", static_cast<uint32_t>(shape.n_layer));
  w.set_u32("llama.context_length", static_cast<uint32_t>(shape.n_ctx));
  w.set_u32("llama.embedding_length", static_cast<uint32_t>(shape.n_embd));
  w.set_u32("llama.feed_forward_length", static_cast<uint32_t>(shape.n_ff));
  w.set_u32("llama.attention.head_count", static_cast<uint32_t>(shape.n_head));
  w.set_u32("llama.attention.head_count_kv", static_cast<uint32_t>(shape.n_head_kv));
  w.set_u32("llama.rope.dimension_count", static_cast<uint32_t>(head_dim));
  w.set_f32("llama.rope.freq_base", shape.rope_base);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32("llama.vocab_size", static_cast<uint32_t>(n_vocab));
  for (const auto& kv : vocab.metadata())
    if (kv.key.starts_with("tokenizer.")) w.set_value(kv.key, kv.value);

  uint64_t tensor_index = 0;
  auto matrix = [&](const std::string& name, int64_t cols, int64_t rows, float stddev) {
    const uint64_t tseed = seed * 0x100000001B3ull + (++tensor_index) * 0x9E3779B97F4A7C15ull;
    const int64_t ne[2] = {cols, rows};
    std::vector<float> buf(cols);
    w.add_tensor_rows(name, type, ne, [=](int64_t r, uint8_t* dst) mutable {
      random_row(tseed ^ (static_cast<uint64_t>(r) * 0xD6E8FEB86659FD93ull), stddev, buf.data(), cols);
      tensor::quantize_row(type, buf.data(), dst, cols);
    });
  };
  auto vector = [&](const std::string& name, std::vector<float> v) {
    const int64_t ne[1] = {static_cast<int64_t>(v.size())};
    w.add_tensor(name, tensor::DType::F32, ne,
                 {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)});
  };
  const int64_t q_dim = shape.n_head * head_dim, kv_dim = shape.n_head_kv * head_dim;
  matrix("token_embd.weight", shape.n_embd, n_vocab, 0.5f);
  vector("output_norm.weight", std::vector<float>(shape.n_embd, 1.0f));
  if (!shape.tied) matrix("output.weight", shape.n_embd, n_vocab, 0.02f);
  if (shape.llama3_rope) vector("rope_freqs.weight", llama3_rope_factors(head_dim, shape.rope_base));
  for (int64_t i = 0; i < shape.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    vector(p + "attn_norm.weight", std::vector<float>(shape.n_embd, 1.0f));
    matrix(p + "attn_q.weight", shape.n_embd, q_dim, 0.02f);
    matrix(p + "attn_k.weight", shape.n_embd, kv_dim, 0.02f);
    matrix(p + "attn_v.weight", shape.n_embd, kv_dim, 0.02f);
    matrix(p + "attn_output.weight", q_dim, shape.n_embd, 0.02f);
    vector(p + "ffn_norm.weight", std::vector<float>(shape.n_embd, 1.0f));
    matrix(p + "ffn_gate.weight", shape.n_embd, shape.n_ff, 0.02f);
    matrix(p + "ffn_up.weight", shape.n_embd, shape.n_ff, 0.02f);
    matrix(p + "ffn_down.weight", shape.n_ff, shape.n_embd, 0.02f);
  }
  w.write(out_path);
}

}  // namespace quarrel::convert

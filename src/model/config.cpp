#include "model/config.h"

#include <cmath>

#include "common/error.h"

namespace quarrel::model {

namespace {

constexpr ArchInfo kArchTable[] = {
    {.name = "llama"},
    {.name = "mistral"},
    {.name = "qwen2", .qkv_bias = true, .rope_neox = true},
    {.name = "qwen3", .qk_norm = true, .rope_neox = true},
};

// Bounds well past any real model; a value outside them is a corrupt or hostile file.
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxEmbd = 1 << 16;
constexpr int64_t kMaxHeads = 1024;
constexpr int64_t kMaxFF = 1 << 18;
constexpr int64_t kMaxCtx = 1 << 24;

int64_t require_int(const gguf::File& f, const std::string& key, int64_t lo, int64_t hi) {
  auto v = f.get_int(key);
  if (!v) fail("missing key '{}'", key);
  if (*v < lo || *v > hi) fail("key '{}': value {} is out of range [{}, {}]", key, *v, lo, hi);
  return *v;
}

}  // namespace

const ArchInfo* arch_find(std::string_view name) {
  for (const auto& a : kArchTable)
    if (a.name == name) return &a;
  return nullptr;
}

Config config_from_gguf(const gguf::File& f) {
  Config c;
  auto arch = f.get_string("general.architecture");
  if (!arch) fail("missing key 'general.architecture'");
  const ArchInfo* info = arch_find(*arch);
  if (!info) fail("unsupported architecture '{}'", *arch);
  c.arch = *info;
  const std::string p = std::string(*arch) + ".";

  c.n_layer = require_int(f, p + "block_count", 1, kMaxLayers);
  c.n_embd = require_int(f, p + "embedding_length", 1, kMaxEmbd);
  c.n_ff = require_int(f, p + "feed_forward_length", 1, kMaxFF);
  c.n_head = require_int(f, p + "attention.head_count", 1, kMaxHeads);
  c.n_head_kv = f.has(p + "attention.head_count_kv")
                    ? require_int(f, p + "attention.head_count_kv", 1, c.n_head)
                    : c.n_head;
  if (c.n_head % c.n_head_kv != 0)
    fail("head_count {} is not a multiple of head_count_kv {}", c.n_head, c.n_head_kv);
  c.n_ctx_train = f.has(p + "context_length") ? require_int(f, p + "context_length", 1, kMaxCtx) : 4096;
  if (f.has(p + "attention.key_length")) {
    c.head_dim = require_int(f, p + "attention.key_length", 2, 1024);
    if (f.has(p + "attention.value_length") &&
        require_int(f, p + "attention.value_length", 2, 1024) != c.head_dim)
      fail("key '{}attention.value_length' differs from key_length, which is not supported", p);
  } else {
    if (c.n_embd % c.n_head != 0) fail("embedding_length {} is not a multiple of head_count {}", c.n_embd, c.n_head);
    c.head_dim = c.n_embd / c.n_head;
  }
  if (c.head_dim % 2 != 0) fail("head dimension {} is odd", c.head_dim);
  c.n_rot = f.has(p + "rope.dimension_count") ? require_int(f, p + "rope.dimension_count", 2, c.head_dim)
                                              : c.head_dim;
  if (c.n_rot % 2 != 0) fail("key '{}rope.dimension_count': {} is odd", p, c.n_rot);

  if (auto eps = f.get_float(p + "attention.layer_norm_rms_epsilon")) {
    if (!(*eps > 0 && *eps < 1)) fail("key '{}attention.layer_norm_rms_epsilon': {} is out of range", p, *eps);
    c.rms_eps = static_cast<float>(*eps);
  }
  if (auto base = f.get_float(p + "rope.freq_base")) {
    if (!(*base > 1 && std::isfinite(*base))) fail("key '{}rope.freq_base': {} is out of range", p, *base);
    c.rope_base = static_cast<float>(*base);
  }
  // Linear scaling: from rope.scaling.factor when the type is linear (or unset),
  // or from the older rope.scale_linear key.
  std::string_view scaling_type = f.get_string(p + "rope.scaling.type").value_or("linear");
  auto factor = f.get_float(p + "rope.scaling.factor");
  if (!factor) factor = f.get_float(p + "rope.scale_linear");
  if (factor && *factor != 0 && scaling_type == "linear") {
    if (!(*factor > 0 && *factor < 1e4)) fail("key '{}rope.scaling.factor': {} is out of range", p, *factor);
    c.rope_freq_scale = static_cast<float>(1.0 / *factor);
  } else if (scaling_type != "none" && scaling_type != "linear" && scaling_type != "llama3") {
    fail("key '{}rope.scaling.type': '{}' is not supported", p, scaling_type);
  }

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) fail("missing tensor 'token_embd.weight'");
  c.n_vocab = embd->n_dims >= 2 ? embd->ne[1] : 0;
  if (c.n_vocab < 1 || c.n_vocab > kMaxVocab) fail("vocabulary size {} is out of range", c.n_vocab);
  if (const gguf::Array* toks = f.get_array("tokenizer.ggml.tokens")) {
    if (static_cast<int64_t>(toks->size()) != c.n_vocab)
      fail("tokenizer.ggml.tokens has {} entries but token_embd.weight has {} rows", toks->size(), c.n_vocab);
  }
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  c.has_rope_freqs = f.find_tensor("rope_freqs.weight") != nullptr;
  return c;
}

}  // namespace quarrel::model

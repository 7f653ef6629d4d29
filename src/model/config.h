#pragma once
// model::Config: the hyperparameters of one model, read from GGUF metadata and
// checked. Architecture variants are flags here, never a second forward pass.
#include <cstdint>
#include <string>

#include "gguf/file.h"

namespace quarrel::model {

// One row of the architecture table: what differs between Llama-family models.
struct ArchInfo {
  std::string_view name;       // value of general.architecture
  bool qkv_bias = false;       // attn_{q,k,v}.bias tensors (qwen2)
  bool qk_norm = false;        // attn_{q,k}_norm.weight per head (qwen3)
  bool rope_neox = false;      // rotate halves instead of adjacent pairs
};

const ArchInfo* arch_find(std::string_view name);

struct Config {
  ArchInfo arch;
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;       // per-head width of q and k (and v)
  int64_t n_ff = 0;
  int64_t n_rot = 0;          // dimensions rotated by RoPE (usually head_dim)
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / linear scaling factor
  bool tied_output = false;      // output.weight absent: reuse token_embd
  bool has_rope_freqs = false;   // rope_freqs.weight present (Llama 3.1+ scaling)

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  int64_t gqa_ratio() const { return n_head / n_head_kv; }
};

// Reads and checks the hyperparameters. Throws quarrel::Error naming the key.
Config config_from_gguf(const gguf::File& f);

}  // namespace quarrel::model

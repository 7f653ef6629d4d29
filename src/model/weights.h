#pragma once
// model::Weights: views of every tensor of a Llama-family model, with the shape
// each must have written next to it. Loading checks type and shape of each one
// and names the expected and actual values on a mismatch.
#include <vector>

#include "gguf/file.h"
#include "model/config.h"
#include "tensor/view.h"

namespace quarrel::model {

struct LayerWeights {
  tensor::View attn_norm;    // (n_embd) f32
  tensor::View wq;           // (n_embd, n_head * head_dim)
  tensor::View wk;           // (n_embd, n_head_kv * head_dim)
  tensor::View wv;           // (n_embd, n_head_kv * head_dim)
  tensor::View wo;           // (n_head * head_dim, n_embd)
  tensor::View bq, bk, bv;   // (q_dim), (kv_dim), (kv_dim) f32, when arch.qkv_bias
  tensor::View q_norm;       // (head_dim) f32, when arch.qk_norm
  tensor::View k_norm;       // (head_dim) f32, when arch.qk_norm
  tensor::View ffn_norm;     // (n_embd) f32
  tensor::View w_gate;       // (n_embd, n_ff)
  tensor::View w_up;         // (n_embd, n_ff)
  tensor::View w_down;       // (n_ff, n_embd)
};

struct Weights {
  tensor::View tok_embd;     // (n_embd, n_vocab)
  tensor::View output_norm;  // (n_embd) f32
  tensor::View output;       // (n_embd, n_vocab); tok_embd when tied
  tensor::View rope_freqs;   // (n_rot / 2) f32, when present
  std::vector<LayerWeights> layers;
};

// Finds and checks every tensor. Throws quarrel::Error on a missing tensor, a
// wrong shape or an unsupported type.
Weights weights_from_gguf(const gguf::File& f, const Config& c);

// Total bytes of weight data (what decode reads per token, less the embedding).
int64_t weights_bytes(const Weights& w);

}  // namespace quarrel::model

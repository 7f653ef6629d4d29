#include "model/weights.h"

#include <string>

#include "common/error.h"

namespace quarrel::model {

namespace {

using tensor::DType;

bool is_matrix_type(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q4_1:
    case DType::Q5_0: case DType::Q5_1: case DType::Q8_0: case DType::Q2_K: case DType::Q3_K:
    case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

std::string shape_str(int64_t a, int64_t b) {
  return b == 0 ? fmt::format("[{}]", a) : fmt::format("[{}, {}]", a, b);
}

// ne1 == 0 means a vector of ne0 elements, which must be F32.
tensor::View get(const gguf::File& f, const std::string& name, int64_t ne0, int64_t ne1, bool required = true) {
  const gguf::TensorInfo* t = f.find_tensor(name);
  if (!t) {
    if (required) fail("missing tensor '{}'", name);
    return {};
  }
  bool ok = ne1 == 0 ? (t->n_dims == 1 && t->ne[0] == ne0)
                     : (t->n_dims == 2 && t->ne[0] == ne0 && t->ne[1] == ne1);
  if (!ok) fail("tensor '{}': expected shape {}, found {}", name, shape_str(ne0, ne1), t->shape_string());
  if (ne1 == 0 && t->type != DType::F32)
    fail("tensor '{}': expected type f32, found {}", name, tensor::dtype_name(t->type));
  if (ne1 != 0 && !is_matrix_type(t->type))
    fail("tensor '{}': type {} is not supported for weights", name, tensor::dtype_name(t->type));
  tensor::View v;
  v.type = t->type;
  v.cols = t->ne[0];
  v.rows = ne1 == 0 ? 1 : t->ne[1];
  v.data = t->data;
  v.row_stride = tensor::row_bytes(t->type, t->ne[0]);
  return v;
}

}  // namespace

Weights weights_from_gguf(const gguf::File& f, const Config& c) {
  Weights w;
  w.tok_embd = get(f, "token_embd.weight", c.n_embd, c.n_vocab);
  w.output_norm = get(f, "output_norm.weight", c.n_embd, 0);
  w.output = c.tied_output ? w.tok_embd : get(f, "output.weight", c.n_embd, c.n_vocab);
  if (c.has_rope_freqs) w.rope_freqs = get(f, "rope_freqs.weight", c.n_rot / 2, 0);
  w.layers.resize(c.n_layer);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = fmt::format("blk.{}.", i);
    l.attn_norm = get(f, p + "attn_norm.weight", c.n_embd, 0);
    l.wq = get(f, p + "attn_q.weight", c.n_embd, c.q_dim());
    l.wk = get(f, p + "attn_k.weight", c.n_embd, c.kv_dim());
    l.wv = get(f, p + "attn_v.weight", c.n_embd, c.kv_dim());
    l.wo = get(f, p + "attn_output.weight", c.q_dim(), c.n_embd);
    if (c.arch.qkv_bias) {
      l.bq = get(f, p + "attn_q.bias", c.q_dim(), 0);
      l.bk = get(f, p + "attn_k.bias", c.kv_dim(), 0);
      l.bv = get(f, p + "attn_v.bias", c.kv_dim(), 0);
    }
    if (c.arch.qk_norm) {
      l.q_norm = get(f, p + "attn_q_norm.weight", c.head_dim, 0);
      l.k_norm = get(f, p + "attn_k_norm.weight", c.head_dim, 0);
    }
    l.ffn_norm = get(f, p + "ffn_norm.weight", c.n_embd, 0);
    l.w_gate = get(f, p + "ffn_gate.weight", c.n_embd, c.n_ff);
    l.w_up = get(f, p + "ffn_up.weight", c.n_embd, c.n_ff);
    l.w_down = get(f, p + "ffn_down.weight", c.n_ff, c.n_embd);
  }
  return w;
}

int64_t weights_bytes(const Weights& w) {
  int64_t n = w.output_norm.n_bytes() + w.rope_freqs.n_bytes() + w.output.n_bytes();
  for (const auto& l : w.layers) {
    for (const tensor::View* v : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.q_norm,
                                  &l.k_norm, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
      n += v->n_bytes();
  }
  return n;
}

}  // namespace quarrel::model

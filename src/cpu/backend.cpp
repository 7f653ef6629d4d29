#include "cpu/backend.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "common/error.h"
#include "cpu/kernels/kernels.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "tensor/quants.h"

namespace quarrel::cpu {

namespace {

using runtime::BatchEntry;
using tensor::DType;

class CpuBackend final : public runtime::Backend {
 public:
  CpuBackend(const model::Model& m, runtime::BackendOptions opts);
  std::string name() const override;
  const runtime::BackendOptions& options() const override { return opts_; }
  void forward(std::span<const BatchEntry> batch, float* logits) override;
  int64_t bytes_per_token(int64_t n_past) const override;

 private:
  void forward_thread(int ith, int nth);
  // Converts T rows of n floats (stride n) into act_ in type vt, split over threads.
  const uint8_t* quantize_rows(const float* x, int64_t T, int64_t n, DType vt, int ith, int nth);
  void matmul(const tensor::View& w, const float* x, int64_t T, float* out, int64_t out_stride, int ith, int nth);
  float* k_cache(int64_t layer, int64_t seq, int64_t pos) {
    return k_cache_.data() + ((layer * opts_.n_seq + seq) * opts_.n_ctx + pos) * c_.kv_dim();
  }
  float* v_cache(int64_t layer, int64_t seq, int64_t pos) {
    return v_cache_.data() + ((layer * opts_.n_seq + seq) * opts_.n_ctx + pos) * c_.kv_dim();
  }

  const model::Config& c_;
  const model::Weights& w_;
  runtime::BackendOptions opts_;
  const Kernels& kern_;
  ThreadPool pool_;

  // KV cache, F32 like the llama.cpp reference runs: [layer][seq][pos][kv_dim].
  std::vector<float> k_cache_, v_cache_;
  // Scratch for one batch, sized at load for n_batch tokens.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_;
  std::vector<float> rope_cos_, rope_sin_;  // [n_batch][n_rot / 2]
  std::vector<float> scores_;               // [n_threads][n_ctx]
  std::vector<uint8_t> act_;                // quantized activations
  std::vector<int32_t> out_rows_;           // batch rows that want logits

  // The batch being run.
  std::span<const BatchEntry> batch_;
  float* logits_ = nullptr;
};

CpuBackend::CpuBackend(const model::Model& m, runtime::BackendOptions opts)
    : c_(m.config), w_(m.weights), opts_(opts), kern_(kernels_best()), pool_(opts.n_threads) {
  const int64_t B = opts_.n_batch;
  const int64_t kv_elems = c_.n_layer * opts_.n_seq * opts_.n_ctx * c_.kv_dim();
  k_cache_.assign(kv_elems, 0.0f);
  v_cache_.assign(kv_elems, 0.0f);
  const int64_t wide = std::max({c_.n_embd, c_.q_dim(), c_.n_ff});
  x_.resize(B * c_.n_embd);
  xn_.resize(B * wide);
  q_.resize(B * c_.q_dim());
  k_.resize(B * c_.kv_dim());
  v_.resize(B * c_.kv_dim());
  attn_.resize(B * c_.q_dim());
  gate_.resize(B * c_.n_ff);
  up_.resize(B * c_.n_ff);
  rope_cos_.resize(B * c_.n_rot / 2);
  rope_sin_.resize(B * c_.n_rot / 2);
  scores_.resize(static_cast<size_t>(pool_.size()) * opts_.n_ctx);
  act_.resize(B * wide * sizeof(float) + 64);  // F32 is the widest activation format
  out_rows_.reserve(B);
}

std::string CpuBackend::name() const {
  return fmt::format("cpu ({}, {} threads)", kern_.isa, pool_.size());
}

int64_t CpuBackend::bytes_per_token(int64_t n_past) const {
  // Every weight but the embedding table is read once per token (the table is
  // read one row at a time; when tied, the output head reads it whole).
  int64_t bytes = model::weights_bytes(w_);
  bytes += 2 * c_.n_layer * n_past * c_.kv_dim() * static_cast<int64_t>(sizeof(float));
  return bytes;
}

const uint8_t* CpuBackend::quantize_rows(const float* x, int64_t T, int64_t n, DType vt, int ith, int nth) {
  const auto& info = tensor::dtype_info(vt);
  const int64_t nb = n / info.block_size;
  const int64_t row = nb * info.type_size;
  auto [b0, b1] = split_range(T * nb, ith, nth);
  QuantizeFn q = kern_.quantize[dtype_index(vt)];
  for (int64_t b = b0; b < b1;) {
    int64_t t = b / nb, jb = b % nb;
    int64_t run = std::min(nb - jb, b1 - b);
    q(x + t * n + jb * info.block_size, act_.data() + t * row + jb * info.type_size, run * info.block_size);
    b += run;
  }
  return act_.data();
}

void CpuBackend::matmul(const tensor::View& w, const float* x, int64_t T, float* out, int64_t out_stride,
                        int ith, int nth) {
  const DType vt = tensor::vec_dot_type(w.type);
  const uint8_t* a = quantize_rows(x, T, w.cols, vt, ith, nth);
  pool_.barrier();
  auto [r0, r1] = split_range(w.rows, ith, nth);
  if (r1 > r0)
    kern_.matmul[dtype_index(w.type)](w.data, w.row_stride, r0, r1, w.cols, a, tensor::row_bytes(vt, w.cols), T, out,
                                   out_stride);
  pool_.barrier();
}

void CpuBackend::forward(std::span<const BatchEntry> batch, float* logits) {
  runtime::validate_batch(batch, c_, opts_);
  batch_ = batch;
  logits_ = logits;
  out_rows_.clear();
  for (size_t i = 0; i < batch.size(); ++i)
    if (batch[i].want_logits) out_rows_.push_back(static_cast<int32_t>(i));
  pool_.run([this](int ith, int nth) { forward_thread(ith, nth); });
}

void CpuBackend::forward_thread(int ith, int nth) {
  const int64_t T = static_cast<int64_t>(batch_.size());
  const int64_t E = c_.n_embd, QD = c_.q_dim(), KVD = c_.kv_dim(), HD = c_.head_dim, FF = c_.n_ff;
  const int64_t half = c_.n_rot / 2;
  const float* freq_factors = w_.rope_freqs.empty() ? nullptr : reinterpret_cast<const float*>(w_.rope_freqs.data);

  // Embeddings and RoPE tables, one token per thread at a time.
  for (int64_t t = ith; t < T; t += nth) {
    tensor::dequantize_row(w_.tok_embd.type, w_.tok_embd.row(batch_[t].token), x_.data() + t * E, E);
    rope_table(batch_[t].pos, half, c_.rope_base, c_.rope_freq_scale, freq_factors, rope_cos_.data() + t * half,
               rope_sin_.data() + t * half);
  }
  pool_.barrier();

  for (int64_t il = 0; il < c_.n_layer; ++il) {
    const model::LayerWeights& L = w_.layers[il];
    for (int64_t t = ith; t < T; t += nth)
      rms_norm(x_.data() + t * E, L.attn_norm, c_.rms_eps, E, xn_.data() + t * E);
    pool_.barrier();
    matmul(L.wq, xn_.data(), T, q_.data(), QD, ith, nth);
    matmul(L.wk, xn_.data(), T, k_.data(), KVD, ith, nth);
    matmul(L.wv, xn_.data(), T, v_.data(), KVD, ith, nth);

    // Bias, QK-norm and RoPE per (token, head); then the new K/V go to the cache.
    const int64_t heads = c_.n_head + c_.n_head_kv;
    for (int64_t i = ith; i < T * heads; i += nth) {
      int64_t t = i / heads, h = i % heads;
      bool is_q = h < c_.n_head;
      float* v = is_q ? q_.data() + t * QD + h * HD : k_.data() + t * KVD + (h - c_.n_head) * HD;
      const tensor::View& bias = is_q ? L.bq : L.bk;
      if (!bias.empty()) add_bias(v, reinterpret_cast<const float*>(bias.data) + (is_q ? h : h - c_.n_head) * HD, HD);
      const tensor::View& qk_norm = is_q ? L.q_norm : L.k_norm;
      if (!qk_norm.empty()) rms_norm(v, qk_norm, c_.rms_eps, HD, v);
      rope_apply(v, rope_cos_.data() + t * half, rope_sin_.data() + t * half, half, c_.arch.rope_neox);
    }
    for (int64_t t = ith; t < T; t += nth) {
      if (!L.bv.empty()) add_bias(v_.data() + t * KVD, reinterpret_cast<const float*>(L.bv.data), KVD);
    }
    pool_.barrier();
    for (int64_t t = ith; t < T; t += nth) {
      std::copy_n(k_.data() + t * KVD, KVD, k_cache(il, batch_[t].seq, batch_[t].pos));
      std::copy_n(v_.data() + t * KVD, KVD, v_cache(il, batch_[t].seq, batch_[t].pos));
    }
    pool_.barrier();

    // Attention: each (token, head) attends to positions 0..pos of its sequence.
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
    float* scores = scores_.data() + static_cast<int64_t>(ith) * opts_.n_ctx;
    for (int64_t i = ith; i < T * c_.n_head; i += nth) {
      int64_t t = i / c_.n_head, h = i % c_.n_head, kvh = h / c_.gqa_ratio();
      const BatchEntry& e = batch_[t];
      attend(q_.data() + t * QD + h * HD, k_cache(il, e.seq, 0) + kvh * HD, v_cache(il, e.seq, 0) + kvh * HD, KVD,
             e.pos + 1, HD, scale, scores, attn_.data() + t * QD + h * HD, kern_);
    }
    pool_.barrier();
    matmul(L.wo, attn_.data(), T, xn_.data(), E, ith, nth);
    for (int64_t t = ith; t < T; t += nth) add_bias(x_.data() + t * E, xn_.data() + t * E, E);
    pool_.barrier();

    // Feed-forward: SwiGLU.
    for (int64_t t = ith; t < T; t += nth)
      rms_norm(x_.data() + t * E, L.ffn_norm, c_.rms_eps, E, xn_.data() + t * E);
    pool_.barrier();
    matmul(L.w_gate, xn_.data(), T, gate_.data(), FF, ith, nth);
    matmul(L.w_up, xn_.data(), T, up_.data(), FF, ith, nth);
    for (int64_t t = ith; t < T; t += nth) swiglu(gate_.data() + t * FF, up_.data() + t * FF, FF);
    pool_.barrier();
    matmul(L.w_down, gate_.data(), T, xn_.data(), E, ith, nth);
    for (int64_t t = ith; t < T; t += nth) add_bias(x_.data() + t * E, xn_.data() + t * E, E);
    pool_.barrier();
  }

  // Output head for the rows that want logits.
  const int64_t n_out = static_cast<int64_t>(out_rows_.size());
  if (n_out == 0) return;
  for (int64_t i = ith; i < n_out; i += nth)
    rms_norm(x_.data() + out_rows_[i] * E, w_.output_norm, c_.rms_eps, E, xn_.data() + i * E);
  pool_.barrier();
  matmul(w_.output, xn_.data(), n_out, logits_, c_.n_vocab, ith, nth);
}

}  // namespace

int physical_cores() {
  // Count distinct (package, core) pairs; fall back to the logical count.
  std::set<std::pair<int, int>> cores;
  for (unsigned cpu = 0;; ++cpu) {
    std::ifstream core("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/core_id");
    std::ifstream pkg("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/physical_package_id");
    int c = 0, p = 0;
    if (!(core >> c) || !(pkg >> p)) break;
    cores.insert({p, c});
  }
  int n = static_cast<int>(cores.size());
  if (n == 0) n = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(n, 1);
}

std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts) {
  if (opts.n_threads <= 0) opts.n_threads = physical_cores();
  if (opts.n_threads > 256) fail("--threads {} is out of range (1..256)", opts.n_threads);
  return std::make_unique<CpuBackend>(m, opts);
}

}  // namespace quarrel::cpu

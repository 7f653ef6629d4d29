#include "cpu/backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <set>
#include <thread>
#include <vector>

#include "common/error.h"
#include "cpu/kernels/kernels.h"
#include "cpu/kernels/packed.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "tensor/quants.h"

namespace quarrel::cpu {

namespace {

using runtime::BatchEntry;
using tensor::DType;

// Up to this many activation elements (tokens x row width), every thread
// converts a matmul's whole input itself instead of sharing the work and
// meeting at a barrier: duplicating a few microseconds of work is cheaper than
// one barrier, and decode then needs five barriers per layer.
constexpr int64_t kPrivateElems = 32768;

// A weight matrix as the kernels take it: the file's rows, and a copy packed
// at load (packed.h) when the kernel table does better on that layout.
struct Matrix {
  tensor::View view;
  const uint8_t* packed = nullptr;
  int64_t group_bytes = 0;
  // Rows [r0, r1) of thread ith: whole 16-row groups when packed.
  std::pair<int64_t, int64_t> split(int64_t rows, int ith, int nth) const {
    if (!packed) return split_range(rows, ith, nth);
    auto [g0, g1] = split_range(rows / kPackRows, ith, nth);
    return {g0 * kPackRows, g1 * kPackRows};
  }
};

struct LayerMatrices {
  Matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

class CpuBackend final : public runtime::Backend {
 public:
  CpuBackend(const model::Model& m, runtime::BackendOptions opts, const Kernels& kernels);
  std::string name() const override;
  const runtime::BackendOptions& options() const override { return opts_; }
  const model::Config& config() const override { return c_; }
  void forward(std::span<const BatchEntry> batch, float* logits) override;
  int64_t bytes_per_token(int64_t n_past) const override;
  double barrier_wait_seconds() const { return pool_.wait_seconds(); }

 private:
  // An activation matrix ready for matmuls with one weight type: T rows of
  // `stride` bytes in vec_dot_type.
  struct Act {
    const uint8_t* data;
    int64_t stride;
  };

  void forward_thread(int ith, int nth);
  void attention_block(int64_t il, int ith, int nth);
  void ffn_block(int64_t il, int ith, int nth);
  // Optionally RMS-normalizes (norm non-empty) and converts T rows of n floats
  // (row stride xs) to vt. Small inputs are converted by every thread into
  // its own buffer; large ones are split across threads, with a barrier.
  Act activations(const float* x, int64_t xs, int64_t T, int64_t n, const tensor::View& norm, DType vt, int ith,
                  int nth);
  // The activations last converted, and their format.
  struct ActCache {
    Act act;
    DType type;
  };
  // cur.act if it is already in the format weights of type wt want; otherwise
  // converts again (after a barrier when the shared buffer is in use).
  Act reconvert(ActCache& cur, const float* x, int64_t xs, int64_t T, int64_t n, const tensor::View& norm, DType wt,
                int ith, int nth);
  void matmul(const Matrix& w, Act a, int64_t T, int64_t r0, int64_t r1, float* out, int64_t out_stride) const;
  // Packs every matrix the kernel table wants packed (whole-row-group shapes
  // only; Q/K/V also need 16 | head_dim, as they are split by heads).
  void pack_weights();
  // x[t][r0..r1) += proj[t][r0..r1): each thread adds the rows it computed.
  void add_rows(int64_t T, int64_t r0, int64_t r1);

  // K of (layer, seq), transposed: dimension d of KV head h at row h * head_dim + d.
  float* k_cache(int64_t layer, int64_t seq) {
    return k_cache_.get() + (layer * opts_.n_seq + seq) * c_.kv_dim() * k_stride_;
  }
  float* v_cache(int64_t layer, int64_t seq, int64_t pos) {
    return v_cache_.data() + ((layer * opts_.n_seq + seq) * opts_.n_ctx + pos) * c_.kv_dim();
  }

  const model::Config& c_;
  const model::Weights& w_;
  runtime::BackendOptions opts_;
  const Kernels kern_;  // a copy: the caller's table may be a temporary
  ThreadPool pool_;
  std::vector<LayerMatrices> mats_;
  Matrix output_;
  std::unique_ptr<uint8_t, FreeDeleter> packed_;  // every packed copy, 64-byte aligned

  // KV cache, F32 like the llama.cpp reference runs. K is transposed,
  // [layer][seq][kv_dim][k_stride_], so attention scores run along positions;
  // V is [layer][seq][pos][kv_dim].
  // K is 64-byte aligned, so that every row starts a cache line.
  std::unique_ptr<float, FreeDeleter> k_cache_;
  std::vector<float> v_cache_;
  // A K row's floats: n_ctx rounded up to a cache line, plus one line. A
  // score reads one line from each of head_dim rows; rows a power of two
  // apart fall into a few L1 sets and evict each other (measured on Zen 3,
  // head_dim 128 at 256 positions: 13 us with a 1 KiB stride, 5.7 us padded).
  int64_t k_stride_ = 0;
  // Scratch for one batch, sized at load for n_batch tokens.
  std::vector<float> x_, xn_, q_, k_, v_, attn_, gate_, up_, proj_;
  std::vector<float> rope_cos_, rope_sin_;  // [n_batch][n_rot / 2]
  std::vector<float> scores_;               // [n_threads][gqa_ratio * n_ctx]
  std::vector<uint8_t> act_;                // shared converted activations
  std::vector<float> priv_x_;               // [n_threads][kPrivateElems]
  std::vector<uint8_t> priv_act_;           // [n_threads][priv_act_bytes_]
  int64_t priv_act_bytes_ = 0;
  std::vector<int32_t> out_rows_;           // batch rows that want logits

  // The batch being run.
  std::span<const BatchEntry> batch_;
  float* logits_ = nullptr;
};

CpuBackend::CpuBackend(const model::Model& m, runtime::BackendOptions opts, const Kernels& kernels)
    : c_(m.config), w_(m.weights), opts_(opts), kern_(kernels), pool_(opts.n_threads) {
  const int64_t B = opts_.n_batch;
  const int64_t kv_elems = c_.n_layer * opts_.n_seq * opts_.n_ctx * c_.kv_dim();
  k_stride_ = (opts_.n_ctx + 15) / 16 * 16 + 16;
  const size_t k_bytes = sizeof(float) * c_.n_layer * opts_.n_seq * c_.kv_dim() * k_stride_;
  k_cache_.reset(static_cast<float*>(std::aligned_alloc(64, k_bytes)));
  if (!k_cache_) throw std::bad_alloc();
  std::memset(k_cache_.get(), 0, k_bytes);
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
  proj_.resize(B * c_.n_embd);
  rope_cos_.resize(B * c_.n_rot / 2);
  rope_sin_.resize(B * c_.n_rot / 2);
  scores_.resize(static_cast<size_t>(pool_.size()) * c_.gqa_ratio() * opts_.n_ctx);
  // F32 is the widest activation format; 64 bytes of slack per row keep any
  // block format's rows in bounds.
  act_.resize(B * (wide * sizeof(float) + 64));
  priv_x_.resize(static_cast<size_t>(pool_.size()) * kPrivateElems);
  priv_act_bytes_ = kPrivateElems * static_cast<int64_t>(sizeof(float)) + 64 * B;
  priv_act_.resize(static_cast<size_t>(pool_.size()) * priv_act_bytes_);
  out_rows_.reserve(B);
  pack_weights();
}

void CpuBackend::pack_weights() {
  mats_.resize(c_.n_layer);
  std::vector<Matrix*> to_pack;
  auto add = [&](Matrix& m, const tensor::View& v, bool by_heads) {
    m.view = v;
    const bool shape_ok = v.rows % kPackRows == 0 && (!by_heads || c_.head_dim % kPackRows == 0);
    if (kern_.pack_weights[dtype_index(v.type)] && packable_rows(v.type, v.cols) && shape_ok) to_pack.push_back(&m);
  };
  for (int64_t il = 0; il < c_.n_layer; ++il) {
    const model::LayerWeights& L = w_.layers[il];
    LayerMatrices& M = mats_[il];
    add(M.wq, L.wq, true);
    add(M.wk, L.wk, true);
    add(M.wv, L.wv, true);
    add(M.wo, L.wo, false);
    add(M.w_gate, L.w_gate, false);
    add(M.w_up, L.w_up, false);
    add(M.w_down, L.w_down, false);
  }
  add(output_, w_.output, false);
  if (to_pack.empty()) return;
  int64_t total = 0;
  for (Matrix* m : to_pack) {
    m->group_bytes = packed_group_bytes(m->view.type, m->view.cols);
    total += m->view.rows / kPackRows * m->group_bytes;
  }
  // Decode streams these bytes once per token: on 2 MiB pages (transparent
  // huge pages, where the kernel offers them on request) a thread's reads
  // cross a page, and wait on a page walk, 512 times less often.
  constexpr int64_t kHugePage = int64_t{2} << 20;
  const int64_t bytes = (total + kHugePage - 1) / kHugePage * kHugePage;
  uint8_t* buf = static_cast<uint8_t*>(std::aligned_alloc(kHugePage, bytes));
  if (!buf) fail("out of memory packing {} MiB of weights", total >> 20);
#ifdef MADV_HUGEPAGE
  madvise(buf, bytes, MADV_HUGEPAGE);  // advice only: 4 KiB pages if refused
#endif
  packed_.reset(buf);
  for (Matrix* m : to_pack) {
    m->packed = buf;
    buf += m->view.rows / kPackRows * m->group_bytes;
  }
  // Pack in parallel: each thread takes its share of every matrix's groups.
  pool_.run([&](int ith, int nth) {
    for (Matrix* m : to_pack) {
      auto [g0, g1] = split_range(m->view.rows / kPackRows, ith, nth);
      const int64_t r0 = g0 * kPackRows;
      pack_rows(m->view.type, m->view.data + r0 * m->view.row_stride, m->view.row_stride, (g1 - g0) * kPackRows,
                m->view.cols, const_cast<uint8_t*>(m->packed) + g0 * m->group_bytes);
    }
  });
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

CpuBackend::Act CpuBackend::activations(const float* x, int64_t xs, int64_t T, int64_t n, const tensor::View& norm,
                                        DType vt, int ith, int nth) {
  const int64_t row = tensor::row_bytes(vt, n);
  const QuantizeFn quantize = kern_.quantize[dtype_index(vt)];
  const float* nw = norm.empty() ? nullptr : reinterpret_cast<const float*>(norm.data);
  if (T * n <= kPrivateElems) {
    float* tmp = priv_x_.data() + static_cast<int64_t>(ith) * kPrivateElems;
    uint8_t* dst = priv_act_.data() + ith * priv_act_bytes_;
    for (int64_t t = 0; t < T; ++t) {
      const float* src = x + t * xs;
      if (nw) {
        kern_.rms_norm(src, nw, c_.rms_eps, n, tmp);
        src = tmp;
      }
      quantize(src, dst + t * row, n);
    }
    return {dst, row};
  }
  for (int64_t t = ith; t < T; t += nth) {
    const float* src = x + t * xs;
    if (nw) {
      kern_.rms_norm(src, nw, c_.rms_eps, n, xn_.data() + t * n);
      src = xn_.data() + t * n;
    }
    quantize(src, act_.data() + t * row, n);
  }
  pool_.barrier();
  return {act_.data(), row};
}

CpuBackend::Act CpuBackend::reconvert(ActCache& cur, const float* x, int64_t xs, int64_t T, int64_t n,
                                      const tensor::View& norm, DType wt, int ith, int nth) {
  const DType vt = tensor::vec_dot_type(wt);
  if (vt == cur.type) return cur.act;
  if (T * n > kPrivateElems) pool_.barrier();  // other threads may still read the shared buffer
  cur = {activations(x, xs, T, n, norm, vt, ith, nth), vt};
  return cur.act;
}

void CpuBackend::matmul(const Matrix& m, Act a, int64_t T, int64_t r0, int64_t r1, float* out,
                        int64_t out_stride) const {
  if (r1 <= r0) return;
  const tensor::View& w = m.view;
  if (m.packed)
    kern_.matmul_packed[dtype_index(w.type)](m.packed, m.group_bytes, r0, r1, w.cols, a.data, a.stride, T, out,
                                             out_stride);
  else
    kern_.matmul[dtype_index(w.type)](w.data, w.row_stride, r0, r1, w.cols, a.data, a.stride, T, out, out_stride);
}

void CpuBackend::add_rows(int64_t T, int64_t r0, int64_t r1) {
  const int64_t E = c_.n_embd;
  for (int64_t t = 0; t < T; ++t) kern_.add_f32(x_.data() + t * E + r0, proj_.data() + t * E + r0, r1 - r0);
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

// Q, K and V, split across threads by whole heads so that each thread can
// finish its own heads (bias, QK-norm, RoPE, KV-cache write) without waiting;
// then attention, then the output projection added into the residual.
void CpuBackend::attention_block(int64_t il, int ith, int nth) {
  const model::LayerWeights& L = w_.layers[il];
  const int64_t T = static_cast<int64_t>(batch_.size());
  const int64_t E = c_.n_embd, QD = c_.q_dim(), KVD = c_.kv_dim(), HD = c_.head_dim;
  const int64_t NH = c_.n_head, NKV = c_.n_head_kv, half = c_.n_rot / 2;

  const Act a = activations(x_.data(), E, T, E, L.attn_norm, tensor::vec_dot_type(L.wq.type), ith, nth);
  auto [h0, h1] = split_range(NH + 2 * NKV, ith, nth);
  const int64_t q0 = std::clamp<int64_t>(h0, 0, NH), q1 = std::clamp<int64_t>(h1, 0, NH);
  const int64_t k0 = std::clamp<int64_t>(h0 - NH, 0, NKV), k1 = std::clamp<int64_t>(h1 - NH, 0, NKV);
  const int64_t v0 = std::clamp<int64_t>(h0 - NH - NKV, 0, NKV), v1 = std::clamp<int64_t>(h1 - NH - NKV, 0, NKV);
  const LayerMatrices& M = mats_[il];
  matmul(M.wq, a, T, q0 * HD, q1 * HD, q_.data(), QD);
  // K and V may want another activation format than Q (mixed quantizations).
  ActCache cur{a, tensor::vec_dot_type(L.wq.type)};
  auto run = [&](const Matrix& w, int64_t r0, int64_t r1, float* out, int64_t os) {
    matmul(w, reconvert(cur, x_.data(), E, T, E, L.attn_norm, w.view.type, ith, nth), T, r0, r1, out, os);
  };
  run(M.wk, k0 * HD, k1 * HD, k_.data(), KVD);
  run(M.wv, v0 * HD, v1 * HD, v_.data(), KVD);

  const float* bq = L.bq.empty() ? nullptr : reinterpret_cast<const float*>(L.bq.data);
  const float* bk = L.bk.empty() ? nullptr : reinterpret_cast<const float*>(L.bk.data);
  const float* bv = L.bv.empty() ? nullptr : reinterpret_cast<const float*>(L.bv.data);
  const float* qn = L.q_norm.empty() ? nullptr : reinterpret_cast<const float*>(L.q_norm.data);
  const float* kn = L.k_norm.empty() ? nullptr : reinterpret_cast<const float*>(L.k_norm.data);
  for (int64_t t = 0; t < T; ++t) {
    const float* cs = rope_cos_.data() + t * half;
    const float* sn = rope_sin_.data() + t * half;
    for (int64_t h = q0; h < q1; ++h) {
      float* v = q_.data() + t * QD + h * HD;
      if (bq) kern_.add_f32(v, bq + h * HD, HD);
      if (qn) kern_.rms_norm(v, qn, c_.rms_eps, HD, v);
      kern_.rope_apply(v, cs, sn, half, c_.arch.rope_neox);
    }
    float* kc = k_cache(il, batch_[t].seq) + batch_[t].pos;
    float* vc = v_cache(il, batch_[t].seq, batch_[t].pos);
    for (int64_t h = k0; h < k1; ++h) {
      float* v = k_.data() + t * KVD + h * HD;
      if (bk) kern_.add_f32(v, bk + h * HD, HD);
      if (kn) kern_.rms_norm(v, kn, c_.rms_eps, HD, v);
      kern_.rope_apply(v, cs, sn, half, c_.arch.rope_neox);
      for (int64_t d = 0; d < HD; ++d) kc[(h * HD + d) * k_stride_] = v[d];
    }
    for (int64_t h = v0; h < v1; ++h) {
      float* v = v_.data() + t * KVD + h * HD;
      if (bv) kern_.add_f32(v, bv + h * HD, HD);
      std::copy_n(v, HD, vc + h * HD);
    }
  }
  pool_.barrier();

  // Each (token, query head) attends to positions 0..pos of its sequence;
  // neighbouring heads that share a KV head go to the kernel together. A
  // token's cost grows with its position, so with tokens enough to go round
  // they are dealt out in turn (all heads of a token to one thread); decode
  // splits the heads.
  const int64_t G = c_.gqa_ratio();
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  float* scores = scores_.data() + static_cast<int64_t>(ith) * G * opts_.n_ctx;
  const bool by_token = T >= nth;
  auto [i0, i1] = by_token ? std::pair<int64_t, int64_t>{0, T * NH} : split_range(T * NH, ith, nth);
  for (int64_t i = i0; i < i1;) {
    const int64_t t = i / NH, h = i % NH, kvh = h / G;
    if (by_token && t % nth != ith) {
      i = (t + 1) * NH;
      continue;
    }
    const int64_t n_q = std::min(i1 - i, (kvh + 1) * G - h);
    const BatchEntry& e = batch_[t];
    AttendArgs args;
    args.q = q_.data() + t * QD + h * HD;
    args.n_q = n_q;
    args.q_stride = HD;
    args.k = k_cache(il, e.seq) + kvh * HD * k_stride_;
    args.k_stride = k_stride_;
    args.v = v_cache(il, e.seq, 0) + kvh * HD;
    args.v_stride = KVD;
    args.n_pos = e.pos + 1;
    args.head_dim = HD;
    args.scale = scale;
    args.scores = scores;
    args.out = attn_.data() + t * QD + h * HD;
    args.out_stride = HD;
    kern_.attend(args);
    i += n_q;
  }
  pool_.barrier();

  const Act ao = activations(attn_.data(), QD, T, QD, {}, tensor::vec_dot_type(L.wo.type), ith, nth);
  auto [r0, r1] = M.wo.split(E, ith, nth);
  matmul(M.wo, ao, T, r0, r1, proj_.data(), E);
  add_rows(T, r0, r1);
  pool_.barrier();
}

// SwiGLU: each thread computes the same rows of gate and up and applies the
// SiLU product to them while they are in cache; then the down projection.
void CpuBackend::ffn_block(int64_t il, int ith, int nth) {
  const model::LayerWeights& L = w_.layers[il];
  const int64_t T = static_cast<int64_t>(batch_.size());
  const int64_t E = c_.n_embd, FF = c_.n_ff;

  const Act a = activations(x_.data(), E, T, E, L.ffn_norm, tensor::vec_dot_type(L.w_gate.type), ith, nth);
  const LayerMatrices& M = mats_[il];
  // Gate and up share rows (the SwiGLU pairs them), so both take the
  // packed split when either is packed; a plain kernel takes any rows.
  auto [f0, f1] = (M.w_gate.packed ? M.w_gate : M.w_up).split(FF, ith, nth);
  matmul(M.w_gate, a, T, f0, f1, gate_.data(), FF);
  ActCache cur{a, tensor::vec_dot_type(L.w_gate.type)};
  matmul(M.w_up, reconvert(cur, x_.data(), E, T, E, L.ffn_norm, L.w_up.type, ith, nth), T, f0, f1, up_.data(), FF);
  for (int64_t t = 0; t < T; ++t) kern_.swiglu(gate_.data() + t * FF + f0, up_.data() + t * FF + f0, f1 - f0);
  pool_.barrier();

  const Act ad = activations(gate_.data(), FF, T, FF, {}, tensor::vec_dot_type(L.w_down.type), ith, nth);
  auto [r0, r1] = M.w_down.split(E, ith, nth);
  matmul(M.w_down, ad, T, r0, r1, proj_.data(), E);
  add_rows(T, r0, r1);
  pool_.barrier();
}

void CpuBackend::forward_thread(int ith, int nth) {
  const int64_t T = static_cast<int64_t>(batch_.size());
  const int64_t E = c_.n_embd;
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
    attention_block(il, ith, nth);
    ffn_block(il, ith, nth);
  }

  // Output head for the rows that want logits.
  const int64_t n_out = static_cast<int64_t>(out_rows_.size());
  if (n_out == 0) return;
  // Gather the rows first when they are not simply the last n_out rows.
  const float* src = x_.data() + (T - n_out) * E;
  bool tail = true;
  for (int64_t i = 0; i < n_out; ++i) tail = tail && out_rows_[i] == T - n_out + i;
  if (!tail) {
    for (int64_t i = ith; i < n_out; i += nth) std::copy_n(x_.data() + out_rows_[i] * E, E, proj_.data() + i * E);
    pool_.barrier();
    src = proj_.data();
  }
  const Act a = activations(src, E, n_out, E, w_.output_norm, tensor::vec_dot_type(w_.output.type), ith, nth);
  auto [r0, r1] = output_.split(c_.n_vocab, ith, nth);
  matmul(output_, a, n_out, r0, r1, logits_, c_.n_vocab);
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

std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts,
                                               const Kernels& kernels) {
  if (opts.n_threads <= 0) opts.n_threads = physical_cores();
  if (opts.n_threads > 256) fail("--threads {} is out of range (1..256)", opts.n_threads);
  return std::make_unique<CpuBackend>(m, opts, kernels);
}

std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts) {
  return make_backend(m, opts, kernels_best());
}

double barrier_wait_seconds(const runtime::Backend& b) {
  const auto* cpu = dynamic_cast<const CpuBackend*>(&b);
  return cpu ? cpu->barrier_wait_seconds() : 0.0;
}

}  // namespace quarrel::cpu

// The CUDA backend: weights resident in device memory in their own format,
// an F32 (or F16) KV cache, decode as one captured CUDA graph (the embedding,
// one persistent kernel for all layers where the weight types allow, else
// five fused kernels per layer, then the output head with argmax), prefill
// through cuBLAS.
#include "cuda/backend.h"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>
#include <vector>

#include "cpu/ops.h"
#include "cuda/attention.cuh"
#include "cuda/common.cuh"
#include "cuda/decode_fused.cuh"
#include "cuda/matvec.cuh"
#include "cuda/prefill.cuh"
#include "cuda/qdot.cuh"
#include "runtime/sampler.h"

namespace quarrel::cuda {

namespace {

using runtime::BatchEntry;
using tensor::DType;

struct DevMatrix {
  DType type = DType::F32;
  int rows = 0, cols = 0;
  int64_t row_bytes = 0;
  const uint8_t* data = nullptr;
};

struct DevLayer {
  DevMatrix wqkv;                 // q, k and v rows stacked: (n_embd, q_dim + 2 kv_dim)
  DevMatrix wq, wk, wv;           // views into wqkv, or their own copies when types differ
  DevMatrix w_gate_up;            // gate and up rows stacked: (n_embd, 2 n_ff)
  DevMatrix wo, w_gate, w_up, w_down;  // w_gate and w_up: views into w_gate_up
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float* bias_qkv = nullptr;  // q_dim + 2 kv_dim, or null
};

class DeviceArena {
 public:
  ~DeviceArena() {
    for (void* p : blocks_) cudaFree(p);
  }
  template <typename T>
  T* alloc(size_t count) {
    void* p = nullptr;
    if (count == 0) count = 1;
    // 16 bytes of slack: the persistent kernel copies quantized rows in
    // aligned 16-byte pieces, which may reach past the last row's end.
    QUARREL_CUDA_CHECK(cudaMalloc(&p, count * sizeof(T) + 16));
    blocks_.push_back(p);
    return static_cast<T*>(p);
  }

 private:
  std::vector<void*> blocks_;
};

class CudaBackend final : public runtime::Backend {
 public:
  CudaBackend(const model::Model& m, runtime::BackendOptions opts);
  ~CudaBackend() override;
  void print_stage_times() const;
  std::string name() const override { return "cuda (" + device_name_ + ")"; }
  const runtime::BackendOptions& options() const override { return opts_; }
  const model::Config& config() const override { return c_; }
  void forward(std::span<const BatchEntry> batch, float* logits) override;
  int32_t decode_greedy(int32_t token, int32_t pos, int32_t seq) override;
  void forward_greedy(std::span<const BatchEntry> batch, float* logits, int32_t* tokens) override;
  int64_t bytes_per_token(int64_t n_past) const override;
  float* logits_buffer(size_t n) override;

 private:
  DevMatrix upload_matrix(const tensor::View& v);
  // Matrices of one type and width uploaded one after another as one
  // matrix (returned), each also as a view into it (views[i]).
  DevMatrix upload_stacked(std::initializer_list<const tensor::View*> parts, std::initializer_list<DevMatrix*> views);
  const float* upload_floats(const float* p, size_t n);
  void setup_fused();
  void decode_step();   // the kernels of one decode step (captured into the graph)
  void run_decode(int32_t token, int32_t pos, int32_t seq);
  // tokens: non-null for the argmax of each output row instead of its logits.
  void prefill(std::span<const BatchEntry> batch, float* logits, int32_t* tokens = nullptr);
  // The kernels of one batch (captured for small ones). tile_max_pos > 0:
  // attention by tiles of tokens (attention_prefill), for a batch of one
  // sequence whose positions are all below it.
  void prefill_kernels(int T, int n_out, int tile_max_pos = 0);
  void gemm(const DevMatrix& w, const void* x, int T, float* out, int64_t ld_out, float beta);

  const model::Config& c_;
  runtime::BackendOptions opts_;
  std::string device_name_;
  int n_sm_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  DeviceArena arena_;

  DevMatrix tok_embd_, output_;
  const float* output_norm_ = nullptr;
  const float* rope_cos_ = nullptr;  // [n_ctx][head_dim / 2]
  const float* rope_sin_ = nullptr;
  std::vector<DevLayer> layers_;
  int64_t weight_bytes_ = 0;

  uint8_t* k_cache_ = nullptr;  // [layer][seq][pos][kv_dim], F32 or F16
  uint8_t* v_cache_ = nullptr;
  int64_t layer_cache_ = 0;     // bytes per layer
  bool kv_f32_ = true;

  // Decode buffers.
  int32_t* d_step_ = nullptr;  // {token, pos, seq, epoch}
  int32_t* h_step_ = nullptr;  // pinned
  uint32_t epoch_ = 1;         // the next decode step's first hand-off epoch (run_decode)
  float *d_x_ = nullptr, *d_q_ = nullptr, *d_h_ = nullptr, *d_logits_ = nullptr;
  float* d_attn_ = nullptr;
  unsigned long long* d_argmax_ = nullptr;
  unsigned long long* h_argmax_ = nullptr;  // pinned
  float* h_logits_ = nullptr;               // pinned: logits_buffer()
  size_t h_logits_size_ = 0;
  cudaGraphExec_t graph_ = nullptr;
  // Batches of up to kGraphRows rows (server decode steps), one graph per
  // (rows, outputs) shape, captured on first use.
  static constexpr int kGraphRows = 64;
  std::unordered_map<int, cudaGraphExec_t> batch_graphs_;
  // The persistent whole-step kernel (decode_fused.cuh), when every layer
  // matrix has one type it supports; otherwise five kernels per layer.
  bool fused_ = false;
  DType fused_type_ = DType::F32;
  FusedStep fused_step_;                // the decode step's buffers and shape
  std::vector<FusedLayer> host_layers_;  // every layer's matrices, for both paths

  // Prefill buffers, sized for n_batch tokens.
  int32_t *d_tokens_ = nullptr, *d_pos_ = nullptr, *d_seq_ = nullptr, *d_out_idx_ = nullptr;
  int32_t* h_batch_ = nullptr;  // pinned: tokens, pos, seq, out_idx, then the greedy tokens
  int32_t* d_greedy_ = nullptr;  // n_batch argmax results
  float *p_x_ = nullptr, *p_q_ = nullptr, *p_k_ = nullptr, *p_v_ = nullptr, *p_attn_ = nullptr;
  float *p_qkv_ = nullptr, *p_gate_up_ = nullptr, *p_logits_ = nullptr, *p_rows_ = nullptr;
  void* p_act_ = nullptr;    // rounded activations in the GEMM's element type
  void* cublas_ws_ = nullptr;
};

CudaBackend::CudaBackend(const model::Model& m, runtime::BackendOptions opts) : c_(m.config), opts_(opts) {
  if (c_.n_rot != c_.head_dim) fail_message(cat("CUDA backend: partial rotary embeddings are not supported"));
  if (c_.arch.qk_norm) fail_message(cat("CUDA backend: architecture '", c_.arch.name, "' (QK-norm) is not supported yet"));
  cudaDeviceProp prop{};
  QUARREL_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  device_name_ = prop.name;
  n_sm_ = prop.multiProcessorCount;
  QUARREL_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  if (cublasCreate(&cublas_) != CUBLAS_STATUS_SUCCESS) fail_message(cat("cuBLAS initialisation failed"));
  cublasSetStream(cublas_, stream_);
  // A fixed workspace, so cuBLAS allocates nothing after load.
  const size_t ws = 64u << 20;
  cublas_ws_ = arena_.alloc<uint8_t>(ws);
  cublasSetWorkspace(cublas_, cublas_ws_, ws);

  const model::Weights& w = m.weights;
  tok_embd_ = upload_matrix(w.tok_embd);
  output_ = c_.tied_output ? tok_embd_ : upload_matrix(w.output);
  output_norm_ = upload_floats(reinterpret_cast<const float*>(w.output_norm.data), c_.n_embd);
  {
    // RoPE tables for every position, made by the CPU backend's own function so
    // both backends rotate by bit-identical angles.
    const int64_t half = c_.head_dim / 2;
    const float* ff = w.rope_freqs.empty() ? nullptr : reinterpret_cast<const float*>(w.rope_freqs.data);
    std::vector<float> cs(opts_.n_ctx * half), sn(opts_.n_ctx * half);
    for (int p = 0; p < opts_.n_ctx; ++p)
      cpu::rope_table(p, half, c_.rope_base, c_.rope_freq_scale, ff, cs.data() + p * half, sn.data() + p * half);
    rope_cos_ = upload_floats(cs.data(), cs.size());
    rope_sin_ = upload_floats(sn.data(), sn.size());
  }
  for (const auto& L : w.layers) {
    DevLayer d;
    if (L.wq.type == L.wk.type && L.wq.type == L.wv.type) {
      // Stack q, k and v so that decode reads them in one stage and a batch
      // in one GEMM.
      d.wqkv = upload_stacked({&L.wq, &L.wk, &L.wv}, {&d.wq, &d.wk, &d.wv});
    } else {
      // Mixed types (Q4_K_M keeps attn_v at Q6_K): three launches in decode.
      d.wq = upload_matrix(L.wq);
      d.wk = upload_matrix(L.wk);
      d.wv = upload_matrix(L.wv);
    }
    if (L.w_gate.type != L.w_up.type) fail_message(cat("CUDA backend: ffn_gate and ffn_up have different types; not supported yet"));
    d.wo = upload_matrix(L.wo);
    d.w_gate_up = upload_stacked({&L.w_gate, &L.w_up}, {&d.w_gate, &d.w_up});
    d.w_down = upload_matrix(L.w_down);
    d.attn_norm = upload_floats(reinterpret_cast<const float*>(L.attn_norm.data), c_.n_embd);
    d.ffn_norm = upload_floats(reinterpret_cast<const float*>(L.ffn_norm.data), c_.n_embd);
    if (!L.bq.empty()) {
      std::vector<float> b;
      for (const tensor::View* v : {&L.bq, &L.bk, &L.bv})
        b.insert(b.end(), reinterpret_cast<const float*>(v->data), reinterpret_cast<const float*>(v->data) + v->cols);
      d.bias_qkv = upload_floats(b.data(), b.size());
    }
    layers_.push_back(d);
  }

  const int64_t E = c_.n_embd, QD = c_.q_dim(), KVD = c_.kv_dim(), FF = c_.n_ff, V = c_.n_vocab;
  kv_f32_ = !opts_.kv_f16;
  layer_cache_ = static_cast<int64_t>(opts_.n_seq) * opts_.n_ctx * KVD * (kv_f32_ ? 4 : 2);
  k_cache_ = arena_.alloc<uint8_t>(layer_cache_ * c_.n_layer);
  v_cache_ = arena_.alloc<uint8_t>(layer_cache_ * c_.n_layer);
  QUARREL_CUDA_CHECK(cudaMemset(k_cache_, 0, layer_cache_ * c_.n_layer));
  QUARREL_CUDA_CHECK(cudaMemset(v_cache_, 0, layer_cache_ * c_.n_layer));

  d_step_ = arena_.alloc<int32_t>(4);
  QUARREL_CUDA_CHECK(cudaMallocHost(&h_step_, 4 * sizeof(int32_t)));
  QUARREL_CUDA_CHECK(cudaMallocHost(&h_argmax_, sizeof(unsigned long long)));
  d_x_ = arena_.alloc<float>(E);
  d_q_ = arena_.alloc<float>(QD);
  d_h_ = arena_.alloc<float>(FF);
  d_logits_ = arena_.alloc<float>(V);
  d_attn_ = arena_.alloc<float>(QD);
  d_argmax_ = arena_.alloc<unsigned long long>(1);
  setup_fused();

  const int64_t B = opts_.n_batch;
  const int64_t wide = std::max(E, std::max(QD, FF));
  d_tokens_ = arena_.alloc<int32_t>(B);
  d_pos_ = arena_.alloc<int32_t>(B);
  d_seq_ = arena_.alloc<int32_t>(B);
  d_out_idx_ = arena_.alloc<int32_t>(B);
  QUARREL_CUDA_CHECK(cudaMallocHost(&h_batch_, 5 * B * sizeof(int32_t)));
  d_greedy_ = arena_.alloc<int32_t>(B);
  p_x_ = arena_.alloc<float>(B * E);
  p_q_ = arena_.alloc<float>(B * QD);
  p_k_ = arena_.alloc<float>(B * KVD);
  p_v_ = arena_.alloc<float>(B * KVD);
  p_attn_ = arena_.alloc<float>(B * QD);
  p_qkv_ = arena_.alloc<float>(B * (QD + 2 * KVD));
  p_gate_up_ = arena_.alloc<float>(B * 2 * FF);
  p_rows_ = arena_.alloc<float>(B * E);
  p_logits_ = arena_.alloc<float>(B * V);
  p_act_ = arena_.alloc<float>(B * wide);
  QUARREL_CUDA_CHECK(cudaDeviceSynchronize());
}

// QUARREL_CUDA_STAGE_TIMES=1: the persistent kernel's stage times in the
// last decode step, averaged over the inner layers, on stderr.
void CudaBackend::print_stage_times() const {
  const FusedStep& a = fused_step_;
  std::vector<unsigned long long> t(static_cast<size_t>(a.n_layer) * kStageClocks + 1);
  if (cudaMemcpy(t.data(), a.stage_clock, t.size() * sizeof(t[0]), cudaMemcpyDeviceToHost) != cudaSuccess) return;
  auto count = [&](int il) {
    int n = 0;
    while (n < kStageClocks && t[il * kStageClocks + n] != 0) ++n;
    return n;
  };
  if (a.n_layer < 3 || count(1) == 0) return;
  const int n = count(1);
  // A stage's time includes waiting for its input; "next" is the start of
  // the next stage's weight copies (and, after the two-stage attention's
  // scores, a grid barrier's wait).
  static const char* one_stage[] = {"qkv", "next", "attention", "next", "o", "next", "ffn", "next", "down", "next"};
  static const char* two_stage[] = {"qkv", "next", "scores", "wait", "softmax+V", "next",
                                    "o",   "next", "ffn",    "next", "down",      "next"};
  std::vector<double> sum(n, 0.0);
  for (int il = 1; il + 1 < a.n_layer; ++il) {
    unsigned long long prev = t[(il - 1) * kStageClocks + count(il - 1) - 1];
    for (int k = 0; k < n; ++k) {
      sum[k] += static_cast<double>(t[il * kStageClocks + k] - prev);
      prev = t[il * kStageClocks + k];
    }
  }
  std::string line = "stage times (us, mean of the inner layers, last decode step):";
  double total = 0;
  for (int k = 0; k < n; ++k) {
    const double us = sum[k] / (a.n_layer - 2) / 1000.0;
    total += us;
    line += cat(" ", n == 10 ? one_stage[k] : two_stage[k], " ", us);
  }
  std::fprintf(stderr, "%s; layer %g\n", line.c_str(), total);
}

CudaBackend::~CudaBackend() {
  if (fused_step_.stage_clock) print_stage_times();
  if (graph_) cudaGraphExecDestroy(graph_);
  for (auto& [key, g] : batch_graphs_) cudaGraphExecDestroy(g);
  if (cublas_) cublasDestroy(cublas_);
  if (h_step_) cudaFreeHost(h_step_);
  if (h_argmax_) cudaFreeHost(h_argmax_);
  if (h_logits_) cudaFreeHost(h_logits_);
  if (h_batch_) cudaFreeHost(h_batch_);
  if (stream_) cudaStreamDestroy(stream_);
}

DevMatrix CudaBackend::upload_stacked(std::initializer_list<const tensor::View*> parts,
                                      std::initializer_list<DevMatrix*> views) {
  int64_t bytes = 0, rows = 0;
  for (const tensor::View* v : parts) {
    bytes += v->n_bytes();
    rows += v->rows;
  }
  uint8_t* p = arena_.alloc<uint8_t>(bytes);
  const tensor::View& first = **parts.begin();
  auto view = views.begin();
  for (const tensor::View* v : parts) {
    QUARREL_CUDA_CHECK(cudaMemcpy(p, v->data, v->n_bytes(), cudaMemcpyHostToDevice));
    **view++ = {v->type, static_cast<int>(v->rows), static_cast<int>(v->cols), v->row_stride, p};
    p += v->n_bytes();
  }
  weight_bytes_ += bytes;
  return {first.type, static_cast<int>(rows), static_cast<int>(first.cols), first.row_stride, p - bytes};
}

DevMatrix CudaBackend::upload_matrix(const tensor::View& v) {
  uint8_t* p = arena_.alloc<uint8_t>(v.n_bytes());
  QUARREL_CUDA_CHECK(cudaMemcpy(p, v.data, v.n_bytes(), cudaMemcpyHostToDevice));
  weight_bytes_ += v.n_bytes();
  return {v.type, static_cast<int>(v.rows), static_cast<int>(v.cols), v.row_stride, p};
}

const float* CudaBackend::upload_floats(const float* src, size_t n) {
  float* p = arena_.alloc<float>(n);
  QUARREL_CUDA_CHECK(cudaMemcpy(p, src, n * sizeof(float), cudaMemcpyHostToDevice));
  weight_bytes_ += n * sizeof(float);
  return p;
}

int64_t CudaBackend::bytes_per_token(int64_t n_past) const {
  // Every weight is read once per token, except the embedding table (one row)
  // unless it doubles as the output head; plus the K and V of n_past positions.
  int64_t bytes = weight_bytes_;
  if (!c_.tied_output) bytes -= static_cast<int64_t>(tok_embd_.rows) * tok_embd_.row_bytes;
  return bytes + 2 * c_.n_layer * n_past * c_.kv_dim() * (kv_f32_ ? 4 : 2);
}

void CudaBackend::setup_fused() {
  // The decode step's buffers and every layer's matrices, as both decode
  // paths take them (layer_args in decode_fused.cuh).
  FusedStep& a = fused_step_;
  a.n_layer = static_cast<int>(c_.n_layer);
  a.n_embd = static_cast<int>(c_.n_embd);
  a.n_head = static_cast<int>(c_.n_head);
  a.n_head_kv = static_cast<int>(c_.n_head_kv);
  a.head_dim = static_cast<int>(c_.head_dim);
  a.n_ff = static_cast<int>(c_.n_ff);
  a.narrow = narrow_units(a.n_embd, a.n_ff, n_sm_);
  a.n_ctx = opts_.n_ctx;
  a.eps = c_.rms_eps;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  a.neox = c_.arch.rope_neox;
  a.kv_f32 = kv_f32_;
  a.rope_cos = rope_cos_;
  a.rope_sin = rope_sin_;
  a.step = d_step_;
  a.x = d_x_;
  a.q = d_q_;
  a.attn = d_attn_;
  a.h = d_h_;
  for (size_t il = 0; il < layers_.size(); ++il) {
    const DevLayer& L = layers_[il];
    FusedLayer f;
    f.wqkv = L.wqkv.data;
    f.wo = L.wo.data;
    f.w_gate = L.w_gate.data;
    f.w_up = L.w_up.data;
    f.w_down = L.w_down.data;
    f.rb_qkv = L.wqkv.row_bytes;
    f.rb_o = L.wo.row_bytes;
    f.rb_ffn = L.w_gate.row_bytes;
    f.rb_down = L.w_down.row_bytes;
    f.attn_norm = L.attn_norm;
    f.ffn_norm = L.ffn_norm;
    f.bias_qkv = L.bias_qkv;
    f.k_cache = k_cache_ + il * layer_cache_;
    f.v_cache = v_cache_ + il * layer_cache_;
    host_layers_.push_back(f);
  }

  // The persistent kernel, where the types and the shape allow it.
  // QUARREL_CUDA_STAGED=1 keeps the five-kernels-per-layer path (to compare
  // the two; they compute bit-identical values).
  if (env_flag("QUARREL_CUDA_STAGED")) return;
  const DType t = layers_.front().wo.type;
  for (const DevLayer& L : layers_) {
    if (!L.wqkv.data || L.wqkv.type != t) return;
    for (const DevMatrix* mm : {&L.wo, &L.w_gate, &L.w_up, &L.w_down})
      if (mm->type != t) return;
  }
  if (!fused_decode_supported(t) || c_.head_dim % 4 != 0 || c_.gqa_ratio() > kMaxFusedGroup) return;
  // A long context: five kernels per layer.
  if (fused_smem_bytes(t, a) + fused_table_bytes(a) > kMaxDynamicSmem) return;
  FusedLayer* d_layers = arena_.alloc<FusedLayer>(host_layers_.size());
  QUARREL_CUDA_CHECK(cudaMemcpy(d_layers, host_layers_.data(), host_layers_.size() * sizeof(FusedLayer),
                                cudaMemcpyHostToDevice));
  a.layers = d_layers;
  a.scores = arena_.alloc<float>(static_cast<size_t>(c_.n_head) * opts_.n_ctx);
  a.barrier = arena_.alloc<unsigned int>(1);
  a.handoff = arena_.alloc<uint64_t>(fused_handoff_words(a));
  // Epoch 0, which no launch waits for.
  QUARREL_CUDA_CHECK(cudaMemset(a.handoff, 0, fused_handoff_words(a) * sizeof(uint64_t)));
  if (env_flag("QUARREL_CUDA_STAGE_TIMES")) {
    const size_t n = static_cast<size_t>(a.n_layer) * kStageClocks + 1;
    a.stage_clock = arena_.alloc<unsigned long long>(n);
    QUARREL_CUDA_CHECK(cudaMemset(a.stage_clock, 0, n * sizeof(unsigned long long)));
  }
  fused_ = true;
  fused_type_ = t;
}

void CudaBackend::decode_step() {
  const int E = static_cast<int>(c_.n_embd);
  QUARREL_CUDA_CHECK(cudaMemsetAsync(d_argmax_, 0, sizeof(unsigned long long), stream_));
  embed_rows(tok_embd_.type, tok_embd_.data, tok_embd_.row_bytes, E, d_step_, 1, d_x_, stream_);
  const AttentionShape sh{static_cast<int>(c_.n_head), static_cast<int>(c_.n_head_kv), static_cast<int>(c_.head_dim),
                          opts_.n_ctx, 1.0f / std::sqrt(static_cast<float>(c_.head_dim))};
  if (fused_) decode_layers(fused_type_, fused_step_, host_layers_.front(), n_sm_, stream_);
  for (size_t il = 0; il < (fused_ ? 0 : layers_.size()); ++il) {
    const DevLayer& L = layers_[il];
    const FusedLayer& H = host_layers_[il];
    const LayerArgs m = layer_args(fused_step_, H);
    if (L.wqkv.data) {
      matvec(L.wqkv.type, MatvecInput::Norm, MatvecOutput::Qkv, m.qkv, n_sm_, stream_);
    } else {
      MatvecArgs a = m.qkv;
      for (const DevMatrix* mm : {&L.wq, &L.wk, &L.wv}) {
        a.w = mm->data;
        a.row_bytes = mm->row_bytes;
        a.rows = mm->rows;
        matvec(mm->type, MatvecInput::Norm, MatvecOutput::Qkv, a, n_sm_, stream_);
        a.row_base += mm->rows;
      }
    }
    attention(sh, 1, d_q_, H.k_cache, H.v_cache, kv_f32_, d_step_ + 1, d_step_ + 2, 3, d_attn_,
              /*programmatic=*/true, stream_);
    matvec(L.wo.type, MatvecInput::Plain, MatvecOutput::Residual, m.o, n_sm_, stream_);
    matvec(L.w_gate.type, MatvecInput::Norm, MatvecOutput::Swiglu, m.ffn, n_sm_, stream_);
    matvec(L.w_down.type, MatvecInput::Plain, MatvecOutput::Residual, m.down, n_sm_, stream_);
  }
  MatvecArgs lm;
  lm.w = output_.data;
  lm.row_bytes = output_.row_bytes;
  lm.rows = output_.rows;
  lm.k = E;
  lm.x = d_x_;
  lm.norm_w = output_norm_;
  lm.eps = c_.rms_eps;
  lm.out = d_logits_;
  lm.argmax = d_argmax_;
  matvec(output_.type, MatvecInput::Norm, MatvecOutput::Logits, lm, n_sm_, stream_);
}

void CudaBackend::run_decode(int32_t token, int32_t pos, int32_t seq) {
  if (!graph_) {
    // Capture once; every later token replays the same graph with a new step.
    cudaGraph_t g = nullptr;
    QUARREL_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      decode_step();
    } catch (...) {
      cudaStreamEndCapture(stream_, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    QUARREL_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    QUARREL_CUDA_CHECK(cudaGraphInstantiate(&graph_, g, 0));
    QUARREL_CUDA_CHECK(cudaGraphDestroy(g));
  }
  h_step_[0] = token;
  h_step_[1] = pos;
  h_step_[2] = seq;
  // The persistent kernel's first epoch (FusedStep::handoff): each launch takes
  // the next range, so no hand-off word of an earlier launch matches. The
  // ranges start again at 1 before they would wrap (after some 10^7 tokens).
  const uint32_t span = kEpochsPerLayer * static_cast<uint32_t>(c_.n_layer) + 1;
  if (epoch_ > UINT32_MAX - span) epoch_ = 1;
  h_step_[3] = static_cast<int32_t>(epoch_);
  epoch_ += span;
  QUARREL_CUDA_CHECK(cudaMemcpyAsync(d_step_, h_step_, 4 * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  QUARREL_CUDA_CHECK(cudaGraphLaunch(graph_, stream_));
}

int32_t CudaBackend::decode_greedy(int32_t token, int32_t pos, int32_t seq) {
  const BatchEntry e{token, pos, seq, true};
  runtime::validate_batch({&e, 1}, c_, opts_);
  run_decode(token, pos, seq);
  QUARREL_CUDA_CHECK(cudaMemcpyAsync(h_argmax_, d_argmax_, sizeof(unsigned long long), cudaMemcpyDeviceToHost, stream_));
  QUARREL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return static_cast<int32_t>(~static_cast<uint32_t>(*h_argmax_ & 0xffffffffu));
}

float* CudaBackend::logits_buffer(size_t n) {
  // Page-locked up to 64 MiB (every decode step, and prompts of up to a few
  // hundred rows of logits); a larger request gets pageable memory rather
  // than pinning gigabytes.
  constexpr size_t kMaxPinnedFloats = size_t{16} << 20;
  if (n > kMaxPinnedFloats) return Backend::logits_buffer(n);
  if (n > h_logits_size_) {
    if (h_logits_) QUARREL_CUDA_CHECK(cudaFreeHost(h_logits_));
    h_logits_ = nullptr;
    h_logits_size_ = 0;
    QUARREL_CUDA_CHECK(cudaMallocHost(&h_logits_, n * sizeof(float)));
    h_logits_size_ = n;
  }
  return h_logits_;
}

void CudaBackend::forward(std::span<const BatchEntry> batch, float* logits) {
  runtime::validate_batch(batch, c_, opts_);
  if (batch.size() == 1) {
    run_decode(batch[0].token, batch[0].pos, batch[0].seq);
    if (batch[0].want_logits)
      QUARREL_CUDA_CHECK(
          cudaMemcpyAsync(logits, d_logits_, c_.n_vocab * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    QUARREL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return;
  }
  prefill(batch, logits);
}

void CudaBackend::gemm(const DevMatrix& w, const void* x, int T, float* out, int64_t ld_out, float beta) {
  if (is_quantized(w.type)) return qgemm(w.type, w.data, w.row_bytes, w.rows, w.cols, x, T, out, ld_out, beta, stream_);
  cuda::gemm(cublas_, gemm_type_for(w.type), w.data, w.rows, w.cols, x, T, out, ld_out, beta);
}

void CudaBackend::forward_greedy(std::span<const BatchEntry> batch, float* logits, int32_t* tokens) {
  runtime::validate_batch(batch, c_, opts_);
  if (batch.size() == 1 && batch[0].want_logits) {
    tokens[0] = decode_greedy(batch[0].token, batch[0].pos, batch[0].seq);
    return;
  }
  if (batch.size() == 1) return forward(batch, logits);
  prefill(batch, logits, tokens);
}

void CudaBackend::prefill(std::span<const BatchEntry> batch, float* logits, int32_t* tokens) {
  const int T = static_cast<int>(batch.size());
  int n_out = 0;
  int32_t* h_tok = h_batch_;
  int32_t* h_pos = h_batch_ + opts_.n_batch;
  int32_t* h_seq = h_batch_ + 2 * opts_.n_batch;
  int32_t* h_out = h_batch_ + 3 * opts_.n_batch;
  for (int t = 0; t < T; ++t) {
    h_tok[t] = batch[t].token;
    h_pos[t] = batch[t].pos;
    h_seq[t] = batch[t].seq;
    if (batch[t].want_logits) h_out[n_out++] = t;
  }
  QUARREL_CUDA_CHECK(cudaMemcpyAsync(d_tokens_, h_tok, T * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  QUARREL_CUDA_CHECK(cudaMemcpyAsync(d_pos_, h_pos, T * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  QUARREL_CUDA_CHECK(cudaMemcpyAsync(d_seq_, h_seq, T * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  QUARREL_CUDA_CHECK(cudaMemcpyAsync(d_out_idx_, h_out, std::max(n_out, 1) * sizeof(int32_t), cudaMemcpyHostToDevice,
                                     stream_));

  const int key = T * (kGraphRows + 1) + n_out;
  if (T <= kGraphRows && n_out > 0) {
    // A batch of decode rows (the server's continuous batching): replay the
    // graph captured for this (rows, outputs) shape; the step's tokens,
    // positions and slots were copied to device memory above.
    auto it = batch_graphs_.find(key);
    if (it == batch_graphs_.end()) {
      cudaGraph_t g = nullptr;
      QUARREL_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
      try {
        prefill_kernels(T, n_out);
      } catch (...) {
        cudaStreamEndCapture(stream_, &g);
        if (g) cudaGraphDestroy(g);
        throw;
      }
      QUARREL_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
      cudaGraphExec_t exec = nullptr;
      QUARREL_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
      QUARREL_CUDA_CHECK(cudaGraphDestroy(g));
      it = batch_graphs_.emplace(key, exec).first;
    }
    QUARREL_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
  } else {
    // A prompt of one sequence (not replayed from a graph, so the choice is
    // made per batch): attention by tiles of tokens.
    bool one_seq = true;
    int max_pos = 0;
    for (int t = 0; t < T; ++t) {
      one_seq = one_seq && h_seq[t] == h_seq[0];
      max_pos = std::max(max_pos, h_pos[t] + 1);
    }
    prefill_kernels(T, n_out, one_seq ? max_pos : 0);
  }
  int32_t* h_greedy = h_batch_ + 4 * opts_.n_batch;
  if (n_out > 0 && tokens) {
    argmax_rows(p_logits_, n_out, static_cast<int>(c_.n_vocab), d_greedy_, stream_);
    QUARREL_CUDA_CHECK(cudaMemcpyAsync(h_greedy, d_greedy_, n_out * sizeof(int32_t), cudaMemcpyDeviceToHost, stream_));
  } else if (n_out > 0) {
    QUARREL_CUDA_CHECK(cudaMemcpyAsync(logits, p_logits_, static_cast<size_t>(n_out) * c_.n_vocab * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream_));
  }
  QUARREL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (tokens) std::copy_n(h_greedy, n_out, tokens);
}

void CudaBackend::prefill_kernels(int T, int n_out, int tile_max_pos) {
  const int E = static_cast<int>(c_.n_embd), QD = static_cast<int>(c_.q_dim()), KVD = static_cast<int>(c_.kv_dim());
  const int FF = static_cast<int>(c_.n_ff);
  embed_rows(tok_embd_.type, tok_embd_.data, tok_embd_.row_bytes, E, d_tokens_, T, p_x_, stream_);
  const AttentionShape sh{static_cast<int>(c_.n_head), static_cast<int>(c_.n_head_kv), static_cast<int>(c_.head_dim),
                          opts_.n_ctx, 1.0f / std::sqrt(static_cast<float>(c_.head_dim))};
  const RopeArgs ra{sh.n_head, sh.n_head_kv, sh.head_dim, opts_.n_ctx, c_.arch.rope_neox, rope_cos_, rope_sin_, nullptr};
  for (size_t il = 0; il < layers_.size(); ++il) {
    const DevLayer& L = layers_[il];
    uint8_t* kc = k_cache_ + il * layer_cache_;
    uint8_t* vc = v_cache_ + il * layer_cache_;
    RopeArgs r = ra;
    r.bias = L.bias_qkv;
    rows_for_gemm(L.wq.type, RowOp::Norm, p_x_, nullptr, E, L.attn_norm, c_.rms_eps, T, E, p_act_, stream_);
    if (L.wqkv.data) {
      // One GEMM for q, k and v (rows [q | k | v] per token): a launch and
      // a pass over the input instead of three.
      const int S = QD + 2 * KVD;
      gemm(L.wqkv, p_act_, T, p_qkv_, S, 0.0f);
      rope_and_store(r, T, {p_qkv_, p_qkv_ + QD, p_qkv_ + QD + KVD, S, S}, p_q_, d_pos_, d_seq_, kc, vc, kv_f32_,
                     stream_);
    } else {
      // The activation rounding depends on the weight type, so q, k and v of
      // different types each get their own copy of the normalised input.
      gemm(L.wq, p_act_, T, p_q_, QD, 0.0f);
      if (tensor::vec_dot_type(L.wk.type) != tensor::vec_dot_type(L.wq.type))
        rows_for_gemm(L.wk.type, RowOp::Norm, p_x_, nullptr, E, L.attn_norm, c_.rms_eps, T, E, p_act_, stream_);
      gemm(L.wk, p_act_, T, p_k_, KVD, 0.0f);
      if (tensor::vec_dot_type(L.wv.type) != tensor::vec_dot_type(L.wk.type))
        rows_for_gemm(L.wv.type, RowOp::Norm, p_x_, nullptr, E, L.attn_norm, c_.rms_eps, T, E, p_act_, stream_);
      gemm(L.wv, p_act_, T, p_v_, KVD, 0.0f);
      rope_and_store(r, T, {p_q_, p_k_, p_v_, QD, KVD}, p_q_, d_pos_, d_seq_, kc, vc, kv_f32_, stream_);
    }
    if (!(tile_max_pos > 0 && attention_prefill(sh, T, tile_max_pos, p_q_, kc, vc, kv_f32_, d_pos_, d_seq_,
                                                p_attn_, stream_)))
      attention(sh, T, p_q_, kc, vc, kv_f32_, d_pos_, d_seq_, 1, p_attn_, /*programmatic=*/false, stream_);
    rows_for_gemm(L.wo.type, RowOp::Plain, p_attn_, nullptr, QD, nullptr, 0, T, QD, p_act_, stream_);
    gemm(L.wo, p_act_, T, p_x_, E, 1.0f);
    rows_for_gemm(L.w_gate.type, RowOp::Norm, p_x_, nullptr, E, L.ffn_norm, c_.rms_eps, T, E, p_act_, stream_);
    gemm(L.w_gate_up, p_act_, T, p_gate_up_, 2 * FF, 0.0f);  // rows [gate | up] per token
    rows_for_gemm(L.w_down.type, RowOp::Swiglu, p_gate_up_, p_gate_up_ + FF, 2 * FF, nullptr, 0, T, FF, p_act_,
                  stream_);
    gemm(L.w_down, p_act_, T, p_x_, E, 1.0f);
  }
  if (n_out > 0) {
    gather_rows(p_x_, d_out_idx_, n_out, E, p_rows_, stream_);
    rows_for_gemm(output_.type, RowOp::Norm, p_rows_, nullptr, E, output_norm_, c_.rms_eps, n_out, E, p_act_, stream_);
    gemm(output_, p_act_, n_out, p_logits_, c_.n_vocab, 0.0f);
  }
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

void dequantize_on_device(DType t, const uint8_t* src, int64_t row_bytes, int rows, int k, float* dst) {
  uint8_t* d_src = nullptr;
  float* d_dst = nullptr;
  QUARREL_CUDA_CHECK(cudaMalloc(&d_src, row_bytes * rows));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_dst, sizeof(float) * k * rows));
  QUARREL_CUDA_CHECK(cudaMemcpy(d_src, src, row_bytes * rows, cudaMemcpyHostToDevice));
  dequantize_rows(t, d_src, row_bytes, rows, k, d_dst, nullptr);
  QUARREL_CUDA_CHECK(cudaMemcpy(dst, d_dst, sizeof(float) * k * rows, cudaMemcpyDeviceToHost));
  cudaFree(d_src);
  cudaFree(d_dst);
}

void dot_rows_on_device(DType t, const uint8_t* rows, int64_t row_bytes, int n_rows, int k, const float* x,
                        float* out) {
  uint8_t *d_rows = nullptr, *d_acts = nullptr;
  float *d_x = nullptr, *d_out = nullptr;
  QUARREL_CUDA_CHECK(cudaMalloc(&d_rows, row_bytes * n_rows));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_acts, qacts_bytes(k)));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_x, sizeof(float) * k));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_out, sizeof(float) * n_rows));
  QUARREL_CUDA_CHECK(cudaMemcpy(d_rows, rows, row_bytes * n_rows, cudaMemcpyHostToDevice));
  QUARREL_CUDA_CHECK(cudaMemcpy(d_x, x, sizeof(float) * k, cudaMemcpyHostToDevice));
  rows_for_gemm(t, RowOp::Plain, d_x, nullptr, k, nullptr, 0.0f, 1, k, d_acts, nullptr);
  qgemm(t, d_rows, row_bytes, n_rows, k, d_acts, 1, d_out, n_rows, 0.0f, nullptr);
  QUARREL_CUDA_CHECK(cudaMemcpy(out, d_out, sizeof(float) * n_rows, cudaMemcpyDeviceToHost));
  for (void* p : {static_cast<void*>(d_rows), static_cast<void*>(d_acts), static_cast<void*>(d_x),
                  static_cast<void*>(d_out)})
    cudaFree(p);
}

bool attention_on_device(int n_head, int n_head_kv, int head_dim, int n_ctx, int T, const float* q, const float* k,
                         const float* v, const int32_t* pos, bool tiled, float* out) {
  const AttentionShape sh{n_head, n_head_kv, head_dim, n_ctx, 1.0f / std::sqrt(static_cast<float>(head_dim))};
  const size_t qn = static_cast<size_t>(T) * n_head * head_dim, kvn = static_cast<size_t>(n_ctx) * n_head_kv * head_dim;
  float *d_q = nullptr, *d_k = nullptr, *d_v = nullptr, *d_out = nullptr;
  int32_t *d_pos = nullptr, *d_seq = nullptr;
  QUARREL_CUDA_CHECK(cudaMalloc(&d_q, qn * sizeof(float)));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_out, qn * sizeof(float)));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_k, kvn * sizeof(float)));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_v, kvn * sizeof(float)));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_pos, T * sizeof(int32_t)));
  QUARREL_CUDA_CHECK(cudaMalloc(&d_seq, T * sizeof(int32_t)));
  QUARREL_CUDA_CHECK(cudaMemcpy(d_q, q, qn * sizeof(float), cudaMemcpyHostToDevice));
  QUARREL_CUDA_CHECK(cudaMemcpy(d_k, k, kvn * sizeof(float), cudaMemcpyHostToDevice));
  QUARREL_CUDA_CHECK(cudaMemcpy(d_v, v, kvn * sizeof(float), cudaMemcpyHostToDevice));
  QUARREL_CUDA_CHECK(cudaMemcpy(d_pos, pos, T * sizeof(int32_t), cudaMemcpyHostToDevice));
  QUARREL_CUDA_CHECK(cudaMemset(d_seq, 0, T * sizeof(int32_t)));
  QUARREL_CUDA_CHECK(cudaMemset(d_out, 0xff, qn * sizeof(float)));  // NaN: every output must be written
  const int max_pos = *std::max_element(pos, pos + T) + 1;
  bool ran = false;
  if (tiled)
    ran = attention_prefill(sh, T, max_pos, d_q, d_k, d_v, /*kv_f32=*/true, d_pos, d_seq, d_out, nullptr);
  else
    attention(sh, T, d_q, d_k, d_v, /*kv_f32=*/true, d_pos, d_seq, 1, d_out, false, nullptr);
  QUARREL_CUDA_CHECK(cudaMemcpy(out, d_out, qn * sizeof(float), cudaMemcpyDeviceToHost));
  for (void* p : {static_cast<void*>(d_q), static_cast<void*>(d_k), static_cast<void*>(d_v), static_cast<void*>(d_out),
                  static_cast<void*>(d_pos), static_cast<void*>(d_seq)})
    cudaFree(p);
  return !tiled || ran;
}

std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts) {
  return with_context("CUDA backend", [&] { return std::unique_ptr<runtime::Backend>(new CudaBackend(m, opts)); });
}

}  // namespace quarrel::cuda

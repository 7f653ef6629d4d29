#include "runtime/backend.h"

#include "common/error.h"
#include "cpu/backend.h"
#include "runtime/sampler.h"
#if defined(QUARREL_HAVE_CUDA)
#include "cuda/backend.h"
#endif

namespace quarrel::runtime {

BackendKind backend_kind_from_name(const std::string& name) {
  if (name == "auto") return BackendKind::Auto;
  if (name == "cpu") return BackendKind::Cpu;
  if (name == "cuda") return BackendKind::Cuda;
  fail("unknown backend '{}' (expected auto, cpu or cuda)", name);
}

bool cuda_available() {
#if defined(QUARREL_HAVE_CUDA)
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

float* Backend::logits_buffer(size_t n) {
  if (logits_buffer_.size() < n) logits_buffer_.resize(n);
  return logits_buffer_.data();
}

int32_t Backend::decode_greedy(int32_t token, int32_t pos, int32_t seq) {
  const BatchEntry e{token, pos, seq, true};
  greedy_logits_.resize(config().n_vocab);
  int32_t next = -1;
  forward_greedy({&e, 1}, greedy_logits_.data(), &next);
  return next;
}

void Backend::forward_greedy(std::span<const BatchEntry> batch, float* logits, int32_t* tokens) {
  forward(batch, logits);
  const int32_t n_vocab = static_cast<int32_t>(config().n_vocab);
  int32_t row = 0;
  for (const BatchEntry& e : batch)
    if (e.want_logits) {
      tokens[row] = argmax(logits + static_cast<size_t>(row) * n_vocab, n_vocab);
      ++row;
    }
}

void validate_batch(std::span<const BatchEntry> batch, const model::Config& c, const BackendOptions& o) {
  if (batch.empty()) fail("empty batch");
  if (static_cast<int64_t>(batch.size()) > o.n_batch)
    fail("batch of {} tokens exceeds n_batch {}", batch.size(), o.n_batch);
  for (const auto& e : batch) {
    if (e.token < 0 || e.token >= c.n_vocab) fail("token id {} is out of range [0, {})", e.token, c.n_vocab);
    if (e.seq < 0 || e.seq >= o.n_seq) fail("sequence {} is out of range [0, {})", e.seq, o.n_seq);
    if (e.pos < 0 || e.pos >= o.n_ctx) fail("position {} is outside the context of {} tokens", e.pos, o.n_ctx);
  }
}

std::unique_ptr<Backend> make_backend(BackendKind kind, const model::Model& m, BackendOptions opts) {
  if (opts.n_ctx <= 0) opts.n_ctx = static_cast<int>(std::min<int64_t>(m.config.n_ctx_train, 4096));
  if (opts.n_ctx > (1 << 20)) fail("context size {} is out of range", opts.n_ctx);
  if (opts.n_seq < 1 || opts.n_seq > 1024) fail("sequence slots {} out of range (1..1024)", opts.n_seq);
  if (opts.n_batch < 1 || opts.n_batch > 8192) fail("batch size {} out of range (1..8192)", opts.n_batch);
  if (kind == BackendKind::Auto) kind = cuda_available() ? BackendKind::Cuda : BackendKind::Cpu;
  if (kind == BackendKind::Cuda) {
#if defined(QUARREL_HAVE_CUDA)
    if (!cuda_available()) fail("--backend cuda: no CUDA device is present");
    return cuda::make_backend(m, opts);
#else
    fail("--backend cuda: this build has no CUDA backend");
#endif
  }
  return cpu::make_backend(m, opts);
}

}  // namespace quarrel::runtime

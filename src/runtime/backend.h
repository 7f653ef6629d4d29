#pragma once
// The backend contract: a backend takes a model's config and weights, owns its
// KV cache storage, and computes logits for a batch of (sequence, position,
// token) entries. It writes the whole transformer forward itself.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace quarrel::runtime {

struct BatchEntry {
  int32_t token = 0;
  int32_t pos = 0;          // position within its sequence
  int32_t seq = 0;          // KV slot
  bool want_logits = false;
};

struct BackendOptions {
  int n_threads = 0;   // CPU threads; 0 = all physical cores
  int n_ctx = 0;       // positions per sequence slot; 0 = min(n_ctx_train, 4096)
  int n_seq = 1;       // sequence slots in the KV cache
  int n_batch = 512;   // largest batch one forward takes
  // KV-cache element type on the GPU: F32 keeps decode within rounding of the
  // CPU backend (which, like llama.cpp's reference runs, uses F32); F16 halves
  // the cache's bytes. The CPU backend always uses F32.
  bool kv_f16 = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;     // "cpu (avx2, 2 threads)", "cuda (NVIDIA H200)"
  virtual const BackendOptions& options() const = 0;
  virtual const model::Config& config() const = 0;
  // Entries of one sequence must have consecutive positions, and every earlier
  // position of that sequence must already be in the cache. Writes n_vocab
  // logits for each entry with want_logits, in batch order. Throws
  // quarrel::Error for an out-of-range token, position or slot.
  virtual void forward(std::span<const BatchEntry> batch, float* logits) = 0;
  // Decodes one token and returns the argmax of its logits. A backend that can
  // pick the token on the device overrides this and copies back only the id.
  virtual int32_t decode_greedy(int32_t token, int32_t pos, int32_t seq);
  // forward(), then the argmax of every row that wants logits, into tokens[i]
  // for the i-th such row. A backend that picks them on the device overrides
  // this and may leave `logits` unwritten (the server's batched greedy steps).
  virtual void forward_greedy(std::span<const BatchEntry> batch, float* logits, int32_t* tokens);
  // A host buffer of at least n floats that forward() writes logits into at
  // full speed (page-locked memory on a GPU: a copy to pageable memory took
  // 19 of a 560 us token on SmolLM2). Owned by the backend; valid until the
  // next call.
  virtual float* logits_buffer(size_t n);
  // Bytes the backend reads per decoded token at context length n_past
  // (weights + KV cache), for bandwidth-floor reports.
  virtual int64_t bytes_per_token(int64_t n_past) const = 0;

 private:
  std::vector<float> greedy_logits_;  // decode_greedy's default path
  std::vector<float> logits_buffer_;  // logits_buffer's default
};

enum class BackendKind { Auto, Cpu, Cuda };
BackendKind backend_kind_from_name(const std::string& name);  // "auto" | "cpu" | "cuda"
bool cuda_available();

std::unique_ptr<Backend> make_backend(BackendKind kind, const model::Model& m, BackendOptions opts);

// Checks a batch against the model and options; shared by every backend.
void validate_batch(std::span<const BatchEntry> batch, const model::Config& c, const BackendOptions& o);

}  // namespace quarrel::runtime

#pragma once
// runtime::Session: one sequence's state over a backend: the tokens in its KV
// slot, and the logits of the last evaluation.
#include <span>
#include <vector>

#include "runtime/backend.h"
#include "runtime/kv_cache.h"

namespace quarrel::runtime {

class Session {
 public:
  Session(Backend& backend, const model::Config& config);

  // Appends tokens to the sequence and runs them through the model in batches
  // of at most n_batch. Returns the logits of the last token (n_vocab floats),
  // or, with all_logits, of every token given ([tokens.size()][n_vocab]). They
  // live in the backend's logits_buffer(): valid until the next evaluation
  // through this backend.
  const float* eval(std::span<const int32_t> tokens, bool all_logits = false);
  // Appends one token, runs it and returns the argmax of its logits (ties to
  // the lower id), which a GPU backend picks on the device without copying
  // the logits back. The logits of eval() are not updated.
  int32_t eval_greedy(int32_t token);
  // Keeps the first n tokens of the sequence (for reuse of a shared prefix).
  void truncate(int32_t n);
  void clear() { truncate(0); }

  int32_t n_past() const { return kv_.n_past(0); }
  int32_t n_ctx() const { return kv_.n_ctx(); }
  int32_t n_vocab() const { return static_cast<int32_t>(config_.n_vocab); }
  std::span<const int32_t> tokens() const { return kv_.tokens(0); }
  Backend& backend() { return backend_; }

 private:
  // Checks the tokens, appends them to the sequence and returns run(first
  // position); if run throws, the sequence is cut back to what it was.
  template <typename Run>
  auto append_and_run(std::span<const int32_t> tokens, Run&& run);

  Backend& backend_;
  const model::Config& config_;
  KvCache kv_;
  std::vector<BatchEntry> batch_;
  size_t logits_size_ = 0;  // floats asked of backend.logits_buffer()
};

}  // namespace quarrel::runtime

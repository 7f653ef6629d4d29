#include "runtime/session.h"

#include <algorithm>

#include "common/error.h"

namespace quarrel::runtime {

Session::Session(Backend& backend, const model::Config& config)
    : backend_(backend), config_(config), kv_(1, backend.options().n_ctx), logits_size_(config.n_vocab) {
  batch_.reserve(backend.options().n_batch);
}

template <typename Run>
auto Session::append_and_run(std::span<const int32_t> tokens, Run&& run) {
  if (tokens.empty()) fail("nothing to evaluate");
  for (int32_t t : tokens)
    if (t < 0 || t >= config_.n_vocab) fail("token id {} is out of range [0, {})", t, config_.n_vocab);
  const int32_t start = n_past();
  kv_.apply({.kind = KvCache::Op::Kind::Append, .seq = 0, .tokens = tokens});
  try {
    return run(start);
  } catch (...) {
    kv_.apply({.kind = KvCache::Op::Kind::Truncate, .seq = 0, .n_keep = start});
    throw;
  }
}

const float* Session::eval(std::span<const int32_t> tokens, bool all_logits) {
  return append_and_run(tokens, [&](int32_t start) {
    if (all_logits) logits_size_ = std::max(logits_size_, tokens.size() * config_.n_vocab);
    // Asked for at every call: another user of the backend may have moved it.
    float* logits = backend_.logits_buffer(logits_size_);
    const size_t n_batch = backend_.options().n_batch;
    for (size_t i = 0; i < tokens.size(); i += n_batch) {
      size_t n = std::min(n_batch, tokens.size() - i);
      batch_.clear();
      for (size_t j = 0; j < n; ++j) {
        bool last = i + j + 1 == tokens.size();
        batch_.push_back({tokens[i + j], static_cast<int32_t>(start + i + j), 0, all_logits || last});
      }
      float* out = all_logits ? logits + i * config_.n_vocab : logits;
      backend_.forward(batch_, out);
    }
    return static_cast<const float*>(logits);
  });
}

int32_t Session::eval_greedy(int32_t token) {
  const int32_t one[1] = {token};
  return append_and_run(one, [&](int32_t pos) { return backend_.decode_greedy(token, pos, 0); });
}

void Session::truncate(int32_t n) { kv_.apply({.kind = KvCache::Op::Kind::Truncate, .seq = 0, .n_keep = n}); }

}  // namespace quarrel::runtime

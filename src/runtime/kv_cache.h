#pragma once
// runtime::KvCache: the bookkeeping of a backend's KV storage. Each sequence
// slot holds the tokens at positions 0..n-1; the backend's storage mirrors it.
// apply() is the one entry point that changes it, so the rules (no gaps, no
// overflow) live in one place and can be tested alone.
#include <cstdint>
#include <span>
#include <vector>

namespace quarrel::runtime {

class KvCache {
 public:
  KvCache(int32_t n_seq, int32_t n_ctx);

  struct Op {
    enum class Kind { Append, Truncate, Clear } kind;
    int32_t seq = 0;
    std::span<const int32_t> tokens = {};  // Append: the tokens now at n_past(seq)...
    int32_t n_keep = 0;                    // Truncate: positions kept
  };
  // Throws quarrel::Error when the op does not fit (slot, context, length).
  void apply(const Op& op);

  int32_t n_seq() const { return static_cast<int32_t>(slots_.size()); }
  int32_t n_ctx() const { return n_ctx_; }
  int32_t n_past(int32_t seq) const;
  std::span<const int32_t> tokens(int32_t seq) const;
  // Length of the longest common prefix of the slot's tokens and `tokens`.
  int32_t common_prefix(int32_t seq, std::span<const int32_t> tokens) const;

 private:
  void check_seq(int32_t seq) const;
  int32_t n_ctx_;
  std::vector<std::vector<int32_t>> slots_;
};

}  // namespace quarrel::runtime

#include "runtime/kv_cache.h"

#include "common/error.h"

namespace quarrel::runtime {

namespace {

// Runs before slots_ is sized: a negative count would otherwise reach
// std::vector as a huge size_t and throw std::length_error instead.
int32_t checked_slots(int32_t n_seq, int32_t n_ctx) {
  if (n_seq < 1 || n_ctx < 1) fail("kv cache: {} slots of {} positions is not a cache", n_seq, n_ctx);
  return n_seq;
}

}  // namespace

KvCache::KvCache(int32_t n_seq, int32_t n_ctx) : n_ctx_(n_ctx), slots_(checked_slots(n_seq, n_ctx)) {
  for (auto& s : slots_) s.reserve(n_ctx);
}

void KvCache::check_seq(int32_t seq) const {
  if (seq < 0 || seq >= n_seq()) fail("kv cache: sequence {} is out of range [0, {})", seq, n_seq());
}

void KvCache::apply(const Op& op) {
  check_seq(op.seq);
  auto& s = slots_[op.seq];
  switch (op.kind) {
    case Op::Kind::Append:
      if (op.tokens.size() > static_cast<size_t>(n_ctx_) - s.size())
        fail("context is full: {} tokens in cache + {} new exceed the context size {}", s.size(), op.tokens.size(),
             n_ctx_);
      s.insert(s.end(), op.tokens.begin(), op.tokens.end());
      break;
    case Op::Kind::Truncate:
      if (op.n_keep < 0 || op.n_keep > static_cast<int32_t>(s.size()))
        fail("kv cache: cannot keep {} of {} positions", op.n_keep, s.size());
      s.resize(op.n_keep);
      break;
    case Op::Kind::Clear:
      s.clear();
      break;
  }
}

int32_t KvCache::n_past(int32_t seq) const {
  check_seq(seq);
  return static_cast<int32_t>(slots_[seq].size());
}

std::span<const int32_t> KvCache::tokens(int32_t seq) const {
  check_seq(seq);
  return slots_[seq];
}

int32_t KvCache::common_prefix(int32_t seq, std::span<const int32_t> tokens) const {
  check_seq(seq);
  const auto& s = slots_[seq];
  size_t n = 0;
  while (n < s.size() && n < tokens.size() && s[n] == tokens[n]) ++n;
  return static_cast<int32_t>(n);
}

}  // namespace quarrel::runtime

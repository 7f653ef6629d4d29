#pragma once
// Compact hash tables for the tokenizer's hot lookups. Token texts live in one
// arena and are found by string_view without building a std::string; merge
// ranks are keyed by a pair of token ids.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace quarrel::tokenizer {

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xFF51AFD7ED558CCDull);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  if (i < s.size()) {
    uint64_t w = 0;
    std::memcpy(&w, s.data() + i, s.size() - i);
    h = (h ^ w) * 0x94D049BB133111EBull;
  }
  h ^= h >> 29;
  h *= 0xBF58476D1CE4E5B9ull;
  return h ^ (h >> 32);
}

// Token id <-> text. Append every text, then build_index() once.
class TokenTable {
 public:
  void reserve(size_t n_tokens, size_t n_bytes) {
    offsets_.reserve(n_tokens + 1);
    arena_.reserve(n_bytes);
  }
  void push_back(std::string_view text) {
    arena_.append(text);
    offsets_.push_back(static_cast<uint32_t>(arena_.size()));
  }
  int32_t size() const { return static_cast<int32_t>(offsets_.size() - 1); }
  std::string_view text(int32_t id) const {
    return std::string_view(arena_).substr(offsets_[id], offsets_[id + 1] - offsets_[id]);
  }

  // Returns -1, or the id of a text that repeats an earlier one.
  int32_t build_index() {
    size_t cap = 16;
    while (cap < static_cast<size_t>(size()) * 2) cap <<= 1;
    slots_.assign(cap, 0);
    mask_ = cap - 1;
    for (int32_t id = 0; id < size(); ++id) {
      const uint64_t h = hash_bytes(text(id));
      for (size_t i = h & mask_;; i = (i + 1) & mask_) {
        if (slots_[i] == 0) {
          slots_[i] = (h & 0xFFFFFFFF00000000ull) | static_cast<uint32_t>(id + 1);
          break;
        }
        if ((slots_[i] >> 32) == (h >> 32) && text(slot_id(i)) == text(id)) return id;
      }
    }
    return -1;
  }

  int32_t find(std::string_view s) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash_bytes(s);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == 0) return -1;
      if ((slots_[i] >> 32) == (h >> 32) && text(slot_id(i)) == s) return slot_id(i);
    }
  }

 private:
  int32_t slot_id(size_t i) const { return static_cast<int32_t>(slots_[i] & 0xFFFFFFFFu) - 1; }

  std::string arena_;
  std::vector<uint32_t> offsets_{0};
  std::vector<uint64_t> slots_;  // (hash high bits << 32) | (id + 1); 0 is empty
  size_t mask_ = 0;
};

// (left id, right id) -> merge rank.
class MergeTable {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    ranks_.assign(cap, -1);
    mask_ = cap - 1;
  }

  // Keeps the first insertion of a pair, as llama.cpp's map emplace does.
  void insert(int32_t left, int32_t right, int32_t rank) {
    const uint64_t key = pack(left, right);
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == key) return;
      if (keys_[i] == kEmpty) {
        keys_[i] = key;
        ranks_[i] = rank;
        return;
      }
    }
  }

  // -1 when the pair does not merge.
  int32_t find(int32_t left, int32_t right) const {
    if (keys_.empty()) return -1;
    const uint64_t key = pack(left, right);
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (keys_[i] == key) return ranks_[i];
      if (keys_[i] == kEmpty) return -1;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t pack(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    return k ^ (k >> 33);
  }

  std::vector<uint64_t> keys_;
  std::vector<int32_t> ranks_;
  size_t mask_ = 0;
};

}  // namespace quarrel::tokenizer

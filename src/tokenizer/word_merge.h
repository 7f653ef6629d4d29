#pragma once
// The merge loops of both vocabulary types, run on one fragment of raw text
// (special tokens already split out). Both follow llama.cpp's order exactly: a
// heap of adjacent pairs, best first (SPM: highest score; BPE: lowest merge
// rank), ties to the leftmost pair.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/token_table.h"
#include "tokenizer/vocab.h"

namespace quarrel::tokenizer {

// Ids already computed for a word in this call. Prose repeats its words, so
// most words are merged once per call. Open addressing over one key arena and
// one id array keeps a lookup to a hash, a probe and a memcmp.
class WordCache {
 public:
  static constexpr size_t kMaxKeyBytes = 128;  // longer words are rare; skip them

  // Appends the cached ids of key to out and returns true on a hit.
  bool append_to(std::string_view key, std::vector<int32_t>& out) const {
    if (slots_.empty() || key.size() > kMaxKeyBytes) return false;
    const uint64_t h = hash_bytes(key);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key_len == kEmpty) return false;
      if (e.hash == h && e.key_len == key.size() &&
          std::memcmp(keys_.data() + e.key_off, key.data(), key.size()) == 0) {
        out.insert(out.end(), ids_.begin() + e.ids_off, ids_.begin() + e.ids_off + e.ids_len);
        return true;
      }
    }
  }

  void store(std::string_view key, const int32_t* first, const int32_t* last) {
    if (key.size() > kMaxKeyBytes) return;
    if ((count_ + 1) * 2 > slots_.size()) grow();
    const uint64_t h = hash_bytes(key);
    size_t i = h & mask_;
    while (slots_[i].key_len != kEmpty) i = (i + 1) & mask_;
    slots_[i] = {h, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(key.size()),
                 static_cast<uint32_t>(ids_.size()), static_cast<uint32_t>(last - first)};
    keys_.append(key);
    ids_.insert(ids_.end(), first, last);
    ++count_;
  }

 private:
  static constexpr uint32_t kEmpty = ~0u;
  struct Entry {
    uint64_t hash = 0;
    uint32_t key_off = 0, key_len = kEmpty, ids_off = 0, ids_len = 0;
  };
  void grow() {
    std::vector<Entry> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Entry{});
    mask_ = slots_.size() - 1;
    for (const Entry& e : old) {
      if (e.key_len == kEmpty) continue;
      size_t i = e.hash & mask_;
      while (slots_[i].key_len != kEmpty) i = (i + 1) & mask_;
      slots_[i] = e;
    }
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0, count_ = 0;
  std::string keys_;
  std::vector<int32_t> ids_;
};

// A run of bytes that may merge with its neighbours.
struct MergeSymbol {
  uint32_t start;  // byte offset in the merged text
  uint32_t n;      // byte length; 0 once merged into its left neighbour
  int32_t prev, next;
  int32_t id;  // BPE: token id of the text, -1 if it is not a token
};

struct MergePair {
  float score;  // SPM: token score (higher first)
  int32_t rank;  // BPE: merge rank (lower first)
  int32_t left, right;
  uint32_t size;  // bytes of left + right when queued; a mismatch means stale
};

// Working memory reused across fragments and words of one encode() call.
struct MergeScratch {
  std::vector<MergeSymbol> symbols;
  std::vector<MergePair> heap;
  std::string text;  // SPM: escaped fragment; BPE: byte-encoded word
  std::string key;   // BPE: "left right" for text-keyed merges
  WordCache cache;
  PreTokenizeScratch pre;
};

// SPM: text is the fragment with spaces already replaced by U+2581.
void spm_tokenize(const Vocab& v, std::string_view text, std::vector<int32_t>& out, MergeScratch& s);

// Byte-level BPE: pre-tokenizes the fragment, byte-encodes and merges each word.
void bpe_tokenize(const Vocab& v, const PreTokenizer& pre, std::string_view fragment,
                  std::vector<int32_t>& out, MergeScratch& s);

}  // namespace quarrel::tokenizer

// Byte-level BPE ("gpt2" vocabularies): each pre-token's bytes are mapped to
// GPT-2's printable characters, then the adjacent pair with the lowest merge
// rank is merged until none is left.
#include <algorithm>

#include "tokenizer/unicode.h"
#include "tokenizer/word_merge.h"

namespace quarrel::tokenizer {

namespace {

// Heap order: the top is the lowest rank, then the leftmost pair.
bool bpe_pair_less(const MergePair& a, const MergePair& b) {
  return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
}

void bpe_try_pair(const Vocab& v, MergeScratch& s, int32_t left, int32_t right) {
  if (left < 0 || right < 0) return;
  const MergeSymbol& l = s.symbols[left];
  const MergeSymbol& r = s.symbols[right];
  int32_t rank = -1;
  if (l.id >= 0 && r.id >= 0) {
    rank = v.merges.find(l.id, r.id);
    if (rank < 0) return;
  } else {
    // A half that is not a token: only a merge listed by text can apply.
    if (v.merges_by_text.empty()) return;
    const std::string_view text(s.text);
    s.key.assign(text.substr(l.start, l.n)).append(" ").append(text.substr(r.start, r.n));
    const auto it = v.merges_by_text.find(s.key);
    if (it == v.merges_by_text.end()) return;
    rank = it->second;
  }
  s.heap.push_back({0.0f, rank, left, right, l.n + r.n});
  std::push_heap(s.heap.begin(), s.heap.end(), bpe_pair_less);
}

void bpe_word(const Vocab& v, std::string_view word, std::vector<int32_t>& out, MergeScratch& s) {
  if (s.cache.append_to(word, out)) return;
  const size_t before = out.size();

  const ByteUnicodeMap& map = byte_unicode_map();
  s.text.clear();
  s.symbols.clear();
  s.heap.clear();
  for (size_t i = 0; i < word.size(); ++i) {
    const auto b = static_cast<uint8_t>(word[i]);
    const auto start = static_cast<uint32_t>(s.text.size());
    s.text.append(map.utf8[b].data(), map.utf8_len[b]);
    const auto index = static_cast<int32_t>(i);
    s.symbols.push_back({start, map.utf8_len[b], index - 1, i + 1 == word.size() ? -1 : index + 1,
                         v.bpe_byte_char_token[b]});
  }

  const int32_t whole = v.ignore_merges ? v.find(s.text) : -1;
  if (whole >= 0) {
    out.push_back(whole);
  } else {
    for (int32_t i = 1; i < static_cast<int32_t>(s.symbols.size()); ++i) bpe_try_pair(v, s, i - 1, i);
    while (!s.heap.empty()) {
      std::pop_heap(s.heap.begin(), s.heap.end(), bpe_pair_less);
      const MergePair p = s.heap.back();
      s.heap.pop_back();
      MergeSymbol& l = s.symbols[p.left];
      MergeSymbol& r = s.symbols[p.right];
      if (l.n == 0 || r.n == 0 || l.n + r.n != p.size) continue;  // stale
      l.n += r.n;
      l.id = v.find(std::string_view(s.text).substr(l.start, l.n));
      r.n = 0;
      l.next = r.next;
      if (r.next >= 0) s.symbols[r.next].prev = p.left;
      bpe_try_pair(v, s, l.prev, p.left);
      bpe_try_pair(v, s, p.left, l.next);
    }
    const std::string_view text(s.text);
    for (int32_t i = 0; i != -1 && !s.symbols.empty(); i = s.symbols[i].next) {
      const MergeSymbol& sym = s.symbols[i];
      if (sym.id >= 0) {
        out.push_back(sym.id);
        continue;
      }
      // Not a token: llama.cpp looks up each byte of the encoded text on its
      // own and keeps those that happen to be tokens.
      for (char c : text.substr(sym.start, sym.n)) {
        if (const int32_t id = v.find(std::string_view(&c, 1)); id >= 0) out.push_back(id);
      }
    }
  }
  s.cache.store(word, out.data() + before, out.data() + out.size());
}

}  // namespace

void bpe_tokenize(const Vocab& v, const PreTokenizer& pre, std::string_view fragment,
                  std::vector<int32_t>& out, MergeScratch& s) {
  pre.split(fragment, s.pre, [&](std::string_view word) { bpe_word(v, word, out, s); });
}

}  // namespace quarrel::tokenizer

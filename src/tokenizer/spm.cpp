// SentencePiece-style BPE ("llama" vocabularies): start from UTF-8
// characters, repeatedly merge the adjacent pair whose concatenation is the
// highest-scoring token, and spell whatever is left over with byte tokens.
#include <algorithm>

#include "tokenizer/unicode.h"
#include "tokenizer/word_merge.h"

namespace quarrel::tokenizer {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Heap order: the top is the highest score, then the leftmost pair.
bool spm_pair_less(const MergePair& a, const MergePair& b) {
  return a.score < b.score || (a.score == b.score && a.left > b.left);
}

void spm_try_pair(const Vocab& v, std::string_view text, MergeScratch& s, int32_t left, int32_t right) {
  if (left < 0 || right < 0) return;
  const MergeSymbol& l = s.symbols[left];
  const MergeSymbol& r = s.symbols[right];
  const uint32_t size = l.n + r.n;
  const int32_t id = v.find(text.substr(l.start, size));
  if (id < 0) return;
  s.heap.push_back({v.scores[id], 0, left, right, size});
  std::push_heap(s.heap.begin(), s.heap.end(), spm_pair_less);
}

// Merges one word (or the whole fragment) and appends its ids.
void spm_merge(const Vocab& v, std::string_view text, std::vector<int32_t>& out, MergeScratch& s) {
  s.symbols.clear();
  s.heap.clear();
  for (uint32_t pos = 0; pos < text.size();) {
    const auto len = static_cast<uint32_t>(
        std::min(utf8_lead_length(static_cast<uint8_t>(text[pos])), text.size() - pos));
    const auto index = static_cast<int32_t>(s.symbols.size());
    pos += len;
    s.symbols.push_back({pos - len, len, index - 1, pos == text.size() ? -1 : index + 1, -1});
  }
  for (int32_t i = 1; i < static_cast<int32_t>(s.symbols.size()); ++i) spm_try_pair(v, text, s, i - 1, i);

  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), spm_pair_less);
    const MergePair p = s.heap.back();
    s.heap.pop_back();
    MergeSymbol& l = s.symbols[p.left];
    MergeSymbol& r = s.symbols[p.right];
    if (l.n == 0 || r.n == 0 || l.n + r.n != p.size) continue;  // stale
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) s.symbols[r.next].prev = p.left;
    spm_try_pair(v, text, s, l.prev, p.left);
    spm_try_pair(v, text, s, p.left, l.next);
  }

  if (s.symbols.empty()) return;
  for (int32_t i = 0; i != -1; i = s.symbols[i].next) {
    const MergeSymbol& sym = s.symbols[i];
    const std::string_view piece = text.substr(sym.start, sym.n);
    if (const int32_t id = v.find(piece); id >= 0) {
      out.push_back(id);
      continue;
    }
    // No token for this character: spell it with byte tokens. llama.cpp
    // throws when a vocabulary lacks them; one unknown token stands in here.
    const bool spellable = std::all_of(piece.begin(), piece.end(),
                                       [&](char c) { return v.byte_token[static_cast<uint8_t>(c)] >= 0; });
    if (spellable) {
      for (char c : piece) out.push_back(v.byte_token[static_cast<uint8_t>(c)]);
    } else if (v.unk >= 0) {
      out.push_back(v.unk);
    }
  }
}

}  // namespace

void spm_tokenize(const Vocab& v, std::string_view text, std::vector<int32_t>& out, MergeScratch& s) {
  if (!v.spm_words_independent) {
    spm_merge(v, text, out, s);
    return;
  }
  // Cut before each "▁" that follows another character; see
  // spm_words_are_independent() for why the ids cannot change.
  size_t word_start = 0;
  bool prev_is_space = false;
  const auto flush = [&](size_t end) {
    const std::string_view word = text.substr(word_start, end - word_start);
    if (word.empty() || s.cache.append_to(word, out)) return;
    const size_t before = out.size();
    spm_merge(v, word, out, s);
    s.cache.store(word, out.data() + before, out.data() + out.size());
  };
  for (size_t pos = 0; pos < text.size();) {
    const auto lead = static_cast<uint8_t>(text[pos]);
    if (lead < 0x80) {
      prev_is_space = false;
      ++pos;
      continue;
    }
    const size_t len = std::min(utf8_lead_length(lead), text.size() - pos);
    const bool is_space = text.substr(pos, len) == kSpace;
    if (is_space && !prev_is_space && pos > 0) {
      flush(pos);
      word_start = pos;
    }
    prev_is_space = is_space;
    pos += len;
  }
  flush(text.size());
}

}  // namespace quarrel::tokenizer

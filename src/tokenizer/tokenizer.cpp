#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <bitset>

#include "common/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"
#include "tokenizer/word_merge.h"

namespace quarrel::tokenizer {

namespace {

// A piece of the input: raw text to tokenize, or a special token found in it.
struct Fragment {
  int32_t token;  // -1 for raw text
  size_t offset, length;
};

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Splits special-token texts out of the input, longest token first, as
// llama.cpp's tokenizer_st_partition does. Without parse_special only
// user-defined tokens are split out (control and unknown ones stay text).
std::vector<Fragment> partition_special(const Vocab& v, std::string_view text, bool parse_special) {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});

  std::bitset<256> present;  // skip tokens whose first byte never occurs
  for (char c : text) present.set(static_cast<uint8_t>(c));

  std::vector<Fragment> next;
  for (const int32_t special : v.special_tokens) {
    if (!parse_special && v.has_attr(special, kAttrControl | kAttrUnknown)) continue;
    const std::string_view tok = v.text(special);
    if (!present.test(static_cast<uint8_t>(tok[0])) || text.find(tok) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t off = f.offset, len = f.length;
      while (true) {
        const size_t match = text.substr(0, off + len).find(tok, off);
        if (match == std::string_view::npos) {
          next.push_back({-1, off, len});
          break;
        }
        size_t left_len = match - off;
        if (v.has_attr(special, kAttrLstrip)) {
          while (left_len > 0 && is_ascii_space(text[off + left_len - 1])) --left_len;
        }
        if (left_len > 0) next.push_back({-1, off, left_len});
        next.push_back({special, 0, 0});
        size_t right_off = match + tok.size();
        size_t right_len = off + len - right_off;
        if (v.has_attr(special, kAttrRstrip)) {
          while (right_len > 0 && is_ascii_space(text[right_off])) ++right_off, --right_len;
        }
        if (right_len == 0) break;
        off = right_off;
        len = right_len;
      }
    }
    frags.swap(next);
  }
  return frags;
}

// SentencePiece spells a space as U+2581.
void append_spm_escaped(std::string& out, std::string_view text) {
  for (size_t start = 0;;) {
    const size_t space = text.find(' ', start);
    out.append(text.substr(start, space - start));
    if (space == std::string_view::npos) return;
    out.append("\xE2\x96\x81");
    start = space + 1;
  }
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
  return with_context("tokenizer", [&] {
    Tokenizer t;
    auto vocab = std::make_shared<Vocab>(Vocab::load(f));
    if (vocab->type == VocabType::Bpe) t.pre_ = std::make_shared<PreTokenizer>(*vocab->pre_spec);
    t.vocab_ = std::move(vocab);
    return t;
  });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Vocab& v = *vocab_;
  // Offsets inside the tokenizers are 32-bit, and SPM triples each space.
  constexpr size_t kMaxText = size_t{1} << 30;
  if (text.size() > kMaxText) fail("tokenize: {} bytes of text is over the 1 GiB limit", text.size());
  const std::vector<Fragment> frags = partition_special(v, text, parse_special);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  MergeScratch scratch;

  const bool starts_with_bos = !frags.empty() && v.bos >= 0 && frags.front().token == v.bos;
  if (add_special && v.add_bos && !starts_with_bos) out.push_back(v.bos);

  bool prev_special = true;  // SPM: text at the start or after a special token gets a space
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    const std::string_view piece = text.substr(f.offset, f.length);
    if (v.type == VocabType::Spm) {
      std::string escaped;
      escaped.reserve(piece.size() + 8);
      if (v.add_space_prefix && prev_special) escaped = "\xE2\x96\x81";
      append_spm_escaped(escaped, piece);
      spm_tokenize(v, escaped, out, scratch);
    } else {
      bpe_tokenize(v, *pre_, piece, out, scratch);
    }
    prev_special = false;
  }

  if (add_special && v.add_eos) out.push_back(v.eos);
  return out;
}

void Tokenizer::append_piece(int32_t id, bool render_special, std::string& out) const {
  const Vocab& v = *vocab_;
  if (id < 0 || id >= v.size()) return;
  if (!render_special && v.has_attr(id, kAttrControl | kAttrUnknown)) return;
  const std::string_view text = v.text(id);
  if (v.has_attr(id, kAttrControl | kAttrUnknown | kAttrUserDefined)) {
    out.append(text);
  } else if (v.has_attr(id, kAttrNormal)) {
    if (v.type == VocabType::Spm) {
      // "▁" is SentencePiece's space.
      for (size_t i = 0; i < text.size(); ++i) {
        if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
          out += ' ';
          i += 2;
        } else {
          out += text[i];
        }
      }
    } else {
      const ByteUnicodeMap& map = byte_unicode_map();
      for (size_t pos = 0; pos < text.size();) {
        const size_t start = pos;
        const uint32_t c = utf8_decode_lenient(text, pos);
        if (c < map.byte_of.size() && map.byte_of[c] >= 0) {
          out += static_cast<char>(map.byte_of[c]);
        } else {
          out.append(text.substr(start, pos - start));  // not a byte character: keep it
        }
      }
    }
  } else if (v.has_attr(id, kAttrByte)) {
    out += static_cast<char>(v.byte_value(id));
  }
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  std::string out;
  append_piece(id, render_special, out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, DecodeOptions options) const {
  std::string raw;
  bool strip = options.strip_leading_space && vocab_->add_space_prefix;
  for (int32_t id : ids) {
    const size_t before = raw.size();
    append_piece(id, options.render_special, raw);
    if (strip && raw.size() > before) {
      if (raw[before] == ' ') raw.erase(before, 1);
      strip = false;
    }
  }
  std::string out;
  out.reserve(raw.size());
  utf8_sanitize(raw, out, /*final=*/true);
  return out;
}

int32_t Tokenizer::n_vocab() const { return vocab_->size(); }
int32_t Tokenizer::bos() const { return vocab_->bos; }
int32_t Tokenizer::eos() const { return vocab_->eos; }
int32_t Tokenizer::eot() const { return vocab_->eot; }
bool Tokenizer::add_bos() const { return vocab_->add_bos; }
bool Tokenizer::add_eos() const { return vocab_->add_eos; }
bool Tokenizer::add_space_prefix() const { return vocab_->add_space_prefix; }
bool Tokenizer::is_eog(int32_t id) const { return vocab_->is_eog(id); }
bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < vocab_->size() && vocab_->has_attr(id, kAttrControl);
}
std::string_view Tokenizer::token_text(int32_t id) const {
  return id >= 0 && id < vocab_->size() ? vocab_->text(id) : std::string_view();
}
std::string_view Tokenizer::model() const { return vocab_->model; }
std::string_view Tokenizer::pre() const {
  return vocab_->type == VocabType::Bpe ? std::string_view(vocab_->pre) : std::string_view();
}
std::string_view Tokenizer::chat_template() const { return vocab_->chat_template; }

}  // namespace quarrel::tokenizer

#pragma once
// The vocabulary as read from GGUF metadata: token texts, scores and
// attributes, special token ids, BPE merges, and the flags that steer
// tokenization. Loading checks everything tokenization later relies on.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/token_table.h"

namespace quarrel::gguf {
class File;
}

namespace quarrel::tokenizer {

struct PreTokenizerSpec;

enum class VocabType { Spm, Bpe };

// Token attributes: the GGUF token type plus the strip flags some models add.
enum TokenAttr : uint16_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1 << 0,
  kAttrUnused = 1 << 1,
  kAttrNormal = 1 << 2,
  kAttrControl = 1 << 3,
  kAttrUserDefined = 1 << 4,
  kAttrByte = 1 << 5,
  kAttrLstrip = 1 << 6,  // eat whitespace before the token when splitting specials
  kAttrRstrip = 1 << 7,  // eat whitespace after it
};

struct Vocab {
  VocabType type = VocabType::Spm;
  std::string model;  // tokenizer.ggml.model
  std::string pre;    // tokenizer.ggml.pre as resolved (after fallbacks)
  const PreTokenizerSpec* pre_spec = nullptr;  // BPE only

  TokenTable tokens;
  std::vector<float> scores;
  std::vector<uint16_t> attrs;  // TokenAttr bits

  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1, sep = -1, pad = -1;
  int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;

  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  // Read for completeness; llama.cpp applies it to UGM vocabs only, so SPM
  // tokenization ignores it too (the ids must match).
  bool remove_extra_whitespaces = false;
  bool ignore_merges = false;  // BPE: a pre-token that is a token is kept whole

  std::vector<int32_t> eog;             // sorted ids that end generation
  std::vector<int32_t> special_tokens;  // control/user-defined/unknown, longest text first
  std::array<int32_t, 256> byte_token{};  // SPM byte fallback: <0xNN> (or the raw byte)
  std::array<int32_t, 256> bpe_byte_char_token{};  // BPE: id of each byte's GPT-2 character
  bool spm_words_independent = false;  // SPM: merging word by word gives the same ids

  // BPE merges: by token ids, plus a text-keyed fallback ("left right") for
  // the rare merge whose halves are not tokens themselves.
  MergeTable merges;
  std::unordered_map<std::string, int32_t> merges_by_text;

  std::string chat_template;

  int32_t size() const { return tokens.size(); }
  std::string_view text(int32_t id) const { return tokens.text(id); }
  int32_t find(std::string_view s) const { return tokens.find(s); }
  bool has_attr(int32_t id, uint16_t a) const { return (attrs[id] & a) != 0; }
  bool is_eog(int32_t id) const;
  // The byte a kAttrByte token stands for (its text is "<0xNN>", checked at load).
  uint8_t byte_value(int32_t id) const;

  // Throws quarrel::Error naming the key and the reason.
  static Vocab load(const gguf::File& f);
};

}  // namespace quarrel::tokenizer

#pragma once
// tokenizer::Tokenizer turns text into token ids and back, exactly as
// llama.cpp does for the vocabulary stored in a GGUF file: SentencePiece-style
// BPE ("llama") or byte-level BPE ("gpt2") with its pre-tokenizer.
//
// A Tokenizer is immutable once loaded; copies share the vocabulary, and any
// number of threads may call its const methods at once.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quarrel::gguf {
class File;
}

namespace quarrel::tokenizer {

struct Vocab;
class PreTokenizer;

struct DecodeOptions {
  // Render control tokens (<s>, <|eot_id|>, ...) as their text; by default
  // they produce nothing.
  bool render_special = false;
  // SPM vocabularies with add_space_prefix: drop the space that encode()
  // put in front of the text, so that decode(encode(t)) == t.
  bool strip_leading_space = true;
};

class Tokenizer {
 public:
  // Throws quarrel::Error on a missing or malformed vocabulary.
  static Tokenizer from_gguf(const gguf::File& f);

  // add_special: add BOS/EOS as the vocabulary asks (never a second BOS when
  // the text already starts with one). parse_special: text such as "<|eot_id|>"
  // becomes that control token; otherwise it is tokenized as plain text.
  // Invalid UTF-8 never throws (SPM: byte tokens; BPE: U+FFFD, as llama.cpp);
  // only text over 1 GiB does (quarrel::Error).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes one token stands for ("▁" -> ' ', <0x0A> -> '\n', GPT-2 byte
  // characters -> bytes). May be part of a UTF-8 character. Control tokens
  // give "" unless render_special. An id outside the vocabulary gives "".
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  // The same, appended to out (no allocation when out has room).
  void append_piece(int32_t id, bool render_special, std::string& out) const;

  // Concatenated pieces as valid UTF-8: invalid sequences become U+FFFD.
  std::string decode(std::span<const int32_t> ids, DecodeOptions options = {}) const;

  int32_t n_vocab() const;
  int32_t bos() const;  // -1 when the vocabulary has none
  int32_t eos() const;
  int32_t eot() const;
  bool add_bos() const;
  bool add_eos() const;
  bool add_space_prefix() const;  // SPM: encode() puts a space before the text
  bool is_eog(int32_t id) const;      // eos, eot, <|im_end|>, <|eot_id|>, ...
  bool is_control(int32_t id) const;  // control-type token (false out of range)
  std::string_view token_text(int32_t id) const;  // raw vocabulary text ("" out of range)
  std::string_view model() const;                // "llama" or "gpt2"
  std::string_view pre() const;                  // pre-tokenizer in use ("" for SPM)
  std::string_view chat_template() const;        // "" when the file has none

 private:
  std::shared_ptr<const Vocab> vocab_;
  std::shared_ptr<const PreTokenizer> pre_;  // BPE only
};

// Streams text out of a growing sequence of tokens. push() returns only
// complete UTF-8 characters; bytes of a character split across tokens are
// held back until it completes. Invalid bytes become U+FFFD.
class Detokenizer {
 public:
  // By default the pieces are emitted as is: a stream usually continues a
  // prompt, so a leading space is real.
  explicit Detokenizer(const Tokenizer& tokenizer,
                       DecodeOptions options = {.render_special = false, .strip_leading_space = false});

  std::string push(int32_t id);
  // Ends the stream: a held-back incomplete character becomes U+FFFD.
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  DecodeOptions options_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace quarrel::tokenizer

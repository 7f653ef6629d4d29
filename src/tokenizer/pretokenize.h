#pragma once
// Byte-level BPE pre-tokenizers: the regex lists llama.cpp runs for each
// tokenizer.ggml.pre value, executed by PCRE2 (JIT).
//
// llama.cpp does not run these regexes on the text itself. Regexes that use
// \p{..} classes run on a "collapsed" copy where every non-ASCII code point
// becomes one byte naming its class (letter, number, ...), and non-ASCII
// whitespace becomes \v. Regexes with non-ASCII literals run on the code
// points, again with non-ASCII whitespace as \v. We do the same with PCRE2
// (8-bit; UTF mode only for the second kind) so that the splits, and hence the
// ids, are identical, quirks included.
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quarrel::tokenizer {

struct PreRegex {
  const char* pattern;  // llama.cpp's expression, with \p{..} classes
  bool codepoints;      // has non-ASCII literals (\x{..}): match code points
};

struct PreTokenizerSpec {
  std::span<const std::string_view> names;  // tokenizer.ggml.pre values
  std::span<const PreRegex> regexes;        // applied in order, each splitting the last's pieces
  bool ignore_merges;                       // a pre-token that is a token stays whole
  bool add_bos;                             // default for add_bos_token
};

// nullptr when the name is unknown.
const PreTokenizerSpec* find_pre_tokenizer(std::string_view pre);
// llama.cpp's 'default' set, also used for a missing or unknown pre.
const PreTokenizerSpec& default_pre_tokenizer();

// Per-call working memory (PCRE2 match data, JIT stack, buffers). Reusing it
// across calls avoids allocation; it must not be shared between threads.
class PreTokenizeScratch {
 public:
  PreTokenizeScratch();
  ~PreTokenizeScratch();
  PreTokenizeScratch(const PreTokenizeScratch&) = delete;
  PreTokenizeScratch& operator=(const PreTokenizeScratch&) = delete;

 private:
  friend class PreTokenizer;
  struct Pcre;
  std::unique_ptr<Pcre> pcre_;
  std::string_view norm_view_;         // the text as llama.cpp re-encodes it
  std::string norm_;                   // storage for norm_view_ when it differs from the text
  std::vector<uint32_t> norm_offset_;  // byte offset in norm_view_ of each code point, + end
  std::string collapsed_;             // one byte per code point
  std::string utf_;                   // code-point view for regexes with literals
  std::vector<uint32_t> utf_offset_;
  std::vector<uint32_t> pieces_, next_pieces_;  // piece lengths in code points
};

class PreTokenizer {
 public:
  // Compiles the spec's regexes; throws quarrel::Error if PCRE2 rejects one.
  explicit PreTokenizer(const PreTokenizerSpec& spec);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Splits text into pre-tokens, calling emit(word) for each in order. Words
  // are UTF-8 as llama.cpp sees them: each invalid byte became U+FFFD.
  template <typename Emit>
  void split(std::string_view text, PreTokenizeScratch& s, Emit&& emit) const {
    run(text, s);
    size_t cpt = 0;
    for (uint32_t len : s.pieces_) {
      const uint32_t a = s.norm_offset_[cpt], b = s.norm_offset_[cpt + len];
      emit(s.norm_view_.substr(a, b - a));
      cpt += len;
    }
  }

 private:
  struct Compiled;
  void run(std::string_view text, PreTokenizeScratch& s) const;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace quarrel::tokenizer

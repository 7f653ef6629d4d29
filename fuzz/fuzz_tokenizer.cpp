// libFuzzer target: tokenize arbitrary bytes with three vocabularies (SPM with
// byte fallback, Llama 3's byte-level BPE, DeepSeek Coder's code-point
// regexes), then detokenize. Nothing may crash, every id must be in range,
// streaming must equal decode, and valid UTF-8 must come back unchanged.
//
// The vocabularies are read from tests/data/vocab, found from the current
// directory (`make fuzz` runs in the repository root) or next to the binary.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gguf/file.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

namespace fs = std::filesystem;
using quarrel::tokenizer::Tokenizer;

[[noreturn]] void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_tokenizer: %s: %s\n", what, detail.c_str());
  std::abort();
}

fs::path vocab_dir() {
  std::vector<fs::path> roots = {fs::current_path()};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) roots.push_back(p);
  }
  for (const fs::path& root : roots) {
    const fs::path dir = root / "tests" / "data" / "vocab";
    if (fs::exists(dir / "vocab-llama-spm.gguf")) return dir;
  }
  die("cannot find tests/data/vocab", "run from the repository root");
}

const std::vector<Tokenizer>& tokenizers() {
  static const std::vector<Tokenizer> all = [] {
    std::vector<Tokenizer> v;
    const fs::path dir = vocab_dir();
    for (const char* name : {"llama-spm", "llama3", "deepseek-coder"}) {
      const auto f = quarrel::gguf::File::open((dir / (std::string("vocab-") + name + ".gguf")).string());
      v.push_back(Tokenizer::from_gguf(f));
    }
    return v;
  }();
  return all;
}

bool is_valid_utf8(const std::string& s) {
  std::string out;
  return quarrel::tokenizer::utf8_sanitize(s, out, true) == s.size() && out == s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the flags; the rest is the text.
  const bool add_special = data[0] & 1;
  const bool parse_special = data[0] & 2;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const bool valid = is_valid_utf8(text);

  for (const Tokenizer& tok : tokenizers()) {
    const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
    for (int32_t id : ids) {
      if (id < 0 || id >= tok.n_vocab()) die("id out of range", std::to_string(id));
    }
    const std::string decoded = tok.decode(ids);
    if (!is_valid_utf8(decoded)) die("decode produced invalid UTF-8", std::string(tok.model()));

    quarrel::tokenizer::Detokenizer stream(tok, {.render_special = false, .strip_leading_space = true});
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.flush();
    if (streamed != decoded) die("streaming differs from decode", std::string(tok.model()));

    // Control tokens (BOS, parsed specials) render as nothing, so only plain
    // tokenization of valid text must round-trip; SentencePiece reads a
    // literal U+2581 as a space, so SPM cannot spell one.
    const bool spellable = tok.model() != "llama" || text.find("\xE2\x96\x81") == std::string::npos;
    if (valid && spellable && !add_special && !parse_special && decoded != text) {
      die("round trip failed", std::string(tok.model()) + "/" + std::string(tok.pre()));
    }
  }
  return 0;
}

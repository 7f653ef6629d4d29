// libFuzzer target for the whole loading path of a GGUF file: the reader,
// the model config and weight checks, and the tokenizer's vocabulary checks.
// A malformed input may only end in quarrel::Error; anything else (a crash, an
// out-of-bounds read, a leak, undefined behaviour, another exception type) is
// a bug that the sanitizers or libFuzzer report.
//
// Seeds in fuzz/seeds/fuzz_gguf/ are tiny valid models written by
// tests/gguf_corrupt.cpp's tiny_model_spec() (llama/qwen2/qwen3, f32/f16/q8_0,
// SentencePiece and byte-level BPE vocabularies); the test
// GgufShipped.FuzzSeedsAreSmallAndLoad keeps them loadable.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "common/error.h"
#include "gguf/file.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace quarrel;
  std::optional<gguf::File> file;
  try {
    file.emplace(gguf::File::from_bytes(std::span<const uint8_t>(data, size)));
  } catch (const Error&) {
    return 0;
  }
  // The tokenizer runs on the file whether or not the model checks pass: a
  // vocabulary-only file is valid input for it.
  try {
    const auto tok = tokenizer::Tokenizer::from_gguf(*file);
    // A vocabulary that loads must also be usable: encode and decode a little
    // text (byte fallback, special tokens) and render every token.
    const auto ids = tok.encode("In the beginning <s> \xC3\xA9\xF0\x9F\x99\x82 42\n", true, true);
    tok.decode(ids);
    const int32_t n = std::min(tok.n_vocab(), 1024);
    for (int32_t id = 0; id < n; ++id) tok.token_to_piece(id, true);
  } catch (const Error&) {
  }
  try {
    const auto m = model::Model::from_file(std::move(*file));
    (void)model::weights_bytes(m->weights);
  } catch (const Error&) {
  }
  return 0;
}

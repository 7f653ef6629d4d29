#pragma once
// Perplexity as llama.cpp's llama-perplexity computes it: the tokens are cut
// into floor(n / n_ctx) chunks, the first token of each becomes BOS, and the
// predictions at positions n_ctx/2 .. n_ctx-2 are scored.
#include <functional>
#include <span>

#include "runtime/backend.h"

namespace quarrel::runtime {

struct PerplexityResult {
  double ppl = 0;
  double ppl_stderr = 0;  // the "+/-" llama.cpp prints
  int n_chunks = 0;
  int64_t n_scored = 0;
};

// on_chunk(i, running ppl) is called after each chunk. Throws quarrel::Error
// when the text is shorter than one chunk.
PerplexityResult perplexity(Backend& backend, const model::Config& config, std::span<const int32_t> tokens,
                            int n_ctx, int32_t bos, const std::function<void(int, double)>& on_chunk = {});

}  // namespace quarrel::runtime

#include "runtime/perplexity.h"

#include <cmath>
#include <vector>

#include "common/error.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

namespace quarrel::runtime {

PerplexityResult perplexity(Backend& backend, const model::Config& config, std::span<const int32_t> tokens,
                            int n_ctx, int32_t bos, const std::function<void(int, double)>& on_chunk) {
  if (n_ctx < 4) fail("perplexity: context {} is too small", n_ctx);
  if (n_ctx > backend.options().n_ctx) fail("perplexity: context {} exceeds the backend's {}", n_ctx, backend.options().n_ctx);
  const int n_chunks = static_cast<int>(tokens.size() / n_ctx);
  if (n_chunks == 0) fail("perplexity: the text has {} tokens, fewer than one chunk of {}", tokens.size(), n_ctx);
  const int32_t n_vocab = static_cast<int32_t>(config.n_vocab);
  Session s(backend, config);
  std::vector<int32_t> chunk(n_ctx);
  std::vector<float> logp(n_vocab);
  double nll = 0, nll2 = 0;
  int64_t count = 0;
  const int first = n_ctx / 2;
  PerplexityResult r;
  for (int c = 0; c < n_chunks; ++c) {
    std::copy_n(tokens.begin() + static_cast<int64_t>(c) * n_ctx, n_ctx, chunk.begin());
    if (bos >= 0) chunk[0] = bos;
    s.clear();
    const float* logits = s.eval(chunk, /*all_logits=*/true);
    for (int i = first; i < n_ctx - 1; ++i) {
      log_softmax(logits + static_cast<int64_t>(i) * n_vocab, n_vocab, logp.data());
      const double v = -logp[chunk[i + 1]];
      nll += v;
      nll2 += v * v;
      ++count;
    }
    if (on_chunk) on_chunk(c + 1, std::exp(nll / count));
  }
  r.n_chunks = n_chunks;
  r.n_scored = count;
  const double mean = nll / count;
  r.ppl = std::exp(mean);
  const double var = nll2 / count - mean * mean;
  r.ppl_stderr = var > 0 && count > 1 ? std::sqrt(var / (count - 1)) * r.ppl : 0;
  return r;
}

}  // namespace quarrel::runtime

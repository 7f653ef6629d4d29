#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace quarrel::runtime {

void validate(const SamplerParams& p) {
  auto finite = [](float x) { return std::isfinite(x); };
  if (!finite(p.temperature) || p.temperature < 0 || p.temperature > 100)
    fail("temperature {} is out of range [0, 100]", p.temperature);
  if (!finite(p.top_p) || p.top_p < 0 || p.top_p > 1) fail("top_p {} is out of range [0, 1]", p.top_p);
  if (!finite(p.min_p) || p.min_p < 0 || p.min_p > 1) fail("min_p {} is out of range [0, 1]", p.min_p);
  if (p.top_k < 0 || p.top_k > (1 << 24)) fail("top_k {} is out of range", p.top_k);
  if (!finite(p.repeat_penalty) || p.repeat_penalty <= 0 || p.repeat_penalty > 100)
    fail("repeat_penalty {} is out of range (0, 100]", p.repeat_penalty);
  if (p.repeat_last_n < 0 || p.repeat_last_n > (1 << 20)) fail("repeat_last_n {} is out of range", p.repeat_last_n);
  if (!finite(p.frequency_penalty) || std::fabs(p.frequency_penalty) > 2)
    fail("frequency_penalty {} is out of range [-2, 2]", p.frequency_penalty);
  if (!finite(p.presence_penalty) || std::fabs(p.presence_penalty) > 2)
    fail("presence_penalty {} is out of range [-2, 2]", p.presence_penalty);
}

int32_t argmax(const float* logits, int32_t n, float* margin) {
  int32_t best = 0;
  float b1 = -INFINITY, b2 = -INFINITY;
  for (int32_t i = 0; i < n; ++i) {
    if (logits[i] > b1) {
      b2 = b1;
      b1 = logits[i];
      best = i;
    } else if (logits[i] > b2) {
      b2 = logits[i];
    }
  }
  if (margin) *margin = b1 - b2;
  return best;
}

void log_softmax(const float* logits, int32_t n, float* out) {
  float max = -INFINITY;
  for (int32_t i = 0; i < n; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (int32_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  // (l - max) - log(sum), as llama.cpp's perplexity does: folding max into one
  // float first would round away the low bits when the logits are large.
  const float log_sum = static_cast<float>(std::log(sum));
  for (int32_t i = 0; i < n; ++i) out[i] = (logits[i] - max) - log_sum;
}

Sampler::Sampler(const SamplerParams& params, int32_t n_vocab) : params_(params), n_vocab_(n_vocab) {
  validate(params_);
  // sample() takes the maximum of n_vocab candidates; with none there is nothing to return.
  if (n_vocab < 1) fail("sampler: vocabulary size {} is not positive", n_vocab);
  seed_ = params_.seed == 0xFFFFFFFF ? std::random_device{}() : params_.seed;
  rng_.seed(seed_);
  cand_.reserve(n_vocab);
  counts_.assign(n_vocab, 0);
}

void Sampler::reset() {
  history_.clear();
  rng_.seed(seed_);
}

void Sampler::accept(int32_t token) {
  if (params_.repeat_last_n == 0) return;
  history_.push_back(token);
  if (static_cast<int32_t>(history_.size()) > params_.repeat_last_n) history_.pop_front();
}

void Sampler::apply_penalties() {
  if (history_.empty() || !penalises()) return;
  for (int32_t t : history_)
    if (t >= 0 && t < n_vocab_) ++counts_[t];
  for (int32_t t : history_) {
    if (t < 0 || t >= n_vocab_ || counts_[t] == 0) continue;
    float& l = cand_[t].logit;  // cand_ is still indexed by token id here
    l = l <= 0 ? l * params_.repeat_penalty : l / params_.repeat_penalty;
    l -= counts_[t] * params_.frequency_penalty + params_.presence_penalty;
    counts_[t] = 0;  // penalise each distinct token once
  }
}

int32_t Sampler::sample(const float* logits) {
  // Greedy without penalties: the first largest logit, read in place (a
  // server step samples every active row; copying 49k candidates each was
  // most of a batched step's host time).
  if (plain_greedy()) return argmax(logits, n_vocab_);
  cand_.resize(n_vocab_);
  for (int32_t i = 0; i < n_vocab_; ++i) cand_[i] = {i, logits[i], 0.0f};
  apply_penalties();

  if (params_.temperature <= 0.0f) {
    auto best = std::max_element(cand_.begin(), cand_.end(),
                                 [](const TokenProb& a, const TokenProb& b) { return a.logit < b.logit; });
    return best->id;
  }

  auto by_logit = [](const TokenProb& a, const TokenProb& b) { return a.logit > b.logit; };
  size_t n = cand_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + params_.top_k, cand_.end(), by_logit);
    n = params_.top_k;
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  cand_.resize(n);

  auto softmax = [&] {
    double sum = 0;
    for (auto& c : cand_) sum += (c.p = std::exp(c.logit - cand_[0].logit));
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
  };
  if (params_.top_p < 1.0f) {
    softmax();
    double cum = 0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].p;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
  }
  if (params_.min_p > 0.0f) {
    const float threshold = cand_[0].logit + std::log(params_.min_p);
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].logit >= threshold) ++keep;
    cand_.resize(keep);
  }
  for (auto& c : cand_) c.logit /= params_.temperature;
  softmax();
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  double r = uni(rng_), cum = 0;
  for (const auto& c : cand_) {
    cum += c.p;
    if (r < cum) return c.id;
  }
  return cand_.back().id;
}

}  // namespace quarrel::runtime

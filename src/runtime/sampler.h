#pragma once
// runtime::Sampler: picks the next token from logits with llama.cpp's chain:
// penalties -> top-k -> top-p -> min-p -> temperature -> random draw (seeded).
// A temperature <= 0 means greedy (argmax after penalties).
#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace quarrel::runtime {

struct SamplerParams {
  float temperature = 0.8f;
  int32_t top_k = 40;           // <= 0: off
  float top_p = 0.95f;          // >= 1: off
  float min_p = 0.05f;          // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int32_t repeat_last_n = 64;   // history the penalties look at
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  uint64_t seed = 0xFFFFFFFF;   // the default draws a random seed, as llama.cpp does
};

// Throws quarrel::Error naming the first parameter out of range.
void validate(const SamplerParams& p);

struct TokenProb {
  int32_t id;
  float logit;  // after penalties and temperature
  float p;      // probability among the candidates kept
};

class Sampler {
 public:
  // Whether any repeat, frequency or presence penalty is set.
  bool penalises() const {
    return params_.repeat_penalty != 1.0f || params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f;
  }
  // Greedy with no penalties: the token is the argmax of the logits alone.
  bool plain_greedy() const { return params_.temperature <= 0.0f && !penalises(); }
  Sampler(const SamplerParams& params, int32_t n_vocab);
  // Chooses a token from n_vocab logits. Does not record it: call accept().
  int32_t sample(const float* logits);
  // Records a token (prompt or generated) for the penalties.
  void accept(int32_t token);
  void reset();
  const SamplerParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }

 private:
  void apply_penalties();
  SamplerParams params_;
  int32_t n_vocab_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::deque<int32_t> history_;
  std::vector<TokenProb> cand_;  // reused: no allocation per token
  std::vector<int32_t> counts_;
};

// Greedy pick with its margin over the runner-up (for reference comparisons).
int32_t argmax(const float* logits, int32_t n, float* margin = nullptr);

// Natural-log softmax of one logit row, written to out (n values).
void log_softmax(const float* logits, int32_t n, float* out);

}  // namespace quarrel::runtime

// runtime::Sampler as tables: greedy against argmax, the penalty formula of
// llama.cpp's llama_sampler_penalties_apply, the sets that top-k / top-p /
// min-p keep (in llama.cpp's order, before temperature), seeding, and
// validate() on parameters out of range.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "runtime/sampler.h"

namespace quarrel::runtime {
namespace {

SamplerParams greedy_params() {
  SamplerParams p;
  p.temperature = 0.0f;
  return p;
}

std::vector<float> random_logits(int n, uint64_t seed, float scale = 5.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(Sampler, GreedyIsArgmax) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const std::vector<float> logits = random_logits(1000, seed);
    Sampler s(greedy_params(), 1000);
    float margin = 0;
    const int32_t want = argmax(logits.data(), 1000, &margin);
    EXPECT_EQ(s.sample(logits.data()), want) << "seed " << seed;
    EXPECT_GT(margin, 0.0f);
  }
  // Hand-made rows: all negative, the maximum at either end, a tie (first wins).
  const std::vector<std::pair<std::vector<float>, int32_t>> rows = {
      {{-3, -1, -2}, 1}, {{9, 1, 2}, 0}, {{1, 2, 9}, 2}, {{4, 7, 7, 1}, 1}, {{0}, 0}};
  for (const auto& [row, want] : rows) {
    Sampler s(greedy_params(), static_cast<int32_t>(row.size()));
    EXPECT_EQ(s.sample(row.data()), want);
    EXPECT_EQ(argmax(row.data(), static_cast<int32_t>(row.size())), want);
  }
}

TEST(Sampler, ArgmaxMargin) {
  const std::vector<float> row = {1.0f, 4.0f, 2.5f, 3.75f};
  float margin = 0;
  EXPECT_EQ(argmax(row.data(), 4, &margin), 1);
  EXPECT_FLOAT_EQ(margin, 0.25f);
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
  for (float temp : {0.1f, 0.8f, 1.5f, 50.0f}) {
    SamplerParams p;
    p.temperature = temp;
    p.top_k = 1;
    p.seed = 7;
    Sampler s(p, 500);
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      const std::vector<float> logits = random_logits(500, seed);
      EXPECT_EQ(s.sample(logits.data()), argmax(logits.data(), 500)) << "temp " << temp << " seed " << seed;
    }
  }
}

// llama.cpp: l <= 0 ? l * repeat : l / repeat, then l -= count * freq + (count > 0) * presence.
struct PenaltyCase {
  const char* name;
  float logit;
  int count;  // times the token is in the history
  float repeat, freq, presence;
};

double penalised(const PenaltyCase& c) {
  double l = c.logit <= 0 ? c.logit * c.repeat : c.logit / c.repeat;
  return l - c.count * c.freq - (c.count > 0 ? c.presence : 0.0);
}

TEST(Sampler, PenaltiesFollowLlamaCppFormula) {
  const PenaltyCase cases[] = {
      {"repeat_positive", 3.0f, 1, 1.3f, 0.0f, 0.0f},
      {"repeat_negative", -2.0f, 1, 1.3f, 0.0f, 0.0f},
      {"repeat_zero_multiplies", 0.0f, 2, 2.0f, 0.0f, 0.0f},
      {"repeat_ignores_count", 3.0f, 4, 1.5f, 0.0f, 0.0f},
      {"frequency_scales_with_count", 3.0f, 3, 1.0f, 0.5f, 0.0f},
      {"presence_once", 3.0f, 3, 1.0f, 0.0f, 0.7f},
      {"all_three", 4.0f, 2, 1.1f, 0.3f, 0.2f},
      {"negative_frequency_boosts", 1.0f, 2, 1.0f, -0.5f, 0.0f},
      {"negative_logit_all", -1.5f, 2, 1.2f, 0.25f, 0.5f},
  };
  // Token 0 is the penalised one; token 1 is a rival placed just above or just
  // below the penalised value, so greedy reveals which side it fell on.
  for (const PenaltyCase& c : cases) {
    for (double side : {+1e-3, -1e-3}) {
      SCOPED_TRACE(std::string(c.name) + (side > 0 ? " rival above" : " rival below"));
      SamplerParams p = greedy_params();
      p.repeat_penalty = c.repeat;
      p.frequency_penalty = c.freq;
      p.presence_penalty = c.presence;
      p.repeat_last_n = 64;
      Sampler s(p, 3);
      for (int i = 0; i < c.count; ++i) s.accept(0);
      const float logits[3] = {c.logit, static_cast<float>(penalised(c) + side), -100.0f};
      EXPECT_EQ(s.sample(logits), side > 0 ? 1 : 0) << "penalised value " << penalised(c);
    }
  }
}

TEST(Sampler, PenaltiesOnlyLookAtTheLastN) {
  SamplerParams p = greedy_params();
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p, 3);
  const float logits[3] = {2.0f, 1.5f, -100.0f};
  s.accept(0);
  EXPECT_EQ(s.sample(logits), 1);  // 2 / 2 = 1 < 1.5
  s.accept(2);
  s.accept(2);  // token 0 has left the window of 2
  EXPECT_EQ(s.sample(logits), 0);
  s.reset();  // forgets the history too
  EXPECT_EQ(s.sample(logits), 0);

  p.repeat_last_n = 0;  // off, as in llama.cpp
  Sampler off(p, 3);
  off.accept(0);
  EXPECT_EQ(off.sample(logits), 0);
}

TEST(Sampler, PenaltiesIgnoreOutOfRangeHistory) {
  SamplerParams p = greedy_params();
  p.repeat_penalty = 2.0f;
  Sampler s(p, 3);
  for (int32_t t : {-1, 3, 1 << 30}) s.accept(t);
  const float logits[3] = {2.0f, 1.5f, -100.0f};
  EXPECT_EQ(s.sample(logits), 0);
}

// Draws many tokens from one row and returns how often each came up.
std::map<int32_t, int> draw_counts(const SamplerParams& p, const std::vector<float>& logits, int n_draws) {
  Sampler s(p, static_cast<int32_t>(logits.size()));
  std::map<int32_t, int> counts;
  for (int i = 0; i < n_draws; ++i) ++counts[s.sample(logits.data())];
  return counts;
}

std::vector<float> log_probs(const std::vector<double>& probs) {
  std::vector<float> v;
  for (double x : probs) v.push_back(static_cast<float>(std::log(x)));
  return v;
}

struct CutCase {
  const char* name;
  int32_t top_k;
  float top_p, min_p, temperature;
  std::set<int32_t> kept;
  int32_t checked_token;  // and its expected share of the draws (-1: none)
  double share;
};

TEST(Sampler, CutSetsAndShares) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (and a negligible tail). Thresholds sit
  // well away from the cumulative sums, so rounding cannot move them.
  const std::vector<float> logits = log_probs({0.5, 0.3, 0.15, 0.05});
  const CutCase cases[] = {
      {"none", 0, 1.0f, 0.0f, 1.0f, {0, 1, 2, 3}, 0, 0.5},
      {"top_k_2", 2, 1.0f, 0.0f, 1.0f, {0, 1}, 0, 0.5 / 0.8},
      {"top_k_3", 3, 1.0f, 0.0f, 1.0f, {0, 1, 2}, 2, 0.15 / 0.95},
      {"top_p_045", 0, 0.45f, 0.0f, 1.0f, {0}, 0, 1.0},
      {"top_p_075", 0, 0.75f, 0.0f, 1.0f, {0, 1}, 1, 0.3 / 0.8},
      {"top_p_085", 0, 0.85f, 0.0f, 1.0f, {0, 1, 2}, -1, 0},
      {"min_p_009", 0, 1.0f, 0.09f, 1.0f, {0, 1, 2, 3}, -1, 0},
      {"min_p_02", 0, 1.0f, 0.2f, 1.0f, {0, 1, 2}, -1, 0},
      {"min_p_05", 0, 1.0f, 0.5f, 1.0f, {0, 1}, -1, 0},
      {"top_k_3_min_p_05", 3, 1.0f, 0.5f, 1.0f, {0, 1}, -1, 0},
      // Cuts come before temperature (llama.cpp's chain): a high temperature
      // flattens what is kept but does not bring back what was cut.
      {"top_p_075_hot", 0, 0.75f, 0.0f, 10.0f, {0, 1}, 0, 0.5128},
      // Temperature 2 over all four: p^(1/2) normalised.
      {"temperature_2", 0, 1.0f, 0.0f, 2.0f, {0, 1, 2, 3}, 0, 0.7071 / 1.8661},
  };
  constexpr int kDraws = 4000;
  for (const CutCase& c : cases) {
    SCOPED_TRACE(c.name);
    SamplerParams p;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.temperature = c.temperature;
    p.seed = 12345;
    const auto counts = draw_counts(p, logits, kDraws);
    std::set<int32_t> seen;
    for (const auto& [tok, n] : counts) seen.insert(tok);
    EXPECT_EQ(seen, c.kept);
    if (c.checked_token >= 0) {
      const double share = counts.count(c.checked_token) ? counts.at(c.checked_token) / double(kDraws) : 0.0;
      EXPECT_NEAR(share, c.share, 0.04);  // about 5 standard deviations at 4000 draws
    }
  }
}

TEST(Sampler, SameSeedSameTokens) {
  const std::vector<float> logits = random_logits(300, 99, 1.0f);
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 2024;
  Sampler a(p, 300), b(p, 300);
  std::vector<int32_t> seq_a, seq_b;
  for (int i = 0; i < 200; ++i) {
    seq_a.push_back(a.sample(logits.data()));
    seq_b.push_back(b.sample(logits.data()));
  }
  EXPECT_EQ(seq_a, seq_b);
  EXPECT_EQ(a.seed(), 2024u);
  EXPECT_GT(std::set<int32_t>(seq_a.begin(), seq_a.end()).size(), 20u);  // it is really sampling

  a.reset();  // back to the start of the same stream
  std::vector<int32_t> again;
  for (int i = 0; i < 200; ++i) again.push_back(a.sample(logits.data()));
  EXPECT_EQ(again, seq_a);

  p.seed = 2025;
  Sampler c(p, 300);
  std::vector<int32_t> seq_c;
  for (int i = 0; i < 200; ++i) seq_c.push_back(c.sample(logits.data()));
  EXPECT_NE(seq_c, seq_a);
}

TEST(Sampler, DefaultSeedIsDrawn) {
  SamplerParams p;  // seed 0xFFFFFFFF: pick one at random, as llama.cpp does
  const Sampler a(p, 10), b(p, 10);
  EXPECT_NE(a.seed(), 0xFFFFFFFFu);
  EXPECT_NE(a.seed(), b.seed());  // 2^-32 chance of a false failure
}

struct BadParam {
  const char* name;
  std::function<void(SamplerParams&)> set;
  const char* field;  // the message must name it
};

TEST(Sampler, ValidateRejectsOutOfRange) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const BadParam cases[] = {
      {"temp_nan", [&](SamplerParams& p) { p.temperature = nan; }, "temperature"},
      {"temp_negative", [](SamplerParams& p) { p.temperature = -0.5f; }, "temperature"},
      {"temp_huge", [](SamplerParams& p) { p.temperature = 1e9f; }, "temperature"},
      {"temp_inf", [&](SamplerParams& p) { p.temperature = inf; }, "temperature"},
      {"top_p_nan", [&](SamplerParams& p) { p.top_p = nan; }, "top_p"},
      {"top_p_above_1", [](SamplerParams& p) { p.top_p = 1.5f; }, "top_p"},
      {"top_p_negative", [](SamplerParams& p) { p.top_p = -0.1f; }, "top_p"},
      {"min_p_negative", [](SamplerParams& p) { p.min_p = -0.1f; }, "min_p"},
      {"min_p_nan", [&](SamplerParams& p) { p.min_p = nan; }, "min_p"},
      {"top_k_negative", [](SamplerParams& p) { p.top_k = -1; }, "top_k"},
      {"top_k_huge", [](SamplerParams& p) { p.top_k = 1 << 30; }, "top_k"},
      {"repeat_zero", [](SamplerParams& p) { p.repeat_penalty = 0.0f; }, "repeat_penalty"},
      {"repeat_negative", [](SamplerParams& p) { p.repeat_penalty = -1.0f; }, "repeat_penalty"},
      {"repeat_nan", [&](SamplerParams& p) { p.repeat_penalty = nan; }, "repeat_penalty"},
      {"repeat_huge", [](SamplerParams& p) { p.repeat_penalty = 1e6f; }, "repeat_penalty"},
      {"repeat_last_n_negative", [](SamplerParams& p) { p.repeat_last_n = -1; }, "repeat_last_n"},
      {"repeat_last_n_huge", [](SamplerParams& p) { p.repeat_last_n = 1 << 30; }, "repeat_last_n"},
      {"frequency_huge", [](SamplerParams& p) { p.frequency_penalty = 5.0f; }, "frequency_penalty"},
      {"frequency_nan", [&](SamplerParams& p) { p.frequency_penalty = nan; }, "frequency_penalty"},
      {"presence_inf", [&](SamplerParams& p) { p.presence_penalty = -inf; }, "presence_penalty"},
  };
  for (const BadParam& c : cases) {
    SCOPED_TRACE(c.name);
    SamplerParams p;
    c.set(p);
    std::string msg;
    try {
      validate(p);
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find(c.field), std::string::npos) << "got: '" << msg << "'";
    EXPECT_THROW(Sampler(p, 10), Error);  // the constructor validates too
  }
}

TEST(Sampler, ValidateAcceptsTheBoundaries) {
  SamplerParams p;
  EXPECT_NO_THROW(validate(p));
  p.temperature = 0.0f;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.top_k = 0;
  p.repeat_penalty = 1.0f;
  p.repeat_last_n = 0;
  p.frequency_penalty = -2.0f;
  p.presence_penalty = 2.0f;
  EXPECT_NO_THROW(validate(p));
  p.temperature = 100.0f;
  p.min_p = 1.0f;
  p.top_p = 0.0f;
  EXPECT_NO_THROW(validate(p));
}

TEST(Sampler, RejectsEmptyVocabulary) {
  for (int32_t n : {0, -5}) {
    std::string msg;
    try {
      Sampler s(greedy_params(), n);
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("vocabulary"), std::string::npos) << n << ": '" << msg << "'";
  }
}

TEST(Sampler, LogSoftmaxNormalises) {
  const std::vector<float> logits = {1000.0f, 999.0f, -5.0f, 0.0f};  // large: needs the max shift
  std::vector<float> out(4);
  log_softmax(logits.data(), 4, out.data());
  double sum = 0;
  for (float x : out) {
    EXPECT_TRUE(std::isfinite(x));
    sum += std::exp(static_cast<double>(x));
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_NEAR(out[0] - out[1], 1.0, 1e-4);
}

}  // namespace
}  // namespace quarrel::runtime

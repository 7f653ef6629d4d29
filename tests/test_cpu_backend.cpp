// The CPU forward pass with every kernel table this CPU runs (the AVX2 table
// is what an AVX2-only machine gets, even on an AVX-512 one), against the
// scalar table, and against itself: a prompt run as one batch, token by
// token, and interleaved with another sequence must give the same logits.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/backend.h"
#include "cpu/kernels/kernels.h"
#include "model/model.h"
#include "runtime/sampler.h"
#include "common/error.h"
#include "runtime/session.h"
#include "test_support.h"

namespace quarrel::cpu {
namespace {

using runtime::BatchEntry;

std::unique_ptr<model::Model> load(const std::string& stem) {
  return model::Model::load(test::repo_path("tests/data/models/" + stem + ".gguf"));
}

runtime::BackendOptions options(int n_seq = 1) {
  runtime::BackendOptions o;
  o.n_threads = 2;
  o.n_ctx = 256;
  o.n_seq = n_seq;
  o.n_batch = 256;
  return o;
}

std::vector<int32_t> tokens(int n, int64_t n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % n_vocab);
  return t;
}

// Logits of the last token after running `toks` as one batch.
std::vector<float> prefill_last(runtime::Backend& b, const std::vector<int32_t>& toks, int64_t n_vocab) {
  std::vector<BatchEntry> batch;
  for (size_t i = 0; i < toks.size(); ++i)
    batch.push_back({toks[i], static_cast<int32_t>(i), 0, i + 1 == toks.size()});
  std::vector<float> logits(n_vocab);
  b.forward(batch, logits.data());
  return logits;
}

double rel_l2(const std::vector<float>& want, const std::vector<float>& got) {
  return test::rel_l2(got.data(), want.data(), static_cast<int64_t>(want.size()));
}

const std::vector<std::string>& models() {
  static const std::vector<std::string> m = {"tiny-f32",  "mini-f16",    "mini-bf16", "mini-q4_0",
                                             "mini-q8_0", "mini-q4_k_m", "mini-q6_k"};
  return m;
}

// A last-bit difference (the kernels' exp, their order of float sums) can
// flip one 8-bit quantum of an activation, and over 150 tokens some flip
// does: quantized models get the reference tests' tolerance, float ones
// tighter.
double tolerance(const std::string& stem) {
  if (stem.find("f32") != std::string::npos) return 1e-5;
  // BF16 activations keep 8 bits of mantissa: they flip like quantized ones.
  if (stem.find("bf16") != std::string::npos) return 1e-2;
  if (stem.find("f16") != std::string::npos) return 2e-3;
  return 3e-2;
}

// 150 tokens of the 256-wide models take the shared (split, barrier) path
// for their activations; tiny-f32's 64-wide rows stay on the private path.
TEST(CpuBackend, EveryKernelTableMatchesScalar) {
  for (const std::string& stem : models()) {
    auto m = load(stem);
    const auto toks = tokens(150, m->config.n_vocab, 1);
    auto ref_backend = make_backend(*m, options(), kernels_scalar());
    const auto want = prefill_last(*ref_backend, toks, m->config.n_vocab);
    for (const Kernels* k : kernels_available()) {
      auto b = make_backend(*m, options(), *k);
      const double rel = rel_l2(want, prefill_last(*b, toks, m->config.n_vocab));
      EXPECT_LT(rel, tolerance(stem)) << stem << " with the " << k->isa << " table";
    }
  }
}

// Every kernel a K-quant model runs (its dot products, the activation
// quantizers, RMSNorm, SwiGLU, RoPE and the attention) agrees with the
// reference to the bit, so the model must too.
TEST(CpuBackend, KQuantModelsMatchScalarToTheBit) {
  for (const std::string& stem : {std::string("mini-q4_k_m"), std::string("mini-q6_k")}) {
    auto m = load(stem);
    const auto toks = tokens(150, m->config.n_vocab, 1);
    auto ref_backend = make_backend(*m, options(), kernels_scalar());
    const auto want = prefill_last(*ref_backend, toks, m->config.n_vocab);
    for (const Kernels* k : kernels_available()) {
      auto b = make_backend(*m, options(), *k);
      EXPECT_EQ(rel_l2(want, prefill_last(*b, toks, m->config.n_vocab)), 0.0) << stem << " with the " << k->isa
                                                                               << " table";
    }
  }
}

TEST(CpuBackend, DecodeMatchesPrefill) {
  for (const std::string& stem : models()) {
    auto m = load(stem);
    const int64_t V = m->config.n_vocab;
    const auto toks = tokens(40, V, 2);
    auto b = make_backend(*m, options());
    const auto want = prefill_last(*b, toks, V);
    std::vector<float> got(V);
    for (size_t i = 0; i < toks.size(); ++i) {
      const BatchEntry e{toks[i], static_cast<int32_t>(i), 0, true};
      b->forward({&e, 1}, got.data());
    }
    // Decode and prefill run the same kernels with different tiles, so float
    // sums differ in order: float models a little, quantized ones (whose
    // blocks' integer sums are exact) hardly at all.
    EXPECT_LT(rel_l2(want, got), stem.find("f32") != std::string::npos ? 1e-5 : 2e-3) << stem;
  }
}

// forward_greedy (the server's all-greedy steps): the argmax of each row that
// wants logits, in batch order, with rows that do not want any in between.
TEST(CpuBackend, ForwardGreedyPicksEachOutputRowsArgmax) {
  auto m = load(models().front());
  const int32_t V = static_cast<int32_t>(m->config.n_vocab);
  auto b = make_backend(*m, options(2));
  const std::vector<BatchEntry> batch = {{5, 0, 0, false}, {9, 1, 0, true}, {7, 0, 1, true}};
  std::vector<float> logits(2 * V);
  int32_t tokens[2] = {-1, -1};
  b->forward_greedy(batch, logits.data(), tokens);
  EXPECT_EQ(tokens[0], runtime::argmax(logits.data(), V));
  EXPECT_EQ(tokens[1], runtime::argmax(logits.data() + V, V));
}

// Session::eval_greedy (quarrel run's greedy path) picks the argmax that
// eval's logits give, and keeps the sequence's positions as eval does.
TEST(CpuBackend, SessionEvalGreedyMatchesArgmaxOfEval) {
  auto m = load(models().front());
  const int32_t V = static_cast<int32_t>(m->config.n_vocab);
  auto a = make_backend(*m, options(2)), b = make_backend(*m, options(2));
  runtime::Session by_logits(*a, m->config), greedy(*b, m->config);
  const auto prompt = tokens(5, V, 3);
  int32_t want = runtime::argmax(by_logits.eval(prompt), V);
  int32_t got = runtime::argmax(greedy.eval(prompt), V);
  for (int i = 0; i < 8; ++i) {
    ASSERT_EQ(got, want) << "step " << i;
    const int32_t one[1] = {want};
    want = runtime::argmax(by_logits.eval(one), V);
    got = greedy.eval_greedy(got);
  }
  EXPECT_EQ(greedy.n_past(), by_logits.n_past());
  EXPECT_THROW(greedy.eval_greedy(V), quarrel::Error);
  EXPECT_EQ(greedy.n_past(), by_logits.n_past()) << "a rejected token must not enter the sequence";
}

// Two sequences in one batch, their tokens interleaved, against each run
// alone: slots must not leak into each other.
TEST(CpuBackend, SequencesInOneBatchAreIndependent) {
  for (const std::string& stem : {std::string("mini-q4_0"), std::string("mini-f16")}) {
    auto m = load(stem);
    const int64_t V = m->config.n_vocab;
    const auto a = tokens(20, V, 3), c = tokens(20, V, 4);
    auto solo = make_backend(*m, options(1));
    const auto want_a = prefill_last(*solo, a, V);
    const auto want_c = prefill_last(*solo, c, V);
    auto b = make_backend(*m, options(2));
    std::vector<BatchEntry> batch;
    for (int i = 0; i < 20; ++i) {
      batch.push_back({a[i], i, 0, i == 19});
      batch.push_back({c[i], i, 1, i == 19});
    }
    std::vector<float> logits(2 * V);
    b->forward(batch, logits.data());
    const std::vector<float> got_a(logits.begin(), logits.begin() + V), got_c(logits.begin() + V, logits.end());
    EXPECT_LT(rel_l2(want_a, got_a), 1e-4) << stem << " sequence 0";
    EXPECT_LT(rel_l2(want_c, got_c), 1e-4) << stem << " sequence 1";
  }
}

}  // namespace
}  // namespace quarrel::cpu

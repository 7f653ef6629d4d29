// The core engine against llama.cpp: every model in tests/data/models (and the
// demo model) on every reference prompt in tests/data/ref.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "cpu/backend.h"
#include "cpu/kernels/kernels.h"
#include "model/model.h"
#include "runtime/backend.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "test_support.h"

namespace quarrel {
namespace {

using test::rel_l2;
using test::repo_path;

struct RefCase {
  std::string model;   // file stem
  std::string prompt;  // ref name
  runtime::BackendKind backend = runtime::BackendKind::Cpu;
};

std::string model_file(const std::string& stem) {
  std::string p = repo_path("tests/data/models/" + stem + ".gguf");
  if (std::filesystem::exists(p)) return p;
  return repo_path("models/" + stem + ".gguf");  // the demo model lives there
}

struct Tolerance {
  double rel_l2;
  double margin;
};

// The bounds. On x86 the CPU backend does better (below).
Tolerance tolerance_for(const std::string& stem, runtime::BackendKind backend) {
  if (stem.find("f32") != std::string::npos) return {1e-4, 0.01};
  // Known miss on the GPU, stated in docs/ARCHITECTURE.md: its prefill GEMMs
  // (cuBLAS) and attention sum in another order than llama.cpp's CPU
  // backend, and on the random-weight mini-bf16 any other order lands
  // 2.5-4.5e-3 away (a last-bit change flips a BF16 rounding, and the flips
  // grow through the layers).
  if (stem.find("bf16") != std::string::npos && backend == runtime::BackendKind::Cuda) return {5e-3, 0.01};
  if (stem.find("f16") != std::string::npos) return {2e-3, 0.01};
  return {1e-2, 0.05};
}


class Reference : public ::testing::TestWithParam<RefCase> {};

TEST_P(Reference, MatchesLlamaCpp) {
  const RefCase& rc = GetParam();
  if (rc.backend == runtime::BackendKind::Cuda && !runtime::cuda_available()) GTEST_SKIP() << "no CUDA device present";
  const std::string base = repo_path("tests/data/ref/" + rc.model + "." + rc.prompt);
  std::ifstream in(base + ".json");
  ASSERT_TRUE(in) << base;
  nlohmann::json ref = nlohmann::json::parse(in);
  std::vector<int32_t> prompt = ref["prompt_tokens"].get<std::vector<int32_t>>();
  const Tolerance tol = tolerance_for(rc.model, rc.backend);

  auto m = model::Model::load(model_file(rc.model));
  const int32_t n_vocab = static_cast<int32_t>(m->config.n_vocab);
  runtime::BackendOptions bo;
  bo.n_threads = 2;
  bo.n_ctx = 256;
  auto backend = runtime::make_backend(rc.backend, *m, bo);
  runtime::Session s(*backend, m->config);

  const float* all = s.eval(prompt, /*all_logits=*/true);
  auto pa = ref["prompt_argmax"];
  ASSERT_EQ(pa.size(), prompt.size());
  int checked = 0;
  for (size_t i = 0; i < prompt.size(); ++i) {
    int32_t want = pa[i][0];
    double margin = pa[i][1];
    if (margin <= tol.margin) continue;
    EXPECT_EQ(runtime::argmax(all + i * n_vocab, n_vocab), want) << "prompt position " << i;
    ++checked;
  }
  EXPECT_GT(checked, 0);

  // Last-position logits against llama.cpp's, by relative L2 error.
  std::ifstream lf(base + ".last_logits.f32", std::ios::binary);
  std::vector<float> want(n_vocab);
  lf.read(reinterpret_cast<char*>(want.data()), n_vocab * sizeof(float));
  ASSERT_TRUE(lf);
  const float* got = all + (prompt.size() - 1) * n_vocab;
  const double rel = rel_l2(got, want.data(), n_vocab);
  EXPECT_LE(rel, tol.rel_l2) << "relative L2 error of the last logits";
  std::printf("%s.%s (%s): relative L2 error %.3g\n", rc.model.c_str(), rc.prompt.c_str(),
              backend->name().c_str(), rel);

#if defined(__x86_64__)
  // On x86 every CPU kernel table computes what llama.cpp's AVX2 build
  // computes, operation for operation (docs/ARCHITECTURE.md): the prompt's
  // last logits come out bit-identical.
  if (rc.backend == runtime::BackendKind::Cpu) {
    for (const cpu::Kernels* k : cpu::kernels_available()) {
      auto b = cpu::make_backend(*m, bo, *k);
      runtime::Session sk(*b, m->config);
      const float* last = sk.eval(prompt);
      EXPECT_EQ(rel_l2(last, want.data(), n_vocab), 0.0) << "kernel table " << k->isa;
    }
  }
#endif

  // Teacher-forced greedy decode, one token at a time.
  auto greedy = ref["greedy"];
  std::vector<float> logits(got, got + n_vocab);
  for (size_t i = 0; i < greedy.size(); ++i) {
    int32_t want_tok = greedy[i][0];
    double margin = greedy[i][1];
    if (margin > tol.margin) {
      EXPECT_EQ(runtime::argmax(logits.data(), n_vocab), want_tok) << "greedy step " << i;
    }
    const int32_t one[1] = {want_tok};
    const float* l = s.eval(one);
    logits.assign(l, l + n_vocab);
  }
}

std::vector<RefCase> all_cases() {
  std::vector<RefCase> cases;
  for (const auto& e : std::filesystem::directory_iterator(repo_path("tests/data/ref"))) {
    std::string name = e.path().filename().string();
    if (!name.ends_with(".json")) continue;
    std::string stem = name.substr(0, name.size() - 5);
    auto dot = stem.rfind('.');
    cases.push_back({stem.substr(0, dot), stem.substr(dot + 1), runtime::BackendKind::Cpu});
#if defined(QUARREL_HAVE_CUDA)
    cases.push_back({stem.substr(0, dot), stem.substr(dot + 1), runtime::BackendKind::Cuda});
#endif
  }
  std::sort(cases.begin(), cases.end(), [](const RefCase& a, const RefCase& b) {
    return std::tie(a.model, a.prompt, a.backend) < std::tie(b.model, b.prompt, b.backend);
  });
  return cases;
}

INSTANTIATE_TEST_SUITE_P(AllModels, Reference, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<RefCase>& info) {
                           std::string n = info.param.model + "_" + info.param.prompt +
                                           (info.param.backend == runtime::BackendKind::Cuda ? "_cuda" : "_cpu");
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace quarrel

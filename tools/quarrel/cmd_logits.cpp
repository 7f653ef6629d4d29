// quarrel logits: evaluate given tokens and write what ../shared/ref holds for
// llama.cpp (argmax and margin per position, top 20, greedy steps, raw logits),
// so any two engines can be compared on the same input.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "command.h"
#include "common/error.h"
#include "loader.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

namespace quarrel::cli {
namespace {

struct LogitsOptions {
  ModelOptions model;
  std::vector<int32_t> tokens;
  std::vector<int32_t> follow;
  std::string out;
};

nlohmann::json argmax_entry(const float* logits, int32_t n) {
  float margin = 0;
  int32_t id = runtime::argmax(logits, n, &margin);
  return nlohmann::json::array({id, margin});
}

void run_logits(const LogitsOptions& o) {
  Loaded l = load_model(o.model);
  const int32_t n_vocab = static_cast<int32_t>(l.model->config.n_vocab);
  runtime::Session s(*l.backend, l.model->config);
  const float* all = s.eval(o.tokens, /*all_logits=*/true);

  nlohmann::json j;
  j["prompt_tokens"] = o.tokens;
  j["prompt_argmax"] = nlohmann::json::array();
  for (size_t i = 0; i < o.tokens.size(); ++i) j["prompt_argmax"].push_back(argmax_entry(all + i * n_vocab, n_vocab));
  const float* last = all + (o.tokens.size() - 1) * n_vocab;
  std::vector<float> last_logits(last, last + n_vocab);

  std::vector<int32_t> order(n_vocab);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + std::min(20, n_vocab), order.end(),
                    [&](int32_t a, int32_t b) { return last_logits[a] > last_logits[b]; });
  j["last_prompt_top20"] = nlohmann::json::array();
  for (int i = 0; i < std::min(20, n_vocab); ++i)
    j["last_prompt_top20"].push_back(nlohmann::json::array({order[i], last_logits[order[i]]}));

  j["greedy"] = nlohmann::json::array();
  j["greedy"].push_back(argmax_entry(last_logits.data(), n_vocab));
  for (int32_t t : o.follow) {
    const int32_t one[1] = {t};
    j["greedy"].push_back(argmax_entry(s.eval(one), n_vocab));
  }

  std::ofstream js(o.out + ".json");
  js << j.dump(1) << "\n";
  if (!js) fail("cannot write '{}.json'", o.out);
  std::ofstream bin(o.out + ".last_logits.f32", std::ios::binary);
  bin.write(reinterpret_cast<const char*>(last_logits.data()), n_vocab * sizeof(float));
  if (!bin) fail("cannot write '{}.last_logits.f32'", o.out);
  fmt::print(stderr, "wrote {}.json and {}.last_logits.f32 ({} prompt tokens, {} followed)\n", o.out, o.out,
             o.tokens.size(), o.follow.size());
}

CommandRegistration reg{[](CLI::App& app) {
  auto o = std::make_shared<LogitsOptions>();
  auto* cmd = app.add_subcommand("logits", "Evaluate token ids and write logits in the reference schema");
  add_model_options(cmd, o->model);
  cmd->add_option("--tokens", o->tokens, "prompt token ids, evaluated as one batch")->delimiter(',')->required();
  cmd->add_option("--follow", o->follow, "token ids fed one at a time after the prompt")->delimiter(',');
  cmd->add_option("--out", o->out, "output prefix: writes PREFIX.json and PREFIX.last_logits.f32")->required();
  cmd->callback([o] { run_logits(*o); });
}};

}  // namespace
}  // namespace quarrel::cli

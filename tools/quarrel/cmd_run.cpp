// quarrel run: generate text from a prompt, streamed as it is produced, with a
// timing summary on stderr.
#include <cstdio>

#include "command.h"
#include "common/error.h"
#include "loader.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  std::string prompt;
  int n_predict = 128;
  bool parse_special = false;
  bool ignore_eos = false;
  runtime::SamplerParams sampler;
};

void run_generate(const RunOptions& o) {
  Loaded l = load_model(o.model);
  auto tok = tokenizer::Tokenizer::from_gguf(l.model->file);
  runtime::Sampler sampler(o.sampler, static_cast<int32_t>(l.model->config.n_vocab));
  runtime::Session s(*l.backend, l.model->config);

  std::vector<int32_t> prompt = tok.encode(o.prompt, /*add_special=*/true, o.parse_special);
  if (prompt.empty()) fail("the prompt is empty and the model adds no BOS token");
  if (static_cast<int>(prompt.size()) >= s.n_ctx())
    fail("the prompt has {} tokens, which leaves no room in the context of {}", prompt.size(), s.n_ctx());

  std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
  std::fflush(stdout);
  auto t_prompt = std::chrono::steady_clock::now();
  const float* logits = s.eval(prompt);
  const double prompt_s = seconds_since(t_prompt);
  for (int32_t t : prompt) sampler.accept(t);

  tokenizer::Detokenizer detok(tok);
  auto t_gen = std::chrono::steady_clock::now();
  int n_gen = 0;
  std::string stop_reason = "length";
  // Plain greedy decoding takes each token's argmax from the backend (on a
  // GPU, picked on the device: no logits cross to the host).
  const bool greedy = sampler.plain_greedy();
  int32_t picked = -1;  // the argmax of the last step, when greedy
  while (n_gen < o.n_predict) {
    int32_t next = picked >= 0 ? picked : sampler.sample(logits);
    sampler.accept(next);
    ++n_gen;
    if (!o.ignore_eos && tok.is_eog(next)) {
      stop_reason = "end of text";
      break;
    }
    std::string piece = detok.push(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (s.n_past() >= s.n_ctx()) {
      stop_reason = "context full";
      break;
    }
    if (n_gen == o.n_predict) break;
    if (greedy) {
      picked = s.eval_greedy(next);
    } else {
      const int32_t one[1] = {next};
      logits = s.eval(one);
    }
  }
  std::string tail = detok.flush();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  const double gen_s = seconds_since(t_gen);

  fmt::print(stderr, "\n");
  fmt::print(stderr, "backend:    {}\n", l.backend->name());
  fmt::print(stderr, "load:       {:.1f} ms\n", l.load_seconds * 1e3);
  fmt::print(stderr, "prompt:     {} tokens in {:.1f} ms ({:.1f} t/s)\n", prompt.size(), prompt_s * 1e3,
             prompt.size() / prompt_s);
  fmt::print(stderr, "generated:  {} tokens in {:.1f} ms ({:.1f} t/s, {:.2f} ms/token), stopped by {}\n", n_gen,
             gen_s * 1e3, n_gen / gen_s, gen_s * 1e3 / std::max(n_gen, 1), stop_reason);
  fmt::print(stderr, "seed:       {}\n", sampler.seed());
  fmt::print(stderr, "peak memory: {:.1f} MiB\n", peak_rss_mib());
}

CommandRegistration reg{[](CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  add_model_options(cmd, o->model);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text")->required();
  cmd->add_option("-n,--n-predict", o->n_predict, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temp", o->sampler.temperature, "temperature (0 = greedy)");
  cmd->add_option("--top-k", o->sampler.top_k, "top-k (0 = off)");
  cmd->add_option("--top-p", o->sampler.top_p, "top-p (1 = off)");
  cmd->add_option("--min-p", o->sampler.min_p, "min-p (0 = off)");
  cmd->add_option("--repeat-penalty", o->sampler.repeat_penalty, "repeat penalty (1 = off)");
  cmd->add_option("--repeat-last-n", o->sampler.repeat_last_n, "tokens the penalties look back over");
  cmd->add_option("--presence-penalty", o->sampler.presence_penalty, "presence penalty");
  cmd->add_option("--frequency-penalty", o->sampler.frequency_penalty, "frequency penalty");
  cmd->add_option("-s,--seed", o->sampler.seed, "random seed (default: random)");
  cmd->add_flag("--parse-special", o->parse_special, "turn control-token text in the prompt into control tokens");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-text tokens");
  cmd->callback([o] {
    runtime::validate(o->sampler);
    run_generate(*o);
  });
}};

}  // namespace
}  // namespace quarrel::cli

// quarrel perplexity: llama.cpp's method (see tests/data/ref/kjv-perplexity.txt):
// chunks of n_ctx tokens, each starting with BOS, scored on their second half.
#include <cmath>
#include <fstream>
#include <sstream>

#include "command.h"
#include "common/error.h"
#include "loader.h"
#include "runtime/perplexity.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int n_ctx = 512;
};

void run_perplexity(PerplexityOptions o) {
  std::ifstream in(o.file, std::ios::binary);
  if (!in) fail("cannot read '{}'", o.file);
  std::stringstream ss;
  ss << in.rdbuf();
  o.model.ctx_size = o.n_ctx;
  o.model.batch_size = std::max(o.model.batch_size, o.n_ctx);
  Loaded l = load_model(o.model);
  auto tok = tokenizer::Tokenizer::from_gguf(l.model->file);
  std::vector<int32_t> tokens = tok.encode(ss.str(), /*add_special=*/true, /*parse_special=*/false);
  fmt::print(stderr, "{}: tokenized {} tokens; {} chunks of {}\n", o.file, tokens.size(),
             tokens.size() / o.n_ctx, o.n_ctx);
  auto t0 = std::chrono::steady_clock::now();
  runtime::PerplexityResult r = runtime::perplexity(*l.backend, l.model->config, tokens, o.n_ctx, tok.bos(),
                                                    [](int chunk, double ppl) { fmt::print("[{}]{:.4f},", chunk, ppl); std::fflush(stdout); });
  fmt::print("\nFinal estimate: PPL = {:.4f} +/- {:.5f}\n", r.ppl, r.ppl_stderr);
  fmt::print(stderr, "{} chunks in {:.2f} s ({} scored tokens)\n", r.n_chunks, seconds_since(t0), r.n_scored);
}

CommandRegistration reg{[](CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  auto* cmd = app.add_subcommand("perplexity", "Perplexity of a text file, computed as llama-perplexity does");
  add_model_options(cmd, o->model);
  cmd->get_option("--ctx-size")->description("tokens per chunk");
  cmd->add_option("-f,--file", o->file, "text file")->required();
  cmd->callback([o] {
    o->n_ctx = o->model.ctx_size > 0 ? o->model.ctx_size : 512;
    run_perplexity(*o);
  });
}};

}  // namespace
}  // namespace quarrel::cli

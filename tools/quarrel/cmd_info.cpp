// quarrel info MODEL: what a GGUF file holds and what running it costs.
#include <map>

#include <fmt/format.h>

#include "command.h"
#include "gguf/file.h"
#include "model/model.h"
#include "runtime/model_path.h"

namespace quarrel::cli {
namespace {

void run_info(const std::string& path, int ctx_size) {
  auto m = model::Model::load(runtime::resolve_model_path(path));
  const auto& c = m->config;
  const auto& f = m->file;
  fmt::print("file:            {}\n", f.path());
  fmt::print("gguf version:    {} ({} metadata keys, {} tensors, alignment {})\n", f.version(), f.metadata().size(),
             f.tensors().size(), f.alignment());
  fmt::print("name:            {}\n", f.get_string("general.name").value_or("(none)"));
  fmt::print("architecture:    {}\n", c.arch.name);
  fmt::print("layers:          {}\n", c.n_layer);
  fmt::print("embedding:       {}\n", c.n_embd);
  fmt::print("heads:           {} (kv {}, head dim {}, rope dims {})\n", c.n_head, c.n_head_kv, c.head_dim, c.n_rot);
  fmt::print("feed-forward:    {}\n", c.n_ff);
  fmt::print("vocabulary:      {}\n", c.n_vocab);
  fmt::print("context (train): {}\n", c.n_ctx_train);
  fmt::print("rope:            base {}, freq scale {}{}\n", c.rope_base, c.rope_freq_scale,
             c.has_rope_freqs ? ", per-dimension factors" : "");
  fmt::print("rms eps:         {}\n", c.rms_eps);
  fmt::print("output:          {}\n", c.tied_output ? "tied to token_embd" : "output.weight");
  fmt::print("tokenizer:       {} (pre: {})\n", f.get_string("tokenizer.ggml.model").value_or("(none)"),
             f.get_string("tokenizer.ggml.pre").value_or("(none)"));
  int64_t params = 0, bytes = 0;
  std::map<std::string, int> by_type;
  for (const auto& t : f.tensors()) {
    params += t.n_elements();
    bytes += static_cast<int64_t>(t.n_bytes);
    ++by_type[std::string(tensor::dtype_name(t.type))];
  }
  fmt::print("parameters:      {} ({:.2f} M)\n", params, params / 1e6);
  fmt::print("tensor types:   ");
  for (const auto& [name, n] : by_type) fmt::print(" {}×{}", n, name);
  fmt::print("\n");
  const int64_t ctx = ctx_size > 0 ? ctx_size : std::min<int64_t>(c.n_ctx_train, 4096);
  const int64_t kv = 2 * c.n_layer * ctx * c.kv_dim() * static_cast<int64_t>(sizeof(float));
  fmt::print("memory:          weights {:.1f} MiB + KV cache {:.1f} MiB (f32, ctx {}) = {:.1f} MiB\n",
             bytes / 1048576.0, kv / 1048576.0, ctx, (bytes + kv) / 1048576.0);
}

CommandRegistration reg{[](CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, hyperparameters and memory needs");
  auto path = std::make_shared<std::string>();
  auto ctx = std::make_shared<int>(0);
  cmd->add_option("model", *path, "GGUF file or Ollama model name")->required();
  cmd->add_option("-c,--ctx-size", *ctx, "context size for the KV-cache estimate")->check(CLI::Range(0, 1 << 20));
  cmd->callback([path, ctx] { run_info(*path, *ctx); });
}};

}  // namespace
}  // namespace quarrel::cli

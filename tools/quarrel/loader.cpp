#include "loader.h"

#include <sys/resource.h>

#include "runtime/model_path.h"

namespace quarrel::cli {

void add_model_options(CLI::App* cmd, ModelOptions& o, bool model_required) {
  auto* m = cmd->add_option("-m,--model", o.model, "GGUF file or Ollama model name (name[:tag])");
  if (model_required) m->required();
  cmd->add_option("-t,--threads", o.threads, "CPU threads (default: all physical cores)")->check(CLI::Range(0, 256));
  cmd->add_option("-c,--ctx-size", o.ctx_size, "context size (default: the model's, at most 4096)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-b,--batch-size", o.batch_size, "largest batch of one forward pass")->check(CLI::Range(1, 8192));
  cmd->add_option("--backend", o.backend, "auto, cpu or cuda")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--kv-type", o.kv_type, "GPU KV-cache type: f32 (matches the CPU) or f16 (half the bytes)")
      ->check(CLI::IsMember({"f32", "f16"}));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

Loaded load_model(const ModelOptions& o, int n_seq) {
  auto t0 = std::chrono::steady_clock::now();
  Loaded l;
  l.model = model::Model::load(runtime::resolve_model_path(o.model));
  runtime::BackendOptions bo;
  bo.n_threads = o.threads;
  bo.n_ctx = o.ctx_size;
  bo.n_seq = n_seq;
  bo.n_batch = o.batch_size;
  bo.kv_f16 = o.kv_type == "f16";
  l.backend = runtime::make_backend(runtime::backend_kind_from_name(o.backend), *l.model, bo);
  l.load_seconds = seconds_since(t0);
  return l;
}

}  // namespace quarrel::cli

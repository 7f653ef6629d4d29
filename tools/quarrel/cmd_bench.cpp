// quarrel bench: llama-bench's tests and table, on any backend.
//   ppN  one batch of N prompt tokens (logits for the last only)
//   tgN  N tokens decoded one at a time, starting from an empty cache
//        (--parallel P: P sequences decoded together, one row each per step,
//        as the server's batches do; t/s counts every sequence's tokens)
// Each test runs once to warm up, then -r times; t/s is the mean over runs
// with its standard deviation, as llama-bench reports it. Decode tests also
// report bytes read per token against the machine's measured read bandwidth.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include <sys/resource.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "command.h"
#include "common/error.h"
#include "cpu/backend.h"
#include "cpu/kernels/kernels.h"
#include "cpu/membw.h"
#include "loader.h"
#include "runtime/model_path.h"

namespace quarrel::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  std::vector<int> n_prompt{512};
  std::vector<int> n_gen{128};
  int reps = 5;
  std::string output = "md";
  bool membw_only = false;
  double bandwidth_gbs = 0;  // 0: measure (CPU backends)
  std::string isa;           // CPU kernel table to use instead of the best one
  int parallel = 1;          // sequences decoded together in tg tests
};

// The CPU kernel table named `isa` (scalar, avx2, avx512, neon), if this CPU
// runs it.
const cpu::Kernels& kernels_named(const std::string& isa) {
  std::string have;
  for (const cpu::Kernels* k : cpu::kernels_available()) {
    if (k->isa == isa) return *k;
    have += (have.empty() ? "" : ", ") + std::string(k->isa);
  }
  fail("--isa {}: this CPU runs {}", isa, have);
}

struct TestResult {
  std::string name;  // pp512, tg128
  int n_prompt = 0, n_gen = 0;
  int n_seq = 1;                // tg: sequences decoded together
  std::vector<double> seconds;  // one per repetition
  double mean_ts = 0, stddev_ts = 0;
  double bytes_per_token = 0;   // tg only: weights + mean KV read
  double barrier_share = 0;     // CPU only: fraction of thread-time spent waiting
  double cpu_seconds = 0;       // process CPU time (all threads) over the repetitions
};

// User + system CPU time of the whole process: on a loaded machine, time a
// thread spends descheduled does not count here, unlike wall time.
double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec); };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// llama.cpp's names for general.file_type, so the model column reads the same.
std::string ftype_name(const model::Model& m) {
  static const std::map<uint32_t, std::string> names = {
      {0, "F32"},           {1, "F16"},           {2, "Q4_0"},          {3, "Q4_1"},          {7, "Q8_0"},
      {8, "Q5_0"},          {9, "Q5_1"},          {10, "Q2_K - Medium"}, {11, "Q3_K - Small"}, {12, "Q3_K - Medium"},
      {13, "Q3_K - Large"}, {14, "Q4_K - Small"}, {15, "Q4_K - Medium"}, {16, "Q5_K - Small"}, {17, "Q5_K - Medium"},
      {18, "Q6_K"},         {32, "BF16"}};
  if (auto ft = m.file.get_int("general.file_type"); ft && names.count(static_cast<uint32_t>(*ft)))
    return names.at(static_cast<uint32_t>(*ft));
  std::string t(tensor::dtype_name(m.weights.layers.at(0).w_gate.type));
  std::transform(t.begin(), t.end(), t.begin(), ::toupper);
  return t;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

double stddev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / (v.size() - 1));
}

// Token ids do not change the speed; fixed pseudo-random ones keep runs alike.
std::vector<int32_t> bench_tokens(int n, int64_t n_vocab) {
  std::mt19937 rng(42);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % n_vocab);
  return t;
}

double run_prompt(runtime::Backend& b, const std::vector<int32_t>& tokens, float* logits) {
  std::vector<runtime::BatchEntry> batch(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) batch[i] = {tokens[i], static_cast<int32_t>(i), 0, i + 1 == tokens.size()};
  const auto t0 = std::chrono::steady_clock::now();
  b.forward(batch, logits);
  return seconds_since(t0);
}

// Each step is one forward pass with a row for each of `n_seq` sequences at
// the same position; every row wants logits, as in the server's decode steps.
double run_gen(runtime::Backend& b, const std::vector<int32_t>& tokens, int n_seq, float* logits) {
  std::vector<runtime::BatchEntry> batch(n_seq);
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < tokens.size(); ++i) {
    for (int s = 0; s < n_seq; ++s)
      batch[s] = {tokens[(i + static_cast<size_t>(s)) % tokens.size()], static_cast<int32_t>(i), s, true};
    b.forward(batch, logits);
  }
  return seconds_since(t0);
}

TestResult run_test(runtime::Backend& b, const model::Config& c, int n_prompt, int n_gen, int n_seq, int reps) {
  TestResult r;
  r.n_prompt = n_prompt;
  r.n_gen = n_gen;
  r.n_seq = n_prompt > 0 ? 1 : n_seq;
  r.name = n_prompt > 0 ? fmt::format("pp{}", n_prompt)
                        : (r.n_seq > 1 ? fmt::format("tg{} x{}", n_gen, r.n_seq) : fmt::format("tg{}", n_gen));
  const int n = n_prompt > 0 ? n_prompt : n_gen;
  const int n_tokens = n * r.n_seq;
  const auto tokens = bench_tokens(n, c.n_vocab);
  // Each step copies its logits to the host (the last row's, or every
  // sequence's row), as llama_decode does, into the buffer the backend
  // copies to fastest.
  float* logits = b.logits_buffer(c.n_vocab * static_cast<int64_t>(r.n_seq));
  auto once = [&] { return n_prompt > 0 ? run_prompt(b, tokens, logits) : run_gen(b, tokens, r.n_seq, logits); };
  once();  // warm-up: faults in the weights, settles caches and clocks
  const double wait0 = cpu::barrier_wait_seconds(b);
  const double cpu0 = process_cpu_seconds();
  for (int i = 0; i < reps; ++i) r.seconds.push_back(once());
  r.cpu_seconds = process_cpu_seconds() - cpu0;
  std::vector<double> ts;
  for (double s : r.seconds) ts.push_back(n_tokens / s);
  r.mean_ts = mean(ts);
  r.stddev_ts = stddev(ts);
  double total = 0;
  for (double s : r.seconds) total += s;
  const int threads = std::max(b.options().n_threads, 1);
  r.barrier_share = (cpu::barrier_wait_seconds(b) - wait0) / (total * threads);
  if (n_gen > 0 && r.n_seq == 1) {
    double bytes = 0;
    for (int p = 0; p < n_gen; ++p) bytes += static_cast<double>(b.bytes_per_token(p + 1));
    r.bytes_per_token = bytes / n_gen;
  }
  return r;
}

double reps_tokens(const TestResult& r) { return r.n_prompt > 0 ? r.n_prompt : r.n_gen * r.n_seq; }

std::string size_label(double bytes) {
  return bytes >= 1024.0 * 1024 * 1024 ? fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024))
                                       : fmt::format("{:.2f} MiB", bytes / (1024.0 * 1024));
}

std::string params_label(double params) {
  return params >= 1e9 ? fmt::format("{:.2f} B", params / 1e9) : fmt::format("{:.2f} M", params / 1e6);
}

void run_membw(const BenchOptions& o) {
  const auto bw = cpu::measure_read_bandwidth(o.model.threads);
  if (o.output == "json") {
    nlohmann::json j = {{"read_bandwidth_gbs", bw.best_gbs}, {"median_gbs", bw.median_gbs},
                        {"buffer_bytes", bw.bytes},          {"threads", bw.threads},
                        {"passes", bw.passes}};
    fmt::print("{}\n", j.dump(2));
    return;
  }
  fmt::print("read bandwidth: {:.1f} GB/s best, {:.1f} GB/s median ({} threads, {} passes over {})\n", bw.best_gbs,
             bw.median_gbs, bw.threads, bw.passes, size_label(static_cast<double>(bw.bytes)));
}

void run_bench(const BenchOptions& o) {
  if (o.membw_only) {
    run_membw(o);
    return;
  }
  if (o.model.model.empty()) fail("bench: -m MODEL is required (or --membw)");
  ModelOptions mo = o.model;
  const int max_p = *std::max_element(o.n_prompt.begin(), o.n_prompt.end());
  const int max_n = *std::max_element(o.n_gen.begin(), o.n_gen.end());
  mo.batch_size = std::max({max_p, o.parallel, 1});
  if (mo.ctx_size == 0) mo.ctx_size = std::max(max_p, max_n) + 1;
  Loaded l;
  if (o.isa.empty()) {
    l = load_model(mo, o.parallel);
  } else {
    if (runtime::backend_kind_from_name(mo.backend) == runtime::BackendKind::Cuda)
      fail("--isa picks a CPU kernel table; it does not apply to --backend cuda");
    l.model = model::Model::load(runtime::resolve_model_path(mo.model));
    runtime::BackendOptions bo;
    bo.n_threads = mo.threads;
    bo.n_ctx = mo.ctx_size;
    bo.n_batch = mo.batch_size;
    bo.n_seq = o.parallel;
    l.backend = cpu::make_backend(*l.model, bo, kernels_named(o.isa));
  }
  const model::Model& m = *l.model;
  runtime::Backend& b = *l.backend;

  double params = 0, size = 0;
  for (const auto& t : m.file.tensors()) {
    params += static_cast<double>(t.n_elements());
    size += static_cast<double>(t.n_bytes);
  }
  const std::string model_desc = fmt::format("{} {:.0f}M {}", m.config.arch.name, params / 1e6, ftype_name(m));

  std::vector<TestResult> results;
  for (int p : o.n_prompt)
    if (p > 0) results.push_back(run_test(b, m.config, p, 0, 1, o.reps));
  for (int n : o.n_gen)
    if (n > 0) results.push_back(run_test(b, m.config, 0, n, o.parallel, o.reps));

  // The bandwidth floor: host memory for a CPU backend, else only if given.
  double bw = o.bandwidth_gbs;
  const bool is_cpu = b.name().rfind("cpu", 0) == 0;
  if (bw <= 0 && is_cpu && max_n > 0 && o.parallel == 1)
    bw = cpu::measure_read_bandwidth(b.options().n_threads).best_gbs;

  if (o.output == "json") {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : results) {
      nlohmann::json j = {{"model_filename", m.file.path()}, {"model_type", model_desc},
                          {"model_size", static_cast<int64_t>(size)}, {"model_n_params", static_cast<int64_t>(params)},
                          {"backend", b.name()}, {"n_threads", b.options().n_threads},
                          {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen}, {"n_seq", r.n_seq}, {"test", r.name},
                          {"avg_ts", r.mean_ts}, {"stddev_ts", r.stddev_ts}, {"samples_s", r.seconds}};
      if (is_cpu) {
        j["barrier_wait_share"] = r.barrier_share;
        j["cpu_ms_per_token"] = 1e3 * r.cpu_seconds / (reps_tokens(r) * o.reps);
      }
      if (r.bytes_per_token > 0) {
        j["bytes_per_token"] = r.bytes_per_token;
        if (bw > 0) {
          j["read_bandwidth_gbs"] = bw;
          j["floor_ts"] = bw * 1e9 / r.bytes_per_token;
          j["fraction_of_floor"] = r.mean_ts / (bw * 1e9 / r.bytes_per_token);
        }
      }
      arr.push_back(j);
    }
    fmt::print("{}\n", arr.dump(2));
    return;
  }

  fmt::print("| {:<30} | {:>10} | {:>10} | {:<24} | {:>7} | {:>15} | {:>20} |\n", "model", "size", "params",
             "backend", "threads", "test", "t/s");
  fmt::print("| {:-<30} | {:->9}: | {:->9}: | {:-<24} | {:->6}: | {:->14}: | {:->19}: |\n", "", "", "", "", "", "",
             "");
  for (const auto& r : results)
    fmt::print("| {:<30} | {:>10} | {:>10} | {:<24} | {:>7} | {:>15} | {:>20} |\n", model_desc, size_label(size),
               params_label(params), b.name(), b.options().n_threads, r.name,
               fmt::format("{:.2f} ± {:.2f}", r.mean_ts, r.stddev_ts));
  fmt::print("\n");
  for (const auto& r : results) {
    std::string line = fmt::format("{}: {:.2f} ms/token", r.name, 1e3 / r.mean_ts);
    if (r.bytes_per_token > 0) {
      line += fmt::format(", reads {:.1f} MB/token", r.bytes_per_token / 1e6);
      if (bw > 0) {
        const double floor = bw * 1e9 / r.bytes_per_token;
        line += fmt::format(" = {:.1f} GB/s; floor {:.1f} t/s at {:.1f} GB/s read bandwidth: {:.0f}% of floor",
                            r.bytes_per_token * r.mean_ts / 1e9, floor, bw, 100.0 * r.mean_ts / floor);
      }
    }
    if (is_cpu)
      line += fmt::format("; threads waiting {:.1f}% of the time; process CPU time {:.2f} ms/token",
                          100.0 * r.barrier_share, 1e3 * r.cpu_seconds / (reps_tokens(r) * o.reps));
    fmt::print("{}\n", line);
  }
}

CommandRegistration reg{[](CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "Measure prompt and generation speed, as llama-bench does");
  add_model_options(cmd, o->model, /*model_required=*/false);
  cmd->add_option("-p,--n-prompt", o->n_prompt, "prompt lengths to test (comma-separated; 0 = none)")
      ->delimiter(',')
      ->check(CLI::Range(0, 8192));
  cmd->add_option("-n,--n-gen", o->n_gen, "generation lengths to test (comma-separated; 0 = none)")
      ->delimiter(',')
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("-r,--repetitions", o->reps, "repetitions of each test")->check(CLI::Range(1, 1000));
  cmd->add_option("-o,--output", o->output, "output format: md or json")->check(CLI::IsMember({"md", "json"}));
  cmd->add_option("--parallel", o->parallel,
                  "sequences decoded together in tg tests, one row each per forward pass (the server's batches)")
      ->check(CLI::Range(1, 256));
  cmd->add_flag("--membw", o->membw_only, "measure this machine's memory read bandwidth and exit");
  cmd->add_option("--bandwidth", o->bandwidth_gbs, "read bandwidth in GB/s for the floor (default: measure)")
      ->check(CLI::Range(0.0, 1e5));
  cmd->add_option("--isa", o->isa, "CPU kernel table (scalar, avx2, avx512, neon; default: the best this CPU runs)");
  cmd->callback([o] { run_bench(*o); });
}};

}  // namespace
}  // namespace quarrel::cli

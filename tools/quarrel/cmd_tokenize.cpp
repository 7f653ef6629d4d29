// quarrel tokenize: text -> token ids with a model's vocabulary, in the
// formats of llama.cpp's llama-tokenize and tokenizer tests, plus a benchmark.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "command.h"
#include "common/error.h"
#include "gguf/file.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string prompt;
  std::string test_file;
  std::string bench_file;
  bool ids_only = false;
  bool no_bos = false;
  bool parse_special = false;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '{}'", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// llama.cpp's tokenizer test format: tests separated by this line; a file
// that ends with the separator has no empty test after it.
std::vector<std::string> split_tests(const std::string& all) {
  static constexpr std::string_view kSep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> tests;
  size_t start = 0;
  for (size_t pos; (pos = all.find(kSep, start)) != std::string::npos; start = pos + kSep.size()) {
    tests.push_back(all.substr(start, pos - start));
  }
  if (start < all.size()) tests.push_back(all.substr(start));
  return tests;
}

void run_test_file(const tokenizer::Tokenizer& tok, const std::string& path) {
  std::string out;
  for (const std::string& text : split_tests(read_file(path))) {
    for (int32_t id : tok.encode(text, /*add_special=*/false, /*parse_special=*/false)) {
      out += ' ';
      out += std::to_string(id);
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void run_bench(const tokenizer::Tokenizer& tok, const std::string& path, const TokenizeOptions& o) {
  const std::string text = read_file(path);
  if (text.empty()) fail("'{}' is empty", path);
  constexpr int kRuns = 5;
  double best = 1e30, sum = 0, best_cpu = 1e30;
  size_t n_tokens = 0;
  for (int i = 0; i < kRuns; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = thread_cpu_seconds();
    n_tokens = tok.encode(text, !o.no_bos, o.parse_special).size();
    best_cpu = std::min(best_cpu, thread_cpu_seconds() - c0);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    sum += s;
  }
  const double mb = static_cast<double>(text.size()) / 1e6;
  fmt::print("file:    {} ({:.3f} MB, {} tokens, vocab {} / {})\n", path, mb, n_tokens, tok.model(),
             tok.pre().empty() ? "spm" : tok.pre());
  // CPU time is printed too: on a busy machine the wall clock also counts
  // the time the thread waited for a core.
  fmt::print("time:    best {:.4f} s, mean {:.4f} s over {} runs (one thread); best CPU time {:.4f} s\n", best,
             sum / kRuns, kRuns, best_cpu);
  fmt::print("speed:   {:.2f} MB/s\n", mb / best);
}

void run_tokenize(const TokenizeOptions& o) {
  const gguf::File file = gguf::File::open(o.model);
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_gguf(file);
  if (!o.test_file.empty()) return run_test_file(tok, o.test_file);
  if (!o.bench_file.empty()) return run_bench(tok, o.bench_file, o);

  const std::vector<int32_t> ids = tok.encode(o.prompt, !o.no_bos, o.parse_special);
  if (o.ids_only) {
    std::string line = "[";
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
    fmt::print("{}]\n", line);
    return;
  }
  for (int32_t id : ids) fmt::print("{:6d} -> '{}'\n", id, tok.token_to_piece(id, /*render_special=*/true));
}

const CommandRegistration reg{[](CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "Tokenize text with a model's vocabulary");
  cmd->add_option("-m,--model", o->model, "GGUF file (a full model or a vocabulary-only file)")->required();
  auto* prompt = cmd->add_option("-p,--prompt", o->prompt, "Text to tokenize; prints each id and its piece");
  cmd->add_flag("--ids", o->ids_only, "Print only the ids, as [1, 2, 3]");
  auto* test = cmd->add_option("--test-file", o->test_file,
                               "llama.cpp tokenizer test input: prints one line of ids per test "
                               "(no special tokens added or parsed)");
  auto* bench = cmd->add_option("--bench", o->bench_file, "Time tokenizing this file (best of 5) and print MB/s");
  cmd->add_flag("--no-bos", o->no_bos, "Do not add BOS/EOS tokens");
  cmd->add_flag("--parse-special", o->parse_special, "Turn special-token text such as <|eot_id|> into tokens");
  prompt->excludes(test)->excludes(bench);
  test->excludes(bench);
  cmd->callback([o, prompt, test, bench] {
    if (prompt->count() == 0 && test->count() == 0 && bench->count() == 0) {
      fail("tokenize: give one of -p TEXT, --test-file F or --bench F");
    }
    run_tokenize(*o);
  });
}};

}  // namespace
}  // namespace quarrel::cli

#pragma once
// Shared by the tokenizer tests: the vocabularies in tests/data/vocab, loaded
// once per process, and llama.cpp's test-file format.
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gguf/file.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::test {

// Every vocabulary with llama.cpp reference outputs in tests/data/vocab.
inline const std::vector<std::string> kVocabNames = {"llama-spm", "phi-3",     "gpt-2",   "llama3",
                                                     "qwen3",     "starcoder", "falcon",  "deepseek-coder"};

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline const tokenizer::Tokenizer& vocab_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<tokenizer::Tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) {
    const gguf::File f = gguf::File::open(repo_path("tests/data/vocab/vocab-" + name + ".gguf"));
    slot = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::from_gguf(f));
  }
  return *slot;
}

// Tests are separated by "\n__ggml_vocab_test__\n"; the files end with the
// separator or not, and no empty test follows a final separator.
inline std::vector<std::string> split_vocab_tests(const std::string& all) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> tests;
  size_t start = 0;
  for (size_t pos; (pos = all.find(sep, start)) != std::string::npos; start = pos + sep.size()) {
    tests.push_back(all.substr(start, pos - start));
  }
  if (start < all.size()) tests.push_back(all.substr(start));
  return tests;
}

inline std::vector<std::string> vocab_test_texts(const std::string& set) {
  return split_vocab_tests(read_text_file(repo_path("tests/data/vocab/" + set + ".inp")));
}

// One line of ids per test, from tests/data/vocab/vocab-NAME.SET.out (or
// NAME.SET.out when prefixed is false).
inline std::vector<std::vector<int32_t>> vocab_expected_ids(const std::string& name, const std::string& set,
                                                             bool prefixed = true) {
  const std::string file = (prefixed ? "vocab-" : "") + name + "." + set + ".out";
  std::istringstream in(read_text_file(repo_path("tests/data/vocab/" + file)));
  std::vector<std::vector<int32_t>> all;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    all.push_back(std::move(ids));
  }
  return all;
}

}  // namespace quarrel::test

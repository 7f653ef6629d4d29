#pragma once
// Helpers shared by the tests: where the data is, and running the CLI.
#include <string>

namespace quarrel::test {

// Path of a file in the repository, e.g. repo_path("tests/data/models/tiny-f32.gguf").
inline std::string repo_path(const std::string& rel) { return std::string(QUARREL_SOURCE_DIR) + "/" + rel; }

// Runs the quarrel CLI with args (a shell-quoted string); captures stdout and
// stderr together. Returns the exit status.
int run_cli(const std::string& args, std::string* output);

// A fresh temporary directory, removed by the caller.
std::string make_temp_dir();

}  // namespace quarrel::test

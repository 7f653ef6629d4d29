#pragma once
// Helpers shared by the tests: where the data is, and running the CLI.
#include <cstdint>
#include <string>

namespace quarrel::test {

// Path of a file in the repository, e.g. repo_path("tests/data/models/tiny-f32.gguf").
// A test binary run from another copy of the repo (the GPU machine) finds the
// data from its working directory.
std::string repo_path(const std::string& rel);

// Runs the quarrel CLI with args (a shell-quoted string); captures stdout and
// stderr together. Returns the exit status.
int run_cli(const std::string& args, std::string* output);

// A fresh temporary directory, removed by the caller.
std::string make_temp_dir();

// Relative L2 error ||got - want|| / ||want|| over n values, in double.
double rel_l2(const float* got, const float* want, int64_t n);

}  // namespace quarrel::test

#include "test_support.h"

#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace quarrel::test {

int run_cli(const std::string& args, std::string* output) {
  std::string cmd = std::string(QUARREL_BIN_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string repo_path(const std::string& rel) {
  static const std::string root = std::filesystem::exists(QUARREL_SOURCE_DIR "/CMakeLists.txt")
                                      ? std::string(QUARREL_SOURCE_DIR)
                                      : std::filesystem::current_path().string();
  return root + "/" + rel;
}

std::string make_temp_dir() {
  char tmpl[] = "/tmp/quarrel-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

double rel_l2(const float* got, const float* want, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
    den += want[i] * static_cast<double>(want[i]);
  }
  return std::sqrt(num / den);
}

}  // namespace quarrel::test

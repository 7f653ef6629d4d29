// quarrel: the command-line front end. Each subcommand is a thin layer over
// libquarrel; errors from the library are printed once here.
#include <cstdio>
#include <exception>

#include "command.h"
#include "common/error.h"

namespace quarrel::cli {
std::vector<CommandSetup>& command_setups() {
  static std::vector<CommandSetup> setups;
  return setups;
}
}  // namespace quarrel::cli

int main(int argc, char** argv) {
  CLI::App app{"quarrel: run Llama-family GGUF models on CPU and GPU"};
  app.require_subcommand(1);
  for (auto& setup : quarrel::cli::command_setups()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const quarrel::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}

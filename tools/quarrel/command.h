#pragma once
// Each subcommand of the CLI lives in its own cmd_*.cpp and registers itself
// here with a static CommandRegistration, so main.cpp never lists them.
#include <functional>
#include <vector>

#include <CLI/CLI.hpp>

namespace quarrel::cli {

using CommandSetup = std::function<void(CLI::App& app)>;

std::vector<CommandSetup>& command_setups();

struct CommandRegistration {
  explicit CommandRegistration(CommandSetup setup) { command_setups().push_back(std::move(setup)); }
};

}  // namespace quarrel::cli

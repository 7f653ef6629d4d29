#pragma once
// Options every model command shares, and loading a model with its backend.
#include <chrono>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "model/model.h"
#include "runtime/backend.h"

namespace quarrel::cli {

struct ModelOptions {
  std::string model;
  std::string backend = "auto";
  int threads = 0;
  int ctx_size = 0;
  int batch_size = 512;
  std::string kv_type = "f32";
};

void add_model_options(CLI::App* cmd, ModelOptions& o, bool model_required = true);

struct Loaded {
  std::unique_ptr<model::Model> model;
  std::unique_ptr<runtime::Backend> backend;
  double load_seconds = 0;
};

Loaded load_model(const ModelOptions& o, int n_seq = 1);

double seconds_since(std::chrono::steady_clock::time_point t0);
// Peak resident memory of this process, in MiB.
double peak_rss_mib();

}  // namespace quarrel::cli

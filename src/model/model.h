#pragma once
// model::Model: one loaded GGUF file with its checked config and weight views.
// The views point into the file's mapping, so the Model owns both.
#include <memory>
#include <string>

#include "gguf/file.h"
#include "model/config.h"
#include "model/weights.h"

namespace quarrel::model {

struct Model {
  gguf::File file;
  Config config;
  Weights weights;

  // Throws quarrel::Error: "error loading model 'path': ...".
  static std::unique_ptr<Model> load(const std::string& path);
  static std::unique_ptr<Model> from_file(gguf::File file);
};

}  // namespace quarrel::model

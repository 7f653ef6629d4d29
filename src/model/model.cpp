#include "model/model.h"

#include "common/error.h"

namespace quarrel::model {

std::unique_ptr<Model> Model::from_file(gguf::File file) {
  auto m = std::unique_ptr<Model>(new Model{std::move(file), {}, {}});
  m->config = with_context("error loading model hyperparameters", [&] { return config_from_gguf(m->file); });
  m->weights = with_context("error loading model tensors", [&] { return weights_from_gguf(m->file, m->config); });
  return m;
}

std::unique_ptr<Model> Model::load(const std::string& path) {
  return with_context("error loading model '" + path + "'", [&] { return from_file(gguf::File::open(path)); });
}

}  // namespace quarrel::model

#pragma once
// Resolves what a user passes as -m: a GGUF path, or an Ollama model name
// (name[:tag], namespace/name[:tag]) looked up in Ollama's manifest store.
#include <string>

namespace quarrel::runtime {

// models_dir is Ollama's store; empty means $OLLAMA_MODELS, else ~/.ollama/models.
// Throws quarrel::Error when neither a file nor a manifest matches.
std::string resolve_model_path(const std::string& name, const std::string& models_dir = "");

}  // namespace quarrel::runtime

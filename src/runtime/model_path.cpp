#include "runtime/model_path.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace quarrel::runtime {

namespace fs = std::filesystem;

namespace {

bool safe_component(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  return true;
}

std::string default_store() {
  if (const char* env = std::getenv("OLLAMA_MODELS"); env && *env) return env;
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.ollama/models";
  return "";
}

}  // namespace

std::string resolve_model_path(const std::string& name, const std::string& models_dir) {
  std::error_code ec;
  if (fs::is_regular_file(name, ec)) return name;
  if (name.ends_with(".gguf") || name.find("/.") != std::string::npos || name.starts_with("/") ||
      name.starts_with("."))
    fail("model file '{}' not found", name);

  // Split [host/][namespace/]name[:tag] into its parts.
  std::string rest = name, tag = "latest";
  if (auto colon = rest.rfind(':'); colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    size_t slash = rest.find('/', start);
    parts.push_back(rest.substr(start, slash - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (parts.size() == 1) parts.insert(parts.begin(), "library");
  if (parts.size() == 2) parts.insert(parts.begin(), "registry.ollama.ai");
  if (parts.size() != 3) fail("'{}' is neither a file nor an Ollama model name", name);
  for (const auto& p : parts)
    if (!safe_component(p)) fail("'{}' is neither a file nor an Ollama model name", name);
  if (!safe_component(tag)) fail("'{}': invalid tag '{}'", name, tag);

  const std::string store = models_dir.empty() ? default_store() : models_dir;
  if (store.empty()) fail("model '{}' not found (no Ollama model store)", name);
  fs::path manifest = fs::path(store) / "manifests" / parts[0] / parts[1] / parts[2] / tag;
  std::ifstream in(manifest);
  if (!in) fail("model '{}' not found: no file of that name and no Ollama manifest {}", name, manifest.string());
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("layers") || !j["layers"].is_array())
    fail("Ollama manifest {} is malformed", manifest.string());
  // json::value() throws nlohmann's type_error when a field is not a string;
  // read only fields that are strings, so a bad manifest gets quarrel's error.
  auto string_field = [](const nlohmann::json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  for (const auto& layer : j["layers"]) {
    if (!layer.is_object() || string_field(layer, "mediaType") != "application/vnd.ollama.image.model") continue;
    std::string digest = string_field(layer, "digest");
    if (!digest.starts_with("sha256:") || digest.size() != 71 ||
        digest.find_first_not_of("0123456789abcdef", 7) != std::string::npos)
      fail("Ollama manifest {}: bad model digest '{}'", manifest.string(), digest);
    fs::path blob = fs::path(store) / "blobs" / ("sha256-" + digest.substr(7));
    if (!fs::is_regular_file(blob, ec)) fail("Ollama model '{}': blob {} is missing", name, blob.string());
    return blob.string();
  }
  fail("Ollama manifest {} has no model layer", manifest.string());
}

}  // namespace quarrel::runtime

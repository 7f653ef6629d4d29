#include "server/api_error.h"

#include <nlohmann/json.hpp>

namespace quarrel::server {

void bad_request(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

std::string_view error_type(int status) {
  if (status == 401) return "invalid_request_error";  // what OpenAI answers for a bad key
  if (status == 404) return "not_found_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

std::string error_body(int status, std::string_view message, std::string_view param, std::string_view code) {
  nlohmann::json e = {{"message", message},
                      {"type", error_type(status)},
                      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                      {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}};
  // Messages may quote request bytes: never let invalid UTF-8 throw here.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace quarrel::server

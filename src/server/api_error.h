#pragma once
// server::ApiError: a request the server refuses. It carries the HTTP status
// and the fields of the OpenAI-style error body
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// and is converted to a response once, at the HTTP boundary.
#include <string>
#include <string_view>

#include "common/error.h"

namespace quarrel::server {

class ApiError : public Error {
 public:
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "")
      : Error(message), status_(status), param_(std::move(param)), code_(std::move(code)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }  // "" = null
  const std::string& code() const { return code_; }    // "" = null

 private:
  int status_;
  std::string param_;
  std::string code_;
};

// A 400 that names the offending request field.
[[noreturn]] void bad_request(const std::string& param, const std::string& message);

// The OpenAI error "type" for an HTTP status.
std::string_view error_type(int status);

// The JSON error body; empty param or code are written as null.
std::string error_body(int status, std::string_view message, std::string_view param = {}, std::string_view code = {});
inline std::string error_body(const ApiError& e) { return error_body(e.status(), e.what(), e.param(), e.code()); }

}  // namespace quarrel::server

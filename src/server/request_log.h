#pragma once
// One structured line per request on stderr, as JSON, so that logs can be
// grepped by id and fed to tools without a parser for free text:
// {"ts":..., "id":..., "method":..., "path":..., "status":..., "prompt_tokens":...,
//  "cached_tokens":..., "completion_tokens":..., "finish_reason":..., "queue_ms":...,
//  "ttft_ms":..., "duration_ms":...}
#include <cstdint>
#include <string>

namespace quarrel::server {

struct RequestLog {
  std::string id;  // the response id; "" for requests that made no completion
  std::string method, path, remote;
  int status = 0;
  // Completions only (left out of the line when prompt_tokens < 0).
  int32_t prompt_tokens = -1, cached_tokens = 0, completion_tokens = 0;
  std::string finish_reason;
  double queue_ms = 0, ttft_ms = 0;
  double duration_ms = 0;
};

void write_request_log(const RequestLog& log);

}  // namespace quarrel::server

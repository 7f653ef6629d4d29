#include "server/request_log.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace quarrel::server {

void write_request_log(const RequestLog& log) {
  using namespace std::chrono;
  const double ts = duration<double>(system_clock::now().time_since_epoch()).count();
  nlohmann::ordered_json j;
  j["ts"] = static_cast<double>(static_cast<int64_t>(ts * 1000)) / 1000;
  if (!log.id.empty()) j["id"] = log.id;
  j["method"] = log.method;
  j["path"] = log.path;
  j["remote"] = log.remote;
  j["status"] = log.status;
  if (log.prompt_tokens >= 0) {
    j["prompt_tokens"] = log.prompt_tokens;
    j["cached_tokens"] = log.cached_tokens;
    j["completion_tokens"] = log.completion_tokens;
    j["finish_reason"] = log.finish_reason;
    j["queue_ms"] = static_cast<int64_t>(log.queue_ms);
    j["ttft_ms"] = static_cast<int64_t>(log.ttft_ms);
  }
  j["duration_ms"] = static_cast<int64_t>(log.duration_ms);
  // One write per line, so lines from concurrent requests never interleave.
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace quarrel::server

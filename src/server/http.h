#pragma once
// server::HttpServer: the OpenAI-compatible HTTP front end (cpp-httplib).
// It owns the request-side concerns: routes, authentication, the body size
// limit, validation, tokenization and chat templates, the queue (503 with
// Retry-After when full), server-sent events, metrics and the per-request
// log line. Generation itself happens in the Scheduler.
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models,
// GET /health (no key needed), GET /metrics, POST /tokenize, POST /detokenize.
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "model/model.h"
#include "runtime/backend.h"
#include "server/metrics.h"
#include "server/queue.h"
#include "server/scheduler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace quarrel::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;        // 0: any free port (bind() says which)
  std::string api_key;    // "" = no authentication
  size_t max_queue = 64;  // requests that may wait for a slot
  int timeout_s = 600;    // socket read/write timeout
  size_t max_body_bytes = 8u << 20;
  std::string model_id;       // the name in /v1/models and in responses
  std::string chat_template;  // --chat-template NAME; "" = detect from the model
  int http_threads = 0;       // 0: enough for every slot, the queue, and spare connections
};

class HttpServer {
 public:
  // The backend's n_seq slots of n_ctx positions are the scheduler's slots.
  HttpServer(const model::Model& model, runtime::Backend& backend, ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port. Throws quarrel::Error.
  int bind();
  // Serves until shutdown(); returns then.
  void serve();
  // Safe from any thread: refuses new work (503), lets generations in flight
  // finish for up to `grace`, cancels the rest, and makes serve() return.
  void shutdown(std::chrono::milliseconds grace);

  // Why chat requests are refused, when the model's template is unknown and
  // no --chat-template was given; "" when chat works.
  const std::string& chat_unavailable() const { return chat_error_; }
  std::string_view chat_template_name() const { return chat_ ? chat_->name() : std::string_view(); }

 private:
  struct Handlers;
  friend struct Handlers;

  const model::Model& model_;
  ServerOptions opts_;
  tokenizer::Tokenizer tok_;
  std::optional<tokenizer::ChatTemplate> chat_;
  std::string chat_error_;
  Metrics metrics_;
  TaskQueue queue_;
  Scheduler scheduler_;
  std::unique_ptr<httplib::Server> http_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> next_task_id_{1};
  std::string id_prefix_;  // random per process, so ids differ across restarts
};

}  // namespace quarrel::server

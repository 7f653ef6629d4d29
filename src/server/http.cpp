#include "server/http.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <random>

#include "server/api_error.h"
#include "server/request.h"
#include "server/request_log.h"
#include "server/responses.h"

namespace quarrel::server {

namespace {

using nlohmann::json;

// The request this HTTP worker thread is answering: httplib runs the
// pre-routing handler, the route handler, the content provider and the
// logger of one request on one thread, in that order.
struct RequestState {
  Clock::time_point start = Clock::now();
  RequestLog log;
};
thread_local RequestState t_request;

// Time depends only on the length of the expected key, never on where the
// given key differs, so a client cannot find the key byte by byte.
bool keys_equal(std::string_view given, std::string_view expected) {
  volatile unsigned char diff = given.size() != expected.size();
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = given.empty() ? 0 : static_cast<unsigned char>(given[i % given.size()]);
    diff = diff | (g ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

void send_error(httplib::Response& res, int status, const std::string& message, const std::string& param = {},
                const std::string& code = {}) {
  res.status = status;
  res.set_content(error_body(status, message, param, code), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  send_error(res, e.status(), e.what(), e.param(), e.code());
}

void send_json(httplib::Response& res, const std::string& body) {
  res.status = 200;
  res.set_content(body, "application/json");
}

std::string metrics_endpoint(const std::string& path) {
  static const char* known[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics",
                                "/tokenize",       "/detokenize"};
  for (const char* k : known)
    if (path == k) return k;
  return "other";  // keeps the label set bounded whatever paths clients try
}

std::string random_hex(int digits) {
  std::random_device rd;
  std::mt19937_64 rng((static_cast<uint64_t>(rd()) << 32) ^ rd());
  return fmt::format("{:0{}x}", rng() & ((1ull << (4 * digits)) - 1), digits);
}

// cpp-httplib 0.11 as Debian builds it listens with a backlog of 5 (a
// compile-time constant of the library): a burst of new connections
// overflows the accept queue, and the kernel drops their handshakes, so
// clients stall for a second or see a reset mid-body. listen() on a
// listening socket only changes its backlog; find ours by its port.
void widen_listen_backlog(int port) {
  for (int fd = 0; fd < 1024; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) continue;
    int bound = -1;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
    if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
    if (bound == port) listen(fd, SOMAXCONN);
  }
}

}  // namespace

struct HttpServer::Handlers {
  HttpServer& s;

  void guarded(httplib::Response& res, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const Error& e) {
      send_error(res, 400, e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, std::string("internal error: ") + e.what());
    }
  }

  std::vector<int32_t> prompt_tokens(const CompletionRequest& r) {
    std::vector<int32_t> ids;
    if (r.endpoint == Endpoint::Chat) {
      if (!s.chat_) throw ApiError(400, s.chat_error_, "messages", "chat_template_unavailable");
      tokenizer::ChatRenderOptions o;
      if (s.tok_.bos() >= 0) o.bos_token = std::string(s.tok_.token_text(s.tok_.bos()));
      if (s.tok_.eos() >= 0) o.eos_token = std::string(s.tok_.token_text(s.tok_.eos()));
      std::string text;
      try {
        text = s.chat_->render(r.messages, o);
      } catch (const Error& e) {
        bad_request("messages", e.what());
      }
      // The template writes the BOS text itself where the model wants it;
      // add one only when the vocabulary asks for it and the text has none.
      ids = s.tok_.encode(text, /*add_special=*/false, /*parse_special=*/true);
      if (s.tok_.add_bos() && s.tok_.bos() >= 0 && (ids.empty() || ids[0] != s.tok_.bos()))
        ids.insert(ids.begin(), s.tok_.bos());
    } else if (r.prompt_text) {
      // As llama-server: special-token text in a raw prompt is those tokens,
      // so clients can send a prompt they templated themselves.
      ids = s.tok_.encode(*r.prompt_text, /*add_special=*/true, /*parse_special=*/true);
    } else {
      ids = r.prompt_tokens;
      for (int32_t t : ids)
        if (t >= s.tok_.n_vocab())
          bad_request("prompt", fmt::format("token id {} is not in the vocabulary of {}", t, s.tok_.n_vocab()));
    }
    const char* param = r.endpoint == Endpoint::Chat ? "messages" : "prompt";
    if (ids.empty()) bad_request(param, "the prompt is empty");
    return ids;
  }

  void completion(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    CompletionRequest r = parse_completion_request(req.body, endpoint);
    std::vector<int32_t> prompt = prompt_tokens(r);
    const int32_t n_ctx = s.scheduler_.options().n_ctx;
    const int32_t n_prompt = static_cast<int32_t>(prompt.size());
    const char* prompt_param = endpoint == Endpoint::Chat ? "messages" : "prompt";
    if (n_prompt >= n_ctx)
      throw ApiError(400, fmt::format("the prompt has {} tokens; the context holds {} per request", n_prompt, n_ctx),
                     prompt_param, "context_length_exceeded");
    const int32_t max_tokens = r.max_tokens.value_or(n_ctx - n_prompt);
    if (static_cast<int64_t>(n_prompt) + max_tokens > n_ctx)
      throw ApiError(400,
                     fmt::format("the prompt ({} tokens) plus max_tokens ({}) exceeds the context of {} tokens",
                                 n_prompt, max_tokens, n_ctx),
                     "max_tokens", "context_length_exceeded");

    auto task = std::make_shared<Task>();
    task->id = s.next_task_id_.fetch_add(1);
    task->prompt = std::move(prompt);
    task->max_tokens = max_tokens;
    task->sampler = r.sampler;
    task->stop = r.stop;
    task->logprobs = r.logprobs;
    task->top_logprobs = r.top_logprobs;
    task->stream_events = r.stream;

    ResponseContext ctx;
    ctx.endpoint = endpoint;
    ctx.id = fmt::format("{}-{}{:x}", endpoint == Endpoint::Chat ? "chatcmpl" : "cmpl", s.id_prefix_, task->id);
    ctx.created =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    ctx.model = r.model.empty() ? s.opts_.model_id : r.model;
    ctx.logprobs = r.logprobs;
    ctx.include_usage = r.stream && r.include_usage;
    t_request.log.id = ctx.id;
    t_request.log.prompt_tokens = n_prompt;

    if (s.shutting_down_ || !s.queue_.try_push(task)) {
      res.set_header("Retry-After", "1");
      throw ApiError(503, "the server is busy: every slot is taken and the queue is full; retry shortly", "",
                     "server_busy");
    }
    res.set_header("X-Request-Id", ctx.id);
    respond(res, std::move(task), ResponseWriter(s.tok_, std::move(ctx)), r.stream);
  }

  static void note_done(const TaskEvent& ev) {
    RequestLog& log = t_request.log;
    log.cached_tokens = ev.n_cached;
    log.completion_tokens = ev.n_generated;
    log.finish_reason = finish_reason_name(ev.finish);
    log.queue_ms = ev.queue_ms;
    log.ttft_ms = ev.ttft_ms;
  }

  // Both kinds of response are written by a content provider that waits for
  // the scheduler's events in short slices, so that between tokens it still
  // notices a client that went away and cancels its task: the slot frees at
  // the next step, for plain requests as for streams. A plain response is
  // one JSON body sent with chunked transfer encoding once it is complete.
  void respond(httplib::Response& res, std::shared_ptr<Task> task, ResponseWriter writer, bool streaming) {
    struct State {
      std::shared_ptr<Task> task;
      ResponseWriter writer;
      bool streaming;
      bool started = false;
      std::vector<TaskEvent> events;
      std::string text;  // plain responses: the whole completion
      std::vector<TokenLogprob> logprobs;
    };
    auto st = std::make_shared<State>(State{task, std::move(writer), streaming, false, {}, {}, {}});
    if (streaming) res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        streaming ? "text/event-stream" : "application/json",
        [st](size_t, httplib::DataSink& sink) {
          auto gone = [&] {
            st->task->stream.cancel();
            t_request.log.finish_reason = "cancelled";
            return false;
          };
          auto send = [&](const std::string& data) { return sink.write(data.data(), data.size()) || gone(); };
          if (!st->started) {
            st->started = true;
            if (st->streaming && st->writer.context().endpoint == Endpoint::Chat && !send(st->writer.chunk_role()))
              return false;
          }
          st->events.clear();
          if (!st->task->stream.pop_all(st->events, std::chrono::milliseconds(20))) return sink.is_writable() || gone();
          for (auto& ev : st->events) {
            if (ev.kind == TaskEvent::Kind::Delta) {
              if (st->streaming) {
                if (!send(st->writer.chunk_delta(ev.text, ev.logprobs))) return false;
              } else {
                st->text += ev.text;
                for (auto& lp : ev.logprobs) st->logprobs.push_back(std::move(lp));
              }
              continue;
            }
            note_done(ev);
            // The status line went out with the first chunk: an error can
            // only be told in the body now.
            std::string tail;
            if (ev.finish == FinishReason::Error) {
              tail = st->streaming ? ResponseWriter::sse_error(503, ev.error) + ResponseWriter::sse_done()
                                   : error_body(503, ev.error, "", "server_shutting_down");
            } else {
              tail = st->streaming ? st->writer.chunk_finish(ev) + ResponseWriter::sse_done()
                                   : st->writer.completion(st->text, st->logprobs, ev);
            }
            if (!send(tail)) return false;
            sink.done();
            return true;
          }
          return true;
        },
        [task](bool) { task->stream.cancel(); });  // no-op once the task is done
  }

  void tokenize(const httplib::Request& req, httplib::Response& res) {
    TokenizeRequest r = parse_tokenize_request(req.body);
    std::vector<int32_t> ids = s.tok_.encode(r.content, r.add_special, /*parse_special=*/true);
    json tokens = json::array();
    for (int32_t id : ids) {
      if (r.with_pieces)
        tokens.push_back({{"id", id}, {"piece", s.tok_.token_to_piece(id, true)}});
      else
        tokens.push_back(id);
    }
    send_json(res, dump_json(json{{"tokens", tokens}}));
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) {
    std::vector<int32_t> ids = parse_detokenize_request(req.body);
    for (int32_t t : ids)
      if (t >= s.tok_.n_vocab())
        bad_request("tokens", fmt::format("token id {} is not in the vocabulary of {}", t, s.tok_.n_vocab()));
    tokenizer::DecodeOptions o;
    o.strip_leading_space = false;
    send_json(res, dump_json(json{{"content", s.tok_.decode(ids, o)}}));
  }

  void models(httplib::Response& res) {
    json m = {{"id", s.opts_.model_id},
              {"object", "model"},
              {"created", 0},
              {"owned_by", "quarrel"},
              {"meta",
               {{"n_ctx_per_request", s.scheduler_.options().n_ctx},
                {"n_slots", s.scheduler_.options().n_slots},
                {"n_vocab", s.tok_.n_vocab()},
                {"chat_template", s.chat_ ? json(s.chat_->name()) : json(nullptr)}}}};
    send_json(res, dump_json(json{{"object", "list"}, {"data", json::array({m})}}));
  }
};

HttpServer::HttpServer(const model::Model& model, runtime::Backend& backend, ServerOptions options)
    : model_(model),
      opts_(std::move(options)),
      tok_(tokenizer::Tokenizer::from_gguf(model.file)),
      queue_(opts_.max_queue),
      scheduler_(backend, model.config, tok_, queue_, metrics_,
                 SchedulerOptions{backend.options().n_seq, backend.options().n_ctx, backend.options().n_batch}),
      http_(std::make_unique<httplib::Server>()),
      id_prefix_(random_hex(8)) {
  if (!opts_.chat_template.empty()) {
    chat_ = tokenizer::ChatTemplate::from_name(opts_.chat_template);
  } else {
    try {
      chat_ = tokenizer::ChatTemplate::detect(tok_.chat_template());
    } catch (const Error& e) {
      chat_error_ = std::string("chat completions are unavailable: ") + e.what();
    }
  }
  if (opts_.model_id.empty()) opts_.model_id = std::filesystem::path(model_.file.path()).stem().string();

  httplib::Server& h = *http_;
  const size_t threads = opts_.http_threads > 0
                             ? static_cast<size_t>(opts_.http_threads)
                             : static_cast<size_t>(scheduler_.options().n_slots) + opts_.max_queue + 64;
  // httplib gives each connection a thread for its lifetime; with one for
  // every slot, every queue place and spare ones for idle keep-alive
  // connections, a full queue is answered 503 instead of not read at all.
  h.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  h.set_payload_max_length(opts_.max_body_bytes);
  h.set_read_timeout(opts_.timeout_s, 0);
  h.set_write_timeout(opts_.timeout_s, 0);
  h.set_keep_alive_timeout(5);
  h.set_keep_alive_max_count(1000);
  h.set_tcp_nodelay(true);  // SSE chunks are small and should leave at once

  h.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    t_request = RequestState{};
    if (req.path == "/health" || opts_.api_key.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    const std::string_view bearer = "Bearer ";
    std::string_view given =
        auth.starts_with(bearer) ? std::string_view(auth).substr(bearer.size()) : std::string_view();
    if (keys_equal(given, opts_.api_key)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    res.set_header("Connection", "close");  // the body was not read: the connection cannot carry another request
    send_error(res, 401, "missing or invalid API key (send 'Authorization: Bearer KEY')", "", "invalid_api_key");
    return httplib::Server::HandlerResponse::Handled;
  });
  h.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string msg = res.status == 413   ? "the request body is too large"
                            : res.status == 404 ? fmt::format("no route for {} {}", req.method, req.path)
                                                : fmt::format("HTTP {}", res.status);
    send_error(res, res.status, msg, "", res.status == 413 ? "request_too_large" : "");
  });
  h.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal error: " + what);
  });
  h.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    RequestLog& log = t_request.log;
    log.method = req.method;
    log.path = req.path;
    log.remote = req.remote_addr;
    log.status = res.status;
    log.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_request.start).count();
    write_request_log(log);
    metrics_.count_request(metrics_endpoint(req.path), res.status);
    t_request = RequestState{};
  });

  auto route = [this](auto fn) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) {
      Handlers hs{*this};
      hs.guarded(res, [&] { fn(hs, req, res); });
    };
  };
  h.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    if (shutting_down_) {
      res.status = 503;
      res.set_content(R"({"status":"shutting down"})", "application/json");
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  h.Get("/v1/models", route([](Handlers& hs, const httplib::Request&, httplib::Response& res) { hs.models(res); }));
  h.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(queue_.size(), queue_.capacity()), "text/plain; version=0.0.4");
  });
  h.Post("/v1/completions", route([](Handlers& hs, const httplib::Request& req, httplib::Response& res) {
           hs.completion(req, res, Endpoint::Completions);
         }));
  h.Post("/v1/chat/completions", route([](Handlers& hs, const httplib::Request& req, httplib::Response& res) {
           hs.completion(req, res, Endpoint::Chat);
         }));
  h.Post("/tokenize",
         route([](Handlers& hs, const httplib::Request& req, httplib::Response& res) { hs.tokenize(req, res); }));
  h.Post("/detokenize",
         route([](Handlers& hs, const httplib::Request& req, httplib::Response& res) { hs.detokenize(req, res); }));
}

HttpServer::~HttpServer() { shutdown(std::chrono::milliseconds(0)); }

int HttpServer::bind() {
  int port = opts_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(opts_.host);
    if (port < 0) fail("cannot listen on {} (any port)", opts_.host);
  } else if (!http_->bind_to_port(opts_.host, port)) {
    fail("cannot listen on {}:{} (in use, or not an address of this machine?)", opts_.host, port);
  }
  opts_.port = port;
  widen_listen_backlog(port);
  scheduler_.start();
  return port;
}

void HttpServer::serve() { http_->listen_after_bind(); }

void HttpServer::shutdown(std::chrono::milliseconds grace) {
  shutting_down_ = true;
  scheduler_.stop(Clock::now() + grace);
  http_->stop();
}

}  // namespace quarrel::server

// quarrel serve: the OpenAI-compatible HTTP server (src/server) over one model.
//
// The KV cache is sized once, here: --ctx-size is the total number of
// positions over all slots, as in llama-server, so memory is fixed by
// --ctx-size alone whatever --parallel is; each of the --parallel slots gets
// ctx-size / parallel positions. Without --ctx-size every slot gets the
// model's training context (at most 4096).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "command.h"
#include "common/error.h"
#include "loader.h"
#include "server/http.h"

namespace quarrel::cli {
namespace {

// How long generations in flight may run on after SIGTERM before they are cut.
constexpr std::chrono::milliseconds kShutdownGrace{5000};

struct ServeOptions {
  ModelOptions model;
  server::ServerOptions server;
  int parallel = 1;
};

void serve(ServeOptions o) {
  // Signals go to one thread that waits for them; every thread started from
  // here on (backend pool, scheduler, HTTP workers) inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up is an error code on write, not a signal

  if (o.model.ctx_size > 0) {
    const int per_slot = o.model.ctx_size / o.parallel;
    if (per_slot < 8)
      fail("--ctx-size {} over --parallel {} leaves {} positions per slot; give at least 8 per slot", o.model.ctx_size,
           o.parallel, per_slot);
    o.model.ctx_size = per_slot;
  }
  // Every decoding slot puts one token in each step's batch.
  o.model.batch_size = std::max(o.model.batch_size, o.parallel);
  Loaded l = load_model(o.model, o.parallel);
  server::HttpServer srv(*l.model, *l.backend, o.server);
  const int port = srv.bind();

  const auto& bo = l.backend->options();
  fmt::print(stderr, "quarrel serve: {} on {}, {} slots x {} positions, batch {}\n", l.model->file.path(),
             l.backend->name(), bo.n_seq, bo.n_ctx, bo.n_batch);
  if (srv.chat_unavailable().empty())
    fmt::print(stderr, "quarrel serve: chat template {}\n", srv.chat_template_name());
  else
    fmt::print(stderr, "quarrel serve: warning: {}\n", srv.chat_unavailable());
  fmt::print(stderr, "quarrel serve: listening on http://{}:{}\n", o.server.host, port);
  std::fflush(stderr);

  std::atomic<bool> served{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (served) return;  // woken by serve() returning on its own
    fmt::print(stderr, "quarrel serve: {}: finishing requests in flight (up to {} ms), then exiting\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT", kShutdownGrace.count());
    srv.shutdown(kShutdownGrace);
  });
  srv.serve();
  served = true;
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  fmt::print(stderr, "quarrel serve: stopped\n");
}

CommandRegistration reg{[](CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  auto* cmd = app.add_subcommand("serve", "Serve the model over an OpenAI-compatible HTTP API");
  add_model_options(cmd, o->model);
  cmd->add_option("--host", o->server.host, "address to listen on");
  cmd->add_option("--port", o->server.port, "port to listen on (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", o->parallel, "sequences decoded together (KV slots)")->check(CLI::Range(1, 256));
  cmd->add_option("--api-key", o->server.api_key, "require 'Authorization: Bearer KEY' (all but /health)");
  cmd->add_option("--max-queue", o->server.max_queue, "requests that may wait for a slot before 503")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--timeout", o->server.timeout_s, "socket read/write timeout in seconds")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--max-body-bytes", o->server.max_body_bytes, "largest request body (413 above)")
      ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
  cmd->add_option("--chat-template", o->server.chat_template,
                  "chat template when the model's is missing or not recognised: chatml, llama2, llama3, llama3.1, "
                  "llama3.2, mistral, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, phi3, phi3-mini, "
                  "gemma, gemma3, zephyr");
  cmd->add_option("--http-threads", o->server.http_threads, "HTTP worker threads (default: slots + queue + 64)")
      ->check(CLI::Range(0, 4096));
  cmd->callback([o] { serve(*o); });
}};

}  // namespace
}  // namespace quarrel::cli

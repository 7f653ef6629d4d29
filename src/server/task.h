#pragma once
// server::Task: one admitted request as the scheduler sees it (token ids and
// checked parameters), and its output stream. The HTTP thread that made the
// task reads the stream; the scheduler thread writes it. Either side may end
// the task: the scheduler with a final event, the client side with cancel().
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace quarrel::server {

using Clock = std::chrono::steady_clock;

// One generated token's log-probability and its best alternatives (natural
// log of the model's softmax, before any sampling transform).
struct TokenLogprob {
  int32_t id = 0;
  std::string piece;  // the token's bytes; may be part of a UTF-8 character
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // (id, logprob), best first
};

enum class FinishReason { Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason r);  // "stop", "length", ...

struct TaskEvent {
  enum class Kind { Delta, Done } kind = Kind::Delta;
  // Delta: text that is final (never part of a stop string) and the
  // log-probabilities of the tokens that produced it.
  std::string text;
  std::vector<TokenLogprob> logprobs;
  // Done
  FinishReason finish = FinishReason::Stop;
  std::string error;  // FinishReason::Error
  int32_t n_prompt = 0, n_cached = 0, n_generated = 0;
  double queue_ms = 0, ttft_ms = 0, generation_ms = 0;
};

class TaskStream {
 public:
  void push(TaskEvent e);
  // Moves the waiting events into out; waits up to `timeout` when there are
  // none. Returns false when it timed out with nothing.
  bool pop_all(std::vector<TaskEvent>& out, std::chrono::milliseconds timeout);
  // The client is gone or the server is stopping: the scheduler drops the
  // task at its next step boundary.
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<TaskEvent> events_;
  std::atomic<bool> cancelled_{false};
};

struct Task {
  uint64_t id = 0;
  std::vector<int32_t> prompt;  // never empty
  int32_t max_tokens = 0;       // prompt.size() + max_tokens fits in a slot
  runtime::SamplerParams sampler;
  std::vector<std::string> stop;
  bool logprobs = false;
  int32_t top_logprobs = 0;
  // Streamed responses get output events as it is produced; others get it
  // all at once with the final event.
  bool stream_events = true;
  Clock::time_point t_enqueued = Clock::now();
  TaskStream stream;
};

}  // namespace quarrel::server

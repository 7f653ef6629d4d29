#pragma once
// server::Scheduler is the server's context: it owns the KV slots and runs
// continuous batching on one thread. Each step builds ONE batch holding the
// next token of every decoding slot plus chunks of the prompts being
// evaluated, runs it through Backend::forward, and samples each slot's next
// token. Tasks join at step boundaries, and a cancelled task (its client went
// away) leaves at the next one, so its slot is free within one step.
//
// A new task takes the idle slot whose cached tokens share the longest prefix
// with its prompt (KvCache::common_prefix), and evaluates only the rest.
//
// Batching does not change results: the CPU backend computes every batch row
// on its own, so a greedy request gives the same tokens alone or batched
// (tests/server/load.test.mjs checks it end to end).
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "model/config.h"
#include "runtime/backend.h"
#include "runtime/kv_cache.h"
#include "runtime/sampler.h"
#include "server/metrics.h"
#include "server/queue.h"
#include "server/stop_matcher.h"
#include "server/task.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::server {

struct SchedulerOptions {
  int32_t n_slots = 1;  // the backend's n_seq
  int32_t n_ctx = 0;    // positions per slot: the backend's n_ctx
  int32_t n_batch = 0;  // tokens per forward: the backend's n_batch (>= n_slots)
};

class Scheduler {
 public:
  Scheduler(runtime::Backend& backend, const model::Config& config, const tokenizer::Tokenizer& tokenizer,
            TaskQueue& queue, Metrics& metrics, SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void start();
  // Takes no more tasks (those still queued end with an error), lets running
  // ones finish until `deadline`, cancels the rest, and joins the thread.
  void stop(Clock::time_point deadline);

  const SchedulerOptions& options() const { return opts_; }

 private:
  struct Slot {
    int32_t seq = 0;
    std::shared_ptr<Task> task;  // null: idle
    bool decoding = false;       // false: the prompt is still being evaluated
    int32_t n_prompt_done = 0;   // prompt tokens in the KV cache
    int32_t n_reused = 0;        // of those, taken from the cached prefix
    int32_t chunk = 0;           // prompt tokens in this step's batch
    int32_t next_token = -1;     // decoding: the token this step feeds
    int32_t n_generated = 0;
    int32_t logits_row = -1;  // this step's row of logits_, or -1
    int64_t last_used = 0;    // step of the last finish, for least-recently-used reuse
    std::optional<runtime::Sampler> sampler;
    std::optional<tokenizer::Detokenizer> detok;
    std::optional<StopMatcher> stop;
    // Log-probabilities wait here, with the offset of their token's text,
    // until that text is released past the stop-string hold-back.
    std::deque<std::pair<size_t, TokenLogprob>> pending_logprobs;
    size_t text_total = 0, text_emitted = 0;
    TaskEvent unsent;  // released output not yet pushed to the task's stream
    Clock::time_point t_start, t_first, t_last;
  };

  void run();
  void admit();
  void assign(Slot& slot, std::shared_ptr<Task> task, int32_t common);
  bool step();  // false when no slot had work
  // token >= 0: the step's forward pass already picked it (greedy on the device).
  void sample(Slot& slot, int32_t token);
  void emit(Slot& slot, const std::string& text, bool release_all);
  void send_unsent(Slot& slot);
  // flush: the output still held back (an incomplete character, a possible
  // stop-string start) is real text; false when a stop string ended it.
  void finish(Slot& slot, FinishReason reason, bool flush, const std::string& error = {});
  TokenLogprob make_logprob(const float* logits, int32_t token, int32_t top);
  int active_slots() const;

  runtime::Backend& backend_;
  const tokenizer::Tokenizer& tok_;
  TaskQueue& queue_;
  Metrics& metrics_;
  SchedulerOptions opts_;
  const int32_t n_vocab_;

  runtime::KvCache kv_;
  std::vector<Slot> slots_;
  std::vector<runtime::BatchEntry> batch_;         // reused every step
  std::vector<float> logits_;                      // [n_slots][n_vocab]
  std::vector<int32_t> greedy_;                    // [n_slots]: tokens of an all-greedy step
  std::vector<float> logp_;                        // [n_vocab], for logprobs
  std::vector<int32_t> order_;                     // [n_vocab], for top logprobs
  std::vector<Slot*> prefill_;                     // slots evaluating their prompt, oldest task first
  std::vector<std::pair<int32_t, int32_t>> undo_;  // (seq, n_past before this step)
  int64_t step_ = 0;

  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> deadline_ns_{0};  // steady_clock, valid once stopping_
};

}  // namespace quarrel::server

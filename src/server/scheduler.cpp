#include "server/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "common/error.h"

namespace quarrel::server {

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

Scheduler::Scheduler(runtime::Backend& backend, const model::Config& config, const tokenizer::Tokenizer& tokenizer,
                     TaskQueue& queue, Metrics& metrics, SchedulerOptions options)
    : backend_(backend),
      tok_(tokenizer),
      queue_(queue),
      metrics_(metrics),
      opts_(options),
      n_vocab_(static_cast<int32_t>(config.n_vocab)),
      kv_(options.n_slots, options.n_ctx) {
  const auto& bo = backend.options();
  if (opts_.n_slots > bo.n_seq || opts_.n_ctx > bo.n_ctx || opts_.n_batch > bo.n_batch)
    fail("scheduler: {} slots of {} positions, batches of {}, do not fit the backend's {} x {} (batch {})",
         opts_.n_slots, opts_.n_ctx, opts_.n_batch, bo.n_seq, bo.n_ctx, bo.n_batch);
  if (opts_.n_batch < opts_.n_slots)
    fail("scheduler: batch {} is smaller than the {} slots", opts_.n_batch, opts_.n_slots);
  slots_.resize(opts_.n_slots);
  for (int32_t i = 0; i < opts_.n_slots; ++i) slots_[i].seq = i;
  batch_.reserve(opts_.n_batch);
  logits_.resize(static_cast<size_t>(opts_.n_slots) * n_vocab_);
  greedy_.resize(opts_.n_slots);
  logp_.resize(n_vocab_);
  order_.resize(n_vocab_);
  metrics_.set_active_slots(0, opts_.n_slots);
}

Scheduler::~Scheduler() { stop(Clock::now()); }

void Scheduler::start() {
  thread_ = std::thread([this] { run(); });
}

void Scheduler::stop(Clock::time_point deadline) {
  if (!stopping_.exchange(true)) {
    deadline_ns_.store(deadline.time_since_epoch().count());
    for (auto& t : queue_.close()) {
      TaskEvent done;
      done.kind = TaskEvent::Kind::Done;
      done.finish = FinishReason::Error;
      done.error = "the server is shutting down";
      t->stream.push(std::move(done));
    }
  }
  if (thread_.joinable()) thread_.join();
}

int Scheduler::active_slots() const {
  int n = 0;
  for (const auto& s : slots_) n += s.task != nullptr;
  return n;
}

void Scheduler::run() {
  for (;;) {
    const bool stopping = stopping_.load();
    const bool past_deadline = stopping && Clock::now().time_since_epoch().count() >= deadline_ns_.load();
    for (auto& s : slots_) {
      if (!s.task) continue;
      if (s.task->stream.cancelled())
        finish(s, FinishReason::Cancelled, false);
      else if (past_deadline)
        finish(s, FinishReason::Error, false, "the server is shutting down");
    }
    if (!stopping) admit();
    bool worked = false;
    try {
      worked = step();
    } catch (const std::exception& e) {
      // A bug, not bad input (requests are checked before they queue): fail
      // the tasks in flight and keep serving.
      std::fprintf(stderr, "quarrel serve: step failed: %s\n", e.what());
      for (auto& s : slots_)
        if (s.task) finish(s, FinishReason::Error, false, e.what());
    }
    metrics_.set_active_slots(active_slots(), opts_.n_slots);
    if (!worked) {
      if (stopping) return;
      queue_.wait(std::chrono::milliseconds(100));
    }
  }
}

void Scheduler::admit() {
  for (;;) {
    auto idle = std::find_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.task; });
    if (idle == slots_.end()) return;
    std::shared_ptr<Task> task = queue_.try_pop();
    if (!task) return;
    if (task->stream.cancelled()) {
      metrics_.count_cancelled();
      continue;
    }
    // The idle slot with the longest cached prefix of this prompt; among
    // equals the least recently used, to keep the others' caches longer.
    Slot* best = nullptr;
    int32_t best_common = -1;
    for (auto& s : slots_) {
      if (s.task) continue;
      const int32_t common = kv_.common_prefix(s.seq, task->prompt);
      if (common > best_common || (common == best_common && s.last_used < best->last_used)) {
        best = &s;
        best_common = common;
      }
    }
    assign(*best, std::move(task), best_common);
  }
}

void Scheduler::assign(Slot& s, std::shared_ptr<Task> task, int32_t common) {
  // Keep at least the last prompt token to evaluate: its logits start the reply.
  const int32_t n_keep = std::min(common, static_cast<int32_t>(task->prompt.size()) - 1);
  kv_.apply({.kind = runtime::KvCache::Op::Kind::Truncate, .seq = s.seq, .n_keep = n_keep});
  s.decoding = false;
  s.n_prompt_done = n_keep;
  s.n_reused = n_keep;
  s.chunk = 0;
  s.next_token = -1;
  s.n_generated = 0;
  s.logits_row = -1;
  s.sampler.emplace(task->sampler, n_vocab_);
  for (int32_t t : task->prompt) s.sampler->accept(t);
  s.detok.emplace(tok_);
  s.stop.emplace(task->stop);
  s.pending_logprobs.clear();
  s.unsent = TaskEvent{};
  s.text_total = s.text_emitted = 0;
  s.t_start = s.t_last = Clock::now();
  s.t_first = {};
  s.task = std::move(task);
}

bool Scheduler::step() {
  batch_.clear();
  int32_t rows = 0;
  for (auto& s : slots_) {
    s.logits_row = -1;
    s.chunk = 0;
    if (!s.task || !s.decoding) continue;
    batch_.push_back({s.next_token, kv_.n_past(s.seq), s.seq, true});
    s.logits_row = rows++;
  }
  // Prompts fill the rest of the batch, oldest task first, so a long prompt
  // is evaluated in chunks between the decoding steps of the others.
  prefill_.clear();
  for (auto& s : slots_)
    if (s.task && !s.decoding) prefill_.push_back(&s);
  std::sort(prefill_.begin(), prefill_.end(), [](const Slot* a, const Slot* b) { return a->task->id < b->task->id; });
  int32_t budget = opts_.n_batch - static_cast<int32_t>(batch_.size());
  for (Slot* s : prefill_) {
    const auto& prompt = s->task->prompt;
    const int32_t left = static_cast<int32_t>(prompt.size()) - s->n_prompt_done;
    s->chunk = std::min(budget, left);
    for (int32_t i = 0; i < s->chunk; ++i) {
      const int32_t pos = s->n_prompt_done + i;
      const bool last = pos + 1 == static_cast<int32_t>(prompt.size());
      batch_.push_back({prompt[pos], pos, s->seq, last});
      if (last) s->logits_row = rows++;
    }
    budget -= s->chunk;
  }
  if (batch_.empty()) return false;

  // The cache bookkeeping moves first, as Session::eval does, and is undone
  // if the forward pass fails.
  undo_.clear();
  for (auto& s : slots_) {
    if (!s.task || (!s.decoding && s.chunk == 0)) continue;
    undo_.emplace_back(s.seq, kv_.n_past(s.seq));
    std::span<const int32_t> toks = s.decoding
                                        ? std::span<const int32_t>(&s.next_token, 1)
                                        : std::span<const int32_t>(s.task->prompt).subspan(s.n_prompt_done, s.chunk);
    kv_.apply({.kind = runtime::KvCache::Op::Kind::Append, .seq = s.seq, .tokens = toks});
  }
  // When every row that wants logits is plain greedy without log-probabilities,
  // the backend may pick the tokens itself (on the GPU: no logits copied back).
  bool all_greedy = rows > 0;
  for (const auto& s : slots_)
    if (s.logits_row >= 0) all_greedy = all_greedy && s.sampler->plain_greedy() && !s.task->logprobs;
  const auto t_forward = Clock::now();
  try {
    if (all_greedy) {
      backend_.forward_greedy(batch_, logits_.data(), greedy_.data());
    } else {
      backend_.forward(batch_, logits_.data());
    }
  } catch (...) {
    for (auto [seq, n] : undo_) kv_.apply({.kind = runtime::KvCache::Op::Kind::Truncate, .seq = seq, .n_keep = n});
    throw;
  }
  ++step_;
  metrics_.observe_batch(static_cast<int64_t>(batch_.size()), ms_between(t_forward, Clock::now()) / 1e3);

  int64_t prompt_tokens = 0;
  for (auto& s : slots_) {
    if (!s.task) continue;
    if (!s.decoding) {
      s.n_prompt_done += s.chunk;
      prompt_tokens += s.chunk;
      if (s.n_prompt_done == static_cast<int32_t>(s.task->prompt.size())) {
        metrics_.add_prompt_tokens(0, s.n_reused);
        s.decoding = true;
      }
    }
    if (s.logits_row >= 0) sample(s, all_greedy ? greedy_[s.logits_row] : -1);
  }
  metrics_.add_prompt_tokens(prompt_tokens, 0);
  return true;
}

TokenLogprob Scheduler::make_logprob(const float* logits, int32_t token, int32_t top) {
  runtime::log_softmax(logits, n_vocab_, logp_.data());
  TokenLogprob lp;
  lp.id = token;
  lp.piece = tok_.token_to_piece(token);
  lp.logprob = logp_[token];
  if (top > 0) {
    const int32_t k = std::min(top, n_vocab_);
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(),
                      [&](int32_t a, int32_t b) { return logp_[a] > logp_[b] || (logp_[a] == logp_[b] && a < b); });
    for (int32_t i = 0; i < k; ++i) lp.top.emplace_back(order_[i], logp_[order_[i]]);
  }
  return lp;
}

void Scheduler::sample(Slot& s, int32_t token) {
  Task& task = *s.task;
  const float* logits = logits_.data() + static_cast<size_t>(s.logits_row) * n_vocab_;
  if (token < 0) token = s.sampler->sample(logits);
  s.sampler->accept(token);
  ++s.n_generated;
  metrics_.add_generated_tokens(1);
  const auto now = Clock::now();
  if (s.n_generated == 1) {
    s.t_first = now;
    metrics_.observe_time_to_first_token(ms_between(task.t_enqueued, now) / 1e3);
  } else {
    metrics_.observe_token_latency(ms_between(s.t_last, now) / 1e3);
  }
  s.t_last = now;

  if (tok_.is_eog(token)) {
    finish(s, FinishReason::Stop, /*flush=*/true);
    return;
  }
  std::string piece = s.detok->push(token);
  if (task.logprobs) s.pending_logprobs.emplace_back(s.text_total, make_logprob(logits, token, task.top_logprobs));
  s.text_total += piece.size();
  StopMatcher::Result r = s.stop->push(piece);
  emit(s, r.text, /*release_all=*/false);
  if (r.stopped) {
    finish(s, FinishReason::Stop, /*flush=*/false);
    return;
  }
  // The sampled token still needs a position in the next step.
  if (s.n_generated >= task.max_tokens || kv_.n_past(s.seq) >= opts_.n_ctx) {
    finish(s, FinishReason::Length, /*flush=*/true);
    return;
  }
  s.next_token = token;
}

void Scheduler::emit(Slot& s, const std::string& text, bool release_all) {
  TaskEvent& ev = s.unsent;
  ev.text += text;
  s.text_emitted += text.size();
  while (!s.pending_logprobs.empty() && (release_all || s.pending_logprobs.front().first < s.text_emitted)) {
    ev.logprobs.push_back(std::move(s.pending_logprobs.front().second));
    s.pending_logprobs.pop_front();
  }
  // A whole-response request is sent once, at the end: waking its HTTP
  // thread for every token would only take CPU from the batch.
  if (s.task->stream_events && (!ev.text.empty() || !ev.logprobs.empty())) send_unsent(s);
}

void Scheduler::send_unsent(Slot& s) {
  s.task->stream.push(std::move(s.unsent));
  s.unsent = TaskEvent{};
}

void Scheduler::finish(Slot& s, FinishReason reason, bool flush, const std::string& error) {
  const auto now = Clock::now();
  if (flush) {
    // What the detokenizer and the stop matcher still hold is output, unless
    // it completes a stop string.
    StopMatcher::Result r = s.stop->push(s.detok->flush());
    if (r.stopped) {
      reason = FinishReason::Stop;
      emit(s, r.text, false);
    } else {
      emit(s, r.text + s.stop->flush(), true);
    }
  }
  if (reason == FinishReason::Cancelled) metrics_.count_cancelled();
  TaskEvent done;
  done.kind = TaskEvent::Kind::Done;
  done.finish = reason;
  done.error = error;
  done.n_prompt = static_cast<int32_t>(s.task->prompt.size());
  done.n_cached = s.n_reused;
  done.n_generated = s.n_generated;
  done.queue_ms = ms_between(s.task->t_enqueued, s.t_start);
  done.ttft_ms = s.n_generated > 0 ? ms_between(s.task->t_enqueued, s.t_first) : 0;
  done.generation_ms = ms_between(s.t_start, now);
  if (!s.unsent.text.empty() || !s.unsent.logprobs.empty()) send_unsent(s);
  s.task->stream.push(std::move(done));
  // The slot keeps its cached tokens for the next prompt that shares them.
  s.task.reset();
  s.decoding = false;
  s.sampler.reset();
  s.detok.reset();
  s.stop.reset();
  s.pending_logprobs.clear();
  s.last_used = ++step_;
}

}  // namespace quarrel::server

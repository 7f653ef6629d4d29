#include "server/metrics.h"

#include <fmt/format.h>

namespace quarrel::server {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  ++count_;
  sum_ += v;
}

void Histogram::write(std::string& out, std::string_view name, std::string_view help) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, count_, name, sum_, name, count_);
}

Metrics::Metrics()
    : ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      token_latency_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      batch_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}),
      forward_({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void Metrics::count_request(std::string_view endpoint, int status) {
  std::lock_guard lock(mutex_);
  ++requests_[{std::string(endpoint), status}];
}

void Metrics::count_cancelled() {
  std::lock_guard lock(mutex_);
  ++cancelled_;
}

void Metrics::add_prompt_tokens(int64_t evaluated, int64_t reused) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += evaluated;
  prompt_tokens_reused_ += reused;
}

void Metrics::add_generated_tokens(int64_t n) {
  std::lock_guard lock(mutex_);
  generated_tokens_ += n;
}

void Metrics::observe_time_to_first_token(double seconds) {
  std::lock_guard lock(mutex_);
  ttft_.observe(seconds);
}

void Metrics::observe_token_latency(double seconds) {
  std::lock_guard lock(mutex_);
  token_latency_.observe(seconds);
}

void Metrics::observe_batch(int64_t tokens, double seconds) {
  std::lock_guard lock(mutex_);
  batch_.observe(static_cast<double>(tokens));
  forward_.observe(seconds);
}

void Metrics::set_active_slots(int active, int total) {
  std::lock_guard lock(mutex_);
  active_slots_ = active;
  total_slots_ = total;
}

std::string Metrics::render(size_t queue_depth, size_t queue_capacity) const {
  std::lock_guard lock(mutex_);
  std::string out;
  auto scalar = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, value);
  };
  out += "# HELP quarrel_requests_total Requests answered, by endpoint and HTTP status.\n";
  out += "# TYPE quarrel_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += fmt::format("quarrel_requests_total{{endpoint=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  scalar("quarrel_requests_cancelled_total", "counter", "Generations stopped because the client went away.",
         cancelled_);
  scalar("quarrel_prompt_tokens_total", "counter", "Prompt tokens evaluated.", prompt_tokens_);
  scalar("quarrel_prompt_tokens_reused_total", "counter", "Prompt tokens served from a slot's cached prefix.",
         prompt_tokens_reused_);
  scalar("quarrel_generated_tokens_total", "counter", "Tokens generated.", generated_tokens_);
  scalar("quarrel_queue_depth", "gauge", "Requests waiting for a slot.", queue_depth);
  scalar("quarrel_queue_capacity", "gauge", "Requests that may wait before the server answers 503.", queue_capacity);
  scalar("quarrel_slots_active", "gauge", "Slots generating or evaluating a prompt.", active_slots_);
  scalar("quarrel_slots_total", "gauge", "Slots (--parallel).", total_slots_);
  ttft_.write(out, "quarrel_time_to_first_token_seconds", "From arrival to the first generated token.");
  token_latency_.write(out, "quarrel_token_latency_seconds", "Between consecutive tokens of one request.");
  batch_.write(out, "quarrel_batch_tokens", "Tokens per forward pass.");
  forward_.write(out, "quarrel_forward_seconds", "Time of one forward pass (the rest of a step is the server's).");
  return out;
}

}  // namespace quarrel::server

#pragma once
// server::Metrics: counters, gauges and histograms for GET /metrics, written
// in the Prometheus text format (version 0.0.4). Updates take one mutex; they
// happen a few hundred times a second at most, far from contention.
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quarrel::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  void write(std::string& out, std::string_view name, std::string_view help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Metrics {
 public:
  Metrics();

  void count_request(std::string_view endpoint, int status);
  void count_cancelled();
  void add_prompt_tokens(int64_t evaluated, int64_t reused);
  void add_generated_tokens(int64_t n);
  void observe_time_to_first_token(double seconds);
  void observe_token_latency(double seconds);          // between two tokens of one request
  void observe_batch(int64_t tokens, double seconds);  // one forward pass: its tokens and its time
  void set_active_slots(int active, int total);

  std::string render(size_t queue_depth, size_t queue_capacity) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;  // (endpoint, status)
  uint64_t cancelled_ = 0;
  int64_t prompt_tokens_ = 0, prompt_tokens_reused_ = 0, generated_tokens_ = 0;
  int active_slots_ = 0, total_slots_ = 0;
  Histogram ttft_, token_latency_, batch_, forward_;
};

}  // namespace quarrel::server

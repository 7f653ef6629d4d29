#pragma once
// A persistent pool of worker threads. run() executes one function on every
// thread (the caller is thread 0) and returns when all are done; inside it,
// barrier() separates the stages of a forward pass. Waiting spins briefly,
// then sleeps on a futex (std::atomic::wait), so an oversubscribed machine
// does not burn its cores.
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace quarrel::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Calls fn(ith, nth) on every thread; returns when every call has returned.
  void run(const std::function<void(int ith, int nth)>& fn);
  // All threads inside run() wait here until each has arrived.
  void barrier();
  // Total time threads have spent waiting in barrier() and for run() to
  // finish (summed over threads), for measuring synchronisation cost.
  double wait_seconds() const { return static_cast<double>(wait_ns_.load(std::memory_order_relaxed)) * 1e-9; }

 private:
  void worker(int ith);
  static void wait_while_equal(const std::atomic<uint32_t>& a, uint32_t v);

  int n_threads_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint32_t> job_gen_{0};
  std::atomic<int> job_pending_{0};
  std::atomic<uint32_t> done_gen_{0};
  std::atomic<int> barrier_count_{0};
  std::atomic<uint32_t> barrier_gen_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> wait_ns_{0};
};

// Splits [0, n) into nth near-equal ranges; returns thread ith's [begin, end).
inline std::pair<int64_t, int64_t> split_range(int64_t n, int ith, int nth) {
  int64_t per = n / nth, extra = n % nth;
  int64_t begin = ith * per + std::min<int64_t>(ith, extra);
  return {begin, begin + per + (ith < extra ? 1 : 0)};
}

}  // namespace quarrel::cpu

#include "cpu/thread_pool.h"

#include <chrono>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace quarrel::cpu {

namespace {
inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
// Spin about 50 µs before sleeping (a pause is 10-140 cycles depending on
// the core; 15 ns measured on this Xeon): long enough to cover the wait at a
// decode barrier, short enough not to hold a core that an oversubscribed
// machine needs for the thread being waited on.
constexpr int kSpinIterations = 4000;
}  // namespace

void ThreadPool::wait_while_equal(const std::atomic<uint32_t>& a, uint32_t v) {
  for (int i = 0; i < kSpinIterations; ++i) {
    if (a.load(std::memory_order_acquire) != v) return;
    cpu_relax();
  }
  while (a.load(std::memory_order_acquire) == v) a.wait(v, std::memory_order_acquire);
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  job_gen_.fetch_add(1, std::memory_order_release);
  job_gen_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::worker(int ith) {
  uint32_t seen = 0;
  for (;;) {
    wait_while_equal(job_gen_, seen);
    seen = job_gen_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    (*job_)(ith, n_threads_);
    if (job_pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      done_gen_.fetch_add(1, std::memory_order_release);
      done_gen_.notify_all();
    }
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  uint32_t done = done_gen_.load(std::memory_order_acquire);
  job_pending_.store(n_threads_ - 1, std::memory_order_release);
  job_gen_.fetch_add(1, std::memory_order_release);
  job_gen_.notify_all();
  fn(0, n_threads_);
  const auto t0 = std::chrono::steady_clock::now();
  wait_while_equal(done_gen_, done);
  wait_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
                     std::memory_order_relaxed);
}

void ThreadPool::barrier() {
  if (n_threads_ == 1) return;
  uint32_t gen = barrier_gen_.load(std::memory_order_acquire);
  if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
    barrier_count_.store(0, std::memory_order_relaxed);
    barrier_gen_.fetch_add(1, std::memory_order_release);
    barrier_gen_.notify_all();
    return;
  }
  // Timing costs two clock reads (~40 ns) per wait, well under the wait itself.
  const auto t0 = std::chrono::steady_clock::now();
  wait_while_equal(barrier_gen_, gen);
  wait_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count(),
                     std::memory_order_relaxed);
}

}  // namespace quarrel::cpu


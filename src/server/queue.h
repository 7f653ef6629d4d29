#pragma once
// server::TaskQueue: the requests waiting for a slot, bounded so that a flood
// of clients gets a fast 503 (with Retry-After) instead of an ever longer
// wait. The scheduler takes tasks only when it has a free slot, so the depth
// is exactly the number of clients waiting.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "server/task.h"

namespace quarrel::server {

class TaskQueue {
 public:
  explicit TaskQueue(size_t capacity) : capacity_(capacity) {}

  // False when the queue is full or closed.
  bool try_push(std::shared_ptr<Task> task);
  // The oldest waiting task, or nullptr.
  std::shared_ptr<Task> try_pop();
  // Waits until a task is pushed, the queue is closed, or the timeout.
  void wait(std::chrono::milliseconds timeout);
  // Refuses new tasks from now on and returns those still waiting.
  std::vector<std::shared_ptr<Task>> close();

  size_t size() const;
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Task>> tasks_;
  bool closed_ = false;
};

}  // namespace quarrel::server

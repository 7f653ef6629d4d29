#include "server/queue.h"

namespace quarrel::server {

bool TaskQueue::try_push(std::shared_ptr<Task> task) {
  {
    std::lock_guard lock(mutex_);
    if (closed_ || tasks_.size() >= capacity_) return false;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

std::shared_ptr<Task> TaskQueue::try_pop() {
  std::lock_guard lock(mutex_);
  if (tasks_.empty()) return nullptr;
  auto t = std::move(tasks_.front());
  tasks_.pop_front();
  return t;
}

void TaskQueue::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [&] { return closed_ || !tasks_.empty(); });
}

std::vector<std::shared_ptr<Task>> TaskQueue::close() {
  std::vector<std::shared_ptr<Task>> left;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    left.assign(std::make_move_iterator(tasks_.begin()), std::make_move_iterator(tasks_.end()));
    tasks_.clear();
  }
  cv_.notify_all();
  return left;
}

size_t TaskQueue::size() const {
  std::lock_guard lock(mutex_);
  return tasks_.size();
}

}  // namespace quarrel::server

#include "server/task.h"

namespace quarrel::server {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Cancelled:
      return "cancelled";
    case FinishReason::Error:
      return "error";
  }
  return "error";
}

void TaskStream::push(TaskEvent e) {
  {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(e));
  }
  cv_.notify_one();
}

bool TaskStream::pop_all(std::vector<TaskEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (events_.empty() && !cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  while (!events_.empty()) {
    out.push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return true;
}

}  // namespace quarrel::server

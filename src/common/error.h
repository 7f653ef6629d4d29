#pragma once
// quarrel::Error is the one exception type the library throws for bad input:
// a malformed file, an invalid argument, a request out of range. Its message
// names the thing and the reason; callers add context as it travels up.
#include <stdexcept>
#include <string>

namespace quarrel {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] inline void fail_message(const std::string& message) { throw Error(message); }

}  // namespace quarrel

// nvcc cannot evaluate fmt's compile-time format checks, so CUDA files use
// fail_message() and the rest of the code uses fail().
#if !defined(__CUDACC__)
#include <fmt/format.h>

namespace quarrel {

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace quarrel
#endif

namespace quarrel {

// Runs fn; if it throws quarrel::Error, rethrows with "context: " in front.
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

}  // namespace quarrel

#include "server/stop_matcher.h"

#include <algorithm>

namespace quarrel::server {

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops) {
    if (s.empty()) continue;  // an empty stop string would end every generation at once
    Automaton a;
    a.pattern = std::move(s);
    a.fail.assign(a.pattern.size() + 1, 0);
    for (size_t i = 1, k = 0; i < a.pattern.size(); ++i) {
      while (k > 0 && a.pattern[i] != a.pattern[k]) k = a.fail[k];
      if (a.pattern[i] == a.pattern[k]) ++k;
      a.fail[i + 1] = static_cast<uint32_t>(k);
    }
    stops_.push_back(std::move(a));
  }
}

StopMatcher::Result StopMatcher::push(std::string_view text) {
  Result r;
  const size_t base = held_.size();  // offset of text within held_ + text
  held_.append(text);
  // Of the stop strings that complete inside this piece, the one that starts
  // first wins, as llama.cpp decides per token.
  size_t best_start = std::string::npos;
  for (auto& a : stops_) {
    uint32_t st = a.state;
    for (size_t i = 0; i < text.size(); ++i) {
      while (st > 0 && text[i] != a.pattern[st]) st = a.fail[st];
      if (text[i] == a.pattern[st]) ++st;
      if (st == a.pattern.size()) {
        best_start = std::min(best_start, base + i + 1 - a.pattern.size());
        st = a.fail[st];
        break;  // the first completion of this pattern is the earliest
      }
    }
    a.state = st;
  }
  if (best_start != std::string::npos) {
    r.text = held_.substr(0, best_start);
    r.stopped = true;
    held_.clear();
    return r;
  }
  // Hold back the longest tail that is a prefix of some stop string.
  uint32_t keep = 0;
  for (const auto& a : stops_) keep = std::max(keep, a.state);
  const size_t emit = held_.size() - std::min<size_t>(keep, held_.size());
  r.text = held_.substr(0, emit);
  held_.erase(0, emit);
  return r;
}

std::string StopMatcher::flush() {
  std::string out = std::move(held_);
  held_.clear();
  for (auto& a : stops_) a.state = 0;
  return out;
}

}  // namespace quarrel::server

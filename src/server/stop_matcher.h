#pragma once
// server::StopMatcher finds stop strings in generated text as it streams out,
// across token boundaries, and makes sure no part of a stop string is ever
// emitted: text that could be the start of one is held back until the next
// token decides. One KMP automaton per stop string keeps each byte O(stops).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace quarrel::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // final text, safe to emit
    bool stopped = false;  // a stop string ended in this push; text ends where it starts
  };
  // Feeds the next piece of generated text (complete UTF-8 characters).
  Result push(std::string_view text);
  // Generation ended for another reason: the held-back text is real output.
  std::string flush();

 private:
  struct Automaton {
    std::string pattern;
    std::vector<uint32_t> fail;  // KMP failure function
    uint32_t state = 0;          // longest prefix of pattern that ends the text so far
  };
  std::vector<Automaton> stops_;
  std::string held_;  // not yet emitted: the end of the text that may begin a stop string
};

}  // namespace quarrel::server

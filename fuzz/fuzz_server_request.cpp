// libFuzzer target over the server's request side: the JSON request parser
// and validator (all three bodies), chat template detection and rendering,
// and the stop-string matcher. Bad input may only ever raise
// quarrel::Error (ApiError is one); anything else — another exception, a
// sanitizer report, a broken invariant — is a finding.
//
// The first byte picks what the rest of the input is.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "server/request.h"
#include "server/stop_matcher.h"
#include "tokenizer/chat_template.h"

namespace {

using namespace quarrel;

void render_everywhere(const std::vector<tokenizer::ChatMessage>& messages) {
  tokenizer::ChatRenderOptions o{
      .bos_token = "<s>", .eos_token = "</s>", .add_generation_prompt = true, .date = "01 Jan 2025"};
  for (std::string_view name : tokenizer::ChatTemplate::names()) {
    try {
      std::string out = tokenizer::ChatTemplate::from_name(name).render(messages, o);
      // Every template copies each message's content, so the output is never
      // shorter than the longest stripped content.
      for (const auto& m : messages)
        if ((m.role == "user" || m.role == "assistant") && out.size() < tokenizer::py_strip(m.content).size())
          __builtin_trap();
    } catch (const Error&) {
    }
  }
}

void parse_request(std::string_view body, server::Endpoint endpoint) {
  try {
    server::CompletionRequest r = server::parse_completion_request(body, endpoint);
    if (r.top_logprobs < 0 || r.top_logprobs > server::kMaxTopLogprobs) __builtin_trap();
    if (r.max_tokens && (*r.max_tokens < 1 || *r.max_tokens > server::kMaxTokensLimit)) __builtin_trap();
    if (r.stop.size() > server::kMaxStopStrings) __builtin_trap();
    runtime::validate(r.sampler);  // the parser's ranges sit inside the sampler's
    if (endpoint == server::Endpoint::Chat) render_everywhere(r.messages);
  } catch (const Error&) {
  }
}

// Splits the input at '\x01' into stop strings and, after a '\x02', text
// pieces; checks that no stop string is ever emitted and that the output is
// a prefix of the text.
void match_stops(std::string_view data) {
  std::vector<std::string> stops, pieces;
  bool in_text = false;
  std::string cur;
  for (char c : data) {
    if (c == '\x01' || c == '\x02') {
      (in_text ? pieces : stops).push_back(cur);
      cur.clear();
      if (c == '\x02') in_text = true;
    } else {
      cur += c;
    }
  }
  (in_text ? pieces : stops).push_back(cur);
  server::StopMatcher m(stops);
  std::string text, out;
  bool stopped = false;
  for (const auto& p : pieces) {
    text += p;
    auto r = m.push(p);
    out += r.text;
    if (r.stopped) {
      stopped = true;
      break;
    }
  }
  if (!stopped) out += m.flush();
  if (text.compare(0, out.size(), out) != 0) __builtin_trap();
  if (!stopped && out != text) __builtin_trap();
  for (const auto& s : stops)
    if (!s.empty() && out.find(s) != std::string::npos) __builtin_trap();
  if (stopped) {
    // The text right after the output starts with one of the stop strings.
    bool found = false;
    for (const auto& s : stops)
      if (!s.empty() && text.compare(out.size(), s.size(), s) == 0) found = true;
    if (!found) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 6) {
    case 0:
      parse_request(rest, server::Endpoint::Completions);
      break;
    case 1:
      parse_request(rest, server::Endpoint::Chat);
      break;
    case 2:
      try {
        server::parse_tokenize_request(rest);
      } catch (const Error&) {
      }
      try {
        server::parse_detokenize_request(rest);
      } catch (const Error&) {
      }
      break;
    case 3:
      try {
        auto t = tokenizer::ChatTemplate::detect(rest);
        std::vector<tokenizer::ChatMessage> conv = {
            {"system", " S "}, {"user", "Q"}, {"assistant", "A"}, {"user", "R"}};
        t.render(conv, {.bos_token = "<s>", .eos_token = "</s>"});
      } catch (const Error&) {
      }
      break;
    case 4:
      match_stops(rest);
      break;
    case 5: {
      // Role/content pairs straight into every renderer, bypassing JSON.
      std::vector<tokenizer::ChatMessage> msgs;
      static const char* roles[] = {"system", "user", "assistant", "other"};
      size_t i = 0;
      while (i < rest.size() && msgs.size() < 16) {
        const unsigned char b = static_cast<unsigned char>(rest[i++]);
        const size_t len = std::min<size_t>(b >> 2, rest.size() - i);
        msgs.push_back({roles[b & 3], std::string(rest.substr(i, len))});
        i += len;
      }
      render_everywhere(msgs);
      (void)tokenizer::py_strip(rest);
      break;
    }
  }
  return 0;
}

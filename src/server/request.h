#pragma once
// Parsing and validating request bodies. Every function here takes untrusted
// bytes and either returns a checked value or throws ApiError (400) naming
// the field; none of them needs the model, so the fuzz target covers them
// whole. Semantics (see docs/SERVER.md):
// - unknown fields are ignored, as OpenAI's clients expect of a server that
//   implements a subset; null means "not given";
// - n (and best_of) other than 1 is a 400: one request makes one choice;
// - fields the server cannot honour (echo, suffix, logit_bias, tools,
//   response_format other than text) are a 400 rather than silently ignored.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"
#include "tokenizer/chat_template.h"

namespace quarrel::server {

enum class Endpoint { Completions, Chat };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;  // echoed back; the server serves one model whatever it is called
  // /v1/completions: the prompt as text, or as token ids.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_tokens;
  // /v1/chat/completions
  std::vector<tokenizer::ChatMessage> messages;

  std::optional<int32_t> max_tokens;  // absent: until the context is full
  runtime::SamplerParams sampler;     // OpenAI defaults: temperature 1, top_p 1, no top-k or min-p
  bool seeded = false;                // sampler.seed was given
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
  int32_t top_logprobs = 0;  // alternatives per token (completions: the logprobs number)
};

constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 1024;
constexpr int32_t kMaxTopLogprobs = 20;
constexpr int32_t kMaxTokensLimit = 1 << 20;

CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint);

// POST /tokenize {"content": str, "add_special": bool, "with_pieces": bool}
struct TokenizeRequest {
  std::string content;
  bool add_special = false;
  bool with_pieces = false;
};
TokenizeRequest parse_tokenize_request(std::string_view body);

// POST /detokenize {"tokens": [int]}
std::vector<int32_t> parse_detokenize_request(std::string_view body);

}  // namespace quarrel::server

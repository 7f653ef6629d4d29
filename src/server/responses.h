#pragma once
// The OpenAI response shapes: completion and chat completion objects, their
// streaming chunks, usage, and logprobs in each endpoint's own shape:
//   completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
//   chat:        {"content": [{"token", "logprob", "bytes", "top_logprobs"}], "refusal"}
// Log-probabilities are natural logs of the model's softmax before sampling
// transforms; text_offset counts bytes from the start of the completion.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "server/request.h"
#include "server/task.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::server {

// What every response object of one request shares.
struct ResponseContext {
  Endpoint endpoint = Endpoint::Completions;
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
  bool logprobs = false;
  bool include_usage = false;
};

class ResponseWriter {
 public:
  ResponseWriter(const tokenizer::Tokenizer& tokenizer, ResponseContext context)
      : tok_(tokenizer), ctx_(std::move(context)) {}
  const ResponseContext& context() const { return ctx_; }

  // The whole response of a non-streaming request.
  std::string completion(const std::string& text, const std::vector<TokenLogprob>& logprobs, const TaskEvent& done);

  // Streaming: one "data: {...}\n\n" event each.
  std::string chunk_role();  // chat only: the first chunk, delta {"role": "assistant"}
  std::string chunk_delta(const std::string& text, const std::vector<TokenLogprob>& logprobs);
  std::string chunk_finish(const TaskEvent& done);  // finish_reason, then usage when asked for
  static std::string sse_done() { return "data: [DONE]\n\n"; }
  static std::string sse_error(int status, const std::string& message);

 private:
  nlohmann::json base(const char* object) const;
  nlohmann::json logprobs_json(const std::vector<TokenLogprob>& lps);
  nlohmann::json usage(const TaskEvent& done) const;
  static std::string sse(const nlohmann::json& j);

  const tokenizer::Tokenizer& tok_;
  ResponseContext ctx_;
  size_t text_offset_ = 0;  // completions logprobs: bytes of completion text so far
};

// "stop" or "length" for a finished generation.
const char* openai_finish_reason(FinishReason r);

// Serialises without ever throwing on invalid UTF-8 (token pieces may hold
// part of a character): such bytes become U+FFFD.
std::string dump_json(const nlohmann::json& j);

}  // namespace quarrel::server

#include "server/responses.h"

#include "server/api_error.h"

namespace quarrel::server {

using nlohmann::json;

const char* openai_finish_reason(FinishReason r) { return r == FinishReason::Length ? "length" : "stop"; }

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string ResponseWriter::sse(const json& j) { return "data: " + dump_json(j) + "\n\n"; }

std::string ResponseWriter::sse_error(int status, const std::string& message) {
  return "data: " + error_body(status, message) + "\n\n";
}

json ResponseWriter::base(const char* object) const {
  return json{{"id", ctx_.id},
              {"object", object},
              {"created", ctx_.created},
              {"model", ctx_.model},
              {"system_fingerprint", "quarrel"}};
}

json ResponseWriter::usage(const TaskEvent& done) const {
  return json{{"prompt_tokens", done.n_prompt},
              {"completion_tokens", done.n_generated},
              {"total_tokens", done.n_prompt + done.n_generated},
              {"prompt_tokens_details", {{"cached_tokens", done.n_cached}}}};
}

json ResponseWriter::logprobs_json(const std::vector<TokenLogprob>& lps) {
  if (ctx_.endpoint == Endpoint::Completions) {
    json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
    for (const auto& lp : lps) {
      tokens.push_back(lp.piece);
      token_logprobs.push_back(lp.logprob);
      json alt = json::object();
      for (auto [id, v] : lp.top) alt[tok_.token_to_piece(id)] = v;
      top.push_back(std::move(alt));
      offsets.push_back(text_offset_);
      text_offset_ += lp.piece.size();
    }
    return json{
        {"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
  }
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  json content = json::array();
  for (const auto& lp : lps) {
    json alt = json::array();
    for (auto [id, v] : lp.top) {
      const std::string piece = tok_.token_to_piece(id);
      alt.push_back({{"token", piece}, {"logprob", v}, {"bytes", bytes(piece)}});
    }
    content.push_back(
        {{"token", lp.piece}, {"logprob", lp.logprob}, {"bytes", bytes(lp.piece)}, {"top_logprobs", alt}});
  }
  return json{{"content", content}, {"refusal", nullptr}};
}

std::string ResponseWriter::completion(const std::string& text, const std::vector<TokenLogprob>& logprobs,
                                       const TaskEvent& done) {
  const bool chat = ctx_.endpoint == Endpoint::Chat;
  json r = base(chat ? "chat.completion" : "text_completion");
  json choice = {{"index", 0}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = ctx_.logprobs ? logprobs_json(logprobs) : json(nullptr);
  choice["finish_reason"] = openai_finish_reason(done.finish);
  r["choices"] = json::array({choice});
  r["usage"] = usage(done);
  return dump_json(r);
}

std::string ResponseWriter::chunk_role() {
  json r = base("chat.completion.chunk");
  r["choices"] = json::array({{{"index", 0},
                               {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr},
                               {"finish_reason", nullptr}}});
  if (ctx_.include_usage) r["usage"] = nullptr;
  return sse(r);
}

std::string ResponseWriter::chunk_delta(const std::string& text, const std::vector<TokenLogprob>& logprobs) {
  const bool chat = ctx_.endpoint == Endpoint::Chat;
  json r = base(chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", 0}};
  if (chat) {
    choice["delta"] = {{"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = ctx_.logprobs ? logprobs_json(logprobs) : json(nullptr);
  choice["finish_reason"] = nullptr;
  r["choices"] = json::array({choice});
  if (ctx_.include_usage) r["usage"] = nullptr;
  return sse(r);
}

std::string ResponseWriter::chunk_finish(const TaskEvent& done) {
  const bool chat = ctx_.endpoint == Endpoint::Chat;
  json r = base(chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", 0}};
  if (chat) {
    choice["delta"] = json::object();
  } else {
    choice["text"] = "";
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = openai_finish_reason(done.finish);
  r["choices"] = json::array({choice});
  if (ctx_.include_usage) r["usage"] = nullptr;
  std::string out = sse(r);
  if (ctx_.include_usage) {
    // As OpenAI does: one more chunk with no choices and the usage.
    json u = base(chat ? "chat.completion.chunk" : "text_completion");
    u["choices"] = json::array();
    u["usage"] = usage(done);
    out += sse(u);
  }
  return out;
}

}  // namespace quarrel::server

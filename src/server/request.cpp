#include "server/request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace quarrel::server {

namespace {

using nlohmann::json;

json parse_object(std::string_view body) {
  // No exceptions from the parser: malformed input is the common case here.
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad_request("", "the request body is not valid JSON");
  if (!j.is_object()) bad_request("", "the request body must be a JSON object");
  return j;
}

// The field, or nullptr when it is absent or null.
const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

bool get_bool(const json& j, const char* key, bool fallback) {
  const json* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) bad_request(key, fmt::format("'{}' must be a boolean", key));
  return v->get<bool>();
}

std::optional<double> get_number(const json& j, const char* key, double lo, double hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad_request(key, fmt::format("'{}' must be a number", key));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad_request(key, fmt::format("'{}' must be between {} and {}", key, lo, hi));
  return x;
}

// An integer field; a float with an integral value (5.0) is accepted, as
// JSON does not distinguish them.
std::optional<int64_t> get_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  auto out_of_range = [&] { bad_request(key, fmt::format("'{}' must be an integer between {} and {}", key, lo, hi)); };
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo))) out_of_range();
    return static_cast<int64_t>(u);
  }
  if (v->is_number_integer()) {
    const int64_t i = v->get<int64_t>();
    if (i < lo || i > hi) out_of_range();
    return i;
  }
  if (v->is_number_float()) {
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) bad_request(key, fmt::format("'{}' must be an integer", key));
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) out_of_range();
    return static_cast<int64_t>(d);
  }
  bad_request(key, fmt::format("'{}' must be an integer", key));
}

std::string get_string(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) return "";
  if (!v->is_string()) bad_request(key, fmt::format("'{}' must be a string", key));
  return v->get<std::string>();
}

std::vector<int32_t> token_array(const json& a, const char* key) {
  std::vector<int32_t> ids;
  ids.reserve(a.size());
  for (const auto& t : a) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > std::numeric_limits<int32_t>::max())
      bad_request(key, fmt::format("'{}' token ids must be non-negative integers", key));
    ids.push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return ids;
}

void parse_prompt(const json& j, CompletionRequest& r) {
  const json* p = field(j, "prompt");
  if (!p) bad_request("prompt", "'prompt' is required");
  if (p->is_string()) {
    r.prompt_text = p->get<std::string>();
    return;
  }
  if (!p->is_array() || p->empty())
    bad_request("prompt", "'prompt' must be a string, an array of token ids, or an array of one of those");
  const json& first = (*p)[0];
  if (first.is_string() || first.is_array()) {
    if (p->size() != 1) bad_request("prompt", "only one prompt per request is supported (n = 1)");
    if (first.is_string()) {
      r.prompt_text = first.get<std::string>();
    } else {
      if (first.empty()) bad_request("prompt", "'prompt' token array is empty");
      r.prompt_tokens = token_array(first, "prompt");
    }
    return;
  }
  r.prompt_tokens = token_array(*p, "prompt");
}

std::string message_content(const json& m, const std::string& role) {
  const json* c = field(m, "content");
  if (!c) {
    if (role == "assistant") return "";  // an assistant turn that only made tool calls
    bad_request("messages", fmt::format("a '{}' message needs 'content'", role));
  }
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array()) bad_request("messages", "message 'content' must be a string or an array of content parts");
  // Text parts are joined with newlines, as vLLM and llama.cpp do.
  std::string text;
  for (const auto& part : *c) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string())
      bad_request("messages", "only content parts of type 'text' with a string 'text' are supported");
    if (!text.empty()) text += '\n';
    text += part["text"].get<std::string>();
  }
  return text;
}

void parse_messages(const json& j, CompletionRequest& r) {
  const json* ms = field(j, "messages");
  if (!ms || !ms->is_array() || ms->empty()) bad_request("messages", "'messages' must be a non-empty array");
  for (const auto& m : *ms) {
    if (!m.is_object()) bad_request("messages", "each message must be an object");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad_request("messages", "each message needs a string 'role'");
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";  // OpenAI's newer name for the system role
    if (rs != "system" && rs != "user" && rs != "assistant")
      bad_request("messages", fmt::format("role '{}' is not supported (system, developer, user, assistant)",
                                          role->get<std::string>()));
    r.messages.push_back({rs, message_content(m, rs)});
  }
}

void parse_stop(const json& j, CompletionRequest& r) {
  const json* s = field(j, "stop");
  if (!s) return;
  auto add = [&](const json& v) {
    if (!v.is_string()) bad_request("stop", "'stop' must be a string or an array of strings");
    std::string str = v.get<std::string>();
    if (str.empty()) bad_request("stop", "stop strings must not be empty");
    if (str.size() > kMaxStopBytes)
      bad_request("stop", fmt::format("stop strings are limited to {} bytes", kMaxStopBytes));
    r.stop.push_back(std::move(str));
  };
  if (s->is_array()) {
    if (s->size() > kMaxStopStrings) bad_request("stop", fmt::format("at most {} stop strings", kMaxStopStrings));
    for (const auto& v : *s) add(v);
  } else {
    add(*s);
  }
}

// Fields whose non-default values ask for something this server does not do.
void reject_unsupported(const json& j) {
  if (auto n = get_int(j, "n", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()); n && *n != 1)
    bad_request("n", "only n = 1 is supported");
  if (auto b = get_int(j, "best_of", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      b && *b != 1)
    bad_request("best_of", "only best_of = 1 is supported");
  if (get_bool(j, "echo", false)) bad_request("echo", "'echo' is not supported");
  if (!get_string(j, "suffix").empty()) bad_request("suffix", "'suffix' is not supported");
  if (const json* lb = field(j, "logit_bias"); lb && !(lb->is_object() && lb->empty()))
    bad_request("logit_bias", "'logit_bias' is not supported");
  for (const char* key : {"tools", "functions"})
    if (const json* t = field(j, key); t && !(t->is_array() && t->empty()))
      bad_request(key, fmt::format("'{}' are not supported", key));
  if (const json* rf = field(j, "response_format")) {
    if (!rf->is_object() || rf->value("type", json()) != "text")
      bad_request("response_format", "only response_format {\"type\": \"text\"} is supported");
  }
}

}  // namespace

CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint) {
  const json j = parse_object(body);
  CompletionRequest r;
  r.endpoint = endpoint;
  r.model = get_string(j, "model");
  if (endpoint == Endpoint::Completions) {
    parse_prompt(j, r);
  } else {
    parse_messages(j, r);
  }
  reject_unsupported(j);

  std::optional<int64_t> max_tokens = get_int(j, "max_tokens", 1, kMaxTokensLimit);
  if (endpoint == Endpoint::Chat)
    if (auto mct = get_int(j, "max_completion_tokens", 1, kMaxTokensLimit)) max_tokens = mct;
  if (max_tokens) r.max_tokens = static_cast<int32_t>(*max_tokens);

  // OpenAI's defaults, not llama.cpp's: clients written for the API expect them.
  runtime::SamplerParams& s = r.sampler;
  s.temperature = static_cast<float>(get_number(j, "temperature", 0, 2).value_or(1.0));
  s.top_p = static_cast<float>(get_number(j, "top_p", 0, 1).value_or(1.0));
  s.top_k = static_cast<int32_t>(get_int(j, "top_k", 0, 1 << 24).value_or(0));
  s.min_p = static_cast<float>(get_number(j, "min_p", 0, 1).value_or(0.0));
  s.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", -2, 2).value_or(0.0));
  s.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", -2, 2).value_or(0.0));
  s.repeat_penalty = 1.0f;
  if (const json* seed = field(j, "seed")) {
    uint64_t u = 0;
    if (seed->is_number_unsigned()) {
      u = seed->get<uint64_t>();
    } else if (seed->is_number_integer()) {
      u = static_cast<uint64_t>(seed->get<int64_t>());
    } else {
      u = static_cast<uint64_t>(
          get_int(j, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()).value());
    }
    // The runtime reads 0xFFFFFFFF as "draw a random seed"; keep that one
    // seed reproducible by moving it out of the way.
    if (u == 0xFFFFFFFFull) u ^= 1ull << 63;
    s.seed = u;
    r.seeded = true;
  }

  parse_stop(j, r);
  r.stream = get_bool(j, "stream", false);
  if (const json* so = field(j, "stream_options")) {
    if (!so->is_object()) bad_request("stream_options", "'stream_options' must be an object");
    r.include_usage = get_bool(*so, "include_usage", false);
  }

  if (endpoint == Endpoint::Completions) {
    // Completions: "logprobs": N asks for the sampled token and N alternatives.
    if (auto n = get_int(j, "logprobs", 0, kMaxTopLogprobs)) {
      r.logprobs = true;
      r.top_logprobs = static_cast<int32_t>(*n);
    }
  } else {
    r.logprobs = get_bool(j, "logprobs", false);
    if (auto n = get_int(j, "top_logprobs", 0, kMaxTopLogprobs)) {
      if (!r.logprobs) bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
      r.top_logprobs = static_cast<int32_t>(*n);
    }
  }
  return r;
}

TokenizeRequest parse_tokenize_request(std::string_view body) {
  const json j = parse_object(body);
  TokenizeRequest r;
  const json* c = field(j, "content");
  if (!c || !c->is_string()) bad_request("content", "'content' must be a string");
  r.content = c->get<std::string>();
  r.add_special = get_bool(j, "add_special", false);
  r.with_pieces = get_bool(j, "with_pieces", false);
  return r;
}

std::vector<int32_t> parse_detokenize_request(std::string_view body) {
  const json j = parse_object(body);
  const json* t = field(j, "tokens");
  if (!t || !t->is_array()) bad_request("tokens", "'tokens' must be an array of token ids");
  return token_array(*t, "tokens");
}

}  // namespace quarrel::server

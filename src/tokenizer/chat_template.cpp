#include "tokenizer/chat_template.h"

#include <array>
#include <ctime>

#include "common/error.h"

namespace quarrel::tokenizer {

namespace {

enum class Family { ChatMl, Llama2, Llama3, Mistral, Phi3, Gemma, Zephyr };

// Variant flags: each names one behaviour of a family's Jinja source.
constexpr unsigned kBosAtStart = 1u << 0;  // {{ bos_token }} before everything (phi3)
constexpr unsigned kHeaderDate = 1u << 1;  // llama3.1: a system turn with the knowledge cutoff and today's date, always
constexpr unsigned kDateFromClock = 1u << 2;    // llama3.2: today's date from strftime_now, not the fixed "26 Jul 2024"
constexpr unsigned kSystemFirstUser = 1u << 3;  // mistral-v1: the system text opens the first user turn
constexpr unsigned kSystemLastUser = 1u << 4;   // mistral-v3: the system text opens the last user turn
constexpr unsigned kSystemTags = 1u << 5;       // mistral-v7: [SYSTEM_PROMPT] turns, no alternation check
constexpr unsigned kTrimReply = 1u << 6;        // mistral-v3: assistant content | trim
constexpr unsigned kReplySpace = 1u << 7;       // mistral v0.1: a space after each reply's eos
constexpr unsigned kSkipEmptySystem = 1u << 8;  // phi3.5: a system message renders only when non-empty
constexpr unsigned kUserOpensReply = 1u << 9;   // phi3-mini: each user turn ends with <|assistant|>; system is dropped
constexpr unsigned kSystemAsPrefix = 1u << 10;  // gemma3: the system text opens the first user turn

struct Spec {
  std::string_view name;
  Family family;
  unsigned flags;
  // [INST] family: text around a user turn and before a reply.
  std::string_view inst_open = {};
  std::string_view inst_close = {};
  std::string_view reply_prefix = {};
};

constexpr std::array kSpecs = {
    Spec{"chatml", Family::ChatMl, 0},
    Spec{"llama2", Family::Llama2, 0},
    Spec{"llama3", Family::Llama3, 0},
    Spec{"llama3.1", Family::Llama3, kHeaderDate},
    Spec{"llama3.2", Family::Llama3, kHeaderDate | kDateFromClock},
    Spec{"mistral", Family::Mistral, 0, "[INST] ", " [/INST]", ""},
    Spec{"mistral-v1", Family::Mistral, kSystemFirstUser, " [INST] ", " [/INST]", " "},
    Spec{"mistral-v3", Family::Mistral, kSystemLastUser | kTrimReply, "[INST] ", "[/INST]", " "},
    Spec{"mistral-v3-tekken", Family::Mistral, kSystemLastUser, "[INST]", "[/INST]", ""},
    Spec{"mistral-v7", Family::Mistral, kSystemTags, "[INST] ", "[/INST]", " "},
    Spec{"phi3", Family::Phi3, kSkipEmptySystem},
    Spec{"phi3-mini", Family::Phi3, kUserOpensReply | kBosAtStart},
    Spec{"gemma", Family::Gemma, 0},
    Spec{"gemma3", Family::Gemma, kSystemAsPrefix},
    Spec{"zephyr", Family::Zephyr, 0},
};

// Appends the parts in order: one growing buffer, no temporaries.
template <typename... Parts>
void append(std::string& out, const Parts&... parts) {
  (out.append(std::string_view(parts)), ...);
}

int spec_index(std::string_view name) {
  for (size_t i = 0; i < kSpecs.size(); ++i)
    if (kSpecs[i].name == name) return static_cast<int>(i);
  return -1;
}

std::string names_list() {
  std::string s;
  for (const auto& sp : kSpecs) s += (s.empty() ? "" : ", ") + std::string(sp.name);
  return s;
}

// Jinja raise_exception(msg): the conversation is one the template rejects.
[[noreturn]] void raise(std::string_view msg) { fail("chat template: {}", msg); }

constexpr std::string_view kAlternate = "Conversation roles must alternate user/assistant/user/assistant/...";
constexpr std::string_view kAlternateAfterSystem =
    "After the optional system message, conversation roles must alternate user/assistant/user/assistant/...";
constexpr std::string_view kOnlyUserAssistantSystem =
    "Only user and assistant roles are supported, with the exception of an initial optional system message!";

bool is_user(const ChatMessage& m) { return m.role == "user"; }

// The Jinja check (message.role == 'user') != (loop.index0 % 2 == 0).
bool breaks_alternation(const ChatMessage& m, size_t index0) { return is_user(m) != (index0 % 2 == 0); }

std::string today_date() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
  return buf;
}

std::string render_chatml(std::span<const ChatMessage> msgs, const ChatRenderOptions& o, const std::string& sys) {
  std::string out;
  if (!sys.empty() && msgs[0].role != "system") append(out, "<|im_start|>system\n", sys, "<|im_end|>\n");
  for (const auto& m : msgs) append(out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  if (o.add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

// meta-llama/Llama-2-*-chat: the system text sits in <<SYS>> inside the first
// user turn; every user turn starts with BOS; contents are strip()ped.
std::string render_llama2(std::span<const ChatMessage> msgs, const ChatRenderOptions& o) {
  const bool has_system = msgs[0].role == "system";
  auto loop = has_system ? msgs.subspan(1) : msgs;
  std::string out;
  for (size_t i = 0; i < loop.size(); ++i) {
    const ChatMessage& m = loop[i];
    if (breaks_alternation(m, i)) raise(kAlternate);
    std::string content;
    if (i == 0 && has_system) append(content, "<<SYS>>\n", msgs[0].content, "\n<</SYS>>\n\n");
    content += m.content;
    if (m.role == "user") {
      append(out, o.bos_token, "[INST] ", py_strip(content), " [/INST]");
    } else if (m.role == "assistant") {
      append(out, " ", py_strip(content), " ", o.eos_token);
    }
  }
  return out;
}

std::string render_llama3(std::span<const ChatMessage> msgs, const ChatRenderOptions& o, unsigned flags) {
  std::string out;
  auto turn = [&out](const std::string& role, std::string_view content) {
    append(out, "<|start_header_id|>", role, "<|end_header_id|>\n\n", py_strip(content), "<|eot_id|>");
  };
  if (flags & kHeaderDate) {
    std::string date = "26 Jul 2024";
    if (flags & kDateFromClock) date = o.date.empty() ? today_date() : o.date;
    std::string system;
    if (msgs[0].role == "system") {
      system = py_strip(msgs[0].content);
      msgs = msgs.subspan(1);
    }
    append(out, o.bos_token, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n");
    append(out, "Today Date: ", date, "\n\n", system, "<|eot_id|>");
    for (const auto& m : msgs) turn(m.role, m.content);
  } else {
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (i == 0) out += o.bos_token;
      turn(msgs[i].role, msgs[i].content);
    }
  }
  if (o.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// The [INST] templates of Mistral AI, which differ in where the system text
// goes, the spaces around [INST], and how a reply ends. None of them has a
// generation prompt: a prompt that ends with [/INST] already asks for one.
std::string render_mistral(std::span<const ChatMessage> msgs, const ChatRenderOptions& o, const Spec& sp,
                           unsigned flags) {
  std::string out = o.bos_token;
  auto reply = [&](const std::string& content) {
    append(out, sp.reply_prefix, (flags & kTrimReply) ? py_strip(content) : content, o.eos_token);
    if (flags & kReplySpace) out += " ";
  };
  if (flags & kSystemTags) {
    for (const auto& m : msgs) {
      if (m.role == "user") {
        append(out, sp.inst_open, m.content, sp.inst_close);
      } else if (m.role == "system") {
        append(out, "[SYSTEM_PROMPT] ", m.content, "[/SYSTEM_PROMPT]");
      } else if (m.role == "assistant") {
        reply(m.content);
      } else {
        raise("Only user, system and assistant roles are supported!");
      }
    }
    return out;
  }
  if (!(flags & (kSystemFirstUser | kSystemLastUser))) {
    // The original template: no system role, alternation checked in the loop.
    for (size_t i = 0; i < msgs.size(); ++i) {
      const ChatMessage& m = msgs[i];
      if (breaks_alternation(m, i)) raise(kAlternate);
      if (m.role == "user") {
        append(out, sp.inst_open, m.content, sp.inst_close);
      } else if (m.role == "assistant") {
        reply(m.content);
      } else {
        raise("Only user and assistant roles are supported!");
      }
    }
    return out;
  }
  const bool has_system = msgs[0].role == "system";
  const std::string system = has_system ? msgs[0].content : "";
  auto loop = has_system ? msgs.subspan(1) : msgs;
  if (flags & kSystemLastUser) {
    // v3 checks the alternation of every message before rendering any.
    for (size_t i = 0; i < loop.size(); ++i)
      if (breaks_alternation(loop[i], i)) raise(kAlternateAfterSystem);
  }
  for (size_t i = 0; i < loop.size(); ++i) {
    const ChatMessage& m = loop[i];
    if ((flags & kSystemFirstUser) && breaks_alternation(m, i)) raise(kAlternateAfterSystem);
    if (m.role == "user") {
      const bool with_system = has_system && ((flags & kSystemFirstUser) ? i == 0 : i + 1 == loop.size());
      append(out, sp.inst_open, with_system ? system : "", with_system ? "\n\n" : "", m.content, sp.inst_close);
    } else if (m.role == "assistant") {
      reply(m.content);
    } else {
      raise(kOnlyUserAssistantSystem);
    }
  }
  return out;
}

std::string render_phi3(std::span<const ChatMessage> msgs, const ChatRenderOptions& o, unsigned flags) {
  std::string out = (flags & kBosAtStart) ? o.bos_token : "";
  if (flags & kUserOpensReply) {
    for (const auto& m : msgs) {
      if (m.role == "user")
        append(out, "<|user|>\n", m.content, "<|end|>\n<|assistant|>\n");
      else if (m.role == "assistant")
        append(out, m.content, "<|end|>\n");
    }
    return out;
  }
  for (const auto& m : msgs) {
    if (m.role == "system" && (flags & kSkipEmptySystem) && m.content.empty()) continue;
    if (m.role == "system" || m.role == "user" || m.role == "assistant")
      append(out, "<|", m.role, "|>\n", m.content, "<|end|>\n");
  }
  out += o.add_generation_prompt ? "<|assistant|>\n" : o.eos_token;
  return out;
}

std::string render_gemma(std::span<const ChatMessage> msgs, const ChatRenderOptions& o, unsigned flags) {
  std::string out = o.bos_token, prefix;
  if (msgs[0].role == "system") {
    if (!(flags & kSystemAsPrefix)) raise("System role not supported");
    append(prefix, msgs[0].content, "\n\n");
    msgs = msgs.subspan(1);
  }
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (breaks_alternation(m, i)) raise(kAlternate);
    const std::string role = m.role == "assistant" ? "model" : m.role;
    append(out, "<start_of_turn>", role, "\n", i == 0 ? prefix : "", py_strip(m.content), "<end_of_turn>\n");
  }
  if (o.add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

std::string render_zephyr(std::span<const ChatMessage> msgs, const ChatRenderOptions& o) {
  std::string out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& m = msgs[i];
    if (m.role == "user" || m.role == "system" || m.role == "assistant")
      append(out, "<|", m.role, "|>\n", m.content, o.eos_token, "\n");
    if (i + 1 == msgs.size() && o.add_generation_prompt) out += "<|assistant|>\n";
  }
  return out;
}

// Jinja string escapes the detection cares about, so that templates written
// with '\n' inside literals and with real newlines read the same.
std::string unescape_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A ChatML template that inserts a fixed system turn when the conversation
// has none holds it as one string literal: '<|im_start|>system\n...<|im_end|>\n'.
std::string chatml_default_system(const std::string& t) {
  for (char quote : {'\'', '"'}) {
    std::string open(1, quote);
    open += "<|im_start|>system\n";
    for (size_t at = t.find(open); at != std::string::npos; at = t.find(open, at + 1)) {
      const size_t start = at + open.size();
      const size_t end = t.find("<|im_end|>", start);
      if (end == std::string::npos) break;
      std::string text;
      bool literal = true;
      for (size_t i = start; i < end && literal; ++i) {
        if (t[i] == '\\' && i + 1 < end) {
          text += t[++i];
        } else if (t[i] == quote) {
          literal = false;  // the literal ends before <|im_end|>: the content is an expression
        } else {
          text += t[i];
        }
      }
      if (literal && !text.empty()) return text;
    }
  }
  return "";
}

// Decodes the code point that starts at s[i]; returns its length, 0 if invalid.
size_t utf8_decode(std::string_view s, size_t i, char32_t& cp) {
  const auto b = static_cast<unsigned char>(s[i]);
  size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
  for (size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c >> 6) != 2) return 0;
    cp = (cp << 6) | (c & 0x3F);
  }
  return n;
}

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace

std::string py_strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e) {
    char32_t cp = 0;
    size_t n = utf8_decode(s.substr(0, e), b, cp);
    if (n == 0 || !py_isspace(cp)) break;
    b += n;
  }
  while (e > b) {
    size_t start = e - 1;
    while (start > b && (static_cast<unsigned char>(s[start]) >> 6) == 2 && e - start < 4) --start;
    char32_t cp = 0;
    if (utf8_decode(s.substr(0, e), start, cp) != e - start || !py_isspace(cp)) break;
    e = start;
  }
  return std::string(s.substr(b, e - b));
}

std::vector<std::string_view> ChatTemplate::names() {
  std::vector<std::string_view> v;
  for (const auto& sp : kSpecs) v.push_back(sp.name);
  return v;
}

std::string_view ChatTemplate::name() const { return kSpecs[spec_].name; }

ChatTemplate ChatTemplate::from_name(std::string_view name) {
  int i = spec_index(name);
  if (i < 0) fail("unknown chat template '{}' (expected one of: {})", name, names_list());
  return ChatTemplate(i, kSpecs[i].flags, "");
}

ChatTemplate ChatTemplate::detect(std::string_view jinja) {
  if (jinja.empty()) fail("the model has no chat template; name one with --chat-template ({})", names_list());
  const std::string t = unescape_newlines(jinja);
  auto has = [&](std::string_view s) { return t.find(s) != std::string::npos; };
  auto named = [&](std::string_view name, unsigned flags) { return ChatTemplate(spec_index(name), flags, ""); };
  auto base = [&](std::string_view name) { return kSpecs[spec_index(name)].flags; };

  if (has("<|im_start|>") && !has("<|im_sep|>")) return ChatTemplate(spec_index("chatml"), 0, chatml_default_system(t));
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) {
    if (!has("Cutting Knowledge Date")) return named("llama3", base("llama3"));
    return has("strftime_now") ? named("llama3.2", base("llama3.2")) : named("llama3.1", base("llama3.1"));
  }
  if (has("<start_of_turn>"))
    return has("first_user_prefix") ? named("gemma3", base("gemma3")) : named("gemma", base("gemma"));
  if (has("[INST]")) {
    if (has("<<SYS>>") && has(".strip()") && has("bos_token + '[INST] '")) return named("llama2", base("llama2"));
    if (has("[SYSTEM_PROMPT] ")) return named("mistral-v7", base("mistral-v7"));
    if (has("' [INST] ' + system_message")) return named("mistral-v1", base("mistral-v1"));
    if (has("[AVAILABLE_TOOLS]"))
      return has("\"[INST]\" +") ? named("mistral-v3-tekken", base("mistral-v3-tekken"))
                                 : named("mistral-v3", base("mistral-v3"));
    if (!has("<<SYS>>") && has("'[INST] ' + message['content'] + ' [/INST]'"))
      return named("mistral", has("eos_token + ' '") ? kReplySpace : 0);
  }
  if (has("<|assistant|>") && has("<|end|>")) {
    unsigned flags = has("bos_token") ? kBosAtStart : 0;
    if (has("'<|end|>' + '\n' + '<|assistant|>'")) return named("phi3-mini", flags | kUserOpensReply);
    if (has("'system' and message['content']")) flags |= kSkipEmptySystem;
    return named("phi3", flags);
  }
  if (has("<|user|>") && has("<|assistant|>") && has("<|system|>")) return named("zephyr", base("zephyr"));
  fail("the model's chat template is not one quarrel recognises; name one with --chat-template ({})", names_list());
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, const ChatRenderOptions& o) const {
  if (messages.empty()) fail("chat template: the conversation has no messages");
  const Spec& sp = kSpecs[spec_];
  switch (sp.family) {
    case Family::ChatMl:
      return render_chatml(messages, o, default_system_);
    case Family::Llama2:
      return render_llama2(messages, o);
    case Family::Llama3:
      return render_llama3(messages, o, flags_);
    case Family::Mistral:
      return render_mistral(messages, o, sp, flags_);
    case Family::Phi3:
      return render_phi3(messages, o, flags_);
    case Family::Gemma:
      return render_gemma(messages, o, flags_);
    case Family::Zephyr:
      return render_zephyr(messages, o);
  }
  fail("chat template: unreachable family");
}

}  // namespace quarrel::tokenizer

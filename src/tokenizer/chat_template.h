#pragma once
// tokenizer::ChatTemplate turns a conversation into the prompt text a chat
// model was trained on. It recognises the common families from the Jinja
// source in a GGUF's tokenizer.chat_template and produces exactly what that
// Jinja produces under Hugging Face's settings (trim_blocks, lstrip_blocks),
// without running Jinja: each supported template is a table entry plus flags.
// Inputs a template rejects (raise_exception) are rejected here with the
// template's own message.
//
// Supported (--chat-template NAME): chatml, llama2, llama3, llama3.1,
// llama3.2, mistral, mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7,
// phi3, phi3-mini, gemma, gemma3, zephyr.
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quarrel::tokenizer {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatRenderOptions {
  std::string bos_token;  // the vocabulary's BOS text ("" when it has none)
  std::string eos_token;
  bool add_generation_prompt = true;
  // "%d %b %Y" date for templates that print today's date (llama3.2); empty:
  // today, from the clock.
  std::string date;
};

class ChatTemplate {
 public:
  // Recognises a Jinja chat template. Throws quarrel::Error naming the
  // supported families when the template is none of them.
  static ChatTemplate detect(std::string_view jinja);
  // One of names(). Throws quarrel::Error listing them otherwise.
  static ChatTemplate from_name(std::string_view name);
  static std::vector<std::string_view> names();

  std::string_view name() const;
  // The system prompt the template inserts when the conversation has none
  // (ChatML variants such as SmolLM2 and Qwen2); "" when it has none.
  const std::string& default_system() const { return default_system_; }

  // Throws quarrel::Error with the template's message for conversations it
  // rejects (roles that do not alternate, a system role it does not support).
  std::string render(std::span<const ChatMessage> messages, const ChatRenderOptions& options) const;

 private:
  ChatTemplate(int spec, unsigned flags, std::string default_system)
      : spec_(spec), flags_(flags), default_system_(std::move(default_system)) {}
  int spec_;        // index into the template table
  unsigned flags_;  // the table's flags, or those read from the Jinja source
  std::string default_system_;
};

// Python's str.strip() (also Jinja's trim): removes Unicode whitespace at both
// ends of UTF-8 text. Invalid UTF-8 is left as is.
std::string py_strip(std::string_view s);

}  // namespace quarrel::tokenizer

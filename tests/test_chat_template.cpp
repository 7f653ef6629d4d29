// Chat templates against Jinja2: every template in tests/data/chat_templates
// is detected as its family and renders every conversation in cases.json
// byte for byte as Jinja2 did (goldens.json, written by make_goldens.py), or
// is rejected with the template's own message.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common/error.h"
#include "test_support.h"
#include "tokenizer/chat_template.h"

namespace quarrel {
namespace {

using tokenizer::ChatMessage;
using tokenizer::ChatRenderOptions;
using tokenizer::ChatTemplate;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kDir = "tests/data/chat_templates/";

nlohmann::json load_json(const std::string& name) {
  std::string text = read_text(test::repo_path(kDir + name));
  EXPECT_FALSE(text.empty()) << name;
  return nlohmann::json::parse(text);
}

struct Case {
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true;
};

std::map<std::string, Case> load_cases() {
  std::map<std::string, Case> cases;
  for (const auto& c : load_json("cases.json")) {
    Case k;
    for (const auto& m : c["messages"]) k.messages.push_back({m["role"], m["content"]});
    k.add_generation_prompt = c.value("add_generation_prompt", true);
    cases[c["name"]] = k;
  }
  return cases;
}

// Renders or returns "error: <message>" so outputs and errors compare alike.
std::string render_or_error(const ChatTemplate& t, const Case& c, const ChatRenderOptions& base) {
  ChatRenderOptions o = base;
  o.add_generation_prompt = c.add_generation_prompt;
  try {
    return t.render(c.messages, o);
  } catch (const Error& e) {
    std::string msg = e.what();
    const std::string prefix = "chat template: ";
    return "error: " + (msg.starts_with(prefix) ? msg.substr(prefix.size()) : msg);
  }
}

TEST(ChatTemplate, MatchesJinja2OnEveryTemplateAndCase) {
  const nlohmann::json goldens = load_json("goldens.json");
  const auto cases = load_cases();
  ChatRenderOptions o;
  o.bos_token = goldens["bos_token"];
  o.eos_token = goldens["eos_token"];
  o.date = goldens["date"];
  int checked = 0;
  for (const auto& t : goldens["templates"]) {
    const std::string file = t["file"];
    const std::string source = read_text(test::repo_path(kDir + file));
    ChatTemplate detected = ChatTemplate::detect(source);
    EXPECT_EQ(detected.name(), t["detected"].get<std::string>()) << file;
    const bool canonical = t["canonical"];
    for (const auto& r : t["results"]) {
      const Case& c = cases.at(r["case"]);
      const std::string want =
          r.contains("output") ? r["output"].get<std::string>() : "error: " + r["error"].get<std::string>();
      EXPECT_EQ(render_or_error(detected, c, o), want) << file << " / " << r["case"];
      if (canonical) {
        // --chat-template NAME renders what the family's own template does.
        ChatTemplate named = ChatTemplate::from_name(t["detected"].get<std::string>());
        EXPECT_EQ(render_or_error(named, c, o), want) << "named " << t["detected"] << " / " << r["case"];
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(ChatTemplate, EveryNameHasACanonicalGolden) {
  const nlohmann::json goldens = load_json("goldens.json");
  std::set<std::string> canonical;
  for (const auto& t : goldens["templates"])
    if (t["canonical"]) canonical.insert(t["detected"].get<std::string>());
  for (std::string_view name : ChatTemplate::names()) EXPECT_TRUE(canonical.count(std::string(name))) << name;
}

TEST(ChatTemplate, ChatMlDefaultSystemPromptIsReadFromTheTemplate) {
  auto t = ChatTemplate::detect(read_text(test::repo_path(kDir + "smollm2.jinja")));
  EXPECT_EQ(t.default_system(), "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  // A system turn built from an expression is not a default.
  auto plain = ChatTemplate::detect("{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}");
  EXPECT_EQ(plain.default_system(), "");
}

TEST(ChatTemplate, UnknownTemplatesAndNamesFailClearly) {
  const struct {
    std::string source;
    std::string expect;
  } cases[] = {
      {"", "no chat template"},
      {"{% for m in messages %}{{ m['content'] }}{% endfor %}", "--chat-template"},
      {"<|im_start|>{{ x }}<|im_sep|>", "not one quarrel recognises"},
  };
  for (const auto& c : cases) {
    try {
      ChatTemplate::detect(c.source);
      ADD_FAILURE() << "accepted: " << c.source;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    }
  }
  try {
    ChatTemplate::from_name("vicuna");
    ADD_FAILURE() << "accepted vicuna";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("chatml"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, EmptyConversationIsRejected) {
  for (std::string_view name : ChatTemplate::names())
    EXPECT_THROW(ChatTemplate::from_name(name).render({}, {}), Error) << name;
}

TEST(ChatTemplate, PyStripMatchesPython) {
  const struct {
    std::string in, out;
  } cases[] = {
      {"", ""},
      {"   ", ""},
      {" a ", "a"},
      {"\t\n\v\f\r a b \x1c\x1d\x1e\x1f", "a b"},
      {"\u00a0\u3000x\u2003\u205f", "x"},
      {"\u200bx", "\u200bx"},  // zero-width space is not whitespace to Python
      {"\xc2", "\xc2"},        // a lone lead byte stays
      {" \xe3\x80", "\xe3\x80"},
      {"x\xc2\x85", "x"},  // U+0085 NEXT LINE
  };
  for (const auto& c : cases) EXPECT_EQ(tokenizer::py_strip(c.in), c.out) << c.in;
}

}  // namespace
}  // namespace quarrel

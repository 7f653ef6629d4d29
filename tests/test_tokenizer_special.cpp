// Special tokens, BOS/EOS, malformed vocabularies, and every pre-tokenizer.
#include <gtest/gtest.h>

#include <algorithm>

#include "common/error.h"
#include "gguf/writer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"
#include "tokenizer_test_support.h"

namespace quarrel {
namespace {

using tokenizer::Tokenizer;

bool contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

TEST(TokenizerSpecial, ParseSpecialOnlyWhenAsked) {
  const auto& tok = test::vocab_tokenizer("llama3");
  const std::string text = "<|begin_of_text|>Hello<|eot_id|>";
  EXPECT_EQ(tok.encode(text, false, true), (std::vector<int32_t>{128000, 9906, 128009}));
  const auto plain = tok.encode(text, false, false);
  EXPECT_FALSE(contains(plain, 128000));
  EXPECT_FALSE(contains(plain, 128009));
  EXPECT_EQ(tok.decode(plain), text);
  // Control tokens are not rendered unless asked.
  EXPECT_EQ(tok.decode(std::vector<int32_t>{128000, 9906, 128009}), "Hello");
  EXPECT_EQ(tok.decode(std::vector<int32_t>{128000, 9906, 128009}, {.render_special = true}), text);
}

TEST(TokenizerSpecial, NeverADoubleBos) {
  const auto& l3 = test::vocab_tokenizer("llama3");
  ASSERT_TRUE(l3.add_bos());
  EXPECT_EQ(l3.encode("Hello", true, false), (std::vector<int32_t>{128000, 9906}));
  EXPECT_EQ(l3.encode("<|begin_of_text|>Hello", true, true), (std::vector<int32_t>{128000, 9906}));
  const auto& spm = test::vocab_tokenizer("llama-spm");
  EXPECT_EQ(spm.encode("Hello", true, false), (std::vector<int32_t>{1, 15043}));
  EXPECT_EQ(spm.encode("<s>Hello</s>", true, true), (std::vector<int32_t>{1, 15043, 2}));
  EXPECT_EQ(spm.encode("<s>Hello</s>", false, true), (std::vector<int32_t>{1, 15043, 2}));
}

TEST(TokenizerSpecial, UserDefinedTokensAreAlwaysSplitOut) {
  // As in Hugging Face tokenizers: added tokens that are not control tokens
  // are matched before pre-tokenization even without parse_special.
  const auto& qwen = test::vocab_tokenizer("qwen3");
  const auto ids = qwen.encode("<think>x</think>", false, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{151667, 87, 151668}));
  EXPECT_EQ(qwen.decode(ids), "<think>x</think>");
  // <|im_end|> is a control token: text unless parse_special.
  EXPECT_FALSE(contains(qwen.encode("<|im_end|>", false, false), 151645));
  EXPECT_EQ(qwen.encode("<|im_end|>", false, true), std::vector<int32_t>{151645});
}

TEST(TokenizerSpecial, EndOfGeneration) {
  const auto& l3 = test::vocab_tokenizer("llama3");
  EXPECT_TRUE(l3.is_eog(128001));   // <|end_of_text|>
  EXPECT_TRUE(l3.is_eog(128009));   // <|eot_id|>
  EXPECT_FALSE(l3.is_eog(128000));  // <|begin_of_text|>
  EXPECT_FALSE(l3.is_eog(9906));
  EXPECT_EQ(l3.eot(), 128009);
  const auto& qwen = test::vocab_tokenizer("qwen3");
  EXPECT_TRUE(qwen.is_eog(151645));  // <|im_end|>
  EXPECT_TRUE(qwen.is_eog(151643));  // <|endoftext|>
  EXPECT_FALSE(qwen.is_eog(151644));
  const auto& spm = test::vocab_tokenizer("llama-spm");
  EXPECT_TRUE(spm.is_eog(2));
  EXPECT_FALSE(spm.is_eog(1));
  EXPECT_FALSE(spm.is_eog(-1));
}

TEST(TokenizerSpecial, Metadata) {
  const auto& phi3 = test::vocab_tokenizer("phi-3");
  EXPECT_NE(phi3.chat_template().find("<|assistant|>"), std::string_view::npos);
  EXPECT_EQ(phi3.eos(), 32000);
  const auto& l3 = test::vocab_tokenizer("llama3");
  EXPECT_TRUE(l3.chat_template().empty());
  EXPECT_EQ(l3.n_vocab(), 128256);
  EXPECT_EQ(l3.pre(), "llama-bpe");
  EXPECT_EQ(l3.model(), "gpt2");
  EXPECT_TRUE(l3.is_control(128000));
  EXPECT_FALSE(l3.is_control(9906));
  EXPECT_EQ(test::vocab_tokenizer("qwen3").pre(), "qwen2");
  EXPECT_FALSE(test::vocab_tokenizer("qwen3").add_bos());
}

// ---- vocabularies built in memory ----

struct VocabSpec {
  std::string model = "llama";
  std::vector<std::string> tokens;
  std::vector<int32_t> types;  // empty: no token_type key
  std::vector<std::string> merges;
  bool with_merges = false;
  std::string pre;
};

Tokenizer load_spec(const VocabSpec& s, const std::function<void(gguf::Writer&)>& extra = {}) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", s.model);
  if (!s.pre.empty()) w.set_string("tokenizer.ggml.pre", s.pre);
  std::vector<std::string_view> toks(s.tokens.begin(), s.tokens.end());
  w.set_strings("tokenizer.ggml.tokens", toks);
  if (!s.types.empty()) w.set_i32s("tokenizer.ggml.token_type", s.types);
  if (s.with_merges) {
    std::vector<std::string_view> m(s.merges.begin(), s.merges.end());
    w.set_strings("tokenizer.ggml.merges", m);
  }
  if (extra) extra(w);
  const std::vector<uint8_t> bytes = w.to_bytes();
  return Tokenizer::from_gguf(gguf::File::from_bytes(bytes));
}

// "<unk>", "<s>", "</s>", the 256 byte tokens, then `extra`.
VocabSpec spm_spec(std::vector<std::string> extra = {}) {
  VocabSpec s;
  s.tokens = {"<unk>", "<s>", "</s>"};
  s.types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    s.tokens.push_back(fmt::format("<0x{:02X}>", b));
    s.types.push_back(6);
  }
  for (auto& t : extra) {
    s.tokens.push_back(t);
    s.types.push_back(1);
  }
  return s;
}

std::string load_error(const VocabSpec& s, const std::function<void(gguf::Writer&)>& extra = {}) {
  try {
    load_spec(s, extra);
  } catch (const Error& e) {
    return e.what();
  }
  return "(loaded)";
}

TEST(TokenizerVocab, MalformedByteTokensAreRejected) {
  for (const char* bad : {"<0x4G>", "<0x4>", "<0x041>", "0x41", "<0X41>", "<0x41"}) {
    VocabSpec s = spm_spec();
    s.tokens[3 + 0x41] = bad;
    const std::string err = load_error(s);
    EXPECT_NE(err.find("<0xNN>"), std::string::npos) << bad << ": " << err;
    EXPECT_NE(err.find("tokenizer"), std::string::npos) << err;
  }
}

TEST(TokenizerVocab, OtherDefectsAreRejected) {
  VocabSpec dup = spm_spec({"a", "a"});
  EXPECT_NE(load_error(dup).find("repeats"), std::string::npos);
  VocabSpec model = spm_spec();
  model.model = "bert";
  EXPECT_NE(load_error(model).find("unsupported tokenizer 'bert'"), std::string::npos);
  VocabSpec gpt2 = spm_spec();
  gpt2.model = "gpt2";
  EXPECT_NE(load_error(gpt2).find("tokenizer.ggml.merges"), std::string::npos);
  VocabSpec types = spm_spec();
  types.types.resize(10);
  EXPECT_NE(load_error(types).find("10 types for 259 tokens"), std::string::npos);
  VocabSpec empty;
  EXPECT_NE(load_error(empty).find("tokenizer.ggml.tokens"), std::string::npos);
  VocabSpec no_bos;
  no_bos.tokens = {"a"};  // the default BOS id 1 is out of range
  EXPECT_NE(load_error(no_bos, [](gguf::Writer& w) { w.set_bool("tokenizer.ggml.add_bos_token", true); })
                .find("no BOS"),
            std::string::npos);
}

TEST(TokenizerVocab, SpmByteFallbackAndEos) {
  VocabSpec s = spm_spec({"\xE2\x96\x81" "a", "b"});
  const Tokenizer tok = load_spec(s, [](gguf::Writer& w) { w.set_bool("tokenizer.ggml.add_eos_token", true); });
  // "a" exists as "▁a"; "é" has no token, so it is spelt with its two bytes.
  const auto ids = tok.encode("a\xC3\xA9" "b", true, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 259, 3 + 0xC3, 3 + 0xA9, 260, 2}));
  EXPECT_EQ(tok.decode(ids), "a\xC3\xA9" "b");
}

TEST(TokenizerVocab, SpmWithoutByteTokensUsesUnknown) {
  VocabSpec s;
  s.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a"};
  s.types = {2, 3, 3, 1};
  const Tokenizer tok = load_spec(s);
  EXPECT_EQ(tok.encode("a z", false, false), (std::vector<int32_t>{3, 0, 0}));  // "▁" and "z" are unknown
}

// A byte-level vocabulary: GPT-2's 256 byte characters and a few merges.
VocabSpec bpe_spec(const std::string& pre) {
  VocabSpec s;
  s.model = "gpt2";
  s.pre = pre;
  s.with_merges = true;
  const auto& map = tokenizer::byte_unicode_map();
  for (int b = 0; b < 256; ++b) s.tokens.emplace_back(map.utf8[b].data(), map.utf8_len[b]);
  for (const char* t : {"\xC4\xA0t", "he", "\xC4\xA0the", "<|endoftext|>"}) s.tokens.push_back(t);
  s.merges = {"\xC4\xA0 t", "h e", "\xC4\xA0t he"};
  return s;
}

const char* const kIssuePreTokenizers[] = {
    "default", "gpt-2", "llama-bpe", "qwen2", "smollm", "starcoder", "refact", "deepseek-llm", "deepseek-coder",
    "deepseek-v3", "falcon", "mpt", "gpt-neox", "command-r", "olmo", "dbrx", "stablelm2", "tekken", "phi-2",
    "gpt-4o"};

TEST(TokenizerPre, EveryListedPreTokenizerLoadsAndRoundTrips) {
  const std::string text =
      "Hello World! I've 12345 apples, DON'T you?\n\n  \t x\r\n"
      "\xE4\xB8\xAD\xE6\x96\x87 \xE3\x81\xB2\xE3\x82\x89 \xED\x95\x9C\xEA\xB5\xAD "  // 中文 ひら 한국
      "\xCE\xB1\xCE\xB2 caf\xC3\xA9 \xF0\x9F\xA6\x99 \xE2\x80\x94 \xEF\xBC\x81 \xC2\xB2 ~$+<=>^`| the";
  for (const char* pre : kIssuePreTokenizers) {
    SCOPED_TRACE(pre);
    const Tokenizer tok = load_spec(bpe_spec(pre));
    EXPECT_EQ(tok.pre(), pre);
    const auto ids = tok.encode(text, false, false);
    EXPECT_EQ(tok.decode(ids), text);
    EXPECT_EQ(tok.encode(" the", false, false), std::vector<int32_t>{258});  // merged to "Ġthe"
  }
}

TEST(TokenizerPre, UnknownOrMissingPreFallsBack) {
  EXPECT_EQ(load_spec(bpe_spec("no-such-pre")).pre(), "default");
  EXPECT_EQ(load_spec(bpe_spec("")).pre(), "default");
}

TEST(TokenizerPre, Llama3SignatureSelectsLlamaBpe) {
  const gguf::File src = gguf::File::open(test::repo_path("tests/data/vocab/vocab-llama3.gguf"));
  gguf::Writer w;
  for (const auto& kv : src.metadata()) {
    if (kv.key != "tokenizer.ggml.pre") w.set_value(kv.key, kv.value);
  }
  const std::vector<uint8_t> bytes = w.to_bytes();
  const Tokenizer tok = Tokenizer::from_gguf(gguf::File::from_bytes(bytes));
  EXPECT_EQ(tok.pre(), "llama-bpe");
  const auto texts = test::vocab_test_texts("upstream");
  const auto expected = test::vocab_expected_ids("llama3", "upstream");
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(tok.encode(texts[i], false, false), expected[i]) << i;
}

// Every pre-tokenizer of the list on the same vocabulary (Qwen 3's, with its
// pre key replaced), against llama.cpp on the random texts.
TEST(TokenizerPre, MatchesLlamaCppOnRandomText) {
  const gguf::File src = gguf::File::open(test::repo_path("tests/data/vocab/vocab-qwen3.gguf"));
  const auto texts = test::vocab_test_texts("random");
  for (const char* pre : kIssuePreTokenizers) {
    if (std::string_view(pre) == "gpt-neox") continue;  // llama.cpp has no such name; we use GPT-2's
    SCOPED_TRACE(pre);
    gguf::Writer w;
    for (const auto& kv : src.metadata()) {
      if (kv.key != "tokenizer.ggml.pre") w.set_value(kv.key, kv.value);
    }
    w.set_string("tokenizer.ggml.pre", pre);
    const std::vector<uint8_t> bytes = w.to_bytes();
    const Tokenizer tok = Tokenizer::from_gguf(gguf::File::from_bytes(bytes));
    const auto expected = test::vocab_expected_ids("pre/qwen3-" + std::string(pre), "random", /*prefixed=*/false);
    ASSERT_EQ(expected.size(), texts.size());
    size_t mismatches = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      if (tok.encode(texts[i], false, false) != expected[i] && ++mismatches <= 3) {
        ADD_FAILURE() << "text " << i << ": '" << texts[i] << "'";
      }
    }
    EXPECT_EQ(mismatches, 0u);
  }
}

std::vector<std::string> split_with(const char* pre, std::string_view text) {
  const tokenizer::PreTokenizer p(*tokenizer::find_pre_tokenizer(pre));
  tokenizer::PreTokenizeScratch scratch;
  std::vector<std::string> words;
  p.split(text, scratch, [&](std::string_view w) { words.emplace_back(w); });
  return words;
}

using Words = std::vector<std::string>;

TEST(TokenizerPre, SplitsLikeTheReferenceRegexes) {
  const std::string_view text = "I've 12345 apples!!\n\n  x";
  EXPECT_EQ(split_with("llama-bpe", text), (Words{"I", "'ve", " ", "123", "45", " apples", "!!\n\n", " ", " x"}));
  EXPECT_EQ(split_with("gpt-2", text), (Words{"I", "'ve", " 12345", " apples", "!!", "\n\n ", " x"}));
  EXPECT_EQ(split_with("qwen2", text),
            (Words{"I", "'ve", " ", "1", "2", "3", "4", "5", " apples", "!!\n\n", " ", " x"}));
  EXPECT_EQ(split_with("starcoder", text),
            (Words{"I", "'ve", " ", "1", "2", "3", "4", "5", " apples", "!!", "\n\n ", " x"}));
  EXPECT_EQ(split_with("default", text), (Words{"I", "'", "ve", " ", "123", "45", " apples", "!!", "\n\n ", " x"}));
  EXPECT_EQ(split_with("tekken", "HelloWorld ABCdef"), (Words{"Hello", "World", " ABCdef"}));
  EXPECT_EQ(split_with("gpt-4o", "I'M here"), (Words{"I'M", " here"}));
  // Non-ASCII letters count as letters; non-ASCII spaces as spaces.
  EXPECT_EQ(split_with("llama-bpe", "caf\xC3\xA9\xE3\x80\x80x"), (Words{"caf\xC3\xA9", "\xE3\x80\x80x"}));
  // Invalid bytes become U+FFFD, as llama.cpp reads them.
  EXPECT_EQ(split_with("gpt-2", "a\xFF"), (Words{"a", "\xEF\xBF\xBD"}));
}

}  // namespace
}  // namespace quarrel

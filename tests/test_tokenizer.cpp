// Tokenizers against llama.cpp: every vocabulary in tests/data/vocab on
// llama.cpp's own tokenizer tests (upstream.inp), ours (visible.inp) and 200
// random strings over many scripts and character classes (random.inp), id for
// id; then the round trip back to text.
#include <gtest/gtest.h>

#include <algorithm>
#include <bitset>

#include <nlohmann/json.hpp>

#include "tokenizer_test_support.h"

namespace quarrel {
namespace {

using test::repo_path;

struct VocabCase {
  std::string vocab;
  std::string set;  // "upstream", "visible" or "random"
};

std::string case_name(const testing::TestParamInfo<VocabCase>& info) {
  std::string s = info.param.vocab + "_" + info.param.set;
  for (char& c : s) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return s;
}

std::vector<VocabCase> all_cases() {
  std::vector<VocabCase> cases;
  for (const auto& v : test::kVocabNames) {
    for (const char* set : {"upstream", "visible", "random"}) cases.push_back({v, set});
  }
  return cases;
}

class VocabGolden : public testing::TestWithParam<VocabCase> {};

TEST_P(VocabGolden, MatchesLlamaCpp) {
  const auto& tok = test::vocab_tokenizer(GetParam().vocab);
  const auto texts = test::vocab_test_texts(GetParam().set);
  const auto expected = test::vocab_expected_ids(GetParam().vocab, GetParam().set);
  ASSERT_EQ(texts.size(), expected.size()) << "one line of ids per test";
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(tok.encode(texts[i], /*add_special=*/false, /*parse_special=*/false), expected[i])
        << "test " << i << ": '" << texts[i] << "'";
  }
}

// The bytes a vocabulary can spell one at a time. Falcon's byte-level BPE
// lacks some (\v, 0x1C..0x1E, a few UTF-8 lead bytes), so text with them
// cannot come back.
std::bitset<256> spellable_bytes(const tokenizer::Tokenizer& tok) {
  std::bitset<256> bytes;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) {
    const std::string piece = tok.token_to_piece(id);
    if (piece.size() == 1) bytes.set(static_cast<uint8_t>(piece[0]));
  }
  return bytes;
}

// decode(encode(t)) == t wherever the vocabulary can spell t.
TEST_P(VocabGolden, RoundTrip) {
  const auto& tok = test::vocab_tokenizer(GetParam().vocab);
  const std::bitset<256> spellable = spellable_bytes(tok);
  size_t checked = 0;
  for (const std::string& text : test::vocab_test_texts(GetParam().set)) {
    if (!std::all_of(text.begin(), text.end(), [&](char c) { return spellable.test(static_cast<uint8_t>(c)); })) {
      continue;
    }
    ++checked;
    EXPECT_EQ(tok.decode(tok.encode(text, false, false)), text);
  }
  EXPECT_GT(checked, 0u);
}

// The streaming detokenizer gives the same text as decode(), one token at a time.
TEST_P(VocabGolden, StreamingMatchesDecode) {
  const auto& tok = test::vocab_tokenizer(GetParam().vocab);
  for (const std::string& text : test::vocab_test_texts(GetParam().set)) {
    const auto ids = tok.encode(text, false, false);
    tokenizer::Detokenizer detok(tok, {.render_special = false, .strip_leading_space = true});
    std::string streamed;
    for (int32_t id : ids) streamed += detok.push(id);
    streamed += detok.flush();
    EXPECT_EQ(streamed, tok.decode(ids));
  }
}

INSTANTIATE_TEST_SUITE_P(AllVocabs, VocabGolden, testing::ValuesIn(all_cases()), case_name);

// The prompt llama.cpp fed the tiny random model, from the model's own vocabulary.
TEST(Tokenizer, TinyModelPromptMatchesReference) {
  const auto ref = nlohmann::json::parse(test::read_text_file(repo_path("tests/data/ref/tiny-f32.capital.json")));
  const std::vector<int32_t> expected = ref["prompt_tokens"].get<std::vector<int32_t>>();
  const gguf::File f = gguf::File::open(repo_path("tests/data/models/tiny-f32.gguf"));
  const auto tok = tokenizer::Tokenizer::from_gguf(f);
  EXPECT_EQ(tok.model(), "llama");
  EXPECT_EQ(tok.encode(ref["prompt"].get<std::string>(), /*add_special=*/true, false), expected);
  const std::vector<int32_t> no_bos(expected.begin() + 1, expected.end());
  EXPECT_EQ(tok.encode("The capital of France is", false, false), no_bos);
  EXPECT_EQ(tok.decode(expected), "The capital of France is");
}

TEST(Tokenizer, EmptyText) {
  const auto& spm = test::vocab_tokenizer("llama-spm");
  EXPECT_TRUE(spm.encode("", false, false).empty());
  EXPECT_EQ(spm.encode("", true, false), std::vector<int32_t>{spm.bos()});
  const auto& gpt2 = test::vocab_tokenizer("gpt-2");
  EXPECT_TRUE(gpt2.encode("", true, true).empty());  // gpt-2 adds no BOS
}

TEST(Tokenizer, TokenToPiece) {
  const auto& spm = test::vocab_tokenizer("llama-spm");
  EXPECT_EQ(spm.token_to_piece(13), "\n");  // <0x0A>
  EXPECT_EQ(spm.token_to_piece(450), " The");
  EXPECT_EQ(spm.token_to_piece(spm.bos()), "");
  EXPECT_EQ(spm.token_to_piece(spm.bos(), /*render_special=*/true), "<s>");
  EXPECT_EQ(spm.token_to_piece(-1), "");
  EXPECT_EQ(spm.token_to_piece(spm.n_vocab()), "");
  const auto& l3 = test::vocab_tokenizer("llama3");
  EXPECT_EQ(l3.token_to_piece(l3.encode(" hello", false, false).at(0)), " hello");
  EXPECT_EQ(l3.token_to_piece(198), "\n");  // 'Ċ'
}

TEST(Tokenizer, InvalidUtf8NeverThrows) {
  const std::string bad = "ok \xff\xfe \xe2\x82 \xed\xa0\x80 \xc0\x80 \xf4\x90\x80\x80 end\xe2";
  for (const auto& name : test::kVocabNames) {
    const auto& tok = test::vocab_tokenizer(name);
    const auto ids = tok.encode(bad, true, true);
    EXPECT_FALSE(ids.empty()) << name;
    const std::string text = tok.decode(ids);
    EXPECT_NE(text.find("\xEF\xBF\xBD"), std::string::npos) << name;  // U+FFFD
    EXPECT_NE(text.find("end"), std::string::npos) << name;
  }
  // SPM spells unknown bytes with byte tokens, so it round-trips the valid part.
  const auto& spm = test::vocab_tokenizer("llama-spm");
  EXPECT_EQ(spm.decode(spm.encode("a\xff" "b", false, false)), "a\xEF\xBF\xBD" "b");
}

TEST(Tokenizer, CliTestFileMatchesGolden) {
  std::string out;
  const std::string args = "tokenize -m " + repo_path("tests/data/vocab/vocab-llama3.gguf") + " --test-file " +
                           repo_path("tests/data/vocab/upstream.inp");
  ASSERT_EQ(test::run_cli(args, &out), 0) << out;
  EXPECT_EQ(out, test::read_text_file(repo_path("tests/data/vocab/vocab-llama3.upstream.out")));
}

TEST(Tokenizer, CliPrintsIds) {
  std::string out;
  const std::string model = repo_path("tests/data/models/tiny-f32.gguf");
  ASSERT_EQ(test::run_cli("tokenize -m " + model + " -p 'The capital of France is' --ids", &out), 0) << out;
  EXPECT_EQ(out, "[1, 450, 2117, 2410, 310, 3444, 338]\n");
  ASSERT_EQ(test::run_cli("tokenize -m " + model + " -p 'The capital' --no-bos", &out), 0) << out;
  EXPECT_EQ(out, "   450 -> ' The'\n  2117 -> ' cap'\n  2410 -> 'ital'\n");
  EXPECT_NE(test::run_cli("tokenize -m /nonexistent.gguf -p x", &out), 0);
  EXPECT_NE(out.find("error"), std::string::npos);
}

}  // namespace
}  // namespace quarrel

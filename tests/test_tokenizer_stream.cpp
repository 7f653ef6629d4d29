// The streaming detokenizer: never part of a UTF-8 character, invalid bytes
// as U+FFFD, and the same text as decode().
#include <gtest/gtest.h>

#include "tokenizer/unicode.h"
#include "tokenizer_test_support.h"

namespace quarrel {
namespace {

using tokenizer::Detokenizer;

const std::string kReplacement = "\xEF\xBF\xBD";

// SPM byte tokens are <0x00>..<0xFF> at ids 3..258 in Llama 2's vocabulary.
int32_t byte_id(uint8_t b) { return 3 + b; }

bool is_valid_utf8(const std::string& s) {
  std::string out;
  return tokenizer::utf8_sanitize(s, out, true) == s.size() && out == s;
}

TEST(Detokenizer, HoldsBackASplitCharacter) {
  const auto& tok = test::vocab_tokenizer("llama-spm");
  const std::string llama = "\xF0\x9F\xA6\x99";  // 🦙 has no token: four byte tokens
  const auto ids = tok.encode(llama, false, false);
  ASSERT_EQ(ids, (std::vector<int32_t>{29871, byte_id(0xF0), byte_id(0x9F), byte_id(0xA6), byte_id(0x99)}));
  Detokenizer d(tok);
  EXPECT_EQ(d.push(ids[0]), " ");
  EXPECT_EQ(d.push(ids[1]), "");
  EXPECT_EQ(d.push(ids[2]), "");
  EXPECT_EQ(d.push(ids[3]), "");
  EXPECT_EQ(d.push(ids[4]), llama);
  EXPECT_EQ(d.flush(), "");
}

TEST(Detokenizer, InvalidBytesBecomeReplacementCharacters) {
  const auto& tok = test::vocab_tokenizer("llama-spm");
  Detokenizer d(tok);
  EXPECT_EQ(d.push(byte_id(0xFF)), kReplacement);  // never valid
  EXPECT_EQ(d.push(byte_id(0xE2)), "");            // could start "€"
  EXPECT_EQ(d.push(byte_id(0x82)), "");
  EXPECT_EQ(d.push(byte_id('a')), kReplacement + "a");  // ... but did not
  EXPECT_EQ(d.push(byte_id(0xC0)), kReplacement);       // overlong lead
  EXPECT_EQ(d.push(byte_id(0xED)), "");
  EXPECT_EQ(d.push(byte_id(0xA0)), kReplacement + kReplacement);  // a surrogate
  EXPECT_EQ(d.push(byte_id(0xF0)), "");
  EXPECT_EQ(d.flush(), kReplacement);  // the stream ended mid-character
  EXPECT_EQ(d.flush(), "");
}

TEST(Detokenizer, ByteLevelBpeCharactersSplitAcrossTokens) {
  // Llama 3 spells rare characters with tokens that each hold part of the
  // UTF-8 bytes; the stream must still only emit whole characters.
  const auto& tok = test::vocab_tokenizer("llama3");
  const std::string text = "\xE1\x9E\x80\xE1\x9E\xB6 \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F \xF0\x9F\xA6\x99";
  const auto ids = tok.encode(text, false, false);
  Detokenizer d(tok);
  std::string all;
  size_t partial_tokens = 0;
  for (int32_t id : ids) {
    const std::string piece = d.push(id);
    EXPECT_TRUE(is_valid_utf8(piece));
    partial_tokens += !is_valid_utf8(tok.token_to_piece(id));
    all += piece;
  }
  all += d.flush();
  EXPECT_GT(partial_tokens, 0u) << "the text should exercise tokens that split a character";
  EXPECT_EQ(all, text);
}

TEST(Detokenizer, ControlTokensRenderOnlyWhenAsked) {
  const auto& tok = test::vocab_tokenizer("llama3");
  Detokenizer plain(tok);
  EXPECT_EQ(plain.push(128009), "");
  Detokenizer special(tok, {.render_special = true, .strip_leading_space = false});
  EXPECT_EQ(special.push(128009), "<|eot_id|>");
}

TEST(Detokenizer, LeadingSpaceIsKeptByDefault) {
  // A stream continues a prompt, so its first space is real; decode() of a
  // whole encode() result drops the one SentencePiece added.
  const auto& tok = test::vocab_tokenizer("llama-spm");
  const auto ids = tok.encode("Hello world", false, false);
  Detokenizer d(tok);
  std::string s;
  for (int32_t id : ids) s += d.push(id);
  EXPECT_EQ(s, " Hello world");
  EXPECT_EQ(tok.decode(ids), "Hello world");
  Detokenizer stripping(tok, {.render_special = false, .strip_leading_space = true});
  s.clear();
  for (int32_t id : tok.encode("Hello world", true, false)) s += stripping.push(id);
  EXPECT_EQ(s, "Hello world");
}

TEST(Detokenizer, OutOfRangeIdsAreIgnored) {
  const auto& tok = test::vocab_tokenizer("gpt-2");
  Detokenizer d(tok);
  EXPECT_EQ(d.push(-5), "");
  EXPECT_EQ(d.push(1 << 30), "");
  EXPECT_EQ(tok.decode(std::vector<int32_t>{-1, 31373, 1 << 30}), "hello");
}

TEST(Utf8, SanitizeFollowsMaximalSubparts) {
  struct Case {
    std::string in, out;
  };
  const Case cases[] = {
      {"abc", "abc"},
      {"\xC3\xA9", "\xC3\xA9"},
      {"\x80", kReplacement},
      {"\xE2\x82", kReplacement},               // truncated: one U+FFFD
      {"\xE2\x82" "a", kReplacement + "a"},
      {"\xF4\x90\x80\x80", kReplacement + kReplacement + kReplacement + kReplacement},  // > U+10FFFF
      {"\xF0\x9F\xA6\x99", "\xF0\x9F\xA6\x99"},
      {"\xEF\xBF\xBD", kReplacement},
  };
  for (const auto& c : cases) {
    std::string out;
    EXPECT_EQ(tokenizer::utf8_sanitize(c.in, out, true), c.in.size());
    EXPECT_EQ(out, c.out);
  }
  std::string out;
  EXPECT_EQ(tokenizer::utf8_sanitize("a\xF0\x9F", out, /*final=*/false), 1u);
  EXPECT_EQ(out, "a");
}

}  // namespace
}  // namespace quarrel

#include "tokenizer/vocab.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "common/error.h"
#include "gguf/file.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

namespace quarrel::tokenizer {

namespace {

// GGUF token types (llama.cpp's llama_token_type).
enum GgufTokenType : int64_t {
  kTypeUndefined = 0,
  kTypeNormal = 1,
  kTypeUnknown = 2,
  kTypeControl = 3,
  kTypeUserDefined = 4,
  kTypeUnused = 5,
  kTypeByte = 6,
};

uint16_t attr_of_type(int64_t type) {
  switch (type) {
    case kTypeNormal: return kAttrNormal;
    case kTypeUnknown: return kAttrUnknown;
    case kTypeControl: return kAttrControl;
    case kTypeUserDefined: return kAttrUserDefined;
    case kTypeUnused: return kAttrUnused;
    case kTypeByte: return kAttrByte;
    default: return kAttrUndefined;
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "<0xNN>" -> NN, or -1 when the text is not of that form.
int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void warn(const std::string& msg) { std::fprintf(stderr, "warning: tokenizer: %s\n", msg.c_str()); }

const gguf::Array* string_array(const gguf::File& f, std::string_view key) {
  const gguf::Array* a = f.get_array(key);
  if (a && a->elem_type != gguf::ValueType::STRING) {
    fail("key '{}': expected an array of strings, got an array of {}", key, value_type_name(a->elem_type));
  }
  return a;
}

// Token texts whose presence marks a role (llama.cpp's lists, Dec 2025). A
// token found this way is forced to be a control token, as llama.cpp does;
// that decides whether it is split out of text when parse_special is off.
constexpr std::string_view kEotNames[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
    "<end_of_utterance>"};
constexpr std::string_view kEomNames[] = {"<|eom_id|>"};
constexpr std::string_view kFimPreNames[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
    "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>"};
constexpr std::string_view kFimSufNames[] = {
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
    "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>"};
constexpr std::string_view kFimMidNames[] = {
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
    "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>"};
constexpr std::string_view kFimPadNames[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
constexpr std::string_view kFimRepNames[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                                             "<reponame>"};
constexpr std::string_view kFimSepNames[] = {"<|file_sep|>"};
constexpr std::string_view kEogNames[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};

struct SpecialKey {
  std::string_view key;
  int32_t Vocab::*id;
};
constexpr SpecialKey kSpecialKeys[] = {
    {"tokenizer.ggml.bos_token_id", &Vocab::bos},
    {"tokenizer.ggml.eos_token_id", &Vocab::eos},
    {"tokenizer.ggml.eot_token_id", &Vocab::eot},
    {"tokenizer.ggml.eom_token_id", &Vocab::eom},
    {"tokenizer.ggml.unknown_token_id", &Vocab::unk},
    {"tokenizer.ggml.seperator_token_id", &Vocab::sep},  // sic: the GGUF key is misspelt
    {"tokenizer.ggml.padding_token_id", &Vocab::pad},
    {"tokenizer.ggml.fim_pre_token_id", &Vocab::fim_pre},
    {"tokenizer.ggml.fim_suf_token_id", &Vocab::fim_suf},
    {"tokenizer.ggml.fim_mid_token_id", &Vocab::fim_mid},
    {"tokenizer.ggml.fim_pad_token_id", &Vocab::fim_pad},
    {"tokenizer.ggml.fim_rep_token_id", &Vocab::fim_rep},
    {"tokenizer.ggml.fim_sep_token_id", &Vocab::fim_sep},
    {"tokenizer.ggml.prefix_token_id", &Vocab::fim_pre},  // deprecated spellings
    {"tokenizer.ggml.suffix_token_id", &Vocab::fim_suf},
    {"tokenizer.ggml.middle_token_id", &Vocab::fim_mid},
};

void load_tokens(Vocab& v, const gguf::File& f) {
  const gguf::Array* tokens = string_array(f, "tokenizer.ggml.tokens");
  if (!tokens || tokens->strings.empty()) fail("key 'tokenizer.ggml.tokens': missing or empty");
  const size_t n = tokens->strings.size();
  if (n > static_cast<size_t>(INT32_MAX / 2)) fail("key 'tokenizer.ggml.tokens': {} tokens is too many", n);

  const gguf::Array* scores = f.get_array("tokenizer.ggml.scores");
  if (scores) {
    const size_t got = std::max(scores->floats.size(), scores->ints.size());
    if (got < n) fail("key 'tokenizer.ggml.scores': {} scores for {} tokens", got, n);
  }
  const gguf::Array* types = f.get_array("tokenizer.ggml.token_type");
  if (types && types->ints.size() < n) {
    fail("key 'tokenizer.ggml.token_type': {} types for {} tokens", types->ints.size(), n);
  }

  size_t bytes = 0;
  for (auto s : tokens->strings) bytes += s.size();
  v.tokens.reserve(n, bytes + 16);
  v.scores.resize(n, 0.0f);
  v.attrs.resize(n, kAttrNormal);
  for (size_t i = 0; i < n; ++i) {
    const std::string_view s = tokens->strings[i];
    if (s.empty()) {
      v.tokens.push_back("[EMPTY_" + std::to_string(i) + "]");  // as llama.cpp names them
    } else {
      v.tokens.push_back(s);
    }
    if (scores) {
      v.scores[i] = scores->floats.empty() ? static_cast<float>(scores->ints[i])
                                           : static_cast<float>(scores->floats[i]);
    }
    if (types) v.attrs[i] = attr_of_type(types->ints[i]);
  }
  if (const int32_t dup = v.tokens.build_index(); dup >= 0) {
    fail("key 'tokenizer.ggml.tokens': token {} ('{}') repeats id {}", dup, v.text(dup),
         v.find(v.text(dup)));
  }
  for (int32_t id = 0; id < v.size(); ++id) {
    if (v.has_attr(id, kAttrByte) && parse_byte_token(v.text(id)) < 0) {
      fail("key 'tokenizer.ggml.tokens': token {} has type BYTE but text '{}' is not of the form <0xNN>",
           id, v.text(id));
    }
  }
}

void load_merges(Vocab& v, const gguf::File& f) {
  const gguf::Array* merges = string_array(f, "tokenizer.ggml.merges");
  if (!merges) fail("key 'tokenizer.ggml.merges': missing (required by a gpt2 tokenizer)");
  v.merges.reserve(merges->strings.size());
  for (size_t i = 0; i < merges->strings.size(); ++i) {
    const std::string_view line = merges->strings[i];
    // llama.cpp splits at the first space after the first byte.
    const size_t pos = line.size() > 1 ? line.find(' ', 1) : std::string_view::npos;
    if (pos == std::string_view::npos) continue;
    const std::string_view left = line.substr(0, pos), right = line.substr(pos + 1);
    const int32_t a = v.find(left), b = v.find(right);
    const int32_t rank = static_cast<int32_t>(i);
    if (a >= 0 && b >= 0) {
      v.merges.insert(a, b, rank);
    } else {
      v.merges_by_text.emplace(std::string(line), rank);
    }
  }
}

void resolve_pre_tokenizer(Vocab& v, const gguf::File& f) {
  const auto pre = f.get_string("tokenizer.ggml.pre");
  v.pre = pre ? std::string(*pre) : std::string();
  v.pre_spec = pre ? find_pre_tokenizer(*pre) : nullptr;
  if (v.pre_spec) return;
  // Llama 3 files converted before the pre key existed.
  if (v.size() == 128256 && v.text(128000) == "<|begin_of_text|>") {
    v.pre_spec = find_pre_tokenizer("llama-bpe");
    v.pre = "llama-bpe";
    warn(pre ? fmt::format("unknown pre-tokenizer '{}'; the vocabulary is Llama 3's, using 'llama-bpe'", *pre)
             : std::string("missing pre-tokenizer; the vocabulary is Llama 3's, using 'llama-bpe'"));
    return;
  }
  warn(pre ? fmt::format("unknown pre-tokenizer '{}'; falling back to GPT-2 style splitting ('default')", *pre)
           : std::string("missing pre-tokenizer; falling back to GPT-2 style splitting ('default')"));
  v.pre_spec = &default_pre_tokenizer();
  v.pre = "default";
}

void load_special_ids(Vocab& v, const gguf::File& f) {
  for (const auto& sk : kSpecialKeys) {
    int32_t& id = v.*sk.id;
    if (id >= v.size()) id = -1;  // a default beyond this vocabulary
    const auto value = f.get_int(sk.key);
    if (!value) continue;
    if (*value < 0 || *value >= v.size()) {
      warn(fmt::format("key '{}': id {} is outside the vocabulary of {}; ignored", sk.key, *value, v.size()));
      continue;
    }
    id = static_cast<int32_t>(*value);
  }
  if (auto b = f.get_bool("tokenizer.ggml.add_bos_token")) v.add_bos = *b;
  if (auto b = f.get_bool("tokenizer.ggml.add_eos_token")) v.add_eos = *b;
  if (v.add_bos && v.bos < 0) fail("key 'tokenizer.ggml.add_bos_token' is true but no BOS token is set");
  if (v.add_eos && v.eos < 0) fail("key 'tokenizer.ggml.add_eos_token' is true but no EOS token is set");
}

// Finds role tokens by their text and fixes their attributes, as llama.cpp
// does at load time; builds the end-of-generation set.
void classify_special_tokens(Vocab& v) {
  // llama.cpp takes whichever name its hash map yields first; the first in
  // list order is deterministic and prefers the specific names (<|eot_id|>
  // over <|end_of_text|>).
  const auto find_named = [&](std::span<const std::string_view> names) {
    for (auto name : names) {
      if (const int32_t id = v.find(name); id >= 0) return id;
    }
    return -1;
  };
  const auto make_control = [&](int32_t id) {
    if (id >= 0) v.attrs[id] |= kAttrControl;
  };
  struct Role {
    int32_t Vocab::*id;
    std::span<const std::string_view> names;
  };
  const Role roles[] = {{&Vocab::eot, kEotNames},        {&Vocab::eom, kEomNames},
                        {&Vocab::fim_pre, kFimPreNames}, {&Vocab::fim_suf, kFimSufNames},
                        {&Vocab::fim_mid, kFimMidNames}, {&Vocab::fim_pad, kFimPadNames},
                        {&Vocab::fim_rep, kFimRepNames}, {&Vocab::fim_sep, kFimSepNames}};
  for (const Role& r : roles) {
    if (v.*r.id >= 0) continue;
    v.*r.id = find_named(r.names);
    make_control(v.*r.id);
  }

  std::vector<int32_t> eog = {v.fim_pad, v.fim_rep, v.fim_sep, v.eos, v.eot, v.eom};
  for (auto name : kEogNames) {
    const int32_t id = v.find(name);
    eog.push_back(id);
    make_control(id);
  }
  // gpt-oss: these structure tokens must always be rendered.
  for (std::string_view name : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
    if (const int32_t id = v.find(name); id >= 0) v.attrs[id] = kAttrUserDefined;
  }
  eog.erase(std::remove(eog.begin(), eog.end(), -1), eog.end());
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  // o200k_harmony: with <|return|> and <|call|>, <|end|> ends a message, not generation.
  const int32_t end = v.find("<|end|>");
  const auto in_eog = [&](int32_t id) { return id >= 0 && std::binary_search(eog.begin(), eog.end(), id); };
  if (in_eog(end) && in_eog(v.find("<|return|>")) && in_eog(v.find("<|call|>"))) {
    eog.erase(std::find(eog.begin(), eog.end(), end));
    v.attrs[end] = kAttrUserDefined;
  }
  v.eog = std::move(eog);
}

void build_special_token_list(Vocab& v, const gguf::File& f) {
  for (int32_t id = 0; id < v.size(); ++id) {
    if (v.has_attr(id, kAttrControl | kAttrUserDefined | kAttrUnknown)) v.special_tokens.push_back(id);
  }
  // Longest first, so that a token wins over its own prefix.
  std::stable_sort(v.special_tokens.begin(), v.special_tokens.end(),
                   [&](int32_t a, int32_t b) { return v.text(a).size() > v.text(b).size(); });

  // Phi-3 GGUFs carry no strip flags, but its tokenizer strips the whitespace
  // after special tokens; llama.cpp recognises it by name.
  std::string name(f.get_string("general.name").value_or(""));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : v.special_tokens) v.attrs[id] |= kAttrRstrip;
    if (const int32_t id = v.find("</s>"); id >= 0) v.attrs[id] |= kAttrRstrip;
    for (std::string_view t : {"<unk>", "<s>", "<|endoftext|>"}) {
      if (const int32_t id = v.find(t); id >= 0) v.attrs[id] &= ~kAttrRstrip;
    }
  }
}

// SPM merges can be run word by word (and cached) when no token joins a
// non-space symbol to a following "▁": then no merge crosses the start of a
// "▁"-run, and every such position splits the problem exactly.
bool spm_words_are_independent(const Vocab& v) {
  static constexpr std::string_view kSpace = "\xE2\x96\x81";
  for (int32_t id = 0; id < v.size(); ++id) {
    const std::string_view t = v.text(id);
    bool prev_is_other = false;
    for (size_t i = 0; i < t.size();) {
      const size_t len = std::min(utf8_lead_length(static_cast<uint8_t>(t[i])), t.size() - i);
      const bool is_space = t.substr(i, len) == kSpace;
      if (is_space && prev_is_other) return false;
      prev_is_other = !is_space;
      i += len;
    }
  }
  return true;
}

}  // namespace

bool Vocab::is_eog(int32_t id) const { return std::binary_search(eog.begin(), eog.end(), id); }

uint8_t Vocab::byte_value(int32_t id) const { return static_cast<uint8_t>(parse_byte_token(text(id))); }

Vocab Vocab::load(const gguf::File& f) {
  Vocab v;
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) fail("key 'tokenizer.ggml.model': missing");
  v.model = std::string(*model);
  if (v.model == "llama") {
    v.type = VocabType::Spm;
  } else if (v.model == "gpt2") {
    v.type = VocabType::Bpe;
  } else {
    fail("key 'tokenizer.ggml.model': unsupported tokenizer '{}' (expected 'llama' or 'gpt2')", v.model);
  }

  load_tokens(v, f);

  if (v.type == VocabType::Spm) {
    v.bos = 1, v.eos = 2, v.unk = 0;
    v.add_space_prefix = true;
    v.add_bos = true;
    v.pre = std::string(f.get_string("tokenizer.ggml.pre").value_or(""));
  } else {
    v.bos = 11, v.eos = 11;
    resolve_pre_tokenizer(v, f);
    v.ignore_merges = v.pre_spec->ignore_merges;
    v.add_bos = v.pre_spec->add_bos;
    load_merges(v, f);
  }
  if (auto b = f.get_bool("tokenizer.ggml.add_space_prefix")) v.add_space_prefix = *b;
  if (auto b = f.get_bool("tokenizer.ggml.remove_extra_whitespaces")) v.remove_extra_whitespaces = *b;
  v.chat_template = std::string(f.get_string("tokenizer.chat_template").value_or(""));

  load_special_ids(v, f);
  classify_special_tokens(v);
  build_special_token_list(v, f);

  for (int b = 0; b < 256; ++b) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    const char name[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    const char raw = static_cast<char>(b);
    int32_t id = v.find(std::string_view(name, 6));
    if (id < 0) id = v.find(std::string_view(&raw, 1));
    v.byte_token[b] = id;
    const auto& map = byte_unicode_map();
    v.bpe_byte_char_token[b] = v.find(std::string_view(map.utf8[b].data(), map.utf8_len[b]));
  }
  if (v.type == VocabType::Spm) v.spm_words_independent = spm_words_are_independent(v);
  return v;
}

}  // namespace quarrel::tokenizer

#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "common/error.h"
#include "tokenizer/unicode.h"

namespace quarrel::tokenizer {

namespace {

// The expressions are llama.cpp's (src/llama-vocab.cpp, Dec 2025), which are
// the Hugging Face ones with case-insensitive groups spelled out.
constexpr const char* kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
constexpr const char* kLlama3 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2 =
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kTekken =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|"
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|"
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kGpt4o =
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// Cased letters as DeepSeek LLM's tokenizer.json lists them.
constexpr const char* kDeepseekLetters =
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
    "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"
    "\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}"
    "\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}"
    "\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"
    "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}"
    "\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
    "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}"
    "\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"
    "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}"
    "\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}"
    "\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
    "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
    "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+";
constexpr const char* kCjkHangul = "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+";

constexpr PreRegex kDefaultRegexes[] = {
    {"[\\p{P}\\$\\+<=>\\^~\\|]+", false},
    {kGpt2, false},
    {"\\p{N}+", false},
    {"[0-9][0-9][0-9]", false},
};
constexpr PreRegex kGpt2Regexes[] = {{kGpt2, false}};
constexpr PreRegex kLlama3Regexes[] = {{kLlama3, false}};
constexpr PreRegex kQwen2Regexes[] = {{kQwen2, false}};
constexpr PreRegex kStarcoderRegexes[] = {{"\\p{N}", false}, {kGpt2, false}};
constexpr PreRegex kDeepseekLlmRegexes[] = {
    {"[\r\n]", false},
    {kDeepseekLetters, true},
    {"\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", true},
    {"\\s+$", false},
    {kCjkHangul, true},
    {"\\p{N}+", false},
};
constexpr PreRegex kDeepseekCoderRegexes[] = {
    {"[\r\n]", false}, {"\\s?\\p{L}+", false}, {"\\s?\\p{P}+", false},
    {kCjkHangul, true}, {"\\p{N}", false},
};
constexpr PreRegex kDeepseekV3Regexes[] = {
    {"\\p{N}{1,3}", false},
    {"[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+", true},
    {"[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
     " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
     false},
};
constexpr PreRegex kFalconRegexes[] = {
    {"[\\p{P}\\$\\+<=>\\^~\\|`]+", false}, {kGpt2, false}, {"[0-9][0-9][0-9]", false}};
constexpr PreRegex kTekkenRegexes[] = {{kTekken, false}};
constexpr PreRegex kGpt4oRegexes[] = {{kGpt4o, false}};

constexpr std::string_view kDefaultNames[] = {"default"};
constexpr std::string_view kGpt2Names[] = {"gpt-2", "phi-2", "mpt", "olmo", "gpt-neox"};
constexpr std::string_view kLlama3Names[] = {"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral"};
constexpr std::string_view kDbrxNames[] = {"dbrx", "smaug-bpe"};
constexpr std::string_view kQwen2Names[] = {"qwen2", "stablelm2", "deepseek-r1-qwen", "megrez"};
constexpr std::string_view kStarcoderNames[] = {"starcoder", "refact", "command-r", "smollm", "codeshell"};
constexpr std::string_view kDeepseekLlmNames[] = {"deepseek-llm"};
constexpr std::string_view kDeepseekCoderNames[] = {"deepseek-coder"};
constexpr std::string_view kDeepseekV3Names[] = {"deepseek-v3"};
constexpr std::string_view kFalconNames[] = {"falcon"};
constexpr std::string_view kTekkenNames[] = {"tekken"};
constexpr std::string_view kGpt4oNames[] = {"gpt-4o", "llama4"};

const PreTokenizerSpec kSpecs[] = {
    {kDefaultNames, kDefaultRegexes, false, false},
    {kGpt2Names, kGpt2Regexes, false, false},
    {kLlama3Names, kLlama3Regexes, true, true},
    {kDbrxNames, kLlama3Regexes, false, false},
    {kQwen2Names, kQwen2Regexes, false, false},
    {kStarcoderNames, kStarcoderRegexes, false, false},
    {kDeepseekLlmNames, kDeepseekLlmRegexes, false, false},
    {kDeepseekCoderNames, kDeepseekCoderRegexes, false, false},
    {kDeepseekV3Names, kDeepseekV3Regexes, false, false},
    {kFalconNames, kFalconRegexes, false, false},
    {kTekkenNames, kTekkenRegexes, true, true},
    {kGpt4oNames, kGpt4oRegexes, false, false},
};

// The byte a code point collapses to: ASCII stays, other code points become
// their class, as in llama.cpp's unicode_regex_split.
constexpr char kCollapsedOther = '\xD0', kCollapsedNumber = '\xD1', kCollapsedLetter = '\xD2',
               kCollapsedPunct = '\xD3', kCollapsedMark = '\xD4', kCollapsedSymbol = '\xD5';

char collapse(uint32_t cpt) {
  if (cpt < 0x80) return static_cast<char>(cpt);
  if (codepoint_is_whitespace(cpt)) return '\v';
  switch (codepoint_class(cpt)) {
    case CodepointClass::Number: return kCollapsedNumber;
    case CodepointClass::Letter: return kCollapsedLetter;
    case CodepointClass::Punctuation: return kCollapsedPunct;
    case CodepointClass::Mark: return kCollapsedMark;
    case CodepointClass::Symbol: return kCollapsedSymbol;
    default: return kCollapsedOther;
  }
}

// \p{..} -> a class of the collapsed byte plus the ASCII members, exactly as
// llama.cpp rewrites it (ASCII '~' is in neither \p{P} nor \p{S} there).
std::string collapsed_class(std::string_view name) {
  if (name == "N") return std::string(1, kCollapsedNumber) + "0-9";
  if (name == "L" || name == "Lu" || name == "Ll" || name == "Lt" || name == "Lm" || name == "Lo") {
    return std::string(1, kCollapsedLetter) + "A-Za-z";
  }
  if (name == "P") return std::string(1, kCollapsedPunct) + "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}";
  if (name == "M") return std::string(1, kCollapsedMark);
  if (name == "S") return std::string(1, kCollapsedSymbol) + "\\$\\+<->^`\\|";
  return {};
}

// Rewrites a pattern for the collapsed text, tracking [...] the way llama.cpp
// does so that a class inside brackets is not bracketed again.
std::string collapse_pattern(std::string_view re) {
  std::string out;
  bool inside = false;
  for (size_t i = 0; i < re.size(); ++i) {
    if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) {
      out += '[';
      inside = true;
      continue;
    }
    if (inside && re[i] == ']' && re[i - 1] != '\\') {
      out += ']';
      inside = false;
      continue;
    }
    if (re[i] == '\\' && i + 3 < re.size() && re[i + 1] == 'p' && re[i + 2] == '{') {
      const size_t close = re.find('}', i + 3);
      if (close != std::string_view::npos && close <= i + 10) {
        const std::string cls = collapsed_class(re.substr(i + 3, close - i - 3));
        if (!cls.empty()) {
          out += inside ? cls : "[" + cls + "]";
          i = close;
          continue;
        }
      }
    }
    out += re[i];
  }
  return out;
}

}  // namespace

const PreTokenizerSpec* find_pre_tokenizer(std::string_view pre) {
  for (const auto& spec : kSpecs) {
    if (std::find(spec.names.begin(), spec.names.end(), pre) != spec.names.end()) return &spec;
  }
  return nullptr;
}

const PreTokenizerSpec& default_pre_tokenizer() { return kSpecs[0]; }

struct PreTokenizeScratch::Pcre {
  pcre2_match_data* match = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  Pcre() {
    match = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    if (!match || !context) fail("pre-tokenizer: out of memory creating PCRE2 match data");
  }
  ~Pcre() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(match);
  }
  // Repeated groups (tekken, gpt-4o) keep state per iteration, so a long run
  // of letters can outgrow the default 32 KiB JIT stack; the larger one is
  // only made when that happens.
  bool grow_jit_stack() {
    if (stack) return false;
    stack = pcre2_jit_stack_create(256 * 1024, 64 * 1024 * 1024, nullptr);
    if (!stack) return false;
    pcre2_jit_stack_assign(context, nullptr, stack);
    return true;
  }
};

PreTokenizeScratch::PreTokenizeScratch() : pcre_(std::make_unique<Pcre>()) {}
PreTokenizeScratch::~PreTokenizeScratch() = default;

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  bool codepoints = false;
  ~Compiled() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer(const PreTokenizerSpec& spec) {
  for (const PreRegex& r : spec.regexes) {
    auto c = std::make_unique<Compiled>();
    c->codepoints = r.codepoints;
    const std::string pattern = r.codepoints ? std::string(r.pattern) : collapse_pattern(r.pattern);
    // $ must not match before a final newline (ECMAScript semantics), and no
    // group needs capturing.
    uint32_t options = PCRE2_DOLLAR_ENDONLY | PCRE2_NO_AUTO_CAPTURE;
    if (r.codepoints) options |= PCRE2_UTF;
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err,
                            &err_offset, nullptr);
    if (!c->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail("pre-tokenizer regex '{}': {} at offset {}", r.pattern, reinterpret_cast<const char*>(msg),
           err_offset);
    }
    c->jit = pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE) == 0;
    regexes_.push_back(std::move(c));
  }
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::run(std::string_view text, PreTokenizeScratch& s) const {
  bool need_collapsed = false, need_utf = false;
  for (const auto& r : regexes_) (r->codepoints ? need_utf : need_collapsed) = true;

  // Decode as llama.cpp does. Its words are re-encoded from the code points,
  // which changes the bytes only where the input was not valid UTF-8 (each
  // bad byte becomes U+FFFD); then the words are cut from a re-encoded copy.
  s.norm_offset_.clear();
  s.collapsed_.clear();
  bool reencode = false;
  for (size_t pos = 0; pos < text.size();) {
    const auto b = static_cast<uint8_t>(text[pos]);
    s.norm_offset_.push_back(static_cast<uint32_t>(pos));
    if (b < 0x80) {
      if (need_collapsed) s.collapsed_.push_back(static_cast<char>(b));
      ++pos;
      continue;
    }
    const size_t start = pos;
    const uint32_t c = utf8_decode_lenient(text, pos);
    const size_t encoded = c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (pos - start != encoded) reencode = true;
    if (need_collapsed) s.collapsed_.push_back(collapse(c));
  }
  const size_t n = s.norm_offset_.size();
  s.norm_offset_.push_back(static_cast<uint32_t>(text.size()));
  s.norm_view_ = text;
  if (reencode) {
    s.norm_.clear();
    for (size_t pos = 0, i = 0; pos < text.size(); ++i) {
      s.norm_offset_[i] = static_cast<uint32_t>(s.norm_.size());
      utf8_append(s.norm_, utf8_decode_lenient(text, pos));
    }
    s.norm_offset_[n] = static_cast<uint32_t>(s.norm_.size());
    s.norm_view_ = s.norm_;
  }
  if (need_utf) {
    s.utf_.clear();
    s.utf_offset_.clear();
    for (size_t pos = 0; pos < s.norm_view_.size();) {
      uint32_t c = utf8_decode_lenient(s.norm_view_, pos);
      s.utf_offset_.push_back(static_cast<uint32_t>(s.utf_.size()));
      if (c >= 0x80 && codepoint_is_whitespace(c)) c = '\v';
      if (c >= 0xD800 && c <= 0xDFFF) c = kReplacementChar;  // PCRE2 needs valid UTF-8
      utf8_append(s.utf_, c);
    }
    s.utf_offset_.push_back(static_cast<uint32_t>(s.utf_.size()));
  }

  s.pieces_.clear();
  if (n > 0) s.pieces_.push_back(static_cast<uint32_t>(n));
  for (const auto& r : regexes_) {
    s.next_pieces_.clear();
    size_t start = 0;  // code point index of the current piece
    for (uint32_t len : s.pieces_) {
      // Subject and offsets are in bytes; for the collapsed text a byte is a
      // code point, for the UTF view they are mapped back below.
      const char* subject;
      size_t subject_len;
      if (r->codepoints) {
        subject = s.utf_.data() + s.utf_offset_[start];
        subject_len = s.utf_offset_[start + len] - s.utf_offset_[start];
      } else {
        subject = s.collapsed_.data() + start;
        subject_len = len;
      }
      const auto to_cpt = [&](size_t byte) -> size_t {
        if (!r->codepoints) return byte;
        const uint32_t target = s.utf_offset_[start] + static_cast<uint32_t>(byte);
        const auto first = s.utf_offset_.begin() + static_cast<ptrdiff_t>(start);
        return static_cast<size_t>(std::lower_bound(first, first + len + 1, target) - first);
      };
      size_t prev_end = 0, offset = 0;  // in bytes of the subject
      while (offset < subject_len) {
        const auto subj = reinterpret_cast<PCRE2_SPTR>(subject);
        const uint32_t opts = r->codepoints ? PCRE2_NO_UTF_CHECK : 0;
        const auto jit_match = [&] {
          return pcre2_jit_match(r->code, subj, subject_len, offset, opts, s.pcre_->match, s.pcre_->context);
        };
        int rc = r->jit ? jit_match() : PCRE2_ERROR_JIT_BADOPTION;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && s.pcre_->grow_jit_stack()) rc = jit_match();
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
          rc = pcre2_match(r->code, subj, subject_len, offset, opts | PCRE2_NO_JIT, s.pcre_->match,
                           s.pcre_->context);
        }
        if (rc < 0) break;  // no match, or a resource limit: the rest stays one piece
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.pcre_->match);
        const size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match: step over one character and search on
          offset = ms + 1;
          while (r->codepoints && offset < subject_len && (subject[offset] & 0xC0) == 0x80) ++offset;
          continue;
        }
        if (ms > prev_end) s.next_pieces_.push_back(static_cast<uint32_t>(to_cpt(ms) - to_cpt(prev_end)));
        s.next_pieces_.push_back(static_cast<uint32_t>(to_cpt(me) - to_cpt(ms)));
        prev_end = offset = me;
      }
      if (prev_end < subject_len) {
        s.next_pieces_.push_back(static_cast<uint32_t>(len - to_cpt(prev_end)));
      }
      start += len;
    }
    s.pieces_.swap(s.next_pieces_);
  }
}

}  // namespace quarrel::tokenizer

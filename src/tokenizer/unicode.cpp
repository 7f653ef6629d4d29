#include "tokenizer/unicode.h"

#include <vector>

namespace quarrel::tokenizer {

namespace {

constexpr uint8_t kWhitespaceBit = 8;
constexpr uint32_t kMaxCodepoint = 0x10FFFF;

// One byte per code point: 1.1 MB built once, so classifying is one load.
const std::vector<uint8_t>& codepoint_table() {
  static const std::vector<uint8_t> table = [] {
    std::vector<uint8_t> t(kMaxCodepoint + 1, 0);
    for (size_t i = 0; i < unicode_data::kRunCount; ++i) {
      const uint32_t first = unicode_data::kRuns[i] >> 8;
      const uint32_t end = i + 1 < unicode_data::kRunCount ? unicode_data::kRuns[i + 1] >> 8
                                                            : kMaxCodepoint + 1;
      const uint8_t value = unicode_data::kRuns[i] & 0xFF;
      for (uint32_t c = first; c < end; ++c) t[c] = value;
    }
    return t;
  }();
  return table;
}

bool is_continuation(uint8_t b) { return (b & 0xC0) == 0x80; }

}  // namespace

CodepointClass codepoint_class(uint32_t cpt) {
  if (cpt > kMaxCodepoint) return CodepointClass::Undefined;
  return static_cast<CodepointClass>(codepoint_table()[cpt] & 7);
}

bool codepoint_is_whitespace(uint32_t cpt) {
  return cpt <= kMaxCodepoint && (codepoint_table()[cpt] & kWhitespaceBit) != 0;
}

uint32_t utf8_decode_lenient(std::string_view s, size_t& pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  const uint8_t b0 = byte(pos);
  const size_t left = s.size() - pos;
  if (b0 < 0x80) {
    pos += 1;
    return b0;
  }
  if (b0 >= 0xC0 && b0 < 0xE0 && left >= 2 && is_continuation(byte(pos + 1))) {
    const uint32_t c = ((b0 & 0x1Fu) << 6) | (byte(pos + 1) & 0x3Fu);
    pos += 2;
    return c;
  }
  if (b0 >= 0xE0 && b0 < 0xF0 && left >= 3 && is_continuation(byte(pos + 1)) &&
      is_continuation(byte(pos + 2))) {
    const uint32_t c = ((b0 & 0x0Fu) << 12) | ((byte(pos + 1) & 0x3Fu) << 6) | (byte(pos + 2) & 0x3Fu);
    pos += 3;
    return c;
  }
  // llama.cpp also accepts F5..F7 leads, then fails to re-encode the result;
  // treating them as invalid keeps every decoded value a real code point.
  if (b0 >= 0xF0 && b0 < 0xF5 && left >= 4 && is_continuation(byte(pos + 1)) &&
      is_continuation(byte(pos + 2)) && is_continuation(byte(pos + 3))) {
    const uint32_t c = ((b0 & 0x07u) << 18) | ((byte(pos + 1) & 0x3Fu) << 12) |
                       ((byte(pos + 2) & 0x3Fu) << 6) | (byte(pos + 3) & 0x3Fu);
    if (c <= kMaxCodepoint) {
      pos += 4;
      return c;
    }
  }
  pos += 1;
  return kReplacementChar;
}

void utf8_append(std::string& out, uint32_t cpt) {
  if (cpt < 0x80) {
    out.push_back(static_cast<char>(cpt));
  } else if (cpt < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else if (cpt < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
  }
}

size_t utf8_sanitize(std::string_view in, std::string& out, bool final) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < in.size()) {
    const uint8_t b0 = static_cast<uint8_t>(in[i]);
    if (b0 < 0x80) {
      out.push_back(static_cast<char>(b0));
      ++i;
      continue;
    }
    // Well-formed sequences (Unicode Table 3-7): the lead fixes the length
    // and the allowed range of the second byte; later bytes are 80..BF.
    size_t len = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    }
    if (len == 0) {
      out.append(kReplacement, 3);
      ++i;
      continue;
    }
    size_t k = 1;
    for (; k < len && i + k < in.size(); ++k) {
      const uint8_t b = static_cast<uint8_t>(in[i + k]);
      const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (b < l || b > h) break;
    }
    if (k == len) {
      out.append(in.substr(i, len));
      i += len;
    } else if (i + k == in.size() && !final) {
      break;  // a valid prefix cut by the end: wait for more bytes
    } else {
      out.append(kReplacement, 3);  // the maximal subpart becomes one U+FFFD
      i += k;
    }
  }
  return i;
}

const ByteUnicodeMap& byte_unicode_map() {
  static const ByteUnicodeMap map = [] {
    ByteUnicodeMap m;
    m.byte_of.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cpt = printable ? static_cast<uint32_t>(b) : next++;
      std::string s;
      utf8_append(s, cpt);
      m.utf8_len[b] = static_cast<uint8_t>(s.size());
      for (size_t k = 0; k < s.size(); ++k) m.utf8[b][k] = s[k];
      m.byte_of[cpt] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return map;
}

}  // namespace quarrel::tokenizer

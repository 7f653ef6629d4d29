#include "gguf_corrupt.h"

#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "gguf/writer.h"

namespace quarrel::test {

namespace {

using gguf::ValueType;
using tensor::DType;

gguf::Value int_value(ValueType t, int64_t v) {
  gguf::Value x;
  x.type = t;
  x.data = v;
  return x;
}

gguf::Value f32_value(float v) {
  gguf::Value x;
  x.type = ValueType::F32;
  x.data = static_cast<double>(v);
  return x;
}

gguf::Value bool_value(bool v) {
  gguf::Value x;
  x.type = ValueType::BOOL;
  x.data = v;
  return x;
}

gguf::Value array_value(gguf::Array a) {
  gguf::Value x;
  x.type = ValueType::ARRAY;
  x.data = std::move(a);
  return x;
}

// Deterministic bytes per tensor, so that two builds of a spec are identical.
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return h;
}

std::vector<uint8_t> tensor_bytes(const GgufSpec::Tensor& t) {
  int64_t rows = 1;
  for (size_t d = 1; d < t.ne.size(); ++d) rows *= t.ne[d];
  const int64_t n = rows * tensor::row_bytes(t.type, t.ne.empty() ? 1 : t.ne[0]);
  std::vector<uint8_t> out(static_cast<size_t>(n));
  uint64_t state = fnv1a(t.name);
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 33);
  };
  const bool is_norm = t.name.find("norm") != std::string::npos;
  if (t.type == DType::F32) {
    for (int64_t i = 0; i < n / 4; ++i) {
      // Norm weights near 1 and small matrices keep a seed model's logits finite.
      float v = is_norm ? 1.0f : (static_cast<float>(next() % 2001) / 1000.0f - 1.0f) * 0.25f;
      std::memcpy(out.data() + 4 * i, &v, 4);
    }
  } else if (t.type == DType::Q8_0) {
    // Per 34-byte block: an f16 scale of 1/64 (0x2400), then 32 int8 quants.
    for (int64_t b = 0; b + 34 <= n; b += 34) {
      out[b] = 0x00;
      out[b + 1] = 0x24;
      for (int i = 0; i < 32; ++i) out[b + 2 + i] = static_cast<uint8_t>(next() % 64 - 32);
    }
  } else if (t.type == DType::F16) {
    for (int64_t i = 0; i + 2 <= n; i += 2) {
      uint16_t h = static_cast<uint16_t>(0x2000 + next() % 0x1000) | ((next() & 1) << 15);  // |x| < 1/32
      std::memcpy(out.data() + i, &h, 2);
    }
  } else {
    for (auto& b : out) b = static_cast<uint8_t>(next());
  }
  return out;
}

void put_u32(std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }
void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) { std::memcpy(b.data() + at, &v, 8); }

std::vector<uint8_t> truncated(const std::vector<uint8_t>& b, size_t n) { return {b.begin(), b.begin() + n}; }

// GPT-2's byte-to-character table: printable bytes stand for themselves, the
// rest are moved to U+0100 and up. Returned in the order GPT-2's vocab lists them.
std::vector<std::string> gpt2_byte_chars() {
  auto utf8 = [](uint32_t cp) {
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
  };
  std::vector<std::string> out;
  bool printable[256] = {};
  for (uint32_t b = '!'; b <= '~'; ++b) printable[b] = true;
  for (uint32_t b = 0xA1; b <= 0xAC; ++b) printable[b] = true;
  for (uint32_t b = 0xAE; b <= 0xFF; ++b) printable[b] = true;
  for (uint32_t b = 0; b < 256; ++b)
    if (printable[b]) out.push_back(utf8(b));
  uint32_t n = 0;
  for (uint32_t b = 0; b < 256; ++b)
    if (!printable[b]) out.push_back(utf8(256 + n++));
  return out;
}

void add_spm_vocab(GgufSpec& s, std::vector<std::string>& tokens, std::vector<float>& scores,
                   std::vector<int32_t>& types) {
  tokens = {"<unk>", "<s>", "</s>"};
  types = {2, 3, 3};  // unknown, control, control
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);  // byte
  }
  for (const char* piece : {"\xE2\x96\x81", "\xE2\x96\x81t", "\xE2\x96\x81th", "\xE2\x96\x81the", "\xE2\x96\x81" "a",
                            "\xE2\x96\x81" "an", "\xE2\x96\x81" "and", "\xE2\x96\x81G", "\xE2\x96\x81Go",
                            "\xE2\x96\x81God", "e", "t", "h", "a", "n", "d", "o", "G", "s", "i"}) {
    tokens.push_back(piece);
    types.push_back(1);  // normal
  }
  scores.assign(tokens.size(), 0.0f);
  for (size_t i = 259; i < tokens.size(); ++i) scores[i] = -static_cast<float>(i - 259);
  s.set_string("tokenizer.ggml.model", "llama");
}

void add_gpt2_vocab(GgufSpec& s, std::vector<std::string>& tokens, std::vector<float>& scores,
                    std::vector<int32_t>& types) {
  tokens = gpt2_byte_chars();
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\xC4\xA0", "t"}, {"h", "e"}, {"\xC4\xA0t", "he"}, {"a", "n"}, {"\xC4\xA0", "a"}, {"\xC4\xA0" "a", "n"},
      {"\xC4\xA0" "an", "d"}};
  std::vector<std::string> merge_lines;
  for (const auto& [a, b] : merges) {
    tokens.push_back(a + b);
    merge_lines.push_back(a + " " + b);
  }
  types.assign(tokens.size(), 1);
  tokens.push_back("<|endoftext|>");
  types.push_back(3);
  scores.clear();
  s.set_string("tokenizer.ggml.model", "gpt2");
  s.set_string("tokenizer.ggml.pre", "gpt-2");
  gguf::Array a;
  a.elem_type = ValueType::STRING;
  for (auto& m : merge_lines) a.strings.push_back(s.keep(m));
  s.set("tokenizer.ggml.merges", array_value(std::move(a)));
}

gguf::Array string_array(GgufSpec& s, const std::vector<std::string>& v) {
  gguf::Array a;
  a.elem_type = ValueType::STRING;
  for (const auto& x : v) a.strings.push_back(s.keep(x));
  return a;
}

}  // namespace

std::string_view GgufSpec::keep(std::string s) { return strings->emplace_back(std::move(s)); }

void GgufSpec::set(std::string_view key, gguf::Value v) {
  for (auto& [k, old] : metadata) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  metadata.emplace_back(std::string(key), std::move(v));
}

void GgufSpec::set_u32(std::string_view key, uint32_t v) { set(key, int_value(ValueType::U32, v)); }

void GgufSpec::set_string(std::string_view key, std::string_view v) {
  gguf::Value x;
  x.type = ValueType::STRING;
  x.data = keep(std::string(v));
  set(key, std::move(x));
}

void GgufSpec::remove(std::string_view key) {
  std::erase_if(metadata, [&](const auto& kv) { return kv.first == key; });
}

GgufSpec::Tensor& GgufSpec::tensor(std::string_view name) {
  for (auto& t : tensors)
    if (t.name == name) return t;
  throw std::out_of_range("no tensor " + std::string(name));
}

void GgufSpec::remove_tensor(std::string_view name) {
  std::erase_if(tensors, [&](const Tensor& t) { return t.name == name; });
}

std::vector<uint8_t> GgufSpec::to_bytes() const {
  gguf::Writer w(alignment);
  for (const auto& [k, v] : metadata) w.set_value(k, v);
  for (const auto& t : tensors) {
    const std::vector<uint8_t> data = tensor_bytes(t);
    w.add_tensor(t.name, t.type, t.ne, data);
  }
  return w.to_bytes();
}

GgufSpec tiny_model_spec(const TinyModelOptions& o) {
  GgufSpec s;
  const std::string p = o.arch + ".";
  s.set_string("general.architecture", o.arch);
  s.set_string("general.name", "quarrel tiny " + o.arch);
  s.set_u32("general.alignment", s.alignment);
  s.set_u32(p + "block_count", static_cast<uint32_t>(o.n_layer));
  s.set_u32(p + "context_length", 64);
  s.set_u32(p + "embedding_length", static_cast<uint32_t>(o.n_embd));
  s.set_u32(p + "feed_forward_length", static_cast<uint32_t>(o.n_ff));
  s.set_u32(p + "attention.head_count", static_cast<uint32_t>(o.n_head));
  s.set_u32(p + "attention.head_count_kv", static_cast<uint32_t>(o.n_head_kv));
  s.set(p + "attention.layer_norm_rms_epsilon", f32_value(1e-5f));
  s.set(p + "rope.freq_base", f32_value(10000.0f));

  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  if (o.tokenizer == "gpt2") {
    add_gpt2_vocab(s, tokens, scores, types);
  } else {
    add_spm_vocab(s, tokens, scores, types);
  }
  s.set("tokenizer.ggml.tokens", array_value(string_array(s, tokens)));
  if (!scores.empty()) {
    gguf::Array a;
    a.elem_type = ValueType::F32;
    a.floats.assign(scores.begin(), scores.end());
    s.set("tokenizer.ggml.scores", array_value(std::move(a)));
  }
  gguf::Array ta;
  ta.elem_type = ValueType::I32;
  ta.ints.assign(types.begin(), types.end());
  s.set("tokenizer.ggml.token_type", array_value(std::move(ta)));
  const int64_t n_vocab = static_cast<int64_t>(tokens.size());
  const int64_t bos = o.tokenizer == "gpt2" ? n_vocab - 1 : 1, eos = o.tokenizer == "gpt2" ? n_vocab - 1 : 2;
  s.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  s.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
  if (o.tokenizer != "gpt2") s.set_u32("tokenizer.ggml.unknown_token_id", 0);
  s.set("tokenizer.ggml.add_bos_token", bool_value(o.tokenizer != "gpt2"));
  s.set("tokenizer.ggml.add_eos_token", bool_value(false));

  const int64_t head_dim = o.n_embd / o.n_head, q_dim = o.n_head * head_dim, kv_dim = o.n_head_kv * head_dim;
  const DType m = o.matrix_type;
  s.tensors.push_back({"token_embd.weight", m, {o.n_embd, n_vocab}});
  s.tensors.push_back({"output_norm.weight", DType::F32, {o.n_embd}});
  if (!o.tied_output) s.tensors.push_back({"output.weight", m, {o.n_embd, n_vocab}});
  for (int64_t i = 0; i < o.n_layer; ++i) {
    const std::string b = fmt::format("blk.{}.", i);
    s.tensors.push_back({b + "attn_norm.weight", DType::F32, {o.n_embd}});
    s.tensors.push_back({b + "attn_q.weight", m, {o.n_embd, q_dim}});
    s.tensors.push_back({b + "attn_k.weight", m, {o.n_embd, kv_dim}});
    s.tensors.push_back({b + "attn_v.weight", m, {o.n_embd, kv_dim}});
    if (o.arch == "qwen2") {
      s.tensors.push_back({b + "attn_q.bias", DType::F32, {q_dim}});
      s.tensors.push_back({b + "attn_k.bias", DType::F32, {kv_dim}});
      s.tensors.push_back({b + "attn_v.bias", DType::F32, {kv_dim}});
    }
    if (o.arch == "qwen3") {
      s.tensors.push_back({b + "attn_q_norm.weight", DType::F32, {head_dim}});
      s.tensors.push_back({b + "attn_k_norm.weight", DType::F32, {head_dim}});
    }
    s.tensors.push_back({b + "attn_output.weight", m, {q_dim, o.n_embd}});
    s.tensors.push_back({b + "ffn_norm.weight", DType::F32, {o.n_embd}});
    s.tensors.push_back({b + "ffn_gate.weight", m, {o.n_embd, o.n_ff}});
    s.tensors.push_back({b + "ffn_up.weight", m, {o.n_embd, o.n_ff}});
    s.tensors.push_back({b + "ffn_down.weight", m, {o.n_ff, o.n_embd}});
  }
  return s;
}

namespace {

// Bounds-checked little-endian reads for the layout walk (input is trusted to
// be valid, but a helper bug should fail loudly rather than read past the end).
struct Walker {
  const std::vector<uint8_t>& b;
  size_t p = 0;
  template <typename T>
  T read() {
    if (p + sizeof(T) > b.size()) throw std::runtime_error("scan_layout: image ends early");
    T v;
    std::memcpy(&v, b.data() + p, sizeof(T));
    p += sizeof(T);
    return v;
  }
  std::string read_string() {
    const uint64_t n = read<uint64_t>();
    if (n > b.size() - p) throw std::runtime_error("scan_layout: string past the end");
    std::string s(reinterpret_cast<const char*>(b.data() + p), n);
    p += n;
    return s;
  }
  void skip_value(uint32_t type) {
    switch (static_cast<ValueType>(type)) {
      case ValueType::U8: case ValueType::I8: case ValueType::BOOL: p += 1; break;
      case ValueType::U16: case ValueType::I16: p += 2; break;
      case ValueType::U32: case ValueType::I32: case ValueType::F32: p += 4; break;
      case ValueType::U64: case ValueType::I64: case ValueType::F64: p += 8; break;
      case ValueType::STRING: read_string(); break;
      case ValueType::ARRAY: {
        const uint32_t elem = read<uint32_t>();
        const uint64_t n = read<uint64_t>();
        for (uint64_t i = 0; i < n; ++i) skip_value(elem);
        break;
      }
      default: throw std::runtime_error("scan_layout: bad value type");
    }
  }
};

}  // namespace

GgufLayout scan_layout(const std::vector<uint8_t>& bytes) {
  GgufLayout L;
  Walker w{bytes, 8};
  const uint64_t n_tensors = w.read<uint64_t>(), n_kv = w.read<uint64_t>();
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv; ++i) {
    GgufLayout::Kv kv;
    kv.key_at = w.p;
    kv.key = w.read_string();
    kv.type_at = w.p;
    const uint32_t type = w.read<uint32_t>();
    kv.value_at = w.p;
    if (kv.key == "general.alignment") {
      alignment = w.read<uint32_t>();
    } else {
      w.skip_value(type);
    }
    kv.end = w.p;
    L.kvs.push_back(kv);
  }
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufLayout::Tensor t;
    t.name_at = w.p;
    t.name = w.read_string();
    t.n_dims_at = w.p;
    const uint32_t n_dims = w.read<uint32_t>();
    t.dims_at = w.p;
    w.p += 8 * n_dims;
    t.type_at = w.p;
    w.p += 4;
    t.offset_at = w.p;
    offsets.push_back(w.read<uint64_t>());
    L.tensors.push_back(t);
  }
  L.infos_end = w.p;
  const size_t data_start = (w.p + alignment - 1) / alignment * alignment;
  const gguf::File f = gguf::File::from_bytes(bytes);
  for (size_t i = 0; i < L.tensors.size(); ++i) {
    L.tensors[i].data_at = data_start + offsets[i];
    L.tensors[i].data_end = L.tensors[i].data_at + f.tensors()[i].n_bytes;
  }
  return L;
}

const GgufLayout::Kv& GgufLayout::kv(std::string_view key) const { return kvs.at(kv_index(key)); }

size_t GgufLayout::kv_index(std::string_view key) const {
  for (size_t i = 0; i < kvs.size(); ++i)
    if (kvs[i].key == key) return i;
  throw std::out_of_range("no key " + std::string(key));
}

const GgufLayout::Tensor& GgufLayout::tensor(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return t;
  throw std::out_of_range("no tensor " + std::string(name));
}

std::vector<CorruptCase> corrupt_cases() {
  const GgufSpec base = tiny_model_spec();
  const std::vector<uint8_t> valid = base.to_bytes();
  const GgufLayout L = scan_layout(valid);
  std::vector<CorruptCase> cases;

  auto add = [&](std::string name, Stage stage, std::vector<std::string> expect, std::vector<uint8_t> bytes) {
    cases.push_back({std::move(name), stage, std::move(expect), std::move(bytes)});
  };
  // A copy of the valid image with one field overwritten.
  auto patched32 = [&](size_t at, uint32_t v) {
    auto b = valid;
    put_u32(b, at, v);
    return b;
  };
  auto patched64 = [&](size_t at, uint64_t v) {
    auto b = valid;
    put_u64(b, at, v);
    return b;
  };
  // A copy of the spec with one edit, written out.
  auto edited = [&](auto&& edit) {
    GgufSpec s = base;
    edit(s);
    return s.to_bytes();
  };

  const auto& last_kv = L.kvs.back();
  const size_t last_kv_index = L.kvs.size() - 1;
  const auto& embd = L.tensor("token_embd.weight");
  const auto& last_t = L.tensors.back();
  const auto& second_t = L.tensors.at(1);
  const auto& tokens = L.kv("tokenizer.ggml.tokens");
  const auto& scores = L.kv("tokenizer.ggml.scores");
  const int64_t n_vocab = base.tensors.at(0).ne.at(1);
  const std::string n_tokens = fmt::format("for {} tokens", n_vocab);

  // Truncation at many points. The cuts inside metadata are in its last
  // entries, so that the header's counts still look plausible and the error
  // comes from the field actually cut.
  add("truncated_in_magic", Stage::File, {"magic", "truncated"}, truncated(valid, 2));
  add("truncated_in_version", Stage::File, {"version", "truncated"}, truncated(valid, 6));
  add("truncated_in_counts", Stage::File, {"metadata count", "truncated"}, truncated(valid, 20));
  add("truncated_in_key_length", Stage::File, {fmt::format("metadata entry {} key length", last_kv_index), "truncated"},
      truncated(valid, last_kv.key_at + 4));
  add("truncated_in_key", Stage::File, {fmt::format("metadata entry {} key", last_kv_index), "past the end"},
      truncated(valid, last_kv.key_at + 8 + 3));
  add("truncated_in_value", Stage::File, {"metadata key '" + last_kv.key + "'", "truncated"},
      truncated(valid, last_kv.value_at));
  // Cut after the last token's length and before its one byte of text.
  add("truncated_in_string_array", Stage::File, {"tokenizer.ggml.tokens", "past the end"},
      truncated(valid, tokens.end - 1));
  add("truncated_in_f32_array", Stage::File, {"tokenizer.ggml.scores", "array count"},
      truncated(valid, scores.value_at + 12 + 4 * 10 + 2));
  add("truncated_in_tensor_name", Stage::File, {"tensor 3 name", "past the end"},
      truncated(valid, L.tensors.at(3).name_at + 10));
  add("truncated_in_tensor_dims", Stage::File, {"tensor '" + last_t.name + "' dimension", "truncated"},
      truncated(valid, last_t.dims_at + 4));
  add("truncated_in_tensor_offset", Stage::File, {"tensor '" + last_t.name + "' offset", "truncated"},
      truncated(valid, last_t.offset_at + 3));
  // When the infos end on an alignment boundary the data section starts exactly
  // at the cut; the first tensor is then what lies outside.
  add("truncated_before_data", Stage::File,
      {L.infos_end % base.alignment ? "tensor data section is missing" : "tensor 'token_embd.weight'"},
      truncated(valid, L.infos_end));
  add("truncated_in_first_tensor_data", Stage::File, {"tensor '" + L.tensors[0].name + "'", "outside the file"},
      truncated(valid, L.tensors[0].data_at + 5));
  add("truncated_in_last_tensor_data", Stage::File, {"tensor '" + last_t.name + "'", "outside the file"},
      truncated(valid, last_t.data_end - 1));

  // Header.
  add("bad_magic", Stage::File, {"magic"}, patched32(0, 0x4C4D4747));  // "GGML"
  add("version_1", Stage::File, {"version 1"}, patched32(4, 1));
  add("version_4", Stage::File, {"version 4"}, patched32(4, 4));

  // Lengths and counts past the end of the file.
  add("metadata_count_huge", Stage::File, {"metadata count"}, patched64(16, 1ull << 63));
  add("tensor_count_huge", Stage::File, {"tensor count"}, patched64(8, (1ull << 63) + 1));
  add("key_length_past_eof", Stage::File, {"metadata entry 5 key", "past the end"},
      patched64(L.kvs.at(5).key_at, valid.size()));
  add("key_length_2e63", Stage::File, {"metadata entry 5 key", "too large"}, patched64(L.kvs.at(5).key_at, 1ull << 63));
  add("string_value_past_eof", Stage::File, {"metadata key 'general.name'", "past the end"},
      patched64(L.kv("general.name").value_at, valid.size() - 16));
  add("array_count_2e63", Stage::File, {"tokenizer.ggml.tokens", "array count"},
      patched64(tokens.value_at + 4, 1ull << 63));
  add("array_count_past_eof", Stage::File, {"tokenizer.ggml.scores", "array count"},
      patched64(scores.value_at + 4, 1ull << 40));
  add("tensor_name_past_eof", Stage::File, {"tensor 0 name", "past the end"},
      patched64(L.tensors[0].name_at, valid.size()));
  add("tensor_name_too_long", Stage::File, {fmt::format("tensor {}", base.tensors.size()), "too long"},
      edited([](GgufSpec& s) { s.tensors.push_back({std::string(64, 'x'), DType::F32, {4}}); }));

  // Wrong types for known keys: the reader rejects format keys, the model and
  // tokenizer loaders reject their own.
  add("alignment_as_string", Stage::File, {"general.alignment", "expected type u32"},
      edited([](GgufSpec& s) { s.set_string("general.alignment", "32"); }));
  add("architecture_as_u32", Stage::File, {"general.architecture", "expected type string"},
      edited([](GgufSpec& s) { s.set_u32("general.architecture", 7); }));
  add("tokens_as_i32_array", Stage::File, {"tokenizer.ggml.tokens", "array of string"}, edited([&](GgufSpec& s) {
        gguf::Array a;
        a.elem_type = ValueType::I32;
        a.ints.assign(n_vocab, 5);
        s.set("tokenizer.ggml.tokens", array_value(std::move(a)));
      }));
  add("token_type_as_f32_array", Stage::File, {"tokenizer.ggml.token_type", "array of i32"}, edited([&](GgufSpec& s) {
        gguf::Array a;
        a.elem_type = ValueType::F32;
        a.floats.assign(n_vocab, 1.0);
        s.set("tokenizer.ggml.token_type", array_value(std::move(a)));
      }));
  add("block_count_as_string", Stage::Model, {"llama.block_count", "expected an integer"},
      edited([](GgufSpec& s) { s.set_string("llama.block_count", "1"); }));
  add("rms_eps_as_string", Stage::Model, {"llama.attention.layer_norm_rms_epsilon", "expected a number"},
      edited([](GgufSpec& s) { s.set_string("llama.attention.layer_norm_rms_epsilon", "1e-5"); }));
  add("add_bos_as_u32", Stage::Tokenizer, {"tokenizer.ggml.add_bos_token", "expected a bool"},
      edited([](GgufSpec& s) { s.set_u32("tokenizer.ggml.add_bos_token", 1); }));
  {
    auto b = valid;
    b[L.kv("tokenizer.ggml.add_bos_token").value_at] = 2;
    add("bool_value_2", Stage::File, {"tokenizer.ggml.add_bos_token", "neither 0 nor 1"}, std::move(b));
  }

  // Invalid value-type enums.
  add("invalid_value_type", Stage::File, {"metadata key 'general.name'", "invalid value type 13"},
      patched32(L.kv("general.name").type_at, 13));
  add("invalid_value_type_max", Stage::File, {"metadata key 'general.name'", "invalid value type 4294967295"},
      patched32(L.kv("general.name").type_at, 0xFFFFFFFF));
  add("invalid_array_element_type", Stage::File, {"tokenizer.ggml.tokens", "invalid array element type 13"},
      patched32(tokens.value_at, 13));
  add("nested_array", Stage::File, {"tokenizer.ggml.tokens", "nested"},
      patched32(tokens.value_at, static_cast<uint32_t>(ValueType::ARRAY)));

  // Duplicates.
  add("duplicate_key", Stage::File, {"duplicate metadata key 'general.name'"},
      edited([](GgufSpec& s) { s.metadata.push_back(s.metadata.at(1)); }));
  add("duplicate_tensor_name", Stage::File, {"duplicate tensor name 'output_norm.weight'"},
      edited([](GgufSpec& s) { s.tensors.push_back(s.tensor("output_norm.weight")); }));

  // Alignment.
  const size_t align_at = L.kv("general.alignment").value_at;
  add("alignment_0", Stage::File, {"general.alignment 0", "power of two"}, patched32(align_at, 0));
  add("alignment_3", Stage::File, {"general.alignment 3", "power of two"}, patched32(align_at, 3));
  add("alignment_4", Stage::File, {"general.alignment 4", "multiple of 8"}, patched32(align_at, 4));
  add("alignment_2e30", Stage::File, {"general.alignment 1073741824", "absurd"}, patched32(align_at, 1u << 30));
  // Claims 64 while the writer laid the data out at 32: some offset is then
  // not a multiple of 64 (output_norm is 32 bytes long).
  add("alignment_larger_than_layout", Stage::File, {"not a multiple of the alignment 64"}, patched32(align_at, 64));

  // Tensor infos: dimensions, counts, sizes, types, offsets.
  add("n_dims_0", Stage::File, {"tensor 'token_embd.weight'", "n_dims 0"}, patched32(embd.n_dims_at, 0));
  add("n_dims_5", Stage::File, {"tensor 'token_embd.weight'", "n_dims 5"}, patched32(embd.n_dims_at, 5));
  add("dimension_zero", Stage::File, {"tensor 'token_embd.weight'", "dimension 0 is 0"}, patched64(embd.dims_at, 0));
  add("dimension_negative", Stage::File, {"tensor 'token_embd.weight'", "dimension 1 is -9223372036854775801"},
      patched64(embd.dims_at + 8, (1ull << 63) + 7));
  {
    auto b = patched64(embd.dims_at, 1ull << 32);
    put_u64(b, embd.dims_at + 8, 1ull << 32);
    add("element_count_overflow", Stage::File, {"tensor 'token_embd.weight'", "element count overflows"}, b);
    put_u64(b, embd.dims_at, 1ull << 31);  // 2^62 f32 elements: the count fits, the bytes do not
    put_u64(b, embd.dims_at + 8, 1ull << 31);
    add("byte_size_overflow", Stage::File, {"tensor 'token_embd.weight'", "byte size overflows"}, b);
  }
  add("unknown_tensor_type", Stage::File, {"tensor 'token_embd.weight'", "unknown tensor type 99"},
      patched32(embd.type_at, 99));
  add("row_not_whole_blocks", Stage::File, {"tensor 'token_embd.weight'", "q8_0 block size 32"},
      patched32(embd.type_at, static_cast<uint32_t>(DType::Q8_0)));
  add("offset_outside_file", Stage::File, {"tensor '" + last_t.name + "'", "outside the file"},
      patched64(last_t.offset_at, 1ull << 40));
  add("offset_wraps_around", Stage::File, {"tensor '" + last_t.name + "'", "outside the file"},
      patched64(last_t.offset_at, ~0ull - 31));  // a multiple of 32 that wraps when added
  add("offset_misaligned", Stage::File, {"tensor '" + second_t.name + "'", "not a multiple of the alignment 32"},
      patched64(second_t.offset_at, second_t.data_at - (L.tensors[0].data_at) + 1));

  // Shapes that do not match the architecture.
  add("attn_q_wrong_shape", Stage::Model, {"blk.0.attn_q.weight", "expected shape [8, 8], found [8, 12]"},
      edited([](GgufSpec& s) { s.tensor("blk.0.attn_q.weight").ne = {8, 12}; }));
  add("ffn_down_transposed", Stage::Model, {"blk.0.ffn_down.weight", "expected shape [16, 8]"},
      edited([](GgufSpec& s) { s.tensor("blk.0.ffn_down.weight").ne = {8, 16}; }));
  add("norm_as_matrix", Stage::Model, {"output_norm.weight", "expected shape [8]"},
      edited([](GgufSpec& s) { s.tensor("output_norm.weight").ne = {8, 1}; }));
  add("norm_not_f32", Stage::Model, {"output_norm.weight", "expected type f32"},
      edited([](GgufSpec& s) { s.tensor("output_norm.weight").type = DType::F16; }));
  add("missing_tensor", Stage::Model, {"missing tensor 'blk.0.attn_v.weight'"},
      edited([](GgufSpec& s) { s.remove_tensor("blk.0.attn_v.weight"); }));

  // Hyperparameters out of range.
  add("block_count_0", Stage::Model, {"llama.block_count", "out of range"},
      edited([](GgufSpec& s) { s.set_u32("llama.block_count", 0); }));
  add("block_count_100000", Stage::Model, {"llama.block_count", "out of range"},
      edited([](GgufSpec& s) { s.set_u32("llama.block_count", 100000); }));
  add("block_count_beyond_tensors", Stage::Model, {"missing tensor 'blk.1.attn_norm.weight'"},
      edited([](GgufSpec& s) { s.set_u32("llama.block_count", 2); }));
  add("head_count_0", Stage::Model, {"llama.attention.head_count'", "out of range"},
      edited([](GgufSpec& s) { s.set_u32("llama.attention.head_count", 0); }));
  add("head_count_kv_above_heads", Stage::Model, {"llama.attention.head_count_kv", "out of range"},
      edited([](GgufSpec& s) { s.set_u32("llama.attention.head_count_kv", 3); }));
  add("embedding_not_multiple_of_heads", Stage::Model, {"embedding_length 8", "head_count 3"},
      edited([](GgufSpec& s) { s.set_u32("llama.attention.head_count", 3); }));
  add("context_length_huge", Stage::Model, {"llama.context_length", "out of range"},
      edited([](GgufSpec& s) { s.set_u32("llama.context_length", 1u << 31); }));
  add("rms_eps_negative", Stage::Model, {"layer_norm_rms_epsilon", "out of range"},
      edited([](GgufSpec& s) { s.set("llama.attention.layer_norm_rms_epsilon", f32_value(-1e-5f)); }));
  add("rms_eps_nan", Stage::Model, {"layer_norm_rms_epsilon", "out of range"},
      edited([](GgufSpec& s) { s.set("llama.attention.layer_norm_rms_epsilon", f32_value(NAN)); }));
  add("rope_freq_base_zero", Stage::Model, {"rope.freq_base", "out of range"},
      edited([](GgufSpec& s) { s.set("llama.rope.freq_base", f32_value(0.0f)); }));
  add("rope_scaling_type_unknown", Stage::Model, {"rope.scaling.type", "not supported"},
      edited([](GgufSpec& s) { s.set_string("llama.rope.scaling.type", "wobbly"); }));
  add("unsupported_architecture", Stage::Model, {"unsupported architecture 'gptj'"},
      edited([](GgufSpec& s) { s.set_string("general.architecture", "gptj"); }));
  add("missing_architecture", Stage::Model, {"general.architecture"},
      edited([](GgufSpec& s) { s.remove("general.architecture"); }));

  // Vocabulary size against the embedding.
  auto drop_last_token = [](GgufSpec& s) {
    for (auto& [k, v] : s.metadata) {
      if (v.type != ValueType::ARRAY || !k.starts_with("tokenizer.ggml.")) continue;
      auto& a = std::get<gguf::Array>(v.data);
      if (!a.strings.empty()) a.strings.pop_back();
      if (!a.floats.empty()) a.floats.pop_back();
      if (!a.ints.empty()) a.ints.pop_back();
    }
  };
  add("vocab_smaller_than_embedding", Stage::Model,
      {fmt::format("tokenizer.ggml.tokens has {} entries", n_vocab - 1), fmt::format("{} rows", n_vocab)},
      edited(drop_last_token));
  add("vocab_larger_than_embedding", Stage::Model,
      {fmt::format("tokenizer.ggml.tokens has {} entries", n_vocab), fmt::format("{} rows", n_vocab - 2)},
      edited([&](GgufSpec& s) { s.tensor("token_embd.weight").ne = {8, n_vocab - 2}; }));
  add("vocab_size_zero", Stage::Model, {"vocabulary size 0", "out of range"},
      edited([&](GgufSpec& s) { s.tensor("token_embd.weight").ne = {8 * n_vocab}; }));

  // The tokenizer's own checks: byte tokens, per-token arrays, model name.
  auto with_token = [&](int id, std::string text) {
    return edited([&](GgufSpec& s) {
      for (auto& [k, v] : s.metadata)
        if (k == "tokenizer.ggml.tokens") std::get<gguf::Array>(v.data).strings.at(id) = s.keep(text);
    });
  };
  add("byte_token_bad_hex", Stage::Tokenizer, {"tokenizer.ggml.tokens", "<0xZZ>", "<0xNN>"},
      with_token(3 + 0x10, "<0xZZ>"));
  add("byte_token_one_digit", Stage::Tokenizer, {"tokenizer.ggml.tokens", "<0x1>", "<0xNN>"},
      with_token(3 + 0x01, "<0x1>"));
  add("byte_token_three_digits", Stage::Tokenizer, {"tokenizer.ggml.tokens", "<0x100>", "<0xNN>"},
      with_token(3 + 0xFF, "<0x100>"));
  add("byte_token_plain_text", Stage::Tokenizer, {"tokenizer.ggml.tokens", "type BYTE"}, with_token(3 + 0x41, "A"));
  add("token_type_short", Stage::Tokenizer, {"tokenizer.ggml.token_type", n_tokens}, edited([](GgufSpec& s) {
        for (auto& [k, v] : s.metadata)
          if (k == "tokenizer.ggml.token_type") std::get<gguf::Array>(v.data).ints.resize(100);
      }));
  add("scores_short", Stage::Tokenizer, {"tokenizer.ggml.scores", n_tokens}, edited([](GgufSpec& s) {
        for (auto& [k, v] : s.metadata)
          if (k == "tokenizer.ggml.scores") std::get<gguf::Array>(v.data).floats.resize(7);
      }));
  add("tokenizer_model_unknown", Stage::Tokenizer, {"tokenizer.ggml.model", "'wordpiece'"},
      edited([](GgufSpec& s) { s.set_string("tokenizer.ggml.model", "wordpiece"); }));
  {
    GgufSpec s = tiny_model_spec({.tokenizer = "gpt2"});
    s.remove("tokenizer.ggml.merges");
    add("gpt2_without_merges", Stage::Tokenizer, {"tokenizer.ggml.merges", "missing"}, s.to_bytes());
  }
  return cases;
}

}  // namespace quarrel::test

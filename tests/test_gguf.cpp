// The GGUF reader and the model/tokenizer loaders against valid files (value
// round trips, alignment, every model we ship) and against the corrupt images
// of gguf_corrupt.h, each of which must be rejected with quarrel::Error whose
// message names the field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <set>
#include <type_traits>
#include <variant>

#include "common/error.h"
#include "gguf/file.h"
#include "gguf/writer.h"
#include "gguf_corrupt.h"
#include "model/model.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace quarrel::test {

// Keeps gtest from printing kilobytes of image bytes for each case.
void PrintTo(const CorruptCase& c, std::ostream* os) { *os << c.name; }

namespace {

namespace fs = std::filesystem;
using gguf::ValueType;

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::File: return "gguf::File::from_bytes";
    case Stage::Model: return "model::Model::from_file";
    case Stage::Tokenizer: return "tokenizer::Tokenizer::from_gguf";
  }
  return "?";
}

// Runs the loaders in order up to `stage`. Returns the message of the
// quarrel::Error that `stage` raised, or nullopt (with a test failure) when an
// earlier loader rejected the image or `stage` accepted it.
std::optional<std::string> error_at(const std::vector<uint8_t>& bytes, Stage stage) {
  const std::function<void()> loaders[] = {
      [&] { gguf::File::from_bytes(bytes); },
      [&] { model::Model::from_file(gguf::File::from_bytes(bytes)); },
      [&] { tokenizer::Tokenizer::from_gguf(gguf::File::from_bytes(bytes)); },
  };
  for (int s = 0; s <= static_cast<int>(stage); ++s) {
    std::optional<std::string> err;
    try {
      loaders[s]();
    } catch (const Error& e) {
      err = e.what();
    }
    const char* name = stage_name(static_cast<Stage>(s));
    if (s == static_cast<int>(stage)) {
      if (!err) ADD_FAILURE() << name << " accepted the image";
      return err;
    }
    if (err) {
      ADD_FAILURE() << name << " rejected the image before " << stage_name(stage) << " could: " << *err;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// Loads an image all the way; a quarrel::Error is an accepted outcome, any
// other exception or a crash is not.
void load_or_reject(const std::vector<uint8_t>& bytes) {
  try {
    gguf::File f = gguf::File::from_bytes(bytes);
    std::optional<tokenizer::Tokenizer> tok;
    try {
      tok.emplace(tokenizer::Tokenizer::from_gguf(f));
    } catch (const Error&) {
    }
    if (tok) tok->decode(tok->encode("In the beginning God", true, false));
    model::Model::from_file(std::move(f));
  } catch (const Error&) {
  }
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string sanitized_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

class Corrupt : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(Corrupt, RejectedWithErrorNamingTheField) {
  const CorruptCase& c = GetParam();
  const std::optional<std::string> msg = error_at(c.bytes, c.stage);
  ASSERT_TRUE(msg.has_value());
  for (const std::string& e : c.expect) EXPECT_NE(msg->find(e), std::string::npos) << "missing '" << e << "' in: " << *msg;
}

// The same image from disk, through mmap and Model::load, keeps the path in the message.
TEST_P(Corrupt, RejectedFromDiskWithPath) {
  const CorruptCase& c = GetParam();
  const std::string dir = make_temp_dir();
  const std::string path = dir + "/" + c.name + ".gguf";
  write_file(path, c.bytes);
  std::string msg;
  try {
    if (c.stage == Stage::Tokenizer) {
      tokenizer::Tokenizer::from_gguf(gguf::File::open(path));
    } else {
      model::Model::load(path);
    }
  } catch (const Error& e) {
    msg = e.what();
  }
  fs::remove_all(dir);
  ASSERT_FALSE(msg.empty()) << "accepted from disk";
  if (c.stage != Stage::Tokenizer) {
    EXPECT_NE(msg.find("error loading model '" + path + "'"), std::string::npos) << msg;
  }
  EXPECT_NE(msg.find(c.expect.front()), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Gguf, Corrupt, ::testing::ValuesIn(corrupt_cases()),
                         [](const ::testing::TestParamInfo<CorruptCase>& info) { return sanitized_name(info.param.name); });

TEST(CorruptCases, AtLeastThirtyWithUniqueNames) {
  const auto cases = corrupt_cases();
  EXPECT_GE(cases.size(), 30u);
  std::set<std::string> names;
  for (const auto& c : cases) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case " << c.name;
    EXPECT_FALSE(c.expect.empty()) << c.name;
  }
  size_t by_stage[3] = {};
  for (const auto& c : cases) ++by_stage[static_cast<int>(c.stage)];
  EXPECT_GE(by_stage[0], 20u);
  EXPECT_GE(by_stage[1], 10u);
  EXPECT_GE(by_stage[2], 4u);
}

// Every strict prefix that ends before the last tensor's data is a truncated
// file: each must be rejected, not only the named cut points.
TEST(GgufTruncation, EveryPrefixIsRejected) {
  const std::vector<uint8_t> valid = tiny_model_spec().to_bytes();
  const GgufLayout layout = scan_layout(valid);
  const size_t end = layout.tensors.back().data_end;
  ASSERT_LE(end, valid.size());
  size_t n_tried = 0;
  for (size_t n = 0; n < end; n += (n < layout.infos_end + 64 ? 1 : 61)) {
    ++n_tried;
    std::vector<uint8_t> cut(valid.begin(), valid.begin() + n);
    try {
      gguf::File::from_bytes(cut);
      ADD_FAILURE() << "a prefix of " << n << " of " << valid.size() << " bytes was accepted";
    } catch (const Error& e) {
      EXPECT_NE(e.what(), std::string()) << n;
    }
  }
  EXPECT_GT(n_tried, layout.infos_end);
  // Padding after the last tensor is optional, so the exact end still loads.
  std::vector<uint8_t> exact(valid.begin(), valid.begin() + end);
  EXPECT_NO_THROW(model::Model::from_file(gguf::File::from_bytes(exact)));
}

// Damage at every byte of the metadata and tensor infos: either the loaders
// accept the result or they throw quarrel::Error. ASan/UBSan catch the rest.
TEST(GgufByteDamage, EveryHeaderByteLoadsOrThrowsError) {
  const std::vector<uint8_t> valid = tiny_model_spec().to_bytes();
  const size_t end = scan_layout(valid).infos_end;
  std::vector<uint8_t> b = valid;
  for (size_t i = 0; i < end; ++i) {
    for (uint8_t v : {uint8_t{0x00}, uint8_t{0xFF}, static_cast<uint8_t>(valid[i] ^ 0x80)}) {
      if (v == valid[i]) continue;
      b[i] = v;
      EXPECT_NO_FATAL_FAILURE(load_or_reject(b));
      b[i] = valid[i];
    }
  }
}

// ---- valid files ----------------------------------------------------------

gguf::Value make_int(ValueType t, int64_t v) {
  gguf::Value x;
  x.type = t;
  x.data = v;
  return x;
}

gguf::Value make_array(ValueType elem, std::vector<int64_t> ints, std::vector<uint64_t> u64s = {},
                       std::vector<double> floats = {}, std::vector<std::string_view> strings = {}) {
  gguf::Array a;
  a.elem_type = elem;
  a.ints = std::move(ints);
  a.u64s = std::move(u64s);
  a.floats = std::move(floats);
  a.strings = std::move(strings);
  gguf::Value x;
  x.type = ValueType::ARRAY;
  x.data = std::move(a);
  return x;
}

// gguf::Value has no ==, because Array has none; scalars compare by alternative.
bool same_scalar(const gguf::Value& a, const gguf::Value& b) {
  if (a.data.index() != b.data.index()) return false;
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, gguf::Array>) {
          return false;
        } else {
          return x == std::get<T>(b.data);
        }
      },
      a.data);
}

TEST(GgufValues, EveryValueTypeRoundTrips) {
  using L8 = std::numeric_limits<int8_t>;
  using L16 = std::numeric_limits<int16_t>;
  using L32 = std::numeric_limits<int32_t>;
  using L64 = std::numeric_limits<int64_t>;
  const std::string_view with_nul("a\0b\xC3\xA9", 5);
  std::vector<std::pair<std::string, gguf::Value>> entries = {
      {"t.u8", make_int(ValueType::U8, 255)},
      {"t.i8", make_int(ValueType::I8, L8::min())},
      {"t.u16", make_int(ValueType::U16, 65535)},
      {"t.i16", make_int(ValueType::I16, L16::min())},
      {"t.u32", make_int(ValueType::U32, 4294967295)},
      {"t.i32", make_int(ValueType::I32, L32::min())},
      {"t.i64", make_int(ValueType::I64, L64::min())},
      {"t.u64", {ValueType::U64, uint64_t{18446744073709551615ull}}},
      {"t.f32", {ValueType::F32, 1.5}},
      {"t.f64", {ValueType::F64, 0.1}},
      {"t.bool", {ValueType::BOOL, true}},
      {"t.string", {ValueType::STRING, with_nul}},
      {"t.empty_string", {ValueType::STRING, std::string_view()}},
      {"a.u8", make_array(ValueType::U8, {0, 7, 255})},
      {"a.i8", make_array(ValueType::I8, {-128, 0, 127})},
      {"a.u16", make_array(ValueType::U16, {0, 65535})},
      {"a.i16", make_array(ValueType::I16, {-32768, 32767})},
      {"a.u32", make_array(ValueType::U32, {0, 4294967295})},
      {"a.i32", make_array(ValueType::I32, {L32::min(), -1, L32::max()})},
      {"a.i64", make_array(ValueType::I64, {L64::min(), L64::max()})},
      {"a.bool", make_array(ValueType::BOOL, {1, 0, 1})},
      {"a.u64", make_array(ValueType::U64, {}, {0, 18446744073709551615ull})},
      {"a.f32", make_array(ValueType::F32, {}, {}, {-2.5, 0.0, 3.25})},
      {"a.f64", make_array(ValueType::F64, {}, {}, {1e300, -0.1})},
      {"a.string", make_array(ValueType::STRING, {}, {}, {}, {"x", "", with_nul})},
      {"a.empty", make_array(ValueType::I32, {})},
  };
  gguf::Writer w;
  for (const auto& [k, v] : entries) w.set_value(k, v);
  const gguf::File f = gguf::File::from_bytes(w.to_bytes());
  EXPECT_EQ(f.version(), 3u);
  ASSERT_EQ(f.metadata().size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& [key, want] = entries[i];
    SCOPED_TRACE(key);
    EXPECT_EQ(f.metadata()[i].key, key);  // order is kept
    const gguf::Value* got = f.find(key);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(got->type, want.type);
    if (want.type != ValueType::ARRAY) {
      EXPECT_TRUE(same_scalar(*got, want));
      continue;
    }
    const auto& a = std::get<gguf::Array>(got->data);
    const auto& b = std::get<gguf::Array>(want.data);
    EXPECT_EQ(a.elem_type, b.elem_type);
    EXPECT_EQ(a.ints, b.ints);
    EXPECT_EQ(a.u64s, b.u64s);
    EXPECT_EQ(a.floats, b.floats);
    EXPECT_EQ(a.strings, b.strings);
    EXPECT_EQ(a.size(), b.ints.size() + b.u64s.size() + b.floats.size() + b.strings.size());
  }
}

TEST(GgufValues, TypedGettersConvertOrNameTheKey) {
  gguf::Writer w;
  w.set_u32("u32", 7);
  w.set_i32("i32", -3);
  w.set_u64("u64.small", 42);
  w.set_u64("u64.big", 1ull << 63);
  w.set_f32("f32", 0.25f);
  w.set_bool("bool", false);
  w.set_string("str", "hello");
  const std::string_view strs[] = {"a", "bc"};
  const float floats[] = {1.0f, 2.0f};
  const int32_t ints[] = {-1, 2, 3};
  w.set_strings("strs", strs);
  w.set_f32s("floats", floats);
  w.set_i32s("ints", ints);
  const gguf::File f = gguf::File::from_bytes(w.to_bytes());

  EXPECT_EQ(f.get_int("u32"), 7);
  EXPECT_EQ(f.get_int("i32"), -3);
  EXPECT_EQ(f.get_int("u64.small"), 42);
  EXPECT_EQ(f.get_float("f32"), 0.25);
  EXPECT_EQ(f.get_float("u32"), 7.0);  // integers widen to float
  EXPECT_EQ(f.get_bool("bool"), false);
  EXPECT_EQ(f.get_string("str"), "hello");
  ASSERT_NE(f.get_array("strs"), nullptr);
  EXPECT_EQ(f.get_array("strs")->strings, std::vector<std::string_view>(strs, strs + 2));
  EXPECT_EQ(f.get_array("floats")->floats, std::vector<double>({1.0, 2.0}));
  EXPECT_EQ(f.get_array("ints")->ints, std::vector<int64_t>({-1, 2, 3}));
  EXPECT_FALSE(f.get_int("absent").has_value());
  EXPECT_FALSE(f.get_string("absent").has_value());
  EXPECT_EQ(f.get_array("absent"), nullptr);

  auto error_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of([&] { f.get_int("u64.big"); }).find("key 'u64.big'"), std::string::npos);
  EXPECT_NE(error_of([&] { f.get_int("str"); }).find("key 'str': expected an integer"), std::string::npos);
  EXPECT_NE(error_of([&] { f.get_int("bool"); }).find("key 'bool'"), std::string::npos);
  EXPECT_NE(error_of([&] { f.get_float("str"); }).find("key 'str'"), std::string::npos);
  EXPECT_NE(error_of([&] { f.get_bool("u32"); }).find("key 'u32': expected a bool"), std::string::npos);
  EXPECT_NE(error_of([&] { f.get_string("u32"); }).find("key 'u32': expected a string"), std::string::npos);
  EXPECT_NE(error_of([&] { f.get_array("str"); }).find("key 'str': expected an array"), std::string::npos);
}

TEST(GgufAlignment, GeneralAlignmentIsHonoured) {
  for (uint32_t alignment : {8u, 32u, 64u, 4096u}) {
    SCOPED_TRACE(alignment);
    gguf::Writer w(alignment);
    w.set_u32("general.alignment", alignment);
    // Odd sizes, so that each tensor needs padding before the next.
    const std::vector<std::vector<uint8_t>> datas = {std::vector<uint8_t>(12, 1), std::vector<uint8_t>(20, 2),
                                                     std::vector<uint8_t>(14, 3)};
    const int64_t ne_a[] = {3}, ne_b[] = {5}, ne_c[] = {7};
    w.add_tensor("a", tensor::DType::F32, ne_a, datas[0]);
    w.add_tensor("b", tensor::DType::F32, ne_b, datas[1]);
    w.add_tensor("c", tensor::DType::F16, ne_c, datas[2]);
    const std::vector<uint8_t> bytes = w.to_bytes();
    const gguf::File f = gguf::File::from_bytes(bytes);
    EXPECT_EQ(f.alignment(), alignment);
    ASSERT_EQ(f.tensors().size(), 3u);
    const uint8_t* first = f.tensors()[0].data;
    for (size_t i = 0; i < 3; ++i) {
      const gguf::TensorInfo& t = f.tensors()[i];
      EXPECT_EQ(t.offset % alignment, 0u) << t.name;
      EXPECT_EQ(static_cast<uint64_t>(t.data - first), t.offset) << t.name;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % std::min(alignment, 16u), 0u) << t.name;
      ASSERT_EQ(t.n_bytes, datas[i].size());
      EXPECT_EQ(std::memcmp(t.data, datas[i].data(), t.n_bytes), 0) << t.name;
    }
  }
}

TEST(GgufAlignment, DefaultIs32) {
  gguf::Writer w;
  const std::vector<uint8_t> d(4, 9);
  const int64_t ne[] = {1};
  w.add_tensor("x", tensor::DType::F32, ne, d);
  const gguf::File f = gguf::File::from_bytes(w.to_bytes());
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.tensors()[0].n_bytes, 4u);
  EXPECT_EQ(f.tensors()[0].data[0], 9);
}

TEST(GgufFile, EmptyHeaderParses) {
  const gguf::File f = gguf::File::from_bytes(gguf::Writer().to_bytes());
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_TRUE(f.tensors().empty());
}

TEST(GgufFile, OpenNamesThePathOnFailure) {
  const std::string dir = make_temp_dir();
  auto error_of = [](const std::string& path) {
    try {
      gguf::File::open(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of(dir + "/absent.gguf").find("cannot open '" + dir + "/absent.gguf'"), std::string::npos);
  EXPECT_NE(error_of(dir).find("not a regular file"), std::string::npos);
  std::ofstream(dir + "/empty.gguf").close();
  EXPECT_NE(error_of(dir + "/empty.gguf").find("is empty"), std::string::npos);
  write_file(dir + "/text.gguf", {'h', 'e', 'l', 'l', 'o', '\n'});
  EXPECT_NE(error_of(dir + "/text.gguf").find("magic"), std::string::npos);
  fs::remove_all(dir);
}

struct TinyVariant {
  const char* name;
  TinyModelOptions options;
};

TEST(GgufTiny, EveryVariantLoadsAndTokenizes) {
  const TinyVariant variants[] = {
      {"llama_f32", {}},
      {"llama_q8_0_untied", {.n_layer = 2, .n_embd = 32, .n_head = 4, .n_head_kv = 2, .n_ff = 64,
                             .matrix_type = tensor::DType::Q8_0, .tied_output = false}},
      {"qwen2_gpt2", {.arch = "qwen2", .tokenizer = "gpt2"}},
      {"qwen3_f16", {.arch = "qwen3", .matrix_type = tensor::DType::F16}},
  };
  for (const auto& v : variants) {
    SCOPED_TRACE(v.name);
    const std::vector<uint8_t> bytes = tiny_model_spec(v.options).to_bytes();
    EXPECT_EQ(bytes, tiny_model_spec(v.options).to_bytes());  // deterministic
    EXPECT_LT(bytes.size(), 64u * 1024u);
    const auto m = model::Model::from_file(gguf::File::from_bytes(bytes));
    EXPECT_EQ(m->config.arch.name, v.options.arch);
    EXPECT_EQ(m->config.n_layer, v.options.n_layer);
    EXPECT_EQ(m->config.tied_output, v.options.tied_output);
    const auto tok = tokenizer::Tokenizer::from_gguf(m->file);
    EXPECT_EQ(tok.n_vocab(), m->config.n_vocab);
    const std::vector<int32_t> ids = tok.encode("the and God", false, false);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(tok.decode(ids, {.strip_leading_space = true}), "the and God");
  }
}

TEST(GgufLayoutScan, FindsEveryField) {
  const std::vector<uint8_t> valid = tiny_model_spec().to_bytes();
  const GgufLayout L = scan_layout(valid);
  const gguf::File f = gguf::File::from_bytes(valid);
  ASSERT_EQ(L.kvs.size(), f.metadata().size());
  ASSERT_EQ(L.tensors.size(), f.tensors().size());
  for (size_t i = 0; i < L.kvs.size(); ++i) EXPECT_EQ(L.kvs[i].key, f.metadata()[i].key);
  for (size_t i = 0; i < L.tensors.size(); ++i) {
    EXPECT_EQ(L.tensors[i].name, f.tensors()[i].name);
    EXPECT_EQ(std::memcmp(valid.data() + L.tensors[i].data_at, f.tensors()[i].data, f.tensors()[i].n_bytes), 0);
  }
  EXPECT_LE(L.tensors.back().data_end, valid.size());
}

// Files on disk: every model shipped for tests, the demo model, the fuzz seeds
// and the vocabulary-only files.
std::vector<std::string> files_in(const std::string& rel_dir) {
  std::vector<std::string> out;
  const fs::path dir = repo_path(rel_dir);
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".gguf") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(GgufShipped, EveryModelLoadsWithItsTokenizer) {
  std::vector<std::string> paths = files_in("tests/data/models");
  for (const auto& p : files_in("models")) paths.push_back(p);
  ASSERT_GE(paths.size(), 10u);  // tiny, 6 mini, 3 kjv
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    std::unique_ptr<model::Model> m;
    ASSERT_NO_THROW(m = model::Model::load(path));
    const model::Config& c = m->config;
    EXPECT_NE(model::arch_find(c.arch.name), nullptr);
    // The shared reference models all use a 4096-token Llama vocabulary.
    const std::string stem = fs::path(path).stem().string();
    if (stem.starts_with("kjv-") || stem.starts_with("mini-") || stem.starts_with("tiny-")) {
      EXPECT_EQ(c.arch.name, "llama");
      EXPECT_EQ(c.n_vocab, 4096);
    }
    uint64_t total = 0;
    for (const auto& t : m->file.tensors()) total += t.n_bytes;
    EXPECT_LT(total, m->file.file_size());
    const auto tok = tokenizer::Tokenizer::from_gguf(m->file);
    EXPECT_EQ(tok.n_vocab(), c.n_vocab);
    EXPECT_FALSE(tok.encode("In the beginning", true, false).empty());
  }
}

TEST(GgufShipped, FuzzSeedsAreSmallAndLoad) {
  const std::vector<std::string> seeds = files_in("fuzz/seeds/fuzz_gguf");
  ASSERT_GE(seeds.size(), 3u);
  for (const std::string& path : seeds) {
    SCOPED_TRACE(path);
    EXPECT_LT(fs::file_size(path), 64u * 1024u);
    std::unique_ptr<model::Model> m;
    ASSERT_NO_THROW(m = model::Model::load(path));
    EXPECT_NO_THROW(tokenizer::Tokenizer::from_gguf(m->file));
  }
}

TEST(GgufShipped, VocabularyFilesParse) {
  const std::vector<std::string> paths = files_in("tests/data/vocab");
  ASSERT_GE(paths.size(), 8u);
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    std::optional<gguf::File> f;
    ASSERT_NO_THROW(f.emplace(gguf::File::open(path)));
    EXPECT_TRUE(f->get_array("tokenizer.ggml.tokens") != nullptr);
    EXPECT_TRUE(f->tensors().empty());
  }
}

}  // namespace
}  // namespace quarrel::test

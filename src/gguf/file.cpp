#include "gguf/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "common/error.h"

namespace quarrel::gguf {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint64_t kMaxAlignment = 1u << 16;
constexpr size_t kMaxNameLength = 63;     // ggml keeps names in char[64]
constexpr uint64_t kMaxStringLength = 1u << 30;

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    case ValueType::STRING: return 8;  // at least the length prefix
    case ValueType::ARRAY: return 12;  // at least type + count
  }
  return 0;
}

bool valid_value_type(uint32_t raw) { return raw <= static_cast<uint32_t>(ValueType::F64); }

// Keys whose type the format fixes. A file that stores them with another type
// is rejected at open rather than misread later.
struct KnownKey {
  std::string_view key;
  ValueType type;
  ValueType elem = ValueType::U8;  // for arrays
};
constexpr KnownKey kKnownKeys[] = {
    {"general.alignment", ValueType::U32},
    {"general.architecture", ValueType::STRING},
    {"general.name", ValueType::STRING},
    {"tokenizer.ggml.model", ValueType::STRING},
    {"tokenizer.ggml.pre", ValueType::STRING},
    {"tokenizer.ggml.tokens", ValueType::ARRAY, ValueType::STRING},
    {"tokenizer.ggml.scores", ValueType::ARRAY, ValueType::F32},
    {"tokenizer.ggml.token_type", ValueType::ARRAY, ValueType::I32},
    {"tokenizer.ggml.merges", ValueType::ARRAY, ValueType::STRING},
    {"tokenizer.chat_template", ValueType::STRING},
};

class Reader {
 public:
  Reader(const uint8_t* base, size_t size) : base_(base), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <typename T>
  T read(const std::string& what) {
    if (remaining() < sizeof(T)) fail("truncated file while reading {} at offset {}", what, pos_);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string_view read_string(const std::string& what) {
    uint64_t len = read<uint64_t>(what + " length");
    if (len > kMaxStringLength) fail("{}: string length {} is too large", what, len);
    if (len > remaining()) fail("{}: string length {} runs past the end of the file", what, len);
    std::string_view s(reinterpret_cast<const char*>(base_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const uint8_t* base_;
  size_t size_;
  size_t pos_ = 0;
};

int64_t read_int(Reader& r, ValueType t, const std::string& what) {
  switch (t) {
    case ValueType::U8: return r.read<uint8_t>(what);
    case ValueType::I8: return r.read<int8_t>(what);
    case ValueType::U16: return r.read<uint16_t>(what);
    case ValueType::I16: return r.read<int16_t>(what);
    case ValueType::U32: return r.read<uint32_t>(what);
    case ValueType::I32: return r.read<int32_t>(what);
    case ValueType::I64: return r.read<int64_t>(what);
    case ValueType::BOOL: {
      uint8_t b = r.read<uint8_t>(what);
      if (b > 1) fail("{}: bool value {} is neither 0 nor 1", what, b);
      return b;
    }
    default: break;
  }
  fail("{}: not an integer type", what);
}

bool is_int_type(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::U16: case ValueType::I16:
    case ValueType::U32: case ValueType::I32: case ValueType::I64: case ValueType::BOOL:
      return true;
    default: return false;
  }
}

Array read_array(Reader& r, const std::string& what) {
  Array a;
  uint32_t raw = r.read<uint32_t>(what + " element type");
  if (!valid_value_type(raw)) fail("{}: invalid array element type {}", what, raw);
  a.elem_type = static_cast<ValueType>(raw);
  if (a.elem_type == ValueType::ARRAY) fail("{}: nested arrays are not supported", what);
  uint64_t n = r.read<uint64_t>(what + " count");
  if (n > r.remaining() / scalar_size(a.elem_type))
    fail("{}: array count {} runs past the end of the file", what, n);
  const std::string elem = what + " element";
  if (a.elem_type == ValueType::STRING) {
    a.strings.reserve(n);
    for (uint64_t i = 0; i < n; ++i) a.strings.push_back(r.read_string(elem));
  } else if (a.elem_type == ValueType::F32) {
    a.floats.reserve(n);
    for (uint64_t i = 0; i < n; ++i) a.floats.push_back(r.read<float>(elem));
  } else if (a.elem_type == ValueType::F64) {
    a.floats.reserve(n);
    for (uint64_t i = 0; i < n; ++i) a.floats.push_back(r.read<double>(elem));
  } else if (a.elem_type == ValueType::U64) {
    a.u64s.reserve(n);
    for (uint64_t i = 0; i < n; ++i) a.u64s.push_back(r.read<uint64_t>(elem));
  } else {
    a.ints.reserve(n);
    for (uint64_t i = 0; i < n; ++i) a.ints.push_back(read_int(r, a.elem_type, elem));
  }
  return a;
}

Value read_value(Reader& r, ValueType t, const std::string& what) {
  Value v;
  v.type = t;
  switch (t) {
    case ValueType::STRING: v.data = r.read_string(what); break;
    case ValueType::ARRAY: v.data = read_array(r, what); break;
    case ValueType::F32: v.data = static_cast<double>(r.read<float>(what)); break;
    case ValueType::F64: v.data = r.read<double>(what); break;
    case ValueType::U64: v.data = r.read<uint64_t>(what); break;
    case ValueType::BOOL: v.data = read_int(r, t, what) != 0; break;
    default: v.data = read_int(r, t, what); break;
  }
  return v;
}

void check_known_key(const KeyValue& kv) {
  for (const auto& k : kKnownKeys) {
    if (k.key != kv.key) continue;
    if (kv.value.type != k.type)
      fail("key '{}': expected type {}, found {}", kv.key, value_type_name(k.type),
           value_type_name(kv.value.type));
    if (k.type == ValueType::ARRAY) {
      const auto& a = std::get<Array>(kv.value.data);
      if (a.elem_type != k.elem)
        fail("key '{}': expected an array of {}, found an array of {}", kv.key,
             value_type_name(k.elem), value_type_name(a.elem_type));
    }
  }
}

bool mul_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "invalid";
}

size_t Array::size() const {
  switch (elem_type) {
    case ValueType::STRING: return strings.size();
    case ValueType::F32: case ValueType::F64: return floats.size();
    case ValueType::U64: return u64s.size();
    default: return ints.size();
  }
}

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

struct File::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  std::vector<uint8_t> owned;  // from_bytes
  ~Mapping() {
    if (addr) munmap(addr, size);
  }
};

File::File() = default;
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path) {
  File f;
  f.path_ = path;
  f.map_ = std::make_unique<Mapping>();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("'{}' is not a regular file", path);
  }
  if (st.st_size == 0) {
    ::close(fd);
    fail("'{}' is empty", path);
  }
  void* addr = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (addr == MAP_FAILED) fail("cannot map '{}': {}", path, std::strerror(errno));
  f.map_->addr = addr;
  f.map_->size = static_cast<size_t>(st.st_size);
  f.base_ = static_cast<const uint8_t*>(addr);
  f.size_ = f.map_->size;
  with_context("gguf '" + path + "'", [&] { f.parse(); });
  return f;
}

File File::from_bytes(std::span<const uint8_t> bytes) {
  File f;
  f.path_ = "<memory>";
  f.map_ = std::make_unique<Mapping>();
  f.map_->owned.assign(bytes.begin(), bytes.end());
  f.base_ = f.map_->owned.data();
  f.size_ = f.map_->owned.size();
  with_context("gguf", [&] { f.parse(); });
  return f;
}

void File::parse() {
  Reader r(base_, size_);
  if (r.read<uint32_t>("magic") != kMagic) fail("bad magic: not a GGUF file");
  version_ = r.read<uint32_t>("version");
  if (version_ != 2 && version_ != 3) fail("unsupported GGUF version {} (2 and 3 are supported)", version_);
  uint64_t n_tensors = r.read<uint64_t>("tensor count");
  uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Smallest possible entries: a key-value is 8 (key length) + 4 (type) + 1 bytes,
  // a tensor info 8 + 4 + 8 + 4 + 8. Counts beyond what the file can hold are lies.
  if (n_kv > r.remaining() / 13) fail("metadata count {} is larger than the file can hold", n_kv);
  if (n_tensors > r.remaining() / 32) fail("tensor count {} is larger than the file can hold", n_tensors);

  std::unordered_set<std::string_view> keys;
  kvs_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string where = fmt::format("metadata entry {}", i);
    std::string_view key = r.read_string(where + " key");
    if (key.empty()) fail("{}: empty key", where);
    const std::string kwhere = fmt::format("metadata key '{}'", key);
    uint32_t raw = r.read<uint32_t>(kwhere + " type");
    if (!valid_value_type(raw)) fail("{}: invalid value type {}", kwhere, raw);
    KeyValue kv{std::string(key), read_value(r, static_cast<ValueType>(raw), kwhere)};
    if (!keys.insert(key).second) fail("duplicate metadata key '{}'", key);
    check_known_key(kv);
    kvs_.push_back(std::move(kv));
  }

  if (const Value* a = find("general.alignment")) {
    int64_t al = std::get<int64_t>(a->data);
    if (al == 0 || (al & (al - 1)) != 0) fail("general.alignment {} is not a power of two", al);
    // The spec asks for a multiple of 8; below that, f32/f16 tensor data could
    // start misaligned, and the backends read it in place as float/uint16.
    if (al < 8) fail("general.alignment {} is below 8 (GGUF requires a multiple of 8)", al);
    if (static_cast<uint64_t>(al) > kMaxAlignment)
      fail("general.alignment {} is absurd (max {})", al, kMaxAlignment);
    alignment_ = static_cast<uint64_t>(al);
  }

  std::unordered_set<std::string_view> names;
  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    const std::string where = fmt::format("tensor {}", i);
    std::string_view name = r.read_string(where + " name");
    if (name.empty()) fail("{}: empty name", where);
    if (name.size() > kMaxNameLength) fail("{}: name of {} bytes is too long (max {})", where, name.size(), kMaxNameLength);
    t.name = std::string(name);
    const std::string twhere = fmt::format("tensor '{}'", name);
    uint32_t n_dims = r.read<uint32_t>(twhere + " n_dims");
    if (n_dims == 0 || n_dims > 4) fail("{}: n_dims {} is out of range (1..4)", twhere, n_dims);
    t.n_dims = static_cast<int>(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = r.read<uint64_t>(twhere + " dimension");
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("{}: dimension {} is {} (must be positive)", twhere, d, static_cast<int64_t>(ne));
      t.ne[d] = static_cast<int64_t>(ne);
    }
    uint32_t raw_type = r.read<uint32_t>(twhere + " type");
    const tensor::DTypeInfo* info = tensor::dtype_find(raw_type);
    if (!info) fail("{}: unknown tensor type {}", twhere, raw_type);
    t.type = info->type;
    t.offset = r.read<uint64_t>(twhere + " offset");
    int64_t n = 1;
    for (int d = 0; d < 4; ++d)
      if (mul_overflows(n, t.ne[d], &n)) fail("{}: element count overflows", twhere);
    if (t.ne[0] % info->block_size != 0)
      fail("{}: row length {} is not a multiple of the {} block size {}", twhere, t.ne[0], info->name,
           info->block_size);
    int64_t bytes = 0;
    if (mul_overflows(n / info->block_size, static_cast<int64_t>(info->type_size), &bytes))
      fail("{}: byte size overflows", twhere);
    t.n_bytes = static_cast<uint64_t>(bytes);
    if (!names.insert(name).second) fail("duplicate tensor name '{}'", name);
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment.
  uint64_t data_start = (r.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors > 0 && data_start > size_) fail("truncated file: tensor data section is missing");
  for (auto& t : tensors_) {
    if (t.offset % alignment_ != 0)
      fail("tensor '{}': offset {} is not a multiple of the alignment {}", t.name, t.offset, alignment_);
    uint64_t avail = size_ - data_start;
    if (t.offset > avail || t.n_bytes > avail - t.offset)
      fail("tensor '{}': data [{}, +{}) lies outside the file", t.name, data_start + t.offset, t.n_bytes);
    t.data = base_ + data_start + t.offset;
  }
}

const Value* File::find(std::string_view key) const {
  for (const auto& kv : kvs_)
    if (kv.key == key) return &kv.value;
  return nullptr;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::optional<int64_t> File::get_int(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (is_int_type(v->type) && v->type != ValueType::BOOL) return std::get<int64_t>(v->data);
  if (v->type == ValueType::U64) {
    uint64_t u = std::get<uint64_t>(v->data);
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail("key '{}': value {} is out of range", key, u);
    return static_cast<int64_t>(u);
  }
  fail("key '{}': expected an integer, found {}", key, value_type_name(v->type));
}

std::optional<double> File::get_float(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == ValueType::F32 || v->type == ValueType::F64) return std::get<double>(v->data);
  if (is_int_type(v->type) && v->type != ValueType::BOOL) return static_cast<double>(std::get<int64_t>(v->data));
  fail("key '{}': expected a number, found {}", key, value_type_name(v->type));
}

std::optional<bool> File::get_bool(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == ValueType::BOOL) return std::get<bool>(v->data);
  fail("key '{}': expected a bool, found {}", key, value_type_name(v->type));
}

std::optional<std::string_view> File::get_string(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return std::nullopt;
  if (v->type == ValueType::STRING) return std::get<std::string_view>(v->data);
  fail("key '{}': expected a string, found {}", key, value_type_name(v->type));
}

const Array* File::get_array(std::string_view key) const {
  const Value* v = find(key);
  if (!v) return nullptr;
  if (v->type == ValueType::ARRAY) return &std::get<Array>(v->data);
  fail("key '{}': expected an array, found {}", key, value_type_name(v->type));
}

}  // namespace quarrel::gguf

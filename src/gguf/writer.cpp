#include "gguf/writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/error.h"

namespace quarrel::gguf {

namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void put_scalar(std::vector<uint8_t>& out, ValueType t, int64_t i, uint64_t u, double f) {
  switch (t) {
    case ValueType::U8: put<uint8_t>(out, static_cast<uint8_t>(i)); break;
    case ValueType::I8: put<int8_t>(out, static_cast<int8_t>(i)); break;
    case ValueType::U16: put<uint16_t>(out, static_cast<uint16_t>(i)); break;
    case ValueType::I16: put<int16_t>(out, static_cast<int16_t>(i)); break;
    case ValueType::U32: put<uint32_t>(out, static_cast<uint32_t>(i)); break;
    case ValueType::I32: put<int32_t>(out, static_cast<int32_t>(i)); break;
    case ValueType::I64: put<int64_t>(out, i); break;
    case ValueType::BOOL: put<uint8_t>(out, i ? 1 : 0); break;
    case ValueType::U64: put<uint64_t>(out, u); break;
    case ValueType::F32: put<float>(out, static_cast<float>(f)); break;
    case ValueType::F64: put<double>(out, f); break;
    default: fail("gguf writer: {} is not a scalar type", value_type_name(t));
  }
}

}  // namespace

void Writer::put_key(std::string_view key, ValueType t) {
  put_string(kv_bytes_, key);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(t));
  ++n_kv_;
}

void Writer::set_u32(std::string_view key, uint32_t v) { put_key(key, ValueType::U32); put(kv_bytes_, v); }
void Writer::set_i32(std::string_view key, int32_t v) { put_key(key, ValueType::I32); put(kv_bytes_, v); }
void Writer::set_u64(std::string_view key, uint64_t v) { put_key(key, ValueType::U64); put(kv_bytes_, v); }
void Writer::set_f32(std::string_view key, float v) { put_key(key, ValueType::F32); put(kv_bytes_, v); }
void Writer::set_bool(std::string_view key, bool v) { put_key(key, ValueType::BOOL); put<uint8_t>(kv_bytes_, v); }
void Writer::set_string(std::string_view key, std::string_view v) {
  put_key(key, ValueType::STRING);
  put_string(kv_bytes_, v);
}

void Writer::set_strings(std::string_view key, std::span<const std::string_view> v) {
  put_key(key, ValueType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::STRING));
  put<uint64_t>(kv_bytes_, v.size());
  for (auto s : v) put_string(kv_bytes_, s);
}

void Writer::set_f32s(std::string_view key, std::span<const float> v) {
  put_key(key, ValueType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::F32));
  put<uint64_t>(kv_bytes_, v.size());
  for (float f : v) put(kv_bytes_, f);
}

void Writer::set_i32s(std::string_view key, std::span<const int32_t> v) {
  put_key(key, ValueType::ARRAY);
  put<uint32_t>(kv_bytes_, static_cast<uint32_t>(ValueType::I32));
  put<uint64_t>(kv_bytes_, v.size());
  for (int32_t i : v) put(kv_bytes_, i);
}

void Writer::set_value(std::string_view key, const Value& v) {
  put_key(key, v.type);
  if (v.type == ValueType::STRING) {
    put_string(kv_bytes_, std::get<std::string_view>(v.data));
  } else if (v.type == ValueType::ARRAY) {
    const Array& a = std::get<Array>(v.data);
    put<uint32_t>(kv_bytes_, static_cast<uint32_t>(a.elem_type));
    put<uint64_t>(kv_bytes_, a.size());
    for (size_t i = 0; i < a.size(); ++i) {
      switch (a.elem_type) {
        case ValueType::STRING: put_string(kv_bytes_, a.strings[i]); break;
        case ValueType::F32: case ValueType::F64: put_scalar(kv_bytes_, a.elem_type, 0, 0, a.floats[i]); break;
        case ValueType::U64: put_scalar(kv_bytes_, a.elem_type, 0, a.u64s[i], 0); break;
        default: put_scalar(kv_bytes_, a.elem_type, a.ints[i], 0, 0); break;
      }
    }
  } else if (v.type == ValueType::F32 || v.type == ValueType::F64) {
    put_scalar(kv_bytes_, v.type, 0, 0, std::get<double>(v.data));
  } else if (v.type == ValueType::U64) {
    put_scalar(kv_bytes_, v.type, 0, std::get<uint64_t>(v.data), 0);
  } else if (v.type == ValueType::BOOL) {
    put_scalar(kv_bytes_, v.type, std::get<bool>(v.data), 0, 0);
  } else {
    put_scalar(kv_bytes_, v.type, std::get<int64_t>(v.data), 0, 0);
  }
}

void Writer::add_tensor(std::string_view name, tensor::DType type, std::span<const int64_t> ne,
                        std::span<const uint8_t> data) {
  tensors_.push_back({std::string(name), type, {ne.begin(), ne.end()}, {data.begin(), data.end()}, {}, data.size()});
}

void Writer::add_tensor_rows(std::string_view name, tensor::DType type, std::span<const int64_t> ne, RowFill fill) {
  int64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
  const uint64_t bytes = static_cast<uint64_t>(tensor::row_bytes(type, ne[0]) * rows);
  tensors_.push_back({std::string(name), type, {ne.begin(), ne.end()}, {}, std::move(fill), bytes});
}

void Writer::emit(const std::function<void(const uint8_t*, size_t)>& out) const {
  std::vector<uint8_t> head;
  put<uint32_t>(head, 0x46554747);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, n_kv_);
  head.insert(head.end(), kv_bytes_.begin(), kv_bytes_.end());
  auto align = [&](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(t.type));
    put<uint64_t>(head, offset);
    offset = align(offset + t.n_bytes);
  }
  head.resize(align(head.size()), 0);
  out(head.data(), head.size());
  const std::vector<uint8_t> zeros(alignment_, 0);
  std::vector<uint8_t> row;
  for (const auto& t : tensors_) {
    if (t.fill) {
      const int64_t rb = tensor::row_bytes(t.type, t.ne[0]);
      const int64_t rows = static_cast<int64_t>(t.n_bytes) / rb;
      row.resize(rb);
      for (int64_t r = 0; r < rows; ++r) {
        t.fill(r, row.data());
        out(row.data(), row.size());
      }
    } else {
      out(t.data.data(), t.data.size());
    }
    out(zeros.data(), align(t.n_bytes) - t.n_bytes);
  }
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint8_t> bytes;
  emit([&](const uint8_t* p, size_t n) { bytes.insert(bytes.end(), p, p + n); });
  return bytes;
}

void Writer::write(const std::string& path) const {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) fail("cannot create '{}': {}", path, std::strerror(errno));
  bool ok = true;
  try {
    emit([&](const uint8_t* p, size_t n) { ok = ok && std::fwrite(p, 1, n, f) == n; });
  } catch (...) {
    std::fclose(f);
    throw;
  }
  if (std::fclose(f) != 0 || !ok) fail("cannot write '{}'", path);
}

}  // namespace quarrel::gguf

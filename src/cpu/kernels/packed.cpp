#include "cpu/kernels/packed.h"

#include <cstring>

#include "common/error.h"
#include "cpu/kernels/kernels.h"
#include "tensor/blocks.h"
#include "tensor/quants.h"

namespace quarrel::cpu {

namespace {

using tensor::DType;

struct Format {
  int block_bytes;   // bytes of one block in the file layout
  int scale_offset;  // of the F16 scale within the block
  int quant_offset;  // of the first quant byte
  int quant_bytes;   // quant bytes per block and row (4 per chunk)
};

Format format(DType t) {
  if (t == DType::Q4_0) return {sizeof(tensor::BlockQ4_0), 0, 2, 16};
  if (t == DType::Q8_0) return {sizeof(tensor::BlockQ8_0), 0, 2, 32};
  fail("no packed layout for {}", tensor::dtype_name(t));
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16; }

}  // namespace

bool packable(DType t) { return t == DType::Q4_0 || t == DType::Q8_0 || is_float(t); }

bool packable_rows(DType t, int64_t n) { return packable(t) && (!is_float(t) || n <= kPanelBufFloats); }

int64_t packed_group_bytes(DType t, int64_t n) {
  return kPackRows * tensor::row_bytes(t, n);
}

int64_t panel_slot(int64_t k, int64_t n) {
  const int64_t per_chain = n / 8;
  return k < 8 * per_chain ? (k % 8) * per_chain + k / 8 : k;
}

void pack_rows(DType t, const uint8_t* w, int64_t w_stride, int64_t rows, int64_t n, uint8_t* dst) {
  if (is_float(t)) {
    // Slot by slot, so that the writes run in order (the 16 rows read at once
    // stay in cache between their slots): slot c * per + s holds element
    // 8 s + c, panel_slot's inverse. A model's weights are packed at load.
    const int64_t eb = tensor::row_bytes(t, 1), group = packed_group_bytes(t, n), per = n / 8;
    for (int64_t g = 0; g < rows / kPackRows; ++g) {
      const uint8_t* src = w + g * kPackRows * w_stride;
      uint8_t* out = dst + g * group;
      for (int64_t slot = 0; slot < n; ++slot) {
        const int64_t k = slot < 8 * per ? slot % per * 8 + slot / per : slot;
        for (int64_t r = 0; r < kPackRows; ++r)
          std::memcpy(out + (slot * kPackRows + r) * eb, src + r * w_stride + k * eb, eb);
      }
    }
    return;
  }
  const Format f = format(t);
  const int64_t nb = n / 32, chunks = f.quant_bytes / 4;
  const int64_t group = packed_group_bytes(t, n);
  for (int64_t g = 0; g < rows / kPackRows; ++g) {
    uint8_t* quants = dst + g * group;
    uint8_t* scales = quants + nb * chunks * 64;
    for (int64_t r = 0; r < kPackRows; ++r) {
      const uint8_t* row = w + (g * kPackRows + r) * w_stride;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = row + b * f.block_bytes;
        std::memcpy(scales + (b * kPackRows + r) * 2, blk + f.scale_offset, 2);
        for (int64_t c = 0; c < chunks; ++c)
          std::memcpy(quants + (b * chunks + c) * 64 + 4 * r, blk + f.quant_offset + 4 * c, 4);
      }
    }
  }
}

void unpack_row(DType t, const uint8_t* packed, int64_t n, int64_t r, uint8_t* dst) {
  if (is_float(t)) {
    const int64_t eb = tensor::row_bytes(t, 1);
    const uint8_t* group = packed + (r / kPackRows) * packed_group_bytes(t, n);
    for (int64_t k = 0; k < n; ++k)
      std::memcpy(dst + k * eb, group + (panel_slot(k, n) * kPackRows + r % kPackRows) * eb, eb);
    return;
  }
  const Format f = format(t);
  const int64_t nb = n / 32, chunks = f.quant_bytes / 4;
  const uint8_t* quants = packed + (r / kPackRows) * packed_group_bytes(t, n);
  const uint8_t* scales = quants + nb * chunks * 64;
  const int64_t rr = r % kPackRows;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = dst + b * f.block_bytes;
    std::memcpy(blk + f.scale_offset, scales + (b * kPackRows + rr) * 2, 2);
    for (int64_t c = 0; c < chunks; ++c) std::memcpy(blk + f.quant_offset + 4 * c, quants + (b * chunks + c) * 64 + 4 * rr, 4);
  }
}

}  // namespace quarrel::cpu

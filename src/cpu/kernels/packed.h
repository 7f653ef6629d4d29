#pragma once
// Weights repacked at load: groups of 16 rows interleaved so that one SIMD
// register holds the same four quants of 16 rows. A matmul kernel then
// multiplies a whole register by one broadcast group of four activation bytes
// and each lane accumulates its own row's dot product: no horizontal sums, no
// shuffles, and one scale conversion per block for all 16 rows.
//
// Layout of one group of 16 rows with nb blocks of 32 per row:
//   quants: nb blocks, each kChunks[type] chunks of 64 bytes; chunk j holds
//           four bytes of each row, rows in order (row r at bytes 4r..4r+3):
//             Q8_0: chunk g (0..7) = quants 4g..4g+3 of the block;
//             Q4_0: chunk k (0..3) = packed bytes qs[4k..4k+3], so its low
//                   nibbles are elements 4k.. and its high nibbles 16+4k..
//   scales: nb blocks of 16 F16 scales, one per row, after all the quants.
// Float weights (F32, F16) are packed as panels: for each element k, the 16
// rows' values at k, so a register holds 16 rows and multiplies one broadcast
// activation; a matmul needs no horizontal sums. The elements go chain by
// chain (panel_slot): the reference sums element k in chain k % 8, so chain
// c's elements c, c + 8, ... lie together, and the last n % 8 follow.
// A group takes exactly as many bytes as its 16 rows did, and starts on a
// 64-byte boundary when the buffer does.
#include <cstdint>

#include "tensor/dtype.h"

namespace quarrel::cpu {

constexpr int kPackRows = 16;
// The longest float row a packed kernel takes: it copies whole activation
// rows into a stack buffer of this many floats (a row split in parts would
// change the order of the sums). Longer rows stay unpacked.
constexpr int64_t kPanelBufFloats = 65536;

// True when weights of type t have a packed layout (Q4_0, Q8_0, F16, F32).
bool packable(tensor::DType t);
// True when rows of n elements of type t may be packed.
bool packable_rows(tensor::DType t, int64_t n);
// Where element k of a row of n float elements sits in its panel.
int64_t panel_slot(int64_t k, int64_t n);
// Bytes of one packed group of 16 rows of n elements.
int64_t packed_group_bytes(tensor::DType t, int64_t n);
// Packs rows [0, rows) (rows a multiple of 16) of a row-major matrix with
// row stride w_stride into dst (rows / 16 * packed_group_bytes bytes).
void pack_rows(tensor::DType t, const uint8_t* w, int64_t w_stride, int64_t rows, int64_t n, uint8_t* dst);
// Row r of a packed matrix back in the file's block layout (for references
// and tests).
void unpack_row(tensor::DType t, const uint8_t* packed, int64_t n, int64_t r, uint8_t* dst);

}  // namespace quarrel::cpu

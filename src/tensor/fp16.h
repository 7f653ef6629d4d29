#pragma once
// Scalar conversions between float and the two 16-bit float formats GGUF
// stores: IEEE half (F16) and bfloat16 (BF16). Portable code with no
// intrinsics; these are the reference the SIMD and CUDA paths are tested
// against, so every result is bit-exact with the hardware instructions ggml
// relies on (F16C vcvtps2ph/vcvtph2ps, and ggml's own BF16 rounding).
#include <bit>
#include <cstdint>

namespace quarrel::tensor {

// Exact: every half is a float. NaNs come back quiet with their payload, as
// vcvtph2ps returns them.
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x00400000u : 0u);
  } else if (exp != 0) {
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // A subnormal half is a normal float: shift the leading one up to the
    // implicit position. 113 is the biased float exponent of 2^-14.
    uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// Round to nearest, ties to even, as _cvtss_sh(x, 0) does: values from 65520
// up become infinity, tiny values become half subnormals or signed zero, and a
// NaN stays a NaN of the same sign with the quiet bit set and the top ten
// payload bits kept.
inline uint16_t fp32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) {
    return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  }
  if (ax >= 0x477ff000u) {  // 65520 and up (infinity included) round to inf
    return uint16_t(sign | 0x7c00u);
  }
  if (ax >= 0x38800000u) {  // 2^-14 and up: a normal half
    // Rebias the exponent (the subtraction wraps on purpose) and add just
    // under half an ulp, plus one when the kept lsb is odd: ties go to even.
    // A mantissa carry rolls into the exponent, which is the right answer.
    const uint32_t lsb = (ax >> 13) & 1u;
    return uint16_t(sign | ((ax + 0xc8000fffu + lsb) >> 13));
  }
  // Half subnormal: count units of 2^-24 and round that integer.
  const uint32_t e = ax >> 23;
  if (e < 102) {  // below 2^-25: rounds to zero
    return sign;
  }
  const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126 - e;  // 14..24
  uint32_t r = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (r & 1u) != 0)) {
    ++r;  // may become 0x400, the smallest normal half: still correct
  }
  return uint16_t(sign | r);
}

// Exact: bfloat16 is the top half of a float.
inline float bf16_to_fp32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

// ggml's conversion: round to nearest even on the dropped 16 bits, subnormals
// kept (not flushed), NaNs forced quiet so that rounding can never turn one
// into infinity.
inline uint16_t fp32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    return uint16_t((x >> 16) | 64u);
  }
  return uint16_t((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

}  // namespace quarrel::tensor

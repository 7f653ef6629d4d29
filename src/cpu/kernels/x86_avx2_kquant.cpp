// AVX2 dot products for the K-quants that Q4_K_M/Q5_K_M/Q6_K files hold
// (Q4_K, Q5_K, Q6_K) against Q8_K activations. Q2_K and Q3_K keep the scalar
// reference. Each 256-element block is one integer sum (exact) scaled once;
// only the float sums over blocks differ in order from the reference.
#include <cstddef>
#include <type_traits>

#include "cpu/kernels/kernels.h"
#include "cpu/kernels/x86_avx2_common.h"
#include "tensor/blocks.h"

namespace quarrel::cpu::avx2 {

namespace {

using tensor::DType;

constexpr int kQ8KQs = 4, kQ8KBsums = 4 + 256;  // byte offsets in BlockQ8_K

inline float load_f32(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

// The eight 6-bit scales and mins of Q4_K/Q5_K (get_scale_min_k4).
inline void unpack_scales_k4(const uint8_t* q, int16_t* sc, int16_t* m) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
  }
  for (int j = 4; j < 8; ++j) {
    sc[j] = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    m[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Sum over the sixteen 16-element groups of bsums times their sub-block's min.
inline int32_t min_term(const uint8_t* y, const int16_t* m) {
  int16_t bsums[16];
  std::memcpy(bsums, y + kQ8KBsums, sizeof(bsums));
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) s += bsums[j] * m[j / 2];
  return s;
}

// Q4_K and Q5_K share everything but the fifth bit.
template <bool kFifthBit>
float vec_dot_q45_k(const void* vw, const void* va, int64_t n) {
  using Block = std::conditional_t<kFifthBit, tensor::BlockQ5_K, tensor::BlockQ4_K>;
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  __m256 acc = _mm256_setzero_ps();
  float acc_min = 0.0f;
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* x = w + i * sizeof(Block);
    const uint8_t* y = a + i * sizeof(tensor::BlockQ8_K);
    const float yd = load_f32(y);
    int16_t sc[8], m[8];
    unpack_scales_k4(x + 4, sc, m);
    const uint8_t* qs = x + offsetof(Block, qs);
    const int8_t* q8 = reinterpret_cast<const int8_t*>(y + kQ8KQs);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFifthBit) qh = load256(x + offsetof(tensor::BlockQ5_K, qh));
    __m256i sumi = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const __m256i bits = load256(qs + 32 * g);
      __m256i lo = _mm256_and_si256(bits, m4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      if constexpr (kFifthBit) {
        const __m256i one = _mm256_set1_epi8(1);
        const __m256i bl = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), one);
        const __m256i bh = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g + 1)), one);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(bl, 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(bh, 4));
      }
      const __m256i pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(q8 + 64 * g)), _mm256_set1_epi16(sc[2 * g]));
      const __m256i ph =
          _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(q8 + 64 * g + 32)), _mm256_set1_epi16(sc[2 * g + 1]));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * f16_to_f32(x)), _mm256_cvtepi32_ps(sumi), acc);
    acc_min += yd * f16_to_f32(x + 2) * static_cast<float>(min_term(y, m));
  }
  return hsum(acc) - acc_min;
}

// Q6_K: per 128 elements, ql holds low nibbles of elements l and l + 32
// (high nibbles: l + 64, l + 96) and qh their top two bits; the offset 32 is
// taken out in 16-bit lanes. Sixteen signed 8-bit scales, one per 16.
float vec_dot_q6_k(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3), m32 = _mm256_set1_epi8(32);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* x = w + i * sizeof(tensor::BlockQ6_K);
    const uint8_t* y = a + i * sizeof(tensor::BlockQ8_K);
    const int8_t* sc = reinterpret_cast<const int8_t*>(x + offsetof(tensor::BlockQ6_K, scales));
    const int8_t* q8 = reinterpret_cast<const int8_t*>(y + kQ8KQs);
    __m256i sumi = _mm256_setzero_si256();
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = x + 64 * half;
      const __m256i b1 = load256(ql), b2 = load256(ql + 32);
      const __m256i bh = load256(x + offsetof(tensor::BlockQ6_K, qh) + 32 * half);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(b1, m4), _mm256_slli_epi16(_mm256_and_si256(bh, m2), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(b2, m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 2), m2), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 4), m2), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 6), m2), 4));
      for (int t = 0; t < 4; ++t) {
        const __m256i y8 = load256(q8 + 128 * half + 32 * t);
        const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q[t], y8), _mm256_maddubs_epi16(m32, y8));
        // Elements 0..15 of this 32 take one scale, 16..31 the next.
        const int s = 8 * half + 2 * t;
        const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(sc[s + 1]), _mm_set1_epi16(sc[s]));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, scale));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f32(y) * f16_to_f32(x + offsetof(tensor::BlockQ6_K, d))),
                          _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

// K-quant matmuls are row-at-a-time dot products: these formats are not on
// the prefill fast path, and the 256-element blocks already give each dot a
// long integer run.
template <VecDotFn F>
void matmul_rows(const uint8_t* w, int64_t ws, int64_t r0, int64_t r1, int64_t n, const uint8_t* a, int64_t as,
                 int64_t n_cols, float* out, int64_t os) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < n_cols; ++c) out[c * os + r] = F(w + r * ws, a + c * as, n);
}

}  // namespace

void add_kquant_kernels(Kernels& k) {
  k.vec_dot[dtype_index(DType::Q4_K)] = vec_dot_q45_k<false>;
  k.vec_dot[dtype_index(DType::Q5_K)] = vec_dot_q45_k<true>;
  k.vec_dot[dtype_index(DType::Q6_K)] = vec_dot_q6_k;
  k.matmul[dtype_index(DType::Q4_K)] = matmul_rows<vec_dot_q45_k<false>>;
  k.matmul[dtype_index(DType::Q5_K)] = matmul_rows<vec_dot_q45_k<true>>;
  k.matmul[dtype_index(DType::Q6_K)] = matmul_rows<vec_dot_q6_k>;
}

}  // namespace quarrel::cpu::avx2

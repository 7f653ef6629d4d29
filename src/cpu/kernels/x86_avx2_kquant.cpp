// AVX2 dot products for the K-quants that Q4_K_M/Q5_K_M/Q6_K files hold
// (Q4_K, Q5_K, Q6_K) against Q8_K activations, bit-exact with the scalar
// reference (tensor/quants_k.cpp): Q4_K and Q6_K in ggml's AVX2 order, Q5_K
// in its generic one (LaneSums below). Q2_K and Q3_K keep the reference.
#include <cstddef>

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

// ggml's generic K-quant dot products keep eight integer lanes per block,
// lane l holding the elements e with e % 8 == l (times their sub-block
// scale); each lane is scaled by d into its own float sum, and the eight sums
// are added at the very end. llama.cpp's reference outputs follow that order,
// and long prompts amplify any other order's last-bit differences past the
// tests' tolerance, so these kernels build exactly those lanes.
//
// Within each 16-byte half, bytes are reordered to [0, 8, 1, 9, ..., 7, 15]
// so that maddubs adds elements e and e + 8, the same lane; adding the two
// halves gives a 32-element sub-block's eight lanes in 16 bits.
inline __m256i lane_order() {
  return _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13,
                          6, 14, 7, 15);
}

// Lane sums (16-bit, lanes 0..7 in each half) of q * y over 32 elements,
// with q unsigned (at most 63) and y signed.
inline __m256i lane_products(__m256i q, __m256i y, __m256i order) {
  return _mm256_maddubs_epi16(_mm256_shuffle_epi8(q, order), _mm256_shuffle_epi8(y, order));
}

// Adds sc * (lanes of both halves) to acc: one scale for all 32 elements.
inline __m256i add_scaled32(__m256i acc, __m256i p16, int32_t sc) {
  const __m128i s = _mm_add_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
  return _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_cvtepi16_epi32(s), _mm256_set1_epi32(sc)));
}

// The reference's float steps: sums[l] += d * lanes[l] per block, then
// sumf + sums[0] + ... + sums[7] at the end.
struct LaneSums {
  __m256 sums = _mm256_setzero_ps();
  float sumf = 0.0f;
  void add_block(__m256i lanes, float d) { sums = _mm256_add_ps(sums, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes))); }
  float total() const {
    alignas(32) float s[8];
    _mm256_store_ps(s, sums);
    float t = sumf;
    for (float x : s) t += x;
    return t;
  }
};

// Q5_K, in the generic order (LaneSums; no reference run pins its AVX2 one):
// Q4_K's layout plus a fifth bit per element in qh.
float vec_dot_q5_k(const void* vw, const void* va, int64_t n) {
  using Block = tensor::BlockQ5_K;
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  const __m256i m4 = _mm256_set1_epi8(0x0f), order = lane_order();
  LaneSums acc;
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* x = w + i * sizeof(Block);
    const uint8_t* y = a + i * sizeof(tensor::BlockQ8_K);
    const float yd = load_f32(y);
    int16_t sc[8], m[8];
    unpack_scales_k4(x + 4, sc, m);
    const uint8_t* qs = x + offsetof(Block, qs);
    const int8_t* q8 = reinterpret_cast<const int8_t*>(y + kQ8KQs);
    const __m256i qh = load256(x + offsetof(tensor::BlockQ5_K, qh));
    const int32_t summs = min_term(y, m);
    __m256i lanes = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const __m256i bits = load256(qs + 32 * g);
      __m256i lo = _mm256_and_si256(bits, m4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      const __m256i one = _mm256_set1_epi8(1);
      const __m256i bl = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), one);
      const __m256i bh = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g + 1)), one);
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(bl, 4));
      hi = _mm256_or_si256(hi, _mm256_slli_epi16(bh, 4));
      lanes = add_scaled32(lanes, lane_products(lo, load256(q8 + 64 * g), order), sc[2 * g]);
      lanes = add_scaled32(lanes, lane_products(hi, load256(q8 + 64 * g + 32), order), sc[2 * g + 1]);
    }
    acc.add_block(lanes, f16_to_f32(x) * yd);
    acc.sumf -= f16_to_f32(x + 2) * yd * static_cast<float>(summs);
  }
  return acc.total();
}

// ggml's AVX2 order for Q4_K and Q6_K (tensor::ref's QuadLaneSums): plain
// maddubs + madd lanes, lane m holding elements (e % 32) / 4 == m, one
// multiply-add by d per block, and the horizontal sum at the end.
inline __m256i scale_halves(int32_t lo, int32_t hi) {
  return _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(lo)), _mm_set1_epi16(static_cast<int16_t>(hi)));
}

// Q4_K: each 32-byte group holds 64 elements, low nibbles first, one scale
// per 32; the mins times Q8_K's sums go to four float sums of their own.
float vec_dot_q4_k(const void* vw, const void* va, int64_t n) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  __m256 acc = _mm256_setzero_ps();
  __m128 mins = _mm_setzero_ps();
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* x = w + i * sizeof(tensor::BlockQ4_K);
    const uint8_t* y = a + i * sizeof(tensor::BlockQ8_K);
    const float yd = load_f32(y);
    int16_t sc[8], m[8], bs[16];
    unpack_scales_k4(x + 4, sc, m);
    std::memcpy(bs, y + kQ8KBsums, sizeof(bs));
    alignas(16) int32_t prod[4];
    for (int j = 0; j < 4; ++j)
      prod[j] = m[2 * j] * (bs[4 * j] + bs[4 * j + 1]) + m[2 * j + 1] * (bs[4 * j + 2] + bs[4 * j + 3]);
    mins = _mm_fmadd_ps(_mm_set1_ps(-yd * f16_to_f32(x + 2)),
                        _mm_cvtepi32_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(prod))), mins);
    const uint8_t* qs = x + offsetof(tensor::BlockQ4_K, qs);
    const int8_t* q8 = reinterpret_cast<const int8_t*>(y + kQ8KQs);
    __m256i lanes = _mm256_setzero_si256();
    for (int g = 0; g < 4; ++g) {
      const __m256i bits = load256(qs + 32 * g);
      const __m256i lo = _mm256_and_si256(bits, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
      const __m256i pl = _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * g]), _mm256_maddubs_epi16(lo, load256(q8 + 64 * g)));
      const __m256i ph =
          _mm256_madd_epi16(_mm256_set1_epi16(sc[2 * g + 1]), _mm256_maddubs_epi16(hi, load256(q8 + 64 * g + 32)));
      lanes = _mm256_add_epi32(lanes, _mm256_add_epi32(pl, ph));
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * f16_to_f32(x)), _mm256_cvtepi32_ps(lanes), acc);
  }
  mins = _mm_add_ps(mins, _mm_movehl_ps(mins, mins));
  mins = _mm_add_ss(mins, _mm_movehdup_ps(mins));
  return hsum(acc) + _mm_cvtss_f32(mins);
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
    __m256i lanes = _mm256_setzero_si256();
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
        lanes = _mm256_add_epi32(lanes, _mm256_madd_epi16(scale_halves(sc[s], sc[s + 1]), p16));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(load_f32(y) * f16_to_f32(x + offsetof(tensor::BlockQ6_K, d))),
                          _mm256_cvtepi32_ps(lanes), acc);
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
  k.vec_dot[dtype_index(DType::Q4_K)] = vec_dot_q4_k;
  k.vec_dot[dtype_index(DType::Q5_K)] = vec_dot_q5_k;
  k.vec_dot[dtype_index(DType::Q6_K)] = vec_dot_q6_k;
  k.matmul[dtype_index(DType::Q4_K)] = matmul_rows<vec_dot_q4_k>;
  k.matmul[dtype_index(DType::Q5_K)] = matmul_rows<vec_dot_q5_k>;
  k.matmul[dtype_index(DType::Q6_K)] = matmul_rows<vec_dot_q6_k>;
}

}  // namespace quarrel::cpu::avx2

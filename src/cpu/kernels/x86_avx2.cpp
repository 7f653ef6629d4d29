// AVX2 + FMA + F16C kernels for the 32-element block formats (Q4_0, Q4_1,
// Q5_0, Q5_1, Q8_0) and the activation quantizers. The float, K-quant and
// packed-Q4_0 kernels live in x86_avx2_float.cpp, x86_avx2_kquant.cpp and
// x86_avx2_packed.cpp; this file's kernels_init_avx2() installs them all.
//
// Arithmetic follows the scalar references: activations are quantized with
// the same rounding (bit-identical blocks), each block's integer dot product
// is exact, and only the order of the float sums over blocks differs.
#include "cpu/kernels/x86_avx2_common.h"
#include "cpu/kernels/x86_avx2_tile.h"
#include "cpu/kernels/kernels.h"
#include "tensor/blocks.h"

namespace quarrel::cpu {

namespace avx2 {
void add_float_kernels(Kernels& k);
void add_kquant_kernels(Kernels& k);
void add_packed_kernels(Kernels& k);
}  // namespace avx2

namespace {

using namespace avx2;
using tensor::DType;

// ------------------------------------------------------------ quantizers

// Eight int32 vectors of one 32-element block packed to 32 int8 in order.
inline __m256i pack_i32_to_i8(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
  const __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
  const __m256i p = _mm256_packs_epi16(p01, p23);
  // The packs work within 128-bit lanes; this puts the eight groups back in order.
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// One Q8_0/Q8_1 block: d = amax / 127, quants round(x * 127 / amax) to
// nearest even, exactly as the reference. Returns d; sum gets sum(quants).
inline float quantize_q8_block(const float* x, int8_t* qs, int32_t* sum) {
  __m256 v[4];
  for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + 8 * k);
  const __m256 m = _mm256_max_ps(_mm256_max_ps(abs_ps(v[0]), abs_ps(v[1])), _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3])));
  const float amax = hmax(m);
  const float d = amax / 127.0f;
  const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k)
    q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
  if (sum) *sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
  return d;
}

inline void store_f16(uint8_t* p, float f) {
  const uint16_t h = _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
  std::memcpy(p, &h, 2);
}

void quantize_q8_0(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<uint8_t*>(vy);
  for (int64_t i = 0; i < n / 32; ++i, y += sizeof(tensor::BlockQ8_0)) {
    const float d = quantize_q8_block(x + 32 * i, reinterpret_cast<int8_t*>(y + 2), nullptr);
    store_f16(y, d);
  }
}

void quantize_q8_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<uint8_t*>(vy);
  for (int64_t i = 0; i < n / 32; ++i, y += sizeof(tensor::BlockQ8_1)) {
    int32_t sum = 0;
    const float d = quantize_q8_block(x + 32 * i, reinterpret_cast<int8_t*>(y + 4), &sum);
    store_f16(y, d);
    store_f16(y + 2, static_cast<float>(sum) * d);  // s from the float d, as ggml
  }
}

// Q8_K: the signed value of largest magnitude (the first on a tie) maps to
// -127, and bsums hold the sum of each 16 quants.
void quantize_q8_k(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<uint8_t*>(vy);
  for (int64_t i = 0; i < n / 256; ++i, x += 256, y += sizeof(tensor::BlockQ8_K)) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + 8 * k)));
    const float amax = hmax(m);
    if (amax == 0.0f) {
      std::memset(y, 0, sizeof(tensor::BlockQ8_K));
      continue;
    }
    float max = 0.0f;
    const __m256 vamax = _mm256_set1_ps(amax);
    for (int k = 0; k < 32; ++k) {
      const int mask = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * k)), vamax, _CMP_EQ_OQ));
      if (mask) {
        max = x[8 * k + __builtin_ctz(static_cast<unsigned>(mask))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    int8_t* qs = reinterpret_cast<int8_t*>(y + 4);
    int16_t bsums[16];
    for (int g = 0; g < 8; ++g) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 v = _mm256_mul_ps(vs, _mm256_loadu_ps(x + 32 * g + 8 * k));
        q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)),
                                _mm256_set1_epi32(127));
      }
      bsums[2 * g] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      bsums[2 * g + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + 32 * g), pack_i32_to_i8(q[0], q[1], q[2], q[3]));
    }
    const float d = 1.0f / iscale;
    std::memcpy(y, &d, 4);
    std::memcpy(y + 4 + 256, bsums, sizeof(bsums));
  }
}

// --------------------------------------------------------- block formats
//
// Each format is a traits struct for the tile driver in x86_avx2_tile.h:
// load_w unpacks a weight block to 32 bytes plus its scale, load_a prepares an
// activation block, and idot gives the block's integer dot product in eight
// int32 lanes. Unsigned weights (Q4_0 and Q5_0 with their offset still in)
// go straight into maddubs; the offset's share, offset * sum(a), is taken out
// in 16-bit lanes with a product computed once per activation block.

struct Q4_0T {
  static constexpr int kWBytes = sizeof(tensor::BlockQ4_0), kABytes = sizeof(tensor::BlockQ8_0), kBlock = 32;
  static constexpr bool kHasMin = false;
  struct W {
    __m256i q;
    __m256 d;
  };
  struct A {
    __m256i q, off;
    __m256 d;
  };
  static W load_w(const uint8_t* p) { return {nibbles_to_bytes(p + 2), _mm256_set1_ps(f16_to_f32(p))}; }
  static A load_a(const uint8_t* p) {
    const __m256i q = load256(p + 2);
    return {q, _mm256_maddubs_epi16(_mm256_set1_epi8(8), q), _mm256_set1_ps(f16_to_f32(p))};
  }
  static __m256i idot(const W& w, const A& a) {
    return _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(w.q, a.q), a.off), _mm256_set1_epi16(1));
  }
};

struct Q5_0T {
  static constexpr int kWBytes = sizeof(tensor::BlockQ5_0), kABytes = sizeof(tensor::BlockQ8_0), kBlock = 32;
  static constexpr bool kHasMin = false;
  using W = Q4_0T::W;
  using A = Q4_0T::A;
  static W load_w(const uint8_t* p) {
    const __m256i hi = _mm256_and_si256(bits_to_bytes(p + 2), _mm256_set1_epi8(0x10));
    return {_mm256_or_si256(nibbles_to_bytes(p + 6), hi), _mm256_set1_ps(f16_to_f32(p))};
  }
  static A load_a(const uint8_t* p) {
    const __m256i q = load256(p + 2);
    return {q, _mm256_maddubs_epi16(_mm256_set1_epi8(16), q), _mm256_set1_ps(f16_to_f32(p))};
  }
  static __m256i idot(const W& w, const A& a) { return Q4_0T::idot(w, a); }
};

struct Q8_0T {
  static constexpr int kWBytes = sizeof(tensor::BlockQ8_0), kABytes = sizeof(tensor::BlockQ8_0), kBlock = 32;
  static constexpr bool kHasMin = false;
  struct W {
    __m256i q, abs;
    __m256 d;
  };
  struct A {
    __m256i q;
    __m256 d;
  };
  static W load_w(const uint8_t* p) {
    const __m256i q = load256(p + 2);
    return {q, _mm256_sign_epi8(q, q), _mm256_set1_ps(f16_to_f32(p))};
  }
  static A load_a(const uint8_t* p) { return {load256(p + 2), _mm256_set1_ps(f16_to_f32(p))}; }
  static __m256i idot(const W& w, const A& a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w.abs, _mm256_sign_epi8(a.q, w.q)), _mm256_set1_epi16(1));
  }
};

// Q4_1/Q5_1: unsigned quants with a minimum m; the activation's s = d * sum(q)
// carries the minimum's share, added in float per block.
struct Q4_1T {
  static constexpr int kWBytes = sizeof(tensor::BlockQ4_1), kABytes = sizeof(tensor::BlockQ8_1), kBlock = 32;
  static constexpr bool kHasMin = true;
  struct W {
    __m256i q;
    __m256 d;
    float m;
  };
  struct A {
    __m256i q;
    __m256 d;
    float s;
  };
  static W load_w(const uint8_t* p) {
    return {nibbles_to_bytes(p + 4), _mm256_set1_ps(f16_to_f32(p)), f16_to_f32(p + 2)};
  }
  static A load_a(const uint8_t* p) { return {load256(p + 4), _mm256_set1_ps(f16_to_f32(p)), f16_to_f32(p + 2)}; }
  static __m256i idot(const W& w, const A& a) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w.q, a.q), _mm256_set1_epi16(1));
  }
};

struct Q5_1T {
  static constexpr int kWBytes = sizeof(tensor::BlockQ5_1), kABytes = sizeof(tensor::BlockQ8_1), kBlock = 32;
  static constexpr bool kHasMin = true;
  using W = Q4_1T::W;
  using A = Q4_1T::A;
  static W load_w(const uint8_t* p) {
    const __m256i hi = _mm256_and_si256(bits_to_bytes(p + 4), _mm256_set1_epi8(0x10));
    return {_mm256_or_si256(nibbles_to_bytes(p + 8), hi), _mm256_set1_ps(f16_to_f32(p)), f16_to_f32(p + 2)};
  }
  static A load_a(const uint8_t* p) { return Q4_1T::load_a(p); }
  static __m256i idot(const W& w, const A& a) { return Q4_1T::idot(w, a); }
};

template <class Q>
float vec_dot_q(const void* w, const void* a, int64_t n) {
  float out = 0;
  matmul_blocks<Q>(static_cast<const uint8_t*>(w), 0, 0, 1, n, static_cast<const uint8_t*>(a), 0, 1, &out, 1);
  return out;
}

template <class Q>
void add_block_type(Kernels& k, DType t) {
  k.vec_dot[dtype_index(t)] = vec_dot_q<Q>;
  k.matmul[dtype_index(t)] = matmul_blocks<Q>;
}

}  // namespace

void kernels_init_avx2(Kernels& k) {
  k.isa = "avx2";
  k.quantize[dtype_index(DType::Q8_0)] = quantize_q8_0;
  k.quantize[dtype_index(DType::Q8_1)] = quantize_q8_1;
  k.quantize[dtype_index(DType::Q8_K)] = quantize_q8_k;
  add_block_type<Q4_0T>(k, DType::Q4_0);
  add_block_type<Q4_1T>(k, DType::Q4_1);
  add_block_type<Q5_0T>(k, DType::Q5_0);
  add_block_type<Q5_1T>(k, DType::Q5_1);
  add_block_type<Q8_0T>(k, DType::Q8_0);
  avx2::add_float_kernels(k);
  avx2::add_kquant_kernels(k);
  avx2::add_packed_kernels(k);
}

}  // namespace quarrel::cpu

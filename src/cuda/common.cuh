#pragma once
// Shared by every CUDA file: the error check that records file and line, and
// warp-level reductions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <unordered_set>
#include <sstream>
#include <string>
#include <utility>

#include "common/error.h"
#include "tensor/ref_math.h"

#define QUARREL_CUDA_CHECK(call) ::quarrel::cuda::check_status((call), #call, __FILE__, __LINE__)

namespace quarrel::cuda {

// Concatenates its arguments into one message (fmt is not usable under nvcc).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// Whether environment variable `name` is "1": the backend's switches for
// measuring and testing one path against another (QUARREL_CUDA_STAGED, ...).
inline bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && std::string(v) == "1";
}

inline void check_status(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    fail_message(cat("CUDA error '", cudaGetErrorString(e), "' at ", file, ":", line, " (", what, ")"));
}

constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024).
__device__ __forceinline__ float block_sum(float v, float* scratch32) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch32[warp] = v;
  __syncthreads();
  const int n_warps = blockDim.x / kWarp;
  v = lane < n_warps ? scratch32[lane] : 0.0f;
  return warp_sum(v);
}

// Sum over the whole block of kWarps warps of double values (scratch: 32
// doubles). kWarps is a constant so that the loads of the warps' sums go
// out together (a runtime loop waited for each before its add).
template <int kWarps>
__device__ __forceinline__ double block_sum_double(double v, double* scratch32) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) scratch32[warp] = v;
  __syncthreads();
  double total = 0;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) total += scratch32[w];
  return total;
}

// The CPU's RMSNorm scale: squares rounded to float, summed in double (as
// ggml sums them), then 1 / sqrt in float.
__device__ __forceinline__ float rms_scale(double sum_squares, int n, float eps) {
  return 1.0f / sqrtf(static_cast<float>(sum_squares / n) + eps);
}

// Dynamic shared memory a kernel may have: the 227 KB of an sm_90
// multiprocessor, less room for the kernels' static shared memory.
constexpr size_t kMaxDynamicSmem = 224 * 1024;

// Lets a kernel use up to kMaxDynamicSmem. The attribute is set once per
// kernel, not on every launch of the prefill path.
template <typename... KArgs>
void allow_large_smem(void (*kernel)(KArgs...)) {
  static std::mutex mu;
  static std::unordered_set<const void*> done;
  std::lock_guard<std::mutex> lock(mu);
  if (!done.insert(reinterpret_cast<const void*>(kernel)).second) return;
  QUARREL_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kMaxDynamicSmem)));
}

// Launches with programmatic stream serialization: the kernel may start while
// the previous one finishes, and must call cudaGridDependencySynchronize()
// before it reads anything that kernel wrote. Decode chains of small kernels
// hide most of their launch latency this way, in graphs too.
template <typename... KArgs, typename... Args>
void launch_programmatic(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                         Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  QUARREL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
}

// The CPU's SwiGLU of element i of n, operation for operation: groups of
// eight through tensor::swiglu_poly, the last n % 8 through the C library's
// correctly rounded expf, which a double-precision exp rounded to float
// matches.
__device__ __forceinline__ float swiglu_cpu(float g, float u, int i, int n) {
  if (i < (n & ~7)) return tensor::swiglu_poly(g, u);
  return g / (1.0f + static_cast<float>(exp(static_cast<double>(-g)))) * u;
}

// The persistent kernel's hand-off between stages (decode_fused.cu): a value
// travels with the epoch of the stage that wrote it, as one 64-bit word
// (value bits low, epoch high), stored and loaded whole at GPU scope. A
// reader that sees the epoch it waits for has the value, with no grid
// barrier and no second round trip for the data.
__device__ __forceinline__ void handoff_store(uint64_t* p, float v, unsigned epoch) {
  const uint64_t word = (static_cast<uint64_t>(epoch) << 32) | __float_as_uint(v);
  asm volatile("st.relaxed.gpu.global.b64 [%0], %1;" ::"l"(p), "l"(word) : "memory");
}
__device__ __forceinline__ uint64_t handoff_load(const uint64_t* p) {
  uint64_t word;
  asm volatile("ld.relaxed.gpu.global.b64 %0, [%1];" : "=l"(word) : "l"(p) : "memory");
  return word;
}
// Whether word carries epoch, and the value it carries.
__device__ __forceinline__ bool handoff_ready(uint64_t word, unsigned epoch) {
  return static_cast<unsigned>(word >> 32) == epoch;
}
__device__ __forceinline__ float handoff_float(uint64_t word) { return __uint_as_float(static_cast<uint32_t>(word)); }
// Waits until `word` (loaded from p) carries `epoch`; returns its value.
__device__ __forceinline__ float handoff_value(uint64_t word, const uint64_t* p, unsigned epoch) {
  while (!handoff_ready(word, epoch)) word = handoff_load(p);
  return handoff_float(word);
}
__device__ __forceinline__ float handoff_wait(const uint64_t* p, unsigned epoch) {
  return handoff_value(handoff_load(p), p, epoch);
}

// A hand-off vector and the epoch its reader waits for.
struct HandOff {
  const uint64_t* words;
  unsigned epoch;
};

// The element sources of for_each_batched: a float vector, read from L2
// (__ldcg: in the persistent kernel another block wrote it a moment ago),
// or a hand-off vector, whose words are ready once they carry its epoch.
__device__ __forceinline__ float batch_load(const float* x, int i) { return __ldcg(x + i); }
__device__ __forceinline__ uint64_t batch_load(HandOff h, int i) { return handoff_load(h.words + i); }
__device__ __forceinline__ bool batch_ready(float, const float*) { return true; }
__device__ __forceinline__ bool batch_ready(uint64_t word, HandOff h) { return handoff_ready(word, h.epoch); }
__device__ __forceinline__ float batch_value(float v) { return v; }
__device__ __forceinline__ float batch_value(uint64_t word) { return handoff_float(word); }

// Calls f(i, x[i], y[i]) for i = threadIdx.x, threadIdx.x + blockDim.x, ...
// below k, in that order (without kPair there is no y, and f gets 0), after
// loading eight of each: a row costs one memory round trip per batch of
// eight, not one per element. From a hand-off vector, the words of a batch
// not yet written are loaded again together, so that the batch costs one
// round trip after its last writer, not one per word.
template <bool kPair, typename Src, typename F>
__device__ __forceinline__ void for_each_batched(Src x, const float* y, int k, F&& f) {
  constexpr int kBatch = 8;
  for (int base = threadIdx.x; base < k; base += kBatch * blockDim.x) {
    decltype(batch_load(x, 0)) v[kBatch];
    float w[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + u * blockDim.x;
      if constexpr (!kPair) w[u] = 0.0f;
      if (i < k) {
        v[u] = batch_load(x, i);
        if constexpr (kPair) w[u] = y[i];
      }
    }
    for (bool ready = false; !ready;) {
      ready = true;
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = base + u * blockDim.x;
        if (i < k && !batch_ready(v[u], x)) {
          ready = false;
          v[u] = batch_load(x, i);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = base + u * blockDim.x;
      if (i >= k) break;
      f(i, batch_value(v[u]), w[u]);
    }
  }
}

// Activations live in shared memory as 33 floats per 32 elements: a lane that
// walks its own 32-element chunk then hits a different bank from its neighbours.
__device__ __forceinline__ int padded(int i) { return i + (i >> 5); }
__host__ __device__ constexpr int padded_size(int n) { return n + n / 32 + 1; }

}  // namespace quarrel::cuda

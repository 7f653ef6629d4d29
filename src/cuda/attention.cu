#include "cuda/attention.cuh"
#include "cuda/common.cuh"

namespace quarrel::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarp;

__device__ __forceinline__ float load_kv(const float* p) { return *p; }
__device__ __forceinline__ float load_kv(const __half* p) { return __half2float(*p); }

template <typename KV>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionShape sh, const float* q, const KV* k_cache,
                                                            const KV* v_cache, const int32_t* pos_arr,
                                                            const int32_t* seq_arr, int pos_stride, float* out) {
  extern __shared__ float scores[];  // n_ctx
  __shared__ double red[kWarps];
  __shared__ float red_max[kWarps];
  cudaGridDependencySynchronize();
  cudaTriggerProgrammaticLaunchCompletion();
  const int h = blockIdx.x, t = blockIdx.y;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int n_pos = pos_arr[t * pos_stride] + 1, seq = seq_arr[t * pos_stride];
  const int q_dim = sh.n_head * sh.head_dim;
  const int kvh = h / (sh.n_head / sh.n_head_kv);
  const int64_t stride = static_cast<int64_t>(sh.n_head_kv) * sh.head_dim;
  const KV* k = k_cache + static_cast<int64_t>(seq) * sh.n_ctx * stride + kvh * sh.head_dim;
  const KV* v = v_cache + static_cast<int64_t>(seq) * sh.n_ctx * stride + kvh * sh.head_dim;
  const float* qh = q + static_cast<int64_t>(t) * q_dim + h * sh.head_dim;

  // Scores, one position per warp at a time.
  float local_max = -INFINITY;
  for (int p = warp; p < n_pos; p += kWarps) {
    const KV* kp = k + p * stride;
    float d = 0;
    for (int j = lane; j < sh.head_dim; j += kWarp) d += qh[j] * load_kv(kp + j);
    const float sc = warp_sum(d) * sh.scale;
    if (lane == 0) scores[p] = sc;
    local_max = fmaxf(local_max, sc);
  }
  if (lane == 0) red_max[warp] = local_max;
  __syncthreads();
  float m = red_max[0];
  for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red_max[w]);

  // Exponentials, summed in double as the CPU does.
  double sum = 0;
  for (int p = threadIdx.x; p < n_pos; p += kThreads) {
    const float e = expf(scores[p] - m);
    scores[p] = e;
    sum += e;
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  if (lane == 0) red[warp] = sum;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < kWarps; ++w) total += red[w];
  const float inv = static_cast<float>(1.0 / total);

  // Weighted sum of V: each warp takes every kWarps-th position (lanes over
  // dimensions, loads independent of each other), then the warps' sums are added.
  __shared__ float part[kWarps][256];
  for (int d = lane; d < sh.head_dim; d += kWarp) {
    float acc = 0;
#pragma unroll 4
    for (int p = warp; p < n_pos; p += kWarps) acc = fmaf(scores[p] * inv, load_kv(v + p * stride + d), acc);
    part[warp][d] = acc;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < sh.head_dim; d += kThreads) {
    float acc = 0;
    for (int w = 0; w < kWarps; ++w) acc += part[w][d];
    out[static_cast<int64_t>(t) * q_dim + h * sh.head_dim + d] = acc;
  }
}

}  // namespace

void attention(const AttentionShape& sh, int T, const float* q, const void* k_cache, const void* v_cache, bool kv_f32,
               const int32_t* pos, const int32_t* seq, int index_stride, float* out, bool programmatic,
               cudaStream_t s) {
  const size_t smem = static_cast<size_t>(sh.n_ctx) * sizeof(float);
  if (smem > 200 * 1024) fail_message(cat("CUDA attention: context ", sh.n_ctx, " is too long (at most 51200)"));
  if (sh.head_dim > 256) fail_message(cat("CUDA attention: head dimension ", sh.head_dim, " is too large (at most 256)"));
  const dim3 grid(sh.n_head, T);
  auto run = [&](auto kernel, const auto* kc, const auto* vc) {
    allow_large_smem(kernel);
    if (programmatic) {
      launch_programmatic(kernel, grid, dim3(kThreads), smem, s, sh, q, kc, vc, pos, seq, index_stride, out);
    } else {
      kernel<<<grid, kThreads, smem, s>>>(sh, q, kc, vc, pos, seq, index_stride, out);
      QUARREL_CUDA_CHECK(cudaGetLastError());
    }
  };
  if (kv_f32)
    run(attention_kernel<float>, static_cast<const float*>(k_cache), static_cast<const float*>(v_cache));
  else
    run(attention_kernel<__half>, static_cast<const __half*>(k_cache), static_cast<const __half*>(v_cache));
}

}  // namespace quarrel::cuda

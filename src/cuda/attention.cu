#include "cuda/attention.cuh"
#include "cuda/attention_device.cuh"
#include "cuda/common.cuh"

namespace quarrel::cuda {

namespace {

constexpr int kThreads = 256;  // as the persistent kernel: the same reduction order
constexpr int kWarps = kThreads / kWarp;

template <typename KV>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionShape sh, const float* q, const KV* k_cache,
                                                            const KV* v_cache, const int32_t* pos_arr,
                                                            const int32_t* seq_arr, int pos_stride, float* out) {
  extern __shared__ float4 smem4[];  // scores (n_ctx, rounded up to 4), then the K/V chunk
  float* scores = reinterpret_cast<float*>(smem4);
  __shared__ float qs[256];
  __shared__ double red[kWarps];
  __shared__ float red_max[kWarps];
  cudaGridDependencySynchronize();
  cudaTriggerProgrammaticLaunchCompletion();
  const int h = blockIdx.x, t = blockIdx.y;
  const int n_pos = pos_arr[t * pos_stride] + 1, seq = seq_arr[t * pos_stride];
  const int q_dim = sh.n_head * sh.head_dim, hd = sh.head_dim;
  const int kvh = h / (sh.n_head / sh.n_head_kv);
  const int64_t stride = static_cast<int64_t>(sh.n_head_kv) * hd;
  const int64_t first = static_cast<int64_t>(seq) * sh.n_ctx * stride + kvh * hd;
  const int64_t at = static_cast<int64_t>(t) * q_dim + h * hd;
  attend_head(q + at, k_cache + first, v_cache + first, stride, n_pos, hd, sh.scale, out + at,
              AttendSmem{scores, qs, scores + ((sh.n_ctx + 3) & ~3), red, red_max});
}

}  // namespace

void attention(const AttentionShape& sh, int T, const float* q, const void* k_cache, const void* v_cache, bool kv_f32,
               const int32_t* pos, const int32_t* seq, int index_stride, float* out, bool programmatic,
               cudaStream_t s) {
  const size_t smem = (static_cast<size_t>((sh.n_ctx + 3) & ~3) + kAttendChunkFloats) * sizeof(float);
  if (smem > 200 * 1024) fail_message(cat("CUDA attention: context ", sh.n_ctx, " is too long (at most 43000)"));
  if (sh.head_dim > 256 || sh.head_dim % 4 != 0)
    fail_message(cat("CUDA attention: head dimension ", sh.head_dim, " is not supported (a multiple of 4, at most 256)"));
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

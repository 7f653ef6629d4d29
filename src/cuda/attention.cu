#include "cuda/attention.cuh"
#include "cuda/common.cuh"

namespace quarrel::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarp;
constexpr int kMaxPerLane = 8;  // head_dim up to 256

// One warp's online softmax over positions [begin, end) with stride kWarps,
// starting at begin + warp. acc holds head_dim / 32 values per lane.
__device__ void warp_attend(const float* q_lane, const __half* k, const __half* v, int64_t stride, int begin, int end,
                            int warp, int lane, int per_lane, int head_dim, float scale, float& m, float& l,
                            float* acc) {
  m = -INFINITY;
  l = 0;
  for (int j = 0; j < per_lane; ++j) acc[j] = 0;
  for (int p = begin + warp; p < end; p += kWarps) {
    const __half* kp = k + p * stride;
    float sdot = 0;
    for (int j = 0; j < per_lane; ++j)
      if (lane + 32 * j < head_dim) sdot += q_lane[j] * __half2float(kp[lane + 32 * j]);
    const float sc = warp_sum(sdot) * scale;
    const float m_new = fmaxf(m, sc);
    const float corr = __expf(m - m_new), w = __expf(sc - m_new);
    l = l * corr + w;
    const __half* vp = v + p * stride;
    for (int j = 0; j < per_lane; ++j)
      if (lane + 32 * j < head_dim) acc[j] = acc[j] * corr + w * __half2float(vp[lane + 32 * j]);
    m = m_new;
  }
}

// Merges the warps' (m, l, acc) in shared memory; thread layout as above.
// Returns in warp 0's registers the block's result.
__device__ void block_merge(float& m, float& l, float* acc, int per_lane, int warp, int lane, float* sm, float* sl,
                            float* sacc) {
  if (lane == 0) {
    sm[warp] = m;
    sl[warp] = l;
  }
  for (int j = 0; j < per_lane; ++j) sacc[warp * 32 * kMaxPerLane + lane + 32 * j] = acc[j];
  __syncthreads();
  if (warp != 0) return;
  float mm = -INFINITY;
  for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, sm[w]);
  float ll = 0;
  for (int j = 0; j < per_lane; ++j) acc[j] = 0;
  if (mm != -INFINITY) {
    for (int w = 0; w < kWarps; ++w) {
      if (sm[w] == -INFINITY) continue;
      const float c = __expf(sm[w] - mm);
      ll += c * sl[w];
      for (int j = 0; j < per_lane; ++j) acc[j] += c * sacc[w * 32 * kMaxPerLane + lane + 32 * j];
    }
  }
  m = mm;
  l = ll;
}

__global__ void __launch_bounds__(kThreads) attention_decode_kernel(AttentionShape sh, const float* q,
                                                                   const __half* k_cache, const __half* v_cache,
                                                                   const int32_t* step, float* part_m, float* part_l,
                                                                   float* part_acc) {
  __shared__ float sm[kWarps], sl[kWarps], sacc[kWarps * 32 * kMaxPerLane];
  const int h = blockIdx.x, split = blockIdx.y, n_split = gridDim.y;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int pos = step[1], seq = step[2];
  const int per_lane = (sh.head_dim + 31) / 32;
  const int kvh = h / (sh.n_head / sh.n_head_kv);
  const int64_t stride = static_cast<int64_t>(sh.n_head_kv) * sh.head_dim;
  const __half* k = k_cache + static_cast<int64_t>(seq) * sh.n_ctx * stride + kvh * sh.head_dim;
  const __half* v = v_cache + static_cast<int64_t>(seq) * sh.n_ctx * stride + kvh * sh.head_dim;
  float q_lane[kMaxPerLane], acc[kMaxPerLane];
  for (int j = 0; j < per_lane; ++j) q_lane[j] = lane + 32 * j < sh.head_dim ? q[h * sh.head_dim + lane + 32 * j] : 0.0f;
  const int begin = split * kAttentionSplit, end = min(begin + kAttentionSplit, pos + 1);
  float m, l;
  warp_attend(q_lane, k, v, stride, begin, end, warp, lane, per_lane, sh.head_dim, sh.scale, m, l, acc);
  block_merge(m, l, acc, per_lane, warp, lane, sm, sl, sacc);
  if (warp != 0) return;
  const int64_t slot = static_cast<int64_t>(h) * n_split + split;
  if (lane == 0) {
    part_m[slot] = m;
    part_l[slot] = l;
  }
  for (int j = 0; j < per_lane; ++j)
    if (lane + 32 * j < sh.head_dim) part_acc[slot * sh.head_dim + lane + 32 * j] = acc[j];
}

__global__ void __launch_bounds__(kThreads) attention_prefill_kernel(AttentionShape sh, const float* q,
                                                                    const __half* k_cache, const __half* v_cache,
                                                                    const int32_t* pos_arr, const int32_t* seq_arr,
                                                                    float* out) {
  __shared__ float sm[kWarps], sl[kWarps], sacc[kWarps * 32 * kMaxPerLane];
  const int h = blockIdx.x, t = blockIdx.y;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int pos = pos_arr[t], seq = seq_arr[t];
  const int per_lane = (sh.head_dim + 31) / 32;
  const int q_dim = sh.n_head * sh.head_dim;
  const int kvh = h / (sh.n_head / sh.n_head_kv);
  const int64_t stride = static_cast<int64_t>(sh.n_head_kv) * sh.head_dim;
  const __half* k = k_cache + static_cast<int64_t>(seq) * sh.n_ctx * stride + kvh * sh.head_dim;
  const __half* v = v_cache + static_cast<int64_t>(seq) * sh.n_ctx * stride + kvh * sh.head_dim;
  float q_lane[kMaxPerLane], acc[kMaxPerLane];
  for (int j = 0; j < per_lane; ++j)
    q_lane[j] = lane + 32 * j < sh.head_dim ? q[static_cast<int64_t>(t) * q_dim + h * sh.head_dim + lane + 32 * j] : 0.0f;
  float m, l;
  warp_attend(q_lane, k, v, stride, 0, pos + 1, warp, lane, per_lane, sh.head_dim, sh.scale, m, l, acc);
  block_merge(m, l, acc, per_lane, warp, lane, sm, sl, sacc);
  if (warp != 0) return;
  for (int j = 0; j < per_lane; ++j)
    if (lane + 32 * j < sh.head_dim) out[static_cast<int64_t>(t) * q_dim + h * sh.head_dim + lane + 32 * j] = acc[j] / l;
}

void check_shape(const AttentionShape& sh) {
  if (sh.head_dim > 32 * kMaxPerLane)
    fail_message(cat("CUDA attention: head dimension ", sh.head_dim, " is not supported (at most ", 32 * kMaxPerLane, ")"));
}

}  // namespace

void attention_decode(const AttentionShape& sh, const float* q, const __half* k_cache, const __half* v_cache,
                      const int32_t* step, int n_split, float* part_m, float* part_l, float* part_acc,
                      cudaStream_t s) {
  check_shape(sh);
  attention_decode_kernel<<<dim3(sh.n_head, n_split), kThreads, 0, s>>>(sh, q, k_cache, v_cache, step, part_m, part_l,
                                                                        part_acc);
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

void attention_prefill(const AttentionShape& sh, int T, const float* q, const __half* k_cache, const __half* v_cache,
                       const int32_t* pos, const int32_t* seq, float* out, cudaStream_t s) {
  check_shape(sh);
  attention_prefill_kernel<<<dim3(sh.n_head, T), kThreads, 0, s>>>(sh, q, k_cache, v_cache, pos, seq, out);
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace quarrel::cuda

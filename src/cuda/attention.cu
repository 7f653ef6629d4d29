#include "cuda/attention.cuh"

#include <algorithm>

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

// Prefill attention for a tile of queries that share one sequence: the query
// heads of KV head blockIdx.x for one group of `tile` consecutive tokens.
// Each K and V row is staged into shared memory once for the whole tile,
// instead of once per (query, head), and every query's arithmetic is
// attend_head's, step for step, so the outputs are bit-identical to the
// one-block-per-query kernel, in the CPU's order (attention_device.cuh):
//   - a score is score_of (tensor::score_dot);
//   - the exponentials go by groups of eight, the groups' sums into a double;
//   - V is summed in eight chains by position mod 8, one dimension per
//     thread, kTileQueriesPerThread queries per thread per pass over V.
// Shared memory: the tile's queries (n_q x hd), their scores (n_q x
// max_pos), 1/sum per query, then the K/V chunk.
constexpr int kTileQueriesPerThread = 4;  // queries a thread keeps eight V chains for

template <typename KV>
__global__ void __launch_bounds__(kThreads) attention_tile_kernel(AttentionShape sh, int T, int tile, int max_pos,
                                                                 const float* q, const KV* k_cache, const KV* v_cache,
                                                                 const int32_t* pos_arr, const int32_t* seq_arr,
                                                                 float* out) {
  extern __shared__ float4 smem4[];
  // The last tiles (the longest causal spans) first, so the short ones fill
  // in behind them.
  const int g = blockIdx.x, t0 = (gridDim.y - 1 - blockIdx.y) * tile, n_tok = min(tile, T - t0);
  const int hd = sh.head_dim, group = sh.n_head / sh.n_head_kv, n_q = n_tok * group;
  const int q_dim = sh.n_head * hd;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  float* qs = reinterpret_cast<float*>(smem4);
  float* scores = qs + n_q * hd;
  float* inv = scores + static_cast<int64_t>(n_q) * max_pos;
  float* chunk = inv + ((n_q + 3) & ~3);
  // Query j: token t0 + j / group, head g * group + j % group.
  auto n_pos_of = [&](int j) { return pos_arr[t0 + j / group] + 1; };
  int tile_pos = 0;
  for (int t = 0; t < n_tok; ++t) tile_pos = max(tile_pos, pos_arr[t0 + t] + 1);
  for (int i = threadIdx.x; i < n_q * hd; i += blockDim.x) {
    const int j = i / hd, d = i % hd;
    qs[i] = q[static_cast<int64_t>(t0 + j / group) * q_dim + (g * group + j % group) * hd + d];
  }
  const int64_t stride = static_cast<int64_t>(sh.n_head_kv) * hd;
  const int64_t first = static_cast<int64_t>(seq_arr[t0]) * sh.n_ctx * stride + g * hd;
  const KV* k = k_cache + first;
  const KV* v = v_cache + first;

  // Scores: warp w takes queries w, w + 8, ...; its lanes one position each.
  const int kpitch = hd + 1;
  const int kchunk = kAttendChunkFloats / kpitch;
  for (int p0 = 0; p0 < tile_pos; p0 += kchunk) {
    const int np = min(kchunk, tile_pos - p0);
    stage_rows(k, stride, p0, np, hd, chunk, kpitch);
    __syncthreads();
    for (int j = warp; j < n_q; j += kWarps) {
      const float* qj = qs + j * hd;
      const int lim = min(np, n_pos_of(j) - p0);
      for (int p = lane; p < lim; p += kWarp)
        scores[static_cast<int64_t>(j) * max_pos + p0 + p] = score_of(qj, chunk + p * kpitch, hd, sh.scale);
    }
    __syncthreads();
  }

  // Softmax, one warp per query: groups of eight positions, their sums in
  // double (the order of the double adds is attend_head's up to rounding
  // far below a float's).
  for (int j = warp; j < n_q; j += kWarps) {
    float* sj = scores + static_cast<int64_t>(j) * max_pos;
    const int n = n_pos_of(j);
    float m = -INFINITY;
    for (int p = lane; p < n; p += kWarp) m = fmaxf(m, sj[p]);
    m = warp_max(m);
    double sum = 0;
    for (int gr = lane; 8 * gr < n; gr += kWarp) sum += exp_group(sj, gr, n, m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) inv[j] = static_cast<float>(1.0 / sum);
  }
  __syncthreads();

  // Weighted sum of V: thread (r, d) keeps the eight chains of queries
  // r + i * per_pass (i < kTileQueriesPerThread) for dimension d; larger
  // tiles take several passes over V.
  const int per_pass = kThreads / hd;
  const int r = threadIdx.x / hd, d = threadIdx.x % hd;
  const bool active = r < per_pass;
  const int vchunk = (kAttendChunkFloats / hd) & ~7;
  for (int q0 = 0; q0 < n_q; q0 += per_pass * kTileQueriesPerThread) {
    float acc[kTileQueriesPerThread][8];
#pragma unroll
    for (int i = 0; i < kTileQueriesPerThread; ++i)
#pragma unroll
      for (int u = 0; u < 8; ++u) acc[i][u] = 0;
    for (int p0 = 0; p0 < tile_pos; p0 += vchunk) {
      const int np = min(vchunk, tile_pos - p0);
      stage_rows(v, stride, p0, np, hd, chunk, hd);
      __syncthreads();
      if (active) {
#pragma unroll
        for (int i = 0; i < kTileQueriesPerThread; ++i) {
          const int j = q0 + r + i * per_pass;
          if (j >= n_q) break;
          const int lim = min(np, n_pos_of(j) - p0);
          if (lim > 0) add_chains(acc[i], chunk + d, hd, scores + static_cast<int64_t>(j) * max_pos + p0, inv[j], lim);
        }
      }
      __syncthreads();
    }
    if (active) {
#pragma unroll
      for (int i = 0; i < kTileQueriesPerThread; ++i) {
        const int j = q0 + r + i * per_pass;
        if (j >= n_q) break;
        out[static_cast<int64_t>(t0 + j / group) * q_dim + (g * group + j % group) * hd + d] = tensor::hsum8(acc[i]);
      }
    }
  }
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

namespace quarrel::cuda {

bool attention_prefill(const AttentionShape& sh, int T, int max_pos, const float* q, const void* k_cache,
                       const void* v_cache, bool kv_f32, const int32_t* pos, const int32_t* seq, float* out,
                       cudaStream_t s) {
  const int hd = sh.head_dim, group = sh.n_head / sh.n_head_kv;
  if (hd > kThreads || hd % 4 != 0 || max_pos < 1 || max_pos > sh.n_ctx) return false;
  // The most tokens per tile: sixteen queries per thread's column of V (in
  // passes of kTileQueriesPerThread), and shared memory bounds queries x
  // positions.
  const int max_q = 16 * (kThreads / hd);
  auto smem_for = [&](int tile) {
    const size_t n_q = static_cast<size_t>(tile) * group;
    return (n_q * hd + n_q * max_pos + ((n_q + 3) & ~size_t{3}) + kAttendChunkFloats) * sizeof(float);
  };
  // Two blocks per multiprocessor where a tile of 4+ tokens fits in half the
  // shared memory (twice the warps to hide the adds' latency), else one.
  int tile = std::min(max_q / group, 8);
  while (tile > 0 && smem_for(tile) > kMaxDynamicSmem / 2) --tile;
  if (tile < 4) {
    tile = std::min(max_q / group, 16);
    while (tile > 0 && smem_for(tile) > kMaxDynamicSmem) --tile;
  }
  if (tile < 1) return false;
  const dim3 grid(sh.n_head_kv, (T + tile - 1) / tile);
  const size_t smem = smem_for(tile);
  auto run = [&](auto kernel, const auto* kc, const auto* vc) {
    allow_large_smem(kernel);
    kernel<<<grid, kThreads, smem, s>>>(sh, T, tile, max_pos, q, kc, vc, pos, seq, out);
    QUARREL_CUDA_CHECK(cudaGetLastError());
  };
  if (kv_f32)
    run(attention_tile_kernel<float>, static_cast<const float*>(k_cache), static_cast<const float*>(v_cache));
  else
    run(attention_tile_kernel<__half>, static_cast<const __half*>(k_cache), static_cast<const __half*>(v_cache));
  return true;
}

}  // namespace quarrel::cuda

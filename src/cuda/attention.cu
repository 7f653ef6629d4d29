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
// one-block-per-query kernel:
//   - a score sums its products in dimension order;
//   - the exponentials are summed in double in attend_head's partition (the
//     thread of 256 that owns position p, a butterfly per warp, then the
//     eight warps in order), replayed by one warp per query;
//   - V is accumulated position by position, one dimension per thread.
// Shared memory: the tile's queries (n_q x hd), their scores (n_q x
// max_pos), 1/sum per query, then the K/V chunk.
constexpr int kTileQueriesPerThread = 16;  // V accumulators a thread keeps

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
      // Four positions per lane at once: four independent chains of adds,
      // each in dimension order, so the adds' latency overlaps.
      constexpr int kChains = 4;
      for (int pb = lane; pb < lim; pb += kChains * kWarp) {
        const float* kp[kChains];
        float d0[kChains];
#pragma unroll
        for (int c = 0; c < kChains; ++c) {
          kp[c] = chunk + min(pb + c * kWarp, lim - 1) * kpitch;
          d0[c] = 0;
        }
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
          float qv[8];
#pragma unroll
          for (int u = 0; u < 8; ++u) qv[u] = qj[d + u];
#pragma unroll
          for (int c = 0; c < kChains; ++c) {
            float pr[8];
#pragma unroll
            for (int u = 0; u < 8; ++u) pr[u] = __fmul_rn(qv[u], kp[c][d + u]);
#pragma unroll
            for (int u = 0; u < 8; ++u) d0[c] = __fadd_rn(d0[c], pr[u]);
          }
        }
        for (; d < hd; ++d)
#pragma unroll
          for (int c = 0; c < kChains; ++c) d0[c] = __fadd_rn(d0[c], __fmul_rn(qj[d], kp[c][d]));
#pragma unroll
        for (int c = 0; c < kChains; ++c)
          if (pb + c * kWarp < lim)
            scores[static_cast<int64_t>(j) * max_pos + p0 + pb + c * kWarp] = __fmul_rn(d0[c], sh.scale);
      }
    }
    __syncthreads();
  }

  // Softmax, one warp per query, replaying attend_head's partition of the sum.
  for (int j = warp; j < n_q; j += kWarps) {
    float* sj = scores + static_cast<int64_t>(j) * max_pos;
    const int n = n_pos_of(j);
    float m = -INFINITY;
    for (int p = lane; p < n; p += kWarp) m = fmaxf(m, sj[p]);
    m = warp_max(m);
    double total = 0;
    for (int w = 0; w < kWarps; ++w) {  // attend_head's warp w
      double sum = 0;
      for (int p = w * kWarp + lane; p < n; p += kThreads) {
        const float e = cpu_exp(__fsub_rn(sj[p], m), p < (n & ~7));
        sj[p] = e;
        sum += e;
      }
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      total += sum;
    }
    if (lane == 0) inv[j] = static_cast<float>(1.0 / total);
  }
  __syncthreads();

  // Weighted sum of V: thread (r, d) keeps query r + i * per_pass's
  // dimension d, over the positions in order.
  const int per_pass = kThreads / hd;
  const int r = threadIdx.x / hd, d = threadIdx.x % hd;
  const bool active = r < per_pass;
  float acc[kTileQueriesPerThread];
#pragma unroll
  for (int i = 0; i < kTileQueriesPerThread; ++i) acc[i] = 0;
  const int vchunk = kAttendChunkFloats / hd;
  for (int p0 = 0; p0 < tile_pos; p0 += vchunk) {
    const int np = min(vchunk, tile_pos - p0);
    stage_rows(v, stride, p0, np, hd, chunk, hd);
    __syncthreads();
    if (active) {
      const float* vc = chunk + d;
      // Queries in pairs: two independent chains over the positions, each in
      // position order; a pair's positions differ by at most a few (its
      // tokens are neighbours), and the longer one finishes alone.
#pragma unroll
      for (int i = 0; i < kTileQueriesPerThread; i += 2) {
        const int j0 = r + i * per_pass, j1 = j0 + per_pass;
        if (j0 >= n_q) break;
        const bool two = j1 < n_q;
        const float* s0 = scores + static_cast<int64_t>(j0) * max_pos + p0;
        const float* s1 = scores + static_cast<int64_t>(two ? j1 : j0) * max_pos + p0;
        const float i0 = inv[j0], i1 = inv[two ? j1 : j0];
        const int lim0 = min(np, n_pos_of(j0) - p0), lim1 = two ? min(np, n_pos_of(j1) - p0) : 0;
        float a0 = acc[i], a1 = acc[i + 1];
        const int both = min(lim0, lim1);
        int p = 0;
        for (; p + 8 <= both; p += 8) {
          float pr0[8], pr1[8];
#pragma unroll
          for (int u = 0; u < 8; ++u) {
            const float vv = vc[(p + u) * hd];
            pr0[u] = __fmul_rn(__fmul_rn(s0[p + u], i0), vv);
            pr1[u] = __fmul_rn(__fmul_rn(s1[p + u], i1), vv);
          }
#pragma unroll
          for (int u = 0; u < 8; ++u) {
            a0 = __fadd_rn(a0, pr0[u]);
            a1 = __fadd_rn(a1, pr1[u]);
          }
        }
        for (int q0 = p; q0 < lim0; ++q0) a0 = __fadd_rn(a0, __fmul_rn(__fmul_rn(s0[q0], i0), vc[q0 * hd]));
        for (int q1 = p; q1 < lim1; ++q1) a1 = __fadd_rn(a1, __fmul_rn(__fmul_rn(s1[q1], i1), vc[q1 * hd]));
        acc[i] = a0;
        acc[i + 1] = a1;
      }
    }
    __syncthreads();
  }
  if (active) {
#pragma unroll
    for (int i = 0; i < kTileQueriesPerThread; ++i) {
      const int j = r + i * per_pass;
      if (j >= n_q) break;
      out[static_cast<int64_t>(t0 + j / group) * q_dim + (g * group + j % group) * hd + d] = acc[i];
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
  // The most tokens per tile: the V accumulators bound the queries, shared
  // memory bounds queries x positions.
  const int max_q = kTileQueriesPerThread * (kThreads / hd);
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

#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/dequant.cuh"
#include "cuda/matvec_device.cuh"
#include "cuda/prefill.cuh"
#include "cuda/qdot.cuh"

namespace quarrel::cuda {

namespace {

template <DType WT>
__global__ void embed_kernel(const uint8_t* table, int64_t row_bytes, int k, const int32_t* tokens, float* x) {
  const int t = blockIdx.x;
  const uint8_t* row = table + static_cast<int64_t>(tokens[t]) * row_bytes;
  float v[32];
  for (int c = threadIdx.x; c < k / 32; c += blockDim.x) {
    dequant32<WT>(row, c, v);
    for (int j = 0; j < 32; ++j) x[static_cast<int64_t>(t) * k + 32 * c + j] = v[j];
  }
}

__device__ __forceinline__ void store_as(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_as(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store_as(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

constexpr int kRowsThreads = 256;  // rows_kernel's block

template <DType VT, typename OutT>
__global__ void rows_kernel(RowOp op, const float* x, const float* x2, int64_t stride, const float* norm_w,
                            float eps, int k, OutT* out) {
  extern __shared__ float xs[];
  __shared__ double red[32];
  const int t = blockIdx.x;
  const float* xr = x + t * stride;
  // One pass over the row (and the norm weights, or up) into shared memory;
  // the norm's squares are summed per thread in index order.
  double ss = 0;
  auto put = [&](int i, float v, float w) {
    if (op == RowOp::Norm) {
      ss += static_cast<double>(v * v);
      xs[padded(i)] = v;
      xs[padded_size(k) + i] = w;
    } else if (op == RowOp::Swiglu) {
      xs[padded(i)] = swiglu_cpu(v, w, i, k);
    } else {
      xs[padded(i)] = v;
    }
  };
  if (op == RowOp::Plain)
    for_each_batched<false>(xr, nullptr, k, put);
  else
    for_each_batched<true>(xr, op == RowOp::Swiglu ? x2 + t * stride : norm_w, k, put);
  if (op == RowOp::Norm) {
    const float scale = rms_scale(block_sum_double<kRowsThreads / kWarp>(ss, red), k, eps);
    for (int i = threadIdx.x; i < k; i += blockDim.x) xs[padded(i)] = (xs[padded(i)] * scale) * xs[padded_size(k) + i];
  }
  __syncthreads();
  if constexpr (is_quantized_act(VT)) {
    quantize_row<VT>(xs, k, qacts_at(out + static_cast<int64_t>(t) * qacts_bytes(k), k));
  } else {
    for (int i = threadIdx.x; i < k; i += blockDim.x)
      store_as(out + static_cast<int64_t>(t) * k + i, round_activation<VT>(xs[padded(i)]));
  }
}

// Tokens one block of qgemm takes: each weight row is read once per tile.
constexpr int kQgemmTokens = 8;
constexpr int kQgemmThreads = 256;

// out[t][r] (+)= row r of w . activations t: one group of kQGroup threads per
// row, kQgemmTokens tokens per block. The 32-element types read each weight
// block once for all the block's tokens, whose activations are staged in
// shared memory; the K-quants take one token at a time.
template <DType WT>
__global__ void __launch_bounds__(kQgemmThreads) qgemm_kernel(const uint8_t* w, int64_t row_bytes, int rows, int k,
                                                              const uint8_t* acts, int T, float* out, int64_t ld_out,
                                                              bool accumulate) {
  extern __shared__ uint4 staged4[];
  const int l = threadIdx.x % kQGroup;
  const int r = blockIdx.x * (kQgemmThreads / kQGroup) + threadIdx.x / kQGroup;
  // Rows past the end compute row rows - 1 and store nothing, so every lane
  // of a warp takes part in the group shuffles.
  const uint8_t* row = w + static_cast<int64_t>(min(r, rows - 1)) * row_bytes;
  const int t0 = blockIdx.y * kQgemmTokens, t1 = min(T, t0 + kQgemmTokens);
  const int64_t qb = qacts_bytes(k);
  auto store = [&](int t, float v) {
    if (l == 0 && r < rows) {
      float* o = out + t * ld_out + r;
      *o = accumulate ? *o + v : v;
    }
  };
  if constexpr (!is_kquant(WT)) {
    const int n = t1 - t0;
    const uint4* src = reinterpret_cast<const uint4*>(acts + t0 * qb);
    for (int64_t i = threadIdx.x; i < n * qb / 16; i += blockDim.x) staged4[i] = src[i];
    __syncthreads();
    const auto* staged = reinterpret_cast<const uint8_t*>(staged4);
    QActs a[kQgemmTokens];
#pragma unroll
    for (int t = 0; t < kQgemmTokens; ++t) a[t] = qacts_at(staged + min(t, n - 1) * qb, k);
    float v[kQgemmTokens];
    qdot_rows<WT, kQgemmTokens>(row, a, n, k, l, 0xffffffffu, v);
#pragma unroll
    for (int t = 0; t < kQgemmTokens; ++t)
      if (t < n) store(t0 + t, v[t]);
  } else {
    for (int t = t0; t < t1; ++t) store(t, qdot<WT>(row, qacts_at(acts + t * qb, k), k, l, 0xffffffffu));
  }
}

// One block per row: the first largest value (the packed (value, index) order
// of the decode kernels' argmax, so ties go to the lower index as on the CPU).
__global__ void argmax_kernel(const float* logits, int n, int32_t* out) {
  __shared__ unsigned long long best_warp[32];
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * n;
  unsigned long long best = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) best = max(best, pack_argmax(row[i], i));
  for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xffffffffu, best, o));
  if (threadIdx.x % kWarp == 0) best_warp[threadIdx.x / kWarp] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x / kWarp); ++w) best = max(best, best_warp[w]);
    out[blockIdx.x] = static_cast<int32_t>(~static_cast<uint32_t>(best & 0xffffffffu));
  }
}

__global__ void gather_kernel(const float* x, const int32_t* idx, int k, float* out) {
  const int i = blockIdx.x;
  for (int j = threadIdx.x; j < k; j += blockDim.x)
    out[static_cast<int64_t>(i) * k + j] = x[static_cast<int64_t>(idx[i]) * k + j];
}

__global__ void rope_store_kernel(RopeArgs a, QkvRows in, float* q_out, const int32_t* pos_arr, const int32_t* seq_arr,
                                  void* k_cache, void* v_cache, bool kv_f32) {
  const int t = blockIdx.x;
  const int half = a.head_dim / 2;
  const int q_dim = a.n_head * a.head_dim, kv_dim = a.n_head_kv * a.head_dim;
  const int pos = pos_arr[t], seq = seq_arr[t];
  const int n_pairs = (q_dim + 2 * kv_dim) / 2;
  const int64_t cache_off = (static_cast<int64_t>(seq) * a.n_ctx + pos) * kv_dim;
  for (int u = threadIdx.x; u < n_pairs; u += blockDim.x) {
    const int row = 2 * u;
    const int head = row / a.head_dim, i = u % half, base = head * a.head_dim;
    const int ra = base + (a.neox ? i : 2 * i), rb = base + (a.neox ? i + half : 2 * i + 1);
    float va, vb;
    if (ra < q_dim) {
      va = in.q[t * in.q_stride + ra];
      vb = in.q[t * in.q_stride + rb];
    } else if (ra < q_dim + kv_dim) {
      va = in.k[t * in.kv_stride + ra - q_dim];
      vb = in.k[t * in.kv_stride + rb - q_dim];
    } else {
      va = in.v[t * in.kv_stride + ra - q_dim - kv_dim];
      vb = in.v[t * in.kv_stride + rb - q_dim - kv_dim];
    }
    if (a.bias) {
      va += a.bias[ra];
      vb += a.bias[rb];
    }
    if (ra < q_dim + kv_dim) {
      const float cs = a.rope_cos[pos * half + i], sn = a.rope_sin[pos * half + i];
      tensor::rope_pair(va, vb, cs, sn, &va, &vb);
    }
    if (ra < q_dim) {
      q_out[static_cast<int64_t>(t) * q_dim + ra] = va;
      q_out[static_cast<int64_t>(t) * q_dim + rb] = vb;
    } else {
      const bool is_k = ra < q_dim + kv_dim;
      const int off = is_k ? q_dim : q_dim + kv_dim;
      void* c = is_k ? k_cache : v_cache;
      if (kv_f32) {
        static_cast<float*>(c)[cache_off + ra - off] = va;
        static_cast<float*>(c)[cache_off + rb - off] = vb;
      } else {
        static_cast<__half*>(c)[cache_off + ra - off] = __float2half_rn(va);
        static_cast<__half*>(c)[cache_off + rb - off] = __float2half_rn(vb);
      }
    }
  }
}

}  // namespace


void embed_rows(DType t, const uint8_t* table, int64_t row_bytes, int k, const int32_t* tokens, int T, float* x,
                cudaStream_t s) {
  switch (t) {
#define X(W, V) \
  case DType::W: embed_kernel<DType::W><<<T, 64, 0, s>>>(table, row_bytes, k, tokens, x); break;
    QUARREL_WEIGHT_TYPES(X)
#undef X
    default: fail_message(cat("CUDA embedding: type ", tensor::dtype_name(t), " is not supported"));
  }
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

GemmType gemm_type_for(DType t) {
  if (t == DType::F16) return GemmType::F16;
  if (t == DType::BF16) return GemmType::BF16;
  return GemmType::F32;
}

size_t gemm_type_size(GemmType g) { return g == GemmType::F32 ? 4 : 2; }

template <DType VT, typename OutT>
void launch_rows(RowOp op, const float* x, const float* x2, int64_t stride, const float* norm_w, float eps, int T,
                 int k, void* out, cudaStream_t s) {
  const size_t smem = (padded_size(k) + (op == RowOp::Norm ? k : 0)) * sizeof(float);
  auto kern = rows_kernel<VT, OutT>;
  allow_large_smem(kern);
  kern<<<T, kRowsThreads, smem, s>>>(op, x, x2, stride, norm_w, eps, k, static_cast<OutT*>(out));
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

// What rows_kernel writes for activations of vec-dot type VT: the GEMM's
// element type for float weights, quantized bytes otherwise.
template <DType VT>
using RowOut = std::conditional_t<
    VT == DType::F16, __half,
    std::conditional_t<VT == DType::BF16, __nv_bfloat16, std::conditional_t<VT == DType::F32, float, uint8_t>>>;

void rows_for_gemm(DType wtype, RowOp op, const float* x, const float* x2, int64_t stride, const float* norm_w,
                   float eps, int T, int k, void* out, cudaStream_t s) {
  switch (wtype) {
#define X(W, V) \
  case DType::W: return launch_rows<DType::V, RowOut<DType::V>>(op, x, x2, stride, norm_w, eps, T, k, out, s);
    QUARREL_WEIGHT_TYPES(X)
#undef X
    default: fail_message(cat("CUDA rows_for_gemm: type ", tensor::dtype_name(wtype), " is not supported"));
  }
}

void argmax_rows(const float* logits, int n_rows, int n, int32_t* out, cudaStream_t s) {
  argmax_kernel<<<n_rows, 256, 0, s>>>(logits, n, out);
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

void gather_rows(const float* x, const int32_t* idx, int n, int k, float* out, cudaStream_t s) {
  gather_kernel<<<n, 256, 0, s>>>(x, idx, k, out);
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

template <DType WT>
void launch_qgemm(const uint8_t* w, int64_t row_bytes, int rows, int k, const uint8_t* acts, int T, float* out,
                  int64_t ld_out, bool accumulate, cudaStream_t s) {
  if constexpr (!is_quantized(WT)) {
    fail_message(cat("CUDA qgemm: type ", tensor::dtype_name(WT), " is not quantized"));
  } else {
    const dim3 grid((rows + kQgemmThreads / kQGroup - 1) / (kQgemmThreads / kQGroup),
                    (T + kQgemmTokens - 1) / kQgemmTokens);
    const size_t smem = is_kquant(WT) ? 0 : kQgemmTokens * static_cast<size_t>(qacts_bytes(k));
    if (smem > 200 * 1024) fail_message(cat("qgemm: row length ", k, " is too long for shared memory"));
    allow_large_smem(qgemm_kernel<WT>);
    qgemm_kernel<WT><<<grid, kQgemmThreads, smem, s>>>(w, row_bytes, rows, k, acts, T, out, ld_out, accumulate);
  }
}

void qgemm(DType t, const uint8_t* w, int64_t row_bytes, int rows, int k, const void* x, int T, float* out,
           int64_t ld_out, float beta, cudaStream_t s) {
  const auto* acts = static_cast<const uint8_t*>(x);
  switch (t) {
#define X(W, V) \
  case DType::W: launch_qgemm<DType::W>(w, row_bytes, rows, k, acts, T, out, ld_out, beta != 0, s); break;
    QUARREL_WEIGHT_TYPES(X)
#undef X
    default: fail_message(cat("CUDA qgemm: type ", tensor::dtype_name(t), " is not supported"));
  }
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

void gemm(cublasHandle_t h, GemmType g, const void* w, int rows, int k, const void* x, int T, float* out,
          int64_t ld_out, float beta) {
  const float alpha = 1.0f;
  const cudaDataType_t dt = g == GemmType::F16 ? CUDA_R_16F : g == GemmType::BF16 ? CUDA_R_16BF : CUDA_R_32F;
  // Column-major view: out (rows x T) = W^T (W stored k x rows) * X (k x T).
  // CUBLAS_COMPUTE_32F keeps F32 inputs in full precision (no TF32).
  cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, T, k, &alpha, w, dt, k, x, dt, k, &beta, out,
                                   CUDA_R_32F, static_cast<int>(ld_out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) fail_message(cat("cuBLAS GEMM failed with status ", static_cast<int>(st)));
}

void rope_and_store(const RopeArgs& a, int T, const QkvRows& in, float* q_out, const int32_t* pos, const int32_t* seq,
                    void* k_cache, void* v_cache, bool kv_f32, cudaStream_t s) {
  rope_store_kernel<<<T, 256, 0, s>>>(a, in, q_out, pos, seq, k_cache, v_cache, kv_f32);
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace quarrel::cuda

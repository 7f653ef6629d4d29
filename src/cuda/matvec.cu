#include "cuda/matvec.cuh"

#include "cuda/common.cuh"
#include "cuda/dequant.cuh"

namespace quarrel::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;

// Fills xs (padded shared memory, k floats) with the kernel's input.
template <MatvecInput IN>
__device__ void load_input(const MatvecArgs& a, float* xs, float* red) {
  const int k = a.k;
  if constexpr (IN == MatvecInput::Norm) {
    float ss = 0;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
      float v = a.x[i];
      ss += v * v;
    }
    ss = block_sum(ss, red);
    const float scale = rsqrtf(ss / k + a.eps);
    for (int i = threadIdx.x; i < k; i += blockDim.x) xs[padded(i)] = (a.x[i] * scale) * a.norm_w[i];
  } else {
    for (int i = threadIdx.x; i < k; i += blockDim.x) xs[padded(i)] = a.x[i];
  }
  __syncthreads();
}

template <DType WT>
__device__ __forceinline__ void dot2(const uint8_t* ra, const uint8_t* rb, const float* xs, int k, int lane, float& sa,
                                     float& sb) {
  float wa[32], wb[32];
  sa = 0;
  sb = 0;
  for (int c = lane; c < k / 32; c += kWarp) {
    dequant32<WT>(ra, c, wa);
    dequant32<WT>(rb, c, wb);
    const float* xc = xs + 33 * c;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      sa = fmaf(wa[j], xc[j], sa);
      sb = fmaf(wb[j], xc[j], sb);
    }
  }
  sa = warp_sum(sa);
  sb = warp_sum(sb);
}

__device__ __forceinline__ unsigned long long pack_argmax(float v, int idx) {
  // Order floats as unsigned integers; ties go to the lower index, as on the CPU.
  uint32_t u = __float_as_uint(v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<unsigned long long>(u) << 32) | static_cast<uint32_t>(~static_cast<uint32_t>(idx));
}

// Pulls the first rows this warp will read into L2 while the previous kernel
// is still running (the launch is programmatic: see launch()).
__device__ __forceinline__ void prefetch_rows(const uint8_t* w, int64_t row_bytes, int first_row, int n_rows) {
  const int lane = threadIdx.x % kWarp;
  const uint8_t* p = w + first_row * row_bytes;
  const int64_t bytes = n_rows * row_bytes;
  for (int64_t off = lane * 128; off < bytes; off += kWarp * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
}

template <DType WT, DType VT, MatvecInput IN, MatvecOutput OUT>
__global__ void __launch_bounds__(kThreads) matvec_kernel(MatvecArgs a) {
  extern __shared__ float xs[];
  __shared__ float red[32];
  {
    // Weights do not depend on the previous kernel: pull this block's rows
    // into L2 before waiting for it.
    const int warp0 = blockIdx.x * kWarps + threadIdx.x / kWarp, n_warps0 = gridDim.x * kWarps;
    const int per_unit = OUT == MatvecOutput::Swiglu ? 1 : 2;
    for (int first = warp0 * per_unit; first < a.rows; first += n_warps0 * per_unit) {
      prefetch_rows(a.w, a.row_bytes, first, min(per_unit, a.rows - first));
      if (a.w2) prefetch_rows(a.w2, a.row_bytes, first, 1);
    }
  }
  cudaGridDependencySynchronize();
  cudaTriggerProgrammaticLaunchCompletion();
  load_input<IN>(a, xs, red);
  round_activations<VT>(xs, a.k);

  const int lane = threadIdx.x % kWarp;
  const int warp = blockIdx.x * kWarps + threadIdx.x / kWarp;
  const int n_warps = gridDim.x * kWarps;

  if constexpr (OUT == MatvecOutput::Qkv) {
    // A unit is one rotated pair of rows of one head of q, k or v.
    const int half = a.head_dim / 2;
    const int q_dim = a.n_head * a.head_dim, kv_dim = a.n_head_kv * a.head_dim;
    const int pos = a.step[1], seq = a.step[2];
    for (int u = warp; u < a.rows / 2; u += n_warps) {
      const int head = (a.row_base + 2 * u) / a.head_dim, i = u % half;
      const int base = head * a.head_dim;
      const int ra = base + (a.neox ? i : 2 * i), rb = base + (a.neox ? i + half : 2 * i + 1);
      float va, vb;
      dot2<WT>(a.w + (ra - a.row_base) * a.row_bytes, a.w + (rb - a.row_base) * a.row_bytes, xs, a.k, lane, va, vb);
      if (lane != 0) continue;
      if (a.bias) {
        va += a.bias[ra];
        vb += a.bias[rb];
      }
      if (ra < q_dim + kv_dim) {  // q and k are rotated
        const float cs = a.rope_cos[pos * half + i], sn = a.rope_sin[pos * half + i];
        const float x0 = va, x1 = vb;
        va = x0 * cs - x1 * sn;
        vb = x0 * sn + x1 * cs;
      }
      if (ra < q_dim) {
        a.out[ra] = va;
        a.out[rb] = vb;
      } else {
        const bool is_k = ra < q_dim + kv_dim;
        const int off = ra - q_dim - (is_k ? 0 : kv_dim), offb = rb - q_dim - (is_k ? 0 : kv_dim);
        const int64_t at = (static_cast<int64_t>(seq) * a.n_ctx + pos) * kv_dim;
        void* cache = is_k ? a.k_cache : a.v_cache;
        if (a.kv_f32) {
          static_cast<float*>(cache)[at + off] = va;
          static_cast<float*>(cache)[at + offb] = vb;
        } else {
          static_cast<__half*>(cache)[at + off] = __float2half_rn(va);
          static_cast<__half*>(cache)[at + offb] = __float2half_rn(vb);
        }
      }
    }
  } else if constexpr (OUT == MatvecOutput::Swiglu) {
    for (int r = warp; r < a.rows; r += n_warps) {
      float g, u;
      dot2<WT>(a.w + r * a.row_bytes, a.w2 + r * a.row_bytes, xs, a.k, lane, g, u);
      if (lane == 0) a.out[r] = g / (1.0f + __expf(-g)) * u;
    }
  } else {
    unsigned long long best = 0;
    for (int u = warp; u < (a.rows + 1) / 2; u += n_warps) {
      const int ra = 2 * u, rb = min(2 * u + 1, a.rows - 1);
      float va, vb;
      dot2<WT>(a.w + ra * a.row_bytes, a.w + rb * a.row_bytes, xs, a.k, lane, va, vb);
      if (lane != 0) continue;
      if constexpr (OUT == MatvecOutput::Residual) {
        a.out[ra] += va;
        if (rb != ra) a.out[rb] += vb;
      } else {
        a.out[ra] = va;
        a.out[rb] = vb;
        best = max(best, max(pack_argmax(va, ra), pack_argmax(vb, rb)));
      }
    }
    if constexpr (OUT == MatvecOutput::Logits) {
      if (lane == 0 && a.argmax && best) atomicMax(a.argmax, best);
    }
  }
}

template <DType WT, DType VT, MatvecInput IN, MatvecOutput OUT>
void launch(const MatvecArgs& a, int n_sm, cudaStream_t s) {
  const size_t smem = padded_size(a.k) * sizeof(float);
  auto kernel = matvec_kernel<WT, VT, IN, OUT>;
  allow_large_smem(kernel);
  if (smem > 200 * 1024) fail_message(cat("matvec: row length ", a.k, " is too long for shared memory"));
  const int units = OUT == MatvecOutput::Swiglu ? a.rows : (a.rows + 1) / 2;
  // One block per multiprocessor leaves room for the next kernel's blocks to
  // start (programmatic launch) and prefetch while this one finishes.
  const int blocks = std::max(1, std::min((units + kWarps - 1) / kWarps, n_sm));
  launch_programmatic(kernel, blocks, kThreads, smem, s, a);
}

template <DType WT, DType VT>
void dispatch_io(MatvecInput in, MatvecOutput out, const MatvecArgs& a, int n_sm, cudaStream_t s) {
  using I = MatvecInput;
  using O = MatvecOutput;
  if (in == I::Norm && out == O::Qkv) return launch<WT, VT, I::Norm, O::Qkv>(a, n_sm, s);
  if (in == I::Norm && out == O::Swiglu) return launch<WT, VT, I::Norm, O::Swiglu>(a, n_sm, s);
  if (in == I::Plain && out == O::Residual) return launch<WT, VT, I::Plain, O::Residual>(a, n_sm, s);
  if (in == I::Norm && out == O::Logits) return launch<WT, VT, I::Norm, O::Logits>(a, n_sm, s);
  fail_message(cat("matvec: no kernel for this input/output pairing"));
}


template <DType WT>
__global__ void dequantize_kernel(const uint8_t* src, int64_t row_bytes, int n_rows, int k, float* dst) {
  const int n_chunks = k / 32;
  const int64_t total = static_cast<int64_t>(n_rows) * n_chunks;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / n_chunks;
    const int c = static_cast<int>(i % n_chunks);
    float v[32];
    dequant32<WT>(src + r * row_bytes, c, v);
    for (int j = 0; j < 32; ++j) dst[r * k + 32 * c + j] = v[j];
  }
}

}  // namespace


void matvec(DType wtype, MatvecInput in, MatvecOutput out, const MatvecArgs& a, int n_sm, cudaStream_t s) {
  switch (wtype) {
#define X(W, V) \
  case DType::W: return dispatch_io<DType::W, DType::V>(in, out, a, n_sm, s);
    QUARREL_WEIGHT_TYPES(X)
#undef X
    default: fail_message(cat("CUDA matvec: weight type ", tensor::dtype_name(wtype), " is not supported"));
  }
}

void dequantize_rows(DType t, const uint8_t* src, int64_t row_bytes, int n_rows, int k, float* dst, cudaStream_t s) {
  const int64_t work = static_cast<int64_t>(n_rows) * (k / 32);
  const int blocks = static_cast<int>(std::min<int64_t>((work + 255) / 256, 4096));
  switch (t) {
#define X(W, V) \
  case DType::W: dequantize_kernel<DType::W><<<blocks, 256, 0, s>>>(src, row_bytes, n_rows, k, dst); break;
    QUARREL_WEIGHT_TYPES(X)
#undef X
    default: fail_message(cat("CUDA dequantize: type ", tensor::dtype_name(t), " is not supported"));
  }
  QUARREL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace quarrel::cuda

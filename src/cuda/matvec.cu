#include "cuda/matvec.cuh"

#include "cuda/common.cuh"
#include "cuda/dequant.cuh"
#include "cuda/matvec_device.cuh"

namespace quarrel::cuda {

namespace {

constexpr int kThreads = kMatvecThreads;
constexpr int kWarps = kMatvecWarps;

template <DType WT, DType VT, MatvecInput IN, MatvecOutput OUT, bool kNarrow>
__global__ void __launch_bounds__(kThreads) matvec_kernel(MatvecArgs a) {
  extern __shared__ float xs[];
  __shared__ double red[32];
  const int warp = blockIdx.x * kWarps + threadIdx.x / kWarp;
  const int n_warps = gridDim.x * kWarps;
  // Weights do not depend on the previous kernel: pull this block's rows into
  // L2 before waiting for it.
  maybe_prefetch<OUT>(a, warp, n_warps);
  cudaGridDependencySynchronize();
  cudaTriggerProgrammaticLaunchCompletion();
  load_input<IN, VT>(a, xs, red);
  unsigned long long best = 0;
  matvec_rows<WT, OUT, false, kNarrow>(a, xs, warp, n_warps, best);
  if constexpr (OUT == MatvecOutput::Logits) {
    if (threadIdx.x % kWarp == 0 && a.argmax && best) atomicMax(a.argmax, best);
  }
}

template <DType WT, DType VT, MatvecInput IN, MatvecOutput OUT, bool kNarrow>
void launch_units(const MatvecArgs& a, int n_sm, cudaStream_t s) {
  const size_t smem = matvec_smem_floats(a.k) * sizeof(float);
  auto kernel = matvec_kernel<WT, VT, IN, OUT, kNarrow>;
  allow_large_smem(kernel);
  if (smem > 200 * 1024) fail_message(cat("matvec: row length ", a.k, " is too long for shared memory"));
  const int units = matvec_units<WT, OUT, kNarrow>(a.rows);
  // One block per multiprocessor leaves room for the next kernel's blocks to
  // start (programmatic launch) and prefetch while this one finishes. The
  // logits head is the last kernel of a step and the largest matrix: it takes
  // as many blocks as fit, for more loads in flight.
  int per_sm = 1;
  if constexpr (OUT == MatvecOutput::Logits) {
    QUARREL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
    per_sm = std::max(per_sm, 1);
  }
  const int blocks = std::max(1, std::min((units + kWarps - 1) / kWarps, n_sm * per_sm));
  launch_programmatic(kernel, blocks, kThreads, smem, s, a);
}

template <DType WT, DType VT, MatvecInput IN, MatvecOutput OUT>
void launch(const MatvecArgs& a, int n_sm, cudaStream_t s) {
  constexpr bool kHasNarrow = !is_quantized(WT) && (OUT == MatvecOutput::Swiglu || OUT == MatvecOutput::Residual);
  if constexpr (kHasNarrow)
    if (a.narrow) return launch_units<WT, VT, IN, OUT, true>(a, n_sm, s);
  launch_units<WT, VT, IN, OUT, false>(a, n_sm, s);
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


bool narrow_units(int n_embd, int n_ff, int n_sm) {
  const int warps = n_sm * kMatvecWarps;
  return n_ff <= 2 * warps && n_embd <= warps;
}

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

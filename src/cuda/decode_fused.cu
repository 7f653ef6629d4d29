#include "cuda/decode_fused.cuh"

#include <algorithm>

#include "cuda/attention_device.cuh"
#include "cuda/common.cuh"
#include "cuda/matvec_device.cuh"

namespace quarrel::cuda {

size_t matvec_input_floats(DType t, const FusedStep& a);

namespace {

constexpr int kThreads = kMatvecThreads;
constexpr int kWarps = kMatvecWarps;
// The longest context that takes attention in one stage: every block of a
// head computes all of its scores, work that grows with the positions.
constexpr int kSliceMaxPos = 512;
// Shared memory is sized so that contexts up to this long always can: all
// of kSliceMaxPos for float weights (no weight slots to share it with),
// whose copies a layer ahead keep the longer rows off the critical path.
constexpr int kSliceSizedPos = 256;

// One-stage attention's output dimensions per block: the narrowest slices
// (the most blocks) that still give every block at most one; 0 when the
// head dimension allows none.
int slice_dims_for(const FusedStep& a, int n_sm) {
  int dims = 0;
  for (int nd : {4, 8, 16, 32})
    if (a.head_dim % nd == 0 && (dims == 0 || a.n_head * (a.head_dim / dims) > n_sm)) dims = nd;
  return dims;
}

// The grid barrier, for long contexts' two-stage attention (every other
// stage waits for its input words instead): every block counts itself in,
// then thread 0 spins until all have.
__device__ __forceinline__ void grid_barrier(unsigned int* counter, unsigned int& target) {
  target += gridDim.x;
  __syncthreads();
  // A release add publishes the block's writes (ordered before it by the
  // __syncthreads above); the acquire loads make the other blocks' visible.
  if (threadIdx.x == 0) {
    asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(counter) : "memory");
    unsigned int seen;
    do {
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
    } while (seen < target);
  }
  __syncthreads();
}

// Pulls bytes [0, n) of p into L2, spread over every thread of the grid.
__device__ __forceinline__ void prefetch_span(const void* p, int64_t n) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nt = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t off = t * 128; off < n; off += nt * 128)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(static_cast<const uint8_t*>(p) + off));
}

// One matvec stage: the block loads the stage's input words, then computes
// its units. A block without units skips the stage (it must not wait for an
// input that may already hold a later stage's values), and one with units
// first waits until every warp is done with the shared memory of the stage
// before.
template <DType WT, DType VT, MatvecInput IN, MatvecOutput OUT, bool kNarrow>
__device__ __forceinline__ void matvec_stage(const MatvecArgs& s, float* smem, double* red, int warp, int n_warps,
                                             const WeightSlots& slots) {
  if (!block_has_units<WT, OUT, kNarrow>(s)) return;
  __syncthreads();
  unsigned long long unused = 0;
  load_input<IN, VT, true>(s, smem, red);
  matvec_rows<WT, OUT, true, kNarrow>(s, smem, warp, n_warps, unused, slots);
}

template <DType WT, DType VT, typename KV, bool kNarrow>
__global__ void __launch_bounds__(kThreads) fused_decode_kernel(FusedStep a) {
  extern __shared__ float4 smem4[];  // matvec input, or attention scores + K/V chunk
  float* smem = reinterpret_cast<float*>(smem4);
  __shared__ double red[32];
  using O = MatvecOutput;
  using I = MatvecInput;
  // Warps are numbered across the blocks first, so that a stage with fewer
  // units than warps still spreads them over every multiprocessor.
  const int warp = (threadIdx.x / kWarp) * gridDim.x + blockIdx.x;
  const int n_warps = gridDim.x * kWarps;
  const int pos = a.step[1], seq = a.step[2];
  const int kvd = a.n_head_kv * a.head_dim;
  unsigned int target = 0;
  int clock_at = 0;
  auto stamp = [&](int il) {
    if (a.stage_clock == nullptr) return;
    __syncthreads();
    if (blockIdx.x == 0 && threadIdx.x == 0) {
      unsigned long long t;
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
      a.stage_clock[il < 0 ? a.n_layer * kStageClocks : il * kStageClocks + clock_at] = t;
    }
    clock_at = il < 0 ? 0 : clock_at + 1;
  };

  // Prefetches are issued at the end of a stage, after its own loads, for a
  // stage at least one barrier later: issued earlier they queue in front of
  // the stage's critical loads on the same multiprocessor.
  // The first cache element of this step's sequence in a layer's K or V.
  auto cache_first = [&] { return static_cast<int64_t>(seq) * a.n_ctx * kvd; };
  auto prefetch_kv = [&](const FusedLayer& L) {
    // The cached K and V of the earlier positions: the weights streaming
    // through L2 evict them between tokens, and attention runs on only a few
    // blocks, each of which would otherwise wait on memory.
    const int64_t elem = a.kv_f32 ? 4 : 2;
    const int64_t first = cache_first() * elem;
    prefetch_span(static_cast<const uint8_t*>(L.k_cache) + first, pos * kvd * elem);
    prefetch_span(static_cast<const uint8_t*>(L.v_cache) + first, pos * kvd * elem);
  };
  const WeightSlots slots{reinterpret_cast<uint8_t*>(smem4) + a.slot_offset, a.slot_bytes};
  // The layers' table, copied into shared memory once: read from global
  // memory, each layer's pointers cost a round trip on the path into the
  // stage that needs them (the weights streaming through L1 evict them).
  FusedLayer* layers = reinterpret_cast<FusedLayer*>(reinterpret_cast<uint8_t*>(smem4) + a.table_offset);
  {
    constexpr int kWords = sizeof(FusedLayer) / sizeof(uint64_t);
    static_assert(sizeof(FusedLayer) % sizeof(uint64_t) == 0);
    const uint64_t* src = reinterpret_cast<const uint64_t*>(a.layers);
    uint64_t* dst = reinterpret_cast<uint64_t*>(layers);
    for (int i = threadIdx.x; i < a.n_layer * kWords; i += blockDim.x) dst[i] = src[i];
    __syncthreads();
  }
  // The stages hand their outputs on as words with epochs (common.cuh,
  // handoff_store): a block waits for exactly the values it reads, with no
  // grid barrier and no second round trip for the data (docs/PERF.md, the
  // eighth and twelfth sessions). Stage s of layer il (0 QKV, 1 attention, 2
  // output projection, 3 gate/up, 4 down) writes epoch base +
  // kEpochsPerLayer * il + s + 1; base is the residual the embedding left in
  // a.x, copied into the words here.
  const int qd = a.n_head * a.head_dim;
  uint64_t* x_words = a.handoff;
  uint64_t* qkv_words = x_words + a.n_embd;
  uint64_t* attn_words = qkv_words + qd + 2 * kvd;
  uint64_t* h_words = attn_words + qd;
  const unsigned base = static_cast<unsigned>(a.step[3]);
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < a.n_embd; i += gridDim.x * blockDim.x)
    handoff_store(x_words + i, __ldcg(a.x + i), base);
  // Stage s's input words and epoch, and its output words and epoch.
  auto wire = [](MatvecArgs& s, const uint64_t* in, unsigned in_epoch, uint64_t* out, unsigned out_epoch) {
    s.x_words = in;
    s.x_epoch = in_epoch;
    s.out_words = out;
    s.out_epoch = out_epoch;
  };
  auto handoff = [&](LayerArgs& m, int il) {
    const unsigned e = base + kEpochsPerLayer * il;
    wire(m.qkv, x_words, e, qkv_words, e + 1);
    wire(m.o, attn_words, e + 2, x_words, e + 3);
    wire(m.ffn, x_words, e + 3, h_words, e + 4);
    // The last layer leaves the residual in a.x for the logits head.
    wire(m.down, h_words, e + 4, il + 1 < a.n_layer ? x_words : nullptr, e + 5);
    m.o.res_words = m.down.res_words = x_words;  // the residual before each addition
    m.o.res_epoch = e;
    m.down.res_epoch = e + 3;
  };
  // Between two stages: the next stage's first weight copies and
  // prefetches (`between`), timed apart from the stages.
  auto handover = [&](int il, auto&& between) {
    stamp(il);
    between();
    stamp(il);
  };
  // One-stage attention, when each block has at most one (head, slice) item
  // and its shared memory is apart from the matvec input (slice_ahead_pos):
  // the block copies its earlier positions' cache rows into shared memory
  // ahead (stage_slice), after the down projection of the layer before, so
  // that they have arrived when its attention starts. Issuing them costs a
  // block about 1 µs (docs/PERF.md): there, most blocks are waiting for the
  // last down-projection rows anyway, where right after the attention they
  // held up the output projection. Everything here is recomputed from the
  // launch's parameters where it is used: the kernel is at its register
  // limit, and values live across the layer loop cost the stages their
  // load batching (measured: the two-stage softmax 2x slower).
  auto kv_ahead = [&] { return pos < a.slice_ahead_pos; };
  auto slice_smem = [&] { return reinterpret_cast<uint8_t*>(smem4) + a.slice_offset; };
  auto stage_ahead = [&](int il) {
    if (!kv_ahead() || il >= a.n_layer) return;
    const int per_head = a.head_dim / a.slice_dims, item = blockIdx.x;
    if (item >= a.n_head * per_head) return;
    const int g = item / per_head / (a.n_head / a.n_head_kv), d0 = (item % per_head) * a.slice_dims;
    const int64_t first = cache_first() + g * a.head_dim;
    stage_slice(slice_smem(), static_cast<const KV*>(layers[il].k_cache) + first,
                static_cast<const KV*>(layers[il].v_cache) + first + d0, kvd, pos + 1, pos, a.head_dim,
                a.slice_dims);
  };
  LayerArgs m = layer_args(a, layers[0]);
  handoff(m, 0);
  stage_first_units<WT, O::Qkv>(m.qkv, slots, warp, n_warps);
  maybe_prefetch<O::Qkv>(m.qkv, warp, n_warps);
  if (kv_ahead())
    stage_ahead(0);
  else
    prefetch_kv(layers[0]);
  stamp(-1);
  for (int il = 0; il < a.n_layer; ++il) {
    const FusedLayer& L = layers[il];
    const unsigned e = base + kEpochsPerLayer * il;
    clock_at = 0;
    // QKV, RoPE and the KV-cache write.
    matvec_stage<WT, VT, I::Norm, O::Qkv, kNarrow>(m.qkv, smem, red, warp, n_warps, slots);
    handover(il, [&] {
      stage_first_units<WT, O::Residual>(m.o, slots, warp, n_warps);
      maybe_prefetch<O::Residual>(m.o, warp, n_warps);
    });

    const int n_pos = pos + 1, group = a.n_head / a.n_head_kv;
    const KV* kc = static_cast<const KV*>(L.k_cache) + cache_first();
    const KV* vc = static_cast<const KV*>(L.v_cache) + cache_first();
    if (n_pos <= a.slice_max_pos) {
      // A short context: attention in one stage, a query head's slice of
      // output dimensions per block.
      const int nd = a.slice_dims, per_head = a.head_dim / nd;
      __syncthreads();  // every warp is done with the QKV stage's input
      for (int item = blockIdx.x; item < a.n_head * per_head; item += gridDim.x) {
        const int h = item / per_head, g = h / group;
        attend_slice<true, kWarps>(
            a.q + h * a.head_dim, qkv_words + h * a.head_dim, qkv_words + qd + g * a.head_dim,
            qkv_words + qd + kvd + g * a.head_dim, e + 1, kc + g * a.head_dim, vc + g * a.head_dim, kvd, n_pos,
            a.head_dim, a.scale, (item % per_head) * nd, nd, a.attn + h * a.head_dim, attn_words + h * a.head_dim,
            e + 2, slice_smem(), red, kv_ahead());
      }
      maybe_prefetch<O::Swiglu>(m.ffn, warp, n_warps);
      handover(il, [] {});
    } else {
      // Attention, spread over the grid, behind grid barriers (the new
      // position's K and V rows are read from the cache): first the scores,
      // 32 positions of the query heads of one KV head per block ...
      grid_barrier(a.barrier, target);
      {
        const int n_items = a.n_head_kv * ((n_pos + 31) / 32);
        if (static_cast<int>(blockIdx.x) < n_items) {
          for (int i = threadIdx.x; i < qd; i += blockDim.x)
            smem[i] = handoff_wait(qkv_words + i, e + 1);
          __syncthreads();
          for (int item = blockIdx.x; item < n_items; item += gridDim.x)
            score_chunk(smem, kc, kvd, item % a.n_head_kv, group, item / a.n_head_kv, n_pos, a.head_dim, a.scale,
                        a.scores, smem + ((qd + 3) & ~3));
        }
      }
      maybe_prefetch<O::Swiglu>(m.ffn, warp, n_warps);
      stamp(il);
      grid_barrier(a.barrier, target);
      stamp(il);
      // ... then the softmax and the weighted sum of V, a few dimensions of
      // one KV head per block.
      {
        const int nd = a.head_dim % 8 == 0 ? 8 : 4, per_head = a.head_dim / nd;
        float* probs = smem;
        float* inv_sum = smem + group * a.n_ctx;
        float* chunk = smem + ((group * a.n_ctx + group + 3) & ~3);
        for (int item = blockIdx.x; item < a.n_head_kv * per_head; item += gridDim.x)
          softmax_values(a.scores, vc, kvd, item / per_head, group, (item % per_head) * nd, nd, n_pos, a.head_dim,
                         a.attn, attn_words, e + 2, probs, inv_sum, chunk);
      }
      handover(il, [] {});
    }

    // Output projection into the residual.
    matvec_stage<WT, VT, I::Plain, O::Residual, kNarrow>(m.o, smem, red, warp, n_warps, slots);
    handover(il, [&] {
      stage_first_units<WT, O::Swiglu>(m.ffn, slots, warp, n_warps);
      maybe_prefetch<O::Residual>(m.down, warp, n_warps);
    });

    // RMSNorm, gate and up, SwiGLU.
    matvec_stage<WT, VT, I::Norm, O::Swiglu, kNarrow>(m.ffn, smem, red, warp, n_warps, slots);
    LayerArgs next = m;
    handover(il, [&] {
      stage_first_units<WT, O::Residual>(m.down, slots, warp, n_warps);
      if (il + 1 < a.n_layer) {
        next = layer_args(a, layers[il + 1]);
        handoff(next, il + 1);
        maybe_prefetch<O::Qkv>(next.qkv, warp, n_warps);
        if (!kv_ahead()) prefetch_kv(layers[il + 1]);
      }
    });

    // Down projection into the residual.
    matvec_stage<WT, VT, I::Plain, O::Residual, kNarrow>(m.down, smem, red, warp, n_warps, slots);
    if (il + 1 < a.n_layer)
      handover(il, [&] {
        stage_first_units<WT, O::Qkv>(next.qkv, slots, warp, n_warps);
        stage_ahead(il + 1);
      });
    m = next;
  }
}

// The slot size for a layer's four matvec stages, at most `cap` bytes: the
// largest unit (two rows) that fits one slot, or half of one that fits two
// (slot_depth); 0 when no stage can use slots (and for float weights, which
// do not: matvec_device.cuh).
template <DType WT>
int slot_bytes_for(const FusedLayer& L, int64_t cap) {
  if (!is_quantized(WT)) return 0;
  int64_t best = 0;
  for (int64_t rb : {L.rb_qkv, L.rb_o, L.rb_ffn, L.rb_down}) {
    const int64_t need = 2 * staged_row_bytes(rb);
    if (need <= cap)
      best = std::max(best, need);
    else if (need <= 2 * cap)
      best = std::max(best, (need / 2 + 15) & ~int64_t{15});
  }
  // QUARREL_CUDA_HALF_SLOTS=1 halves the slots, so that the largest unit
  // takes both of a processor's slots (depth 1): the tests run that path on
  // the small test models, whose units all fit one slot otherwise.
  if (env_flag("QUARREL_CUDA_HALF_SLOTS")) best = (best / 2 + 15) & ~int64_t{15};
  return static_cast<int>(best);
}

template <DType WT, DType VT>
void launch(FusedStep a, const FusedLayer& layer0, int n_sm, cudaStream_t s) {
  auto round16 = [](size_t b) { return (b + 15) & ~size_t{15}; };
  size_t base = round16(fused_smem_bytes(WT, a));
  const size_t table = fused_table_bytes(a);
  if (base + table > kMaxDynamicSmem)
    fail_message(cat("fused decode: needs ", base + table, " bytes of shared memory (at most ", kMaxDynamicSmem, ")"));
  // Every layer has the first layer's row sizes: the slots are sized for them.
  const int procs = kThreads / unit_lanes<WT>();
  auto cap = [&](size_t b) {
    return static_cast<int64_t>((kMaxDynamicSmem - table - b) / (2 * procs)) & ~int64_t{15};
  };
  // Room for one-stage attention over kSliceSizedPos positions (float
  // weights: kSliceMaxPos), unless it would shrink the weight slots of
  // quantized weights (large models, whose decode streams from memory). It
  // goes apart from the matvec input where that still fits (always for float
  // weights, which have no slots), so that the cache rows can be copied there
  // ahead, during the matvec stages; otherwise it shares the matvec input's.
  a.slice_dims = slice_dims_for(a, n_sm);
  const int kv_bytes = a.kv_f32 ? 4 : 2;
  auto slice_end = [&](int n_pos) {
    return a.slice_offset + slice_bytes(n_pos, a.head_dim, a.slice_dims, kv_bytes);
  };
  // Where that room ends, and whether memory up to `want` leaves the weight
  // slots as large.
  auto sized_end = [&] {
    const int sized = is_quantized(WT) ? kSliceSizedPos : kSliceMaxPos;
    return round16(static_cast<size_t>(slice_end(std::min(a.n_ctx, sized))));
  };
  auto fits = [&](size_t want) {
    return want + table <= kMaxDynamicSmem &&
           slot_bytes_for<WT>(layer0, cap(want)) == slot_bytes_for<WT>(layer0, cap(base));
  };
  a.slice_offset = static_cast<int>(round16(matvec_input_floats(WT, a) * sizeof(float)));
  const bool apart = a.slice_dims != 0 && (!is_quantized(WT) || fits(sized_end()));
  if (!apart) a.slice_offset = 0;
  if (a.slice_dims != 0) {
    const size_t want = sized_end();
    if (want > base && fits(want)) base = want;
  }
  a.slot_offset = static_cast<int>(base);
  // QUARREL_CUDA_NO_SLOTS=1 reads every weight from global memory (to
  // measure what the slots bring).
  a.slot_bytes = env_flag("QUARREL_CUDA_NO_SLOTS") ? 0 : slot_bytes_for<WT>(layer0, cap(base));
  a.table_offset = static_cast<int>(base + static_cast<size_t>(2 * procs) * a.slot_bytes);
  const size_t smem = a.table_offset + table;
  // One-stage attention up to the positions whose rows fit in `base`.
  a.slice_max_pos = 0;
  if (a.slice_dims != 0 && !env_flag("QUARREL_CUDA_TWO_STAGE_ATTENTION"))
    while (a.slice_max_pos < std::min(a.n_ctx, kSliceMaxPos) &&
           slice_end(a.slice_max_pos + 1) <= static_cast<int64_t>(base))
      ++a.slice_max_pos;
  a.slice_ahead_pos = 0;
  if (apart && a.n_head * (a.head_dim / a.slice_dims) <= n_sm) a.slice_ahead_pos = a.slice_max_pos;
  auto run = [&](auto kernel) {
    allow_large_smem(kernel);
    int per_sm = 0;
    QUARREL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
    if (per_sm < 1) fail_message(cat("fused decode: the kernel does not fit on a multiprocessor"));
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(n_sm);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeCooperative;  // all blocks resident: the barrier needs it
    attr[0].val.cooperative = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    QUARREL_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, a));
  };
  QUARREL_CUDA_CHECK(cudaMemsetAsync(a.barrier, 0, sizeof(unsigned int), s));
  // Narrow units (matvec.cuh, narrow_units) change only float weights' stages.
  if constexpr (!is_quantized(WT)) {
    if (a.narrow) {
      a.kv_f32 ? run(fused_decode_kernel<WT, VT, float, true>) : run(fused_decode_kernel<WT, VT, __half, true>);
      return;
    }
  }
  a.kv_f32 ? run(fused_decode_kernel<WT, VT, float, false>) : run(fused_decode_kernel<WT, VT, __half, false>);
}

}  // namespace

// The matvec input: the padded row, then the norm weights (inputs of n_embd)
// or the quantized row (every input, for quantized weights); floats.
size_t matvec_input_floats(DType t, const FusedStep& a) {
  auto input = [&](int k, bool norm) {
    const size_t extra = std::max<size_t>(norm ? k : 0, is_quantized(t) ? (qacts_bytes(k) + 3) / 4 : 0);
    return padded_size(k) + extra;
  };
  return std::max({input(a.n_embd, true), input(a.n_head * a.head_dim, false), input(a.n_ff, false)});
}

size_t fused_smem_bytes(DType t, const FusedStep& a) {
  const size_t matvec = matvec_input_floats(t, a);
  const int group = a.n_head / a.n_head_kv;
  const size_t softmax = ((group * a.n_ctx + group + 3) & ~3) + kAttendChunkFloats;
  const size_t scores = ((a.n_head * a.head_dim + 3) & ~3) + 32 * (a.head_dim + 1);
  return std::max({matvec, softmax, scores}) * sizeof(float);
}

#define QUARREL_FUSED_TYPES(X) X(F32, F32) X(F16, F16) X(BF16, BF16) X(Q8_0, Q8_0) X(Q4_0, Q8_0)

bool fused_decode_supported(DType t) {
  switch (t) {
#define X(W, V) case DType::W:
    QUARREL_FUSED_TYPES(X)
#undef X
    return true;
    default: return false;
  }
}

void decode_layers(DType t, const FusedStep& a, const FusedLayer& layer0, int n_sm, cudaStream_t s) {
  if (a.head_dim % 4 != 0 || a.n_head / a.n_head_kv > kMaxFusedGroup)
    fail_message(cat("fused decode: head dimension ", a.head_dim, " or GQA group ", a.n_head / a.n_head_kv,
                     " is not supported"));
  switch (t) {
#define X(W, V) \
  case DType::W: return launch<DType::W, DType::V>(a, layer0, n_sm, s);
    QUARREL_FUSED_TYPES(X)
#undef X
    default: fail_message(cat("fused decode: weight type ", tensor::dtype_name(t), " has no persistent kernel"));
  }
}

}  // namespace quarrel::cuda

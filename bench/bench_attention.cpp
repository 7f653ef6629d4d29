// Decode attention: one query (or the query heads of a GQA group) over an F32
// KV cache, on one core. K and V are read once per KV head; the kernel is the
// two-pass softmax ggml uses without flash attention (scores, then the
// weighted sum), which reads the same bytes as an online-softmax pass.
#include <cmath>
#include <fmt/format.h>

#include "bench_common.h"

namespace quarrel::bench {

namespace {

struct AttnData {
  std::vector<float> q, k, v, scores, out;
};

// n_kv KV heads, each shared by `ratio` query heads, laid out as the
// backend's cache: K transposed ([kv_dim][ks]), V as rows of kv_dim floats.
void run_attention(benchmark::State& st, const cpu::Kernels* kt, int64_t n_kv, int64_t ratio, int64_t seq,
                   int64_t hd) {
  const int64_t kvd = n_kv * hd, nq = n_kv * ratio;
  // K rows padded as the backend pads them (a cache line past a whole one),
  // so that they do not all fall into the same few L1 sets.
  const int64_t ks = (seq + 15) / 16 * 16 + 16;
  AttnData d;
  d.q = random_floats(nq * hd, 1);
  d.k = random_floats(ks * kvd + 16, 2);
  // ... and starting a cache line, as the backend's does.
  const float* k0 = d.k.data() + (64 - reinterpret_cast<uintptr_t>(d.k.data()) % 64) % 64 / sizeof(float);
  d.v = random_floats(seq * kvd, 3);
  d.scores.resize(ratio * seq);
  d.out.resize(nq * hd);
  auto run = [&](const cpu::Kernels& k, float* out) {
    for (int64_t h = 0; h < n_kv; ++h) {
      cpu::AttendArgs a;
      a.q = d.q.data() + h * ratio * hd;
      a.n_q = ratio;
      a.q_stride = hd;
      a.k = k0 + h * hd * ks;
      a.k_stride = ks;
      a.v = d.v.data() + h * hd;
      a.v_stride = kvd;
      a.n_pos = seq;
      a.head_dim = hd;
      a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
      a.scores = d.scores.data();
      a.out = out + h * ratio * hd;
      a.out_stride = hd;
      k.attend(a);
    }
  };
  std::vector<float> want(nq * hd);
  run(cpu::kernels_scalar(), want.data());
  run(*kt, d.out.data());
  for (size_t i = 0; i < want.size(); ++i)
    if (std::fabs(want[i] - d.out[i]) > 1e-4 * (std::fabs(want[i]) + 1)) {
      st.SkipWithError("result differs from the scalar reference");
      return;
    }
  for (auto _ : st) {
    run(*kt, d.out.data());
    benchmark::DoNotOptimize(d.out.data());
  }
  const double bytes = 2.0 * seq * kvd * sizeof(float);
  const double flops = 4.0 * seq * hd * nq;
  set_rates(st, bytes, flops, 0, peaks().fma_gflops_1t);
}

}  // namespace

void register_attention_benchmarks() {
  for (const cpu::Kernels* k : cpu::kernels_available()) {
    for (int64_t hd : {64, 128})
      for (int64_t seq : {128, 256, 512, 4096}) {
        const std::string name = fmt::format("attention_decode/seq:{}/hd:{}/{}", seq, hd, k->isa);
        benchmark::RegisterBenchmark(name.c_str(), run_attention, k, 1, 1, seq, hd)->Unit(benchmark::kMicrosecond);
      }
    for (int64_t ratio : {4, 8})
      for (int64_t seq : {128, 256, 512}) {
        const std::string name = fmt::format("gqa/heads:32/ratio:{}/seq:{}/hd:128/{}", ratio, seq, k->isa);
        benchmark::RegisterBenchmark(name.c_str(), run_attention, k, 32 / ratio, ratio, seq, 128)
            ->Unit(benchmark::kMicrosecond);
      }
  }
}

}  // namespace quarrel::bench

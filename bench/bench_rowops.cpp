// Row operations on one core: RMSNorm and LayerNorm, RoPE (applied with
// cos/sin computed per token, and with precomputed tables), MicroLoRA forward
// and gradient accumulation, and KV-cache append. Each checks its table
// against the scalar reference once before timing.
#include <cmath>
#include <cstring>
#include <fmt/format.h>

#include "bench_common.h"
#include "cpu/ops.h"

namespace quarrel::bench {

namespace {

// |a - b| <= rel * (|a| + floor), floor being the size of the terms summed.
bool close(const std::vector<float>& a, const std::vector<float>& b, double rel, double floor = 1) {
  for (size_t i = 0; i < a.size(); ++i)
    if (std::fabs(a[i] - b[i]) > rel * (std::fabs(a[i]) + floor)) return false;
  return true;
}

void run_norm(benchmark::State& st, const cpu::Kernels* k, int64_t n, bool layer) {
  auto x = random_floats(n, 1), w = random_floats(n, 2), b = random_floats(n, 3);
  std::vector<float> out(n), want(n);
  auto once = [&](const cpu::Kernels& kt, float* o) {
    if (layer)
      kt.layer_norm(x.data(), w.data(), b.data(), 1e-5f, n, o);
    else
      kt.rms_norm(x.data(), w.data(), 1e-5f, n, o);
  };
  once(cpu::kernels_scalar(), want.data());
  once(*k, out.data());
  if (!close(want, out, 1e-5)) return st.SkipWithError("result differs from the scalar reference");
  for (auto _ : st) {
    once(*k, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  set_rates(st, (layer ? 4.0 : 3.0) * n * sizeof(float), 0);
}

// One head of head_dim per token, rotated at positions 0..tokens-1 (llama
// pairs). "tables": cos/sin precomputed; "applied": computed per token too.
void run_rope(benchmark::State& st, const cpu::Kernels* k, int64_t hd, int64_t tokens, bool tables) {
  const int64_t half = hd / 2;
  auto x0 = random_floats(tokens * hd, 1);
  std::vector<float> cs(tokens * half), sn(tokens * half);
  for (int64_t t = 0; t < tokens; ++t)
    cpu::rope_table(static_cast<int32_t>(t), half, 10000.0f, 1.0f, nullptr, cs.data() + t * half, sn.data() + t * half);
  auto x = x0, want = x0;
  for (int64_t t = 0; t < tokens; ++t) {
    cpu::kernels_scalar().rope_apply(want.data() + t * hd, cs.data() + t * half, sn.data() + t * half, half, false);
    k->rope_apply(x.data() + t * hd, cs.data() + t * half, sn.data() + t * half, half, false);
  }
  if (!close(want, x, 1e-6)) return st.SkipWithError("result differs from the scalar reference");
  for (auto _ : st) {
    for (int64_t t = 0; t < tokens; ++t) {
      if (!tables)
        cpu::rope_table(static_cast<int32_t>(t), half, 10000.0f, 1.0f, nullptr, cs.data() + t * half,
                        sn.data() + t * half);
      k->rope_apply(x.data() + t * hd, cs.data() + t * half, sn.data() + t * half, half, false);
    }
    benchmark::DoNotOptimize(x.data());
  }
  set_rates(st, (2.0 * hd + hd) * tokens * sizeof(float), 6.0 * half * tokens);
}

void run_lora(benchmark::State& st, const cpu::Kernels* k, int64_t rank, int64_t dim, bool grad) {
  auto a = random_floats(rank * dim, 1), b = random_floats(rank * dim, 2), x = random_floats(dim, 3),
       g = random_floats(dim, 4);
  std::vector<float> y(dim, 0.0f), da(rank * dim, 0.0f), db(rank * dim, 0.0f);
  cpu::LoraArgs l{a.data(), b.data(), rank, dim, dim, 0.5f};
  {
    std::vector<float> y1(dim, 0.0f), y2(dim, 0.0f), da1(rank * dim, 0.0f), da2(rank * dim, 0.0f),
        db1(rank * dim, 0.0f), db2(rank * dim, 0.0f);
    cpu::kernels_scalar().lora_forward(l, x.data(), y1.data());
    k->lora_forward(l, x.data(), y2.data());
    cpu::kernels_scalar().lora_grad(l, x.data(), g.data(), da1.data(), db1.data());
    k->lora_grad(l, x.data(), g.data(), da2.data(), db2.data());
    const double floor = std::sqrt(static_cast<double>(dim));
    if (!close(y1, y2, 1e-5, floor) || !close(da1, da2, 1e-5, floor) || !close(db1, db2, 1e-5, floor))
      return st.SkipWithError("result differs from the scalar reference");
  }
  for (auto _ : st) {
    if (grad)
      k->lora_grad(l, x.data(), g.data(), da.data(), db.data());
    else
      k->lora_forward(l, x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(da.data());
  }
  // forward reads A, B, x and y and writes y; the gradient also reads g and
  // reads and writes dA and dB.
  const double floats = grad ? 2.0 * rank * dim + 2.0 * dim + 4.0 * rank * dim : 2.0 * rank * dim + 3.0 * dim;
  set_rates(st, floats * sizeof(float), (grad ? 8.0 : 4.0) * rank * dim);
}

// Appending `seq` positions of K and V (8 KV heads of 128, F32) to a cache,
// as a prefill batch writes them.
void run_kv_append(benchmark::State& st, int64_t seq) {
  const int64_t kvd = 8 * 128;
  auto k = random_floats(seq * kvd, 1), v = random_floats(seq * kvd, 2);
  std::vector<float> kc(2 * seq * kvd), vc(2 * seq * kvd);
  for (auto _ : st) {
    for (int64_t t = 0; t < seq; ++t) {
      std::memcpy(kc.data() + (seq + t) * kvd, k.data() + t * kvd, kvd * sizeof(float));
      std::memcpy(vc.data() + (seq + t) * kvd, v.data() + t * kvd, kvd * sizeof(float));
    }
    benchmark::DoNotOptimize(kc.data());
  }
  set_rates(st, 4.0 * seq * kvd * sizeof(float), 0);
}

}  // namespace

void register_rowop_benchmarks() {
  for (const cpu::Kernels* k : cpu::kernels_available()) {
    for (int64_t n : {768, 1024, 2048, 4096, 8192}) {
      benchmark::RegisterBenchmark(fmt::format("rms_norm/{}/{}", n, k->isa).c_str(), run_norm, k, n, false);
      benchmark::RegisterBenchmark(fmt::format("layer_norm/{}/{}", n, k->isa).c_str(), run_norm, k, n, true);
    }
    for (int64_t hd : {64, 128})
      for (int64_t tokens : {1, 8, 32, 128}) {
        benchmark::RegisterBenchmark(fmt::format("rope_tables/hd:{}/tokens:{}/{}", hd, tokens, k->isa).c_str(),
                                     run_rope, k, hd, tokens, true);
        benchmark::RegisterBenchmark(fmt::format("rope_applied/hd:{}/tokens:{}/{}", hd, tokens, k->isa).c_str(),
                                     run_rope, k, hd, tokens, false);
      }
    for (int64_t rank : {1, 2})
      for (int64_t dim : {768, 2048, 4096}) {
        benchmark::RegisterBenchmark(fmt::format("lora_forward/rank:{}/dim:{}/{}", rank, dim, k->isa).c_str(),
                                     run_lora, k, rank, dim, false);
        benchmark::RegisterBenchmark(fmt::format("lora_grad/rank:{}/dim:{}/{}", rank, dim, k->isa).c_str(), run_lora,
                                     k, rank, dim, true);
      }
  }
  for (int64_t seq : {256, 512, 1024, 2048})
    benchmark::RegisterBenchmark(fmt::format("kv_append/seq:{}", seq).c_str(), run_kv_append, seq)
        ->Unit(benchmark::kMicrosecond);
}

}  // namespace quarrel::bench

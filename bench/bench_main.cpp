// quarrel_bench: the kernel table of issue 4 (see docs/PERF.md), every kernel
// in every ISA table this CPU runs. Peaks are measured first so each figure
// can be read against the hardware.
#include <time.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "bench_common.h"
#include "cpu/backend.h"
#include "cpu/membw.h"

namespace quarrel::bench {

namespace {
Peaks g_peaks;

double thread_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// On this thread's CPU time, so a loaded machine does not lower the peak.
double measure_fma_gflops(const cpu::Kernels& k) {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_seconds();
    const double flops = k.fma_peak_probe(2'000'000);
    best = std::max(best, flops / (thread_seconds() - t0) * 1e-9);
  }
  return best;
}
}  // namespace

const Peaks& peaks() { return g_peaks; }

cpu::ThreadPool& pool(int threads) {
  static std::map<int, std::unique_ptr<cpu::ThreadPool>> pools;
  auto& p = pools[threads];
  if (!p) p = std::make_unique<cpu::ThreadPool>(threads);
  return *p;
}

}  // namespace quarrel::bench

int main(int argc, char** argv) {
  using namespace quarrel;
  benchmark::Initialize(&argc, argv);
  bench::g_peaks.cores = cpu::physical_cores();
  bench::g_peaks.fma_gflops_1t = bench::measure_fma_gflops(cpu::kernels_best());
  bench::g_peaks.read_gbs = cpu::measure_read_bandwidth(bench::g_peaks.cores, int64_t(1) << 30, 5).best_gbs;
  benchmark::AddCustomContext("best_isa", std::string(cpu::kernels_best().isa));
  benchmark::AddCustomContext("fma_peak_gflops_per_core", fmt::format("{:.1f}", bench::g_peaks.fma_gflops_1t));
  benchmark::AddCustomContext("read_bandwidth_gbs", fmt::format("{:.1f}", bench::g_peaks.read_gbs));
  benchmark::AddCustomContext("physical_cores", std::to_string(bench::g_peaks.cores));
  bench::register_matmul_benchmarks();
  bench::register_attention_benchmarks();
  bench::register_rowop_benchmarks();
  bench::register_sync_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

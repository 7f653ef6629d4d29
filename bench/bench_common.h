#pragma once
// Shared pieces of the kernel benchmarks: the machine's measured peaks (taken
// once in main), random inputs, a thread pool per thread count, and the
// counters every benchmark reports.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/kernels/kernels.h"
#include "cpu/thread_pool.h"

namespace quarrel::bench {

struct Peaks {
  double fma_gflops_1t = 0;  // one core, widest FMA of the best kernel table
  double read_gbs = 0;       // memory read bandwidth with all cores
  int cores = 1;
};
const Peaks& peaks();

inline std::vector<float> random_floats(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A persistent pool per thread count, as the backend keeps one.
cpu::ThreadPool& pool(int threads);

// Bytes and float operations per iteration, reported as rates; with a peak,
// also as a percentage of it.
inline void set_rates(benchmark::State& st, double bytes, double flops, double peak_gbs = 0, double peak_gflops = 0) {
  using benchmark::Counter;
  const double it = static_cast<double>(st.iterations());
  if (bytes > 0) st.counters["GB/s"] = Counter(bytes * it, Counter::kIsRate, Counter::kIs1000);
  if (flops > 0) st.counters["GFLOP/s"] = Counter(flops * it, Counter::kIsRate, Counter::kIs1000);
  // A rate of (work / peak) per second is the fraction of the peak reached.
  if (bytes > 0 && peak_gbs > 0) st.counters["%bw"] = Counter(100.0 * bytes / (peak_gbs * 1e9) * it, Counter::kIsRate);
  if (flops > 0 && peak_gflops > 0)
    st.counters["%fma"] = Counter(100.0 * flops / (peak_gflops * 1e9) * it, Counter::kIsRate);
}

// Each benchmark file registers its cases for every kernel table.
void register_matmul_benchmarks();
void register_attention_benchmarks();
void register_rowop_benchmarks();
void register_sync_benchmarks();

}  // namespace quarrel::bench

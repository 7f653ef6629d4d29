#include "cpu/membw.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "cpu/backend.h"
#include "cpu/kernels/kernels.h"
#include "cpu/thread_pool.h"

namespace quarrel::cpu {

MemBandwidth measure_read_bandwidth(int n_threads, int64_t bytes, int passes) {
  if (n_threads <= 0) n_threads = physical_cores();
  const int64_t n = bytes / static_cast<int64_t>(sizeof(float));
  std::vector<float> buf(n);
  ThreadPool pool(n_threads);
  // Each thread first touches its own slice, so the pages are mapped (and on
  // NUMA machines, local) before timing.
  pool.run([&](int ith, int nth) {
    auto [b, e] = split_range(n, ith, nth);
    std::fill(buf.data() + b, buf.data() + e, 1.0f);
  });
  const Kernels& k = kernels_best();
  std::vector<double> sink(n_threads);
  std::vector<double> gbs;
  for (int p = 0; p <= passes; ++p) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int ith, int nth) {
      auto [b, e] = split_range(n, ith, nth);
      // dot(x, x) reads each byte once; the sum keeps the reads alive.
      sink[ith] += k.dot_f32(buf.data() + b, buf.data() + b, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (p > 0) gbs.push_back(static_cast<double>(n) * sizeof(float) / s * 1e-9);
  }
  std::sort(gbs.begin(), gbs.end());
  MemBandwidth r;
  r.best_gbs = gbs.back();
  r.median_gbs = gbs[gbs.size() / 2];
  r.bytes = n * static_cast<int64_t>(sizeof(float));
  r.threads = n_threads;
  r.passes = passes;
  if (sink[0] == -1.0) r.passes = 0;  // never true; stops the reads being optimized away
  return r;
}

}  // namespace quarrel::cpu

// The thread pool's synchronisation cost: one run() with 100 barriers inside,
// reported per barrier. A decode token of the smollm2-135m shape passes about
// 150 barriers (5 per layer), so this times 150 is its sync floor.
#include <set>

#include <fmt/format.h>

#include "bench_common.h"

namespace quarrel::bench {

namespace {

void run_barriers(benchmark::State& st, int threads) {
  cpu::ThreadPool& p = pool(threads);
  constexpr int kBarriers = 100;
  for (auto _ : st)
    p.run([&](int, int) {
      for (int i = 0; i < kBarriers; ++i) p.barrier();
    });
  // items_per_second = barriers per second; 1e9 / it is the cost in ns.
  st.SetItemsProcessed(st.iterations() * kBarriers);
}

}  // namespace

void register_sync_benchmarks() {
  for (int threads : std::set<int>{2, peaks().cores})
    benchmark::RegisterBenchmark(fmt::format("thread_pool/100_barriers/threads:{}", threads).c_str(), run_barriers,
                                 threads)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
}

}  // namespace quarrel::bench

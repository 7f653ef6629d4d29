#pragma once
// The machine's memory read bandwidth, the denominator of every decode
// "fraction of the floor" figure.
#include <cstdint>

namespace quarrel::cpu {

struct MemBandwidth {
  double best_gbs = 0;    // best pass, GB/s (1e9 bytes)
  double median_gbs = 0;  // median pass
  int64_t bytes = 0;      // buffer size read per pass
  int threads = 0;
  int passes = 0;
};

// Streams a buffer of `bytes` (make it several times the last-level cache)
// with n_threads threads, each reading its own contiguous slice, `passes`
// times after one warm-up pass. n_threads <= 0 means all physical cores.
MemBandwidth measure_read_bandwidth(int n_threads, int64_t bytes = int64_t(1) << 30, int passes = 7);

}  // namespace quarrel::cpu

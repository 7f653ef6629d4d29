// GEMV (decode: one activation column) and GEMM (prefill: many), as the
// backend runs them: activations already in the weight type's vec_dot_type,
// rows split across a persistent pool. Each case first checks a few outputs
// against the scalar reference.
#include <cmath>
#include <fmt/format.h>

#include "bench_common.h"
#include "cpu/kernels/packed.h"
#include "tensor/quants.h"

namespace quarrel::bench {

namespace {

using tensor::DType;

struct MatmulData {
  int64_t rows, n, n_cols;
  DType type, act_type;
  std::vector<uint8_t> w, a, packed;
  std::vector<float> out;
  int64_t w_stride, a_stride;
};

std::unique_ptr<MatmulData> make_data(DType t, int64_t rows, int64_t n, int64_t n_cols) {
  auto d = std::make_unique<MatmulData>();
  d->rows = rows;
  d->n = n;
  d->n_cols = n_cols;
  d->type = t;
  d->act_type = tensor::vec_dot_type(t);
  d->w_stride = tensor::row_bytes(t, n);
  d->a_stride = tensor::row_bytes(d->act_type, n);
  d->w.resize(rows * d->w_stride);
  d->a.resize(n_cols * d->a_stride);
  d->out.resize(rows * n_cols);
  const auto wf = random_floats(n, 1);
  // Rows differ only by a rotation of the same values: fast to build, and
  // just as expensive to multiply as fully random rows.
  std::vector<float> row(n);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; ++i) row[i] = wf[(i + r * 7) % n];
    tensor::quantize_row(t, row.data(), d->w.data() + r * d->w_stride, n);
  }
  const auto af = random_floats(n * n_cols, 2);
  for (int64_t c = 0; c < n_cols; ++c)
    tensor::quantize_row(d->act_type, af.data() + c * n, d->a.data() + c * d->a_stride, n);
  return d;
}

// Compares the first rows of a table's result with the scalar reference.
bool validate(const cpu::Kernels& k, const MatmulData& d) {
  const int64_t rows = std::min<int64_t>(d.rows, 8), cols = std::min<int64_t>(d.n_cols, 5);
  std::vector<float> want(rows * cols), got(rows * cols);
  cpu::kernels_scalar().matmul[cpu::dtype_index(d.type)](d.w.data(), d.w_stride, 0, rows, d.n, d.a.data(),
                                                          d.a_stride, cols, want.data(), rows);
  k.matmul[cpu::dtype_index(d.type)](d.w.data(), d.w_stride, 0, rows, d.n, d.a.data(), d.a_stride, cols, got.data(),
                                     rows);
  for (size_t i = 0; i < want.size(); ++i)
    if (std::fabs(got[i] - want[i]) > 1e-3 * (std::fabs(want[i]) + std::sqrt(static_cast<double>(d.n)))) return false;
  return true;
}

// The kernel as the backend would call it: on packed weights (whole 16-row
// groups per thread) when the table packs this type.
struct Runner {
  cpu::MatmulFn fn;
  const uint8_t* w;
  int64_t w_stride;
  int64_t unit;  // rows are split in multiples of this
};

Runner runner(const cpu::Kernels& k, MatmulData& d) {
  const int i = cpu::dtype_index(d.type);
  if (!k.pack_weights[i] || d.rows % cpu::kPackRows != 0) return {k.matmul[i], d.w.data(), d.w_stride, 1};
  d.packed.resize(d.rows / cpu::kPackRows * cpu::packed_group_bytes(d.type, d.n));
  cpu::pack_rows(d.type, d.w.data(), d.w_stride, d.rows, d.n, d.packed.data());
  return {k.matmul_packed[i], d.packed.data(), cpu::packed_group_bytes(d.type, d.n), cpu::kPackRows};
}

// Compares every output with the scalar reference on the unpacked weights.
bool validate_runner(const Runner& run, const MatmulData& d) {
  const int64_t rows = std::min<int64_t>(d.rows, 32), cols = std::min<int64_t>(d.n_cols, 5);
  std::vector<float> want(rows * cols), got(rows * cols);
  cpu::kernels_scalar().matmul[cpu::dtype_index(d.type)](d.w.data(), d.w_stride, 0, rows, d.n, d.a.data(),
                                                          d.a_stride, cols, want.data(), rows);
  run.fn(run.w, run.w_stride, 0, rows, d.n, d.a.data(), d.a_stride, cols, got.data(), rows);
  for (size_t i = 0; i < want.size(); ++i)
    if (std::fabs(got[i] - want[i]) > 1e-3 * (std::fabs(want[i]) + std::sqrt(static_cast<double>(d.n)))) return false;
  return true;
}

void run_matmul(benchmark::State& st, const cpu::Kernels* k, DType t, int64_t rows, int64_t n, int64_t n_cols,
                int threads) {
  auto d = make_data(t, rows, n, n_cols);
  const Runner run = runner(*k, *d);
  if (!validate(*k, *d) || !validate_runner(run, *d)) {
    st.SkipWithError("result differs from the scalar reference");
    return;
  }
  st.SetLabel(run.unit > 1 ? "packed" : "");
  cpu::ThreadPool& p = pool(threads);
  for (auto _ : st) {
    p.run([&](int ith, int nth) {
      auto [u0, u1] = cpu::split_range(d->rows / run.unit, ith, nth);
      run.fn(run.w, run.w_stride, u0 * run.unit, u1 * run.unit, d->n, d->a.data(), d->a_stride, d->n_cols,
             d->out.data(), d->rows);
    });
    benchmark::DoNotOptimize(d->out.data());
  }
  const double bytes = static_cast<double>(d->w.size() + d->a.size());
  const double flops = 2.0 * rows * n * n_cols;
  // Quantized GEMMs run on integer dot products: their operations are not
  // float FMAs, so no float peak is quoted for them.
  const bool float_math = t == DType::F32 || t == DType::F16 || t == DType::BF16;
  if (n_cols == 1)
    set_rates(st, bytes, flops, peaks().read_gbs);
  else
    set_rates(st, 0, flops, 0, float_math ? peaks().fma_gflops_1t * threads : 0);
}

}  // namespace

void register_matmul_benchmarks() {
  const auto tables = cpu::kernels_available();
  const int cores = peaks().cores;
  for (const cpu::Kernels* k : tables) {
    for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
      for (int64_t n : {256, 512, 1024, 2048, 4096}) {
        for (int threads : {1, cores}) {
          if (k->isa == "scalar" && n > 1024) continue;  // minutes, and only there to compare
          const std::string name =
              fmt::format("gemv/{}/{}x{}/{}/threads:{}", tensor::dtype_name(t), n, n, k->isa, threads);
          auto* b = benchmark::RegisterBenchmark(name.c_str(), run_matmul, k, t, n, n, 1, threads)
                        ->Unit(benchmark::kMicrosecond);
          if (threads > 1) b->UseRealTime();  // the pool's other threads are not in this thread's CPU time
          if (cores == 1) break;
        }
      }
      for (int64_t m : {128, 256, 512}) {
        if (k->isa == "scalar" && m > 256) continue;
        for (int threads : {1, cores}) {
          const std::string name = fmt::format("gemm/{}/{}^3/{}/threads:{}", tensor::dtype_name(t), m, k->isa, threads);
          auto* b = benchmark::RegisterBenchmark(name.c_str(), run_matmul, k, t, m, m, m, threads)
                        ->Unit(benchmark::kMicrosecond);
          if (threads > 1) b->UseRealTime();
          if (cores == 1) break;
        }
      }
    }
  }
}

}  // namespace quarrel::bench

#pragma once
#include <memory>

#include "runtime/backend.h"

namespace quarrel::cpu {

struct Kernels;

// The CPU backend: a persistent thread pool running the whole forward pass,
// one barrier per stage, with kernels from kernels_best().
std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts);
// The same with a given kernel table (one of kernels_available()), for tests
// and benchmarks that run every ISA this CPU has.
std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts,
                                               const Kernels& kernels);

// Seconds the CPU backend's threads have spent waiting on each other so far
// (summed over threads); 0 for any other backend.
double barrier_wait_seconds(const runtime::Backend& b);

// Physical cores of this machine (hyper-threads not counted).
int physical_cores();

}  // namespace quarrel::cpu

#pragma once
#include <memory>

#include "runtime/backend.h"

namespace quarrel::cpu {

// The CPU backend: a persistent thread pool running the whole forward pass,
// one barrier per stage, with kernels from kernels_best().
std::unique_ptr<runtime::Backend> make_backend(const model::Model& m, runtime::BackendOptions opts);

// Physical cores of this machine (hyper-threads not counted).
int physical_cores();

}  // namespace quarrel::cpu

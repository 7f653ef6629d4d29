// Picks the kernel tables this CPU can run, once, by asking the CPU (cpuid via
// __builtin_cpu_supports). The ISA files are compiled on every build for their
// architecture (CMake adds x86_* on x86-64 and arm_* on aarch64), so the only
// compile-time test here is the architecture itself.
#include "cpu/kernels/kernels.h"

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace quarrel::cpu {

Kernels make_scalar_kernels();

namespace {

#if defined(__x86_64__)
bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("bmi2");
}
// The AVX-512 file also uses VNNI and BF16 instructions; parts without them
// (Skylake-X) run the AVX2 table.
bool cpu_has_avx512() {
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
}
#endif

// Tables build on each other: AVX-512 starts from AVX2 and overrides what it
// does better, so an entry it lacks still runs vectorized.
std::vector<Kernels> make_tables() {
  std::vector<Kernels> tables;
  tables.push_back(make_scalar_kernels());
#if defined(__x86_64__)
  if (cpu_has_avx2()) {
    Kernels k = tables.back();
    kernels_init_avx2(k);
    tables.push_back(k);
    if (cpu_has_avx512()) {
      kernels_init_avx512(k);
      tables.push_back(k);
    }
  }
#elif defined(__aarch64__)
  // arm_neon.cpp is built for armv8.2-a with the dot-product extension.
  if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) {
    Kernels k = tables.back();
    kernels_init_neon(k);
    tables.push_back(k);
  }
#endif
  return tables;
}

const std::vector<Kernels>& tables() {
  static const std::vector<Kernels> t = make_tables();
  return t;
}

}  // namespace

const Kernels& kernels_scalar() { return tables().front(); }
const Kernels& kernels_best() { return tables().back(); }

std::vector<const Kernels*> kernels_available() {
  std::vector<const Kernels*> out;
  for (const Kernels& k : tables()) out.push_back(&k);
  return out;
}

}  // namespace quarrel::cpu

// Picks the kernel tables this CPU can run, once, by asking the CPU (cpuid and
// xgetbv). The ISA files are compiled on every build for their
// architecture (CMake adds x86_* on x86-64 and arm_* on aarch64), so the only
// compile-time test here is the architecture itself.
#include "cpu/kernels/kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace quarrel::cpu {

Kernels make_scalar_kernels();

namespace {

#if defined(__x86_64__)
// cpuid and xgetbv directly: clang 14's __builtin_cpu_supports knows neither
// "f16c" nor "avx512bf16", and the OS must also have enabled the registers.
struct CpuFeatures {
  bool avx2 = false, avx512 = false;
};

CpuFeatures detect_x86() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!(osxsave && avx)) return f;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  const bool os_avx = (lo & 0x6) == 0x6, os_avx512 = (lo & 0xe6) == 0xe6;
  if (!os_avx || __get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
  const bool avx512f = b & (1u << 16), avx512dq = b & (1u << 17), avx512bw = b & (1u << 30),
             avx512vl = b & (1u << 31), vnni = c & (1u << 11);
  __cpuid_count(7, 1, a, b, c, d);
  const bool bf16 = a & (1u << 5);
  f.avx2 = avx2 && fma && f16c && bmi2;
  // The AVX-512 file also uses VNNI and BF16 instructions; parts without them
  // (Skylake-X) run the AVX2 table.
  f.avx512 = f.avx2 && os_avx512 && avx512f && avx512dq && avx512bw && avx512vl && vnni && bf16;
  return f;
}

bool cpu_has_avx2() { return detect_x86().avx2; }
bool cpu_has_avx512() { return detect_x86().avx512; }
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

// Picks the CPU row kernels' instruction-set variant once, from what this CPU supports.
#include <cstdlib>
#include <cstring>

#include <string>

#include <torch/csrc/stable/library.h>

#include "rows.h"

namespace verifier_kernels {
namespace {

template <typename T>
RowKernels<T> choose_row_kernels() {
  const char* forced = std::getenv("VERIFIER_CPU_ISA");
  const bool any = forced == nullptr || forced[0] == '\0';
#if defined(VERIFIER_X86_VARIANTS)
  __builtin_cpu_init();
  if ((any || std::strcmp(forced, "avx512") == 0) && __builtin_cpu_supports("avx512f")) {
    return avx512::make_row_kernels<T>();
  }
  if ((any || std::strcmp(forced, "avx2") == 0) && __builtin_cpu_supports("avx2")) {
    return avx2::make_row_kernels<T>();
  }
#else
  (void)any;
#endif
  return baseline::make_row_kernels<T>();
}

}  // namespace

template <typename T>
const RowKernels<T>& row_kernels() {
  static const RowKernels<T> chosen = choose_row_kernels<T>();
  return chosen;
}

template const RowKernels<float>& row_kernels<float>();
template const RowKernels<double>& row_kernels<double>();

}  // namespace verifier_kernels

namespace {
std::string cpu_variant() { return verifier_kernels::row_kernels<float>().isa; }
}  // namespace

STABLE_TORCH_LIBRARY_IMPL(verifier, CompositeExplicitAutograd, m) {
  m.impl("cpu_variant", TORCH_BOX(&cpu_variant));
}

// The CPU row kernels: the table of the instruction-set variant chosen for this CPU (their arguments are in
// common.h, shared with the CUDA kernels). The op files (relaxation.cpp, concretize.cpp, interval.cpp) check operands,
// allocate outputs and split the rows among threads; the row kernels (rows_impl.h) do the arithmetic.
#pragma once

#include <cstdint>

#include "../common.h"

namespace verifier_kernels {

// Row kernels over the flattened (box, spec row) range [begin, end); `scratch` holds 4n (relu, relu_grad) or 2n
// (concretize) values for the relaxation or box of the current box.
template <typename T>
struct RowKernels {
  void (*relaxed)(const RelaxedArgs<T>& args, int64_t begin, int64_t end);
  void (*relu)(const ReluArgs<T>& args, int64_t begin, int64_t end, T* scratch);
  void (*relu_grad)(const ReluGradArgs<T>& args, int64_t begin, int64_t end, T* scratch);
  void (*concretize)(const ConcretizeArgs<T>& args, int64_t begin, int64_t end, T* scratch);
  void (*center_radius)(const T* lower, const T* upper, T* center, T* radius, int64_t begin, int64_t end);
  void (*interval)(T* out_center, T* out_radius, const T* bias, int64_t outputs, int64_t begin, int64_t end);
  const char* isa;
};

// The variant for this CPU: AVX-512, AVX2 or baseline, chosen once (VERIFIER_CPU_ISA=avx512|avx2|baseline
// forces one, for testing every variant on one machine).
template <typename T>
const RowKernels<T>& row_kernels();

#define VERIFIER_DECLARE_ISA(isa)                                \
  namespace isa {                                                \
  template <typename T>                                          \
  RowKernels<T> make_row_kernels();                              \
  extern template RowKernels<float> make_row_kernels<float>();   \
  extern template RowKernels<double> make_row_kernels<double>(); \
  }

VERIFIER_DECLARE_ISA(baseline)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VERIFIER_X86_VARIANTS 1
VERIFIER_DECLARE_ISA(avx2)
VERIFIER_DECLARE_ISA(avx512)
#endif

#undef VERIFIER_DECLARE_ISA

}  // namespace verifier_kernels

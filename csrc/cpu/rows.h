// The CPU row kernels: their arguments (plain pointers and layouts) and the table of the instruction-set
// variant chosen for this CPU. The op files (relaxation.cpp, concretize.cpp, interval.cpp) check operands,
// allocate outputs and split the rows among threads; the row kernels (rows_impl.h) do the arithmetic.
#pragma once

#include <cstdint>

#include "../common.h"

namespace verifier_kernels {

template <typename T>
struct RelaxedArgs {
  const T* a;
  RowLayout a_layout;
  const T* lower_slope;
  RowLayout lower_slope_layout;
  const T* lower_intercept;  // may be null
  RowLayout lower_intercept_layout;
  const T* upper_slope;
  RowLayout upper_slope_layout;
  const T* upper_intercept;  // may be null
  RowLayout upper_intercept_layout;
  T* out;
  T* bias;
  int64_t rows;  // K
  int64_t n;
};

template <typename T>
struct ReluArgs {
  const T* a;
  RowLayout a_layout;
  const T* lower;
  const T* upper;
  RowLayout bounds_layout;
  const T* alpha;  // may be null: lower slopes of unstable neurons
  RowLayout alpha_layout;
  T* out;
  T* bias;
  int64_t rows;
  int64_t n;
};

template <typename T>
struct ConcretizeArgs {
  const T* a;
  RowLayout a_layout;
  const T* bias;  // may be null: [1|B, K]
  int64_t bias_batch_stride;
  const T* lower;
  const T* upper;
  RowLayout box_layout;
  T* out;
  int64_t rows;
  int64_t n;
};

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

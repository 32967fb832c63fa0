// Definitions shared by every kernel source, host or device, with no torch headers (the CPU instruction-set
// variants include this under a target pragma and must not compile torch's inline functions for their ISA).
#pragma once

#include <cstdint>

// Free functions are internal and always inlined, members always inlined: the CPU variants compile them for
// their own instruction set, and no out-of-line copy compiled for one set may stand in for another at link time.
#if defined(__CUDACC__)
#define VERIFIER_HOST_DEVICE static __host__ __device__ __forceinline__
#define VERIFIER_HOST_DEVICE_MEMBER __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define VERIFIER_HOST_DEVICE static inline __attribute__((always_inline))
#define VERIFIER_HOST_DEVICE_MEMBER inline __attribute__((always_inline))
#else
#define VERIFIER_HOST_DEVICE static inline
#define VERIFIER_HOST_DEVICE_MEMBER inline
#endif

namespace verifier_kernels {

// Where the rows of a broadcast operand [1 | B, 1 | K, N] start: offset = batch * batch_stride + row * row_stride.
struct RowLayout {
  int64_t batch_stride = 0;
  int64_t row_stride = 0;
  VERIFIER_HOST_DEVICE_MEMBER int64_t offset(int64_t batch, int64_t row) const {
    return batch * batch_stride + row * row_stride;
  }
};

// The kernels' arguments, the same for both back ends (plain pointers and row layouts, filled by the
// *_args functions of kernels.h): `rows` is K, and the kernels run over the batch * rows flattened rows.

// relaxed_backward: A [b, K, N] and the relaxation's slopes and intercepts, [1 | B, 1 | K, N] each.
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

// relu_backward: A and the pre-activation bounds [1 | B, N], optionally the lower slopes alpha.
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

// concretize_box: A, the box bounds [1 | B, N] and an optional bias [1 | B, K].
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

// Arguments of the gradient of relu_backward (w.r.t. A and the lower slopes alpha), for both back ends:
// output gradients grad_A_z [B, K, N] and grad_bias [B, K]; grad_alpha may be null (not needed).
template <typename T>
struct ReluGradArgs {
  const T* grad_a_z;
  const T* grad_bias;
  const T* a;
  RowLayout a_layout;
  const T* lower;
  const T* upper;
  RowLayout bounds_layout;
  const T* alpha;  // may be null
  RowLayout alpha_layout;
  T* grad_a;
  T* grad_alpha;  // may be null
  int64_t rows;
  int64_t n;
};

}  // namespace verifier_kernels

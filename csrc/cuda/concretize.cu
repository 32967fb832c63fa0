// CUDA kernel of box concretisation, min over the box of A . x + bias = A . c - |A| . r + bias: one warp per
// row of A, the box centre and radius formed on the fly, no |A| materialised.
#include "../formulas.h"
#include "cuda_common.cuh"

namespace verifier_kernels {
namespace {

template <typename T>
struct ConcretizeParams {
  const T* a;
  RowLayout a_layout;
  const T* bias;  // may be null
  int64_t bias_batch_stride;
  const T* lower;
  const T* upper;
  RowLayout box_layout;
  T* out;
  int64_t total_rows;
  int64_t rows;
  int64_t n;
};

template <typename T>
__global__ void concretize_box_kernel(ConcretizeParams<T> p) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (r >= p.total_rows) return;
  const int64_t batch = r / p.rows;
  const int64_t row = r % p.rows;
  const T* a = p.a + p.a_layout.offset(batch, row);
  const T* l = p.lower + p.box_layout.offset(batch, 0);
  const T* u = p.upper + p.box_layout.offset(batch, 0);
  T partial = T(0);
  for (int64_t i = lane; i < p.n; i += kWarp) {
    T center, radius;
    center_radius<T>(l[i], u[i], center, radius);
    const T x = a[i];
    const T magnitude = x < T(0) ? -x : x;
    partial += x * center - magnitude * radius;
  }
  partial = warp_sum(partial);
  if (lane == 0) p.out[r] = p.bias != nullptr ? partial + p.bias[batch * p.bias_batch_stride + row] : partial;
}

Tensor concretize_box_cuda(Tensor A, std::optional<Tensor> bias, Tensor lower, Tensor upper) {
  check_floating(A);
  STD_TORCH_CHECK(A.dim() == 3 && A.is_contiguous(), "concretize_box: A must be a contiguous [b, K, N]");
  torch::stable::accelerator::DeviceGuard guard(A.get_device_index());
  const int64_t rows = A.size(1);
  const int64_t n = A.size(2);
  const int64_t batch = broadcast_batch({&A, &lower, &upper, bias ? &*bias : nullptr});
  Tensor out = torch::stable::new_empty(A, {batch, rows});
  const int64_t total = batch * rows;
  if (total == 0) return out;
  auto launch = [&](auto typed_zero) {
    using T = decltype(typed_zero);
    ConcretizeParams<T> p{};
    p.a = data<T>(A);
    p.a_layout = row_layout(A, A, batch, rows, n, "A");
    p.box_layout = neuron_layout(lower, A, batch, n, "lower");
    const RowLayout upper_layout = neuron_layout(upper, A, batch, n, "upper");
    STD_TORCH_CHECK(upper_layout.batch_stride == p.box_layout.batch_stride,
                    "concretize_box: lower and upper must have one shape");
    p.lower = data<T>(lower);
    p.upper = data<T>(upper);
    if (bias) {
      p.bias = data<T>(*bias);
      p.bias_batch_stride = neuron_layout(*bias, A, batch, rows, "bias").batch_stride;
    }
    p.out = mutable_data<T>(out);
    p.total_rows = total;
    p.rows = rows;
    p.n = n;
    concretize_box_kernel<T><<<blocks_for_rows(total), kBlock, 0, current_stream(A)>>>(p);
    check_launch("concretize_box");
  };
  if (is_float(A)) {
    launch(float(0));
  } else {
    launch(double(0));
  }
  return out;
}

}  // namespace
}  // namespace verifier_kernels

STABLE_TORCH_LIBRARY_IMPL(verifier, CUDA, m) {
  m.impl("concretize_box", TORCH_BOX(&verifier_kernels::concretize_box_cuda));
}
